//! One audit record, parsed from a kernel netlink payload or an audit.log line.
//!
//! Why a record keeps its input: the kernel's text is the evidence. A [`Record`] owns the bytes it
//! was parsed from (payload or line, never re-encoded) and describes its fields as spans into them,
//! so parsing costs two allocations per record however many fields it has, non-UTF-8 bytes survive
//! untouched, and interpretation (hex, uids, syscall names) is left to enrichment.
//!
//! Invariants:
//! - fields are in the order written, repeated keys included;
//! - auditd's ENRICHED form (`raw fields` 0x1d `interpreted fields`) keeps both halves, the
//!   interpreted half as [`Record::interpreted`], where a braced value (`SADDR={ … }`) is one value;
//! - a log line whose type name is well formed but unknown (a newer auditd's) is still a record:
//!   [`Record::type_name`] is the name as written and [`Record::type_id`] is `None`;
//! - a log line's line ending (`\n`, `\r\n`, or a lone trailing `\r`) is not part of the record;
//! - a record never exceeds [`MAX_RECORD_LEN`] bytes (the kernel's limit is 8970; the bound
//!   protects replay from a corrupt file).

mod event_id;
mod fields;
mod header;
mod message_type;
mod repeats;

pub use event_id::{EventId, StampError};
pub use fields::{FieldRef, Quoting};
pub use message_type::MessageType;
use std::borrow::Cow;

use fields::Field;

/// The longest payload or log line accepted as one record.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// auditd's separator between raw and interpreted fields in `log_format = ENRICHED`.
const ENRICHED_SEPARATOR: u8 = 0x1d;

/// Why a payload or line is not a record. Byte offsets are positions in that payload or line;
/// the caller adds the line number or datagram it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("record of {0} bytes exceeds the {MAX_RECORD_LEN} byte limit")]
    TooLong(usize),
    #[error("expected \"type=\" at byte {0}")]
    MissingType(usize),
    #[error("bad record type name {name:?} at byte {at}")]
    BadTypeName { name: String, at: usize },
    #[error("expected \"msg=\" at byte {0}")]
    MissingMsg(usize),
    #[error("bad audit(...) stamp: {source}")]
    Stamp { at: usize, source: StampError },
    #[error("expected ':' after the audit(...) stamp at byte {0}")]
    MissingColon(usize),
}

/// One audit record: type, event id, optional node, fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// [`MessageType::NONE`] when the log line's type name is not known (see [`Record::type_id`]).
    pub kind: MessageType,
    pub id: EventId,
    /// `node=` of an audit.log line (auditd's `name_format`); kernel payloads have none.
    pub node: Option<Box<[u8]>>,
    /// The input, as received (trailing NULs and line ending removed).
    buf: Vec<u8>,
    body_start: u32,
    fields: Vec<Field>,
    /// `fields[interpreted_from..]` came after the ENRICHED separator.
    interpreted_from: u32,
    duplicate_keys: bool,
}

/// What the daemon's parse reuses: spent record buffers, and the last record of each type (a
/// repeated body takes its fields, see [`repeats`]).
///
/// Spent record buffers are kept for reuse, so that a daemon parsing records at a steady rate does
/// not allocate and free two buffers per record. Bounded in the bytes it keeps.
///
/// A loop iteration parses a whole hand-off (up to `[netlink] hand_off_bytes`, a few thousand
/// records) before its events are written and their buffers come back, so the pool must hold
/// that many; and a fresh buffer starts large enough for a common record, so that a buffer first
/// used by a short EOE does not grow again for the next SYSCALL (both showed up as malloc in the
/// profile, docs/performance.md).
#[derive(Debug, Default)]
pub struct RecordPool {
    bufs: Vec<Vec<u8>>,
    fields: Vec<Vec<Field>>,
    /// Capacity held by `bufs` and `fields`, in bytes.
    kept_bytes: usize,
    last: repeats::LastRecords,
}

