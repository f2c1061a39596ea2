use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::record::{parse_netlink, MessageType};

const SYSCALL: u16 = 1300;
const PATH: u16 = 1302;
const CWD: u16 = 1307;
const PROCTITLE: u16 = 1327;
const EOE: u16 = 1320;
const USER: u16 = 1005;
const LOGIN: u16 = 1006;
const SERVICE_START: u16 = 1130;
const SOCKADDR: u16 = 1306;
const ANOM_PROMISCUOUS: u16 = 1700;
const DAEMON_START: u16 = 1200;

/// A record of event `serial`; `tag` makes records distinguishable.
fn rec(kind: u16, serial: u32, tag: usize) -> Record {
    let payload = format!("audit(1700000000.{:03}:{serial}): tag={tag}", serial % 1000);
    parse_netlink(kind, payload.as_bytes()).unwrap()
}

fn tag(r: &Record) -> usize {
    std::str::from_utf8(r.get(b"tag").unwrap().value).unwrap().parse().unwrap()
}

fn emitted(out: &[Output]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            Output::Loss(_) => None,
        })
        .collect()
}

fn losses(out: &[Output]) -> Vec<LossNotice> {
    out.iter()
        .filter_map(|o| match o {
            Output::Loss(l) => Some(l.clone()),
            Output::Event(_) => None,
        })
        .collect()
}

fn kinds(e: &Event) -> Vec<u16> {
    e.records.iter().map(|r| r.kind.0).collect()
}

#[test]
fn eoe_completes_and_proctitle_does_not() {
    let now = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    for (i, k) in [SYSCALL, CWD, PATH, PROCTITLE].into_iter().enumerate() {
        r.push(rec(k, 7, i), now, &mut out);
    }
    assert!(out.is_empty(), "PROCTITLE must not end the event");
    r.push(rec(EOE, 7, 4), now, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(kinds(ev[0]), vec![SYSCALL, CWD, PATH, PROCTITLE, EOE]);
    assert!(!ev[0].incomplete && !ev[0].late);
    assert_eq!(ev[0].completion, Completion::EndOfEvent);
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn user_records_are_standalone_but_login_is_not() {
    let now = Instant::now();
    let cfg = ReassembleConfig::default();
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(USER, 1, 0), now, &mut out);
    assert!(out.is_empty(), "in its grace");
    r.tick(now + cfg.standalone_grace, &mut out);
    assert_eq!(emitted(&out).len(), 1);
    assert_eq!(emitted(&out)[0].completion, Completion::Standalone);
    assert!(!emitted(&out)[0].incomplete);
    out.clear();
    r.push(rec(LOGIN, 2, 1), now, &mut out);
    assert!(out.is_empty(), "LOGIN waits for its SYSCALL and EOE");
    r.push(rec(SYSCALL, 2, 2), now, &mut out);
    r.push(rec(EOE, 2, 3), now, &mut out);
    assert_eq!(kinds(emitted(&out)[0]), vec![LOGIN, SYSCALL, EOE]);
}

#[test]
fn a_standalone_type_followed_by_its_syscall_is_one_event() {
    // laurel's record-service-start: SERVICE_START logged inside systemd's audited sendto.
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    for (i, k) in [SERVICE_START, SYSCALL, SOCKADDR, EOE].into_iter().enumerate() {
        r.push(rec(k, 4486226, i), t0 + Duration::from_micros(50 * i as u64), &mut out);
    }
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1, "{out:?}");
    assert_eq!(kinds(ev[0]), vec![SERVICE_START, SYSCALL, SOCKADDR, EOE]);
    assert!(!ev[0].incomplete && !ev[0].late);
    assert_eq!(ev[0].completion, Completion::EndOfEvent);
    assert_eq!((r.stats().standalone_joined, r.stats().late_events), (1, 0));
    // go-libaudit's ubuntu-16.10 serial 753: ANOM_PROMISCUOUS, SYSCALL, PROCTITLE, EOE.
    out.clear();
    for (i, k) in [ANOM_PROMISCUOUS, SYSCALL, PROCTITLE, EOE].into_iter().enumerate() {
        r.push(rec(k, 753, i), t0, &mut out);
    }
    assert_eq!(kinds(emitted(&out)[0]), vec![ANOM_PROMISCUOUS, SYSCALL, PROCTITLE, EOE]);
}

