//! `auditrelay replay`: audit.log text in, the same JSON events as `run` out.
//!
//! Why a clock from the records: replay must be deterministic and must not take as long as the
//! original capture, yet event timeouts should behave as they did live. The reassembler's `now`
//! is therefore a fixed origin plus the record's timestamp offset from the first record; the
//! reassembler itself keeps that clock monotonic when timestamps step back.
//!
//! Why one record cannot move that clock far: records arrive out of order, and an event's records
//! may come after a record stamped seconds later (go-libaudit's out_of_order.log: event 60's last
//! PATH after event 61, 7.8 s later). Believing that one record would time out every open event at
//! once and cut the one it overtook. So a record stamped more than `event_timeout` ahead of the
//! clock only proposes the jump; the clock takes it when a second such record confirms it (to the
//! earlier of the two stamps). A real pause in the log (a quiet system) is confirmed by the next
//! record after it, so it costs one record of delay; a lone outlier, confirmed by nothing, moves
//! nothing. What this cannot tell apart: a whole event of several records stamped far ahead (its
//! records confirm each other), which then times out the events it overtook as it would have live.
//!
//! Invariants: a bad line is counted, reported with its line number and skipped — it never stops
//! the replay; a line is at most [`MAX_RECORD_LEN`] bytes (longer ones are skipped as bad without
//! being held in memory); at end of input every in-flight event is flushed.

use std::io::{BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use crate::enrich::Enricher;
use crate::format::{Formatter, JsonWriter, OutputFormat};
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

/// [`replay`] into `format` (`replay --format`): each native line converted as an output of that
/// format converts it (see [`crate::format`]), so replay shows exactly what such an output ships.
pub fn replay_as<R: BufRead, W: Write>(
    input: R,
    cfg: &ReassembleConfig,
    format: OutputFormat,
    enricher: Option<Enricher>,
    sink: &mut W,
) -> Result<ReplayStats, ReplayError> {
    replay_formatted(input, cfg, &mut Formatter::new(format), enricher, sink, |e| eprintln!("auditrelay: replay: {e}"))
}

/// [`replay_as`] with a chosen formatter (tests give it a fixed name table) and a handler for
/// bad lines. User and group names are resolved inline ([`NameCache::resolve_inline`]): offline,
/// waiting on NSS costs nothing, and the same input then gives the same output, each name on the
/// first event that carries its id (the daemon resolves in the background and never waits).
///
/// [`NameCache::resolve_inline`]: crate::enrich::user::NameCache::resolve_inline
pub fn replay_formatted<R: BufRead, W: Write>(
    input: R,
    cfg: &ReassembleConfig,
    formatter: &mut Formatter,
    mut enricher: Option<Enricher>,
    sink: &mut W,
    on_bad_line: impl FnMut(&LineError),
) -> Result<ReplayStats, ReplayError> {
    if let Some(names) = enricher.as_mut().and_then(Enricher::names) {
        names.resolve_inline();
    }
    let mut writer =
        JsonWriter::new(None).with_record_text(formatter.format().needs_record_text()).with_enricher(enricher);
    replay_inner(input, cfg, &mut writer, Some(formatter), sink, on_bad_line)
}

/// [`replay`] with a chosen writer and a handler for bad lines.
pub fn replay_with<R: BufRead, W: Write>(
    input: R,
    cfg: &ReassembleConfig,
    writer: &mut JsonWriter,
    sink: &mut W,
    on_bad_line: impl FnMut(&LineError),
) -> Result<ReplayStats, ReplayError> {
    replay_inner(input, cfg, writer, None, sink, on_bad_line)
}

fn replay_inner<R: BufRead, W: Write>(
    mut input: R,
    cfg: &ReassembleConfig,
    writer: &mut JsonWriter,
    mut formatter: Option<&mut Formatter>,
    sink: &mut W,
    mut on_bad_line: impl FnMut(&LineError),
) -> Result<ReplayStats, ReplayError> {
    let mut sink = BufWriter::with_capacity(64 * 1024, sink);
    let mut reassembler = Reassembler::new(cfg);
    let mut stats = ReplayStats::default();
    let mut clock = RecordClock::new(Instant::now(), cfg.event_timeout);
    let mut line = Vec::with_capacity(1024);
    let mut out = Vec::new();
    let mut last_ms = 0;
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
        last_ms = record.id.unix_millis();
        let (now, stamp) = clock.at(last_ms);
        reassembler.push_at(record, now, stamp, &mut out);
        emit(writer, formatter.as_deref_mut(), last_ms, &mut sink, &mut out, &mut stats)
            .map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    }
    reassembler.flush(&mut out);
    emit(writer, formatter, last_ms, &mut sink, &mut out, &mut stats)
        .map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    sink.flush().map_err(|source| ReplayError::Write { line: stats.lines, source })?;
    stats.reassemble = reassembler.stats();
    Ok(stats)
}

