//! `title` from PROCTITLE: the process's command line as the kernel read it from its memory
//! (`/proc/PID/cmdline`, at most 128 bytes: `audit_log_proctitle`), NUL-separated, hex-encoded.
//!
//! Unlike EXECVE's argv this is what the process says it is (a process may rewrite it), and it is
//! cut at 128 bytes; both are kept for that reason. Empty arguments in the middle are kept
//! (`-C uid  euid` has one); the NUL ending the last argument does not make an empty one.

use super::hex::untrusted_into;
use super::Text;
use crate::record::FieldRef;

/// Append the decoded `proctitle` value to `text` and one span per argument to `title`.
pub fn split_into(field: &FieldRef<'_>, text: &mut Vec<u8>, title: &mut Vec<Text>) {
    let start = text.len();
    untrusted_into(field, text);
    let mut end = text.len();
    if end > start && text[end - 1] == 0 {
        end -= 1;
    }
    let mut from = start;
    for_each_nul(&text[start..end], |nul| {
        title.push(Text::new(from, start + nul));
        from = start + nul + 1;
    });
    if from < end || from == start {
        title.push(Text::new(from, end));
    }
}

/// `f(i)` for each NUL at `bytes[i]`, in order. A title is at most 128 bytes with a few NULs:
/// sixteen bytes per step and a bit per NUL cost less than a `memchr` search per argument.
#[cfg(target_arch = "x86_64")]
fn for_each_nul(bytes: &[u8], mut f: impl FnMut(usize)) {
    let n = bytes.len();
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        for_each_bit(nul_mask(block), at, &mut f);
        at += 16;
    }
    if at == n {
        return;
    }
    if n >= 16 {
        // The last sixteen bytes, without the ones already seen.
        let seen = 16 - (n - at);
        for_each_bit(nul_mask(&bytes[n - 16..]) >> seen << seen, n - 16, &mut f);
    } else {
        bytes.iter().enumerate().filter(|(_, &c)| c == 0).for_each(|(i, _)| f(i));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn for_each_nul(bytes: &[u8], mut f: impl FnMut(usize)) {
    memchr::memchr_iter(0, bytes).for_each(|i| f(i));
}

#[cfg(target_arch = "x86_64")]
fn for_each_bit(mut mask: u32, base: usize, f: &mut impl FnMut(usize)) {
    while mask != 0 {
        f(base + mask.trailing_zeros() as usize);
        mask &= mask - 1;
    }
}

/// Bit `i` set when `block[i]` (sixteen bytes) is NUL.
#[cfg(target_arch = "x86_64")]
fn nul_mask(block: &[u8]) -> u32 {
    let (Some(lo), Some(hi)) = (block.first_chunk::<8>(), block.last_chunk::<8>()) else { return 0 };
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it (the target enables it).
    unsafe { nul_mask_sse2(u64::from_le_bytes(*lo), u64::from_le_bytes(*hi)) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn nul_mask_sse2(lo: u64, hi: u64) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi64x, _mm_setzero_si128};
    let v = _mm_set_epi64x(hi as i64, lo as i64);
    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Quoting;
    use proptest::prelude::*;

    fn title(value: &str, quoting: Quoting) -> Vec<String> {
        let (mut text, mut title) = (Vec::new(), Vec::new());
        split_into(&FieldRef { key: b"proctitle", value: value.as_bytes(), quoting }, &mut text, &mut title);
        title.iter().map(|t| String::from_utf8_lossy(t.get(&text)).into_owned()).collect()
    }

    #[test]
    fn splits_at_nul_keeping_empty_middle_arguments() {
        // From the corpus: `auditctl ... -C uid  euid` (an empty argument, as `ausearch -i` shows).
        assert_eq!(title("2D430075696400006575696400", Quoting::Bare), ["-C", "uid", "", "euid"]);
        assert_eq!(title("2F62696E2F7368", Quoting::Bare), ["/bin/sh"]);
        assert_eq!(title("-bash", Quoting::Double), ["-bash"]);
        assert_eq!(title("", Quoting::Double), [""]);
    }

    #[test]
    fn nuls_found_at_every_position_and_length() {
        for len in 0..40usize {
            for a in 0..len {
                for b in a..len {
                    let mut v = vec![b'x'; len];
                    v[a] = 0;
                    v[b] = 0;
                    let mut got = Vec::new();
                    for_each_nul(&v, |i| got.push(i));
                    let want: Vec<usize> = memchr::memchr_iter(0, &v).collect();
                    assert_eq!(got, want, "{len} {a} {b}");
                }
            }
        }
    }

    proptest! {
        /// NUL-joined arguments (no NULs inside) come back as they were.
        #[test]
        fn nul_joined_arguments_round_trip(args in proptest::collection::vec("[a-z ]{1,8}", 1..6)) {
            let joined: Vec<u8> = args.join("\0").into_bytes();
            let hex: String = joined.iter().map(|b| format!("{b:02X}")).collect();
            prop_assert_eq!(title(&hex, Quoting::Bare), args);
        }
    }
}
