//! `auditrelay run`: wires the stages, owns the kernel registration, handles signals and shutdown.
//!
//! Threads: the netlink reader (receive only, see [`crate::netlink::reader`]), a poller of the
//! kernel's `lost` counter, and this thread, which parses, reassembles, formats and writes. The
//! reader never waits on this thread except through the bounded channel.
//!
//! Shutdown (SIGTERM/SIGINT): unregister from the kernel first so no new records are sent to us,
//! drain what the socket still holds, flush every in-flight event, restore the kernel settings we
//! changed, exit 0. A [`Registration`] guard restores the kernel even when start-up fails midway
//! or this thread panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::format::json::JsonWriter;
use crate::netlink::client::AuditClient;
use crate::netlink::reader::{self, Input, ReaderConfig, ReaderLoss, ReaderStats};
use crate::netlink::settings::{self, KernelConfig};
use crate::netlink::socket::{AuditSocket, RcvBuf};
use crate::netlink::status::{mask, AuditStatus};
use crate::netlink::NetlinkError;
use crate::loss::LossNotice;
use crate::output::{ShipError, Shipper};
use crate::reassemble::{Output, Reassembler};
use crate::record::Record;

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
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error("cannot start the output runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

fn install_signal_handlers() -> Result<(), DaemonError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(DaemonError::Signals)?;
    }
    Ok(())
}

/// The kernel state we changed, undone on drop (also on error paths and panics).
struct Registration {
    control: AuditClient,
    before: AuditStatus,
    applied: AuditStatus,
    registered: bool,
    restore: bool,
}

