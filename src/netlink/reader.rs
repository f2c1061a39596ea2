//! The netlink reader: a dedicated OS thread that only receives and hands records on.
//!
//! What loses audit events is a reader that stalls (auditd drops records at ~40 k/s while using
//! only ~65 % of a core), not one that is slow on average. So this thread never parses, never
//! awaits, never takes a lock held by anyone else: it drains the socket in `recvmmsg` batches and
//! pushes [`RecordBatch`]es into a bounded channel.
//!
//! # Gathering: one wake-up per hand-off, and a hand-off's worth per wake-up
//! Each hand-off to another thread is a futex wake-up and a context switch, and at one per record
//! those were a third of the daemon's CPU. So after handing a batch on, the reader pauses before
//! it receives again, letting the kernel queue what arrives meanwhile in the socket buffer; the
//! next receive takes all of it at once. The pause is as long as about one hand-off
//! (`hand_off_bytes`) takes to arrive at the pace the last one came in, and at most `[netlink]
//! gather` (50 ms by default): a storm is handed on about every 10 ms in full hand-offs, an
//! ordinary server's trickle once per `gather` (see [`pause`] for why). An idle reader blocks in
//! `recvmmsg` and costs nothing; the first record after an idle spell is handed on at once, so
//! the added latency is at most one `gather`. The socket buffer (`receive_buffer`, 64 MiB, which
//! the kernel counts at ~0.9 KiB per record against twice that) holds about 90 hand-offs, 0.4 s of
//! the fastest storm this machine produces, and a drain that fills a whole
//! hand-off goes round again without pausing. Measured (docs/performance.md): a fixed 1 ms pause
//! cost 2.3× auditd's CPU per event on an exec storm of 2 k/s through file + RELP, a fixed 10 ms
//! 0.6×, and at 200 exec/s a fixed 10 ms still cost 2.2× auditd's; see "Sixth round".
//!
//! # A full channel
//! When processing falls behind and the channel is full, the reader waits up to
//! `channel_full_timeout` for room once; if none comes it drops that batch and every following one
//! at once (never waiting again) until a send succeeds, so the kernel socket keeps being drained
//! and the audited processes are never held by a stalled consumer for more than one timeout. Every
//! dropped record is counted and announced in band ([`ReaderLoss::ChannelFull`]).
//!
//! # Batches are recycled
//! Record bytes are copied once, from the receive slots into the batch's one buffer; processing
//! sends spent batches back through a small pool channel, so at steady state nothing is allocated
//! per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::{self, AUDIT_REPLACE};
use super::socket::{AuditSocket, Batch, BatchBuffers, Wait};
use super::NetlinkError;

/// Message type and payload of the record in a datagram, or `None` for netlink control traffic.
fn record_of(datagram: &[u8]) -> Option<(u16, &[u8])> {
    let header = codec::Header::parse(datagram)?;
    if !codec::is_event_type(header.kind) || header.kind == AUDIT_REPLACE {
        return None;
    }
    Some((header.kind, codec::event_payload(datagram)))
}

/// Records handed from the reader to processing: one byte buffer, one span per record.
#[derive(Debug, Default)]
pub struct RecordBatch {
    data: Vec<u8>,
    spans: Vec<(u16, u32, u32)>,
}

impl RecordBatch {
    pub fn with_capacity(bytes: usize) -> RecordBatch {
        RecordBatch { data: Vec::with_capacity(bytes), spans: Vec::new() }
    }

    pub fn push(&mut self, kind: u16, payload: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        self.spans.push((kind, start, self.data.len() as u32));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    /// The records in arrival order: message type and payload.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &[u8])> + '_ {
        self.spans.iter().map(|&(kind, a, b)| (kind, &self.data[a as usize..b as usize]))
    }
}

