//! Parse → reassemble → format, as plain synchronous code the daemon's processing thread drives.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::filter::{Decision, FilterStats, Filters};
use crate::format::json::JsonWriter;
use crate::loss::LossNotice;
use crate::netlink::reader::{Input, ReaderLoss, RecordBatch};
use crate::output::{ShipError, Shipper};
use crate::reassemble::{Output, Reassembler};
use crate::record::{Record, RecordPool};

use super::DaemonError;

/// Room a spool record needs beside the body: its header, fixed fields and the longest id.
const SPOOL_RECORD_OVERHEAD: usize = crate::spool::record::PAYLOAD_FIXED + crate::spool::record::MAX_ID_LEN;

/// Events written at a time while a hand-off is parsed (see [`Pipeline::input_staging`]): few
/// enough that their records are still in L1/L2 when written.
const STAGE_CHUNK: usize = 16;

/// Parse → reassemble → format, as plain synchronous code.
pub struct Pipeline {
    reassembler: Reassembler,
    writer: JsonWriter,
    /// Prefix of event ids (the boot id), the same as in the JSON `id`.
    id_prefix: String,
    /// Lines that are not kernel events (loss notices, unparsable records) get ids from this.
    local_seq: u64,
    /// Events the shipper refused (too large); counted, logged.
    pub refused: u64,
    /// Events lost to spool write errors (disk full); counted, logged.
    pub ship_errors: u64,
    out: Vec<Output>,
    pub events_out: u64,
    /// Events staged or dropped by a filter (see [`Pipeline::handled`]).
    handled: u64,
    pub unparsable: u64,
    unparsed: Vec<Vec<u8>>,
    /// Buffers of written events' records, reused for the next records parsed.
    pool: RecordPool,
    /// Largest event body the spool stores (`[spool] max_record_bytes` less the record's own
    /// fields); a larger one is cut to fit before it is spooled, never refused whole.
    spool_budget: Option<usize>,
    /// Events cut to fit the spool (flagged `truncated` in the event itself).
    pub cut_to_fit: u64,
    /// The current event's spool id, rebuilt in place for each event (no allocation per event).
    id: String,
    /// Records the kernel reported lost (its `lost` counter's growth since start).
    pub kernel_lost: u64,
    /// Events shipped flagged `incomplete` / `late`.
    pub incomplete: u64,
    pub late: u64,
    /// `[[filter]]`: events dropped here never reach the spool (counted per filter).
    filters: Filters,
    /// The process table's counters as of the last batch (zero when no table is kept).
    pub processes: crate::enrich::process::ProcessStats,
}

impl Pipeline {
    pub fn new(config: &Config, id_prefix: Option<String>) -> Pipeline {
        Pipeline {
            reassembler: Reassembler::new(&config.reassemble),
            id_prefix: id_prefix.clone().unwrap_or_else(|| "noboot".into()),
            id: String::with_capacity(64),
            local_seq: 0,
            refused: 0,
            ship_errors: 0,
            // go-audit and audit.log outputs derive their text from each record's exact text.
            writer: JsonWriter::new(id_prefix)
                .with_record_text(config.output.iter().any(|o| o.format().needs_record_text()))
                .with_enricher(
                    crate::enrich::Enricher::from_config(&config.enrich)
                        .map(|e| e.with_exe_hashes(crate::enrich::daemon_exe_hashes(&config.enrich)))
                        .map(|e| e.with_proc_lookups(crate::enrich::daemon_proc_lookups(&config.enrich))),
                ),
            out: Vec::new(),
            events_out: 0,
            handled: 0,
            unparsable: 0,
            unparsed: Vec::new(),
            pool: RecordPool::default(),
            spool_budget: (!config.output.is_empty())
                .then(|| (config.spool.max_record_bytes as usize).saturating_sub(SPOOL_RECORD_OVERHEAD)),
            cut_to_fit: 0,
            kernel_lost: 0,
            incomplete: 0,
            late: 0,
            filters: Filters::compile(&config.filter).unwrap_or_else(|e| {
                // Config::parse validated the filters; only a hand-built Config reaches this.
                log::error!("{e}; no [[filter]] is applied");
                Filters::default()
            }),
            processes: Default::default(),
        }
    }

