//! The contract between the spool and a sink.
//!
//! The spool hands each sink [`Delivery`] values in spool order through a bounded channel (the
//! channel size is the sink's window). The sink sends back [`Ack`]s: `Ack(pos)` means every delivery
//! with a position `<= pos` has been accepted by the receiver in the sink's own sense (RELP `rsp 200`,
//! file `fdatasync`, TCP "written"). Acks are cumulative and never go backwards. A sink that loses its
//! connection resends its unacknowledged deliveries itself, in order; after a process restart the
//! spool redelivers everything after the last persisted ack (at-least-once).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::spool::shared::{Pool, Shared};

/// One spooled event on its way to a sink.
///
/// The event's bytes are shared ([`Shared`]): the spool frame it was read from, whole, when the
/// sink takes the spooled bytes as they are, or else a buffer holding every event converted in
/// one go ([`DeliveryChunk`]). Either way no allocation per event, and for the native format no
/// copy at all between the processing thread and the sink (docs/performance.md).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the spool; strictly increasing per sink.
    pub pos: u64,
    /// The event's own time (milliseconds since the epoch), for the syslog header.
    pub time_ms: u64,
    bytes: Arc<Shared>,
    id: Range<usize>,
    body: Range<usize>,
}

impl Delivery {
    /// A delivery with bytes of its own.
    pub fn new(pos: u64, time_ms: u64, id: &str, body: &[u8]) -> Delivery {
        let mut bytes = Vec::with_capacity(id.len() + body.len());
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(body);
        Delivery { pos, time_ms, bytes: Shared::own(bytes), id: 0..id.len(), body: id.len()..id.len() + body.len() }
    }

    /// A delivery of `id` and `body` where they lie, in `frame`; `None` when either is not there.
    pub fn in_frame(pos: u64, time_ms: u64, frame: &Arc<Shared>, id: &str, body: &[u8]) -> Option<Delivery> {
        let id = frame.range_of(id.as_bytes())?;
        let body = frame.range_of(body)?;
        Some(Delivery { pos, time_ms, bytes: frame.clone(), id, body })
    }

    /// Stable event id, for receiver-side deduplication.
    pub fn id(&self) -> &str {
        // Checked UTF-8 when it was read from the spool or pushed; a few dozen bytes again.
        self.bytes.get(self.id.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
    }

    /// The formatted event (native JSON, no trailing newline).
    pub fn body(&self) -> &[u8] {
        self.bytes.get(self.body.clone()).unwrap_or_default()
    }
}

/// Collects a batch of converted events into one shared buffer, then hands them out as
/// [`Delivery`] values.
#[derive(Debug, Default)]
pub struct DeliveryChunk {
    bytes: Vec<u8>,
    entries: Vec<(u64, u64, Range<usize>, Range<usize>)>,
    pool: Pool,
}

impl DeliveryChunk {
    pub fn push(&mut self, pos: u64, time_ms: u64, id: &str, body: &[u8]) {
        let i = self.bytes.len();
        self.bytes.extend_from_slice(id.as_bytes());
        let b = self.bytes.len();
        self.bytes.extend_from_slice(body);
        self.entries.push((pos, time_ms, i..b, b..b + body.len()));
    }

