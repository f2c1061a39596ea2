//! `auditrelay replay`: audit.log text in, the same JSON events as `run` out.
//!
//! Why a clock from the records: replay must be deterministic and must not take as long as the
//! original capture, yet event timeouts should behave as they did live. The reassembler's `now`
//! is therefore a fixed origin plus the record's timestamp offset from the first record; the
//! reassembler itself keeps that clock monotonic when timestamps step back.
//!
//! Invariants: a bad line is counted, reported with its line number and skipped — it never stops
//! the replay; a line is at most [`MAX_RECORD_LEN`] bytes (longer ones are skipped as bad without
//! being held in memory); at end of input every in-flight event is flushed.

use std::io::{BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use crate::format::JsonWriter;
use crate::reassemble::{Output, ReassembleConfig, ReassembleStats, Reassembler};
use crate::record::{parse_log_line, RecordError, MAX_RECORD_LEN};

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub records: u64,
    pub bad_lines: u64,
    /// Records kept whose type name this build does not know (written as read, no `type_id`).
    pub unknown_types: u64,
    pub events: u64,
    pub loss_notices: u64,
    pub reassemble: ReassembleStats,
}

impl std::fmt::Display for ReplayStats {
    /// One summary line for stderr at the end of a replay.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.reassemble;
        write!(
            f,
            "{} lines, {} records ({} of unknown type), {} bad lines, {} events ({} incomplete: {} timed out, {} evicted, {} oversized, {} flushed; {} late), {} serials missing in {} gaps, {} serial restarts",
            self.lines,
            self.records,
            self.unknown_types,
            self.bad_lines,
            self.events,
            r.timed_out + r.evicted + r.oversized + r.flushed,
            r.timed_out,
            r.evicted,
            r.oversized,
            r.flushed,
            r.late_events,
            r.missing_serials,
            r.serial_gaps,
            r.serial_restarts,
        )
    }
}

/// A line that is not an audit record.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: {source}")]
    Record { line: u64, source: RecordError },
    #[error("line {line}: longer than {MAX_RECORD_LEN} bytes, skipped")]
    TooLong { line: u64 },
}

/// Replay stops only when input or output fails.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading input after line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
    #[error("writing output after input line {line}: {source}")]
    Write { line: u64, source: std::io::Error },
}

/// Replay `input` into JSON lines on `sink` (no event id prefix); bad lines go to stderr.
pub fn replay<R: BufRead, W: Write>(
    input: R,
    cfg: &ReassembleConfig,
    sink: &mut W,
) -> Result<ReplayStats, ReplayError> {
    let mut writer = JsonWriter::new(None);
    replay_with(input, cfg, &mut writer, sink, |e| eprintln!("auditrelay: replay: {e}"))
}