    /// Start from a process table seeded at start (`crate::enrich::seeded_process_table`).
    pub fn set_processes(&mut self, table: Option<crate::enrich::process::ProcessTable>) {
        if let (Some(table), Some(enricher)) = (table, self.writer.enricher()) {
            enricher.set_processes(table);
        }
    }

    /// Drops per `[[filter]]`, for `status` and metrics.
    pub fn filter_stats(&self) -> &FilterStats {
        self.filters.stats()
    }

    /// The enrichment's user/group name cache, when names are on.
    pub fn name_cache(&self) -> Option<&crate::enrich::user::NameCache> {
        self.writer.enricher_ref().and_then(crate::enrich::Enricher::name_cache)
    }

    pub fn reassembly(&self) -> crate::reassemble::ReassembleStats {
        self.reassembler.stats()
    }

    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// How long to wait for input before the next timer is due (bounded so signals are noticed).
    pub fn wait_time(&self, now: Instant) -> Duration {
        let cap = Duration::from_millis(200);
        self.reassembler.next_deadline().map_or(cap, |d| d.saturating_duration_since(now).min(cap))
    }

    /// Take one hand-off from the reader; returns the spent record batch for reuse. Events it
    /// completes wait in `pending` for [`Pipeline::ship`].
    #[cfg(test)]
    pub fn input(&mut self, input: Input, now: Instant) -> Option<RecordBatch> {
        self.take(input, now, None).unwrap_or(None)
    }

    /// [`Pipeline::input`], staging completed events with `shipper` every [`STAGE_CHUNK`] of
    /// them while the hand-off is parsed: an event is then written while its records (buffers
    /// and fields) are still in cache, and their pooled buffers come back warm for the next
    /// records. Parsing a whole 256 KiB hand-off first left them to be written from memory (the
    /// first load of a record's fields was a quarter of the JSON writer's samples). The staged
    /// events are committed by the next [`Pipeline::ship`].
    pub fn input_staging(
        &mut self,
        input: Input,
        now: Instant,
        shipper: &mut Shipper,
    ) -> Result<Option<RecordBatch>, DaemonError> {
        self.take(input, now, Some(shipper))
    }

    fn take(
        &mut self,
        input: Input,
        now: Instant,
        mut shipper: Option<&mut Shipper>,
    ) -> Result<Option<RecordBatch>, DaemonError> {
        match input {
            Input::Records(batch) => {
                let mut staged = Ok(());
                for (kind, payload) in batch.iter() {
                    match Record::try_from_netlink_pooled(kind, payload, &mut self.pool) {
                        Ok(record) => self.reassembler.push(record, now, &mut self.out),
                        Err((e, payload)) => self.unparsable(kind, &e, &payload),
                    }
                    if self.out.len() >= STAGE_CHUNK && staged.is_ok() {
                        if let Some(shipper) = shipper.as_deref_mut() {
                            // After a failure (only a broken stdout fails) the rest of the
                            // hand-off is still parsed and waits in `pending`.
                            staged = self.stage(shipper);
                        }
                    }
                }
                return staged.map(|()| Some(batch));
            }
            Input::Loss(loss) => self.out.push(Output::Loss(match loss {
                ReaderLoss::SocketOverrun { overruns } => LossNotice::SocketOverrun { count: overruns },
                ReaderLoss::Truncated { datagrams } => LossNotice::Truncated { datagrams },
                ReaderLoss::ChannelFull { records } => LossNotice::ChannelFull { datagrams: records },
                ReaderLoss::KernelLost { records, kernel_total } => {
                    self.kernel_lost += records;
                    LossNotice::KernelLost { records, kernel_total }
                }
            })),
        }
        Ok(None)
    }

    /// A kernel record we cannot parse is kept as a JSON line of its own, never dropped.
    fn unparsable(&mut self, kind: u16, error: &crate::record::RecordError, payload: &[u8]) {
        self.unparsable += 1;
        log::warn!("unparsable kernel record of type {kind}: {error} (kept as hex)");
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let line =
            serde_json::json!({ "unparsed": { "type_id": kind, "error": error.to_string(), "payload_hex": hex } });
        self.unparsed.push(line.to_string().into_bytes());
    }