    /// Append the collected events to `out` as deliveries; the chunk starts empty again (with
    /// the buffer of a chunk whose deliveries are all gone, or room for a batch like this one).
    pub fn finish(&mut self, out: &mut impl Extend<Delivery>) {
        if self.entries.is_empty() {
            return;
        }
        let mut room = self.pool.take(self.bytes.len());
        room.clear();
        let bytes = self.pool.share(std::mem::replace(&mut self.bytes, room));
        out.extend(self.entries.drain(..).map(|(pos, time_ms, id, body)| Delivery {
            pos,
            time_ms,
            bytes: bytes.clone(),
            id,
            body,
        }));
    }
}

/// Cumulative acknowledgement: everything up to and including this spool position is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ack(pub u64);

/// Where a sink takes its deliveries from, in spool order.
///
/// Two sources: a bounded channel from a spool-reader thread (outputs whose events are converted
/// to another format: conversion is CPU-heavy and may ask NSS, so it runs on a thread of its own),
/// or the spool itself, read on the sink's own thread when it needs more (the native format, sent
/// as spooled). The second saves a thread and its wake-up per batch, and the channel's per-event
/// bookkeeping: at 20 k events/s the spool-reader threads and the channel were a tenth of the
/// daemon's CPU (docs/performance.md).
pub struct Deliveries {
    source: Source,
    /// Read from the source and not yet taken.
    ready: VecDeque<Delivery>,
}

enum Source {
    Channel(mpsc::Receiver<Delivery>),
    Pull {
        /// Appends what is waiting (bounded, never waits); see [`Deliveries::pull`]. In a mutex
        /// only to make the sink's future `Sync`-safe to hold across awaits; it is only ever
        /// reached through `&mut self` (`get_mut`), never locked.
        fill: std::sync::Mutex<Filler>,
        /// Notified when more may be waiting.
        more: Arc<Notify>,
    },
}

type Filler = Box<dyn FnMut(&mut VecDeque<Delivery>) + Send>;

/// A pulling source that was told nothing still looks again this often: a missed notification
/// may delay events, never strand them. None is missed today (one `Notify` per output, woken
/// with `notify_one`, whose permit waits for a sink not yet waiting), so this is a backstop and
/// a long one: an idle daemon's outputs wake only at this pace.
const PULL_RECHECK: Duration = Duration::from_secs(1);

impl From<mpsc::Receiver<Delivery>> for Deliveries {
    fn from(rx: mpsc::Receiver<Delivery>) -> Deliveries {
        Deliveries { source: Source::Channel(rx), ready: VecDeque::new() }
    }
}

impl Deliveries {
    /// Deliveries that `fill` appends on demand, in order, whenever `more` was notified.
    pub fn pull(fill: Filler, more: Arc<Notify>) -> Deliveries {
        Deliveries { source: Source::Pull { fill: std::sync::Mutex::new(fill), more }, ready: VecDeque::new() }
    }

