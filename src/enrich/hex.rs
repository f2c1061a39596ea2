//! The kernel's string encoding: a string that is safe to print is written in double quotes, any
//! other (a byte < 0x21 or > 0x7e, or a `"`) is written as bare uppercase hex of its bytes
//! (`audit_log_n_untrustedstring` in kernel/audit.c). So the quoting decides: quoted → the bytes as
//! they are, bare → hex to decode. `(null)` (no value) is neither and is the caller's business.
//!
//! Invariant: decoding never fails the event. Bare text that is not hex (odd length, a non-hex
//! digit: a user-space record's own bare word) is kept as written, which is what `ausearch -i`
//! shows for it too.

use crate::record::{FieldRef, Quoting};

/// Value of one hex digit (either case), or `None`.
#[inline]
fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Whether `text` is a non-empty, even-length run of hex digits.
pub fn is_hex(text: &[u8]) -> bool {
    !text.is_empty() && text.len().is_multiple_of(2) && text.iter().all(|&c| digit(c).is_some())
}

/// Append the bytes `text` encodes to `out`. `false`, with `out` unchanged, when `text` is not
/// hex (see [`is_hex`]).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    if !is_hex(text) {
        return false;
    }
    out.reserve(text.len() / 2);
    for pair in text.chunks_exact(2) {
        // Checked by is_hex above.
        let (hi, lo) = (digit(pair[0]).unwrap_or(0), digit(pair[1]).unwrap_or(0));
        out.push(hi << 4 | lo);
    }
    true
}

/// Append the string a field holds to `out`: a quoted value as written, a bare one hex-decoded
/// when it is hex, else as written.
pub fn untrusted_into(field: &FieldRef<'_>, out: &mut Vec<u8>) {
    if field.quoting == Quoting::Bare && decode_into(field.value, out) {
        return;
    }
    out.extend_from_slice(field.value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decoded(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        decode_into(text.as_bytes(), &mut out).then_some(out)
    }

    #[test]
    fn decodes_either_case_and_rejects_what_is_not_hex() {
        assert_eq!(decoded("2F62696E"), Some(b"/bin".to_vec()));
        assert_eq!(decoded("2f62696e"), Some(b"/bin".to_vec()));
        assert_eq!(decoded("00FF"), Some(vec![0, 0xff]));
        assert_eq!(decoded(""), None);
        assert_eq!(decoded("ABC"), None);
        assert_eq!(decoded("ZZ"), None);
        assert_eq!(decoded("(null)"), None);
    }

    #[test]
    fn quoting_decides() {
        let mut out = Vec::new();
        untrusted_into(&FieldRef { key: b"comm", value: b"CAFE", quoting: Quoting::Double }, &mut out);
        assert_eq!(out, b"CAFE");
        out.clear();
        untrusted_into(&FieldRef { key: b"comm", value: b"CAFE", quoting: Quoting::Bare }, &mut out);
        assert_eq!(out, [0xca, 0xfe]);
        out.clear();
        untrusted_into(&FieldRef { key: b"x", value: b"nothex", quoting: Quoting::Bare }, &mut out);
        assert_eq!(out, b"nothex");
    }

    proptest! {
        /// Whatever bytes the kernel hex-encodes (both cases) decode back to exactly them.
        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..256), lower in any::<bool>()) {
            let text: String = bytes.iter().map(|b| if lower { format!("{b:02x}") } else { format!("{b:02X}") }).collect();
            let mut out = vec![7];
            prop_assert!(decode_into(text.as_bytes(), &mut out));
            prop_assert_eq!(&out[1..], &bytes[..]);
        }

        /// Arbitrary text never panics and is either hex (decoded to half its length) or untouched.
        #[test]
        fn any_text_is_decoded_or_left_alone(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            if decode_into(&text, &mut out) {
                prop_assert_eq!(out.len() * 2, text.len());
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }
}
