//! Process-wide counters of the network sinks, so that loss-adjacent events (truncation, receiver
//! rejects, reconnects) are numbers a status command can show and not only log lines.
//!
//! Counters are global (summed over all network outputs) because the sink entry points have a
//! fixed signature; every increment is also logged with the output's name.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct NetStats {
    /// Events whose EXECVE arguments were cut to fit `max_message_size`.
    pub truncated_events: AtomicU64,
    /// Events that still did not fit and had records replaced by stubs.
    pub stubbed_events: AtomicU64,
    /// Sessions or connections that broke and were re-established (all network sinks).
    pub reconnects: AtomicU64,
    /// RELP `rsp` frames with a code other than 200.
    pub relp_rejects: AtomicU64,
    /// Frames resent after a reconnect (RELP) or deliveries rewritten (TCP).
    pub resent: AtomicU64,
    /// Deliveries acknowledged by network sinks.
    pub acked: AtomicU64,
}

pub static NET_STATS: NetStats = NetStats {
    truncated_events: AtomicU64::new(0),
    stubbed_events: AtomicU64::new(0),
    reconnects: AtomicU64::new(0),
    relp_rejects: AtomicU64::new(0),
    resent: AtomicU64::new(0),
    acked: AtomicU64::new(0),
};

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A point-in-time copy, for status output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStatsSnapshot {
    pub truncated_events: u64,
    pub stubbed_events: u64,
    pub reconnects: u64,
    pub relp_rejects: u64,
    pub resent: u64,
    pub acked: u64,
}

pub fn snapshot() -> NetStatsSnapshot {
    let s = &NET_STATS;
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    NetStatsSnapshot {
        truncated_events: g(&s.truncated_events),
        stubbed_events: g(&s.stubbed_events),
        reconnects: g(&s.reconnects),
        relp_rejects: g(&s.relp_rejects),
        resent: g(&s.resent),
        acked: g(&s.acked),
    }
}
