//! The kernel's string encoding: a string that is safe to print is written in double quotes, any
//! other (a byte < 0x21 or > 0x7e, or a `"`) is written as bare uppercase hex of its bytes
//! (`audit_log_n_untrustedstring` in kernel/audit.c). So the quoting decides: quoted → the bytes as
//! they are, bare → hex to decode. `(null)` (no value) is neither and is the caller's business.
//!
//! Invariant: decoding never fails the event. Bare text that is not hex (odd length, a non-hex
//! digit: a user-space record's own bare word) is kept as written, which is what `ausearch -i`
//! shows for it too.

use crate::record::{FieldRef, Quoting};

/// Hex digit values (either case); 0xFF for bytes that are not hex digits.
static DIGITS: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'A' as usize + i] = 10 + i as u8;
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Whether `text` is a non-empty, even-length run of hex digits.
pub fn is_hex(text: &[u8]) -> bool {
    !text.is_empty() && text.len().is_multiple_of(2) && text.iter().all(|&c| DIGITS[c as usize] != 0xFF)
}

/// Append the bytes `text` encodes to `out`. `false`, with `out` unchanged, when `text` is not
/// hex (see [`is_hex`]). One pass: decoded as it is checked, undone on the first non-digit.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return false;
    }
    let start = out.len();
    // Written in place into the grown buffer: no capacity check and no call per word (one
    // `extend_from_slice` per four bytes was a third of the decode's instructions: callgrind).
    out.resize(start + text.len() / 2, 0);
    if !decode_slice(text, &mut out[start..]) {
        out.truncate(start);
        return false;
    }
    true
}

/// `text` (even length) into `dst` (half its length); `false` on a non-digit.
fn decode_slice(text: &[u8], dst: &mut [u8]) -> bool {
    // Long values (EXECVE arguments, proctitle) sixteen digits at a time, then eight, then pairs.
    let mut blocks = text.chunks_exact(16);
    let mut outs = dst.chunks_exact_mut(8);
    for (block, to) in (&mut blocks).zip(&mut outs) {
        let (Some(lo), Some(hi)) = (block.first_chunk::<8>(), block.last_chunk::<8>()) else { return false };
        match decode16(u64::from_le_bytes(*lo), u64::from_le_bytes(*hi)) {
            Some(eight) => to.copy_from_slice(&eight.to_le_bytes()),
            None => return false,
        }
    }
    let (text, dst) = (blocks.remainder(), outs.into_remainder());
    let mut words = text.chunks_exact(8);
    let mut bytes = dst.chunks_exact_mut(4);
    for (word, to) in (&mut words).zip(&mut bytes) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        match decode8(u64::from_le_bytes(w)) {
            Some(four) => to.copy_from_slice(&four),
            None => return false,
        }
    }
    let mut digits = 0u8;
    for (pair, to) in words.remainder().chunks_exact(2).zip(bytes.into_remainder()) {
        let (hi, lo) = (DIGITS[pair[0] as usize], DIGITS[pair[1] as usize]);
        digits |= hi | lo;
        *to = hi << 4 | (lo & 0xF);
    }
    // A valid digit is ≤ 0x0F; any 0xFF sets the high bits.
    digits <= 0xF
}