impl<'a> FromIterator<(u16, &'a [u8])> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = (u16, &'a [u8])>>(iter: I) -> RecordBatch {
        let mut b = RecordBatch::default();
        for (kind, payload) in iter {
            b.push(kind, payload);
        }
        b
    }
}

/// What the reader hands downstream.
#[derive(Debug)]
pub enum Input {
    Records(RecordBatch),
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
    /// Datagrams from a sender other than the kernel, dropped unread.
    pub foreign: AtomicU64,
    /// Batches handed to processing.
    pub batches: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// How long to wait for room downstream, once, before dropping batches.
    pub channel_full_timeout: Duration,
    /// Pause after each hand-off so that records gather (see the module docs); zero = none.
    pub gather: Duration,
    /// Most record bytes per hand-off.
    pub hand_off_bytes: usize,
}

/// Longest the reader keeps draining the socket once told to stop.
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// Run the reader on the current thread until `stop` is set, then hand on what the socket still
/// holds and return.
///
/// `early` are event datagrams received during registration; they go out first. Spent batches
/// come back through `pool` (processing returns them); when it is empty a new one is made.
pub fn run(
    socket: AuditSocket,
    early: Vec<Vec<u8>>,
    config: ReaderConfig,
    out: SyncSender<Input>,
    pool: Receiver<RecordBatch>,
    stop: Arc<AtomicBool>,
    stats: Arc<ReaderStats>,
) -> Result<(), NetlinkError> {
    socket.set_receive_timeout(Duration::from_millis(200))?;
    let mut reader =
        Reader { out, pool, stats, config, pending: Pending::default(), in_overrun: false, dropping: false };
    let mut batch = reader.fresh();
    for d in &early {
        if let Some((kind, payload)) = record_of(d) {
            batch.push(kind, payload);
        }
    }
    if !batch.is_empty() {
        batch = reader.forward(batch);
    }
    let mut buffers = BatchBuffers::new(reader.config.batch);
    let mut stop_deadline: Option<Instant> = None;
    let mut last_drain = Instant::now();
    let mut last_pause = Duration::ZERO;
    loop {
        // Once stopping, take only what is queued: a busy multicast group never goes idle. And
        // for at most STOP_DRAIN: a queue refilled as fast as it is read must not hold the exit.
        let stopping = stop.load(Ordering::Acquire);
        if stopping {
            let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_DRAIN);
            if Instant::now() >= deadline {
                reader.flush_pending();
                log::warn!("netlink reader: still receiving {STOP_DRAIN:?} after the stop; the rest is not read");
                return Ok(());
            }
        }
        let mut wait = if stopping { Wait::No } else { Wait::ForOne };
        let mut full = false;
        // Drain: block for the first datagram, then take everything queued, up to one batch.
        loop {
            match buffers.receive(&socket, wait)? {
                Batch::Received(n) => {
                    reader.in_overrun = false;
                    reader.take(&buffers, n, &mut batch);
                    if batch.bytes() >= reader.config.hand_off_bytes {
                        full = true;
                        break;
                    }
                    wait = Wait::No;
                }
                Batch::Overrun => {
                    reader.stats.overruns.fetch_add(1, Ordering::Relaxed);
                    reader.pending.overruns += 1;
                    if !reader.in_overrun {
                        log::error!("netlink receive buffer overflowed (ENOBUFS): the kernel dropped records; raise [netlink] receive_buffer");
                        reader.in_overrun = true;
                    }
                    wait = Wait::No;
                }
                Batch::Idle => break,
            }
        }
        if batch.is_empty() {
            // Nothing for a whole receive timeout (or only control traffic): report, check stop.
            reader.flush_pending();
            if stopping || stop.load(Ordering::Acquire) {
                return Ok(());
            }
            continue;
        }
        let gathered = batch.bytes();
        batch = reader.forward(batch);
        if stopping && !full {
            reader.flush_pending();
            return Ok(());
        }
        let now = Instant::now();
        let over = now.saturating_duration_since(last_drain);
        // What the reader waited for these records beyond its own pause: a reader that slept a
        // whole `gather` and found records queued did not wait for them.
        let waited = over.saturating_sub(last_pause);
        last_drain = now;
        last_pause = Duration::ZERO;
        if !full && !reader.config.gather.is_zero() {
            last_pause = pause(gathered, over, waited, reader.config.hand_off_bytes, reader.config.gather);
            std::thread::sleep(last_pause);
        }
    }
}

