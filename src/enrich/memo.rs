//! What one event of a process shares with the next: the SYSCALL record's subject (`ppid=` to
//! the end: pid, ids, tty, ses, comm, exe, key), the CWD and the PROCTITLE records, and with them
//! the whole `process` member (see [`Run`]). A process's events come
//! in runs — a busy process makes syscall after syscall, a storm is nothing else — and these
//! records are then byte for byte the last event's, so their decoded facts are too.
//!
//! Why a memo is safe here: both are pure functions of the record's bytes (no cache, table or
//! clock is read while decoding them), so equal bytes give equal facts, however long ago they were
//! stored. The process table, the names and the hashes are looked up every event as before: they
//! change under a process's feet (an exec, a name's TTL), its records do not.
//!
//! Bounded: each memo holds one record's worth (a tail, a value and its decoding), and the
//! writer's copy one `process` member.
//!
//! What it saves (docs/performance.md, "Enrichment's cost"): on the openat storm's events, about
//! a third of what enrichment added per event. An exec's records are not kept: the next event of
//! that process runs a new program, and an exec storm's next event is another process.

use super::user::Id;
use super::Text;
use crate::record::{FieldRef, Quoting};

/// How an event's record stood to its memo.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// The event has no such record (or its value is `(null)`, `?`).
    #[default]
    Absent,
    /// Decoded, and kept in the memo.
    Stored,
    /// The memo's bytes: its facts were taken from it.
    Repeated,
    /// Decoded, not kept (a subject whose facts are not its tail's alone, a user-space record's).
    Unkept,
}

impl Seen {
    /// This event's record gives the facts the last event's gave. A memo holds the last kept
    /// value, so a repeat is the last event's only if that event kept or repeated it.
    fn repeats(self, last: Seen) -> bool {
        match self {
            Seen::Repeated => matches!(last, Seen::Stored | Seen::Repeated),
            Seen::Absent => last == Seen::Absent,
            Seen::Stored | Seen::Unkept => false,
        }
    }
}

/// What the `process` member is made of, beside the memos' records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunKey<'a> {
    pub subject: Seen,
    pub cwd: Seen,
    pub title: Seen,
    /// The event has EXECVE records (a new program: never the last event's process).
    pub argv: bool,
    /// `process.parent`: the same (pid, entry version) has the same facts.
    pub parent: Option<(u32, u64)>,
    pub container: Option<&'a [u8]>,
    pub exe_sha256: Option<[u8; 32]>,
}

/// Numbers runs of events whose `process` members are the same, so that a writer can copy the
/// member it wrote for the last event instead of writing it again (src/format/json).
#[derive(Debug, Default)]
pub(super) struct Run {
    number: u64,
    subject: Seen,
    cwd: Seen,
    title: Seen,
    argv: bool,
    parent: Option<(u32, u64)>,
    container: Option<Vec<u8>>,
    exe_sha256: Option<[u8; 32]>,
}

impl Run {
    /// The run of an event made of `key`: the last event's if every part repeats, else a new one.
    pub fn next(&mut self, key: RunKey<'_>) -> u64 {
        let same = key.subject.repeats(self.subject)
            && key.cwd.repeats(self.cwd)
            && key.title.repeats(self.title)
            && !key.argv
            && !self.argv
            && key.parent == self.parent
            && key.container == self.container.as_deref()
            && key.exe_sha256 == self.exe_sha256;
        if !same {
            self.number = self.number.wrapping_add(1);
        }
        (self.subject, self.cwd, self.title, self.argv) = (key.subject, key.cwd, key.title, key.argv);
        (self.parent, self.exe_sha256) = (key.parent, key.exe_sha256);
        match (key.container, &mut self.container) {
            (None, c) => *c = None,
            (Some(k), Some(c)) if k == &c[..] => {}
            (Some(k), c) => *c = Some(k.to_vec()),
        }
        self.number
    }

    /// An event went by that was not interpreted in full (or the tables changed): the next one
    /// starts a run.
    pub fn interrupt(&mut self) {
        self.number = self.number.wrapping_add(1);
        self.subject = Seen::Unkept;
    }
}

/// The last SYSCALL record's subject whose facts depend on nothing but its tail's bytes.
#[derive(Debug, Default)]
pub(super) struct Subject {
    /// The record from its first `ppid=` key to the end; empty: nothing kept.
    tail: Vec<u8>,
    /// The interpretation's text length where the facts' text began (spans below are absolute).
    text_start: usize,
    /// Decoded comm, exe, tty and keys, as they were appended at `text_start`.
    text: Vec<u8>,
    pub facts: SubjectFacts,
    pub keys: Vec<Text>,
}

/// The facts a SYSCALL record's tail gives, as [`super::subject`] finds them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct SubjectFacts {
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub comm: Option<Text>,
    pub exe: Option<Text>,
    pub tty: Option<Text>,
    pub ses: Option<Id>,
    pub ids: [Option<Id>; 9],
}

