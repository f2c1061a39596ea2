//! The shipper: the synchronous front the processing thread calls (`submit`), the spool behind it,
//! and one supervised delivery loop per output.
//!
//! ```text
//! processing thread ──submit──▶ Spool (append, never waits on a sink unless on_full = "block")
//!   per output: pump thread ──SpoolReader::next_batch──▶ mpsc(window) ──▶ sink task ──Ack──▶ Spool::ack
//!   sync thread: fdatasync by interval, persist cursors, delete fully acknowledged segments
//! ```
//! The pump is a plain thread because reading segments is blocking file I/O; it blocks on the
//! bounded channel when the sink is behind, which is the back-pressure: memory per output is the
//! window plus one read buffer, however long the receiver is away.
//!
//! Hand-offs carry batches: the processing thread stages a loop iteration's events and commits
//! them with one write (one wake-up of each pump), a pump takes everything committed at once and
//! queues it in a row (one wake-up of the sink task), and a sink acknowledges a batch at a time.
//! Thread wake-ups, not the work itself, were a third of the daemon's CPU when each event was
//! handed on alone (docs/performance.md).
//!
//! A sink that returns (error or not) before shutdown is restarted after a backoff (0.5 s doubling
//! to 30 s) by a fresh pump that starts after the last acknowledged position: everything in flight
//! is sent again (at-least-once).
//!
//! With no `[[output]]` at all, the shipper writes JSON lines straight to stdout without a spool:
//! the embedded defaults must work on a machine without `/var/lib/auditrelay`, and a spool in front
//! of a terminal protects nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::delivery::{Ack, Delivery};
use super::{OutputConfig, SinkPlan};
use crate::spool::store::log;
use crate::spool::{Appended, Spool, SpoolConfig, SpoolError, SpoolReader, SpoolStats};

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("output {name}: {message}")]
    Output { name: String, message: String },
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
    #[error("cannot start thread {name}: {source}")]
    Thread { name: String, source: std::io::Error },
}

impl ShipError {
    /// True when only this one event was refused (too large, bad id) and shipping goes on.
    pub fn is_per_event(&self) -> bool {
        matches!(self, ShipError::Spool(SpoolError::TooLarge { .. } | SpoolError::IdTooLong { .. }))
    }

    /// Events already handed to the spool that this error lost (a failed write of staged events).
    pub fn events_lost(&self) -> u64 {
        match self {
            ShipError::Spool(e) => e.events_lost(),
            _ => 0,
        }
    }
}

/// Per-output state visible in stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStats {
    pub name: String,
    pub kind: &'static str,
    /// Last spool position the receiver acknowledged.
    pub acked: u64,
    /// Times the sink ended early and was started again.
    pub restarts: u64,
    pub last_error: Option<String>,
}

/// Counters for `status` and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Events accepted (spooled, or written in direct stdout mode).
    pub appended: u64,
    pub dropped_oldest: u64,
    pub dropped_newest: u64,
    pub dropped_oversize: u64,
    pub corrupt_skipped: u64,
    pub loss_notices: u64,
    pub spool_bytes: u64,
    pub spool_segments: usize,
    /// Position of the last spooled record.
    pub last_pos: u64,
    pub outputs: Vec<OutputStats>,
    /// Everything the spool reports (events, oldest unacknowledged age, `full_in`, compression
    /// achieved, every loss counter); default in direct stdout mode.
    pub spool: SpoolStats,
}

/// See [`Shipper::interrupter`].
#[derive(Clone)]
pub struct Interrupter(Option<Spool>);

impl Interrupter {
    pub fn interrupt(&self) {
        if let Some(s) = &self.0 {
            s.interrupt();
        }
    }
}