/// The pause after records that came after an idle spell ([`pause`]).
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// How long to let records gather after a hand-off that was not full: as long as one hand-off's
/// worth (`hand_off_bytes`) takes to arrive at the pace the last drain's `gathered` bytes came in
/// `over` (the time since the drain before), and at most `gather`; `waited` is the part of
/// `over` the reader spent waiting for the first of them (not sleeping its own pause).
///
/// Why not always `gather`: what a hand-off costs is nearly all per hand-off, not per record (on
/// the 2-vCPU benchmark VM about 0.45 ms of CPU across the reader, processing and output threads,
/// each woken once, against 6-14 µs per event), so at an ordinary server's pace only a long
/// pause makes it cheap (exec 200/s: 2.2× auditd's CPU per event at a fixed 10 ms); but a long
/// pause under a storm lets more records wait in the socket than the next drain hands on at once
/// and fills the receive buffer. Sized by the pace, a storm still hands on a full hand-off about
/// every 10 ms (20 k openat events/s: 13 ms), while a quiet reader waits the whole `gather`.
/// The first records after an idle spell never wait: the reader blocks until they come and hands
/// them on at once, then pauses [`FIRST_PAUSE`] to learn the pace.
fn pause(gathered: usize, over: Duration, waited: Duration, hand_off_bytes: usize, gather: Duration) -> Duration {
    if gathered == 0 {
        return gather;
    }
    // Not `over > gather`: after a whole `gather` of sleep `over` is just past it, and a steady
    // 200 events/s then alternated 50 and 10 ms pauses (33 hand-offs a second, not 20).
    if waited > gather {
        // The reader waited for these records: the pace is not known. A storm may be starting,
        // and a whole `gather` of one would come in at once (a peak of memory all the way down):
        // a short first pause measures the pace.
        return gather.min(FIRST_PAUSE);
    }
    let nanos = over.as_nanos().saturating_mul(hand_off_bytes as u128) / gathered as u128;
    match u64::try_from(nanos) {
        Ok(n) => Duration::from_nanos(n).min(gather),
        Err(_) => gather,
    }
}

#[derive(Default)]
struct Pending {
    overruns: u64,
    truncated: u64,
    dropped: u64,
    foreign: u64,
}

struct Reader {
    out: SyncSender<Input>,
    pool: Receiver<RecordBatch>,
    stats: Arc<ReaderStats>,
    config: ReaderConfig,
    pending: Pending,
    in_overrun: bool,
    /// A send timed out: drop at once until one succeeds again.
    dropping: bool,
}

