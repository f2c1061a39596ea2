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
    for nul in memchr::memchr_iter(0, &text[start..end]) {
        title.push(Text::new(from, start + nul));
        from = start + nul + 1;
    }
    if from < end || from == start {
        title.push(Text::new(from, end));
    }
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