impl RecordPool {
    /// Bytes of spare buffers kept at most; beyond that spent records are simply freed.
    const KEEP_BYTES: usize = 4 << 20;
    /// A buffer grown past this (a long EXECVE record) is freed rather than kept.
    const KEEP_ONE_BYTES: usize = 16 << 10;
    /// Initial capacity of a new text buffer and field list: most records fit.
    const FRESH_BYTES: usize = 512;
    const FRESH_FIELDS: usize = 40;

    /// Give a spent record's buffers back.
    pub fn put(&mut self, record: Record) {
        let Record { mut buf, mut fields, .. } = record;
        let buf_bytes = buf.capacity();
        if buf_bytes <= Self::KEEP_ONE_BYTES && self.kept_bytes + buf_bytes <= Self::KEEP_BYTES {
            buf.clear();
            self.kept_bytes += buf_bytes;
            self.bufs.push(buf);
        }
        let field_bytes = fields.capacity() * std::mem::size_of::<Field>();
        if field_bytes <= Self::KEEP_ONE_BYTES && self.kept_bytes + field_bytes <= Self::KEEP_BYTES {
            fields.clear();
            self.kept_bytes += field_bytes;
            self.fields.push(fields);
        }
    }

    fn buf(&mut self) -> Vec<u8> {
        match self.bufs.pop() {
            Some(b) => {
                self.kept_bytes -= b.capacity();
                b
            }
            None => Vec::with_capacity(Self::FRESH_BYTES),
        }
    }

    fn fields(&mut self) -> Vec<Field> {
        match self.fields.pop() {
            Some(f) => {
                self.kept_bytes -= f.capacity() * std::mem::size_of::<Field>();
                f
            }
            None => Vec::with_capacity(Self::FRESH_FIELDS),
        }
    }
}

/// Parse a kernel payload (`audit(…): k=v …`) of netlink message type `kind`.
pub fn parse_netlink(kind: u16, payload: &[u8]) -> Result<Record, RecordError> {
    Record::from_netlink(kind, payload.to_vec())
}

/// Parse one audit.log line (`[node=X ]type=NAME msg=audit(…): …`, RAW or ENRICHED).
pub fn parse_log_line(line: &[u8]) -> Result<Record, RecordError> {
    Record::from_log_line(line.to_vec())
}