/// The latency the grace costs, with deterministic time: a standalone event that nothing joins is
/// emitted exactly `standalone_grace` (default 10 ms) after its record, not before; an event that
/// ends with EOE pays nothing (it completes on its EOE, as without a grace).
#[test]
fn the_grace_costs_standalone_events_exactly_its_length() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig::default();
    assert_eq!(cfg.standalone_grace, Duration::from_millis(10));
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(USER, 1, 0), t0, &mut out);
    assert_eq!(r.next_deadline(), Some(t0 + cfg.standalone_grace));
    r.tick(t0 + cfg.standalone_grace - Duration::from_nanos(1), &mut out);
    assert!(out.is_empty());
    r.tick(t0 + cfg.standalone_grace, &mut out);
    assert_eq!(emitted(&out).len(), 1);
    assert_eq!(emitted(&out)[0].completion, Completion::Standalone);
    assert!(!emitted(&out)[0].incomplete);
    assert_eq!(r.next_deadline(), None);
    // A syscall event: emitted on the EOE's push, at the EOE's time.
    out.clear();
    r.push(rec(SYSCALL, 2, 1), t0, &mut out);
    r.push(rec(EOE, 2, 2), t0, &mut out);
    assert_eq!(emitted(&out).len(), 1);
    // Zero disables the grace: emitted at once.
    let mut r = Reassembler::new(&ReassembleConfig { standalone_grace: Duration::ZERO, ..cfg });
    out.clear();
    r.push(rec(USER, 1, 0), t0, &mut out);
    assert_eq!(emitted(&out).len(), 1);
}

#[test]
fn graces_end_on_their_own_clock_whatever_else_is_open() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig::default();
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), t0, &mut out); // open for event_timeout
    r.push(rec(USER, 2, 1), t0, &mut out);
    r.push(rec(DAEMON_START, 3, 2), t0, &mut out); // auditd's own: never in the kernel's events
    assert_eq!(emitted(&out).iter().map(|e| e.id.serial).collect::<Vec<_>>(), vec![3]);
    out.clear();
    r.tick(t0 + cfg.standalone_grace, &mut out);
    assert_eq!(emitted(&out).iter().map(|e| e.id.serial).collect::<Vec<_>>(), vec![2]);
    assert_eq!(r.in_flight(), 1);
    assert_eq!(r.next_deadline(), Some(t0 + cfg.event_timeout));
}

#[test]
fn an_event_in_its_grace_is_whole_when_evicted_or_flushed() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig { max_in_flight: 1, ..Default::default() });
    let mut out = Vec::new();
    r.push(rec(USER, 1, 0), t0, &mut out);
    r.push(rec(USER, 2, 1), t0, &mut out);
    let ev = emitted(&out);
    assert_eq!((ev.len(), ev[0].id.serial, ev[0].completion, ev[0].incomplete), (1, 1, Completion::Standalone, false));
    out.clear();
    r.flush(&mut out);
    let ev = emitted(&out);
    assert_eq!((ev.len(), ev[0].id.serial, ev[0].completion, ev[0].incomplete), (1, 2, Completion::Standalone, false));
    assert_eq!(r.stats().completed_standalone, 2);
}

#[test]
fn a_record_of_an_open_event_joins_it_even_past_its_timeout() {
    // The record is in hand before the timer ran: it belongs to its event, not to a late one.
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), t0, &mut out);
    r.push(rec(PATH, 1, 1), t0 + Duration::from_secs(3), &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(kinds(ev[0]), vec![SYSCALL, PATH]);
    assert_eq!((ev[0].completion, ev[0].late), (Completion::Timeout, false));
}