impl Registration {
    fn release(&mut self) {
        if self.registered {
            match self.control.set_pid(0) {
                Ok(()) => self.registered = false,
                Err(e) => eprintln!("auditrelay: error: cannot unregister from the kernel: {e}"),
            }
        }
        if self.restore && self.applied.mask != 0 {
            let undo = settings::restore_of(&self.applied, &self.before);
            match self.control.set_status(&undo) {
                Ok(()) => self.applied.mask = 0,
                Err(e) => eprintln!("auditrelay: error: cannot restore kernel audit settings: {e}"),
            }
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
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub fn run(config: &Config, multicast: bool) -> Result<(), DaemonError> {
    config.kernel.validate().map_err(DaemonError::Config)?;
    install_signal_handlers()?;
    // Outputs first: a spool that cannot be opened (locked, no permission) fails before we take
    // the kernel's audit pid.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("auditrelay-out")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let mut shipper = Shipper::start(&config.spool, &config.output, runtime.handle())?;
    if config.spool.on_full == crate::spool::OnFull::Block && !config.output.is_empty() {
        // A full spool under on_full = "block" holds this thread in submit(), where it cannot see
        // STOP: let another thread turn SIGTERM into an interrupt of that wait.
        let interrupter = shipper.interrupter();
        std::thread::Builder::new()
            .name("stop-watch".into())
            .spawn(move || {
                while !STOP.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                interrupter.interrupt();
            })
            .map_err(|source| DaemonError::Thread { name: "stop-watch", source })?;
    }
    let mut control = AuditClient::open()?;
    let before = control.status()?;

    let socket = if multicast { AuditSocket::multicast()? } else { AuditSocket::unicast()? };
    match socket.set_receive_buffer(config.netlink.receive_buffer.0 as usize)? {
        RcvBuf::Forced(n) => eprintln!("auditrelay: netlink receive buffer {n} bytes"),
        RcvBuf::Capped(n) => eprintln!("auditrelay: warning: netlink receive buffer capped at {n} bytes (no CAP_NET_ADMIN for SO_RCVBUFFORCE)"),
    }

    let mut registration = Registration { control, before, applied: AuditStatus::default(), registered: false, restore: config.kernel.restore_on_exit };
    let (socket, early) = if multicast {
        if before.enabled == 0 {
            eprintln!("auditrelay: warning: kernel audit is disabled (enabled=0) and --multicast does not change kernel settings: no records will arrive");
        }
        (socket, Vec::new())
    } else {
        register(&mut registration, socket, &config.kernel)?
    };
    eprintln!(
        "auditrelay: {} (pid {}), kernel backlog_limit {}",
        if multicast { "reading the audit multicast group" } else { "registered as the audit daemon" },
        std::process::id(),
        if registration.applied.mask & mask::BACKLOG_LIMIT != 0 { registration.applied.backlog_limit } else { before.backlog_limit },
    );

    let (tx, rx) = mpsc::sync_channel::<Input>(config.netlink.channel_capacity.max(1));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader_stats = Arc::new(ReaderStats::default());
    let reader_thread = {
        let (tx, stop, stats) = (tx.clone(), stop_reader.clone(), reader_stats.clone());
        let cfg = ReaderConfig { batch: config.netlink.batch.max(1), channel_full_timeout: config.netlink.channel_full_timeout.0 };
        std::thread::Builder::new()
            .name("netlink-reader".into())
            .spawn(move || reader::run(socket, early, cfg, tx, stop, stats))
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

    let mut pipeline = Pipeline::new(config, boot_id());
    let mut draining = false;
    loop {
        if !draining && STOP.load(Ordering::Acquire) {
            eprintln!("auditrelay: stopping: unregistering, draining the socket, flushing in-flight events");
            draining = true;
            registration.release();
            stop_reader.store(true, Ordering::Release);
            poller_stop.store(true, Ordering::Release);
        }
        let wait = pipeline.wait_time(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(input) => {
                pipeline.input(input, Instant::now());
                // Take whatever else is queued before writing, so output is batched under load.
                while let Ok(more) = rx.try_recv() {
                    pipeline.input(more, Instant::now());
                    if pipeline.pending() > 4096 {
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pipeline.tick(Instant::now());
        pipeline.ship(&mut shipper)?;
        shipper.flush()?;
    }
    match reader_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("auditrelay: error: netlink reader: {e}"),
        Err(_) => eprintln!("auditrelay: error: netlink reader panicked"),
    }
    let _ = poller.join();
    pipeline.flush();
    pipeline.ship(&mut shipper)?;
    registration.release();
    let shipped = shipper.shutdown(config.spool.drain_timeout)?;
    if config.output.is_empty() {
        eprintln!("auditrelay: {} events written to stdout", shipped.appended);
    } else {
        eprintln!(
        "auditrelay: outputs: {} events spooled, dropped {} oldest / {} newest / {} oversize, {} refused, {} not spooled (write error, or full at shutdown under block); acked {}",
        shipped.appended,
        shipped.dropped_oldest,
        shipped.dropped_newest,
        shipped.dropped_oversize,
        pipeline.refused,
        pipeline.ship_errors,
        shipped.outputs.iter().map(|o| format!("{}={}", o.name, o.acked)).collect::<Vec<_>>().join(" "),
        );
    }
    let s = &reader_stats;
    eprintln!(
        "auditrelay: stopped: {} records in {} datagrams, {} events out, {} unparsable records, {} socket overruns, {} records dropped on a full channel",
        s.records.load(Ordering::Relaxed),
        s.datagrams.load(Ordering::Relaxed),
        pipeline.events_out,
        pipeline.unparsable,
        s.overruns.load(Ordering::Relaxed),
        s.dropped_channel_full.load(Ordering::Relaxed),
    );
    Ok(())
}

/// Register this process as the audit daemon on `socket` and apply the kernel settings.
fn register(reg: &mut Registration, socket: AuditSocket, kernel: &KernelConfig) -> Result<(AuditSocket, Vec<Vec<u8>>), DaemonError> {
    let mut events = AuditClient::with_socket(socket)?;
    let mut request = AuditStatus { mask: mask::PID, pid: std::process::id(), ..Default::default() };
    if let Some(enabled) = kernel.enabled {
        request.mask |= mask::ENABLED;
        request.enabled = enabled;
    }
    match events.set_status(&request) {
        Ok(()) => reg.registered = true,
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            let pid = reg.control.status().map(|s| s.pid).unwrap_or(reg.before.pid);
            return Err(DaemonError::AlreadyRegistered { pid });
        }
        Err(e) => return Err(e.into()),
    }
    if request.mask & mask::ENABLED != 0 && reg.before.enabled != request.enabled {
        reg.applied.mask |= mask::ENABLED;
    }
    // `enabled` was set with the pid; the rest through the control socket.
    let rest = KernelConfig { enabled: None, ..kernel.clone() };
    let applied = settings::apply(&mut reg.control, &rest, &reg.before)?;
    reg.applied = AuditStatus { mask: reg.applied.mask | applied.mask, ..applied };
    Ok(events.into_parts())
}

/// Poll the kernel's `lost` counter; it is the only witness of records dropped for a full backlog
/// (they consume no serial, so no gap shows them).
fn poll_lost(tx: SyncSender<Input>, interval: Duration, mut last: u32, stop: Arc<AtomicBool>) {
    let mut client = match AuditClient::open() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("auditrelay: error: cannot poll the kernel lost counter: {e}");
            return;
        }
    };
    let step = Duration::from_millis(100);
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(step);
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + interval;
        let Ok(status) = client.status() else { continue };
        if status.lost != last {
            // The counter only grows; a smaller value means someone reset it.
            let lost = if status.lost > last { status.lost - last } else { status.lost };
            eprintln!("auditrelay: warning: the kernel dropped {lost} audit records (backlog full or rate limit), {} in total", status.lost);
            last = status.lost;
            if tx.send(Input::Loss(ReaderLoss::KernelLost { records: u64::from(lost), kernel_total: status.lost })).is_err() {
                return;
            }
        }
    }
}

/// Parse → reassemble → format, as plain synchronous code.
struct Pipeline {
    reassembler: Reassembler,
    writer: JsonWriter,
    /// Prefix of event ids (the boot id), the same as in the JSON `id`.
    id_prefix: String,
    /// Lines that are not kernel events (loss notices, unparsable records) get ids from this.
    local_seq: u64,
    /// Events the shipper refused (too large); counted, logged.
    refused: u64,
    /// Events lost to spool write errors (disk full); counted, logged.
    ship_errors: u64,
    out: Vec<Output>,
    events_out: u64,
    unparsable: u64,
    unparsed_lines: Vec<u8>,
}

impl Pipeline {
    fn new(config: &Config, id_prefix: Option<String>) -> Pipeline {
        Pipeline {
            reassembler: Reassembler::new(&config.reassemble),
            id_prefix: id_prefix.clone().unwrap_or_else(|| "noboot".into()),
            local_seq: 0,
            refused: 0,
            ship_errors: 0,
            writer: JsonWriter::new(id_prefix),
            out: Vec::new(),
            events_out: 0,
            unparsable: 0,
            unparsed_lines: Vec::new(),
        }
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    /// How long to wait for input before the next timer is due (bounded so signals are noticed).
    fn wait_time(&self, now: Instant) -> Duration {
        let cap = Duration::from_millis(200);
        self.reassembler.next_deadline().map_or(cap, |d| d.saturating_duration_since(now).min(cap))
    }

    fn input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Records(batch) => {
                for raw in batch {
                    let kind = raw.kind;
                    match Record::try_from_netlink(kind, raw.payload.into_vec()) {
                        Ok(record) => self.reassembler.push(record, now, &mut self.out),
                        Err((e, payload)) => self.unparsable(kind, &e, &payload),
                    }
                }
            }
            Input::Loss(loss) => self.out.push(Output::Loss(match loss {
                ReaderLoss::SocketOverrun { overruns } => LossNotice::SocketOverrun { count: overruns },
                ReaderLoss::Truncated { datagrams } => LossNotice::Truncated { datagrams },
                ReaderLoss::ChannelFull { records } => LossNotice::ChannelFull { datagrams: records },
                ReaderLoss::KernelLost { records, kernel_total } => LossNotice::KernelLost { records, kernel_total },
            })),
        }
    }

    /// A kernel record we cannot parse is kept as a JSON line of its own, never dropped.
    fn unparsable(&mut self, kind: u16, error: &crate::record::RecordError, payload: &[u8]) {
        self.unparsable += 1;
        eprintln!("auditrelay: warning: unparsable kernel record of type {kind}: {error}");
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let line = serde_json::json!({ "unparsed": { "type_id": kind, "error": error.to_string(), "payload_hex": hex } });
        self.unparsed_lines.extend_from_slice(line.to_string().as_bytes());
        self.unparsed_lines.push(b'\n');
    }

    fn tick(&mut self, now: Instant) {
        self.reassembler.tick(now, &mut self.out);
    }

    fn flush(&mut self) {
        self.reassembler.flush(&mut self.out);
    }

    /// Hand everything pending to the shipper (spool or direct stdout), one JSON line per event.
    fn ship(&mut self, shipper: &mut Shipper) -> Result<(), DaemonError> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let unparsed = std::mem::take(&mut self.unparsed_lines);
        for line in unparsed.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.local_seq += 1;
            let id = format!("{}:local:{now_ms}:{}", self.id_prefix, self.local_seq);
            Self::submit(shipper, now_ms, &id, line, &mut self.refused, &mut self.ship_errors)?;
        }
        for output in self.out.drain(..) {
            let (time_ms, id) = match &output {
                Output::Event(e) => (
                    e.id.seconds * 1000 + u64::from(e.id.millis),
                    format!("{}:{}.{:03}:{}", self.id_prefix, e.id.seconds, e.id.millis, e.id.serial),
                ),
                Output::Loss(_) => {
                    self.local_seq += 1;
                    (now_ms, format!("{}:local:{now_ms}:{}", self.id_prefix, self.local_seq))
                }
            };
            let line = self.writer.write(&output);
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            Self::submit(shipper, time_ms, &id, body, &mut self.refused, &mut self.ship_errors)?;
            self.events_out += 1;
        }
        Ok(())
    }

