//! The netlink reader: a dedicated OS thread that only receives and hands datagrams on.
//!
//! What loses audit events is a reader that stalls (auditd drops records at ~40 k/s while using
//! only ~65 % of a core), not one that is slow on average. So this thread never parses, never
//! awaits, never takes a lock held by anyone else: it drains the socket in `recvmmsg` batches and
//! pushes each batch into a bounded channel. If the channel stays full longer than
//! `channel_full_timeout` it drops the batch and counts it rather than letting the kernel backlog
//! grow without bound; the count reaches the event stream as an in-band notice.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{self, AUDIT_REPLACE};
use super::socket::{AuditSocket, Batch, BatchBuffers};
use super::NetlinkError;

/// One audit record as the kernel sent it: message type and payload bytes (header stripped,
/// trailing NULs trimmed, not necessarily UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub kind: u16,
    pub payload: Box<[u8]>,
}

impl RawRecord {
    /// The record in a datagram, or `None` for netlink control traffic.
    pub fn from_datagram(datagram: &[u8]) -> Option<RawRecord> {
        let header = codec::Header::parse(datagram)?;
        if !codec::is_event_type(header.kind) || header.kind == AUDIT_REPLACE {
            return None;
        }
        Some(RawRecord { kind: header.kind, payload: codec::event_payload(datagram).into() })
    }
}

/// What the reader hands downstream.
#[derive(Debug)]
pub enum Input {
    Records(Vec<RawRecord>),
    /// Loss the reader saw; sent once the channel has room again.
    Loss(ReaderLoss),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderLoss {
    /// ENOBUFS: the socket buffer overflowed and the kernel dropped datagrams (count of overruns).
    SocketOverrun { overruns: u64 },
    /// Datagrams cut by the kernel (MSG_TRUNC).
    Truncated { datagrams: u64 },
    /// Records dropped because downstream stayed full for longer than the timeout.
    ChannelFull { records: u64 },
    /// The kernel's `lost` counter grew: records dropped for a full backlog or the rate limit.
    KernelLost { records: u64, kernel_total: u32 },
}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub datagrams: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub overruns: AtomicU64,
    pub truncated: AtomicU64,
    pub dropped_channel_full: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// How long to wait for room downstream before dropping a batch.
    pub channel_full_timeout: Duration,
}

