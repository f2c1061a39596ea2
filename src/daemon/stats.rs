//! The daemon's side of [`crate::telemetry`]: gathers the stages' counters into a [`Snapshot`]
//! about once a second from the processing thread (which owns the pipeline and the shipper),
//! publishes it for the control socket and the metrics endpoint, and logs the periodic summary.
//!
//! Gathering on the processing thread, not in the servers, keeps the pipeline's counters plain
//! integers (no locks or atomics on the hot path) at the cost of figures up to [`PUBLISH_EVERY`]
//! old; the loop wakes at least every 200 ms, so the interval holds under any load.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::netlink::reader::ReaderStats;
use crate::output::Shipper;
use crate::telemetry::control::ControlServer;
use crate::telemetry::metrics::MetricsServer;
use crate::telemetry::{self, Board, NameFigures, OutputFigures, Snapshot, SpoolFigures, SNAPSHOT_VERSION};

use super::pipeline::Pipeline;
use super::DaemonError;

/// How often the figures are gathered and published.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The servers and timers of the daemon's self-report; dropping it stops the servers.
pub struct Telemetry {
    board: Arc<Board>,
    mode: &'static str,
    started: Instant,
    started_unix_ms: u64,
    summary_every: Duration,
    next_publish: Instant,
    next_summary: Instant,
    last_summary: Snapshot,
    _control: Option<ControlServer>,
    _metrics: Option<MetricsServer>,
}

