//! What precedes a record's fields: `audit(SEC.MMM:SERIAL): ` in a kernel payload, and
//! `[node=NAME ]type=NAME msg=audit(…): ` in an audit.log line.
//!
//! Offsets in errors are byte positions in the payload or line, so a bad line can be found with
//! `cut -b`. Invariant: on success, `body_start` points just after the `): ` separator (the space is
//! optional: an EOE payload may end right after the colon).

use super::event_id::{EventId, StampError};
use super::message_type::MessageType;
use super::RecordError;

/// The parsed prefix of a log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineHeader {
    pub kind: MessageType,
    pub id: EventId,
    /// `node=` value as a byte range of the line.
    pub node: Option<(usize, usize)>,
    pub body_start: usize,
}

/// `audit(…): ` at `at`; returns the id and where the body starts.
pub(crate) fn parse_stamp_at(bytes: &[u8], at: usize) -> Result<(EventId, usize), RecordError> {
    let rest = bytes.get(at..).unwrap_or_default();
    let (id, used) =
        EventId::parse_stamp(rest).map_err(|source| RecordError::Stamp { at, source: shift(source, at) })?;
    let mut pos = at + used;
    if bytes.get(pos) != Some(&b':') {
        return Err(RecordError::MissingColon(pos));
    }
    pos += 1;
    if bytes.get(pos) == Some(&b' ') {
        pos += 1;
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

/// `[node=NAME ]type=NAME msg=audit(…): `
pub(crate) fn parse_line_header(line: &[u8]) -> Result<LineHeader, RecordError> {
    let mut pos = 0;
    let mut node = None;
    if line.starts_with(b"node=") {
        let start = 5;
        let end = memchr::memchr(b' ', &line[start..]).map_or(line.len(), |p| start + p);
        node = Some((start, end));
        pos = end + 1;
    }
    if !line.get(pos..).is_some_and(|rest| rest.starts_with(b"type=")) {
        return Err(RecordError::MissingType(pos));
    }
    pos += 5;
    let name_end = memchr::memchr(b' ', line.get(pos..).unwrap_or_default()).map_or(line.len(), |p| pos + p);
    let name = &line[pos..name_end];
    let kind = MessageType::from_name(name)
        .ok_or_else(|| RecordError::UnknownType { name: String::from_utf8_lossy(name).into_owned(), at: pos })?;
    pos = name_end + 1;
    if !line.get(pos..).is_some_and(|rest| rest.starts_with(b"msg=")) {
        return Err(RecordError::MissingMsg(pos.min(line.len())));
    }
    let (id, body_start) = parse_stamp_at(line, pos + 4)?;
    Ok(LineHeader { kind, id, node, body_start })
}
