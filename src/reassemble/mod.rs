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
//! Why a grace for standalone types: a record that is usually a whole event by itself (a user-space
//! message such as SERVICE_START, or ANOM_PROMISCUOUS) is followed by SYSCALL … EOE with the same
//! serial when the process that caused it was inside an audited syscall: the kernel logs the record
//! during the syscall and the syscall's records at its exit, microseconds later. Emitting the first
//! record at once would split one kernel event into two (the second flagged `late`). So such a
//! record opens its event for `standalone_grace` ([`policy::may_carry_syscall_context`]): if no
//! other record of it arrives by then, it is emitted complete (`Standalone`) — that is the latency
//! the grace costs, and only events made of such a record pay it; if one does, the event waits for
//! its EOE like any other. Flush and eviction emit an event still in its grace complete, too.
//!
//! A record of an event already in flight joins it before timeouts are applied: a record that has
//! arrived is never made `late` just because the timer had not run yet.
//!
//! An event's timers (grace, `event_timeout`) start when its first record arrives, or, with
//! [`Reassembler::push_at`], at the later of that and the event's own stamp on the caller's clock:
//! replay uses that, so an event stamped ahead of replay's clock is not timed out the moment the
//! clock catches up with it. Timers are kept ordered by deadline, so any start times work.
//!
//! A record for an event that was already emitted (remembered for `completed_memory` events)
//! opens a new event flagged `late`, which completes by the same rules: late data is never dropped
//! and never merged into another event. Serial gaps are tracked per node (`gap.rs`) and reported
//! in-band as [`LossNotice::SerialGap`]; [`Reassembler::flush`] reports every hole still open, so
//! end of input and daemon shutdown never hide a loss.
//!
//! Time is a parameter (`now`), never read from a clock here: the daemon passes
//! `Instant::now()`, replay passes a clock derived from record timestamps, tests pass whatever they
//! like. Output order is completion order and depends only on the input and the `now` values:
//! in-flight events are kept in start order (a BTreeMap keyed by start time and arrival number),
//! never in hash order; timers due at one `tick` fire in deadline order.

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

#[cfg(test)]
impl Event {
    /// A complete event of audit.log lines (tests of what reads events).
    pub(crate) fn from_log_lines<S: AsRef<str>>(lines: &[S]) -> Event {
        let parse = |l: &S| crate::record::parse_log_line(l.as_ref().as_bytes()).expect("a test's audit.log line");
        let records: Vec<Record> = lines.iter().map(parse).collect();
        Event {
            id: records[0].id,
            node: None,
            records,
            incomplete: false,
            late: false,
            completion: Completion::EndOfEvent,
        }
    }
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
    /// Events opened by a standalone-type record that other records then joined (one kernel event
    /// that would otherwise have been split in two).
    pub standalone_joined: u64,
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
    /// Opened by a standalone-type record in its grace, no other record yet: complete as it is.
    grace: bool,
}

/// Groups records into events. See the module documentation for the rules.
#[derive(Debug)]
pub struct Reassembler {
    cfg: ReassembleConfig,
    limits: gap::Limits,
    in_flight: HashMap<Key, Pending, FastHash>,
    /// (start, arrival number) → key of each in-flight event not in its grace: oldest first, for
    /// timeouts, eviction and flush.
    arrival_order: BTreeMap<(Instant, u64), Key>,
    /// (grace deadline, arrival number, key) of events opened in their grace, in deadline order
    /// (which is arrival order but for events [`push_at`](Self::push_at) started ahead). An entry is
    /// stale once its event left the grace or was emitted ([`Reassembler::in_grace`]); stale
    /// entries are dropped when they reach the front. A deque, not a map: standalone events are
    /// common and this is the hot path.
    graces: VecDeque<(Instant, u64, Key)>,
    next_arrival: u64,
    completed: RecentKeys,
    /// Interned `node=` values; index 0 is "no node".
    nodes: Vec<Option<Box<[u8]>>>,
    gaps: Vec<gap::GapTracker>,
    last_now: Option<Instant>,
    stats: ReassembleStats,
    notices: Vec<LossNotice>,
    /// Emptied record lists of written events ([`Reassembler::recycle`]), reused for new events:
    /// one allocation and free per event less on the hot path.
    spare: Vec<Vec<Record>>,
    /// No timer is due before this ([`Due`]); lets the tick that [`push_at`](Self::push_at) runs
    /// for every record cost one comparison when nothing is due.
    due: Due,
}