    pub fn tick(&mut self, now: Instant) {
        self.reassembler.tick(now, &mut self.out);
    }

    pub fn flush(&mut self) {
        self.reassembler.flush(&mut self.out);
    }

    /// `[[filter]]` on one event, in event order. A dropped event still feeds the process table
    /// (a filtered execve, clone or exit keeps later events' parents right: issue 8) and gives its
    /// buffers back; `true` when dropped.
    fn filtered(&mut self, output: &mut Output) -> bool {
        let Output::Event(e) = output else { return false };
        if self.filters.is_empty() || self.filters.decide(e) == Decision::Keep {
            return false;
        }
        if let Some(enricher) = self.writer.enricher() {
            enricher.observe(e);
        }
        for r in e.records.drain(..) {
            self.pool.put(r);
        }
        self.reassembler.recycle(std::mem::take(&mut e.records));
        true
    }

    /// Hand everything pending to the shipper (spool or direct stdout), one JSON line per event,
    /// and commit it together with what [`Pipeline::input_staging`] staged.
    pub fn ship(&mut self, shipper: &mut Shipper) -> Result<(), DaemonError> {
        self.stage(shipper)?;
        if let Some(table) = self.writer.enricher().and_then(|e| e.processes()) {
            self.processes = table.stats;
        }
        // One write for everything staged (one wake-up downstream per loop iteration).
        Self::outcome(shipper.flush(), "(batch)", &mut self.refused, &mut self.ship_errors)
    }

    /// Events handled so far: staged, or dropped by a filter.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Write every pending event and submit it to the shipper, without committing.
    fn stage(&mut self, shipper: &mut Shipper) -> Result<(), DaemonError> {
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        for line in std::mem::take(&mut self.unparsed) {
            self.local_seq += 1;
            let id = format!("{}:local:{now_ms}:{}", self.id_prefix, self.local_seq);
            Self::submit(shipper, now_ms, &id, &line, &mut self.refused, &mut self.ship_errors)?;
        }
        let mut pending = std::mem::take(&mut self.out);
        for mut output in pending.drain(..) {
            self.handled += 1;
            if self.filtered(&mut output) {
                continue;
            }
            let id = &mut self.id;
            id.clear();
            id.push_str(&self.id_prefix);
            id.push(':');
            let time_ms = match &output {
                Output::Event(e) => {
                    e.id.push_to(id);
                    e.id.unix_millis()
                }
                Output::Loss(_) => {
                    self.local_seq += 1;
                    let mut n = itoa::Buffer::new();
                    id.push_str("local:");
                    id.push_str(n.format(now_ms));
                    id.push(':');
                    id.push_str(n.format(self.local_seq));
                    now_ms
                }
            };
            let id = id.as_str();
            let line = self.writer.write(&output);
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            // Any local user can make an exec huge (argv): refusing it whole would make it vanish
            // from the remote trail, so it is cut (EXECVE arguments first, then whole records,
            // SYSCALL and PATH last; see output::truncate) and flagged `truncated`.
            let fitted = match self.spool_budget {
                Some(budget) if body.len() > budget => match crate::output::truncate::fit(body, budget, id, time_ms) {
                    crate::output::truncate::Fit::Cut { body, report } => {
                        self.cut_to_fit += 1;
                        if self.cut_to_fit.is_power_of_two() {
                            log::warn!(
                                "event {id} of {} bytes cut to {} to fit [spool] max_record_bytes ({} so far)",
                                report.original_len,
                                report.final_len,
                                self.cut_to_fit
                            );
                        }
                        Some(body)
                    }
                    crate::output::truncate::Fit::AsIs(_) => None,
                },
                _ => None,
            };
            let body = fitted.as_deref().unwrap_or(body);
            Self::submit(shipper, time_ms, id, body, &mut self.refused, &mut self.ship_errors)?;
            self.events_out += 1;
            if let Output::Event(mut e) = output {
                self.incomplete += u64::from(e.incomplete);
                self.late += u64::from(e.late);
                for r in e.records.drain(..) {
                    self.pool.put(r);
                }
                self.reassembler.recycle(e.records);
            }
        }
        // Its capacity is reused by the next batch.
        self.out = pending;
        Ok(())
    }

