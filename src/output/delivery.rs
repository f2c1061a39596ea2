//! The contract between the spool and a sink.
//!
//! The spool hands each sink [`Delivery`] values in spool order through a bounded channel (the
//! channel size is the sink's window). The sink sends back [`Ack`]s: `Ack(pos)` means every delivery
//! with a position `<= pos` has been accepted by the receiver in the sink's own sense (RELP `rsp 200`,
//! file `fdatasync`, TCP "written"). Acks are cumulative and never go backwards. A sink that loses its
//! connection resends its unacknowledged deliveries itself, in order; after a process restart the
//! spool redelivers everything after the last persisted ack (at-least-once).

use std::sync::Arc;

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
