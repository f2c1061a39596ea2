//! The last kernel record of each type, body and fields, so that a record whose body repeats the
//! last one of its type takes the kept fields instead of being tokenized again; and the last
//! record's stamp, which the other records of its event repeat.
//!
//! Why: a busy process's records repeat byte for byte after the stamp (the CWD, the PROCTITLE,
//! the EOE, and in a storm every record), and tokenizing is most of parsing (callgrind on the
//! openat storm: `Record::build` ~6 k of the ~8.5 k instructions parsing spends per event;
//! docs/performance.md, thirteenth round).
//!
//! The stamp (`audit(1796118282.188:681176): `, ~1.3 k instructions per openat event for its five
//! records) is the same for every record of an event. Equal bytes up to the end of the kept stamp
//! parse the same (the parser reads nothing past the space it ends with).
//!
//! Why it is safe: the tokenizer reads nothing but the body (`buf[body_start..end]`, see
//! [`super::fields::tokenize`]), so equal bodies give equal fields, shifted by where the body
//! starts. The kept spans are relative to the body's start.
//!
//! Bounded: [`SLOTS`] records (one per type, types sharing a slot replace each other), each of
//! at most [`MAX_KEPT`] bytes.

use super::fields::{Field, Span};
use super::EventId;

/// Kept records, indexed by type modulo this: the common kernel types (1300 SYSCALL, 1302 PATH,
/// 1307 CWD, 1309 EXECVE, 1320 EOE, 1327 PROCTITLE…) fall in different slots.
const SLOTS: usize = 16;

/// A body longer than this is not kept: long records (EXECVE) rarely repeat.
const MAX_KEPT: usize = 2048;

#[derive(Debug, Default)]
pub(super) struct LastRecords {
    slots: Vec<Slot>,
    /// The last stamp's bytes through the space after its `:`, and what they parsed to; empty:
    /// none kept.
    stamp: Vec<u8>,
    stamp_id: Option<EventId>,
}

#[derive(Debug, Default)]
struct Slot {
    /// 0: nothing kept (no kernel record has type 0).
    kind: u16,
    body: Vec<u8>,
    /// Spans relative to the body's start.
    fields: Vec<Field>,
    duplicate_keys: bool,
}

impl LastRecords {
    /// The event id and body start of `text` when it begins with the kept stamp.
    #[inline]
    pub fn stamp(&self, text: &[u8]) -> Option<(EventId, usize)> {
        let id = self.stamp_id?;
        text.starts_with(&self.stamp).then_some((id, self.stamp.len()))
    }

    /// Keep the stamp `text[..body_start]` parsed to `id`, when it ends with the space after
    /// its `:` (the kernel always writes one): without it, a later text with the space would
    /// parse to a later body start.
    pub fn keep_stamp(&mut self, text: &[u8], id: EventId, body_start: usize) {
        match text.get(..body_start) {
            Some(stamp) if stamp.ends_with(b": ") => {
                self.stamp.clear();
                self.stamp.extend_from_slice(stamp);
                self.stamp_id = Some(id);
            }
            _ => self.stamp_id = None,
        }
    }

    /// When `body` (of a record of type `kind`, starting at `body_start` of its buffer) is the
    /// kept one, append its fields to the empty `fields` and return its duplicate-keys flag.
    #[inline]
    pub fn restore(&self, kind: u16, body: &[u8], body_start: usize, fields: &mut Vec<Field>) -> Option<bool> {
        let slot = self.slots.get(usize::from(kind) % SLOTS)?;
        if slot.kind != kind || kind == 0 || slot.body != body {
            return None;
        }
        // Lengths were checked against MAX_RECORD_LEN, which fits u32.
        let at = body_start as u32;
        let shift = |s: Span| Span { start: s.start.wrapping_add(at), end: s.end.wrapping_add(at) };
        fields.extend(slot.fields.iter().map(|f| Field {
            key: shift(f.key),
            value: shift(f.value),
            quoting: f.quoting,
        }));
        Some(slot.duplicate_keys)
    }

