//! What precedes a record's fields: `audit(SEC.MMM:SERIAL): ` in a kernel payload, and
//! `[node=NAME ]type=NAME msg=audit(…): ` in an audit.log line.
//!
//! Offsets in errors are byte positions in the payload or line, so a bad line can be found with
//! `cut -b`. Invariant: on success, `body_start` points just after the `): ` separator (the space is
//! optional: an EOE payload may end right after the colon).
//!
//! Why log lines are more lenient than payloads: auditd before 3.0 (RHEL 7, Ubuntu 18.04/20.04)
//! writes its own DAEMON_* records without the `:` after the stamp
//! (`msg=audit(1490239800.477:34) config changed, …`), and archives from those hosts must replay.
//! The kernel always writes the colon, so a payload without it stays an error. Likewise a log line
//! may carry a type name this build does not know (a newer auditd's `LANDLOCK_ACCESS`): the line
//! is still a record, its name kept as written; only a name that is not a name at all is an error.

use super::event_id::{EventId, StampError};
use super::message_type::MessageType;
use super::RecordError;

/// The parsed prefix of a log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineHeader {
    /// [`MessageType::NONE`] when the name is well formed but not in the table.
    pub kind: MessageType,
    pub id: EventId,
    /// `node=` value as a byte range of the line.
    pub node: Option<(usize, usize)>,
    pub body_start: usize,
}

/// What may follow the closing `)` of the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStamp {
    /// `:` then an optional space (kernel payloads).
    Colon,
    /// `:` as above, or a space or the end of the line (auditd < 3.0 DAEMON_* lines).
    ColonOrSpace,
}

/// `audit(…): ` at `at`; returns the id and where the body starts.
pub(crate) fn parse_stamp_at(bytes: &[u8], at: usize, after: AfterStamp) -> Result<(EventId, usize), RecordError> {
    let rest = bytes.get(at..).unwrap_or_default();
    let (id, used) =
        EventId::parse_stamp(rest).map_err(|source| RecordError::Stamp { at, source: shift(source, at) })?;
    let mut pos = at + used;
    match bytes.get(pos) {
        Some(b':') => {
            pos += 1;
            if bytes.get(pos) == Some(&b' ') {
                pos += 1;
            }
        }
        Some(b' ') if after == AfterStamp::ColonOrSpace => pos += 1,
        None if after == AfterStamp::ColonOrSpace => {}
        _ => return Err(RecordError::MissingColon(pos)),
    }
    Ok((id, pos))
}

/// Make a stamp error's offset absolute.
fn shift(error: StampError, at: usize) -> StampError {
    match error {
        StampError::MissingPrefix(p) => StampError::MissingPrefix(p + at),
        StampError::Seconds(p) => StampError::Seconds(p + at),
        StampError::Millis(p) => StampError::Millis(p + at),
        StampError::Serial(p) => StampError::Serial(p + at),
        StampError::Unclosed(p) => StampError::Unclosed(p + at),
    }
}

/// Longest type name accepted as written (auditd's longest is 25 bytes).
const MAX_TYPE_NAME: usize = 64;

/// Whether `name` looks like a record type name as auditd or the kernel spell them:
/// `SYSCALL`, `UNKNOWN[1423]`, `OLD-STYLE_NAME`; not empty, no `=`, quotes or control bytes.
fn is_type_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TYPE_NAME
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'[' | b']'))
}

/// A byte range of a line.
type Range = (usize, usize);

/// The `node=` value and the type name of `[node=NAME ]type=NAME …` as byte ranges, or the offset
/// where `type=` was expected.
fn node_and_name(line: &[u8]) -> Result<(Option<Range>, Range), usize> {
    let mut pos = 0;
    let mut node = None;
    if line.starts_with(b"node=") {
        let start = 5;
        let end = memchr::memchr(b' ', &line[start..]).map_or(line.len(), |p| start + p);
        node = Some((start, end));
        pos = end + 1;
    }
    if !line.get(pos..).is_some_and(|rest| rest.starts_with(b"type=")) {
        return Err(pos);
    }
    pos += 5;
    let name_end = memchr::memchr(b' ', line.get(pos..).unwrap_or_default()).map_or(line.len(), |p| pos + p);
    Ok((node, (pos, name_end)))
}

/// The type name of a log line (for a record whose name is not in the table, which keeps no
/// copy of it: that case is rare and the line is at hand); `None` for a kernel payload.
pub(crate) fn type_name_span(line: &[u8]) -> Option<Range> {
    node_and_name(line).ok().map(|(_, name)| name)
}

/// `[node=NAME ]type=NAME msg=audit(…): `
pub(crate) fn parse_line_header(line: &[u8]) -> Result<LineHeader, RecordError> {
    let (node, (name_start, name_end)) = node_and_name(line).map_err(RecordError::MissingType)?;
    let name = &line[name_start..name_end];
    let kind = match MessageType::from_name(name) {
        Some(kind) => kind,
        None if is_type_name(name) => MessageType::NONE,
        None => {
            return Err(RecordError::BadTypeName { name: String::from_utf8_lossy(name).into_owned(), at: name_start })
        }
    };
    let pos = name_end + 1;
    if !line.get(pos..).is_some_and(|rest| rest.starts_with(b"msg=")) {
        return Err(RecordError::MissingMsg(pos.min(line.len())));
    }
    let (id, body_start) = parse_stamp_at(line, pos + 4, AfterStamp::ColonOrSpace)?;
    Ok(LineHeader { kind, id, node, body_start })
}
