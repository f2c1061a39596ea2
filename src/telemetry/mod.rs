//! The daemon's own figures in one place: what came in from the kernel, what went out to each
//! output, and what was lost, as one [`Snapshot`] that `auditrelay status`, the Prometheus endpoint
//! and the periodic log summary all read.
//!
//! The counters are written where things happen (the netlink reader's `ReaderStats`, the
//! pipeline's counters, the spool's stats, the sinks' [`OutputCounters`], the rules thread's
//! [`RulesFigures`]); the daemon's processing thread gathers them into a snapshot about once a
//! second (src/daemon/stats.rs) and publishes it on a [`Board`]. Readers get the last published
//! snapshot, so a figure is at most that old, and no reader ever takes a lock the pipeline needs.
//!
//! A figure that cannot be known stays in the snapshot as 0 (e.g. `filter_drops` with no
//! `[[filter]]`), so the names the operator's dashboards use do not change when it starts to count.

pub mod control;
pub mod metrics;
pub mod status;

/// How long a listener thread (control socket, metrics) waits for a connection before it looks
/// at its stop flag again. Their owners connect once after setting the flag, so a stop is seen
/// at once and this only bounds it should that connect fail; idle, each wakes once a second.
const ACCEPT_WAIT_MS: u16 = 1000;

/// Wait until `listener` has a connection to accept or [`ACCEPT_WAIT_MS`] pass. An error (EINTR)
/// returns at once: the caller's loop looks at its flag and calls again.
fn wait_for_connection(listener: std::os::fd::BorrowedFd<'_>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener, PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ACCEPT_WAIT_MS));
}

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Version of the snapshot's JSON shape (`auditrelay status --json`, the control socket).
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything the daemon knows about itself at one moment. Serialised as the control socket's
/// reply and `status --json`'s `daemon` object; field names are a contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub pid: u32,
    /// "registered" (the kernel's audit daemon) or "multicast" (reading alongside another).
    pub mode: String,
    pub started_unix_ms: u64,
    pub taken_unix_ms: u64,
    pub uptime_secs: u64,
    /// Kernel records received, their datagrams and bytes.
    pub records_in: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// Events the reassembler built from the records.
    pub events_in: u64,
    /// Lines handed to the spool (or stdout): events, loss notices, unparsable records.
    pub events_out: u64,
    /// Events emitted before they were complete (timeout, caps, shutdown) and records that came
    /// after their event was emitted.
    pub events_incomplete: u64,
    pub events_late: u64,
    pub unparsable_records: u64,
    /// Holes in the kernel's serial numbers, and the serials missing in them.
    pub serial_gaps: u64,
    pub missing_serials: u64,
    /// Loss: records the kernel dropped (its `lost` counter, since we started), receive buffer
    /// overflows (ENOBUFS), datagrams cut (MSG_TRUNC), records dropped on a full reader channel.
    pub kernel_lost: u64,
    pub enobufs: u64,
    pub truncated_datagrams: u64,
    pub channel_drops: u64,
    /// Events dropped by filters (none exist yet: always 0, the slot is kept for them).
    pub filter_drops: u64,
    /// Events refused by the spool (too large) or lost to spool write errors.
    pub spool_refused: u64,
    pub spool_write_errors: u64,
    /// Events cut to fit `[spool] max_record_bytes` (flagged `truncated`, not lost).
    pub events_cut_to_fit: u64,
    pub spool: SpoolFigures,
    pub outputs: Vec<OutputFigures>,
    pub rules: RulesFigures,
    /// The enrichment's user/group name cache (src/enrich/user.rs).
    #[serde(default)]
    pub names: NameFigures,
    /// The process table (`[enrich] process_table_size`): processes kept now, evicted by the
    /// bound, and read from /proc at start.
    #[serde(default)]
    pub process_table_entries: u64,
    #[serde(default)]
    pub process_table_evictions: u64,
    #[serde(default)]
    pub process_table_seeded: u64,
    /// Processes read from /proc later, for events ([`crate::enrich::proc_lookup`]), and answers
    /// dropped because the pid had been recycled since the event that asked.
    #[serde(default)]
    pub process_table_looked_up: u64,
    #[serde(default)]
    pub process_table_looked_up_stale: u64,
}

