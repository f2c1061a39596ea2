//! Reassembly: records in, one event per audit serial out.
//!
//! The kernel sends an event as several records sharing an [`EventId`]; records of different
//! events interleave and arrive out of order. An event is emitted when:
//! 1. a record ends it ([`policy::ends_event`]: EOE, or a type that is a whole event by itself);
//! 2. it has been in flight for `event_timeout` since its first record (`incomplete`);
//! 3. a new event would exceed `max_in_flight`: the oldest is emitted (`incomplete`);
//! 4. it reaches `max_records_per_event` records (`incomplete`);
//! 5. [`Reassembler::flush`] is called at shutdown or end of input (`incomplete`).
//!
//! A record for an event that was already emitted (remembered for `completed_memory` events)
//! opens a new event flagged `late`, which completes by the same rules: late data is never dropped
//! and never merged into another event. Serial gaps are tracked per node (`gap.rs`) and reported
//! in-band as [`LossNotice::SerialGap`].
//!
//! Time is a parameter (`now`), never read from a clock here: the daemon passes
//! `Instant::now()`, replay passes a clock derived from record timestamps, tests pass whatever they
//! like. Output order is completion order and depends only on the input and the `now` values:
//! in-flight events are kept in arrival order (a BTreeMap keyed by arrival number), never in hash
//! order.

mod config;
mod gap;
pub mod policy;

pub use config::ReassembleConfig;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::hash::FastHash;
use crate::loss::LossNotice;
use crate::record::{EventId, Record};

/// What the reassembler emits, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Event(Event),
    Loss(LossNotice),
}

/// Why an event was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// An end record (EOE, or an ending type after other records).
    EndOfEvent,
    /// A record type that is a whole event by itself.
    Standalone,
    /// `event_timeout` passed without an end record.
    Timeout,
    /// Pushed out by `max_in_flight`.
    Evicted,
    /// Reached `max_records_per_event`.
    Oversized,
    /// Emitted by `flush`.
    Flushed,
}

/// One reassembled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    /// The `node=` of the event's first record.
    pub node: Option<Box<[u8]>>,
    /// Records in arrival order.
    pub records: Vec<Record>,
    /// No end record was seen: emitted by timeout, a bound, or flush.
    pub incomplete: bool,
    /// The event had already been emitted when these records arrived.
    pub late: bool,
    pub completion: Completion,
}

/// Counters since creation. `in_flight` is the current number of open events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReassembleStats {
    pub records: u64,
    pub events: u64,
    pub completed_end: u64,
    pub completed_standalone: u64,
    pub timed_out: u64,
    pub evicted: u64,
    pub oversized: u64,
    pub flushed: u64,
    pub late_events: u64,
    pub late_records: u64,
    pub serial_gaps: u64,
    pub missing_serials: u64,
    pub serial_restarts: u64,
    pub in_flight: u64,
}

/// In-flight events are keyed by id and node, so aggregated logs from several hosts do not merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    id: EventId,
    node: u32,
}

#[derive(Debug)]
struct Pending {
    arrival: u64,
    started: Instant,
    records: Vec<Record>,
    late: bool,
}

/// Groups records into events. See the module documentation for the rules.
#[derive(Debug)]
pub struct Reassembler {
    cfg: ReassembleConfig,
    limits: gap::Limits,
    in_flight: HashMap<Key, Pending, FastHash>,
    /// Arrival number → key: oldest first, for timeouts, eviction and flush.
    arrival_order: BTreeMap<u64, Key>,
    next_arrival: u64,
    completed: RecentKeys,
    /// Interned `node=` values; index 0 is "no node".
    nodes: Vec<Option<Box<[u8]>>>,
    gaps: Vec<gap::GapTracker>,
    last_now: Option<Instant>,
    stats: ReassembleStats,
    notices: Vec<LossNotice>,
}

impl Reassembler {
    /// `cfg` should have passed [`ReassembleConfig::validate`]; zero bounds are treated as one.
    pub fn new(cfg: &ReassembleConfig) -> Reassembler {
        let limits = gap::Limits {
            reorder_window: cfg.reorder_window.max(1),
            gap_timeout: cfg.gap_timeout,
            max_serial_jump: cfg.max_serial_jump,
        };
        Reassembler {
            cfg: cfg.clone(),
            limits,
            in_flight: HashMap::default(),
            arrival_order: BTreeMap::new(),
            next_arrival: 0,
            completed: RecentKeys::new(cfg.completed_memory.max(1)),
            nodes: vec![None],
            gaps: vec![gap::GapTracker::default()],
            last_now: None,
            stats: ReassembleStats::default(),
            notices: Vec::new(),
        }
    }

    /// Add one record; completed events and loss notices are appended to `out`.
    pub fn push(&mut self, rec: Record, now: Instant, out: &mut Vec<Output>) {
        let now = self.monotonic(now);
        self.tick(now, out);
        self.stats.records += 1;
        let key = Key { id: rec.id, node: self.intern(rec.node.as_deref()) };
        let ends = policy::ends_event(rec.kind);

        if let Some(pending) = self.in_flight.get_mut(&key) {
            if pending.late {
                self.stats.late_records += 1;
            }
            pending.records.push(rec);
            let full = pending.records.len() >= self.cfg.max_records_per_event;
            if ends {
                self.complete(key, Completion::EndOfEvent, out);
            } else if full {
                self.complete(key, Completion::Oversized, out);
            }
            return;
        }

        let late = self.completed.contains(&key);
        if late {
            self.stats.late_records += 1;
        } else if policy::kernel_serial(rec.kind) {
            self.observe_serial(key, now, out);
        }
        if ends || self.cfg.max_records_per_event <= 1 {
            // A whole event in one record: skip the in-flight map.
            let completion = if ends { Completion::Standalone } else { Completion::Oversized };
            let node = rec.node.clone();
            self.emit(key, node, vec![rec], late, completion, out);
            return;
        }
        if self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
            if let Some((_, oldest)) = self.arrival_order.first_key_value() {
                let oldest = *oldest;
                self.complete(oldest, Completion::Evicted, out);
            }
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.arrival_order.insert(arrival, key);
        let mut records = Vec::with_capacity(6);
        records.push(rec);
        self.in_flight.insert(key, Pending { arrival, started: now, records, late });
        self.stats.in_flight = self.in_flight.len() as u64;
    }

