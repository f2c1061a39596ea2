//! One rules-file line → words, exactly as `auditctl -R` splits it.
//!
//! auditctl has no quoting: words are separated by spaces only (a tab is part of a word), a line
//! whose first word starts with `#` is a comment (a `#` later in the line is just a word, which
//! auditctl then rejects), and inside every word but the first `\ ` stands for a space and `\\`
//! for a backslash (auditctl.c preprocess/postprocess). Lines longer than auditctl's 6144-byte
//! buffer are reported instead of being split in two as fgets would.

/// auditctl's LINE_SIZE: longer lines are not read whole by auditctl.
pub const MAX_LINE: usize = 6143;

#[derive(Debug, PartialEq, Eq)]
pub enum Lexed {
    Blank,
    Comment,
    Words(Vec<String>),
}

const SPACE_MARK: char = '\u{7}';
const BACKSLASH_MARK: char = '\u{4}';

pub fn lex(line: &str) -> Lexed {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.trim_start_matches(' ').is_empty() {
        return Lexed::Blank;
    }
    // Mark escaped pairs before splitting so `\ ` does not separate words.
    let mut marked: Vec<char> = line.chars().collect();
    let mut escaped = false;
    for i in 0..marked.len() {
        if marked[i] == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if escaped {
            match marked[i] {
                ' ' => {
                    marked[i - 1] = SPACE_MARK;
                    marked[i] = SPACE_MARK;
                }
                '\\' => {
                    marked[i - 1] = BACKSLASH_MARK;
                    marked[i] = BACKSLASH_MARK;
                }
                _ => {}
            }
            escaped = false;
        }
    }
    let marked: String = marked.into_iter().collect();
    let mut words: Vec<String> = marked.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
    if words.first().is_some_and(|w| w.starts_with('#')) {
        return Lexed::Comment;
    }
    for w in words.iter_mut().skip(1) {
        *w = unmark(w);
    }
    Lexed::Words(words)
}

fn unmark(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut chars = w.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            SPACE_MARK | BACKSLASH_MARK => {
                // Marks come in pairs; each pair is one character.
                chars.next();
                out.push(if c == SPACE_MARK { ' ' } else { '\\' });
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(l: &str) -> Vec<String> {
        match lex(l) {
            Lexed::Words(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn blank_and_comments() {
        assert_eq!(lex(""), Lexed::Blank);
        assert_eq!(lex("    "), Lexed::Blank);
        assert_eq!(lex("# x"), Lexed::Comment);
        assert_eq!(lex("    # indented"), Lexed::Comment);
        assert_eq!(lex("#-w /etc"), Lexed::Comment);
    }

    #[test]
    fn spaces_only_separate() {
        assert_eq!(words("-w  /etc/hosts -p wa"), ["-w", "/etc/hosts", "-p", "wa"]);
        assert_eq!(words("-k a\tb"), ["-k", "a\tb"]);
        assert_eq!(words("-k x # y"), ["-k", "x", "#", "y"]);
        assert_eq!(words("\t"), ["\t"]);
    }

    #[test]
    fn escapes() {
        assert_eq!(words(r"-w /tmp/a\ b -p w"), ["-w", "/tmp/a b", "-p", "w"]);
        assert_eq!(words(r"-k a\\b"), ["-k", r"a\b"]);
        assert_eq!(words(r"-k a\qb"), ["-k", r"a\qb"]);
        assert_eq!(words(r"-k a\\\ b"), ["-k", r"a\ b"]);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::rules::parse::{parse_words, Host};
    use proptest::prelude::*;

    struct NoHost;
    impl Host for NoHost {
        fn is_dir(&self, _: &str) -> bool {
            false
        }
        fn uid_by_name(&self, _: &str) -> Option<u32> {
            None
        }
        fn gid_by_name(&self, _: &str) -> Option<u32> {
            None
        }
    }

    proptest! {
        /// Any line, however malformed, lexes and parses to a value or an error — never a panic.
        #[test]
        fn arbitrary_lines_never_panic(line in "(-[aAdSFCwWkpDbfer] ?|[a-z_]{1,8}[=!<>&]{0,2}[a-z0-9,/-]{0,10}| |\\\\|#)*") {
            if let Lexed::Words(w) = lex(&line) {
                let _ = parse_words(&w, &NoHost);
            }
        }
    }
}