#[test]
fn push_at_starts_an_event_at_its_own_later_stamp() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig::default();
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), t0, &mut out);
    // Stamped 7 s ahead of the clock: its timeout counts from there, and it does not hold back
    // the timeout of the event that started earlier.
    r.push_at(rec(SYSCALL, 2, 1), t0, t0 + Duration::from_secs(7), &mut out);
    assert_eq!(r.next_deadline(), Some(t0 + cfg.event_timeout));
    r.tick(t0 + Duration::from_secs(7), &mut out);
    assert_eq!(emitted(&out).iter().map(|e| e.id.serial).collect::<Vec<_>>(), vec![1]);
    out.clear();
    r.push_at(rec(EOE, 2, 2), t0 + Duration::from_secs(7), t0 + Duration::from_secs(7), &mut out);
    let ev = emitted(&out);
    assert_eq!((ev.len(), ev[0].completion, ev[0].records.len()), (1, Completion::EndOfEvent, 2));
    // A stamp behind the clock changes nothing: the timers start on arrival.
    out.clear();
    r.push_at(rec(SYSCALL, 3, 3), t0 + Duration::from_secs(8), t0, &mut out);
    assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(8) + cfg.event_timeout));
}

#[test]
fn due_timers_fire_in_deadline_order_before_the_event_a_record_ends() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig::default();
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), t0, &mut out);
    r.push(rec(USER, 2, 1), t0 + Duration::from_millis(1995), &mut out);
    r.push(rec(SYSCALL, 3, 2), t0 + Duration::from_millis(1996), &mut out);
    // At +3 s: event 1 (due at +2 s) and 2's grace (+2.005 s) are due; 3's EOE ends it.
    r.push(rec(EOE, 3, 3), t0 + Duration::from_secs(3), &mut out);
    let order: Vec<_> = emitted(&out).iter().map(|e| (e.id.serial, e.completion)).collect();
    assert_eq!(order, vec![(1, Completion::Timeout), (2, Completion::Standalone), (3, Completion::EndOfEvent)]);
}

#[test]
fn flush_reports_the_gaps_still_open() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    for s in [1, 2, 4, 5] {
        r.push(rec(SYSCALL, s, s as usize), t0, &mut out);
        r.push(rec(EOE, s, s as usize), t0, &mut out);
    }
    assert!(losses(&out).is_empty(), "within the reorder window and the gap timeout");
    r.flush(&mut out);
    assert_eq!(losses(&out), vec![LossNotice::SerialGap { first: 3, last: 3, count: 1 }]);
    assert_eq!((r.stats().serial_gaps, r.stats().missing_serials), (1, 1));
}

#[test]
fn interleaved_events_complete_in_completion_order() {
    let now = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 10, 0), now, &mut out);
    r.push(rec(SYSCALL, 11, 1), now, &mut out);
    r.push(rec(EOE, 11, 2), now, &mut out);
    r.push(rec(PATH, 10, 3), now, &mut out);
    r.push(rec(EOE, 10, 4), now, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.iter().map(|e| e.id.serial).collect::<Vec<_>>(), vec![11, 10]);
    assert_eq!(kinds(ev[1]), vec![SYSCALL, PATH, EOE]);
}

#[test]
fn timeout_is_driven_by_time_not_by_other_records() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig { event_timeout: Duration::from_secs(2), ..Default::default() };
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), t0, &mut out);
    assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(2)));
    r.tick(t0 + Duration::from_millis(1999), &mut out);
    assert!(out.is_empty());
    r.tick(t0 + Duration::from_secs(2), &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].incomplete);
    assert_eq!(ev[0].completion, Completion::Timeout);
    assert_eq!(r.next_deadline(), None);
    assert_eq!(r.stats().timed_out, 1);
}

#[test]
fn records_after_emission_are_a_late_event_never_merged() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 5, 0), t0, &mut out);
    r.tick(t0 + Duration::from_secs(3), &mut out);
    assert_eq!(emitted(&out).len(), 1);
    out.clear();
    let t1 = t0 + Duration::from_secs(3);
    r.push(rec(PATH, 5, 1), t1, &mut out);
    r.push(rec(SYSCALL, 6, 2), t1, &mut out);
    r.push(rec(PROCTITLE, 5, 3), t1, &mut out);
    r.push(rec(EOE, 5, 4), t1, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].late && !ev[0].incomplete);
    assert_eq!(kinds(ev[0]), vec![PATH, PROCTITLE, EOE]);
    assert_eq!(r.stats().late_records, 3);
    // A late EOE alone is still emitted, as its own late event.
    out.clear();
    r.push(rec(EOE, 5, 5), t1, &mut out);
    assert!(emitted(&out)[0].late);
}

