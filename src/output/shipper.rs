//! The shipper: the synchronous front the processing thread calls (`submit`), the spool behind it,
//! and one supervised delivery loop per output.
//!
//! ```text
//! processing thread ──submit──▶ Spool (append, never waits on a sink unless on_full = "block")
//!   native output:    sink task ──Deliveries::pull: SpoolReader::next_batch──▶ ... ──Ack──▶ Spool::ack
//!   converted output: pump thread ──next_batch, convert──▶ mpsc(window) ──▶ sink task ──Ack──▶ Spool::ack
//!   sync thread: fdatasync by interval, persist cursors, delete fully acknowledged segments
//! ```
//! Each output's supervisor and sink run on a thread of their own under a current-thread tokio
//! runtime. On one shared multi-thread runtime every hand-off between the sink, its response
//! reader and the supervisor could land on the other worker and cost a futex wake-up each way:
//! that was 8 % of the daemon's CPU at 20 k events/s with one RELP output (docs/performance.md).
//! On its own thread a sink can also do blocking I/O inline (the file output does) without
//! stalling any other output.
//!
//! A native-format output reads the spool itself, on that thread, when it wants more: a caught-up
//! reader takes the writer's last frames from memory and its events stay in them (no read, no
//! decompression, no copy), so reading costs a lock and a few pointers per batch, and the thread
//! and wake-up of a separate reader bought nothing (docs/performance.md, "Fourth round"). An
//! output that converts to another format gets a pump thread: conversion is CPU-heavy (ECS) or
//! may ask NSS (go-audit's `uid_map`), and on the sink's thread it would hold up the connection.
//! The pump blocks on the bounded channel when the sink is behind, which is the back-pressure.
//! Either way memory per output is the sink's window plus one reader batch, however long the
//! receiver is away.
//!
//! Hand-offs carry batches: the processing thread stages a loop iteration's events and commits
//! them with one write (one wake-up of each output), a reader takes everything committed at once,
//! and a sink acknowledges a batch at a time. Thread wake-ups, not the work itself, were a third
//! of the daemon's CPU when each event was handed on alone (docs/performance.md).
//!
//! A sink that returns (error or not) before shutdown is restarted after a backoff (0.5 s doubling
//! to 30 s) with a fresh reader that starts after the last acknowledged position: everything in flight
//! is sent again (at-least-once).
//!
//! With no `[[output]]` at all, the shipper writes JSON lines straight to stdout without a spool:
//! the embedded defaults must work on a machine without `/var/lib/auditrelay`, and a spool in front
//! of a terminal protects nothing.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::delivery::{Ack, Deliveries, Delivery, DeliveryChunk};
use super::{OutputConfig, SinkPlan};
use crate::format::Formatter;
use crate::spool::record::RecordRef;
use crate::spool::shared::Shared;
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

/// One output's thread (see the module docs) and the way to stop it when it does not end itself.
struct OutputThread {
    thread: std::thread::JoinHandle<()>,
    abort: Arc<tokio::sync::Notify>,
}

impl OutputThread {
    fn start(
        idx: usize,
        plan: SinkPlan,
        spool: Spool,
        shutdown: watch::Receiver<bool>,
        state: Arc<OutputState>,
        nice: i32,
    ) -> Result<OutputThread, ShipError> {
        let name: String = format!("out-{}", state.name).chars().take(15).collect();
        let thread_error = |source| ShipError::Thread { name: name.clone(), source };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(thread_error)?;
        let abort = Arc::new(tokio::sync::Notify::new());
        let aborted = abort.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // Before the pump thread is started from here: it inherits the priority.
                super::priority::lower_this_thread(nice);
                rt.block_on(async {
                    tokio::select! {
                        () = supervise(idx, plan, spool, shutdown, state) => {}
                        () = aborted.notified() => {}
                    }
                });
                // Tasks still running are dropped; a pump joined by a blocking task ends by itself
                // once its channel is gone, so do not wait for it.
                rt.shutdown_background();
            })
            .map_err(thread_error)?;
        Ok(OutputThread { thread, abort })
    }
}