impl Telemetry {
    /// Start the control socket and the metrics endpoint as configured. A control socket that
    /// cannot be bound is a warning, not a reason to stop auditing; a metrics address that cannot be
    /// bound is an error (the operator asked for it and would scrape nothing).
    pub fn start(config: &Config, multicast: bool) -> Result<Telemetry, DaemonError> {
        let board = Arc::new(Board::default());
        let control = if config.control.enabled() {
            match ControlServer::start(&config.control, board.clone()) {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("no control socket (`auditrelay status` will show the kernel only): {e}");
                    None
                }
            }
        } else {
            None
        };
        let metrics = match config.metrics.addr().map_err(DaemonError::Config)? {
            Some(addr) => {
                let server = MetricsServer::start(addr, config.metrics.max_connections, board.clone())
                    .map_err(|e| DaemonError::Config(format!("metrics.listen {addr}: {e}")))?;
                log::info!("metrics on http://{}/metrics", server.addr());
                Some(server)
            }
            None => None,
        };
        let now = Instant::now();
        let summary_every = config.log.summary_interval.0;
        Ok(Telemetry {
            board,
            mode: if multicast { "multicast" } else { "registered" },
            started: now,
            started_unix_ms: telemetry::unix_ms(),
            summary_every,
            next_publish: now,
            next_summary: now + summary_every,
            last_summary: Snapshot::default(),
            _control: control,
            _metrics: metrics,
        })
    }

    /// Publish when due, and log the summary line when due. Call from the processing loop.
    pub fn tick(&mut self, now: Instant, pipeline: &Pipeline, shipper: &Shipper, reader: &ReaderStats) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + PUBLISH_EVERY;
        let snapshot = self.gather(now, pipeline, shipper, reader);
        if !self.summary_every.is_zero() && now >= self.next_summary {
            self.next_summary = now + self.summary_every;
            log::info!(target: crate::logging::SUMMARY_TARGET, "{}", snapshot.summary_since(&self.last_summary));
            self.last_summary = snapshot.clone();
        }
        self.board.publish(snapshot);
    }

    fn gather(&self, now: Instant, pipeline: &Pipeline, shipper: &Shipper, reader: &ReaderStats) -> Snapshot {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let re = pipeline.reassembly();
        let ship = shipper.stats();
        let spooled = !ship.outputs.is_empty();
        let min_acked = ship.outputs.iter().map(|o| o.acked).min().unwrap_or(ship.last_pos);
        let now_ms = telemetry::unix_ms();
        let mut oldest: Option<u64> = None;
        let outputs = ship
            .outputs
            .iter()
            .map(|o| {
                let c = telemetry::output(&o.name);
                let pending = ship.last_pos.saturating_sub(o.acked);
                if pending > 0 {
                    if let Some(t) = c.oldest_unacked_ms() {
                        oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    }
                }
                OutputFigures {
                    name: o.name.clone(),
                    kind: o.kind.to_string(),
                    sent: get(&c.sent),
                    acked: get(&c.acked),
                    acked_pos: o.acked,
                    pending,
                    errors: get(&c.errors),
                    reconnects: get(&c.reconnects),
                    restarts: o.restarts,
                    last_error: c.last_error().or_else(|| o.last_error.clone()),
                    down_secs: c.down_for(now, pending).map(|d| d.as_secs()),
                }
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            pid: std::process::id(),
            mode: self.mode.to_string(),
            started_unix_ms: self.started_unix_ms,
            taken_unix_ms: now_ms,
            uptime_secs: now.duration_since(self.started).as_secs(),
            records_in: get(&reader.records),
            datagrams_in: get(&reader.datagrams),
            bytes_in: get(&reader.bytes),
            events_in: re.events,
            events_out: pipeline.events_out,
            events_incomplete: pipeline.incomplete,
            events_late: pipeline.late,
            unparsable_records: pipeline.unparsable,
            serial_gaps: re.serial_gaps,
            missing_serials: re.missing_serials,
            kernel_lost: pipeline.kernel_lost,
            enobufs: get(&reader.overruns),
            truncated_datagrams: get(&reader.truncated),
            channel_drops: get(&reader.dropped_channel_full),
            filter_drops: pipeline.filter_stats().dropped,
            process_table_entries: pipeline.processes.entries,
            process_table_evictions: pipeline.processes.evictions,
            process_table_seeded: pipeline.processes.seeded,
            process_table_looked_up: pipeline.processes.looked_up,
            process_table_looked_up_stale: pipeline.processes.looked_up_stale,
            spool_refused: pipeline.refused,
            spool_write_errors: pipeline.ship_errors,
            events_cut_to_fit: pipeline.cut_to_fit,
            spool: SpoolFigures {
                enabled: spooled,
                bytes: ship.spool_bytes,
                segments: ship.spool_segments as u64,
                events: ship.last_pos.saturating_sub(min_acked),
                // In flight at an output, else the spool's own oldest unacknowledged event.
                oldest_unacked_age_secs: oldest
                    .map(|t| now_ms.saturating_sub(t) / 1000)
                    .or(ship.spool.oldest_unacked_age.map(|d| d.as_secs())),
                appended: ship.appended,
                dropped_oldest: ship.dropped_oldest,
                dropped_newest: ship.dropped_newest,
                dropped_oversize: ship.dropped_oversize,
                corrupt_skipped: ship.corrupt_skipped,
                last_pos: ship.last_pos,
                max_bytes: ship.spool.max_bytes,
                growth_bytes_per_s: ship.spool.growth_bytes_per_s,
                full_in_secs: ship.spool.full_in.map(|d| d.as_secs()),
                raw_bytes_written: ship.spool.raw_bytes_written,
                disk_bytes_written: ship.spool.disk_bytes_written,
                recovered_lost: ship.spool.recovered_lost,
            },
            outputs,
            rules: telemetry::rules(),
            names: names(pipeline.name_cache()),
        }
    }
}

/// The name cache's counters as published.
fn names(cache: Option<&crate::enrich::user::NameCache>) -> NameFigures {
    let Some(c) = cache else { return NameFigures::default() };
    let s = c.stats;
    NameFigures {
        enabled: true,
        hits: s.hits,
        misses: s.misses,
        queued: s.queued,
        dropped: s.queue_full,
        evictions: s.evictions,
        entries: c.len() as u64,
    }
}