/// A lower bound on [`Reassembler::next_deadline`]: computed by each full tick, lowered by every
/// timer started since (a timer that ends only moves the true deadline later, so the bound stays
/// safe). Why: a full tick is a B-tree descent and a call into std's `Instant` arithmetic, and
/// ticking per record made it 6 % of the processing thread's samples under an openat storm.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// Not known: the next tick runs in full.
    Unknown,
    /// No timer runs.
    Never,
    At(Instant),
}

impl Due {
    fn lower_to(&mut self, deadline: Instant) {
        *self = match *self {
            Due::Unknown => Due::Unknown,
            Due::Never => Due::At(deadline),
            Due::At(t) => Due::At(t.min(deadline)),
        };
    }

    /// Nothing can be due at `now`.
    fn quiet_at(self, now: Instant) -> bool {
        match self {
            Due::Unknown => false,
            Due::Never => true,
            Due::At(t) => now < t,
        }
    }
}

/// Spare record lists kept at most.
const SPARE_LISTS: usize = 1024;

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
            // Sized once for a typical number of open events (standalone ones in their grace
            // included) so steady state never rehashes; it still grows to `max_in_flight`.
            in_flight: HashMap::with_capacity_and_hasher(cfg.max_in_flight.clamp(1, 64), FastHash::default()),
            arrival_order: BTreeMap::new(),
            graces: VecDeque::new(),
            next_arrival: 0,
            completed: RecentKeys::new(cfg.completed_memory.max(1)),
            nodes: vec![None],
            gaps: vec![gap::GapTracker::default()],
            last_now: None,
            stats: ReassembleStats::default(),
            notices: Vec::new(),
            spare: Vec::new(),
            due: Due::Unknown,
        }
    }

    /// Hand back an emitted event's record list once its records were taken out.
    pub fn recycle(&mut self, mut records: Vec<Record>) {
        if self.spare.len() < SPARE_LISTS && records.capacity() <= 64 {
            records.clear();
            self.spare.push(records);
        }
    }

    fn record_list(&mut self, first: Record) -> Vec<Record> {
        let mut records = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(6));
        records.push(first);
        records
    }

    /// Add one record; completed events and loss notices are appended to `out`.
    pub fn push(&mut self, rec: Record, now: Instant, out: &mut Vec<Output>) {
        self.push_at(rec, now, now, out);
    }

    /// [`push`](Self::push) for a caller whose clock is derived from record stamps (replay):
    /// `stamp` is when the record's event happened on that clock. A new event's timers start at
    /// the later of `now` and `stamp`.
    pub fn push_at(&mut self, rec: Record, now: Instant, stamp: Instant, out: &mut Vec<Output>) {
        let now = self.monotonic(now);
        self.stats.records += 1;
        let key = Key { id: rec.id, node: self.intern(rec.node.as_deref()) };
        let ends = policy::ends_event(rec.kind);

        if let Some(pending) = self.in_flight.get_mut(&key) {
            if pending.late {
                self.stats.late_records += 1;
            }
            let left_grace = std::mem::take(&mut pending.grace);
            let order_entry = (pending.started, pending.arrival);
            pending.records.push(rec);
            let full = pending.records.len() >= self.cfg.max_records_per_event;
            if left_grace {
                // An ordinary open event from now on: its timeout counts from its start.
                self.stats.standalone_joined += 1;
                self.arrival_order.insert(order_entry, key);
                self.due.lower_to(order_entry.0 + self.cfg.event_timeout);
            }
            let completion = if ends {
                Some(Completion::EndOfEvent)
            } else if full {
                Some(Completion::Oversized)
            } else {
                None
            };
            match completion.and_then(|c| self.take(key).map(|p| (p, c))) {
                Some((pending, completion)) => {
                    // Timers that were already due fire first, then the event this record ended.
                    self.tick(now, out);
                    self.emit_pending(key, pending, completion, out);
                }
                None => self.tick(now, out),
            }
            return;
        }

        self.tick(now, out);
        let late = self.completed.contains(&key);
        if late {
            self.stats.late_records += 1;
        } else if policy::kernel_serial(rec.kind) {
            self.observe_serial(key, now, out);
        }
        let grace = ends
            && !late
            && !self.cfg.standalone_grace.is_zero()
            && self.cfg.max_records_per_event > 1
            && policy::may_carry_syscall_context(rec.kind);
        if (ends && !grace) || self.cfg.max_records_per_event <= 1 {
            // A whole event in one record: skip the in-flight map.
            let completion = if ends { Completion::Standalone } else { Completion::Oversized };
            let node = rec.node.clone();
            let records = self.record_list(rec);
            self.emit(key, node, records, late, completion, out);
            return;
        }
        if self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
            if let Some(oldest) = self.oldest() {
                self.complete(oldest, Completion::Evicted, out);
            }
        }
        let started = now.max(stamp);
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let records = self.record_list(rec);
        if grace {
            let deadline = started + self.cfg.standalone_grace;
            // Almost always the back (a binary search to be sure: push_at may start ahead).
            let at = self.graces.partition_point(|g| g.0 <= deadline);
            self.graces.insert(at, (deadline, arrival, key));
            self.due.lower_to(deadline);
        } else {
            self.arrival_order.insert((started, arrival), key);
            self.due.lower_to(started + self.cfg.event_timeout);
        }
        self.in_flight.insert(key, Pending { arrival, started, records, late, grace });
        self.stats.in_flight = self.in_flight.len() as u64;
    }

    /// Emit events whose grace or timeout passed (in deadline order) and report serial holes older
    /// than `gap_timeout`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let now = self.monotonic(now);
        if self.due.quiet_at(now) && self.notices.is_empty() {
            return;
        }
        loop {
            // Only due entries are looked at (a stale grace entry is dropped when due): a tick
            // with nothing due costs two comparisons, no lookup.
            let grace = self.graces.front().map(|g| g.0).filter(|&deadline| deadline <= now);
            let timeout = self
                .arrival_order
                .first_key_value()
                .map(|(&(started, _), &key)| (started + self.cfg.event_timeout, key))
                .filter(|&(deadline, _)| deadline <= now);
            match (grace, timeout) {
                (Some(g), t) if t.is_none_or(|(deadline, _)| g <= deadline) => {
                    if let Some((_, arrival, key)) = self.graces.pop_front() {
                        if self.in_grace(arrival, key) {
                            self.complete(key, Completion::Standalone, out);
                        }
                    }
                }
                (_, Some((_, key))) => self.complete(key, Completion::Timeout, out),
                _ => break,
            }
        }
        for tracker in &mut self.gaps {
            tracker.tick(now, &self.limits, &mut self.notices);
        }
        self.drain_notices(out);
        self.due = self.next_deadline().map_or(Due::Never, Due::At);
    }

    /// When [`tick`](Self::tick) next may have work: the oldest event's timeout, the first grace
    /// to end, or a gap deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let event = self.arrival_order.first_key_value().map(|(&(started, _), _)| started + self.cfg.event_timeout);
        // The front may be stale (its event joined or emitted): then the deadline is early, never
        // late, and the tick it causes drops it.
        let grace = self.graces.front().map(|g| g.0);
        let gap = self.gaps.iter().filter_map(|g| g.deadline(&self.limits)).min();
        [event, grace, gap].into_iter().flatten().min()
    }

    /// Emit every in-flight event, oldest first: flagged `incomplete`, except an event still in
    /// its standalone grace, which is whole. Then report every serial hole still open (whatever
    /// its age): at end of input or shutdown nothing else will.
    pub fn flush(&mut self, out: &mut Vec<Output>) {
        let mut open: Vec<(u64, Key)> = self.in_flight.iter().map(|(&key, p)| (p.arrival, key)).collect();
        open.sort_unstable_by_key(|&(arrival, _)| arrival);
        for (_, key) in open {
            self.complete(key, Completion::Flushed, out);
        }
        self.graces.clear();
        for tracker in &mut self.gaps {
            tracker.flush(&mut self.notices);
        }
        self.drain_notices(out);
    }

    pub fn stats(&self) -> ReassembleStats {
        self.stats
    }

    /// Forget the due bound: the next tick runs in full (tests compare against that).
    #[cfg(test)]
    pub(crate) fn forget_due(&mut self) {
        self.due = Due::Unknown;
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
        if let Some(deadline) = tracker.deadline(&self.limits) {
            self.due.lower_to(deadline);
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
        if let Some(pending) = self.take(key) {
            self.emit_pending(key, pending, completion, out);
        }
    }

    /// Remove an in-flight event and its timeout entry (a grace entry goes stale).
    fn take(&mut self, key: Key) -> Option<Pending> {
        let Some(pending) = self.in_flight.remove(&key) else {
            // A timer entry whose event is gone cannot happen; drop stale entries if it does.
            self.arrival_order.retain(|_, k| *k != key);
            return None;
        };
        if !pending.grace {
            self.arrival_order.remove(&(pending.started, pending.arrival));
        }
        self.stats.in_flight = self.in_flight.len() as u64;
        Some(pending)
    }

    /// Whether the grace entry (`arrival`, `key`) is current: its event is open and in its grace.
    fn in_grace(&self, arrival: u64, key: Key) -> bool {
        self.in_flight.get(&key).is_some_and(|p| p.grace && p.arrival == arrival)
    }

    fn drop_stale_graces(&mut self) {
        while let Some(&(_, arrival, key)) = self.graces.front() {
            if self.in_grace(arrival, key) {
                break;
            }
            self.graces.pop_front();
        }
    }

    /// The in-flight event that arrived first, for eviction.
    fn oldest(&mut self) -> Option<Key> {
        self.drop_stale_graces();
        let grace = self.graces.front().map(|&(_, arrival, key)| (arrival, key));
        let open =
            self.arrival_order.values().next().and_then(|&key| self.in_flight.get(&key).map(|p| (p.arrival, key)));
        [grace, open].into_iter().flatten().min_by_key(|&(arrival, _)| arrival).map(|(_, key)| key)
    }

    fn emit_pending(&mut self, key: Key, pending: Pending, completion: Completion, out: &mut Vec<Output>) {
        let node = pending.records.first().and_then(|r| r.node.clone());
        // Still in its grace: the record is a whole event, however it leaves (timer, bound, flush).
        let completion = if pending.grace { Completion::Standalone } else { completion };
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

/// Hashes a [`Key`] so that consecutive serials land in neighbouring buckets: the low 32 bits
/// are the serial, the high ones (hashbrown's tag) mix the time and node. The set holds 16384
/// keys by default (~1 MB); with a scattering hash every completed event cost a cache miss to
/// insert its key and another to evict the oldest — 9 % of the processing thread's samples (perf,
/// openat storm). Kernel serials rise by one per event, so inserts, evictions and the lookups of
/// late records walk the table in order instead. Keys sharing a serial (several nodes, a reboot)
/// only probe further; the set stays bounded by `completed_memory` whatever the input.
#[derive(Debug, Default, Clone, Copy)]
struct SerialOrder(u64);

impl std::hash::Hasher for SerialOrder {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; any other input still gets a deterministic hash.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `Key` hashed for [`SerialOrder`]: one `write_u64`, the serial in the low half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentKey(Key);

impl std::hash::Hash for RecentKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let k = &self.0;
        let mix = (k.id.seconds ^ (u64::from(k.id.millis) << 40) ^ (u64::from(k.node) << 16))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        state.write_u64((mix & 0xFFFF_FFFF_0000_0000) | u64::from(k.id.serial));
    }
}

/// A bounded set of recently completed keys (FIFO eviction).
#[derive(Debug)]
struct RecentKeys {
    set: HashSet<RecentKey, std::hash::BuildHasherDefault<SerialOrder>>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl RecentKeys {
    fn new(capacity: usize) -> RecentKeys {
        // Grown on use up to `capacity`: a short replay (or a test) does not pay for allocating
        // and clearing the whole bound (16384 keys by default) up front.
        let initial = capacity.min(1024);
        RecentKeys {
            set: HashSet::with_capacity_and_hasher(initial, Default::default()),
            order: VecDeque::with_capacity(initial),
            capacity,
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.set.contains(&RecentKey(*key))
    }

    fn insert(&mut self, key: Key) {
        if !self.set.insert(RecentKey(key)) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&RecentKey(old));
            }
        }
    }
}

#[cfg(test)]
mod tests;