impl Subject {
    /// True when `tail` is the kept one and its text can go where it went before.
    #[inline]
    pub fn matches(&self, tail: &[u8], text_len: usize) -> bool {
        !self.tail.is_empty() && text_len == self.text_start && self.tail == tail
    }

    /// Append the kept text (its spans are valid: [`Subject::matches`] checked where it goes).
    pub fn restore_text(&self, text: &mut Vec<u8>) {
        text.extend_from_slice(&self.text);
    }

    /// Keep `tail`'s facts, whose text is `text[text_start..]`.
    pub fn store(&mut self, tail: &[u8], text: &[u8], text_start: usize, facts: SubjectFacts, keys: &[Text]) {
        self.tail.clear();
        self.tail.extend_from_slice(tail);
        self.text.clear();
        self.text.extend_from_slice(text.get(text_start..).unwrap_or_default());
        self.text_start = text_start;
        self.facts = facts;
        self.keys.clear();
        self.keys.extend_from_slice(keys);
    }
}

/// The last PROCTITLE value and its decoded arguments.
#[derive(Debug, Default)]
pub(super) struct Title {
    kept: Value,
    /// Spans relative to the kept decoded text.
    args: Vec<Text>,
}

impl Title {
    /// [`super::proctitle::split_into`], from the memo when `field` is the last value; kept for
    /// the next event when `keep`.
    pub fn split_into(&mut self, field: &FieldRef<'_>, text: &mut Vec<u8>, title: &mut Vec<Text>, keep: bool) -> Seen {
        let start = text.len();
        if self.kept.restore(field, text) {
            let shift = |t: &Text| Text::new(start + t.start as usize, start + t.end as usize);
            title.extend(self.args.iter().map(shift));
            return Seen::Repeated;
        }
        let first = title.len();
        super::proctitle::split_into(field, text, title);
        if !keep {
            return Seen::Unkept;
        }
        self.kept.store(field, text.get(start..).unwrap_or_default());
        self.args.clear();
        let unshift = |t: &Text| Text::new(t.start as usize - start, t.end as usize - start);
        self.args.extend(title[first..].iter().map(unshift));
        Seen::Stored
    }
}

/// The last value of a string field and its decoded text (the CWD record's `cwd`).
#[derive(Debug, Default)]
pub(super) struct Value {
    value: Vec<u8>,
    quoting: Option<Quoting>,
    decoded: Vec<u8>,
}

impl Value {
    /// [`super::hex::untrusted_into`], from the memo when `field` is the last value; kept for the
    /// next event when `keep`.
    pub fn decode_into(&mut self, field: &FieldRef<'_>, text: &mut Vec<u8>, keep: bool) -> Seen {
        if self.restore(field, text) {
            return Seen::Repeated;
        }
        let start = text.len();
        super::hex::untrusted_into(field, text);
        if !keep {
            return Seen::Unkept;
        }
        self.store(field, text.get(start..).unwrap_or_default());
        Seen::Stored
    }

    /// Append the kept decoding when `field` is the kept value.
    fn restore(&self, field: &FieldRef<'_>, text: &mut Vec<u8>) -> bool {
        let same = self.quoting == Some(field.quoting) && self.value == field.value;
        if same {
            text.extend_from_slice(&self.decoded);
        }
        same
    }

    fn store(&mut self, field: &FieldRef<'_>, decoded: &[u8]) {
        self.quoting = Some(field.quoting);
        self.value.clear();
        self.value.extend_from_slice(field.value);
        self.decoded.clear();
        self.decoded.extend_from_slice(decoded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &[u8], quoting: Quoting) -> FieldRef<'_> {
        FieldRef { key: b"proctitle", value, quoting }
    }

    fn split(memo: &mut Title, prefix: &[u8], f: &FieldRef<'_>) -> Vec<Vec<u8>> {
        let mut text = prefix.to_vec();
        let mut title = Vec::new();
        memo.split_into(f, &mut text, &mut title, true);
        title.iter().map(|t| t.get(&text).to_vec()).collect()
    }

    #[test]
    fn a_title_from_the_memo_is_the_decoded_one_wherever_it_lands() {
        let mut memo = Title::default();
        let hex = field(b"2F62696E2F7368002D63006C73", Quoting::Bare);
        let want: Vec<Vec<u8>> = vec![b"/bin/sh".to_vec(), b"-c".to_vec(), b"ls".to_vec()];
        assert_eq!(split(&mut memo, b"", &hex), want);
        // Again, now from the memo, after other text: the spans move with it.
        assert_eq!(split(&mut memo, b"hostname", &hex), want);
        // The same bytes quoted are not hex: not the memo's answer.
        let quoted = field(b"2F62696E2F7368002D63006C73", Quoting::Double);
        assert_eq!(split(&mut memo, b"x", &quoted), vec![b"2F62696E2F7368002D63006C73".to_vec()]);
        let other = field(b"6C73", Quoting::Bare);
        assert_eq!(split(&mut memo, b"", &other), vec![b"ls".to_vec()]);
        assert_eq!(split(&mut memo, b"ab", &hex), want);
    }
}
