//! Serial gap detection: which audit serials never arrived.
//!
//! The kernel numbers events with a `u32` serial that wraps. Events arrive out of order, so a
//! missing serial is only reported once it has stayed missing for a reorder window (in serials) or
//! a gap timeout (in time). Serials are mapped onto an unbounded `i64` line relative to the
//! expected one with wrapping arithmetic, so 4294967295 → 0 is a step of one.
//!
//! Invariants:
//! - a serial behind the expected one (duplicate, late, or already reported) never counts as loss;
//! - a jump larger than `max_serial_jump` either way is a restart (reboot, concatenated logs), not
//!   loss: tracking restarts there and the restart is counted, never billions of "lost" serials;
//! - `pending` only holds serials within `reorder_window` of the expected one: bounded memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::loss::LossNotice;

#[derive(Debug, Default)]
pub(crate) struct GapTracker {
    /// Unwrapped serial expected next; every serial below it arrived or was reported missing.
    next: Option<i64>,
    /// Unwrapped serials that arrived ahead of `next`, with their arrival time.
    pending: BTreeMap<i64, Instant>,
    /// Since when the hole at `next` has been visible (pending non-empty).
    hole_since: Option<Instant>,
}

/// What the tracker did with a serial (for statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Expected,
    Ahead,
    Behind,
    Restart,
}

#[derive(Debug)]
pub(crate) struct Limits {
    pub reorder_window: u32,
    pub gap_timeout: Duration,
    pub max_serial_jump: u32,
}

impl GapTracker {
    /// Record that `serial` started an event; append notices for serials now known to be lost.
    pub fn observe(&mut self, serial: u32, now: Instant, limits: &Limits, out: &mut Vec<LossNotice>) -> Seen {
        let Some(next) = self.next else {
            self.restart(serial);
            return Seen::Expected;
        };
        // Distance from the expected serial, wrapping: the nearest interpretation wins.
        let delta = i64::from(serial.wrapping_sub(low32(next)) as i32);
        if delta.unsigned_abs() > u64::from(limits.max_serial_jump) {
            self.restart(serial);
            return Seen::Restart;
        }
        let unwrapped = next + delta;
        let seen = match delta {
            d if d < 0 => return Seen::Behind,
            0 => {
                self.advance_to(next + 1);
                Seen::Expected
            }
            _ => {
                self.pending.insert(unwrapped, now);
                self.hole_since.get_or_insert(now);
                Seen::Ahead
            }
        };
        while let (Some(expected), Some((&highest, _))) = (self.next, self.pending.last_key_value()) {
            if highest - expected < i64::from(limits.reorder_window) {
                break;
            }
            self.report_hole(out);
        }
        seen
    }

    /// Report holes that have been visible for `gap_timeout`.
    pub fn tick(&mut self, now: Instant, limits: &Limits, out: &mut Vec<LossNotice>) {
        while self.hole_since.is_some_and(|since| now.saturating_duration_since(since) >= limits.gap_timeout) {
            self.report_hole(out);
        }
    }

    /// Report every hole still open, whatever its age (end of input, shutdown): the serials
    /// between the expected one and each that arrived ahead of it.
    pub fn flush(&mut self, out: &mut Vec<LossNotice>) {
        while !self.pending.is_empty() {
            self.report_hole(out);
        }
        self.hole_since = None;
    }

    /// When `tick` would next report something.
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        self.hole_since.map(|since| since + limits.gap_timeout)
    }

    fn restart(&mut self, serial: u32) {
        self.next = Some(i64::from(serial) + 1);
        self.pending.clear();
        self.hole_since = None;
    }

    /// The hole at `next` is lost: report it and move past it.
    fn report_hole(&mut self, out: &mut Vec<LossNotice>) {
        let (Some(next), Some((&first_seen, _))) = (self.next, self.pending.first_key_value()) else {
            self.hole_since = None;
            return;
        };
        let count = first_seen - next;
        out.push(LossNotice::SerialGap { first: low32(next), last: low32(first_seen - 1), count: count as u64 });
        self.advance_to(first_seen);
    }

    /// Move `next` to `to`, then past every pending serial contiguous with it.
    fn advance_to(&mut self, to: i64) {
        let mut next = to;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > next {
                break;
            }
            // Serials at or below `next` are no longer pending.
            let key = *entry.key();
            entry.remove();
            if key == next {
                next += 1;
            }
        }
        self.next = Some(next);
        // The new hole became visible when a serial above it arrived; the lowest pending serial's
        // arrival is a safe (never too early) estimate, and O(1).
        self.hole_since = self.pending.first_key_value().map(|(_, &since)| since);
    }
}