impl Reader {
    /// A spent batch from processing, or a new one.
    fn fresh(&mut self) -> RecordBatch {
        match self.pool.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => RecordBatch::with_capacity(self.config.hand_off_bytes.min(1 << 20)),
        }
    }

    /// Move the records of the first `n` received datagrams into `batch`.
    fn take(&mut self, buffers: &BatchBuffers, n: usize, batch: &mut RecordBatch) {
        // Counted once per receive, not per datagram: a locked add each is not free at 300 k
        // datagrams a second.
        let (mut datagrams, mut bytes) = (0u64, 0u64);
        for i in 0..n {
            let (datagram, truncated) = buffers.get(i);
            if buffers.sender(i) != 0 {
                self.stats.foreign.fetch_add(1, Ordering::Relaxed);
                if self.pending.foreign == 0 {
                    log::warn!("dropped a netlink message from port {} (not the kernel); counted", buffers.sender(i));
                }
                self.pending.foreign += 1;
                continue;
            }
            datagrams += 1;
            bytes += datagram.len() as u64;
            if truncated {
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                if self.pending.truncated == 0 {
                    log::warn!("netlink datagram truncated (MSG_TRUNC); kept as received, counted");
                }
                self.pending.truncated += 1;
            }
            if let Some((kind, payload)) = record_of(datagram) {
                batch.push(kind, payload);
            }
        }
        self.stats.datagrams.fetch_add(datagrams, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Hand `batch` on (or drop and count it); returns an empty batch to fill next.
    fn forward(&mut self, batch: RecordBatch) -> RecordBatch {
        let count = batch.len() as u64;
        self.stats.records.fetch_add(count, Ordering::Relaxed);
        match self.send(Input::Records(batch)) {
            None => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.flush_pending();
                self.fresh()
            }
            Some(Input::Records(mut back)) => {
                self.stats.dropped_channel_full.fetch_add(count, Ordering::Relaxed);
                if self.pending.dropped == 0 {
                    log::error!(
                        "processing fell behind for {:?}: dropping records until it catches up (counted)",
                        self.config.channel_full_timeout
                    );
                }
                self.pending.dropped += count;
                back.clear();
                back
            }
            Some(Input::Loss(_)) => self.fresh(),
        }
    }

    /// Send, or give the item back when it was dropped. While full, the first time waits up to
    /// the timeout; after a timeout nothing waits until a send succeeds again.
    fn send(&mut self, mut item: Input) -> Option<Input> {
        let deadline = Instant::now() + self.config.channel_full_timeout;
        loop {
            match self.out.try_send(item) {
                Ok(()) => {
                    self.dropping = false;
                    return None;
                }
                Err(TrySendError::Disconnected(back)) => return Some(back),
                Err(TrySendError::Full(back)) => {
                    if self.dropping || Instant::now() >= deadline {
                        self.dropping = true;
                        return Some(back);
                    }
                    item = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    fn flush_pending(&mut self) {
        // Foreign messages are not audit data: counted and logged, never announced as lost events.
        self.pending.foreign = 0;
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
        assert_eq!(record_of(&datagram(20, 2, &[0; 4])), None);
        assert_eq!(record_of(&datagram(20, AUDIT_REPLACE, &[1, 0, 0, 0])), None);
        assert_eq!(record_of(&datagram(36, 1000, &[0; 20])), None);
        let d = datagram(3, 1320, b"x\xff\x00");
        let r = record_of(&d).expect("record");
        assert_eq!(r, (1320, &b"x\xff"[..]));
    }

    #[test]
    fn the_pause_lets_one_hand_off_gather_at_the_last_pace_and_never_exceeds_gather() {
        let ms = Duration::from_millis;
        let gather = ms(50);
        let z = Duration::ZERO;
        // 64 KiB in 10 ms: a 256 KiB hand-off takes 40 ms to come.
        assert_eq!(pause(64 << 10, ms(10), z, 256 << 10, gather), ms(40));
        // Faster than that: a shorter pause, so the socket does not fill while we sleep.
        assert_eq!(pause(256 << 10, ms(13), z, 256 << 10, gather), ms(13));
        assert_eq!(pause(512 << 10, ms(4), z, 256 << 10, gather), ms(2));
        // Slower, or nothing taken: the whole `gather`.
        assert_eq!(pause(4 << 10, ms(10), z, 256 << 10, gather), gather);
        assert_eq!(pause(300, ms(50), z, 256 << 10, gather), gather);
        assert_eq!(pause(0, ms(1), z, 256 << 10, gather), gather);
        // Records found queued after a whole `gather` of sleep (a steady, slow pace): the whole
        // `gather` again, however long the drain itself took.
        assert_eq!(pause(300, ms(51), ms(1), 256 << 10, gather), gather);
        assert_eq!(pause(300, ms(95), ms(45), 256 << 10, gather), gather);
        // The first drain after an idle spell (waited longer than a pause): a short pause finds
        // the pace.
        assert_eq!(pause(300, Duration::from_secs(3600), Duration::from_secs(3600), 256 << 10, gather), FIRST_PAUSE);
        assert_eq!(pause(300, ms(101), ms(51), 256 << 10, gather), FIRST_PAUSE);
        assert_eq!(pause(300, ms(51), ms(51), 256 << 10, ms(5)), ms(5));
        // Extremes do not overflow.
        assert_eq!(pause(1, Duration::MAX, Duration::MAX, usize::MAX, gather), FIRST_PAUSE);
        assert_eq!(pause(1, ms(50), z, usize::MAX, gather), gather);
        assert_eq!(pause(usize::MAX, Duration::ZERO, z, 256 << 10, gather), Duration::ZERO);
    }

    fn reader(tx: SyncSender<Input>, timeout: Duration) -> (Reader, Arc<ReaderStats>) {
        let stats = Arc::new(ReaderStats::default());
        let (_pool_tx, pool) = std::sync::mpsc::sync_channel(1);
        let config =
            ReaderConfig { batch: 4, channel_full_timeout: timeout, gather: Duration::ZERO, hand_off_bytes: 1024 };
        let reader = Reader {
            out: tx,
            pool,
            stats: stats.clone(),
            config,
            pending: Pending::default(),
            in_overrun: false,
            dropping: false,
        };
        (reader, stats)
    }

    fn records(n: usize) -> RecordBatch {
        (0..n).map(|_| (1300, &b"audit(1.000:1): a=b"[..])).collect()
    }

    #[test]
    fn full_channel_drops_after_timeout_and_reports_once_room_returns() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (mut reader, stats) = reader(tx, Duration::from_millis(5));
        reader.forward(records(1));
        reader.forward(records(2)); // channel full: dropped after 5 ms
        assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 2);
        assert!(matches!(rx.recv(), Ok(Input::Records(r)) if r.len() == 1));
        reader.forward(records(1)); // room again: records, then the notice
        assert!(matches!(rx.recv(), Ok(Input::Records(_))));
        reader.flush_pending();
        assert!(matches!(rx.recv(), Ok(Input::Loss(ReaderLoss::ChannelFull { records: 2 }))));
    }

    /// Regression (review of issue 10): the reader waited the full timeout for every batch while
    /// processing was behind, draining ~32 records/s and holding every audited process.
    #[test]
    fn after_one_timeout_the_reader_drops_at_once_until_room_returns() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (mut reader, stats) = reader(tx, Duration::from_millis(300));
        reader.forward(records(1)); // fills the channel
        let t0 = Instant::now();
        reader.forward(records(1)); // waits the timeout once, then drops
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let t1 = Instant::now();
        for _ in 0..50 {
            reader.forward(records(2));
        }
        assert!(t1.elapsed() < Duration::from_millis(250), "later drops must not wait: {:?}", t1.elapsed());
        assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 101);
        assert!(matches!(rx.recv(), Ok(Input::Records(r)) if r.len() == 1));
        reader.forward(records(3)); // room: sent, and waiting is armed again
        assert!(!reader.dropping);
        assert!(matches!(rx.recv(), Ok(Input::Records(r)) if r.len() == 3));
    }

    #[test]
    fn batches_keep_records_in_order_with_their_types() {
        let mut b = RecordBatch::default();
        b.push(1300, b"one");
        b.push(1320, b"");
        b.push(1309, b"three\xff");
        let got: Vec<(u16, Vec<u8>)> = b.iter().map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(got, vec![(1300, b"one".to_vec()), (1320, vec![]), (1309, b"three\xff".to_vec())]);
        assert_eq!((b.len(), b.bytes()), (3, 9));
    }
}