/// Length of a netlink payload's text: the kernel may NUL-terminate (and pads nothing we need), so
/// the text ends before the trailing NUL run.
fn text_len(payload: &[u8]) -> usize {
    payload.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

impl Record {
    /// Like [`parse_netlink`], taking ownership of the payload buffer to avoid a copy.
    pub fn from_netlink(kind: u16, payload: Vec<u8>) -> Result<Record, RecordError> {
        Record::try_from_netlink(kind, payload).map_err(|(e, _)| e)
    }

    /// Like [`Record::from_netlink`], but a payload that is not a record is handed back with the
    /// error, so the daemon can keep the kernel's bytes instead of dropping them.
    pub fn try_from_netlink(kind: u16, mut payload: Vec<u8>) -> Result<Record, (RecordError, Vec<u8>)> {
        payload.truncate(text_len(&payload));
        Record::netlink_into(kind, payload, Vec::new())
    }

    /// Like [`parse_log_line`], taking ownership of the line buffer.
    pub fn from_log_line(mut line: Vec<u8>) -> Result<Record, RecordError> {
        // Callers may hand the line with or without its `\n`; a `\r` before it is a CRLF file's.
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        check_len(&line)?;
        let head = header::parse_line_header(&line)?;
        let node = head.node.map(|(start, end)| Box::from(&line[start..end]));
        let separator = memchr::memchr(ENRICHED_SEPARATOR, &line[head.body_start..]).map(|p| head.body_start + p);
        let (raw_end, interpreted) = match separator {
            Some(sep) => (sep, Some(sep + 1)),
            None => (line.len(), None),
        };
        Ok(Record::build(head.kind, head.id, node, line, head.body_start, raw_end, interpreted, Vec::new()))
    }

    /// [`Record::try_from_netlink`] copying `payload` into buffers from `pool`.
    pub fn try_from_netlink_pooled(
        kind: u16,
        payload: &[u8],
        pool: &mut RecordPool,
    ) -> Result<Record, (RecordError, Vec<u8>)> {
        // Trailing NULs are dropped, and the stamp parsed, from the source before the copy: its
        // first loads right after the copy waited for the copy's stores (perf, processing thread
        // at 20 k openat/s: `parse_stamp` 6.4 % of its samples, 57 % of them on its first load).
        let text = &payload[..text_len(payload)];
        let parsed = check_len(text).and_then(|()| match pool.last.stamp(text) {
            Some(stamp) => Ok(stamp),
            None => {
                let (id, body_start) = header::parse_stamp_at(text, 0, header::AfterStamp::Colon)?;
                pool.last.keep_stamp(text, id, body_start);
                Ok((id, body_start))
            }
        });
        let mut buf = pool.buf();
        buf.extend_from_slice(text);
        let (id, body_start) = match parsed {
            Ok(stamp) => stamp,
            Err(e) => return Err((e, buf)),
        };
        let end = buf.len();
        let body = &text[body_start..];
        let mut fields = pool.fields();
        if let Some(duplicate_keys) = pool.last.restore(kind, body, body_start, &mut fields) {
            let interpreted_from = fields.len() as u32;
            let (body_start, kind) = (body_start as u32, MessageType(kind));
            return Ok(Record { kind, id, node: None, buf, body_start, fields, interpreted_from, duplicate_keys });
        }
        let record = Record::build(MessageType(kind), id, None, buf, body_start, end, None, fields);
        pool.last.keep(kind, body, body_start, &record.fields, record.duplicate_keys);
        Ok(record)
    }

    /// `payload` without trailing NULs ([`text_len`]): both callers strip them, the pooled one before its copy
    /// (scanning the copy again only waited on the copy's stores).
    fn netlink_into(kind: u16, payload: Vec<u8>, fields: Vec<Field>) -> Result<Record, (RecordError, Vec<u8>)> {
        let parsed = check_len(&payload).and_then(|()| header::parse_stamp_at(&payload, 0, header::AfterStamp::Colon));
        match parsed {
            Ok((id, body_start)) => {
                let end = payload.len();
                Ok(Record::build(MessageType(kind), id, None, payload, body_start, end, None, fields))
            }
            Err(e) => Err((e, payload)),
        }
    }

    /// `fields` is an empty vector to fill (a reused one from a pool, or a new one).
    #[allow(clippy::too_many_arguments)]
    fn build(
        kind: MessageType,
        id: EventId,
        node: Option<Box<[u8]>>,
        buf: Vec<u8>,
        body_start: usize,
        raw_end: usize,
        interpreted_start: Option<usize>,
        mut fields: Vec<Field>,
    ) -> Record {
        if fields.capacity() == 0 {
            fields.reserve(estimate_fields(&buf[body_start..raw_end]));
        }
        debug_assert!(fields.is_empty());
        let mut duplicate_keys = fields::tokenize(&buf, body_start, raw_end, &mut fields);
        let interpreted_from = fields.len();
        if let Some(start) = interpreted_start {
            duplicate_keys |= fields::tokenize_interpreted(&buf, start, buf.len(), &mut fields);
        }
        // Lengths were checked against MAX_RECORD_LEN, which fits u32.
        Record {
            kind,
            id,
            node,
            buf,
            body_start: body_start as u32,
            fields,
            interpreted_from: interpreted_from as u32,
            duplicate_keys,
        }
    }

    /// The numeric type (`nlmsg_type`), or `None` for a log line whose type name is not known.
    #[inline]
    pub fn type_id(&self) -> Option<u16> {
        if self.kind != MessageType::NONE {
            return Some(self.kind.0);
        }
        match self.unknown_name() {
            Some(_) => None,
            None => Some(self.kind.0),
        }
    }

    /// The name as written of a log line whose type name is not in the table.
    #[cold]
    fn unknown_name(&self) -> Option<&[u8]> {
        if self.kind != MessageType::NONE {
            return None;
        }
        header::type_name_span(&self.buf).map(|(start, end)| &self.buf[start..end])
    }

    /// The type name: auditd's name for the number (`SYSCALL`, `UNKNOWN[1999]`), or for a log line
    /// with a name not in the table, that name as written (`LANDLOCK_ACCESS`).
    pub fn type_name(&self) -> Cow<'_, str> {
        match self.unknown_name() {
            // The header accepted only ASCII name bytes.
            Some(name) => String::from_utf8_lossy(name),
            None => self.kind.name(),
        }
    }

    /// The fields as written by the kernel or user space, in order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = FieldRef<'_>> + '_ {
        self.fields[..self.interpreted_from as usize].iter().map(|f| self.field_ref(f))
    }

    /// auditd's interpreted fields (ENRICHED log format), in order; empty otherwise.
    pub fn interpreted(&self) -> impl ExactSizeIterator<Item = FieldRef<'_>> + '_ {
        self.fields[self.interpreted_from as usize..].iter().map(|f| self.field_ref(f))
    }

    /// The first raw field named `key`.
    pub fn get(&self, key: &[u8]) -> Option<FieldRef<'_>> {
        self.fields().find(|f| f.key == key && f.quoting != Quoting::Word)
    }

    /// True when some key occurs more than once (in the raw or in the interpreted half).
    pub fn has_duplicate_keys(&self) -> bool {
        self.duplicate_keys
    }

    /// The message text after `audit(…): `, including any ENRICHED part.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body_start as usize..]
    }

    /// Append this record as an audit.log line (auditd's RAW format plus any ENRICHED part, no
    /// newline): the text it was parsed from, whether it came from a log line or a kernel payload
    /// (a legacy line without the `:` after the stamp is written with it).
    pub fn write_log_line(&self, out: &mut Vec<u8>) {
        if let Some(node) = &self.node {
            out.extend_from_slice(b"node=");
            out.extend_from_slice(node);
            out.push(b' ');
        }
        out.extend_from_slice(b"type=");
        out.extend_from_slice(self.type_name().as_bytes());
        out.extend_from_slice(b" msg=audit(");
        out.extend_from_slice(self.id.to_string().as_bytes());
        out.extend_from_slice(b"): ");
        out.extend_from_slice(self.body());
    }

    /// Everything after the `)` that closes the `audit(…)` stamp, as received: normally `": "`
    /// and the body (ENRICHED part included), but also a legacy line's `" config changed…"` or a
    /// bare `":"` with no space: the bytes that make an audit.log line exactly what it was.
    pub fn after_stamp(&self) -> &[u8] {
        let start = self.body_start as usize;
        match memchr::memrchr(b')', &self.buf[..start]) {
            Some(p) => &self.buf[p + 1..],
            None => self.body(),
        }
    }

    /// The bytes from the key of raw field `index` (as [`Record::fields`] counts) to the end of the
    /// record; empty if there is no such field. Equal bytes from a key on are equal fields from it
    /// on (the tokenizer is at a key there, and a value never reaches past the record's end).
    pub fn text_from_field(&self, index: usize) -> &[u8] {
        match self.fields[..self.interpreted_from as usize].get(index) {
            Some(f) => self.buf.get(f.key.start as usize..).unwrap_or_default(),
            None => &[],
        }
    }

    /// The payload or log line this record was parsed from.
    pub fn raw(&self) -> &[u8] {
        &self.buf
    }

    fn field_ref<'a>(&'a self, f: &Field) -> FieldRef<'a> {
        FieldRef { key: f.key.get(&self.buf), value: f.value.get(&self.buf), quoting: f.quoting }
    }
}