/// Sixteen ASCII hex digits (`lo`: the first eight, first digit in the lowest byte) → their eight
/// bytes (first byte lowest), or `None` if any is not a hex digit. SSE2 (always on x86_64).
#[cfg(target_arch = "x86_64")]
#[inline]
fn decode16(lo: u64, hi: u64) -> Option<u64> {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it (the target enables it).
    unsafe { decode16_sse2(lo, hi) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn decode16_sse2(lo: u64, hi: u64) -> Option<u64> {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_andnot_si128, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_cvtsi128_si64, _mm_movemask_epi8,
        _mm_or_si128, _mm_packus_epi16, _mm_set1_epi16, _mm_set1_epi8, _mm_set_epi64x, _mm_slli_epi16, _mm_srli_epi16,
        _mm_sub_epi8,
    };
    let v = _mm_set_epi64x(hi as i64, lo as i64);
    // Signed compares: bytes ≥ 0x80 are negative and fall in neither range.
    let digit = _mm_and_si128(
        _mm_cmpgt_epi8(v, _mm_set1_epi8((b'0' - 1) as i8)),
        _mm_cmplt_epi8(v, _mm_set1_epi8((b'9' + 1) as i8)),
    );
    let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
    let letter = _mm_and_si128(
        _mm_cmpgt_epi8(lower, _mm_set1_epi8((b'a' - 1) as i8)),
        _mm_cmplt_epi8(lower, _mm_set1_epi8((b'f' + 1) as i8)),
    );
    if _mm_movemask_epi8(_mm_or_si128(digit, letter)) != 0xFFFF {
        return None;
    }
    let value = _mm_or_si128(
        _mm_and_si128(digit, _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8))),
        _mm_andnot_si128(digit, _mm_sub_epi8(lower, _mm_set1_epi8((b'a' - 10) as i8))),
    );
    // Each 16-bit lane: first digit (low byte) is the high nibble.
    let high = _mm_slli_epi16::<4>(_mm_and_si128(value, _mm_set1_epi16(0x00FF)));
    let bytes = _mm_or_si128(high, _mm_srli_epi16::<8>(value));
    Some(_mm_cvtsi128_si64(_mm_packus_epi16(bytes, bytes)) as u64)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn decode16(lo: u64, hi: u64) -> Option<u64> {
    let (a, b) = (decode8(lo)?, decode8(hi)?);
    Some(u64::from(u32::from_le_bytes(a)) | u64::from(u32::from_le_bytes(b)) << 32)
}

/// Eight ASCII hex digits (first digit in the lowest byte) → their four bytes, or `None` if any
/// is not a hex digit. SWAR: every step works on all eight bytes at once.
#[inline]
fn decode8(w: u64) -> Option<[u8; 4]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    if w & HIGHS != 0 {
        return None;
    }
    // For bytes < 0x80: high bit of (x + 0x80 - k) is set iff x >= k.
    let ge = |x: u64, k: u64| x.wrapping_add(ONES * (0x80 - k)) & HIGHS;
    let digit = ge(w, u64::from(b'0')) & !ge(w, u64::from(b'9') + 1);
    let lower = w | (ONES * 0x20);
    let letter = ge(lower, u64::from(b'a')) & !ge(lower, u64::from(b'f') + 1);
    if (digit | letter) != HIGHS {
        return None;
    }
    // '0'..'9' → low nibble; 'A'/'a'.. → low nibble + 9 (bit 6 marks letters).
    let v = (w & (ONES * 0x0F)) + ((w >> 6) & ONES) * 9;
    // Each 16-bit lane: first digit (low byte) is the high nibble.
    let lanes = ((v & 0x000F_000F_000F_000F) << 4) | ((v >> 8) & 0x000F_000F_000F_000F);
    Some([lanes as u8, (lanes >> 16) as u8, (lanes >> 32) as u8, (lanes >> 48) as u8])
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
        // The eight-digit path: every position of a bad digit, and both cases, all sixteen digits.
        assert_eq!(
            decoded("0123456789abcdefABCDEF00"),
            Some(vec![0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xab, 0xcd, 0xef, 0])
        );
        for bad in 0..16 {
            let mut text = b"4142434445464748".to_vec();
            for c in [b'g', b'G', b'/', b':', b'@', b'`', 0x80, 0xC6] {
                text[bad] = c;
                assert_eq!(decoded(std::str::from_utf8(&text).unwrap_or("zz")), None);
                let mut out = vec![9];
                assert!(!decode_into(&text, &mut out));
                assert_eq!(out, [9], "undone");
            }
        }
    }

    #[test]
    fn sixteen_digits_agree_with_eight() {
        let mut text = *b"0123456789abcdefABCDEF0042ff7F80";
        for at in 0..text.len() {
            for c in
                [b'0', b'9', b'a', b'f', b'A', b'F', b'g', b'G', b'/', b':', b'@', b'`', 0x10, 0x19, 0x80, 0xC6, 0xFF]
            {
                let keep = text[at];
                text[at] = c;
                let mut want = Vec::new();
                let ok = text.chunks_exact(8).all(|w| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(w);
                    decode8(u64::from_le_bytes(a)).map(|four| want.extend_from_slice(&four)).is_some()
                });
                let mut got = vec![5];
                assert_eq!(decode_into(&text, &mut got), ok, "{text:?}");
                if ok {
                    assert_eq!(&got[1..], &want[..]);
                } else {
                    assert_eq!(got, [5]);
                }
                text[at] = keep;
            }
        }
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