/// Replay's `now`: record time, which one record alone cannot advance by more than the jump
/// threshold (the event timeout). See the module documentation.
#[derive(Debug)]
struct RecordClock {
    origin: Instant,
    /// Unix milliseconds of the first record: the clock's zero.
    first_ms: Option<u64>,
    /// The clock, in milliseconds since `first_ms`.
    now_ms: u64,
    /// A jump proposed by one record and not yet confirmed by another.
    proposed_ms: Option<u64>,
    jump_ms: u64,
}

impl RecordClock {
    fn new(origin: Instant, jump: Duration) -> RecordClock {
        let jump_ms = u64::try_from(jump.as_millis()).unwrap_or(u64::MAX);
        RecordClock { origin, first_ms: None, now_ms: 0, proposed_ms: None, jump_ms }
    }

    /// The clock after a record stamped `unix_ms`, and that stamp on the clock's scale.
    fn at(&mut self, unix_ms: u64) -> (Instant, Instant) {
        let first = *self.first_ms.get_or_insert(unix_ms);
        let ms = unix_ms.saturating_sub(first);
        if ms <= self.now_ms.saturating_add(self.jump_ms) {
            self.now_ms = self.now_ms.max(ms);
        } else if let Some(proposed) = self.proposed_ms.take() {
            self.now_ms = proposed.min(ms);
            if ms > self.now_ms.saturating_add(self.jump_ms) {
                self.proposed_ms = Some(ms);
            }
        } else {
            self.proposed_ms = Some(ms);
        }
        (self.origin + Duration::from_millis(self.now_ms), self.origin + Duration::from_millis(ms))
    }
}

fn emit<W: Write>(
    writer: &mut JsonWriter,
    mut formatter: Option<&mut Formatter>,
    time_ms: u64,
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
        let line = writer.write(&o);
        match formatter.as_deref_mut() {
            None => sink.write_all(line)?,
            Some(f) => {
                let body = line.strip_suffix(b"\n").unwrap_or(line);
                sink.write_all(f.convert_or_pass(body, time_ms))?;
                sink.write_all(b"\n")?;
            }
        }
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
    fn one_record_far_ahead_does_not_cut_the_event_it_overtook() {
        // The shape of go-libaudit's out_of_order.log: serial 61 is stamped 7 s after 60, and one
        // record of 60 comes after 61's first record.
        let text = b"type=SYSCALL msg=audit(100.000:60): a=1\n\
type=SYSCALL msg=audit(107.000:61): a=2\n\
type=PATH msg=audit(100.000:60): item=0\n\
type=EOE msg=audit(100.000:60): \n\
type=PATH msg=audit(107.000:61): item=0\n\
type=EOE msg=audit(107.000:61): \n";
        let (stats, json, _) = run(text);
        assert_eq!((stats.events, stats.reassemble.late_events, stats.reassemble.timed_out), (2, 0, 0), "{json}");
        assert_eq!(stats.reassemble.completed_end, 2);
    }

    #[test]
    fn the_record_clock_needs_two_records_to_jump() {
        let origin = Instant::now();
        let mut clock = RecordClock::new(origin, Duration::from_secs(2));
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let mut now = |ms: u64| clock.at(ms).0;
        assert_eq!(now(10_000), at(0));
        assert_eq!(now(11_500), at(1_500), "within the threshold: followed");
        assert_eq!(now(3_600_000), at(1_500), "a lone record an hour ahead moves nothing");
        assert_eq!(now(11_600), at(1_600));
        assert_eq!(now(20_000), at(10_000), "a pause, confirmed: the earlier of the two stamps");
        assert_eq!(now(20_001), at(10_001));
        assert_eq!(now(5_000), at(10_001), "never backwards");
        assert_eq!(now(40_000), at(10_001));
        assert_eq!(now(90_000), at(30_000), "confirmed to the earlier stamp…");
        assert_eq!(now(90_000), at(80_000), "…and the later one still needed a second record");
        assert_eq!(clock.at(91_000), (at(81_000), at(81_000)));
        assert_eq!(clock.at(95_000), (at(81_000), at(85_000)), "a stamp ahead of the clock, on its scale");
    }

    #[test]
    fn a_pause_in_the_log_still_times_out_what_was_open() {
        let text = b"type=SYSCALL msg=audit(100.000:1): a=1\n\
type=USER msg=audit(110.000:2): msg='x'\n\
type=USER msg=audit(110.001:3): msg='y'\n";
        let (stats, json, _) = run(text);
        let lines: Vec<&str> = json.lines().collect();
        assert_eq!(lines.len(), 3, "{json}");
        assert!(lines[0].starts_with("{\"sequence\":1,") && lines[0].ends_with("\"incomplete\":true}"));
        assert_eq!((stats.reassemble.timed_out, stats.reassemble.completed_standalone), (1, 2));
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