#[test]
fn max_in_flight_evicts_the_oldest_as_incomplete() {
    let now = Instant::now();
    let cfg = ReassembleConfig { max_in_flight: 2, ..Default::default() };
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    r.push(rec(SYSCALL, 1, 0), now, &mut out);
    r.push(rec(SYSCALL, 2, 1), now, &mut out);
    r.push(rec(PATH, 1, 2), now, &mut out); // touches 1, but age is by first record
    assert!(out.is_empty());
    r.push(rec(SYSCALL, 3, 3), now, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].id.serial, 1);
    assert_eq!(ev[0].completion, Completion::Evicted);
    assert!(ev[0].incomplete);
    assert_eq!(r.in_flight(), 2);
}

#[test]
fn oversized_events_are_cut() {
    let now = Instant::now();
    let cfg = ReassembleConfig { max_records_per_event: 3, ..Default::default() };
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    for i in 0..4 {
        r.push(rec(PATH, 1, i), now, &mut out);
    }
    r.push(rec(EOE, 1, 4), now, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 2);
    assert_eq!((ev[0].records.len(), ev[0].incomplete, ev[0].late), (3, true, false));
    assert_eq!((ev[1].records.len(), ev[1].incomplete, ev[1].late), (2, false, true));
}

#[test]
fn flush_emits_everything_oldest_first() {
    let now = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    for s in [3, 1, 2] {
        r.push(rec(SYSCALL, s, s as usize), now, &mut out);
    }
    r.flush(&mut out);
    let ev = emitted(&out);
    assert_eq!(ev.iter().map(|e| e.id.serial).collect::<Vec<_>>(), vec![3, 1, 2]);
    assert!(ev.iter().all(|e| e.incomplete && e.completion == Completion::Flushed));
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn serial_gaps_are_reported_in_band_across_the_wrap() {
    let t0 = Instant::now();
    let cfg = ReassembleConfig {
        reorder_window: 8,
        gap_timeout: Duration::from_secs(5),
        standalone_grace: Duration::ZERO,
        ..Default::default()
    };
    let mut r = Reassembler::new(&cfg);
    let mut out = Vec::new();
    // u32::MAX - 1, then u32::MAX and 0 are lost, then 1.
    r.push(rec(USER, u32::MAX - 1, 0), t0, &mut out);
    r.push(rec(USER, 1, 1), t0, &mut out);
    assert!(losses(&out).is_empty());
    assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(5)));
    r.tick(t0 + Duration::from_secs(5), &mut out);
    assert_eq!(losses(&out), vec![LossNotice::SerialGap { first: u32::MAX, last: 0, count: 2 }]);
    assert_eq!(r.stats().missing_serials, 2);
    // Duplicates and late serials never count as loss.
    out.clear();
    r.push(rec(USER, 1, 2), t0 + Duration::from_secs(6), &mut out);
    r.push(rec(USER, u32::MAX, 3), t0 + Duration::from_secs(6), &mut out);
    r.tick(t0 + Duration::from_secs(60), &mut out);
    assert!(losses(&out).is_empty());
    assert_eq!(r.stats().missing_serials, 2);
}

#[test]
fn auditd_daemon_records_do_not_disturb_gap_detection() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig { reorder_window: 8, ..Default::default() });
    let mut out = Vec::new();
    r.push(rec(USER, 100, 0), t0, &mut out);
    r.push(rec(1200, 5_000, 1), t0, &mut out); // DAEMON_START, auditd's own serial
    r.push(rec(1203, 120, 2), t0, &mut out); // DAEMON_CONFIG
    r.push(rec(USER, 101, 3), t0, &mut out);
    r.tick(t0 + Duration::from_secs(3600), &mut out);
    assert!(losses(&out).is_empty(), "{:?}", losses(&out));
    assert_eq!(r.stats().serial_restarts, 0);
    assert_eq!(emitted(&out).len(), 4);
}

