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
    /// After shutdown is signalled, how long the sinks get before they are aborted: the slowest
    /// sink's own bound ([`SinkPlan::close_time`]) plus [`CLOSE_MARGIN`].
    close_time: Duration,
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
/// Beyond the slowest sink's own close bound: the supervisor joins its pump thread and hands the
/// last acks to the spool.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

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
        for (output, name) in outputs.iter().zip(&names) {
            output.check().map_err(|message| ShipError::Output { name: name.clone(), message })?;
        }
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
        let close_time = close_time(&plans);
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
                close_time,
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
                let deadline = Instant::now() + s.close_time;
                while s.tasks.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                for (t, o) in s.tasks.iter().zip(&s.outputs) {
                    if !t.is_finished() {
                        ::log::warn!(
                            "shutdown: output {} did not stop within {:?}; aborted (what it had not had \
                             acknowledged is sent again after the next start)",
                            o.name,
                            s.close_time
                        );
                    }
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

/// See [`Spooled::close_time`].
fn close_time(plans: &[SinkPlan]) -> Duration {
    plans.iter().map(|p| p.close_time).max().unwrap_or(super::DEFAULT_CLOSE_TIME) + CLOSE_MARGIN
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

/// Feed one sink incarnation from the spool until told to stop or the sink hangs up. With a
/// `fitter` (syslog outputs), bodies over the output's `max_message_size` are cut here, on this
/// plain thread: cutting a multi-megabyte event is CPU-heavy and must not hold one of the async
/// runtime's two workers, which every sink and timer share.
fn pump(
    mut reader: SpoolReader,
    tx: mpsc::Sender<Delivery>,
    stop: Arc<AtomicBool>,
    fitter: Option<super::syslog::Formatter>,
) {
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
                for mut d in batch.drain(..) {
                    if let Some(f) = &fitter {
                        f.prefit(&mut d);
                    }
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
        // An invalid header is the sink's own start error (reported by it); no fitting then.
        let fitter = plan.header.as_ref().and_then(|h| super::syslog::Formatter::new(&state.name, h).ok());
        let pump_thread = std::thread::Builder::new()
            .name(format!("spool-{}", state.name))
            .spawn(move || pump(reader, dtx, pump_stop, fitter));
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

    fn relp_out(address: String, shutdown_timeout: Duration) -> OutputConfig {
        OutputConfig::Relp(crate::output::relp::RelpConfig {
            name: Some("r".into()),
            address,
            shutdown_timeout: crate::units::HumanDuration(shutdown_timeout),
            ..crate::output::relp::RelpConfig::default()
        })
    }

    /// Issue 10: the shipper aborted sinks 3 s after signalling shutdown while RELP's own stop
    /// waits `shutdown_timeout` (5 s) for rsps: one bound now, derived from the sinks.
    #[test]
    fn close_time_is_the_slowest_sinks_own_bound() {
        let d = crate::spool::store::test_dir("shipclose");
        let plans: Vec<SinkPlan> = [file_out("f", d.join("f")), relp_out("127.0.0.1:1".into(), Duration::from_secs(5))]
            .iter()
            .map(OutputConfig::plan)
            .collect();
        assert_eq!(plans[0].close_time, crate::output::DEFAULT_CLOSE_TIME);
        assert!(plans[1].close_time > Duration::from_secs(5), "{:?}", plans[1].close_time);
        assert_eq!(close_time(&plans), plans[1].close_time + CLOSE_MARGIN);
        assert_eq!(close_time(&plans[..1]), crate::output::DEFAULT_CLOSE_TIME + CLOSE_MARGIN);
    }

    /// A RELP receiver that answers each syslog frame `delay` after it arrived.
    fn slow_relp_receiver(delay: Duration) -> String {
        use crate::output::relp::frame::{encode, Command, Decoder};
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let Ok((mut sock, _)) = listener.accept() else { return };
            let mut dec = Decoder::new(1 << 20);
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(n) = sock.read(&mut buf) else { return };
                if n == 0 {
                    return;
                }
                dec.extend(&buf[..n]);
                while let Ok(Some(f)) = dec.decode() {
                    let mut out = Vec::new();
                    match f.command {
                        Command::Open => encode(f.txnr, "rsp", b"200 OK\nrelp_version=0\ncommands=syslog", &mut out),
                        Command::Syslog => {
                            std::thread::sleep(delay);
                            encode(f.txnr, "rsp", b"200 OK", &mut out);
                        }
                        _ => {
                            encode(f.txnr, "rsp", b"", &mut out);
                            encode(0, "serverclose", b"", &mut out);
                        }
                    }
                    if sock.write_all(&out).is_err() {
                        return;
                    }
                }
            }
        });
        addr
    }

    /// The rsp arrives about 3.9 s after shutdown was signalled, within RELP's shutdown_timeout of 5 s:
    /// it is counted (the old fixed 3 s abort lost it, and the event was sent again after restart).
    #[test]
    fn relp_rsps_within_its_shutdown_timeout_are_not_cut_off_by_the_shipper() {
        let d = crate::spool::store::test_dir("shiprelpclose");
        let rt = rt();
        let addr = slow_relp_receiver(Duration::from_secs(4));
        let outs = vec![relp_out(addr, Duration::from_secs(5))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs, rt.handle()).unwrap();
        submit_range(&mut s, 1, 1);
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let st = s.shutdown(Duration::ZERO).unwrap();
        assert_eq!(st.outputs[0].acked, 1, "{st:?}");
        assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    /// Oversized bodies are cut on the spool pump thread (not on the async runtime): the sink
    /// gets a body whose message fits its max_message_size.
    #[test]
    fn the_pump_cuts_bodies_over_max_message_size_before_the_sink_sees_them() {
        use crate::output::syslog::{Formatter, HeaderSpec};
        let d = crate::spool::store::test_dir("shipprefit");
        let mut cfg = spool_cfg(&d);
        cfg.max_record_bytes = 1 << 17;
        cfg.segment_bytes = 1 << 18;
        let spool = Spool::open(&cfg, &["p".to_string()]).unwrap();
        let big = format!(
            "{{\"sequence\":1,\"records\":[{{\"type\":\"EXECVE\",\"fields\":{{\"a0\":\"{}\"}}}}]}}",
            "x".repeat(100_000)
        );
        spool.stage(1, "ev-1", big.as_bytes()).unwrap();
        spool.stage(2, "ev-2", b"{\"n\":2}").unwrap();
        spool.commit().unwrap();
        let formatter = Formatter::new("p", &HeaderSpec::defaults(4096)).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let (reader, stop2) = (spool.reader(0), stop.clone());
        let pump_thread = std::thread::spawn(move || pump(reader, tx, stop2, Some(formatter.clone())));
        let first = rx.blocking_recv().unwrap();
        let second = rx.blocking_recv().unwrap();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        spool.wake();
        pump_thread.join().unwrap();
        assert!(first.body.len() < 4096 - 64, "{}", first.body.len());
        let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(v["truncated"], true);
        let f = Formatter::new("p", &HeaderSpec::defaults(4096)).unwrap();
        let mut msg = Vec::new();
        f.format(&first, &mut msg);
        assert!(msg.ends_with(&first.body), "format leaves a prefitted body as it is");
        assert_eq!(&*second.body, b"{\"n\":2}");
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