    /// Only a broken stdout stops the daemon; a refused event or a spool write error is counted
    /// and logged (sparingly: at powers of two) and the daemon goes on.
    fn submit(
        shipper: &mut Shipper,
        time_ms: u64,
        id: &str,
        body: &[u8],
        refused: &mut u64,
        errors: &mut u64,
    ) -> Result<(), DaemonError> {
        Self::outcome(shipper.submit(time_ms, id, body), id, refused, errors)
    }

    fn outcome(
        result: Result<(), ShipError>,
        id: &str,
        refused: &mut u64,
        errors: &mut u64,
    ) -> Result<(), DaemonError> {
        match result {
            Ok(()) => Ok(()),
            Err(ShipError::Stdout(e)) => Err(DaemonError::Output(e)),
            Err(e) => {
                let (n, lost) = if e.is_per_event() { (refused, 1) } else { (errors, e.events_lost().max(1)) };
                let before = *n;
                *n += lost;
                // Sparingly: whenever the count crosses a power of two.
                if before == 0 || before.ilog2() != n.ilog2() {
                    log::error!("event {id} not spooled ({n} so far): {e}");
                }
                Ok(())
            }
        }
    }

    #[cfg(test)]
    fn write_to(&mut self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for line in self.unparsed.drain(..) {
            w.write_all(&line)?;
            w.write_all(b"\n")?;
        }
        for mut output in std::mem::take(&mut self.out) {
            if self.filtered(&mut output) {
                continue;
            }
            w.write_all(self.writer.write(&output))?;
            self.events_out += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::reader::ReaderLoss;

    fn raw(kind: u16, text: &[u8]) -> (u16, &[u8]) {
        (kind, text)
    }

    #[test]
    fn pipeline_groups_keeps_unparsable_bytes_and_reports_loss() {
        let mut p = Pipeline::new(&Config::default(), Some("boot".into()));
        let now = Instant::now();
        p.input(
            Input::Records(
                [
                    raw(1300, b"audit(1795373270.780:6): arch=c000003e syscall=59 key=(null)"),
                    raw(1309, b"audit(1795373270.780:6): argc=1 a0=\"ls\""),
                    raw(1300, b"garbage\xff"),
                    raw(1320, b"audit(1795373270.780:6): "),
                ]
                .into_iter()
                .collect(),
            ),
            now,
        );
        p.input(Input::Loss(ReaderLoss::KernelLost { records: 3, kernel_total: 7 }), now);
        let mut out = Vec::new();
        p.write_to(&mut out).expect("write");
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["unparsed"]["payload_hex"], "67617262616765ff");
        assert_eq!(lines[1]["sequence"], 6);
        assert_eq!(lines[1]["records"].as_array().map(Vec::len), Some(3));
        assert_eq!(lines[1]["id"], "boot:1795373270.780:6");
        assert_eq!(lines[2]["loss"]["kind"], "kernel_lost");
        assert_eq!(p.unparsable, 1);
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn filtered_events_never_reach_the_output_and_are_counted() {
        let config = Config::parse(
            "[[filter]]\nname = \"quiet-ls\"\naction = \"drop\"\ncomm = [\"ls\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let mut p = Pipeline::new(&config, None);
        let batch: RecordBatch = [
            (1300, &b"audit(1.000:1): arch=c000003e syscall=59 comm=\"ls\" key=(null)"[..]),
            (1320, &b"audit(1.000:1): "[..]),
            (1300, &b"audit(1.000:2): arch=c000003e syscall=59 comm=\"id\" key=(null)"[..]),
            (1320, &b"audit(1.000:2): "[..]),
        ]
        .into_iter()
        .collect();
        p.input(Input::Records(batch), Instant::now());
        p.input(
            Input::Loss(crate::netlink::reader::ReaderLoss::KernelLost { records: 1, kernel_total: 1 }),
            Instant::now(),
        );
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("\"id\"") && !text.contains("\"ls\"") && text.contains("kernel_lost"), "{text}");
        let s = p.filter_stats();
        assert_eq!((s.seen, s.dropped, s.filters[0].dropped), (2, 1, 1));
        assert_eq!(s.filters[0].name, "quiet-ls");
    }

    /// Issue 8: "Filtered events still feed the process table". The parent's execve and its
    /// clone are dropped by a filter; the child's event, kept, still names the parent, and an
    /// event after the parent's dropped exit_group does not.
    #[test]
    fn dropped_events_still_feed_the_process_table_in_event_order() {
        let mut config = Config::parse(
            "[[filter]]\nname = \"no-bash\"\naction = \"drop\"\ncomm = [\"bash\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        config.enrich.names = false;
        let mut p = Pipeline::new(&config, None);
        let batch: RecordBatch = [
            // 500 execs bash (dropped), clones 501 (dropped); 501 execs id (kept).
            (1300, &b"audit(1.000:1): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=500 comm=\"bash\" exe=\"/usr/bin/bash\" key=(null)"[..]),
            (1309, &b"audit(1.000:1): argc=2 a0=\"bash\" a1=\"-l\""[..]),
            (1320, &b"audit(1.000:1): "[..]),
            (1300, &b"audit(1.001:2): arch=c000003e syscall=56 success=yes exit=501 a0=1200011 ppid=1 pid=500 comm=\"bash\" exe=\"/usr/bin/bash\" key=(null)"[..]),
            (1320, &b"audit(1.001:2): "[..]),
            (1300, &b"audit(1.002:3): arch=c000003e syscall=59 success=yes exit=0 ppid=500 pid=501 comm=\"id\" exe=\"/usr/bin/id\" key=(null)"[..]),
            (1320, &b"audit(1.002:3): "[..]),
            // 500 exits (dropped); an event of 501 after it (still naming 500) has no parent.
            (1300, &b"audit(1.003:4): arch=c000003e syscall=231 success=yes exit=0 ppid=1 pid=500 comm=\"bash\" exe=\"/usr/bin/bash\" key=(null)"[..]),
            (1320, &b"audit(1.003:4): "[..]),
            (1300, &b"audit(1.004:5): arch=c000003e syscall=2 success=yes exit=3 ppid=500 pid=501 comm=\"id\" exe=\"/usr/bin/id\" key=(null)"[..]),
            (1320, &b"audit(1.004:5): "[..]),
        ]
        .into_iter()
        .collect();
        p.input(Input::Records(batch), Instant::now());
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0]["process"]["parent"],
            serde_json::json!({"pid":500,"exe":"/usr/bin/bash","comm":"bash","argv":["bash","-l"]})
        );
        assert!(lines[1]["process"].get("parent").is_none(), "{}", lines[1]);
        assert_eq!(p.filter_stats().dropped, 3);
    }
}

#[cfg(test)]
mod fit_tests {
    use super::*;
    use crate::output::file::FileConfig;
    use crate::output::OutputConfig;

