//! The JSON of the last event's records, kept position by position, so that a record whose bytes
//! repeat the last event's record at the same position is copied instead of written again.
//!
//! Why: a busy process's events repeat their records byte for byte after the stamp — the CWD,
//! the PROCTITLE, the EOE, a PATH of the same file, and in a storm the SYSCALL record too — and
//! writing a record's fields is the biggest part of the writer (callgrind on the openat storm:
//! `plain_field` ~7.5 k of the ~18 k instructions the writer spends per event;
//! docs/performance.md, thirteenth round).
//!
//! Why it is safe: a record's JSON is a pure function of its type and its bytes after the
//! `audit(…)` stamp (the fields, the ENRICHED half, `"text"`), and of the writer's `record_text`
//! setting, which is fixed for a writer. Nothing else is read: no clock, table or cache. Records
//! of a type this build does not know (whose name comes from before the stamp) are never kept.
//!
//! An event whose records all came from the memo is the last event's records again: the
//! enricher then keeps what those records gave it (`Enricher::interpret_repeat`).
//!
//! Bounded: [`SLOTS`] positions, each holding one record of at most [`MAX_KEPT`] bytes and its
//! JSON.

use crate::record::{MessageType, Record};

/// Positions of an event whose records are kept: openat and exec events have 5–8 records.
const SLOTS: usize = 8;

/// A record longer than this (a long EXECVE) is not kept: it rarely repeats, and the copy would
/// cost more than it saves on a miss.
const MAX_KEPT: usize = 2048;

#[derive(Debug, Default)]
pub(super) struct RecordMemo {
    slots: Vec<Slot>,
    /// How many records the last event had. An event of as many records, each of them the kept
    /// one at its position, is the last event's records again (each slot holds the last
    /// event's record: it was stored or matched at that position then).
    last_count: usize,
}

#[derive(Debug)]
struct Slot {
    /// `MessageType::NONE`: nothing kept.
    kind: MessageType,
    /// The record's bytes after its stamp.
    text: Vec<u8>,
    json: Vec<u8>,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot { kind: MessageType::NONE, text: Vec::new(), json: Vec::new() }
    }
}

impl RecordMemo {
    /// The kept JSON of `record` at `position`, when its bytes are the kept record's.
    #[inline]
    pub fn get(&self, position: usize, record: &Record) -> Option<&[u8]> {
        let slot = self.slots.get(position)?;
        (slot.kind == record.kind && slot.kind != MessageType::NONE && slot.text == record.after_stamp())
            .then_some(&slot.json[..])
    }

    /// The record count of the last event.
    pub fn last_count(&self) -> usize {
        self.last_count
    }

    /// An event of `count` records was written.
    pub fn set_last_count(&mut self, count: usize) {
        self.last_count = count;
    }

    /// Keep `json`, just written for `record` at `position`.
    pub fn store(&mut self, position: usize, record: &Record, json: &[u8]) {
        if position >= SLOTS {
            return;
        }
        if self.slots.len() <= position {
            self.slots.resize_with(position + 1, Slot::default);
        }
        let slot = &mut self.slots[position];
        let text = record.after_stamp();
        if record.kind == MessageType::NONE || text.len() > MAX_KEPT {
            slot.kind = MessageType::NONE;
            return;
        }
        slot.kind = record.kind;
        slot.text.clear();
        slot.text.extend_from_slice(text);
        slot.json.clear();
        slot.json.extend_from_slice(json);
    }
}

#[cfg(test)]
mod tests {
    use crate::format::JsonWriter;
    use crate::reassemble::{Output, ReassembleConfig, Reassembler};
    use crate::record::{parse_log_line, parse_netlink};
    use std::time::Instant;

    const CORPUS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log"));

    fn corpus_events() -> Vec<Output> {
        let mut r = Reassembler::new(&ReassembleConfig::default());
        let mut out = Vec::new();
        for l in CORPUS.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            r.push(parse_log_line(l).unwrap(), Instant::now(), &mut out);
        }
        r.flush(&mut out);
        out
    }

    fn one(kind: u16, serial: u32, body: &str) -> Output {
        let rec = parse_netlink(kind, format!("audit(1700000000.000:{serial}): {body}").as_bytes()).unwrap();
        Output::Event(crate::reassemble::Event {
            id: rec.id,
            node: None,
            records: vec![rec],
            incomplete: false,
            late: false,
            completion: crate::reassemble::Completion::EndOfEvent,
        })
    }

    /// Every corpus event, written by one long-lived writer (its memo warm with the last event's
    /// records, then holding this one's for the repeat) and by a fresh one: the same line.
    #[test]
    fn a_record_from_the_memo_is_the_record_written_afresh() {
        let events = corpus_events();
        for text in [false, true] {
            let mut kept = JsonWriter::new(Some("boot".into())).with_record_text(text);
            for (n, o) in events.iter().enumerate() {
                let fresh = JsonWriter::new(Some("boot".into())).with_record_text(text).write(o).to_vec();
                assert_eq!(kept.write(o), &fresh[..], "event {n}, record text {text}");
                assert_eq!(kept.write(o), &fresh[..], "event {n} again, record text {text}");
            }
        }
    }

    /// The memo answers for the same type and the same bytes only.
    #[test]
    fn the_same_bytes_of_another_type_or_a_changed_byte_are_written_afresh() {
        let mut w = JsonWriter::new(None);
        let cwd = String::from_utf8(w.write(&one(1307, 1, "cwd=\"/tmp\"")).to_vec()).unwrap();
        assert!(cwd.contains(r#"{"type":"CWD","type_id":1307,"fields":{"cwd":"/tmp"}}"#), "{cwd}");
        let path = String::from_utf8(w.write(&one(1302, 2, "cwd=\"/tmp\"")).to_vec()).unwrap();
        assert!(path.contains(r#"{"type":"PATH","type_id":1302,"fields":{"cwd":"/tmp"}}"#), "{path}");
        let hex = String::from_utf8(w.write(&one(1302, 3, "cwd=2F746D70")).to_vec()).unwrap();
        assert!(hex.contains(r#""fields":{"cwd":"2F746D70"},"hex":["cwd"]}"#), "{hex}");
        let quoted = String::from_utf8(w.write(&one(1302, 4, "cwd=\"2F746D70\"")).to_vec()).unwrap();
        assert!(quoted.contains(r#""fields":{"cwd":"2F746D70"}}"#), "{quoted}");
        // A record too long to keep, twice: written afresh both times, the same.
        let long = format!("cwd=\"/{}\"", "d".repeat(super::MAX_KEPT));
        let first = w.write(&one(1307, 5, &long)).to_vec();
        assert_eq!(w.write(&one(1307, 5, &long)), &first[..]);
        assert_eq!(JsonWriter::new(None).write(&one(1307, 5, &long)), &first[..]);
    }
}
