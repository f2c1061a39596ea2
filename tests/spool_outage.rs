//! The receiver is down (a file output whose directory does not exist yet) while real exec-storm
//! events fill a small, compressed spool; then it comes back. For each `on_full` policy: the bound
//! holds, the counts are exact, and what arrives plus what the in-band `spool_dropped` notices
//! announce is exactly what was submitted, in order.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::output::file::FileConfig;
use auditrelay::output::{OutputConfig, ShipStats, Shipper};
use auditrelay::spool::{OnFull, SpoolConfig};

mod common;
use common::TempDir;

const EXEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/storm-exec.jsonl.zst");
/// Events per commit: the processing loop's batch at 2 k events/s.
const BATCH: usize = 20;
/// Submitted while the receiver is down: about 10 MB of JSON, many times the spool.
const EVENTS: usize = 6000;

/// The storm's events, made unique per submission (the id and the body's `"id"` carry `#n`), so
/// that what arrives can be matched to what was submitted.
fn events() -> Vec<(String, Vec<u8>)> {
    let text = zstd::stream::decode_all(&std::fs::read(EXEC).unwrap()[..]).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    (0..EVENTS)
        .map(|n| {
            let line = std::str::from_utf8(lines[n % lines.len()]).unwrap();
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = format!("{}#{n}", v["id"].as_str().unwrap());
            (id.clone(), line.replacen(v["id"].as_str().unwrap(), &id, 1).into_bytes())
        })
        .collect()
}

fn spool_cfg(dir: &Path, on_full: OnFull) -> SpoolConfig {
    SpoolConfig {
        dir: dir.join("spool"),
        // Compressed, 6000 exec events take ~1 MB: four times this.
        max_bytes: 256 << 10,
        segment_bytes: 64 << 10,
        max_record_bytes: 32 << 10,
        on_full,
        fsync_interval: Duration::from_millis(50),
        cursor_interval: Duration::from_millis(20),
        ..SpoolConfig::default()
    }
}

fn output(recv: &Path) -> OutputConfig {
    OutputConfig::File(FileConfig {
        name: Some("siem".into()),
        path: recv.join("events.jsonl"),
        max_size: 0,
        ..FileConfig::default()
    })
}

fn submit(s: &mut Shipper, evs: &[(String, Vec<u8>)]) {
    for chunk in evs.chunks(BATCH) {
        for (id, body) in chunk {
            s.submit(1_796_127_944_524, id, body).unwrap();
        }
        s.flush().unwrap();
    }
}