    /// Regression (review of issue 10): an event larger than `[spool] max_record_bytes` was
    /// refused whole, so a huge argv made an exec vanish from the remote trail.
    #[test]
    fn an_event_over_the_spool_limit_is_cut_to_fit_not_refused() {
        let dir = crate::spool::store::test_dir("pipefit");
        let mut config = Config::default();
        config.spool.dir = dir.join("spool");
        config.spool.max_record_bytes = 8192;
        config.output = vec![OutputConfig::File(FileConfig {
            path: dir.join("out.jsonl"),
            sync_interval: Duration::ZERO,
            ..FileConfig::default()
        })];
        let mut shipper = Shipper::start(&config.spool, &config.output).unwrap();
        let mut p = Pipeline::new(&config, Some("boot".into()));
        let huge = "41".repeat(20_000);
        let execve = format!("audit(1795373270.780:9): argc=2 a0=\"cat\" a1={huge}");
        let records: RecordBatch = [
            (
                1300,
                b"audit(1795373270.780:9): arch=c000003e syscall=59 success=yes exit=0 exe=\"/usr/bin/cat\"".to_vec(),
            ),
            (1309, execve.into_bytes()),
            (1302, b"audit(1795373270.780:9): item=0 name=\"/usr/bin/cat\" inode=1".to_vec()),
            (1320, b"audit(1795373270.780:9): ".to_vec()),
        ]
        .iter()
        .map(|(kind, payload)| (*kind, payload.as_slice()))
        .collect();
        p.input(Input::Records(records), Instant::now());
        p.ship(&mut shipper).unwrap();
        let st = shipper.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!((p.refused, p.cut_to_fit, st.dropped_oversize), (0, 1, 0));
        let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
        let ev: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(ev["truncated"], true, "{ev}");
        assert!(text.len() < 8192);
        let kept = ev.to_string();
        assert!(kept.contains("/usr/bin/cat") && kept.contains("SYSCALL") && kept.contains("PATH"), "{kept}");
        // Schema v2 (the default): the decoded argv repeats the argument and is cut the same way.
        let argv = ev["process"]["argv"].as_array().unwrap();
        assert_eq!(argv[0], "cat");
        assert!(argv[1].as_str().unwrap().contains("auditrelay: cut, original length 20000 bytes"), "{kept}");
    }
}

#[cfg(test)]
mod staging_tests {
    use super::*;
    use crate::output::file::FileConfig;
    use crate::output::OutputConfig;

