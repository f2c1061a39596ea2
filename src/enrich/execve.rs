//! `argv` from an event's EXECVE records.
//!
//! How the kernel writes argv (`audit_log_execve_info`, kernel/auditsc.c): the first EXECVE record
//! starts with `argc=N`; each argument is `aI="text"` or `aI=HEX` (see [`super::hex`]). An
//! argument longer than the kernel's per-record budget is split: `aI_len=L` (the length as
//! logged: twice the argument's length when it is hex-encoded, as the corpus shows), then
//! pieces `aI[0]=…`, `aI[1]=…`, quoted or hex each, and both the arguments and the pieces of one
//! argument may continue in the next EXECVE record. Records of one event are kept in arrival order,
//! which is the kernel's order.
//!
//! Invariant: nothing is papered over. An argument index that skips one, a piece out of order, a
//! piece without its `aI_len`, a decoded length that differs from `aI_len`, or fewer arguments than
//! `argc` make [`Argv::incomplete`] true; argv then holds what did arrive, in order. The decoded
//! bytes are bounded by `max_bytes` (the raw records still carry everything): past it the current
//! argument is cut, later ones are left out, and [`Argv::truncated`] says so.

use super::hex::untrusted_into;
use super::Text;
use crate::record::{FieldRef, Record};

/// What reassembly found besides the arguments themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Argv {
    /// `argc=` of the first EXECVE record.
    pub argc: Option<u32>,
    /// Some argument or piece is missing or inconsistent (see the module doc).
    pub incomplete: bool,
    /// The decoded arguments reached `max_bytes` and were cut.
    pub truncated: bool,
}

/// What an EXECVE key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKey {
    Argc,
    /// `aI`
    Whole(u32),
    /// `aI_len`
    Len(u32),
    /// `aI[J]`
    Piece(u32, u32),
    Other,
}

fn number(text: &[u8]) -> Option<u32> {
    super::parse_u64(text).and_then(|n| u32::try_from(n).ok())
}

fn arg_key(key: &[u8]) -> ArgKey {
    if key == b"argc" {
        return ArgKey::Argc;
    }
    let Some(rest) = key.strip_prefix(b"a") else { return ArgKey::Other };
    if let Some(n) = rest.strip_suffix(b"_len").and_then(number) {
        return ArgKey::Len(n);
    }
    if let Some(inner) = rest.strip_suffix(b"]") {
        if let Some(open) = memchr::memchr(b'[', inner) {
            if let (Some(i), Some(j)) = (number(&inner[..open]), number(&inner[open + 1..])) {
                return ArgKey::Piece(i, j);
            }
        }
        return ArgKey::Other;
    }
    number(rest).map_or(ArgKey::Other, ArgKey::Whole)
}

/// An argument being assembled from `aI_len` and its pieces.
struct Split {
    index: u32,
    declared: Option<u64>,
    /// Bytes of the pieces as written: `aI_len` counts those (hex is twice the decoded length).
    written: u64,
    next_piece: u32,
    start: usize,
}

struct State<'o> {
    text: &'o mut Vec<u8>,
    args: &'o mut Vec<Text>,
    base: usize,
    max_bytes: usize,
    next_arg: u32,
    current: Option<Split>,
    out: Argv,
}

