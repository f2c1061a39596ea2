//! The body of a record: `key=value` pairs in the kernel's order, as spans into the record's bytes.
//!
//! Value forms the kernel and user space write:
//! - bare: `syscall=59`, `tty=(none)`, `key=(null)`, `hostname=?`, and hex-encoded strings
//!   (`proctitle=2F7573…`): hex is not distinguishable by syntax, decoding is enrichment's job;
//! - double-quoted: `comm="bash"`; the kernel never escapes inside quotes (a string that would
//!   need escaping is hex-encoded instead), so the value ends at the next `"`;
//! - single-quoted: `msg='op=login … res=success'` on user-space records; the text may itself
//!   contain `'` (`text=single 'quote'`), so the value ends at the *last* `'` of the body;
//! - words without `=`: `avc:  denied  { read } for  pid=…` on AVC records;
//! - in auditd's ENRICHED section only, braced values: `SADDR={ saddr_fam=local path=/run/x }`
//!   is one value (auparse's sockaddr interpretation), kept whole with its braces.
//!
//! Invariants: the tokenizer never fails and never drops bytes other than separating spaces;
//! spans are byte ranges, so non-UTF-8 input is carried untouched; an unterminated quote is kept as
//! a bare value including the quote character (no guessing where it should have ended).

/// How a value was written. The span of a quoted value excludes its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// `key=value` with no quotes (numbers, hex, `(null)`, `?`, …).
    Bare,
    /// `key="value"`.
    Double,
    /// `key='value'` (user-space `msg='…'`).
    Single,
    /// A token without `=`; its key span is empty and the word is the value.
    Word,
}

/// Byte range into the record's buffer. `u32` keeps a field at 12 bytes: records are < 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// One parsed field: spans into the owning record's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub key: Span,
    pub value: Span,
    pub quoting: Quoting,
}

/// A field borrowed from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef<'a> {
    /// Empty for [`Quoting::Word`].
    pub key: &'a [u8],
    /// Raw bytes without surrounding quotes.
    pub value: &'a [u8],
    pub quoting: Quoting,
}

impl FieldRef<'_> {
    /// `(null)`: the kernel's "no value" (e.g. `key=(null)` when no rule key is set).
    pub fn is_null(&self) -> bool {
        self.quoting == Quoting::Bare && self.value == b"(null)"
    }

    /// `?`: unknown or not applicable (`hostname=?`).
    pub fn is_unknown(&self) -> bool {
        self.quoting == Quoting::Bare && self.value == b"?"
    }
}

/// Split the raw fields `buf[start..end]`, appending to `out`. `buf.len()` must fit in `u32`.
pub(crate) fn tokenize(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) {
    tokenize_with::<false>(buf, start, end, out);
}

/// Split auditd's interpreted (ENRICHED) fields `buf[start..end]`: as [`tokenize`], and a bare
/// value that starts with `{` runs to the first `}` that ends a token (followed by a space or the
/// end), so auparse's `{ fam=inet laddr=… lport=… }` stays one value. Without such a `}` the value
/// is an ordinary bare value (no guessing).
pub(crate) fn tokenize_interpreted(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) {
    tokenize_with::<true>(buf, start, end, out);
}

/// Closing brace of a braced value starting at `open` (which holds `{`), if one ends a token.
fn brace_end(buf: &[u8], open: usize, end: usize) -> Option<usize> {
    let mut from = open + 1;
    while let Some(p) = memchr::memchr(b'}', &buf[from..end]) {
        let close = from + p;
        if close + 1 == end || buf[close + 1] == b' ' {
            return Some(close + 1);
        }
        from = close + 1;
    }
    None
}

fn tokenize_with<const BRACES: bool>(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) {
    let mut i = start;
    while i < end {
        if buf[i] == b' ' {
            i += 1;
            continue;
        }
        let token_start = i;
        // The key runs to '=' or to the end of the word.
        while i < end && buf[i] != b'=' && buf[i] != b' ' {
            i += 1;
        }
        if i >= end || buf[i] == b' ' {
            out.push(Field {
                key: span(token_start, token_start),
                value: span(token_start, i),
                quoting: Quoting::Word,
            });
            continue;
        }
        let key = span(token_start, i);
        i += 1; // '='
        let quote = buf.get(i).copied().filter(|_| i < end);
        let closing = match quote {
            Some(b'"') => memchr::memchr(b'"', &buf[i + 1..end]).map(|p| (i + 1 + p, Quoting::Double)),
            Some(b'\'') => memchr::memrchr(b'\'', &buf[i + 1..end]).map(|p| (i + 1 + p, Quoting::Single)),
            _ => None,
        };
        match closing {
            Some((close, quoting)) => {
                out.push(Field { key, value: span(i + 1, close), quoting });
                i = close + 1;
            }
            None => {
                let value_start = i;
                let braced = if BRACES && quote == Some(b'{') { brace_end(buf, i, end) } else { None };
                i = braced.unwrap_or_else(|| memchr::memchr(b' ', &buf[i..end]).map_or(end, |p| i + p));
                out.push(Field { key, value: span(value_start, i), quoting: Quoting::Bare });
            }
        }
    }
}