struct Spooled {
    spool: Spool,
    outputs: Vec<Arc<OutputState>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<OutputThread>,
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
    pub fn start(spool: &SpoolConfig, outputs: &[OutputConfig]) -> Result<Shipper, ShipError> {
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
            .map(|(i, plan)| {
                OutputThread::start(
                    i,
                    plan,
                    spool_handle.clone(),
                    shutdown_rx.clone(),
                    states[i].clone(),
                    spool.output_nice,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
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
                while s.tasks.iter().any(|t| !t.thread.is_finished()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                for (t, o) in s.tasks.drain(..).zip(&s.outputs) {
                    if t.thread.is_finished() {
                        let _ = t.thread.join();
                    } else {
                        ::log::warn!(
                            "shutdown: output {} did not stop within {:?}; aborted (what it had not had \
                             acknowledged is sent again after the next start)",
                            o.name,
                            s.close_time
                        );
                        // Not joined: a sink stuck in blocking I/O must not hold up the exit.
                        t.abort.notify_one();
                    }
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
                            log::info!(
                                "shutdown: output {} has {} events left in the spool for the next start",
                                o.name,
                                stats.last_pos - o.acked
                            );
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
                    log::error!("spool: {e}");
                }
                failing = true;
            }
        }
    }
}

/// Most records a pump (or a pulling sink) takes from the spool at a time; the channel (the
/// sink's window) bounds what is in flight, this only bounds the reader's own buffer.
const PUMP_BATCH: usize = 256;

/// How spooled records become one output's deliveries: converted to its format, cut to its
/// `max_message_size` (syslog outputs), and handed on in their spool frame when nothing changed.
struct Converter {
    formatter: Formatter,
    max_body: Option<usize>,
    fitter: Option<super::syslog::Formatter>,
    /// Converted bodies cut so far (for the log).
    cut: u64,
    chunk: DeliveryChunk,
}

impl Converter {
    fn new(plan: &SinkPlan, name: &str) -> Converter {
        Converter {
            formatter: Formatter::new(plan.format),
            max_body: plan.max_body,
            // An invalid header is the sink's own start error (reported by it); no fitting then.
            fitter: plan.header.as_ref().and_then(|h| super::syslog::Formatter::new(name, h).ok()),
            cut: 0,
            chunk: DeliveryChunk::default(),
        }
    }

    /// Append `rec` (read from the spool, in `frame` when v2) to `out` as a delivery.
    fn add(&mut self, rec: RecordRef<'_>, frame: Option<&Arc<Shared>>, out: &mut impl Extend<Delivery>) {
        let (chunk, fitter) = (&mut self.chunk, &self.fitter);
        converted(&mut self.formatter, rec.body, rec.time_ms, rec.id, self.max_body, &mut self.cut, |body| {
            let body = match fitter {
                Some(f) => f.prefit(rec.pos, rec.time_ms, rec.id, body),
                None => std::borrow::Cow::Borrowed(body),
            };
            // Spooled bytes sent as they are (the native format, nothing cut) stay in their
            // frame; converted or cut ones are copied into the chunk, in order.
            match frame.and_then(|f| Delivery::in_frame(rec.pos, rec.time_ms, f, rec.id, &body)) {
                Some(d) => {
                    chunk.finish(out);
                    out.extend(Some(d));
                }
                None => chunk.push(rec.pos, rec.time_ms, rec.id, &body),
            }
        });
    }

    /// Everything added since the last call is in `out`.
    fn finish(&mut self, out: &mut impl Extend<Delivery>) {
        self.chunk.finish(out);
    }
}

/// The source of a sink that reads the spool on its own thread ([`Deliveries::pull`]): each call
/// appends what is committed after the last one, up to [`PUMP_BATCH`], and never waits.
fn spool_filler(
    mut reader: SpoolReader,
    mut converter: Converter,
    counters: Arc<crate::telemetry::OutputCounters>,
) -> impl FnMut(&mut VecDeque<Delivery>) + Send {
    // After a read error (logged), the next try waits this long: the sink asks again at once.
    let mut retry_at: Option<Instant> = None;
    move |ready| {
        if retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        retry_at = None;
        let from = ready.len();
        let read = reader.next_batch(Duration::ZERO, PUMP_BATCH, &mut |rec, frame| converter.add(rec, frame, ready));
        converter.finish(ready);
        if ready.len() > from {
            // Under the counters' lock once per batch; a sink asking when nothing came takes none.
            counters.sent_all(ready.range(from..).map(|d| (d.pos, d.time_ms)));
        }
        match read {
            Ok(_) | Err(SpoolError::Corrupt { .. }) => {}
            Err(e) => {
                log(format_args!("{e}"));
                retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Feed one sink incarnation from the spool until told to stop or the sink hangs up: the
/// spool-reader thread of an output whose bodies are converted to another format. Conversion
/// (JSON parsing, name lookups through NSS) runs here, on this plain thread: never on the
/// processing thread nor on the output's sink thread. With a fitter (syslog outputs), bodies
/// over the output's `max_message_size` are cut here too: cutting a multi-megabyte event is
/// CPU-heavy, and the sink thread serves the connection.
fn pump(
    mut reader: SpoolReader,
    tx: mpsc::Sender<Delivery>,
    stop: Arc<AtomicBool>,
    counters: Arc<crate::telemetry::OutputCounters>,
    mut converter: Converter,
) {
    let mut batch: Vec<Delivery> = Vec::with_capacity(PUMP_BATCH);
    // (position, time) of what was just queued, for the output's figures (one lock per slice).
    let mut marks: Vec<(u64, u64)> = Vec::with_capacity(PUMP_BATCH);
    // Waiting for room a slice at a time: `blocking_send` on a full channel woke this thread for
    // every delivery the sink took (a futex round trip per event once the sink's window filled);
    // `reserve_many` wakes it once a quarter of the window is free. A runtime without drivers,
    // only to wait on the channel's semaphore from this plain thread.
    let Ok(waiter) = tokio::runtime::Builder::new_current_thread().build() else {
        log(format_args!("cannot start the spool reader's waiter; this output is restarted"));
        return;
    };
    let slice = (tx.max_capacity() / 4).max(1);
    while !stop.load(Ordering::Relaxed) {
        let read = reader.next_batch(Duration::from_millis(200), PUMP_BATCH, &mut |rec, frame| {
            converter.add(rec, frame, &mut batch)
        });
        converter.finish(&mut batch);
        match read {
            Ok(0) => {
                if tx.is_closed() {
                    return;
                }
            }
            Ok(_) => {
                // Queued in a row: the sink task is woken once for the run, not once per event.
                let mut rest = batch.drain(..);
                while rest.len() > 0 {
                    let Ok(permits) = waiter.block_on(tx.reserve_many(rest.len().min(slice))) else {
                        return;
                    };
                    for (permit, d) in permits.zip(&mut rest) {
                        marks.push((d.pos, d.time_ms));
                        permit.send(d);
                    }
                    counters.sent_all(marks.drain(..));
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

/// `native` in the output's format. A derived body too big for a syslog message is made from the
/// native line cut to fit first (EXECVE arguments, then records: see [`super::truncate`]), since
/// only the native line can be cut meaningfully; the cut shrinks until the converted body fits
/// (a few rounds), else the sink stubs what is left.
fn converted(
    formatter: &mut Formatter,
    native: &[u8],
    time_ms: u64,
    id: &str,
    max_body: Option<usize>,
    cut: &mut u64,
    emit: impl FnOnce(&[u8]),
) {
    let format = formatter.format();
    let body = formatter.convert_or_pass(native, time_ms);
    let limit = match max_body {
        Some(limit) if body.len() > limit && format != crate::format::OutputFormat::Native => limit,
        _ => return emit(body),
    };
    let mut budget = limit;
    let mut last_len = body.len();
    for _ in 0..4 {
        let super::truncate::Fit::Cut { body: smaller, .. } = super::truncate::fit(native, budget, id, time_ms) else {
            break;
        };
        let body = formatter.convert_or_pass(&smaller, time_ms);
        if body.len() <= limit {
            *cut += 1;
            if cut.is_power_of_two() {
                log::warn!(
                    "output format {}: event {id} of {last_len} bytes cut to {} to fit max_message_size ({cut} so far)",
                    format.name(),
                    body.len()
                );
            }
            return emit(body);
        }
        last_len = body.len();
        budget = (budget as u128 * limit as u128 / body.len().max(1) as u128) as usize;
    }
    emit(formatter.convert_or_pass(native, time_ms))
}

async fn supervise(
    idx: usize,
    plan: SinkPlan,
    spool: Spool,
    mut shutdown: watch::Receiver<bool>,
    state: Arc<OutputState>,
) {
    let mut backoff = BACKOFF_MIN;
    let counters = crate::telemetry::output(&state.name);
    loop {
        let (atx, mut arx) = mpsc::channel::<Ack>(plan.window);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = spool.reader(idx);
        let converter = Converter::new(&plan, &state.name);
        // Native bodies go out as spooled: the sink reads the spool itself, on its own thread.
        // Converted ones come from a spool-reader thread (see `pump`).
        let (deliveries, pump_thread) = match spool.more(idx) {
            Some(more) if plan.format == crate::format::OutputFormat::Native => {
                let fill = spool_filler(reader, converter, counters.clone());
                (Ok(Deliveries::pull(Box::new(fill), more)), None)
            }
            _ => {
                let (dtx, drx) = mpsc::channel(plan.window);
                let (pump_stop, pump_counters) = (stop.clone(), counters.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("spool-{}", state.name))
                    .spawn(move || pump(reader, dtx, pump_stop, pump_counters, converter));
                (thread.as_ref().map(|_| Deliveries::from(drx)).map_err(|e| e.to_string()), thread.ok())
            }
        };
        let mut acked = spool.acked(idx);
        let mut ack = |p: u64| {
            // Acks are cumulative positions; the counter takes what each one adds.
            if p > acked {
                counters.delivered(p, p - acked);
                acked = p;
            }
            spool.ack(idx, p);
        };
        let started = Instant::now();
        let result = match deliveries {
            Err(e) => Err(format!("cannot start reader thread: {e}")),
            Ok(deliveries) => {
                let mut sink = plan.launch(deliveries, atx, shutdown.clone());
                let result = loop {
                    tokio::select! {
                        r = &mut sink => break r,
                        Some(Ack(p)) = arx.recv() => ack(p),
                    }
                };
                drop(sink);
                while let Ok(Ack(p)) = arx.try_recv() {
                    ack(p);
                }
                stop.store(true, Ordering::Relaxed);
                if let Some(pump_thread) = pump_thread {
                    spool.wake();
                    let _ = tokio::task::spawn_blocking(move || pump_thread.join()).await;
                }
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
        log::warn!("output {}: {message}; restarting in {:?}", state.name, backoff);
        counters.failed(&message);
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
        let outs = vec![file_out("a", d.join("a.jsonl")), file_out("b", d.join("b.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs).unwrap();
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
        let later = d.join("later");
        let outs = vec![file_out("ok", d.join("ok.jsonl")), file_out("late", later.join("x.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs).unwrap();
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
        let later = d.join("later");
        let outs = vec![file_out("f", later.join("x.jsonl"))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs).unwrap();
        submit_range(&mut s, 1, 250);
        let st = s.shutdown(Duration::from_millis(100)).unwrap();
        assert_eq!(st.outputs[0].acked, 0);
        assert!(st.spool_bytes > 0);
        std::fs::create_dir(&later).unwrap();
        let mut s = Shipper::start(&spool_cfg(&d), &outs).unwrap();
        submit_range(&mut s, 251, 260);
        let st = s.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(lines(&later.join("x.jsonl")), expected(1, 260));
        assert_eq!(st.outputs[0].acked, st.last_pos);
    }

    /// A go-audit body too big for the syslog message is made from the native line cut to fit,
    /// so it arrives as a go-audit object, not as a stub in another schema.
    #[test]
    fn an_oversized_derived_body_is_cut_on_its_native_line() {
        use crate::format::{names::Names, Formatter, JsonWriter, OutputFormat};
        use crate::reassemble::{Output, ReassembleConfig, Reassembler};
        let huge = "41".repeat(20_000);
        let mut r = Reassembler::new(&ReassembleConfig::default());
        let mut out = Vec::new();
        let now = Instant::now();
        for l in [
            "type=SYSCALL msg=audit(1.000:9): arch=c000003e syscall=59 success=yes exit=0 uid=0".to_string(),
            format!("type=EXECVE msg=audit(1.000:9): argc=2 a0=\"cat\" a1={huge}"),
            "type=EOE msg=audit(1.000:9): ".to_string(),
        ] {
            r.push(crate::record::parse_log_line(l.as_bytes()).unwrap(), now, &mut out);
        }
        let Some(event @ Output::Event(_)) = out.first() else { panic!("{out:?}") };
        let mut writer = JsonWriter::new(None).with_record_text(true);
        let native = writer.write(event).strip_suffix(b"\n").unwrap().to_vec();
        let mut f = Formatter::with_names(OutputFormat::GoAudit, Names::fixed(&[(0, "root")]));
        let mut cut = 0;
        let mut body = Vec::new();
        converted(&mut f, &native, 1000, "id", Some(4000), &mut cut, |b| body = b.to_vec());
        assert!(body.len() <= 4000, "{}", body.len());
        assert_eq!(cut, 1);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["sequence"], 9);
        let data = v["messages"][1]["data"].as_str().unwrap();
        assert!(data.starts_with("argc=2 a0=\"cat\" a1=\"41414141") && data.contains("auditrelay: cut"), "{data}");
        let mut small = Vec::new();
        converted(&mut f, &native, 1000, "id", Some(1 << 20), &mut cut, |b| small = b.to_vec());
        assert!(small.len() > 40_000 && cut == 1);
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
        let addr = slow_relp_receiver(Duration::from_secs(4));
        let outs = vec![relp_out(addr, Duration::from_secs(5))];
        let mut s = Shipper::start(&spool_cfg(&d), &outs).unwrap();
        submit_range(&mut s, 1, 1);
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let st = s.shutdown(Duration::ZERO).unwrap();
        assert_eq!(st.outputs[0].acked, 1, "{st:?}");
        assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    /// Oversized bodies are cut where they are read from the spool: the sink gets a body whose
    /// message fits its max_message_size; the one that fits stays in its spool frame.
    #[test]
    fn bodies_over_max_message_size_are_cut_before_the_sink_sees_them() {
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
        let plan = OutputConfig::Relp(crate::output::relp::RelpConfig {
            max_message_size: crate::units::ByteSize(4096),
            ..crate::output::relp::RelpConfig::default()
        })
        .plan();
        let converter = Converter::new(&plan, "p");
        assert!(converter.fitter.is_some());
        let mut fill = spool_filler(spool.reader(0), converter, crate::telemetry::output("p"));
        let mut ready = VecDeque::new();
        fill(&mut ready);
        let (first, second) = (ready[0].clone(), ready[1].clone());
        assert_eq!(ready.len(), 2);
        let in_frame = spool.inner.lock().recent.back().unwrap().raw.clone();
        assert!(in_frame.range_of(second.body()).is_some(), "a body that fits is not copied");
        assert!(in_frame.range_of(first.body()).is_none(), "the cut one is");
        assert!(first.body().len() < 4096 - 64, "{}", first.body().len());
        let v: serde_json::Value = serde_json::from_slice(first.body()).unwrap();
        assert_eq!(v["truncated"], true);
        let f = Formatter::new("p", &HeaderSpec::defaults(4096)).unwrap();
        let mut msg = Vec::new();
        f.format(&first, &mut msg);
        assert!(msg.ends_with(first.body()), "format leaves a prefitted body as it is");
        assert_eq!(second.body(), b"{\"n\":2}");
    }

    #[test]
    fn duplicate_or_bad_output_names_are_refused() {
        let d = crate::spool::store::test_dir("shipnames");
        let outs = vec![file_out("x", d.join("1")), file_out("x", d.join("2"))];
        let e = Shipper::start(&spool_cfg(&d), &outs).err().unwrap();
        assert!(e.to_string().contains("two outputs"), "{e}");
        let outs = vec![file_out("a/b", d.join("1"))];
        assert!(Shipper::start(&spool_cfg(&d), &outs).is_err());
        let outs = vec![OutputConfig::File(FileConfig::default())];
        let e = Shipper::start(&spool_cfg(&d), &outs).err().unwrap();
        assert!(e.to_string().contains("file-0") && e.to_string().contains("path"), "{e}");
    }
}