    /// The next delivery; `None` once a channel source is closed and empty (a pulling source
    /// never ends). Cancel safe: nothing is taken unless it is returned.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Some(d);
            }
            match &mut self.source {
                Source::Channel(rx) => return rx.recv().await,
                Source::Pull { fill, more } => {
                    fill.get_mut().unwrap_or_else(|p| p.into_inner())(&mut self.ready);
                    if self.ready.is_empty() {
                        let _ = tokio::time::timeout(PULL_RECHECK, more.notified()).await;
                    }
                }
            }
        }
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Result<Delivery, mpsc::error::TryRecvError> {
        if let Some(d) = self.ready.pop_front() {
            return Ok(d);
        }
        match &mut self.source {
            Source::Channel(rx) => rx.try_recv(),
            Source::Pull { fill, .. } => {
                fill.get_mut().unwrap_or_else(|p| p.into_inner())(&mut self.ready);
                self.ready.pop_front().ok_or(mpsc::error::TryRecvError::Empty)
            }
        }
    }

    /// Move deliveries already waiting into `batch` until it holds `max`, without waiting: a
    /// batching sink writes what has queued up during its previous write in one go.
    pub fn take_waiting(&mut self, batch: &mut Vec<Delivery>, max: usize) {
        while batch.len() < max {
            match self.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_waiting_stops_at_max_and_when_empty() {
        let (tx, rx) = mpsc::channel(8);
        let mut rx = Deliveries::from(rx);
        for pos in 1..=3 {
            tx.send(Delivery::new(pos, 0, "i", b"{}")).await.unwrap();
        }
        let mut batch = Vec::new();
        rx.take_waiting(&mut batch, 2);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2]);
        rx.take_waiting(&mut batch, 10);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2, 3]);
        drop(tx);
        assert!(rx.recv().await.is_none(), "a closed channel ends");
    }

    /// A pulling source asks for more only when it has nothing ready, waits for a notification
    /// when there is nothing, and still looks again without one.
    #[tokio::test]
    async fn a_pulling_source_fills_on_demand_and_waits_for_more() {
        let next = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (n2, f2) = (next.clone(), fills.clone());
        let more = Arc::new(Notify::new());
        let mut rx = Deliveries::pull(
            Box::new(move |ready| {
                f2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ready.extend(n2.lock().unwrap().drain(..).map(|p| Delivery::new(p, 0, "i", b"{}")));
            }),
            more.clone(),
        );
        next.lock().unwrap().extend([1, 2]);
        assert_eq!(rx.recv().await.unwrap().pos, 1);
        assert_eq!(rx.try_recv().unwrap().pos, 2);
        assert_eq!(fills.load(std::sync::atomic::Ordering::Relaxed), 1, "one fill served both");
        assert!(rx.try_recv().is_err());
        let waiter = {
            let (next, more) = (next.clone(), more.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                next.lock().unwrap().push(3);
                more.notify_one();
            })
        };
        let t0 = std::time::Instant::now();
        assert_eq!(rx.recv().await.unwrap().pos, 3);
        assert!(t0.elapsed() < PULL_RECHECK, "woken by the notification");
        waiter.await.unwrap();
        let silent = {
            let next = next.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                next.lock().unwrap().push(4);
            })
        };
        let t0 = std::time::Instant::now();
        assert_eq!(rx.recv().await.unwrap().pos, 4, "found without a notification");
        assert!(t0.elapsed() >= PULL_RECHECK);
        silent.await.unwrap();
    }

    #[test]
    fn a_chunk_hands_out_each_event_as_pushed_and_starts_empty_again() {
        let mut chunk = DeliveryChunk::default();
        chunk.push(7, 70, "id-7", b"{\"a\":1}");
        chunk.push(8, 80, "", b"");
        chunk.push(9, 90, "id-9", b"{}");
        let mut out = Vec::new();
        chunk.finish(&mut out);
        let got: Vec<_> = out.iter().map(|d| (d.pos, d.time_ms, d.id(), d.body())).collect();
        assert_eq!(got, [(7, 70, "id-7", &b"{\"a\":1}"[..]), (8, 80, "", b""), (9, 90, "id-9", b"{}")]);
        chunk.push(10, 100, "x", b"y");
        let mut next = Vec::new();
        chunk.finish(&mut next);
        assert_eq!((next.len(), next[0].id(), next[0].body()), (1, "x", &b"y"[..]));
        assert_eq!(out[2].body(), b"{}", "earlier deliveries keep their bytes");
    }

    #[test]
    fn a_chunk_whose_deliveries_are_gone_is_reused() {
        let mut chunk = DeliveryChunk::default();
        chunk.push(1, 0, "a", &[b'x'; 5000]);
        let mut out = Vec::new();
        chunk.finish(&mut out);
        let first = out[0].body().as_ptr();
        drop(out);
        assert_eq!(chunk.pool.kept(), 1, "the emptied buffer came back");
        chunk.push(2, 0, "b", b"y");
        let mut next = Vec::new();
        chunk.finish(&mut next);
        chunk.push(3, 0, "c", b"z");
        let mut third = Vec::new();
        chunk.finish(&mut third);
        assert_eq!(next[0].body(), b"y");
        assert_eq!(third[0].body().as_ptr(), first, "the first chunk's buffer serves again");
    }

    #[test]
    fn a_delivery_in_a_frame_borrows_it_and_refuses_bytes_from_elsewhere() {
        let frame = Shared::own(b"id-1{\"a\":1}".to_vec());
        let d = Delivery::in_frame(1, 10, &frame, std::str::from_utf8(&frame[..4]).unwrap(), &frame[4..]).unwrap();
        assert_eq!((d.id(), d.body()), ("id-1", &b"{\"a\":1}"[..]));
        assert_eq!(d.body().as_ptr(), frame[4..].as_ptr(), "not copied");
        assert!(Delivery::in_frame(1, 10, &frame, "id-1", b"{}").is_none());
    }
}