    fn file_config(dir: &std::path::Path) -> Config {
        let mut config = Config::default();
        config.spool.dir = dir.join("spool");
        config.output = vec![OutputConfig::File(FileConfig {
            name: Some("out".into()),
            path: dir.join("out.jsonl"),
            ..FileConfig::default()
        })];
        config
    }

    /// Interleaved events, records of one event split across hand-offs, and unparsable
    /// records: staging while parsing writes exactly what parsing everything first writes.
    #[test]
    fn staging_while_parsing_writes_what_shipping_afterwards_writes() {
        let mut payloads: Vec<(u16, Vec<u8>)> = Vec::new();
        for n in 0..100u32 {
            let serial = 1000 + n;
            let stamp = format!("audit(1795373270.{:03}:{serial})", n % 1000);
            payloads.push((
                1300,
                format!("{stamp}: arch=c000003e syscall=257 success=no exit=-2 pid={n} comm=\"storm\"").into_bytes(),
            ));
            if n % 7 == 3 {
                payloads.push((1300, b"not a record".to_vec()));
            }
            payloads.push((1302, format!("{stamp}: item=0 name=\"/nonexistent/{n}\" nametype=UNKNOWN").into_bytes()));
            payloads.push((1320, format!("{stamp}: ").into_bytes()));
        }
        // Swap neighbours now and then, so some events complete out of their arrival order.
        for i in (5..payloads.len()).step_by(11) {
            payloads.swap(i - 1, i);
        }
        let hand_offs: Vec<&[(u16, Vec<u8>)]> = payloads.chunks(37).collect();
        let run = |staging: bool| {
            let dir = crate::spool::store::test_dir(if staging { "stage-on" } else { "stage-off" });
            let config = file_config(&dir);
            let mut shipper = Shipper::start(&config.spool, &config.output).unwrap();
            let mut p = Pipeline::new(&config, Some("boot".into()));
            let now = Instant::now();
            for chunk in &hand_offs {
                let batch: RecordBatch = chunk.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                if staging {
                    p.input_staging(Input::Records(batch), now, &mut shipper).unwrap();
                } else {
                    p.input(Input::Records(batch), now);
                }
            }
            p.flush();
            p.ship(&mut shipper).unwrap();
            shipper.shutdown(Duration::from_secs(10)).unwrap();
            (std::fs::read_to_string(dir.join("out.jsonl")).unwrap(), p.handled(), p.events_out)
        };
        let (after, handled_after, out_after) = run(false);
        let (staged, handled_staged, out_staged) = run(true);
        // A swap that puts a record after its event's EOE makes a late event of it.
        assert!(handled_after >= 100, "{handled_after}");
        assert_eq!(after.lines().count() as u64, handled_after + 14, "events and 14 unparsable records");
        assert_eq!((handled_staged, out_staged), (handled_after, out_after));
        // Ids carry the write order's local sequence for unparsable lines; compare without them.
        let strip = |text: &str| -> Vec<serde_json::Value> {
            let mut v: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            v.sort_by_key(|e| e.to_string());
            v
        };
        assert_eq!(strip(&staged), strip(&after));
        // Events themselves come in the same order either way.
        let events = |text: &str| -> Vec<String> {
            text.lines().filter(|l| l.contains("\"records\"")).map(str::to_string).collect()
        };
        assert_eq!(events(&staged), events(&after));
    }
}