    /// Keep the record of type `kind` whose `body` starting at `body_start` was tokenized into
    /// `fields`.
    pub fn keep(&mut self, kind: u16, body: &[u8], body_start: usize, fields: &[Field], duplicate_keys: bool) {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Slot::default);
        }
        let slot = &mut self.slots[usize::from(kind) % SLOTS];
        if body.len() > MAX_KEPT {
            slot.kind = 0;
            return;
        }
        slot.kind = kind;
        slot.body.clear();
        slot.body.extend_from_slice(body);
        let at = body_start as u32;
        let unshift = |s: Span| Span { start: s.start.wrapping_sub(at), end: s.end.wrapping_sub(at) };
        slot.fields.clear();
        slot.fields.extend(fields.iter().map(|f| Field {
            key: unshift(f.key),
            value: unshift(f.value),
            quoting: f.quoting,
        }));
        slot.duplicate_keys = duplicate_keys;
    }
}

#[cfg(test)]
mod tests {
    use crate::record::{parse_netlink, Record, RecordPool};

    const CORPUS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log"));

    fn pooled(kind: u16, payload: &[u8], pool: &mut RecordPool) -> Record {
        Record::try_from_netlink_pooled(kind, payload, pool).map_err(|(e, _)| e).unwrap()
    }

    /// Every corpus record as the kernel sends it, parsed through one pool (the record before it
    /// kept, then this one for its repeat) and afresh: the same record.
    #[test]
    fn a_record_from_the_kept_fields_is_the_record_parsed_afresh() {
        let mut pool = RecordPool::default();
        let mut n = 0;
        for line in CORPUS.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Some(at) = line.windows(4).position(|w| w == b"msg=") else { continue };
            let kind = crate::record::parse_log_line(line).unwrap().kind.0;
            let payload = &line[at + 4..];
            let fresh = parse_netlink(kind, payload).unwrap();
            for _ in 0..2 {
                let r = pooled(kind, payload, &mut pool);
                assert_eq!(r, fresh, "{}", String::from_utf8_lossy(line));
                pool.put(r);
            }
            n += 1;
        }
        assert!(n > 2000, "{n} records");
    }

    /// A repeated body after a stamp of another length: the kept spans move with the body.
    #[test]
    fn kept_fields_follow_the_body_wherever_it_starts() {
        let mut pool = RecordPool::default();
        let body = "avc:  denied  { read } for pid=1 comm=\"a b\" x=1 x=2 msg='op=y res=1'";
        for stamp in ["audit(1.000:1): ", "audit(1700000000.123:4294967295): ", "audit(2.500:77): "] {
            let payload = format!("{stamp}{body}");
            let r = pooled(1400, payload.as_bytes(), &mut pool);
            assert_eq!(r, parse_netlink(1400, payload.as_bytes()).unwrap(), "{payload}");
            assert!(r.has_duplicate_keys());
            assert_eq!(r.get(b"comm").map(|f| f.value), Some(&b"a b"[..]));
            pool.put(r);
        }
        // The same body as another type, and a body one byte longer: not the kept record's.
        let other = format!("audit(3.000:8): {body}");
        assert_eq!(pooled(1107, other.as_bytes(), &mut pool), parse_netlink(1107, other.as_bytes()).unwrap());
        let longer = format!("audit(3.000:9): {body} y");
        assert_eq!(pooled(1400, longer.as_bytes(), &mut pool), parse_netlink(1400, longer.as_bytes()).unwrap());
    }

    /// A stamp kept for the next record answers only for the same bytes through its space.
    #[test]
    fn a_kept_stamp_answers_for_its_own_bytes_only() {
        let mut pool = RecordPool::default();
        for payload in [
            "audit(1700000000.123:42):x=1",
            "audit(1700000000.123:42): x=1",
            "audit(1700000000.123:42): x=1",
            "audit(1700000000.123:42):  x=1",
            "audit(1700000000.123:421): x=1",
            "audit(1700000000.123:4): x=1",
            "audit(1700000000.124:4): x=1",
        ] {
            let r = pooled(1300, payload.as_bytes(), &mut pool);
            assert_eq!(r, parse_netlink(1300, payload.as_bytes()).unwrap(), "{payload}");
            pool.put(r);
        }
        // A stamp that does not parse is an error, whatever was kept.
        assert!(Record::try_from_netlink_pooled(1300, b"audit(1700000000.123:4", &mut pool).is_err());
    }
}
