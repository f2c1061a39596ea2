//! The contract between the spool and a sink.
//!
//! The spool hands each sink [`Delivery`] values in spool order through a bounded channel (the
//! channel size is the sink's window). The sink sends back [`Ack`]s: `Ack(pos)` means every delivery
//! with a position `<= pos` has been accepted by the receiver in the sink's own sense (RELP `rsp 200`,
//! file `fdatasync`, TCP "written"). Acks are cumulative and never go backwards. A sink that loses its
//! connection resends its unacknowledged deliveries itself, in order; after a process restart the
//! spool redelivers everything after the last persisted ack (at-least-once).

use std::sync::Arc;

use tokio::sync::mpsc;

/// One spooled event on its way to a sink.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Position in the spool; strictly increasing per sink.
    pub pos: u64,
    /// The event's own time (milliseconds since the epoch), for the syslog header.
    pub time_ms: u64,
    /// Stable event id, for receiver-side deduplication.
    pub id: Arc<str>,
    /// The formatted event (native JSON, no trailing newline).
    pub body: Arc<[u8]>,
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
            tx.send(Delivery { pos, time_ms: 0, id: Arc::from("i"), body: Arc::from(&b"{}"[..]) }).await.unwrap();
        }
        let mut batch = Vec::new();
        take_waiting(&mut rx, &mut batch, 2);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2]);
        take_waiting(&mut rx, &mut batch, 10);
        assert_eq!(batch.iter().map(|d| d.pos).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
