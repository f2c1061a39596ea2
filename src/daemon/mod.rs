//! `auditrelay run`: wires the stages, owns the kernel registration, handles signals and shutdown.
//!
//! Threads: the netlink reader (receive only, see [`crate::netlink::reader`]), a poller of the
//! kernel's `lost` counter, and this thread, which parses, reassembles, formats and writes. The
//! reader never waits on this thread except through the bounded channel.
//!
//! Start: register (pid, and `enabled` when written or when the kernel is disabled) on the
//! receiving socket, load the rules (atomic; self-exclusion first; none with `[rules] manage =
//! false`), then apply the `[kernel]` keys written in the config, so they win over `-b`/`-f`/`-r`
//! lines (keys left out are never applied).
//!
//! Shutdown (SIGTERM/SIGINT): unregister from the kernel first so no new records are sent to us,
//! drain what the socket still holds, flush every in-flight event, restore the kernel settings we
//! changed and the rules that were loaded before us, exit 0. A [`Registration`] guard restores the kernel even when start-up fails midway
//! or this thread panics.

pub mod notify;
mod pipeline;
pub mod privilege;
mod rules;
pub mod signals;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::netlink::client::AuditClient;
use crate::netlink::reader::{self, Input, ReaderConfig, ReaderLoss, ReaderStats};
use crate::netlink::settings::{self, KernelConfig};
use crate::netlink::socket::{AuditSocket, RcvBuf};
use crate::netlink::status::{mask, AuditStatus};
use crate::netlink::NetlinkError;
use crate::output::{ShipError, Shipper};
use crate::rules::sync::Permissions;
use pipeline::Pipeline;
use rules::RuleManager;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(
        "another audit daemon (pid {pid}) is registered with the kernel: stop it (e.g. `systemctl stop auditd`) \
         or run `auditrelay run --multicast` to read alongside it"
    )]
    AlreadyRegistered { pid: u32 },
    #[error("config: {0}")]
    Config(String),
    #[error("cannot start thread {name}: {source}")]
    Thread { name: &'static str, source: std::io::Error },
    #[error("writing events: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] nix::Error),
    #[error("rules not loaded, the kernel's rules are unchanged:\n  {}", .0.join("\n  "))]
    Rules(Vec<String>),
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error("the netlink reader stopped (see the error above)")]
    ReaderStopped,
}

/// The kernel state we changed, undone on drop (also on error paths and panics).
struct Registration {
    control: AuditClient,
    before: AuditStatus,
    kernel: KernelConfig,
    /// Multicast mode changes nothing, so it restores nothing.
    touched: bool,
    /// Status bits we may put back; `None`: every setting that differs (rule files we loaded may
    /// have changed any). With `[rules] manage = false` only what we set: the written `[kernel]`
    /// keys and `enabled` if registration set it; the rules' owner may change the rest meanwhile.
    restore_only: Option<u32>,
    registered: bool,
}

impl Registration {
    /// Put back the settings we changed, then unregister: in that order, so the CONFIG_CHANGE
    /// records of the restore still reach us.
    fn release(&mut self) {
        self.restore_settings();
        if self.registered {
            match self.control.set_pid(0) {
                Ok(()) => self.registered = false,
                Err(e) => log::error!("cannot unregister from the kernel: {e}"),
            }
        }
    }