struct OutputState {
    name: String,
    kind: &'static str,
    restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Spooled {
    spool: Spool,
    outputs: Vec<Arc<OutputState>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_sync: Arc<AtomicBool>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

enum Mode {
    Direct { out: std::io::BufWriter<std::io::Stdout>, appended: u64 },
    Spooled(Spooled),
}

/// See the module docs. Synchronous API, called from the processing thread.
pub struct Shipper {
    mode: Mode,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Extra time after `grace` for sinks to close their sessions once told to stop.
const CLOSE_TIME: Duration = Duration::from_secs(3);

impl Shipper {
    pub fn start(
        spool: &SpoolConfig,
        outputs: &[OutputConfig],
        rt: &tokio::runtime::Handle,
    ) -> Result<Shipper, ShipError> {
        if outputs.is_empty() {
            return Ok(Shipper {
                mode: Mode::Direct { out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()), appended: 0 },
            });
        }
        let plans: Vec<SinkPlan> = outputs.iter().map(OutputConfig::plan).collect();
        let names = super::output_names(outputs).map_err(|(name, message)| ShipError::Output { name, message })?;
        let spool_handle = Spool::open(spool, &names)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let states: Vec<Arc<OutputState>> = plans
            .iter()
            .zip(&names)
            .map(|(p, n)| {
                Arc::new(OutputState {
                    name: n.clone(),
                    kind: p.kind,
                    restarts: AtomicU64::new(0),
                    last_error: Mutex::new(None),
                })
            })
            .collect();

        let stop_sync = Arc::new(AtomicBool::new(false));
        let sync_thread = {
            let spool = spool_handle.clone();
            let stop = stop_sync.clone();
            let tick = spool.tick();
            std::thread::Builder::new()
                .name("spool-sync".into())
                .spawn(move || sync_loop(spool, stop, tick))
                .map_err(|source| ShipError::Thread { name: "spool-sync".into(), source })?
        };
        let tasks = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| rt.spawn(supervise(i, plan, spool_handle.clone(), shutdown_rx.clone(), states[i].clone())))
            .collect();
        Ok(Shipper {
            mode: Mode::Spooled(Spooled {
                spool: spool_handle,
                outputs: states,
                shutdown,
                tasks,
                stop_sync,
                sync_thread: Some(sync_thread),
            }),
        })
    }

    /// Hand one event (one JSON line, no '\n') to the outputs. It is staged: [`Shipper::flush`]
    /// writes everything staged to the spool's file in one go (page cache; durable per the fsync
    /// policy). Dropped events under `drop_newest` are not
    /// an error: they are counted and announced. In direct stdout mode the line is buffered until
    /// [`Shipper::flush`] (or 64 KiB).
    pub fn submit(&mut self, time_ms: u64, id: &str, body: &[u8]) -> Result<(), ShipError> {
        match &mut self.mode {
            Mode::Direct { out, appended } => {
                out.write_all(body).and_then(|_| out.write_all(b"\n")).map_err(ShipError::Stdout)?;
                *appended += 1;
                Ok(())
            }
            Mode::Spooled(s) => match s.spool.stage(time_ms, id, body)? {
                Appended::Stored { .. } | Appended::Dropped => Ok(()),
            },
        }
    }

    /// Write what `submit` staged: to stdout in direct mode, to the spool's segment (one write,
    /// then synced by the spool's policy) otherwise. The daemon calls this once per loop, so
    /// output is batched under load and prompt when idle.
    pub fn flush(&mut self) -> Result<(), ShipError> {
        match &mut self.mode {
            Mode::Direct { out, .. } => out.flush().map_err(ShipError::Stdout),
            Mode::Spooled(s) => Ok(s.spool.commit()?),
        }
    }

    /// A handle that makes a `submit` blocked by `on_full = "block"` return
    /// `ShipError::Spool(SpoolError::Interrupted)`; for the daemon's SIGTERM path, which runs on
    /// another thread than the blocked processing thread.
    pub fn interrupter(&self) -> Interrupter {
        match &self.mode {
            Mode::Direct { .. } => Interrupter(None),
            Mode::Spooled(s) => Interrupter(Some(s.spool.clone())),
        }
    }

    /// Wake file sinks to reopen their files (the daemon may call this from its SIGUSR1 handler;
    /// file sinks also listen for SIGUSR1 themselves).
    pub fn reopen_files(&self) {
        super::file::request_reopen();
    }

    pub fn stats(&self) -> ShipStats {
        match &self.mode {
            Mode::Direct { appended, .. } => ShipStats { appended: *appended, ..ShipStats::default() },
            Mode::Spooled(s) => ship_stats(&s.spool.stats(), &s.outputs),
        }
    }

    /// Flush the spool, give the sinks `grace` to deliver everything, stop them, persist cursors.
    /// Whatever is not acknowledged by then stays in the spool for the next start.
    /// Call from a plain thread (it sleeps), not from inside the runtime.
    pub fn shutdown(self, grace: Duration) -> Result<ShipStats, ShipError> {
        let mut this = self;
        match &mut this.mode {
            Mode::Direct { out, appended } => {
                out.flush().map_err(ShipError::Stdout)?;
                Ok(ShipStats { appended: *appended, ..ShipStats::default() })
            }
            Mode::Spooled(s) => {
                s.spool.flush()?;
                let drained = s.spool.wait_all_acked(Instant::now() + grace);
                let _ = s.shutdown.send(true);
                s.spool.wake();
                let deadline = Instant::now() + CLOSE_TIME;
                while s.tasks.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                for t in &s.tasks {
                    t.abort();
                }
                s.stop_sync.store(true, Ordering::Relaxed);
                if let Some(t) = s.sync_thread.take() {
                    let _ = t.join();
                }
                s.spool.flush()?;
                let stats = ship_stats(&s.spool.stats(), &s.outputs);
                if !drained {
                    for o in &stats.outputs {
                        if o.acked < stats.last_pos {
                            log(format_args!(
                                "shutdown: output {} has {} events left in the spool for the next start",
                                o.name,
                                stats.last_pos - o.acked
                            ));
                        }
                    }
                }
                Ok(stats)
            }
        }
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // Reached without shutdown() only on an error path: stop what runs, keep what is spooled.
        let _ = self.shutdown.send(true);
        self.stop_sync.store(true, Ordering::Relaxed);
        self.spool.wake();
    }
}

fn ship_stats(s: &SpoolStats, outputs: &[Arc<OutputState>]) -> ShipStats {
    ShipStats {
        appended: s.appended,
        dropped_oldest: s.dropped_oldest,
        dropped_newest: s.dropped_newest,
        dropped_oversize: s.dropped_oversize,
        corrupt_skipped: s.corrupt_skipped,
        loss_notices: s.loss_notices,
        spool_bytes: s.bytes,
        spool_segments: s.segments,
        last_pos: s.last_pos,
        outputs: outputs
            .iter()
            .zip(&s.acked)
            .map(|(o, (_, acked))| OutputStats {
                name: o.name.clone(),
                kind: o.kind,
                acked: *acked,
                restarts: o.restarts.load(Ordering::Relaxed),
                last_error: o.last_error.lock().map(|e| e.clone()).unwrap_or(None),
            })
            .collect(),
        spool: s.clone(),
    }
}

fn sync_loop(spool: Spool, stop: Arc<AtomicBool>, tick: Duration) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        match spool.maintain() {
            Ok(()) => failing = false,
            Err(e) => {
                // Log the first failure of a run of them, not one line per tick.
                if !failing {
                    log(format_args!("{e}"));
                }
                failing = true;
            }
        }
    }
}