/// [`replay`] with a chosen writer and a handler for bad lines.
pub fn replay_with<R: BufRead, W: Write>(
    mut input: R,
    cfg: &ReassembleConfig,
    writer: &mut JsonWriter,
    sink: &mut W,
    mut on_bad_line: impl FnMut(&LineError),
) -> Result<ReplayStats, ReplayError> {
    let mut sink = BufWriter::with_capacity(64 * 1024, sink);
    let mut reassembler = Reassembler::new(cfg);
    let mut stats = ReplayStats::default();
    let origin = Instant::now();
    let mut first_ms: Option<u64> = None;
    let mut line = Vec::with_capacity(1024);
    let mut out = Vec::new();
    loop {
        line.clear();
        let read =
            read_line(&mut input, &mut line).map_err(|source| ReplayError::Read { line: stats.lines, source })?;
        let too_long = match read {
            Line::Eof => break,
            Line::Complete => false,
            Line::TooLong => true,
        };
        stats.lines += 1;
        if too_long {
            stats.bad_lines += 1;
            on_bad_line(&LineError::TooLong { line: stats.lines });
            continue;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let record = match parse_log_line(&line) {
            Ok(record) => record,
            Err(source) => {
                stats.bad_lines += 1;
                on_bad_line(&LineError::Record { line: stats.lines, source });
                continue;
            }
        };
        stats.records += 1;
        if record.type_id().is_none() {
            stats.unknown_types += 1;
        }
        let ms = record.id.unix_millis();
        let origin_ms = *first_ms.get_or_insert(ms);
        let now = origin + Duration::from_millis(ms.saturating_sub(origin_ms));
        reassembler.push(record, now, &mut out);
        emit(writer, &mut sink, &mut out, &mut stats)
            .map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    }
    reassembler.flush(&mut out);
    emit(writer, &mut sink, &mut out, &mut stats).map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    sink.flush().map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    stats.reassemble = reassembler.stats();
    Ok(stats)
}

fn emit<W: Write>(
    writer: &mut JsonWriter,
    sink: &mut W,
    out: &mut Vec<Output>,
    stats: &mut ReplayStats,
) -> std::io::Result<()> {
    for o in out.drain(..) {
        match &o {
            Output::Event(_) => stats.events += 1,
            Output::Loss(notice) => {
                stats.loss_notices += 1;
                eprintln!("auditrelay: replay: loss: {notice}");
            }
        }
        sink.write_all(writer.write(&o))?;
    }
    Ok(())
}

enum Line {
    Eof,
    Complete,
    TooLong,
}

/// Read one line into `buf` (newline excluded), holding at most `MAX_RECORD_LEN` bytes of it.
fn read_line<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    let mut any = false;
    let mut too_long = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Complete,
            });
        }
        any = true;
        let (part, done) = match memchr::memchr(b'\n', chunk) {
            Some(p) => (&chunk[..p], Some(p + 1)),
            None => (chunk, None),
        };
        if !too_long {
            if buf.len() + part.len() > MAX_RECORD_LEN {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = done.unwrap_or(chunk.len());
        input.consume(used);
        if done.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Complete });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &[u8]) -> (ReplayStats, String, Vec<String>) {
        let mut sink = Vec::new();
        let mut bad = Vec::new();
        let mut writer = JsonWriter::new(None);
        let stats =
            replay_with(text, &ReassembleConfig::default(), &mut writer, &mut sink, |e| bad.push(e.to_string()))
                .unwrap();
        (stats, String::from_utf8(sink).unwrap(), bad)
    }

    #[test]
    fn bad_lines_are_counted_reported_with_line_numbers_and_skipped() {
        let text = b"type=SYSCALL msg=audit(1.000:1): syscall=59\n\
garbage here\n\
\n\
type=NO\"PE msg=audit(1.000:2): x=1\n\
audit(1.000:3): x=1\n\
type=UNKNOWN[1329] msg=?\n\
type=EOE msg=audit(1.000:1): \n";
        let (stats, json, bad) = run(text);
        assert_eq!(stats.lines, 7);
        assert_eq!(stats.records, 2);
        assert_eq!(stats.bad_lines, 4);
        assert_eq!(stats.events, 1);
        assert_eq!(
            bad,
            vec![
                "line 2: expected \"type=\" at byte 0".to_string(),
                "line 4: bad record type name \"NO\\\"PE\" at byte 5".to_string(),
                "line 5: expected \"type=\" at byte 0".to_string(),
                "line 6: bad audit(...) stamp: expected \"audit(\" at byte 23".to_string(),
            ]
        );
        assert_eq!(json.lines().count(), 1);
        assert!(json.contains("\"records\":[{\"type\":\"SYSCALL\""), "{json}");
    }

    #[test]
    fn flushes_in_flight_events_at_eof_as_incomplete() {
        let (stats, json, _) = run(b"type=SYSCALL msg=audit(1.000:1): syscall=59");
        assert_eq!(stats.events, 1);
        assert!(json.ends_with(",\"incomplete\":true}\n"), "{json}");
        assert!(
            stats
                .to_string()
                .contains("1 events (1 incomplete: 0 timed out, 0 evicted, 0 oversized, 1 flushed; 0 late)"),
            "{stats}"
        );
    }

    #[test]
    fn timeouts_follow_record_time() {
        let text = b"type=SYSCALL msg=audit(100.000:1): a=1\n\
type=SYSCALL msg=audit(103.000:2): a=2\n\
type=EOE msg=audit(103.000:2): \n";
        let (stats, json, _) = run(text);
        let lines: Vec<&str> = json.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("{\"sequence\":1,") && lines[0].ends_with("\"incomplete\":true}"));
        assert!(lines[1].starts_with("{\"sequence\":2,") && !lines[1].contains("incomplete"));
        assert_eq!(stats.reassemble.timed_out, 1);
    }

    #[test]
    fn overlong_lines_are_skipped_without_holding_them() {
        let mut text = b"type=USER msg=audit(1.000:1): msg='".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD_LEN));
        text.extend_from_slice(b"'\ntype=USER msg=audit(1.000:2): msg='ok'\n");
        let input = std::io::BufReader::with_capacity(4096, &text[..]);
        let mut sink = Vec::new();
        let mut bad = Vec::new();
        let stats = replay_with(input, &ReassembleConfig::default(), &mut JsonWriter::new(None), &mut sink, |e| {
            bad.push(e.to_string())
        })
        .unwrap();
        assert_eq!((stats.lines, stats.bad_lines, stats.events), (2, 1, 1));
        assert_eq!(bad, vec![format!("line 1: longer than {MAX_RECORD_LEN} bytes, skipped")]);
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        let (stats, json, bad) =
            run(b"type=USER msg=audit(1.000:1): msg='a'\r\ntype=USER msg=audit(1.000:2): msg='b'\r");
        assert_eq!((stats.records, stats.events), (2, 2));
        assert!(bad.is_empty());
        assert!(json.contains(r#""fields":{"msg":"a"}"#) && json.contains(r#""fields":{"msg":"b"}"#), "{json}");
        assert!(!json.contains("\\r"), "{json}");
    }

    #[test]
    fn unknown_type_names_are_kept_and_counted() {
        let text = b"type=LANDLOCK_RULESET msg=audit(1.000:1): id=1\ntype=SYSCALL msg=audit(1.000:2): x=1\n";
        let (stats, json, bad) = run(text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!((stats.records, stats.unknown_types, stats.bad_lines), (2, 1, 0));
        assert!(json.contains(r#"{"type":"LANDLOCK_RULESET","fields":{"id":"1"}}"#), "{json}");
        assert!(stats.to_string().starts_with("2 lines, 2 records (1 of unknown type), 0 bad lines"), "{stats}");
    }
}