fn span(start: usize, end: usize) -> Span {
    // Callers guarantee the buffer fits u32 (records are bounded well below 4 GiB).
    Span { start: start as u32, end: end as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(String, String, Quoting)> {
        split_with(text, tokenize)
    }

    fn interpreted(text: &str) -> Vec<(String, String, Quoting)> {
        split_with(text, tokenize_interpreted)
    }

    fn split_with(text: &str, split: fn(&[u8], usize, usize, &mut Vec<Field>)) -> Vec<(String, String, Quoting)> {
        let mut out = Vec::new();
        split(text.as_bytes(), 0, text.len(), &mut out);
        out.iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(f.key.get(text.as_bytes())).into_owned(),
                    String::from_utf8_lossy(f.value.get(text.as_bytes())).into_owned(),
                    f.quoting,
                )
            })
            .collect()
    }

    fn kv(k: &str, v: &str, q: Quoting) -> (String, String, Quoting) {
        (k.to_string(), v.to_string(), q)
    }

    #[test]
    fn bare_quoted_null_unknown_and_hex() {
        let got = fields(r#"arch=c000003e comm="python3" key=(null) hostname=? proctitle=2F62696E tty=(none)"#);
        assert_eq!(
            got,
            vec![
                kv("arch", "c000003e", Quoting::Bare),
                kv("comm", "python3", Quoting::Double),
                kv("key", "(null)", Quoting::Bare),
                kv("hostname", "?", Quoting::Bare),
                kv("proctitle", "2F62696E", Quoting::Bare),
                kv("tty", "(none)", Quoting::Bare),
            ]
        );
    }

    #[test]
    fn single_quoted_msg_runs_to_the_last_quote() {
        let got = fields("pid=907 msg='text=single 'quote' back\\slash = 0 res=success'");
        assert_eq!(
            got,
            vec![
                kv("pid", "907", Quoting::Bare),
                kv("msg", "text=single 'quote' back\\slash = 0 res=success", Quoting::Single),
            ]
        );
    }

    #[test]
    fn words_without_equals_are_kept() {
        let got = fields("avc:  denied  { read } for  pid=5");
        let words: Vec<_> = got.iter().filter(|f| f.2 == Quoting::Word).map(|f| f.1.as_str()).collect();
        assert_eq!(words, vec!["avc:", "denied", "{", "read", "}", "for"]);
        assert_eq!(got.last(), Some(&kv("pid", "5", Quoting::Bare)));
        assert!(got.iter().filter(|f| f.2 == Quoting::Word).all(|f| f.0.is_empty()));
    }

    #[test]
    fn empty_values_and_continuation_spaces() {
        let got = fields("  a1[0]=41 key= x=\"\"");
        assert_eq!(
            got,
            vec![kv("a1[0]", "41", Quoting::Bare), kv("key", "", Quoting::Bare), kv("x", "", Quoting::Double)]
        );
    }

    #[test]
    fn unterminated_quote_is_kept_bare_with_its_quote() {
        let got = fields("a=\"abc def");
        assert_eq!(got, vec![kv("a", "\"abc", Quoting::Bare), kv("", "def", Quoting::Word)]);
    }

    #[test]
    fn interpreted_braced_values_are_one_value() {
        assert_eq!(
            interpreted("SADDR={ saddr_fam=local path=/var/run/nscd/socket }"),
            vec![kv("SADDR", "{ saddr_fam=local path=/var/run/nscd/socket }", Quoting::Bare)]
        );
        assert_eq!(
            interpreted("ARCH=x86_64 SADDR={ fam=netlink nlnk-fam=16 nlnk-pid=0 } AUID=\"unset\""),
            vec![
                kv("ARCH", "x86_64", Quoting::Bare),
                kv("SADDR", "{ fam=netlink nlnk-fam=16 nlnk-pid=0 }", Quoting::Bare),
                kv("AUID", "unset", Quoting::Double),
            ]
        );
        // A `}` inside a token does not close; an unclosed brace is an ordinary bare value.
        assert_eq!(
            interpreted("S={ path=/a}b } X=1"),
            vec![kv("S", "{ path=/a}b }", Quoting::Bare), kv("X", "1", Quoting::Bare)]
        );
        assert_eq!(
            interpreted("S={ fam=x Y=2"),
            vec![kv("S", "{", Quoting::Bare), kv("fam", "x", Quoting::Bare), kv("Y", "2", Quoting::Bare)]
        );
        // Raw fields never treat braces specially (AVC's `{ read }` are words there).
        assert_eq!(fields("a={ b }").len(), 3);
    }

    #[test]
    fn stops_at_the_given_end() {
        let text = "a=1 b=\"2\"\x1dA=one";
        let mut out = Vec::new();
        tokenize(text.as_bytes(), 0, 9, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].value.get(text.as_bytes()), b"2");
    }
}