    /// Per-event refusals and spool write errors are counted and logged (sparsely: a full disk
    /// would otherwise print a line per event); only a broken stdout ends the daemon.
    fn submit(shipper: &mut Shipper, time_ms: u64, id: &str, body: &[u8], refused: &mut u64, errors: &mut u64) -> Result<(), DaemonError> {
        match shipper.submit(time_ms, id, body) {
            Ok(()) => Ok(()),
            Err(ShipError::Stdout(e)) => Err(DaemonError::Output(e)),
            Err(e) => {
                let n = if e.is_per_event() { refused } else { errors };
                *n += 1;
                if n.is_power_of_two() {
                    eprintln!("auditrelay: error: event {id} not spooled ({n} so far): {e}");
                }
                Ok(())
            }
        }
    }

    #[cfg(test)]
    fn write_to(&mut self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        w.write_all(&self.unparsed_lines)?;
        self.unparsed_lines.clear();
        for output in self.out.drain(..) {
            w.write_all(self.writer.write(&output))?;
            self.events_out += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::reader::RawRecord;

    fn raw(kind: u16, text: &[u8]) -> RawRecord {
        RawRecord { kind, payload: text.to_vec().into() }
    }

    #[test]
    fn pipeline_groups_keeps_unparsable_bytes_and_reports_loss() {
        let mut p = Pipeline::new(&Config::default(), Some("boot".into()));
        let now = Instant::now();
        p.input(
            Input::Records(vec![
                raw(1300, b"audit(1795373270.780:6): arch=c000003e syscall=59 key=(null)"),
                raw(1309, b"audit(1795373270.780:6): argc=1 a0=\"ls\""),
                raw(1300, b"garbage\xff"),
                raw(1320, b"audit(1795373270.780:6): "),
            ]),
            now,
        );
        p.input(Input::Loss(ReaderLoss::KernelLost { records: 3, kernel_total: 7 }), now);
        let mut out = Vec::new();
        p.write_to(&mut out).expect("write");
        let lines: Vec<serde_json::Value> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).expect("json")).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["unparsed"]["payload_hex"], "67617262616765ff");
        assert_eq!(lines[1]["sequence"], 6);
        assert_eq!(lines[1]["records"].as_array().map(Vec::len), Some(3));
        assert_eq!(lines[1]["id"], "boot:1795373270.780:6");
        assert_eq!(lines[2]["loss"]["kind"], "kernel_lost");
        assert_eq!(p.unparsable, 1);
    }
}
