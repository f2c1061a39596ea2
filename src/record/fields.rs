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

use std::collections::HashSet;

use crate::hash::FastHash;

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

/// Split the raw fields `buf[start..end]`, appending to `out`; returns whether a key repeats among
/// the appended fields (see [`Dups`]). `buf.len()` must fit in `u32`.
pub(crate) fn tokenize(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) -> bool {
    tokenize_with::<false>(buf, start, end, out)
}

/// Split auditd's interpreted (ENRICHED) fields `buf[start..end]`: as [`tokenize`], and a bare
/// value that starts with `{` runs to the first `}` that ends a token (followed by a space or the
/// end), so auparse's `{ fam=inet laddr=… lport=… }` stays one value. Without such a `}` the value
/// is an ordinary bare value (no guessing).
pub(crate) fn tokenize_interpreted(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) -> bool {
    tokenize_with::<true>(buf, start, end, out)
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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` equal to `byte`, except that bytes above the first match
/// may be set too (borrow), so only the lowest set bit is meaningful.
#[inline(always)]
fn matches(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first index `>= i` of `buf` whose byte is `a` or `b`, or `buf.len()`.
///
/// Why not `memchr`: audit values and keys are mostly a few bytes long, where memchr's setup
/// (dispatch, alignment, vector loads) costs more than the search; eight bytes a step in a
/// register (SWAR) settles a typical token in one or two words.
#[inline(always)]
fn find2(buf: &[u8], mut i: usize, a: u8, b: u8) -> usize {
    while let Some(chunk) = buf.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let hit = matches(word, a) | matches(word, b);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < buf.len() && buf[i] != a && buf[i] != b {
        i += 1;
    }
    i
}

/// [`find2`] for one byte.
#[inline(always)]
fn find1(buf: &[u8], i: usize, a: u8) -> usize {
    find2(buf, i, a, a)
}

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline(always)]
fn load8(buf: &[u8], i: usize) -> Option<u64> {
    let chunk = buf.get(i..i + 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

/// 16-bit hash of a key from its length and its first eight bytes as a little-endian word
/// (`first`, bytes past the key zero), never [`Dups::WORD`]. The tokenizer has that word in a
/// register already; keys that share it and their length are told apart by comparing them.
#[inline(always)]
fn key_hash(first: u64, len: usize) -> u16 {
    let x = (first ^ (len as u64).rotate_right(8)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 48) as u16 | 1
}

/// The first eight bytes (or fewer) of `key` as [`key_hash`] wants them.
fn key_word(key: &[u8]) -> u64 {
    key.iter().take(8).rev().fold(0, |w, &b| w << 8 | u64::from(b))
}

/// Duplicate-key detection fed while tokenizing, so the fields are not walked a second time.
///
/// Words count as one key. A 1024-bit filter of 16-bit key hashes settles most records as they
/// are split; only on a filter hit are earlier keys with the same hash compared. Past
/// [`Dups::HASHED`] fields (long EXECVE records, hundreds of arguments) a set decides, to stay
/// linear.
struct Dups {
    filter: [u64; 16],
    hashes: [u16; Dups::HASHED],
    count: usize,
    found: bool,
}

impl Dups {
    const HASHED: usize = 64;
    const WORD: u16 = 0;

    fn new() -> Dups {
        Dups { filter: [0; 16], hashes: [0; Dups::HASHED], count: 0, found: false }
    }

    /// Note the field just pushed, `fields[base + count]`, whose key hashes to `h`
    /// ([`Dups::WORD`] for a word, else [`key_hash`]).
    #[inline(always)]
    fn add(&mut self, buf: &[u8], fields: &[Field], base: usize, h: u16) {
        let j = self.count;
        self.count += 1;
        // Once a duplicate is found, later keys only cost a filter update.
        if j >= Dups::HASHED {
            return;
        }
        let (slot, bit) = (usize::from(h >> 6) & 15, 1u64 << (h & 63));
        if self.filter[slot] & bit != 0 && !self.found {
            let earlier = &fields[base..];
            if let Some(new) = earlier.get(j) {
                self.found = self.hashes[..j].iter().zip(earlier).any(|(&g, f)| g == h && same_key(buf, f, new));
            }
        }
        self.filter[slot] |= bit;
        self.hashes[j] = h;
    }

    fn finish(&self, buf: &[u8], fields: &[Field]) -> bool {
        if self.found {
            return true;
        }
        if self.count <= Dups::HASHED {
            return false;
        }
        let mut seen: HashSet<(bool, &[u8]), FastHash> =
            HashSet::with_capacity_and_hasher(fields.len(), FastHash::default());
        !fields.iter().all(|f| seen.insert((f.quoting == Quoting::Word, f.key.get(buf))))
    }
}

fn same_key(buf: &[u8], a: &Field, b: &Field) -> bool {
    (a.quoting == Quoting::Word) == (b.quoting == Quoting::Word) && a.key.get(buf) == b.key.get(buf)
}

fn tokenize_with<const BRACES: bool>(buf: &[u8], start: usize, end: usize, out: &mut Vec<Field>) -> bool {
    // Spans index the whole buffer; cutting it at `end` makes every search stop there.
    let buf = &buf[..end];
    let base = out.len();
    let mut dups = Dups::new();
    let mut i = start;
    while i < end {
        if buf[i] == b' ' {
            i += 1;
            continue;
        }
        let token_start = i;
        // The key runs to '=' or to the end of the word. A token's first word usually holds the
        // key, and often the space that ends a bare value too: one load settles both.
        let mut first = None;
        let mut value_end = None;
        match load8(buf, i) {
            Some(word) => {
                let spaces = matches(word, b' ');
                let hit = matches(word, b'=') | spaces;
                if hit == 0 {
                    i = find2(buf, i + 8, b'=', b' ');
                    first = Some(word);
                } else {
                    let at = hit.trailing_zeros() / 8;
                    i += at as usize;
                    // No byte of the key is a space, so `spaces` has no true match at or below
                    // `at` and hence no false one (see `matches`): its lowest bit past `at` is
                    // the first space after the '='.
                    let later = spaces & u64::MAX.checked_shl(8 * (at + 1)).unwrap_or(0);
                    value_end = Some(match later {
                        0 => token_start + 8,
                        _ => token_start + (later.trailing_zeros() / 8) as usize,
                    });
                    first = Some(word & !u64::MAX.checked_shl(8 * at).unwrap_or(0));
                }
            }
            None => i = find2(buf, i, b'=', b' '),
        }
        if i >= end || buf[i] == b' ' {
            out.push(Field {
                key: span(token_start, token_start),
                value: span(token_start, i),
                quoting: Quoting::Word,
            });
            dups.add(buf, out, base, Dups::WORD);
            continue;
        }
        let key = span(token_start, i);
        let key_len = i - token_start;
        let h = key_hash(first.unwrap_or_else(|| key_word(&buf[token_start..i])), key_len);
        i += 1; // '='
        let quote = buf.get(i).copied();
        let closing = match quote {
            Some(b'"') => {
                let close = find1(buf, i + 1, b'"');
                (close < end).then_some((close, Quoting::Double))
            }
            Some(b'\'') => memchr::memrchr(b'\'', &buf[i + 1..]).map(|p| (i + 1 + p, Quoting::Single)),
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
                i = match (braced, value_end) {
                    (Some(after), _) => after,
                    // `value_end` is a space found in the first word, or where that word ended.
                    (None, Some(known)) if known < token_start + 8 => known,
                    (None, Some(from)) => find1(buf, from, b' '),
                    (None, None) => find1(buf, i, b' '),
                };
                out.push(Field { key, value: span(value_start, i), quoting: Quoting::Bare });
            }
        }
        dups.add(buf, out, base, h);
        // The separating space, without another turn of the loop.
        if buf.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    dups.finish(buf, &out[base..])
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

    fn split_with(
        text: &str,
        split: fn(&[u8], usize, usize, &mut Vec<Field>) -> bool,
    ) -> Vec<(String, String, Quoting)> {
        let mut out = Vec::new();
        let _duplicates = split(text.as_bytes(), 0, text.len(), &mut out);
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
        assert!(!tokenize(text.as_bytes(), 0, 9, &mut out));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].value.get(text.as_bytes()), b"2");
    }

    /// The module's rules written plainly (a byte search per rule, a set for duplicates): the
    /// word-at-a-time tokenizer and its fused duplicate filter must agree with it exactly.
    fn model(buf: &[u8], start: usize, end: usize, braces: bool) -> (Vec<Field>, bool) {
        let text = &buf[..end];
        let first = |from: usize, what: &dyn Fn(u8) -> bool| {
            from + text[from..].iter().position(|&c| what(c)).unwrap_or(end - from)
        };
        let mut out = Vec::new();
        let mut i = start;
        while i < end {
            if text[i] == b' ' {
                i += 1;
                continue;
            }
            let stop = first(i, &|c| c == b'=' || c == b' ');
            if stop == end || text[stop] == b' ' {
                out.push(Field { key: span(i, i), value: span(i, stop), quoting: Quoting::Word });
                i = stop;
                continue;
            }
            let key = span(i, stop);
            let v = stop + 1;
            let double = text.get(v) == Some(&b'"') && first(v + 1, &|c| c == b'"') < end;
            let single = text.get(v) == Some(&b'\'') && text[v + 1..].contains(&b'\'');
            let braced = braces && text.get(v) == Some(&b'{');
            let close_brace = (v + 1..end).find(|&p| text[p] == b'}' && (p + 1 == end || text[p + 1] == b' '));
            let (value, quoting, next) = if double {
                let close = first(v + 1, &|c| c == b'"');
                (span(v + 1, close), Quoting::Double, close + 1)
            } else if single {
                let close = (v + 1..end).rev().find(|&p| text[p] == b'\'').unwrap_or(end);
                (span(v + 1, close), Quoting::Single, close + 1)
            } else if let (true, Some(p)) = (braced, close_brace) {
                (span(v, p + 1), Quoting::Bare, p + 1)
            } else {
                let stop = first(v, &|c| c == b' ');
                (span(v, stop), Quoting::Bare, stop)
            };
            out.push(Field { key, value, quoting });
            i = next;
        }
        let mut seen = HashSet::new();
        let duplicates = !out.iter().all(|f| seen.insert((f.quoting == Quoting::Word, f.key.get(buf))));
        (out, duplicates)
    }

    fn check_against_model(text: &[u8], cut: usize) {
        let start = cut % (text.len() + 1);
        let end = text.len() - (cut / 7) % (text.len() - start + 1);
        for braces in [false, true] {
            let mut got = vec![Field { key: span(0, 0), value: span(0, 0), quoting: Quoting::Word }];
            let split = if braces { tokenize_interpreted } else { tokenize };
            let duplicates = split(text, start, end, &mut got);
            assert_eq!(
                (got[1..].to_vec(), duplicates),
                model(text, start, end, braces),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn matches_the_model_on_real_records_and_long_ones() {
        let many: String = (0..100).map(|i| format!(" a{i}=x")).collect();
        for text in [
            &b"arch=c000003e syscall=257 success=yes exit=4 a0=ffffff9c items=1 comm=\"storm\" exe=\"/tmp/me/storm\" key=\"arbench\""[..],
            b"item=0 name=\"/etc/ld.so.cache\" inode=409705 dev=fe:00 mode=0100644 ouid=0 nametype=NORMAL cap_fp=0",
            b"pid=1 msg='op=x a='b' res=success'",
            b"avc:  denied  { read } for  pid=5 x x",
            many.as_bytes(),
            format!("{many} a57=y").as_bytes(),
            b"S={ fam=x }} Y=\"1 Y=2",
            b"",
            b"=",
            b"a=\"",
        ] {
            for cut in [0, 1, 3, 8, 9, 15, 70] {
                check_against_model(text, cut);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Bytes drawn mostly from the separators, so tokens, quotes, braces and repeated keys
        /// meet the eight-byte word boundaries in every way.
        #[test]
        fn matches_the_model(
            text in proptest::collection::vec(proptest::sample::select(b"  ==\"'{}ab1xA\xff\0".to_vec()), 0..90),
            cut in 0usize..1000,
        ) {
            check_against_model(&text, cut);
        }
    }
}