/// Run the reader on the current thread until `stop` is set and the socket has gone idle.
///
/// `early` are event datagrams received during registration; they go out first.
pub fn run(
    socket: AuditSocket,
    early: Vec<Vec<u8>>,
    config: ReaderConfig,
    out: SyncSender<Input>,
    stop: Arc<AtomicBool>,
    stats: Arc<ReaderStats>,
) -> Result<(), NetlinkError> {
    socket.set_receive_timeout(Duration::from_millis(200))?;
    let mut reader = Reader { out, stats, config, pending: Pending::default(), in_overrun: false };
    let early: Vec<RawRecord> = early.iter().filter_map(|d| RawRecord::from_datagram(d)).collect();
    if !early.is_empty() {
        reader.forward(early);
    }
    let mut buffers = BatchBuffers::new(reader.config.batch);
    loop {
        match buffers.receive(&socket)? {
            Batch::Received(n) => {
                reader.in_overrun = false;
                let mut batch = Vec::with_capacity(n);
                for i in 0..n {
                    let (datagram, truncated) = buffers.get(i);
                    reader.stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    reader.stats.bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                    if truncated {
                        reader.stats.truncated.fetch_add(1, Ordering::Relaxed);
                        if reader.pending.truncated == 0 {
                            eprintln!("auditrelay: warning: netlink datagram truncated (MSG_TRUNC); kept as received, counted");
                        }
                        reader.pending.truncated += 1;
                    }
                    if let Some(record) = RawRecord::from_datagram(datagram) {
                        batch.push(record);
                    }
                }
                if !batch.is_empty() {
                    reader.forward(batch);
                }
            }
            Batch::Overrun => {
                reader.stats.overruns.fetch_add(1, Ordering::Relaxed);
                reader.pending.overruns += 1;
                if !reader.in_overrun {
                    eprintln!("auditrelay: warning: netlink receive buffer overflowed (ENOBUFS): the kernel dropped records; raise [netlink] receive_buffer");
                    reader.in_overrun = true;
                }
            }
            Batch::Idle => {
                reader.flush_pending();
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    overruns: u64,
    truncated: u64,
    dropped: u64,
}

struct Reader {
    out: SyncSender<Input>,
    stats: Arc<ReaderStats>,
    config: ReaderConfig,
    pending: Pending,
    in_overrun: bool,
}

impl Reader {
    fn forward(&mut self, batch: Vec<RawRecord>) {
        let count = batch.len() as u64;
        self.stats.records.fetch_add(count, Ordering::Relaxed);
        if !self.send(Input::Records(batch)) {
            self.stats.dropped_channel_full.fetch_add(count, Ordering::Relaxed);
            if self.pending.dropped == 0 {
                eprintln!(
                    "auditrelay: warning: processing fell behind for {:?}: dropping records (counted)",
                    self.config.channel_full_timeout
                );
            }
            self.pending.dropped += count;
        } else {
            self.flush_pending();
        }
    }

    /// Try to send; while full, retry until the timeout. `false` if the item was dropped.
    fn send(&mut self, mut item: Input) -> bool {
        let deadline = Instant::now() + self.config.channel_full_timeout;
        loop {
            match self.out.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    item = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    fn flush_pending(&mut self) {
        let notices = [
            (self.pending.overruns, ReaderLoss::SocketOverrun { overruns: self.pending.overruns }),
            (self.pending.truncated, ReaderLoss::Truncated { datagrams: self.pending.truncated }),
            (self.pending.dropped, ReaderLoss::ChannelFull { records: self.pending.dropped }),
        ];
        for (count, notice) in notices {
            if count > 0 && self.out.try_send(Input::Loss(notice)).is_ok() {
                match notice {
                    ReaderLoss::SocketOverrun { .. } => self.pending.overruns = 0,
                    ReaderLoss::Truncated { .. } => self.pending.truncated = 0,
                    ReaderLoss::ChannelFull { .. } => self.pending.dropped = 0,
                    ReaderLoss::KernelLost { .. } => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::codec::tests::datagram;

    #[test]
    fn control_messages_are_not_records() {
        assert_eq!(RawRecord::from_datagram(&datagram(20, 2, &[0; 4])), None);
        assert_eq!(RawRecord::from_datagram(&datagram(20, AUDIT_REPLACE, &[1, 0, 0, 0])), None);
        assert_eq!(RawRecord::from_datagram(&datagram(36, 1000, &[0; 20])), None);
        let r = RawRecord::from_datagram(&datagram(3, 1320, b"x\xff\x00")).expect("record");
        assert_eq!((r.kind, &*r.payload), (1320, &b"x\xff"[..]));
    }

    #[test]
    fn full_channel_drops_after_timeout_and_reports_once_room_returns() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stats = Arc::new(ReaderStats::default());
        let mut reader = Reader {
            out: tx,
            stats: stats.clone(),
            config: ReaderConfig { batch: 4, channel_full_timeout: Duration::from_millis(5) },
            pending: Pending::default(),
            in_overrun: false,
        };
        let rec = || RawRecord { kind: 1300, payload: b"audit(1.000:1): a=b".to_vec().into() };
        reader.forward(vec![rec()]);
        reader.forward(vec![rec(), rec()]); // channel full: dropped after 5 ms
        assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 2);
        assert!(matches!(rx.recv(), Ok(Input::Records(r)) if r.len() == 1));
        reader.forward(vec![rec()]); // room again: records, then the notice
        assert!(matches!(rx.recv(), Ok(Input::Records(_))));
        reader.flush_pending();
        assert!(matches!(rx.recv(), Ok(Input::Loss(ReaderLoss::ChannelFull { records: 2 }))));
    }
}