impl State<'_> {
    fn finish(&mut self) {
        let Some(split) = self.current.take() else { return };
        if !self.out.truncated && split.declared != Some(split.written) {
            self.out.incomplete = true;
        }
        self.args.push(Text::new(split.start, self.text.len()));
        self.next_arg = split.index.saturating_add(1);
    }

    fn expect(&mut self, index: u32) {
        if index != self.next_arg {
            self.out.incomplete = true;
        }
    }

    /// Append one value's bytes, cut at the budget.
    fn append(&mut self, field: &FieldRef<'_>) {
        if self.out.truncated {
            return;
        }
        let before = self.text.len();
        untrusted_into(field, self.text);
        let room = self.max_bytes.saturating_sub(before - self.base);
        if self.text.len() - before > room {
            self.text.truncate(before + room);
            self.out.truncated = true;
        }
    }

    fn field(&mut self, field: &FieldRef<'_>) {
        match arg_key(field.key) {
            ArgKey::Argc => {
                if self.out.argc.is_none() {
                    self.out.argc = number(field.value);
                }
            }
            ArgKey::Whole(i) => {
                self.finish();
                if self.out.truncated {
                    return;
                }
                self.expect(i);
                let start = self.text.len();
                self.append(field);
                self.args.push(Text::new(start, self.text.len()));
                self.next_arg = i.saturating_add(1);
            }
            ArgKey::Len(i) => {
                self.finish();
                if self.out.truncated {
                    return;
                }
                self.expect(i);
                let declared = super::parse_u64(field.value);
                self.current = Some(Split { index: i, declared, written: 0, next_piece: 0, start: self.text.len() });
            }
            ArgKey::Piece(i, j) => {
                if self.out.truncated {
                    return;
                }
                match &self.current {
                    Some(split) if split.index == i => {}
                    _ => {
                        // A piece with no `aI_len` before it: keep it, as an argument of its own.
                        self.finish();
                        self.expect(i);
                        self.out.incomplete = true;
                        let start = self.text.len();
                        self.current = Some(Split { index: i, declared: None, written: 0, next_piece: j, start });
                    }
                }
                if let Some(split) = &mut self.current {
                    if split.next_piece != j {
                        self.out.incomplete = true;
                    }
                    split.next_piece = j.saturating_add(1);
                    split.written += field.value.len() as u64;
                }
                self.append(field);
            }
            ArgKey::Other => {}
        }
    }
}