#[test]
fn nodes_do_not_merge() {
    let now = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut out = Vec::new();
    let line_a = b"node=a type=SYSCALL msg=audit(1.000:1): x=1";
    let line_b = b"node=b type=SYSCALL msg=audit(1.000:1): x=2";
    r.push(crate::record::parse_log_line(line_a).unwrap(), now, &mut out);
    r.push(crate::record::parse_log_line(line_b).unwrap(), now, &mut out);
    r.push(crate::record::parse_log_line(b"node=b type=EOE msg=audit(1.000:1): ").unwrap(), now, &mut out);
    let ev = emitted(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].node.as_deref(), Some(&b"b"[..]));
    assert_eq!(ev[0].records.len(), 2);
    assert_eq!(r.in_flight(), 1);
}

// ---- properties ----

/// An event: its serial and record kinds, the last one ending it.
fn arb_events() -> impl Strategy<Value = Vec<Vec<u16>>> {
    let body = prop::sample::select(vec![SYSCALL, PATH, CWD, PROCTITLE, LOGIN]);
    let multi = prop::collection::vec(body.clone(), 0..5).prop_map(|mut v| {
        v.push(EOE);
        v
    });
    let single = Just(vec![USER]);
    // A standalone type logged inside an audited syscall: the syscall's records follow it.
    let joined = (prop::sample::select(vec![USER, SERVICE_START, ANOM_PROMISCUOUS]), prop::collection::vec(body, 0..3))
        .prop_map(|(first, rest)| [vec![first, SYSCALL], rest, vec![EOE]].concat());
    prop::collection::vec(prop_oneof![4 => multi, 1 => single, 1 => joined], 1..40)
}

/// Records of `events` (serial = base + index) in the order given by `schedule`, which lists
/// event indices, each as many times as it has records.
fn interleave(events: &[Vec<u16>], schedule: &[usize], base: u32) -> Vec<Record> {
    let mut cursor = vec![0usize; events.len()];
    let mut tagn = 0;
    schedule
        .iter()
        .map(|&e| {
            let kind = events[e][cursor[e]];
            cursor[e] += 1;
            tagn += 1;
            rec(kind, base.wrapping_add(e as u32), tagn)
        })
        .collect()
}

/// `events` one after the other, then shuffled by Fisher–Yates with a tiny LCG seeded by `seed`,
/// moving one position in `one_in` (1: an arbitrary permutation).
fn permuted(events: &[Vec<u16>], base: u32, seed: u64, one_in: u64) -> Vec<Record> {
    let schedule: Vec<usize> = events.iter().enumerate().flat_map(|(i, e)| std::iter::repeat_n(i, e.len())).collect();
    let mut records = interleave(events, &schedule, base);
    let mut x = seed | 1;
    for i in (1..records.len()).rev() {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if (x >> 33).is_multiple_of(one_in) {
            records.swap(i, (x >> 33) as usize % (i + 1));
        }
    }
    records
}

fn arb_interleaving() -> impl Strategy<Value = (Vec<Vec<u16>>, Vec<usize>, u32)> {
    arb_events().prop_flat_map(|events| {
        let schedule: Vec<usize> =
            events.iter().enumerate().flat_map(|(i, e)| std::iter::repeat_n(i, e.len())).collect();
        (Just(events), Just(schedule).prop_shuffle(), any::<u32>())
    })
}