fn check_len(buf: &[u8]) -> Result<(), RecordError> {
    if buf.is_empty() {
        return Err(RecordError::Empty);
    }
    if buf.len() > MAX_RECORD_LEN {
        return Err(RecordError::TooLong(buf.len()));
    }
    Ok(())
}

/// A cheap upper-ish bound on the field count (one per '=' plus a little) to size the Vec once.
fn estimate_fields(body: &[u8]) -> usize {
    memchr::memchr_iter(b'=', body).count() + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(r: &Record) -> Vec<(String, String)> {
        r.fields()
            .map(|f| (String::from_utf8_lossy(f.key).into_owned(), String::from_utf8_lossy(f.value).into_owned()))
            .collect()
    }

    #[test]
    fn parses_a_kernel_payload() {
        let r =
            parse_netlink(1300, b"audit(1795374595.144:31353): arch=c000003e syscall=44 comm=\"python3\" key=(null)")
                .unwrap();
        assert_eq!(r.kind, MessageType::SYSCALL);
        assert_eq!(r.id, EventId { seconds: 1795374595, millis: 144, serial: 31353 });
        assert_eq!(r.node, None);
        assert_eq!(r.get(b"comm").map(|f| f.value), Some(&b"python3"[..]));
        assert_eq!(r.get(b"comm").map(|f| f.quoting), Some(Quoting::Double));
        assert!(r.get(b"key").is_some_and(|f| f.is_null()));
        assert_eq!(r.fields().len(), 4);
        assert!(!r.has_duplicate_keys());
    }

    #[test]
    fn eoe_payload_has_no_fields_and_trailing_nuls_are_dropped() {
        let r = parse_netlink(1320, b"audit(1795374595.144:31353): \0\0").unwrap();
        assert_eq!(r.fields().len(), 0);
        assert_eq!(r.body(), b"");
        let r = parse_netlink(1320, b"audit(1795374595.144:31353):").unwrap();
        assert_eq!(r.fields().len(), 0);
    }

    #[test]
    fn keeps_non_utf8_bytes() {
        let r = parse_netlink(1005, b"audit(1.000:1): pid=1 msg='caf\xe9 \xff'").unwrap();
        assert_eq!(r.get(b"msg").map(|f| f.value), Some(&b"caf\xe9 \xff"[..]));
    }

    #[test]
    fn parses_a_log_line_with_node() {
        let r = parse_log_line(b"node=web-1 type=CWD msg=audit(1795374595.448:31357): cwd=\"/root\"\n").unwrap();
        assert_eq!(r.node.as_deref(), Some(&b"web-1"[..]));
        assert_eq!(r.kind, MessageType::CWD);
        assert_eq!(kv(&r), vec![("cwd".into(), "/root".into())]);
        assert_eq!(r.raw(), b"node=web-1 type=CWD msg=audit(1795374595.448:31357): cwd=\"/root\"");
    }

    #[test]
    fn parses_user_record_msg() {
        let line = b"type=USER_LOGIN msg=audit(1795374595.880:31502): pid=882 uid=0 auid=4242 ses=34 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=localhost addr=127.0.0.1 terminal=/dev/pts/1 res=success'";
        let r = parse_log_line(line).unwrap();
        let f = r.get(b"msg").unwrap();
        assert_eq!(f.quoting, Quoting::Single);
        assert_eq!(
            f.value,
            &b"op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=localhost addr=127.0.0.1 terminal=/dev/pts/1 res=success"[..]
        );
        assert_eq!(r.fields().len(), 5);
    }

    #[test]
    fn prints_back_as_a_log_line() {
        let line = b"node=n1 type=UNKNOWN[1999] msg=audit(1.005:42): a=\"b c\" msg='x y'\x1dA=\"z\"";
        let mut out = Vec::new();
        parse_log_line(line).unwrap().write_log_line(&mut out);
        assert_eq!(out, line);
        out.clear();
        parse_netlink(1300, b"audit(1.005:42): syscall=59").unwrap().write_log_line(&mut out);
        assert_eq!(out, b"type=SYSCALL msg=audit(1.005:42): syscall=59");
    }

    #[test]
    fn parses_unknown_type_names() {
        let r = parse_log_line(b"type=UNKNOWN[1999] msg=audit(1.000:2): x=1").unwrap();
        assert_eq!(r.kind, MessageType(1999));
    }

    #[test]
    fn enriched_lines_keep_both_halves() {
        let line = b"type=SYSCALL msg=audit(1.000:2): arch=c000003e syscall=59 auid=1000\x1dARCH=x86_64 SYSCALL=execve AUID=\"alice\"";
        let r = parse_log_line(line).unwrap();
        assert_eq!(
            kv(&r),
            vec![("arch".into(), "c000003e".into()), ("syscall".into(), "59".into()), ("auid".into(), "1000".into())]
        );
        let interpreted: Vec<_> = r.interpreted().map(|f| (f.key.to_vec(), f.value.to_vec())).collect();
        assert_eq!(
            interpreted,
            vec![
                (b"ARCH".to_vec(), b"x86_64".to_vec()),
                (b"SYSCALL".to_vec(), b"execve".to_vec()),
                (b"AUID".to_vec(), b"alice".to_vec())
            ]
        );
    }

    #[test]
    fn enriched_user_record_msg_stops_at_the_separator() {
        let line = b"type=USER_CMD msg=audit(1.000:2): pid=1 msg='cmd=6964 res=success'\x1dUID=\"root\" AUID=\"unset\"";
        let r = parse_log_line(line).unwrap();
        assert_eq!(r.get(b"msg").map(|f| f.value), Some(&b"cmd=6964 res=success"[..]));
        assert_eq!(r.interpreted().len(), 2);
    }

    #[test]
    fn legacy_lines_without_the_colon_are_records() {
        // auditd < 3.0 writes its own records so (go-libaudit's audit-rhel7.log has one).
        let line = b"type=DAEMON_CONFIG msg=audit(1490239800.477:34) config changed, auid=0 pid=1512 res=success";
        let r = parse_log_line(line).unwrap();
        assert_eq!(r.kind, MessageType::DAEMON_CONFIG);
        assert_eq!(r.id, EventId { seconds: 1490239800, millis: 477, serial: 34 });
        assert_eq!(r.body(), b"config changed, auid=0 pid=1512 res=success");
        assert_eq!(r.get(b"pid").map(|f| f.value), Some(&b"1512"[..]));
        assert_eq!(r.fields().filter(|f| f.quoting == Quoting::Word).count(), 2);
        let r = parse_log_line(b"type=DAEMON_END msg=audit(1.000:1)").unwrap();
        assert_eq!((r.body(), r.fields().len()), (&b""[..], 0));
    }

    #[test]
    fn unknown_type_names_keep_the_record_and_the_name() {
        let line = b"type=LANDLOCK_RULESET msg=audit(1.000:7): domain=1a op=x\r\n";
        let r = parse_log_line(line).unwrap();
        assert_eq!((r.type_id(), r.kind), (None, MessageType::NONE));
        assert_eq!(r.type_name(), "LANDLOCK_RULESET");
        assert_eq!(r.get(b"op").map(|f| f.value), Some(&b"x"[..]));
        let mut out = Vec::new();
        r.write_log_line(&mut out);
        assert_eq!(out, b"type=LANDLOCK_RULESET msg=audit(1.000:7): domain=1a op=x");
        // Known names, UNKNOWN[n] and netlink records have their number.
        let r = parse_log_line(b"type=LANDLOCK_ACCESS msg=audit(1.000:7): x=1").unwrap();
        assert_eq!((r.type_id(), r.type_name()), (Some(1423), "LANDLOCK_ACCESS".into()));
        let r = parse_log_line(b"type=UNKNOWN[1420] msg=audit(1.000:7): x=1").unwrap();
        assert_eq!((r.type_id(), r.type_name()), (Some(1420), "UNKNOWN[1420]".into()));
        let r = parse_log_line(b"type=UNKNOWN[70000] msg=audit(1.000:7): x=1").unwrap();
        assert_eq!((r.type_id(), r.type_name()), (None, "UNKNOWN[70000]".into()));
        assert_eq!(parse_netlink(1300, b"audit(1.000:7): x=1").unwrap().type_id(), Some(1300));
    }

    #[test]
    fn crlf_and_a_lone_carriage_return_are_not_part_of_the_last_value() {
        for line in [&b"type=CWD msg=audit(1.000:2): cwd=/root\r\n"[..], b"type=CWD msg=audit(1.000:2): cwd=/root\r"] {
            let r = parse_log_line(line).unwrap();
            assert_eq!(r.get(b"cwd").map(|f| f.value), Some(&b"/root"[..]));
            assert_eq!(r.raw(), b"type=CWD msg=audit(1.000:2): cwd=/root");
        }
        let r = parse_log_line(b"type=USER msg=audit(1.000:2): msg='a'\x1dUID=\"root\"\r").unwrap();
        assert_eq!(r.interpreted().next().map(|f| f.value), Some(&b"root"[..]));
    }

    #[test]
    fn enriched_sockaddr_is_one_interpreted_value() {
        let line = b"type=SOCKADDR msg=audit(1705071450.879:29498378): saddr=01002F7661\x1dSADDR={ saddr_fam=local path=/var/run/nscd/socket }";
        let r = parse_log_line(line).unwrap();
        let got: Vec<_> = r.interpreted().map(|f| (f.key.to_vec(), f.value.to_vec())).collect();
        assert_eq!(got, vec![(b"SADDR".to_vec(), b"{ saddr_fam=local path=/var/run/nscd/socket }".to_vec())]);
        assert!(!r.has_duplicate_keys());
    }

    #[test]
    fn detects_repeated_keys() {
        let r = parse_netlink(1400, b"audit(1.000:2): a=1 b=2 a=3").unwrap();
        assert!(r.has_duplicate_keys());
        let r = parse_netlink(1400, b"audit(1.000:2): a0=1 a1=2 a2=3 a3=4 uid=0 gid=0 pid=1 ppid=1").unwrap();
        assert!(!r.has_duplicate_keys());
        let many: String = (0..100).map(|i| format!(" a{i}=x")).collect();
        let r = parse_netlink(1309, format!("audit(1.000:2):{many}").as_bytes()).unwrap();
        assert!(!r.has_duplicate_keys());
        let r = parse_netlink(1309, format!("audit(1.000:2):{many} a57=y").as_bytes()).unwrap();
        assert!(r.has_duplicate_keys());
        let r = parse_netlink(1309, format!("audit(1.000:2): w{many} v").as_bytes()).unwrap();
        assert!(r.has_duplicate_keys(), "two words");
    }

    #[test]
    fn malformed_input_is_a_typed_error_with_a_position() {
        assert_eq!(parse_log_line(b"\n"), Err(RecordError::Empty));
        assert_eq!(parse_log_line(b"garbage"), Err(RecordError::MissingType(0)));
        assert_eq!(parse_log_line(b"node=x garbage"), Err(RecordError::MissingType(7)));
        assert_eq!(
            parse_log_line(b"type=NO=PE msg=audit(1.000:1): "),
            Err(RecordError::BadTypeName { name: "NO=PE".into(), at: 5 })
        );
        assert_eq!(
            parse_log_line(b"type= msg=audit(1.000:1): "),
            Err(RecordError::BadTypeName { name: "".into(), at: 5 })
        );
        assert_eq!(parse_log_line(b"type=EOE audit(1.000:1): "), Err(RecordError::MissingMsg(9)));
        assert_eq!(parse_log_line(b"type=EOE"), Err(RecordError::MissingMsg(8)));
        assert_eq!(
            parse_log_line(b"type=EOE msg=audit(1.00:1): "),
            Err(RecordError::Stamp { at: 13, source: StampError::Millis(21) })
        );
        assert_eq!(parse_log_line(b"type=EOE msg=audit(1.000:1)x=1"), Err(RecordError::MissingColon(27)));
        // What is not audit.log text stays an error: a bare kernel payload, auditd's `msg=?`.
        assert_eq!(parse_log_line(b"audit(1.000:1): x=1"), Err(RecordError::MissingType(0)));
        assert!(matches!(
            parse_log_line(b"type=UNKNOWN[1329] msg=?"),
            Err(RecordError::Stamp { at: 23, source: StampError::MissingPrefix(23) })
        ));
        // The kernel always writes the colon: a payload without it is not a record.
        assert_eq!(parse_netlink(1305, b"audit(1.000:1) x=1"), Err(RecordError::MissingColon(14)));
        assert_eq!(parse_netlink(1300, b"\0\0"), Err(RecordError::Empty));
        assert!(matches!(parse_netlink(1329, &[0x1b, 3, 0, 0]), Err(RecordError::Stamp { .. })));
        let long = vec![b'a'; MAX_RECORD_LEN + 1];
        assert_eq!(parse_netlink(1300, &long), Err(RecordError::TooLong(MAX_RECORD_LEN + 1)));
    }
}