/// The user/group name cache of the processing thread's enrichment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NameFigures {
    /// false when enrichment or `[enrich] names` is off (the rest is 0).
    pub enabled: bool,
    /// Lookups answered from the cache, and of ids not in it.
    pub hits: u64,
    pub misses: u64,
    /// Lookups handed to the resolver thread, and those dropped because its queue was full
    /// (`[enrich] name_queue`; the id is asked again on a later event).
    pub queued: u64,
    pub dropped: u64,
    /// Entries pushed out of the full cache (`[enrich] name_cache_size`), and entries now.
    pub evictions: u64,
    pub entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpoolFigures {
    /// false in direct stdout mode (no `[[output]]`): no spool, the rest is 0.
    pub enabled: bool,
    pub bytes: u64,
    pub segments: u64,
    /// Events stored and not yet acknowledged by every output.
    pub events: u64,
    /// Age of the oldest event some output has not acknowledged (by its kernel timestamp).
    pub oldest_unacked_age_secs: Option<u64>,
    pub appended: u64,
    pub dropped_oldest: u64,
    pub dropped_newest: u64,
    pub dropped_oversize: u64,
    pub corrupt_skipped: u64,
    pub last_pos: u64,
    /// `[spool] max_bytes`.
    #[serde(default)]
    pub max_bytes: u64,
    /// Recent growth and, from it, how long the free space lasts (`None`: not growing).
    #[serde(default)]
    pub growth_bytes_per_s: u64,
    #[serde(default)]
    pub full_in_secs: Option<u64>,
    /// JSON bytes committed and what they took on disk (compression), since start.
    #[serde(default)]
    pub raw_bytes_written: u64,
    #[serde(default)]
    pub disk_bytes_written: u64,
    /// Events cut from torn tails at recovery (announced in band as `torn_tail`).
    #[serde(default)]
    pub recovered_lost: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputFigures {
    pub name: String,
    pub kind: String,
    /// Deliveries the sink took from the spool (taken again after a sink restart; a sink's own
    /// resends on a new connection are not counted again: see `NET_STATS.resent`). Up to the sink's
    /// window is taken while the receiver is away, so this is not "on the wire".
    pub sent: u64,
    /// Events the receiver acknowledged since start, and the acknowledged spool position.
    pub acked: u64,
    pub acked_pos: u64,
    /// Events in the spool this output has not acknowledged.
    pub pending: u64,
    /// Failures seen (connect, send, receiver error, sink ended) and reconnections made.
    pub errors: u64,
    pub reconnects: u64,
    /// Times the sink task ended early and was started again.
    pub restarts: u64,
    pub last_error: Option<String>,
    /// How long it has failed without delivering anything; `None` while it works.
    pub down_secs: Option<u64>,
}

/// The rules thread's figures (rule sets are loaded on another thread than the pipeline's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulesFigures {
    /// Rules in the set last loaded (the self-exclusion rule not counted); 0 before a load.
    pub loaded: u64,
    /// Where the loaded set came from ("configured", "last_good", "embedded", "locked",
    /// "unchanged"); empty in multicast mode, where another daemon owns the rules.
    pub source: String,
    pub reloads: u64,
    pub reloads_failed: u64,
    pub last_reload: Option<ReloadResult>,
    pub fetches: u64,
    pub fetch_failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadResult {
    pub unix_ms: u64,
    pub ok: bool,
    /// What was loaded, or why nothing was.
    pub message: String,
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Snapshot {
    /// Events or records lost since start, all causes together. Filter drops are policy, not loss.
    pub fn lost(&self) -> u64 {
        self.kernel_lost + self.enobufs + self.channel_drops + self.spool_lost()
    }

    /// One line when something needs an operator, for `status`'s exit code: an output down for
    /// longer than `down_threshold`, or loss since start. `None` when all is well.
    pub fn attention(&self, down_threshold: Duration) -> Option<String> {
        let mut why = Vec::new();
        for o in &self.outputs {
            if let Some(secs) = o.down_secs.filter(|s| *s >= down_threshold.as_secs()) {
                why.push(format!(
                    "output {} down for {secs}s ({})",
                    o.name,
                    o.last_error.as_deref().unwrap_or("no error text")
                ));
            }
        }
        if self.lost() > 0 {
            let parts = [
                ("kernel lost", self.kernel_lost),
                ("ENOBUFS", self.enobufs),
                ("channel drops", self.channel_drops),
                ("spool refused", self.spool_refused),
                ("spool write errors", self.spool_write_errors),
                ("spool dropped oldest", self.spool.dropped_oldest),
                ("spool dropped newest", self.spool.dropped_newest),
                ("spool dropped oversize", self.spool.dropped_oversize),
            ];
            let list: Vec<String> = parts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
            why.push(format!("loss since start: {}", list.join(", ")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The periodic log line: what went in and out and what was lost since `prev`, and totals.
    pub fn summary_since(&self, prev: &Snapshot) -> String {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let outputs: Vec<String> = self
            .outputs
            .iter()
            .map(|o| {
                let before = prev.outputs.iter().find(|p| p.name == o.name).map_or(0, |p| p.acked);
                let down = o.down_secs.map_or(String::new(), |s| format!(" (down {s}s)"));
                format!("{}+{}{down}", o.name, d(o.acked, before))
            })
            .collect();
        format!(
            "summary: {}s: records in +{}, events out +{}, acked {}; lost +{} (kernel +{}, enobufs +{}, channel +{}, spool +{}); \
             spool {} events {} bytes; totals: records {}, events {}, lost {}",
            d(self.uptime_secs, prev.uptime_secs),
            d(self.records_in, prev.records_in),
            d(self.events_out, prev.events_out),
            if outputs.is_empty() { "-".to_string() } else { outputs.join(" ") },
            d(self.lost(), prev.lost()),
            d(self.kernel_lost, prev.kernel_lost),
            d(self.enobufs, prev.enobufs),
            d(self.channel_drops, prev.channel_drops),
            d(self.spool_lost(), prev.spool_lost()),
            self.spool.events,
            self.spool.bytes,
            self.records_in,
            self.events_out,
            self.lost(),
        )
    }

    fn spool_lost(&self) -> u64 {
        self.spool_refused
            + self.spool_write_errors
            + self.spool.dropped_oldest
            + self.spool.dropped_newest
            + self.spool.dropped_oversize
    }
}

/// The last published snapshot, shared by the daemon (writer) and the control and metrics
/// servers (readers).
#[derive(Debug, Default)]
pub struct Board {
    latest: Mutex<Option<Snapshot>>,
}

impl Board {
    pub fn publish(&self, s: Snapshot) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// `None` until the daemon published its first snapshot.
    pub fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One output's counters, written by its sink and its supervisor (different tasks), read by the
/// daemon's gatherer. Looked up by output name with [`output`] because the sinks' entry points have
/// a fixed signature that carries the name but no handle.
#[derive(Debug, Default)]
pub struct OutputCounters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Set by a successful connection, cleared by a failure (stream sinks).
    pub connected: AtomicBool,
    state: Mutex<OutputState>,
}

#[derive(Debug, Default)]
struct OutputState {
    last_error: Option<String>,
    /// When the run of failures without a delivery in between began.
    down_since: Option<Instant>,
    /// Deliveries handed to the sink and not yet acknowledged, oldest first, as runs: (first
    /// spool position, kernel timestamp) of each run of deliveries with the same timestamp (a run
    /// ends where the next begins, the last one at `sent_through`). The front is the oldest
    /// unacknowledged event, without reading the spool. One entry per event made this 2 MB of a
    /// flat-out storm's peak (a lagging file output); a storm's events share their millisecond
    /// a hundred at a time. At most [`MAX_TRACKED`] runs; beyond it newer ones are not tracked
    /// (the front, which is what is read, stays right until the tracked ones are acknowledged).
    in_flight: VecDeque<(u64, u64)>,
    /// The last position handed to the sink.
    sent_through: u64,
}

/// Bound of [`OutputState::in_flight`]: above any sink window plus the pump's batch.
pub const MAX_TRACKED: usize = 1 << 17;

impl OutputCounters {
    /// A failure: counted, remembered, and the start of a down period if none is running.
    pub fn failed(&self, error: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.connected.store(false, Ordering::Relaxed);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_error = Some(error.to_string());
        st.down_since.get_or_insert_with(Instant::now);
    }

    pub fn connected(&self, reconnect: bool) {
        if reconnect {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(true, Ordering::Relaxed);
    }

    /// The receiver acknowledged everything up to spool position `pos`, `n` events more than
    /// before: the output works.
    pub fn delivered(&self, pos: u64, n: u64) {
        self.acked.fetch_add(n, Ordering::Relaxed);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.down_since = None;
        if pos >= st.sent_through {
            st.in_flight.clear();
            return;
        }
        // A run is done when the next one starts at or before the position after `pos`.
        while st.in_flight.get(1).is_some_and(|&(next, _)| next <= pos + 1) {
            st.in_flight.pop_front();
        }
        if let Some(front) = st.in_flight.front_mut() {
            front.0 = front.0.max(pos + 1);
        }
    }

    /// A delivery (spool position, kernel timestamp) was handed to the sink. After a sink restart
    /// the same positions come again: only newer ones are tracked.
    pub fn sent(&self, pos: u64, time_ms: u64) {
        self.sent_all([(pos, time_ms)]);
    }

    /// [`OutputCounters::sent`] for a run of deliveries, under one lock (the pump's hot path).
    pub fn sent_all(&self, deliveries: impl IntoIterator<Item = (u64, u64)>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (pos, time_ms) in deliveries {
            n += 1;
            if pos <= st.sent_through {
                continue;
            }
            let contiguous = pos == st.sent_through + 1;
            st.sent_through = pos;
            let joins = contiguous && st.in_flight.back().is_some_and(|&(_, t)| t == time_ms);
            if !joins && st.in_flight.len() < MAX_TRACKED {
                st.in_flight.push_back((pos, time_ms));
            }
        }
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Kernel timestamp of the oldest delivery handed to the sink and not acknowledged.
    pub fn oldest_unacked_ms(&self) -> Option<u64> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).in_flight.front().map(|&(_, t)| t)
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last_error.clone()
    }

    /// How long it has been down. An output that is connected and has nothing left to deliver is
    /// up, even though nothing was acknowledged since its last failure (there was nothing to ack).
    pub fn down_for(&self, now: Instant, pending: u64) -> Option<Duration> {
        let since = self.state.lock().unwrap_or_else(|p| p.into_inner()).down_since?;
        if pending == 0 && self.connected.load(Ordering::Relaxed) {
            return None;
        }
        Some(now.saturating_duration_since(since))
    }
}

/// The counters of output `name`, created on first use. Process-wide, like the output names.
pub fn output(name: &str) -> Arc<OutputCounters> {
    static OUTPUTS: OnceLock<Mutex<HashMap<String, Arc<OutputCounters>>>> = OnceLock::new();
    let map = OUTPUTS.get_or_init(Default::default);
    map.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone()
}

/// The rules thread's figures; changed with [`note_rules`], read with [`rules`].
fn rules_cell() -> &'static Mutex<RulesFigures> {
    static RULES: OnceLock<Mutex<RulesFigures>> = OnceLock::new();
    RULES.get_or_init(Default::default)
}

pub fn note_rules(change: impl FnOnce(&mut RulesFigures)) {
    change(&mut rules_cell().lock().unwrap_or_else(|p| p.into_inner()));
}

pub fn rules() -> RulesFigures {
    rules_cell().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_names_a_long_down_output_and_any_loss() {
        let mut s = Snapshot::default();
        assert_eq!(s.attention(Duration::from_secs(300)), None);
        s.outputs.push(OutputFigures {
            name: "relp".into(),
            down_secs: Some(299),
            last_error: Some("connection refused".into()),
            ..OutputFigures::default()
        });
        assert_eq!(s.attention(Duration::from_secs(300)), None, "not yet over the threshold");
        s.outputs[0].down_secs = Some(300);
        let why = s.attention(Duration::from_secs(300)).unwrap();
        assert!(why.contains("output relp down for 300s (connection refused)"), "{why}");
        s.outputs[0].down_secs = None;
        s.kernel_lost = 3;
        s.spool.dropped_oldest = 2;
        let why = s.attention(Duration::from_secs(300)).unwrap();
        assert_eq!(why, "loss since start: kernel lost 3, spool dropped oldest 2");
        s.kernel_lost = 0;
        s.spool.dropped_oldest = 0;
        s.filter_drops = 9;
        assert_eq!(s.attention(Duration::from_secs(300)), None, "filter drops are policy, not loss");
    }

    #[test]
    fn an_output_is_down_from_its_first_failure_until_it_delivers() {
        let c = OutputCounters::default();
        let t0 = Instant::now();
        assert_eq!(c.down_for(t0, 5), None);
        c.failed("refused");
        c.failed("refused again");
        assert!(c.down_for(Instant::now() + Duration::from_secs(10), 5).unwrap() >= Duration::from_secs(10));
        assert_eq!(c.errors.load(Ordering::Relaxed), 2);
        assert_eq!(c.last_error().as_deref(), Some("refused again"));
        c.connected(true);
        assert_eq!(c.down_for(Instant::now(), 0), None, "connected with nothing to send is up");
        assert!(c.down_for(Instant::now(), 1).is_some(), "connected but not delivering is still down");
        c.delivered(0, 1);
        assert_eq!(c.down_for(Instant::now(), 1), None);
        assert_eq!(c.reconnects.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_oldest_unacked_delivery_is_the_front_of_what_is_in_flight() {
        let c = OutputCounters::default();
        assert_eq!(c.oldest_unacked_ms(), None);
        for pos in 1..=5 {
            c.sent(pos, 1000 + pos);
        }
        assert_eq!(c.oldest_unacked_ms(), Some(1001));
        c.delivered(2, 2);
        assert_eq!(c.oldest_unacked_ms(), Some(1003));
        // A restarted sink is handed positions 3.. again: tracked once.
        for pos in 3..=6 {
            c.sent(pos, 1000 + pos);
        }
        c.delivered(5, 3);
        assert_eq!(c.oldest_unacked_ms(), Some(1006));
        c.delivered(6, 1);
        assert_eq!(c.oldest_unacked_ms(), None);
        assert_eq!((c.sent.load(Ordering::Relaxed), c.acked.load(Ordering::Relaxed)), (9, 6));
    }

    /// Deliveries sharing a timestamp are one entry; a partial ack of a run keeps its time, a
    /// gap in positions (dropped events) starts a new run.
    #[test]
    fn runs_of_one_millisecond_are_tracked_as_one() {
        let c = OutputCounters::default();
        c.sent_all([(1, 10), (2, 10), (3, 10), (4, 11), (5, 11), (8, 11), (9, 9)]);
        assert_eq!(c.state.lock().unwrap().in_flight.len(), 4);
        c.delivered(2, 2);
        assert_eq!(c.oldest_unacked_ms(), Some(10), "position 3 is still out");
        c.delivered(3, 1);
        assert_eq!(c.oldest_unacked_ms(), Some(11));
        c.delivered(5, 2);
        assert_eq!(c.oldest_unacked_ms(), Some(11), "8 is its own run");
        c.delivered(8, 1);
        assert_eq!(c.oldest_unacked_ms(), Some(9));
        c.delivered(9, 1);
        assert_eq!(c.oldest_unacked_ms(), None);
    }

    #[test]
    fn summary_gives_deltas_and_totals() {
        let prev = Snapshot { uptime_secs: 10, records_in: 100, events_out: 40, ..Snapshot::default() };
        let mut now = Snapshot { uptime_secs: 70, records_in: 400, events_out: 140, kernel_lost: 2, ..prev.clone() };
        now.outputs.push(OutputFigures { name: "relp".into(), acked: 90, ..OutputFigures::default() });
        let line = now.summary_since(&prev);
        assert!(
            line.starts_with("summary: 60s: records in +300, events out +100, acked relp+90; lost +2 (kernel +2,"),
            "{line}"
        );
        assert!(line.ends_with("totals: records 400, events 140, lost 2"), "{line}");
    }

    #[test]
    fn the_snapshot_round_trips_through_json() {
        let mut s = Snapshot { version: SNAPSHOT_VERSION, records_in: 7, ..Snapshot::default() };
        s.outputs.push(OutputFigures { name: "a".into(), down_secs: Some(3), ..OutputFigures::default() });
        s.rules.last_reload = Some(ReloadResult { unix_ms: 1, ok: false, message: "x".into() });
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&text).unwrap(), s);
    }
}