proptest! {
    /// Any interleaving that keeps each event's own records in order groups exactly by EventId.
    #[test]
    fn grouping_equals_grouping_by_event_id((events, schedule, base) in arb_interleaving()) {
        let now = Instant::now();
        let mut r = Reassembler::new(&ReassembleConfig::default());
        let mut out = Vec::new();
        let records = interleave(&events, &schedule, base);
        let mut expected: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for rec in &records {
            expected.entry(rec.id.serial).or_default().push(tag(rec));
        }
        for rec in records {
            r.push(rec, now, &mut out);
        }
        r.tick(now + ReassembleConfig::default().standalone_grace, &mut out);
        prop_assert_eq!(r.in_flight(), 0, "every event ended by its end record or its grace");
        r.flush(&mut out);
        prop_assert!(losses(&out).is_empty(), "no gaps: all serials present");
        let got = emitted(&out);
        prop_assert_eq!(got.len(), events.len());
        let mut grouped: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for e in &got {
            prop_assert!(!e.incomplete && !e.late);
            prop_assert!(e.records.iter().all(|rec| rec.id == e.id));
            prop_assert!(grouped.insert(e.id.serial, e.records.iter().map(tag).collect()).is_none());
        }
        prop_assert_eq!(grouped, expected);
    }

    /// Any permutation, any bounds, any clock: no record lost or duplicated, each in an event of its
    /// own EventId, and the output is a function of the input.
    #[test]
    fn no_record_lost_or_duplicated(
        (events, _schedule, base) in arb_interleaving(),
        seed in any::<u64>(),
        max_in_flight in 1usize..8,
        max_records in 1usize..6,
        steps in prop::collection::vec(0u64..1500, 1..200),
    ) {
        // An arbitrary permutation, even across an event's own order.
        let records = permuted(&events, base, seed, 1);
        let cfg = ReassembleConfig {
            max_in_flight,
            max_records_per_event: max_records,
            // Wider than any displacement here, and a gap timeout longer than the run: within the
            // window nothing may be reported lost.
            reorder_window: 64,
            gap_timeout: Duration::from_secs(3600),
            ..Default::default()
        };
        let run = |records: Vec<Record>| {
            let t0 = Instant::now();
            let mut r = Reassembler::new(&cfg);
            let mut out = Vec::new();
            let mut t = t0;
            for (i, rec) in records.into_iter().enumerate() {
                t += Duration::from_millis(steps[i % steps.len()]);
                r.push(rec, t, &mut out);
            }
            r.flush(&mut out);
            let shape: Vec<(u32, Vec<usize>, bool, bool)> = emitted(&out)
                .iter()
                .map(|e| (e.id.serial, e.records.iter().map(tag).collect(), e.incomplete, e.late))
                .collect();
            (out, shape)
        };
        let (out, shape) = run(records.clone());
        let mut seen: Vec<usize> = Vec::new();
        for e in emitted(&out) {
            prop_assert!(!e.records.is_empty());
            prop_assert!(e.records.len() <= max_records);
            prop_assert!(e.records.iter().all(|rec| rec.id == e.id));
            seen.extend(e.records.iter().map(tag));
        }
        seen.sort_unstable();
        let mut want: Vec<usize> = records.iter().map(tag).collect();
        want.sort_unstable();
        prop_assert_eq!(seen, want);
        // No serial is missing, so no loss may be reported, whatever the order.
        prop_assert!(losses(&out).is_empty());
        // Deterministic: another run (another hash seed) gives the same output.
        let (_, again) = run(records);
        prop_assert_eq!(shape, again);
    }

    /// Skipping the tick while nothing is due changes nothing: the same outputs, in the same
    /// order, as ticking in full at every record, whatever the order, clock, bounds and holes.
    #[test]
    fn the_due_bound_never_delays_or_reorders_output(
        (events, _schedule, base) in arb_interleaving(),
        seed in any::<u64>(),
        drop_every in 0usize..6,
        max_in_flight in 1usize..8,
        steps in prop::collection::vec(0u64..400, 1..200),
        timeouts in (1u64..800, 0u64..300, 1u64..900),
    ) {
        // Mostly in order, a quarter of the records moved.
        let mut records = permuted(&events, base, seed, 4);
        if drop_every > 0 {
            // Whole serials missing: gap timers start and fire.
            records.retain(|r| r.id.serial % (drop_every as u32 + 2) != 1);
        }
        let cfg = ReassembleConfig {
            max_in_flight,
            event_timeout: Duration::from_millis(timeouts.0),
            standalone_grace: Duration::from_millis(timeouts.1),
            gap_timeout: Duration::from_millis(timeouts.2),
            reorder_window: 4,
            ..Default::default()
        };
        let run = |full: bool| {
            let mut r = Reassembler::new(&cfg);
            let mut out = Vec::new();
            let mut t = Instant::now();
            for (i, rec) in records.iter().enumerate() {
                t += Duration::from_millis(steps[i % steps.len()]);
                if full {
                    r.forget_due();
                }
                r.push(rec.clone(), t, &mut out);
                if i % 3 == 0 {
                    if full {
                        r.forget_due();
                    }
                    r.tick(t + Duration::from_millis(steps[(i + 1) % steps.len()] / 2), &mut out);
                }
            }
            r.flush(&mut out);
            format!("{out:?}")
        };
        prop_assert_eq!(run(false), run(true));
    }

    /// Removed serials (and only those) are reported missing, across the u32 wrap, with local
    /// reordering and duplicates.
    #[test]
    fn gaps_are_exactly_the_missing_serials(
        base in prop_oneof![Just(u32::MAX - 50), any::<u32>()],
        keep in prop::collection::vec(prop::bool::weighted(0.8), 2..150),
        swaps in prop::collection::vec(any::<bool>(), 150),
        dups in prop::collection::vec(prop::bool::weighted(0.1), 150),
    ) {
        let n = keep.len();
        let mut keep = keep;
        keep[0] = true;
        keep[n - 1] = true;
        let mut serials: Vec<u32> = (0..n).filter(|&i| keep[i]).map(|i| base.wrapping_add(i as u32)).collect();
        for (i, &swap) in swaps.iter().enumerate().take(serials.len().saturating_sub(1)) {
            if swap && i % 2 == 0 && i > 0 {
                serials.swap(i, i + 1);
            }
        }
        let t0 = Instant::now();
        let cfg = ReassembleConfig { reorder_window: 64, ..Default::default() };
        let mut r = Reassembler::new(&cfg);
        let mut out = Vec::new();
        for (i, &s) in serials.iter().enumerate() {
            r.push(rec(USER, s, i), t0, &mut out);
            if dups[i] {
                r.push(rec(USER, s, 1000 + i), t0, &mut out);
            }
        }
        r.tick(t0 + Duration::from_secs(3600), &mut out);
        let mut reported = Vec::new();
        for l in losses(&out) {
            let LossNotice::SerialGap { first, last, count } = l else { panic!("{l:?}") };
            let run: Vec<u32> = (0..count).map(|k| first.wrapping_add(k as u32)).collect();
            prop_assert_eq!(run.last().copied(), Some(last));
            reported.extend(run);
        }
        let missing: Vec<u32> = (0..n).filter(|&i| !keep[i]).map(|i| base.wrapping_add(i as u32)).collect();
        reported.sort_unstable();
        let mut missing_sorted = missing.clone();
        missing_sorted.sort_unstable();
        prop_assert_eq!(reported, missing_sorted);
    }
}