fn wait_acked(s: &Shipper, what: &str) -> ShipStats {
    let t0 = Instant::now();
    loop {
        let st = s.stats();
        if st.outputs[0].acked >= st.last_pos {
            // Let the sync thread persist the cursor and delete what it freed.
            std::thread::sleep(Duration::from_millis(200));
            return s.stats();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: not delivered: {st:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the receiver got: storm events (their submission numbers) and loss notices.
struct Received {
    events: Vec<usize>,
    notices: Vec<serde_json::Value>,
}

fn received(recv: &Path) -> Received {
    let text = std::fs::read_to_string(recv.join("events.jsonl")).unwrap();
    let mut r = Received { events: Vec::new(), notices: Vec::new() };
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(loss) = v.get("loss") {
            r.notices.push(loss.clone());
        } else {
            let id = v["id"].as_str().unwrap();
            r.events.push(id.rsplit_once('#').unwrap().1.parse().unwrap());
        }
    }
    r
}

/// The notices that arrived account for every event that did not: the last one's `total` is every
/// drop, and what is missing (storm events, and notices that were themselves dropped under
/// drop_oldest, whose counts later notices' `total` still includes) is exactly that.
fn check_notices(r: &Received, policy: &str, st: &ShipStats, dropped: u64) {
    assert!(!r.notices.is_empty(), "no spool_dropped notice");
    for n in &r.notices {
        assert_eq!(
            (n["kind"].as_str(), n["reason"].as_str(), n["policy"].as_str()),
            (Some("spool_dropped"), Some("full"), Some(policy)),
            "{n}"
        );
        assert!(n["count"].as_u64().unwrap() > 0);
    }
    assert_eq!(r.notices.last().unwrap()["total"].as_u64(), Some(dropped));
    let missing_events = (EVENTS - r.events.iter().filter(|&&n| n < EVENTS).count()) as u64;
    let missing_notices = st.loss_notices - r.notices.len() as u64;
    assert_eq!(missing_events + missing_notices, dropped, "{st:?}");
}

#[test]
fn drop_oldest_with_the_receiver_down_keeps_the_newest_and_announces_the_rest() {
    let d = TempDir::new("outage-oldest");
    let recv = d.path("recv");
    let cfg = spool_cfg(&d.0, OnFull::DropOldest);
    let mut s = Shipper::start(&cfg, &[output(&recv)]).unwrap();
    let evs = events();
    submit(&mut s, &evs);
    let st = s.stats();
    assert!(st.spool_bytes <= cfg.max_bytes, "{st:?}");
    assert!(st.dropped_oldest > 0 && st.dropped_newest == 0, "the spool must have filled: {st:?}");
    assert!(st.spool.events > 0 && st.spool.events < EVENTS as u64, "{:?}", st.spool);
    assert_eq!(st.spool.unacked_events, st.spool.events);
    assert!(st.spool.oldest_unacked_age.is_some());

    std::fs::create_dir(&recv).unwrap();
    let st = wait_acked(&s, "drop_oldest");
    s.shutdown(Duration::from_secs(10)).unwrap();
    let r = received(&recv);
    // What arrives is the newest events, in order and without a gap after the last drop.
    assert!(r.events.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(*r.events.last().unwrap(), EVENTS - 1);
    check_notices(&r, "drop_oldest", &st, st.dropped_oldest);
}

#[test]
fn drop_newest_with_the_receiver_down_keeps_the_oldest_and_announces_the_rest() {
    let d = TempDir::new("outage-newest");
    let recv = d.path("recv");
    let cfg = spool_cfg(&d.0, OnFull::DropNewest);
    let mut s = Shipper::start(&cfg, &[output(&recv)]).unwrap();
    let evs = events();
    submit(&mut s, &evs);
    let st = s.stats();
    assert!(st.spool_bytes <= cfg.max_bytes, "{st:?}");
    assert!(st.dropped_newest > 0 && st.dropped_oldest == 0, "the spool must have filled: {st:?}");
    assert_eq!(st.appended + st.dropped_newest, EVENTS as u64);

    std::fs::create_dir(&recv).unwrap();
    wait_acked(&s, "drop_newest");
    // Space is back: the next event is preceded by the notice of what was refused.
    let (id, body) = (format!("{}#{EVENTS}", "after"), br#"{"id":"after#6000","after":true}"#.to_vec());
    s.submit(1, &id, &body).unwrap();
    s.flush().unwrap();
    let st = wait_acked(&s, "drop_newest, after");
    s.shutdown(Duration::from_secs(10)).unwrap();
    let r = received(&recv);
    // Everything accepted arrives, in order, then the new one. Accepted is the oldest events, and
    // after the spool first filled, a few later ones that still fitted where a larger one did not
    // (staged bytes count uncompressed until their frame is written) — each gap announced.
    let kept = (EVENTS as u64 - st.dropped_newest) as usize;
    assert_eq!(r.events.len(), kept + 1, "accepted events and the new one");
    assert!(r.events.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(r.events.last(), Some(&EVENTS));
    let first_gap = r.events.iter().enumerate().find(|(i, &n)| *i != n).map_or(kept, |(i, _)| i);
    assert!(first_gap > kept / 2, "the oldest events are kept: first gap at {first_gap} of {kept}");
    check_notices(&r, "drop_newest", &st, st.dropped_newest);
}

#[test]
fn block_with_the_receiver_down_waits_and_loses_nothing() {
    let d = TempDir::new("outage-block");
    let recv = d.path("recv");
    let cfg = spool_cfg(&d.0, OnFull::Block);
    let s = Shipper::start(&cfg, &[output(&recv)]).unwrap();
    let evs = events();
    let submitter = std::thread::spawn(move || {
        let mut s = s;
        submit(&mut s, &evs);
        s
    });
    // The submitter blocks on the full spool; the receiver comes back after a while.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!submitter.is_finished(), "6000 events cannot fit: the submitter must be blocked");
    std::fs::create_dir(&recv).unwrap();
    let s = submitter.join().unwrap();
    let st = wait_acked(&s, "block");
    s.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((st.dropped_oldest, st.dropped_newest, st.loss_notices), (0, 0, 0), "{st:?}");
    let r = received(&recv);
    assert!(r.events.iter().copied().eq(0..EVENTS), "every event, in order ({} received)", r.events.len());
    assert!(r.notices.is_empty());
}