    /// Emit events whose timeout passed and report serial holes older than `gap_timeout`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let now = self.monotonic(now);
        while let Some((_, &key)) = self.arrival_order.first_key_value() {
            let expired = self
                .in_flight
                .get(&key)
                .is_none_or(|p| now.saturating_duration_since(p.started) >= self.cfg.event_timeout);
            if !expired {
                break;
            }
            self.complete(key, Completion::Timeout, out);
        }
        for tracker in &mut self.gaps {
            tracker.tick(now, &self.limits, &mut self.notices);
        }
        self.drain_notices(out);
    }

    /// When [`tick`](Self::tick) next has work: the oldest event's timeout or a gap deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let event = self
            .arrival_order
            .first_key_value()
            .and_then(|(_, key)| self.in_flight.get(key))
            .map(|p| p.started + self.cfg.event_timeout);
        let gap = self.gaps.iter().filter_map(|g| g.deadline(&self.limits)).min();
        match (event, gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Emit every in-flight event, oldest first, flagged `incomplete`.
    pub fn flush(&mut self, out: &mut Vec<Output>) {
        while let Some((_, &key)) = self.arrival_order.first_key_value() {
            self.complete(key, Completion::Flushed, out);
        }
        self.drain_notices(out);
    }

    pub fn stats(&self) -> ReassembleStats {
        self.stats
    }

    /// Number of events currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Time never goes backwards inside the reassembler, whatever the caller passes.
    fn monotonic(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if last > now => last,
            _ => now,
        };
        self.last_now = Some(now);
        now
    }

    fn observe_serial(&mut self, key: Key, now: Instant, out: &mut Vec<Output>) {
        let Some(tracker) = self.gaps.get_mut(key.node as usize) else { return };
        if tracker.observe(key.id.serial, now, &self.limits, &mut self.notices) == gap::Seen::Restart {
            self.stats.serial_restarts += 1;
        }
        self.drain_notices(out);
    }

    fn drain_notices(&mut self, out: &mut Vec<Output>) {
        for notice in self.notices.drain(..) {
            if let LossNotice::SerialGap { count, .. } = notice {
                self.stats.serial_gaps += 1;
                self.stats.missing_serials += count;
            }
            out.push(Output::Loss(notice));
        }
    }

    fn intern(&mut self, node: Option<&[u8]>) -> u32 {
        let Some(node) = node else { return 0 };
        if let Some(i) = self.nodes.iter().position(|n| n.as_deref() == Some(node)) {
            return i as u32;
        }
        if self.nodes.len() > self.cfg.max_nodes {
            // Overflow slot: the last interned node; only gap tracking gets coarser.
            return (self.nodes.len() - 1) as u32;
        }
        self.nodes.push(Some(Box::from(node)));
        self.gaps.push(gap::GapTracker::default());
        (self.nodes.len() - 1) as u32
    }

    fn complete(&mut self, key: Key, completion: Completion, out: &mut Vec<Output>) {
        let Some(pending) = self.in_flight.remove(&key) else {
            // An arrival entry whose event is gone cannot happen; drop the stale entry if it does.
            self.arrival_order.retain(|_, k| *k != key);
            return;
        };
        self.arrival_order.remove(&pending.arrival);
        self.stats.in_flight = self.in_flight.len() as u64;
        let node = pending.records.first().and_then(|r| r.node.clone());
        self.emit(key, node, pending.records, pending.late, completion, out);
    }

    fn emit(
        &mut self,
        key: Key,
        node: Option<Box<[u8]>>,
        records: Vec<Record>,
        late: bool,
        completion: Completion,
        out: &mut Vec<Output>,
    ) {
        let incomplete = !matches!(completion, Completion::EndOfEvent | Completion::Standalone);
        let s = &mut self.stats;
        s.events += 1;
        match completion {
            Completion::EndOfEvent => s.completed_end += 1,
            Completion::Standalone => s.completed_standalone += 1,
            Completion::Timeout => s.timed_out += 1,
            Completion::Evicted => s.evicted += 1,
            Completion::Oversized => s.oversized += 1,
            Completion::Flushed => s.flushed += 1,
        }
        if late {
            s.late_events += 1;
        }
        self.completed.insert(key);
        out.push(Output::Event(Event { id: key.id, node, records, incomplete, late, completion }));
    }
}

/// A bounded set of recently completed keys (FIFO eviction).
#[derive(Debug)]
struct RecentKeys {
    set: HashSet<Key, FastHash>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl RecentKeys {
    fn new(capacity: usize) -> RecentKeys {
        RecentKeys {
            set: HashSet::with_capacity_and_hasher(capacity, FastHash::default()),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: Key) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests;