#[test]
fn message_type_constants_used_here_are_right() {
    assert_eq!(MessageType(EOE), MessageType::EOE);
    assert_eq!(MessageType(PROCTITLE), MessageType::PROCTITLE);
    assert_eq!(MessageType(SERVICE_START), MessageType::SERVICE_START);
    assert_eq!(MessageType(SOCKADDR), MessageType::SOCKADDR);
    assert_eq!(MessageType(ANOM_PROMISCUOUS), MessageType::ANOM_PROMISCUOUS);
    assert_eq!(MessageType(DAEMON_START), MessageType::DAEMON_START);
}

#[test]
fn recent_keys_are_exact_and_fifo_when_serials_repeat() {
    // The serial-ordered hash puts keys sharing a serial (nodes, a reboot) in one probe run:
    // membership must stay exact and eviction first in, first out.
    let key = |seconds: u64, serial: u32, node: u32| Key { id: EventId { seconds, millis: 5, serial }, node };
    let mut recent = RecentKeys::new(4);
    for node in 0..4 {
        recent.insert(key(100, 7, node));
    }
    assert!((0..4).all(|node| recent.contains(&key(100, 7, node))));
    assert!(!recent.contains(&key(101, 7, 0)), "same serial, other time");
    assert!(!recent.contains(&key(100, 8, 0)));
    recent.insert(key(100, 7, 0)); // already there: no second entry
    recent.insert(key(101, 7, 0));
    assert!(!recent.contains(&key(100, 7, 0)), "the oldest went first");
    assert!(recent.contains(&key(100, 7, 1)) && recent.contains(&key(101, 7, 0)));
}