    fn restore_settings(&mut self) {
        if !(self.touched && self.kernel.restore_on_exit) {
            return;
        }
        // Our config and the rule files (-b, -f, -r, --backlog_wait_time, -e) may both have changed
        // settings: put back every one that differs from what we found.
        let Ok(now) = self.control.status() else { return };
        let everything = AuditStatus {
            mask: mask::ENABLED | mask::FAILURE | mask::RATE_LIMIT | mask::BACKLOG_LIMIT | mask::BACKLOG_WAIT_TIME,
            ..now
        };
        let mut undo = settings::restore_of(&everything, &self.before);
        let differs = [
            (mask::ENABLED, now.enabled, self.before.enabled),
            (mask::FAILURE, now.failure, self.before.failure),
            (mask::RATE_LIMIT, now.rate_limit, self.before.rate_limit),
            (mask::BACKLOG_LIMIT, now.backlog_limit, self.before.backlog_limit),
            (mask::BACKLOG_WAIT_TIME, now.backlog_wait_time, self.before.backlog_wait_time),
        ];
        undo.mask = differs.iter().filter(|(_, a, b)| a != b).fold(0, |m, (bit, _, _)| m | bit);
        undo.mask &= self.restore_only.unwrap_or(u32::MAX);
        if undo.mask == 0 {
            return;
        }
        match self.control.set_status(&undo) {
            Ok(()) => self.touched = false,
            Err(e) => log::error!("cannot restore kernel audit settings: {e}"),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.release();
    }
}

/// Kernel boot id: with the event's timestamp and serial it makes an id unique across reboots.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Events handled (staged or filtered) after which the processing loop commits them before it
/// takes the next hand-off.
const SHIP_AFTER_EVENTS: u64 = 256;

pub fn run(config: &Config, multicast: bool) -> Result<(), DaemonError> {
    config.validate().map_err(DaemonError::Config)?;
    // Logger first, so everything below is seen; then the self-report (control socket, metrics).
    let logger = match crate::logging::install(&config.log) {
        Ok(installed) => Some(installed),
        Err(e) => {
            log::debug!("{e}");
            None
        }
    };
    let rules = config.rules.validate().map_err(|e| DaemonError::Config(e.to_string()))?;
    signals::install().map_err(DaemonError::Signals)?;
    crate::file_trust::restrict_umask();
    crate::output::exposure::check(&config.output).map_err(DaemonError::Config)?;
    let socket = if multicast { AuditSocket::multicast()? } else { AuditSocket::unicast()? };
    match socket.set_receive_buffer(config.netlink.receive_buffer.0 as usize)? {
        RcvBuf::Forced(n) => log::info!("netlink receive buffer {n} bytes"),
        RcvBuf::Capped(n) => {
            log::warn!("netlink receive buffer capped at {n} bytes (no CAP_NET_ADMIN for SO_RCVBUFFORCE)")
        }
    }
    // Read before the drop: another user's /proc/<pid>/exe needs CAP_SYS_PTRACE.
    let processes = crate::enrich::seeded_process_table(&config.enrich);
    // Before any thread starts, so that they all inherit it (the outputs then lower their own).
    crate::output::priority::boost_this_thread(config.netlink.priority_boost);
    // The buffer and the boost were the last steps needing more than CAP_AUDIT_CONTROL: drop the
    // rest now, before any thread starts (capabilities are per thread; new threads copy this one's).
    privilege::drop_and_log(multicast);
    if let Some(logger) = logger {
        logger.start_reporter();
    }
    // The self-report (control socket, metrics) starts threads: only after the drop.
    let mut telemetry = stats::Telemetry::start(config, multicast)?;
    // Outputs first: a spool that cannot be opened (locked, no permission) fails before we take
    // the kernel's audit pid.
    let mut shipper = Shipper::start(&config.spool, &config.output)?;
    if config.spool.on_full == crate::spool::OnFull::Block && !config.output.is_empty() {
        // A full spool under on_full = "block" holds this thread in submit(), where it cannot see
        // the stop flag: another thread turns SIGTERM into an interrupt of that wait.
        let interrupter = shipper.interrupter();
        std::thread::Builder::new()
            .name("stop-watch".into())
            .spawn(move || {
                while !signals::stop_requested() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                interrupter.interrupt();
            })
            .map_err(|source| DaemonError::Thread { name: "stop-watch", source })?;
    }
    let mut control = AuditClient::open()?;
    let before = control.status()?;

    let restore_only = (!rules.manage).then(|| {
        let registration_enables = config.kernel.enabled_for_registration(before.enabled).map_or(0, |_| mask::ENABLED);
        config.kernel.written_mask() | registration_enables
    });
    let mut registration = Registration {
        control,
        before,
        kernel: config.kernel.clone(),
        touched: false,
        registered: false,
        restore_only,
    };
    let (socket, early) = if multicast {
        if before.enabled == 0 {
            log::warn!("kernel audit is disabled (enabled=0) and --multicast does not change kernel settings: no records will arrive");
        }
        (socket, Vec::new())
    } else {
        register(&mut registration, socket)?
    };
    // Multicast mode reads alongside another daemon, which owns the rules and settings.
    let rule_manager = if multicast {
        None
    } else {
        let perms = Permissions { immutable: rules.immutable, allow_panic: config.kernel.allow_panic };
        // Without the network: local sources and cached copies of URLs, failing safe to the last
        // good set or the embedded rules; `[kernel]` is applied after the rules (and after every
        // reload). URLs are fetched by the rules thread, started once the reader runs, so the
        // kernel backlog cannot fill while we wait on a remote server.
        Some(RuleManager::start_offline(rules, perms, config.kernel.restore_on_exit, config.kernel.clone())?)
    };
    let now = registration.control.status()?;
    log::info!(
        "{} (pid {}); kernel: enabled {}, backlog_limit {}, backlog_wait_time {}, rate_limit {}, failure {}",
        if multicast { "reading the audit multicast group" } else { "registered as the audit daemon" },
        std::process::id(),
        now.enabled,
        now.backlog_limit,
        now.backlog_wait_time,
        now.rate_limit,
        now.failure,
    );
    let (tx, rx) = mpsc::sync_channel::<Input>(config.netlink.channel_capacity.max(1));
    // Spent record batches go back to the reader (a few spare; the rest are freed).
    let (recycle, pool) = mpsc::sync_channel(4);
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader_stats = Arc::new(ReaderStats::default());
    let reader_thread = {
        let (tx, stop, stats) = (tx.clone(), stop_reader.clone(), reader_stats.clone());
        let cfg = ReaderConfig {
            batch: config.netlink.batch.max(1),
            channel_full_timeout: config.netlink.channel_full_timeout.0,
            gather: config.netlink.gather.0,
            hand_off_bytes: config.netlink.hand_off_bytes.0 as usize,
        };
        std::thread::Builder::new()
            .name("netlink-reader".into())
            .spawn(move || reader::run(socket, early, cfg, tx, pool, stop, stats))
            .map_err(|source| DaemonError::Thread { name: "netlink-reader", source })?
    };
    let poller_stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, interval) = (poller_stop.clone(), config.netlink.lost_poll_interval.0);
        std::thread::Builder::new()
            .name("lost-poller".into())
            .spawn(move || poll_lost(tx, interval, before.lost, stop))
            .map_err(|source| DaemonError::Thread { name: "lost-poller", source })?
    };

    // The reader runs: now the rules thread may fetch URL sources.
    let rules_stop = Arc::new(AtomicBool::new(false));
    let mut rules_thread = match rule_manager {
        Some(manager) => {
            let stop = rules_stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("rules".into())
                    .spawn(move || manager.watch(stop))
                    .map_err(|source| DaemonError::Thread { name: "rules", source })?,
            )
        }
        None => None,
    };

    let mut pipeline = Pipeline::new(config, boot_id());
    pipeline.set_processes(processes);
    let mut draining = false;
    let mut failure = None;
    // Rules are loaded and the reader runs: tell systemd (Type=notify); then keep its watchdog fed
    // from this loop, which wakes at least every 200 ms, so a stuck processing thread is restarted.
    if let Err(e) = notify::ready() {
        log::warn!("{e}");
    }
    let watchdog = notify::watchdog_interval();
    let mut last_ping = Instant::now();
    loop {
        if let Some(every) = watchdog {
            if last_ping.elapsed() >= every {
                last_ping = Instant::now();
                if let Err(e) = notify::watchdog() {
                    log::warn!("{e}");
                }
            }
        }
        if !draining && signals::stop_requested() {
            log::info!("stopping: putting rules and settings back, unregistering, draining the socket, flushing in-flight events");
            let _ = notify::stopping();
            draining = true;
            // Rules back first, while still registered: the kernel's CONFIG_CHANGE records of the
            // stop reach us and are shipped (the reader keeps receiving meanwhile).
            if let Some(t) = rules_thread.take() {
                stop_thread(&rules_stop, &t);
                let _ = t.join();
            }
            registration.release();
            stop_reader.store(true, Ordering::Release);
            stop_thread(&poller_stop, &poller);
        }
        if !draining && reader_thread.is_finished() {
            // The reader only returns on a socket error (or a panic): without it nothing arrives,
            // so stop in order and exit non-zero (systemd restarts us) rather than sit deaf.
            log::error!("the netlink reader stopped; shutting down");
            failure = Some(DaemonError::ReaderStopped);
            draining = true;
            registration.release();
            stop_thread(&poller_stop, &poller);
        }
        let wait = pipeline.wait_time(Instant::now());
        let mut staged = Ok(());
        match rx.recv_timeout(wait) {
            Ok(input) => {
                let now = Instant::now();
                let first = pipeline.handled();
                let mut next = Some(input);
                // Take whatever else is queued before committing, so output is batched under
                // load; but commit every few hundred events, so timers, telemetry and the
                // outputs are not kept waiting by a storm.
                while let Some(input) = next.take() {
                    match pipeline.input_staging(input, now, &mut shipper) {
                        Ok(Some(spent)) => {
                            let _ = recycle.try_send(spent);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            staged = Err(e);
                            break;
                        }
                    }
                    if pipeline.handled() - first + pipeline.pending() as u64 >= SHIP_AFTER_EVENTS {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pipeline.tick(Instant::now());
        telemetry.tick(Instant::now(), &pipeline, &shipper, &reader_stats);
        if signals::take_reopen() {
            shipper.reopen_files();
        }
        if let Err(e) = staged.and_then(|()| pipeline.ship(&mut shipper)) {
            // Shut down in order (unregister, put rules back) rather than return with threads live.
            log::error!("{e}; stopping");
            failure = Some(e);
            registration.release();
            stop_reader.store(true, Ordering::Release);
            stop_thread(&poller_stop, &poller);
            break;
        }
    }
    match reader_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("netlink reader: {e}"),
        Err(_) => log::error!("netlink reader panicked"),
    }
    let _ = poller.join();
    if let Some(t) = rules_thread {
        // Dropping the rule manager at the end of its thread puts the kernel's rules back.
        stop_thread(&rules_stop, &t);
        let _ = t.join();
    }
    pipeline.flush();
    // After an output failure there is nowhere to write; otherwise flush what is left.
    if !matches!(failure, Some(DaemonError::Output(_) | DaemonError::Ship(_))) {
        if let Err(e) = pipeline.ship(&mut shipper) {
            failure.get_or_insert(e);
        }
    }
    registration.release();
    match shipper.shutdown(config.spool.drain_timeout) {
        Ok(shipped) if config.output.is_empty() => log::info!("{} events written to stdout", shipped.appended),
        Ok(shipped) => log::info!(
            "outputs: {} events spooled, dropped {} oldest / {} newest / {} oversize, {} refused, {} not spooled (write error, or full at shutdown under block); acked {}",
            shipped.appended,
            shipped.dropped_oldest,
            shipped.dropped_newest,
            shipped.dropped_oversize,
            pipeline.refused,
            pipeline.ship_errors,
            shipped.outputs.iter().map(|o| format!("{}={}", o.name, o.acked)).collect::<Vec<_>>().join(" "),
        ),
        Err(e) => {
            log::error!("shutting down outputs: {e}");
            failure.get_or_insert(DaemonError::Ship(e));
        }
    }
    let s = &reader_stats;
    log::info!(
        "stopped: {} records in {} datagrams, {} events out, {} unparsable records, {} socket overruns, {} records dropped on a full channel",
        s.records.load(Ordering::Relaxed),
        s.datagrams.load(Ordering::Relaxed),
        pipeline.events_out,
        pipeline.unparsable,
        s.overruns.load(Ordering::Relaxed),
        s.dropped_channel_full.load(Ordering::Relaxed),
    );
    for f in &pipeline.filter_stats().filters {
        log::info!("stopped: [[filter]] {} ({}) dropped {} events", f.name, f.action, f.dropped);
    }
    failure.map_or(Ok(()), Err)
}

/// Register this process as the audit daemon on `socket` (pid, and `enabled` when configured).
fn register(reg: &mut Registration, socket: AuditSocket) -> Result<(AuditSocket, Vec<Vec<u8>>), DaemonError> {
    let mut events = AuditClient::with_socket(socket)?;
    let mut request = AuditStatus { mask: mask::PID, pid: std::process::id(), ..Default::default() };
    if reg.before.enabled == 2 {
        // Locked (`-e 2`): the kernel refuses any change but the pid; register with the pid
        // alone and run on the locked rules (the rule manager says so too).
        log::warn!("the kernel's audit configuration is locked (enabled=2): registering only, rules and settings stay as they are until reboot");
    }
    // `[kernel] enabled` when written; else 1 only if auditing is off (nothing would arrive).
    if let Some(enabled) = reg.kernel.enabled_for_registration(reg.before.enabled) {
        request.mask |= mask::ENABLED;
        request.enabled = enabled;
    }
    match events.set_status(&request) {
        Ok(()) => {
            reg.registered = true;
            reg.touched = true;
        }
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            let pid = reg.control.status().map(|s| s.pid).unwrap_or(reg.before.pid);
            return Err(DaemonError::AlreadyRegistered { pid });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(events.into_parts())
}

/// Tell a thread that parks between its rounds (the lost poller, the rules thread) to stop: the
/// flag, then a wake-up, so it need not wake every few milliseconds to look at the flag.
fn stop_thread<T>(flag: &AtomicBool, thread: &std::thread::JoinHandle<T>) {
    flag.store(true, Ordering::Release);
    thread.thread().unpark();
}

/// Poll the kernel's `lost` counter; it is the only witness of records dropped for a full backlog
/// (they consume no serial, so no gap shows them). Between polls it parks (woken at the stop by
/// [`stop_thread`]; a spurious wake-up only looks at the clock again).
fn poll_lost(tx: SyncSender<Input>, interval: Duration, mut last: u32, stop: Arc<AtomicBool>) {
    let mut client = match AuditClient::open() {
        Ok(c) => c,
        Err(e) => {
            log::error!("cannot poll the kernel lost counter: {e}");
            return;
        }
    };
    let step = Duration::from_millis(100);
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        next = Instant::now() + interval;
        let Ok(status) = client.status() else { continue };
        if status.lost != last {
            // The counter only grows; a smaller value means someone reset it.
            let lost = if status.lost > last { status.lost - last } else { status.lost };
            log::error!(
                "the kernel dropped {lost} audit records (backlog full or rate limit), {} in total",
                status.lost
            );
            last = status.lost;
            let notice = Input::Loss(ReaderLoss::KernelLost { records: u64::from(lost), kernel_total: status.lost });
            if !announce(&tx, notice, &stop, step) {
                log::warn!("stopping with a kernel_lost notice of {lost} records not announced in band (logged above)");
                return;
            }
        }
    }
}

/// Hand a loss notice to the processing thread; false when stopping (or processing is gone)
/// before there was room. Never a blocking send: after an output failure the processing loop
/// stops reading the channel, and a poller stuck in send() would hold up the exit forever.
fn announce(tx: &SyncSender<Input>, mut notice: Input, stop: &AtomicBool, step: Duration) -> bool {
    loop {
        match tx.try_send(notice) {
            Ok(()) => return true,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            Err(std::sync::mpsc::TrySendError::Full(back)) => {
                if stop.load(Ordering::Acquire) {
                    return false;
                }
                notice = back;
                std::thread::sleep(step);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notice() -> Input {
        Input::Loss(ReaderLoss::KernelLost { records: 1, kernel_total: 1 })
    }

    /// Issue 10: the lost-poller's blocking send deadlocked the exit when the processing loop had
    /// stopped reading (output failure) with the channel full. It now gives up once told to stop.
    #[test]
    fn a_full_channel_nobody_reads_does_not_hold_the_poller_past_stop() {
        let (tx, _rx) = mpsc::sync_channel::<Input>(1);
        tx.try_send(notice()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx2, stop2) = (tx.clone(), stop.clone());
        let poller = std::thread::spawn(move || announce(&tx2, notice(), &stop2, Duration::from_millis(5)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!poller.is_finished(), "waits for room while running");
        stop.store(true, Ordering::Release);
        let t0 = Instant::now();
        while !poller.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(5), "poller stuck after stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!poller.join().unwrap());
    }

    #[test]
    fn a_notice_goes_through_when_there_is_room_or_fails_when_processing_is_gone() {
        let (tx, rx) = mpsc::sync_channel::<Input>(1);
        assert!(announce(&tx, notice(), &AtomicBool::new(false), Duration::from_millis(1)));
        assert!(rx.try_recv().is_ok());
        drop(rx);
        assert!(!announce(&tx, notice(), &AtomicBool::new(false), Duration::from_millis(1)));
    }
}