/// Most records a pump takes from the spool per wake-up; the channel (the sink's window) bounds
/// what is in flight, this only bounds the pump's own buffer.
const PUMP_BATCH: usize = 1024;

/// Feed one sink incarnation from the spool until told to stop or the sink hangs up.
fn pump(mut reader: SpoolReader, tx: mpsc::Sender<Delivery>, stop: Arc<AtomicBool>) {
    let mut batch: Vec<Delivery> = Vec::with_capacity(PUMP_BATCH);
    while !stop.load(Ordering::Relaxed) {
        let read = reader.next_batch(Duration::from_millis(200), PUMP_BATCH, &mut |rec| {
            batch.push(Delivery {
                pos: rec.pos,
                time_ms: rec.time_ms,
                id: Arc::from(rec.id),
                body: Arc::from(rec.body),
            })
        });
        match read {
            Ok(0) => {
                if tx.is_closed() {
                    return;
                }
            }
            Ok(_) => {
                // Queued in a row: the sink task is woken once for the run, not once per event.
                for d in batch.drain(..) {
                    if tx.blocking_send(d).is_err() {
                        return;
                    }
                }
            }
            // Logged and counted by the reader, which continues after it.
            Err(SpoolError::Corrupt { .. }) => {}
            Err(e) => {
                log(format_args!("{e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

async fn supervise(
    idx: usize,
    plan: SinkPlan,
    spool: Spool,
    mut shutdown: watch::Receiver<bool>,
    state: Arc<OutputState>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let (dtx, drx) = mpsc::channel(plan.window);
        let (atx, mut arx) = mpsc::channel::<Ack>(plan.window);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = spool.reader(idx);
        let pump_stop = stop.clone();
        let pump_thread = std::thread::Builder::new()
            .name(format!("spool-{}", state.name))
            .spawn(move || pump(reader, dtx, pump_stop));
        let started = Instant::now();
        let result = match pump_thread {
            Err(e) => Err(format!("cannot start reader thread: {e}")),
            Ok(pump_thread) => {
                let mut sink = plan.launch(drx, atx, shutdown.clone());
                let result = loop {
                    tokio::select! {
                        r = &mut sink => break r,
                        Some(Ack(p)) = arx.recv() => spool.ack(idx, p),
                    }
                };
                drop(sink);
                while let Ok(Ack(p)) = arx.try_recv() {
                    spool.ack(idx, p);
                }
                stop.store(true, Ordering::Relaxed);
                spool.wake();
                let _ = tokio::task::spawn_blocking(move || pump_thread.join()).await;
                result.map_err(|e| e.to_string())
            }
        };
        if *shutdown.borrow() {
            return;
        }
        let message = match result {
            Ok(()) => "ended before shutdown".to_string(),
            Err(e) => e,
        };
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        log(format_args!("output {}: {message}; restarting in {:?}", state.name, backoff));
        if let Ok(mut e) = state.last_error.lock() {
            *e = Some(message);
        }
        state.restarts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::file::FileConfig;
    use crate::spool::OnFull;
    use std::path::{Path, PathBuf};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn spool_cfg(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.join("spool"),
            max_bytes: 1 << 20,
            segment_bytes: 16 << 10,
            max_record_bytes: 4096,
            on_full: OnFull::DropOldest,
            fsync_interval: Duration::from_millis(20),
            fsync_every: 0,
            cursor_interval: Duration::from_millis(20),
            drain_timeout: Duration::from_secs(5),
            ..SpoolConfig::default()
        }
    }

    fn file_out(name: &str, path: PathBuf) -> OutputConfig {
        OutputConfig::File(FileConfig {
            name: Some(name.into()),
            path,
            max_size: 0,
            batch: 16,
            ..FileConfig::default()
        })
    }

    fn submit_range(s: &mut Shipper, from: u64, to: u64) {
        for i in from..=to {
            s.submit(i, &format!("ev-{i}"), format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        s.flush().unwrap();
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn expected(from: u64, to: u64) -> Vec<String> {
        (from..=to).map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    #[test]
    fn every_event_reaches_every_output_in_order() {
        let d = crate::spool::store::test_dir("ship");
        let rt = rt();
        let outs = vec![file_out("a", d.join("a.jsonl")), file_out("b", d.join("b.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).unwrap();
        submit_range(&mut s, 1, 2000);
        let st = s.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(lines(&d.join("a.jsonl")), expected(1, 2000));
        assert_eq!(lines(&d.join("b.jsonl")), expected(1, 2000));
        assert_eq!(st.appended, 2000);
        assert!(st.outputs.iter().all(|o| o.acked == 2000 && o.restarts == 0), "{st:?}");
        // Fully acknowledged segments are gone; only the active one is left.
        assert_eq!(st.spool_segments, 1, "{st:?}");
    }

    #[test]
    fn a_failing_output_is_restarted_and_gets_everything_while_the_other_is_not_held_up() {
        let d = crate::spool::store::test_dir("shipfail");
        let rt = rt();
        let later = d.join("later");
        let outs = vec![file_out("ok", d.join("ok.jsonl")), file_out("late", later.join("x.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).unwrap();
        submit_range(&mut s, 1, 300);
        let t0 = Instant::now();
        while s.stats().outputs[0].acked < 300 {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = s.stats();
        assert_eq!(st.outputs[1].acked, 0);
        assert!(st.outputs[1].last_error.as_deref().unwrap_or("").contains("later/x.jsonl"), "{st:?}");
        std::fs::create_dir(&later).unwrap();
        submit_range(&mut s, 301, 400);
        let st = s.shutdown(Duration::from_secs(10)).unwrap();
        assert!(st.outputs[1].restarts >= 1);
        assert_eq!(lines(&later.join("x.jsonl")), expected(1, 400));
        assert_eq!(lines(&d.join("ok.jsonl")), expected(1, 400));
    }

    #[test]
    fn unacknowledged_events_are_sent_after_a_restart() {
        let d = crate::spool::store::test_dir("shiprestart");
        let rt = rt();
        let later = d.join("later");
        let outs = vec![file_out("f", later.join("x.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).unwrap();
        submit_range(&mut s, 1, 250);
        let st = s.shutdown(Duration::from_millis(100)).unwrap();
        assert_eq!(st.outputs[0].acked, 0);
        assert!(st.spool_bytes > 0);
        std::fs::create_dir(&later).unwrap();
        let mut s = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).unwrap();
        submit_range(&mut s, 251, 260);
        let st = s.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(lines(&later.join("x.jsonl")), expected(1, 260));
        assert_eq!(st.outputs[0].acked, st.last_pos);
    }

    #[test]
    fn duplicate_or_bad_output_names_are_refused() {
        let d = crate::spool::store::test_dir("shipnames");
        let rt = rt();
        let outs = vec![file_out("x", d.join("1")), file_out("x", d.join("2"))];
        let e = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).err().unwrap();
        assert!(e.to_string().contains("two outputs"), "{e}");
        let outs = vec![file_out("a/b", d.join("1"))];
        assert!(Shipper::start(&spool_cfg(&d), &outs, rt.handle()).is_err());
        let outs = vec![OutputConfig::File(FileConfig::default())];
        let e = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).err().unwrap();
        assert!(e.to_string().contains("file-0") && e.to_string().contains("path"), "{e}");
    }
}