fn low32(n: i64) -> u32 {
    n.rem_euclid(1 << 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { reorder_window: 4, gap_timeout: Duration::from_secs(5), max_serial_jump: 1000 }
    }

    fn feed(t: &mut GapTracker, serials: &[u32], now: Instant) -> Vec<LossNotice> {
        let mut out = Vec::new();
        for &s in serials {
            t.observe(s, now, &limits(), &mut out);
        }
        out
    }

    #[test]
    fn in_order_and_reordered_within_the_window_is_no_loss() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        assert!(feed(&mut t, &[10, 11, 13, 12, 15, 14, 16], now).is_empty());
        assert!(t.pending.is_empty());
        assert_eq!(t.hole_since, None);
    }

    #[test]
    fn a_hole_beyond_the_window_is_reported_once() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        let out = feed(&mut t, &[10, 11, 14, 15, 16, 17, 18, 12, 13], now);
        assert_eq!(out, vec![LossNotice::SerialGap { first: 12, last: 13, count: 2 }]);
    }

    #[test]
    fn a_hole_is_reported_after_the_gap_timeout() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        assert!(feed(&mut t, &[1, 3], now).is_empty());
        let mut out = Vec::new();
        t.tick(now + Duration::from_secs(4), &limits(), &mut out);
        assert!(out.is_empty());
        assert_eq!(t.deadline(&limits()), Some(now + Duration::from_secs(5)));
        t.tick(now + Duration::from_secs(5), &limits(), &mut out);
        assert_eq!(out, vec![LossNotice::SerialGap { first: 2, last: 2, count: 1 }]);
        assert_eq!(t.deadline(&limits()), None);
    }

    #[test]
    fn flush_reports_every_open_hole() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        assert!(feed(&mut t, &[1, 2, 4, 5], now).is_empty());
        let mut out = Vec::new();
        t.flush(&mut out);
        assert_eq!(out, vec![LossNotice::SerialGap { first: 3, last: 3, count: 1 }]);
        let mut t = GapTracker::default();
        // Within the reorder window (4), so nothing is reported before the flush.
        assert!(feed(&mut t, &[10, 12, 14], now).is_empty());
        out.clear();
        t.flush(&mut out);
        assert_eq!(
            out,
            vec![
                LossNotice::SerialGap { first: 11, last: 11, count: 1 },
                LossNotice::SerialGap { first: 13, last: 13, count: 1 }
            ]
        );
        assert_eq!(t.deadline(&limits()), None);
        out.clear();
        t.flush(&mut out);
        assert!(out.is_empty(), "reported once");
        assert!(feed(&mut t, &[15], now).is_empty(), "tracking goes on after the last serial seen");
    }

    #[test]
    fn wraps_around_u32() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        assert!(feed(&mut t, &[u32::MAX - 1, u32::MAX, 0, 1], now).is_empty());
        let out = feed(&mut t, &[4, 5, 6, 7, 8], now);
        assert_eq!(out, vec![LossNotice::SerialGap { first: 2, last: 3, count: 2 }]);
        let out = feed(&mut t, &[u32::MAX - 3, u32::MAX - 2], now);
        assert!(out.is_empty());
        let mut t = GapTracker::default();
        let out = feed(&mut t, &[u32::MAX - 1, 1, 2, 3, 4, 5], now);
        assert_eq!(out, vec![LossNotice::SerialGap { first: u32::MAX, last: 0, count: 2 }]);
    }

    #[test]
    fn duplicates_and_old_serials_never_count_as_loss() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        let out = feed(&mut t, &[100, 101, 101, 100, 50, 102, 99, 103], now);
        assert!(out.is_empty());
    }

    #[test]
    fn big_jumps_restart_instead_of_reporting_billions() {
        let now = Instant::now();
        let mut t = GapTracker::default();
        let mut out = Vec::new();
        assert_eq!(t.observe(5_000_000, now, &limits(), &mut out), Seen::Expected);
        assert_eq!(t.observe(3, now, &limits(), &mut out), Seen::Restart);
        assert_eq!(t.observe(4, now, &limits(), &mut out), Seen::Expected);
        assert_eq!(t.observe(2_000_000_000, now, &limits(), &mut out), Seen::Restart);
        assert!(out.is_empty());
    }
}
