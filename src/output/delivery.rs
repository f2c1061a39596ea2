//! The contract between the spool and a sink.
//!
//! The spool hands each sink [`Delivery`] values in spool order through a bounded channel (the
//! channel size is the sink's window). The sink sends back [`Ack`]s: `Ack(pos)` means every delivery
//! with a position `<= pos` has been accepted by the receiver in the sink's own sense (RELP `rsp 200`,
//! file `fdatasync`, TCP "written"). Acks are cumulative and never go backwards. A sink that loses its
//! connection resends its unacknowledged deliveries itself, in order; after a process restart the
//! spool redelivers everything after the last persisted ack (at-least-once).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// One spooled event on its way to a sink.
///
/// The event's bytes live in a buffer shared by every delivery read from the spool in one go
/// ([`DeliveryChunk`]): one allocation per batch instead of two per event and output, which the
/// profile showed as malloc/free and copies on the pump threads (docs/performance.md).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the spool; strictly increasing per sink.
    pub pos: u64,
    /// The event's own time (milliseconds since the epoch), for the syslog header.
    pub time_ms: u64,
    bytes: Arc<ChunkBytes>,
    id: Range<usize>,
    body: Range<usize>,
}

#[derive(Debug, Default)]
struct ChunkBytes {
    ids: String,
    bodies: Vec<u8>,
    /// Where the buffers go back when the last delivery of the chunk is dropped.
    spare: Option<Spare>,
}

/// Emptied chunk buffers waiting for the pump's next batch. A fresh ~1 MB chunk per batch was
/// allocated on the pump's thread and freed on the sink's: under glibc that churn kept freed
/// chunks in the arenas and raised the flat-out peak; recycled, the same few buffers serve
/// every batch (docs/performance.md).
type Spare = Arc<Mutex<Vec<ChunkBytes>>>;

/// Most emptied chunks kept for reuse per pump: the file output holds up to its queue (1024) plus
/// one turn (256) and the pump's batch (256) in flight, six chunks of 256 events; more spares
/// than that are never asked for.
const SPARE_MAX: usize = 8;

/// A chunk buffer larger than this (one outsized event) is freed, not kept.
const SPARE_BYTES_MAX: usize = 2 << 20;

impl Drop for ChunkBytes {
    fn drop(&mut self) {
        let Some(spare) = self.spare.take() else { return };
        if self.bodies.capacity() > SPARE_BYTES_MAX || self.ids.capacity() > SPARE_BYTES_MAX {
            return;
        }
        if let Ok(mut kept) = spare.lock() {
            if kept.len() < SPARE_MAX {
                let (mut ids, mut bodies) = (std::mem::take(&mut self.ids), std::mem::take(&mut self.bodies));
                ids.clear();
                bodies.clear();
                kept.push(ChunkBytes { ids, bodies, spare: None });
            }
        };
    }
}

impl Delivery {
    /// A delivery with bytes of its own.
    pub fn new(pos: u64, time_ms: u64, id: &str, body: &[u8]) -> Delivery {
        let bytes = Arc::new(ChunkBytes { ids: id.to_string(), bodies: body.to_vec(), spare: None });
        Delivery { pos, time_ms, bytes, id: 0..id.len(), body: 0..body.len() }
    }

    /// Stable event id, for receiver-side deduplication.
    pub fn id(&self) -> &str {
        self.bytes.ids.get(self.id.clone()).unwrap_or_default()
    }

    /// The formatted event (native JSON, no trailing newline).
    pub fn body(&self) -> &[u8] {
        self.bytes.bodies.get(self.body.clone()).unwrap_or_default()
    }
}

/// Collects a batch of events read from the spool into one shared buffer, then hands them out
/// as [`Delivery`] values.
#[derive(Debug, Default)]
pub struct DeliveryChunk {
    bytes: ChunkBytes,
    entries: Vec<(u64, u64, Range<usize>, Range<usize>)>,
    spare: Spare,
}

impl DeliveryChunk {
    pub fn push(&mut self, pos: u64, time_ms: u64, id: &str, body: &[u8]) {
        let (i, b) = (self.bytes.ids.len(), self.bytes.bodies.len());
        self.bytes.ids.push_str(id);
        self.bytes.bodies.extend_from_slice(body);
        self.entries.push((pos, time_ms, i..i + id.len(), b..b + body.len()));
    }

    /// Append the collected events to `out` as deliveries; the chunk starts empty again (with
    /// the buffers of a chunk whose deliveries are all gone, or room for a batch like this one).
    pub fn finish(&mut self, out: &mut Vec<Delivery>) {
        if self.entries.is_empty() {
            return;
        }
        let reused = self.spare.lock().ok().and_then(|mut kept| kept.pop());
        let room = reused.unwrap_or_else(|| ChunkBytes {
            ids: String::with_capacity(self.bytes.ids.len()),
            bodies: Vec::with_capacity(self.bytes.bodies.len()),
            spare: None,
        });
        let mut full = std::mem::replace(&mut self.bytes, room);
        full.spare = Some(self.spare.clone());
        let bytes = Arc::new(full);
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

/// Move deliveries already waiting in `rx` into `batch` until it holds `max`, without waiting: a
/// batching sink writes what has queued up during its previous write in one go.
pub fn take_waiting(rx: &mut mpsc::Receiver<Delivery>, batch: &mut Vec<Delivery>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(d) => batch.push(d),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_waiting_stops_at_max_and_when_empty() {
        let (tx, mut rx) = mpsc::channel(8);
        for pos in 1..=3 {
            tx.send(Delivery::new(pos, 0, "i", b"{}")).await.unwrap();
        }
        let mut batch = Vec::new();
        take_waiting(&mut rx, &mut batch, 2);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2]);
        take_waiting(&mut rx, &mut batch, 10);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2, 3]);
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
    fn a_chunk_whose_deliveries_are_gone_is_reused_and_spares_are_bounded() {
        let mut chunk = DeliveryChunk::default();
        chunk.push(1, 0, "a", &[b'x'; 5000]);
        let mut out = Vec::new();
        chunk.finish(&mut out);
        let first = out[0].body().as_ptr();
        drop(out);
        assert_eq!(chunk.spare.lock().unwrap().len(), 1, "the emptied buffers came back");
        chunk.push(2, 0, "b", b"y");
        let mut next = Vec::new();
        chunk.finish(&mut next);
        assert_eq!(chunk.spare.lock().unwrap().len(), 0);
        chunk.push(3, 0, "c", b"z");
        let mut third = Vec::new();
        chunk.finish(&mut third);
        assert_eq!(next[0].body(), b"y");
        assert_eq!(third[0].body().as_ptr(), first, "the first chunk's buffer serves again");
        let mut held = Vec::new();
        for pos in 0..(SPARE_MAX as u64 + 4) {
            chunk.push(pos, 0, "i", b"{}");
            chunk.finish(&mut held);
        }
        drop(held);
        assert_eq!(chunk.spare.lock().unwrap().len(), SPARE_MAX);
    }
}