/// Append the decoded arguments of `records`' EXECVE records to `text` and their spans to `args`.
pub fn reassemble<'r>(
    records: impl Iterator<Item = &'r Record>,
    text: &mut Vec<u8>,
    args: &mut Vec<Text>,
    max_bytes: usize,
) -> Argv {
    let base = text.len();
    let first_arg = args.len();
    let mut state = State { text, args, base, max_bytes, next_arg: 0, current: None, out: Argv::default() };
    for record in records {
        for field in record.fields() {
            state.field(&field);
        }
    }
    state.finish();
    let mut out = state.out;
    let got = args.len() - first_arg;
    if !out.truncated && out.argc.is_none_or(|argc| argc as usize != got) {
        out.incomplete = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_netlink;
    use proptest::prelude::*;

    fn argv(bodies: &[&str], max: usize) -> (Vec<Vec<u8>>, Argv) {
        let records: Vec<Record> =
            bodies.iter().map(|b| parse_netlink(1309, format!("audit(1.000:1): {b}").as_bytes()).unwrap()).collect();
        let (mut text, mut args) = (Vec::new(), Vec::new());
        let out = reassemble(records.iter(), &mut text, &mut args, max);
        (args.iter().map(|t| t.get(&text).to_vec()).collect(), out)
    }

    fn strs(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn quoted_and_hex_arguments() {
        let (got, st) = argv(&[r#"argc=3 a0="ls" a1=2D6C61202F746D70 a2="x""#], 1 << 20);
        assert_eq!(got, strs(&["ls", "-la /tmp", "x"]));
        assert_eq!(st, Argv { argc: Some(3), incomplete: false, truncated: false });
    }

    #[test]
    fn split_arguments_across_records() {
        let (got, st) = argv(&[r#"argc=3 a0="/bin/echo" a1_len=12 a1[0]=414141"#, r#"a1[1]=424242 a2="z""#], 1 << 20);
        assert_eq!(got, strs(&["/bin/echo", "AAABBB", "z"]));
        assert!(!st.incomplete);
    }

    #[test]
    fn missing_pieces_and_arguments_are_flagged() {
        // Piece 1 of 3 missing.
        let (got, st) = argv(&[r#"argc=2 a0="e" a1_len=12 a1[0]=4141 a1[2]=4343"#], 1 << 20);
        assert_eq!(got, strs(&["e", "AACC"]));
        assert!(st.incomplete);
        // An argument skipped.
        let (got, st) = argv(&[r#"argc=3 a0="e" a2="z""#], 1 << 20);
        assert_eq!(got, strs(&["e", "z"]));
        assert!(st.incomplete);
        // Fewer arguments than argc (a lost EXECVE record).
        let (_, st) = argv(&[r#"argc=4 a0="e" a1="y""#], 1 << 20);
        assert!(st.incomplete);
        // Declared length disagrees.
        let (_, st) = argv(&[r#"argc=2 a0="e" a1_len=9 a1[0]=4141"#], 1 << 20);
        assert!(st.incomplete);
        // A piece without its length.
        let (got, st) = argv(&[r#"argc=2 a0="e" a1[0]=4141"#], 1 << 20);
        assert_eq!(got, strs(&["e", "AA"]));
        assert!(st.incomplete);
        // No argc at all.
        let (_, st) = argv(&[r#"a0="e""#], 1 << 20);
        assert!(st.incomplete);
    }

    #[test]
    fn decoded_bytes_are_bounded() {
        let (got, st) = argv(&[r#"argc=3 a0="abcdef" a1="ghij" a2="k""#], 8);
        assert_eq!(got, strs(&["abcdef", "gh"]));
        assert_eq!(st, Argv { argc: Some(3), incomplete: false, truncated: true });
    }

    #[test]
    fn keys_that_look_like_arguments() {
        assert_eq!(arg_key(b"a12"), ArgKey::Whole(12));
        assert_eq!(arg_key(b"a1_len"), ArgKey::Len(1));
        assert_eq!(arg_key(b"a1[20]"), ArgKey::Piece(1, 20));
        assert_eq!(arg_key(b"a"), ArgKey::Other);
        assert_eq!(arg_key(b"a1["), ArgKey::Other);
        assert_eq!(arg_key(b"a[1]"), ArgKey::Other);
        assert_eq!(arg_key(b"arch"), ArgKey::Other);
        assert_eq!(arg_key(b"a99999999999"), ArgKey::Other);
    }

    /// The kernel's encoding of `args` into EXECVE record bodies, split at `chunk` bytes of text
    /// per piece and `per_record` fields per record.
    fn kernel_encode(args: &[Vec<u8>], chunk: usize, per_record: usize) -> Vec<String> {
        // The kernel decides hex or quotes once per argument, then splits the argument's bytes.
        let hex = |b: &[u8]| !b.iter().all(|&c| (0x21..=0x7e).contains(&c) && c != b'"');
        let encode = |b: &[u8], as_hex: bool| {
            if as_hex {
                b.iter().map(|c| format!("{c:02X}")).collect()
            } else {
                format!("\"{}\"", String::from_utf8_lossy(b))
            }
        };
        let mut fields = vec![format!("argc={}", args.len())];
        for (i, a) in args.iter().enumerate() {
            let as_hex = hex(a);
            if a.len() <= chunk {
                fields.push(format!("a{i}={}", encode(a, as_hex)));
            } else {
                fields.push(format!("a{i}_len={}", if as_hex { a.len() * 2 } else { a.len() }));
                for (j, piece) in a.chunks(chunk).enumerate() {
                    fields.push(format!("a{i}[{j}]={}", encode(piece, as_hex)));
                }
            }
        }
        fields.chunks(per_record).map(|c| c.join(" ")).collect()
    }

    proptest! {
        /// Whatever the arguments and however the kernel splits them, argv comes back exactly.
        #[test]
        fn kernel_encoding_round_trips(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
            chunk in 1usize..16,
            per_record in 1usize..6,
        ) {
            let bodies = kernel_encode(&args, chunk, per_record);
            let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
            let (got, st) = argv(&bodies, 1 << 20);
            prop_assert_eq!(got, args);
            prop_assert_eq!(st, Argv { argc: Some(st.argc.unwrap_or(0)), incomplete: false, truncated: false });
        }

        /// Losing any one record of a split argv is always flagged.
        #[test]
        fn a_lost_record_is_flagged(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 2..8),
            chunk in 1usize..16,
            per_record in 1usize..4,
            lose in any::<prop::sample::Index>(),
        ) {
            let bodies = kernel_encode(&args, chunk, per_record);
            prop_assume!(bodies.len() > 1);
            let lost = lose.index(bodies.len());
            let kept: Vec<&str> = bodies.iter().enumerate().filter(|(i, _)| *i != lost).map(|(_, b)| b.as_str()).collect();
            let (_, st) = argv(&kept, 1 << 20);
            prop_assert!(st.incomplete);
        }
    }
}
