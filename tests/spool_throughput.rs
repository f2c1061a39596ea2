//! Throughput and memory of the spool path, printed for the record (run with
//! `cargo test --release --test spool_throughput -- --ignored --nocapture`). Asserts only the
//! memory bound: resident memory must not grow with the backlog while the receiver is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::output::file::FileConfig;
use auditrelay::output::{OutputConfig, Shipper};
use auditrelay::spool::{OnFull, SpoolConfig};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.join("spool"),
        max_bytes: 2 << 30,
        segment_bytes: 32 << 20,
        max_record_bytes: 1 << 20,
        on_full: OnFull::DropOldest,
        fsync_interval: Duration::from_secs(1),
        fsync_every: 0,
        cursor_interval: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(5),
        ..SpoolConfig::default()
    }
}

#[test]
#[ignore = "measurement; run explicitly"]
fn spool_throughput_and_memory() {
    let dir = std::env::temp_dir().join(format!("auditrelay-throughput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let body = format!("{{\"type\":\"SYSCALL\",\"pad\":\"{}\"}}", "x".repeat(450));
    let n = 400_000u64;
    let recv = dir.join("recv");
    let outs = vec![OutputConfig::File(FileConfig {
        name: Some("f".into()),
        path: recv.join("e.jsonl"),
        max_size: 0,
        ..FileConfig::default()
    })];

    // Receiver down (the output's directory is missing): everything piles up in the spool.
    let mut s = Shipper::start(&cfg(&dir), &outs).unwrap();
    let rss0 = rss_kib();
    let t = Instant::now();
    for i in 0..n {
        s.submit(i, &format!("boot-1700000000.{i}"), body.as_bytes()).unwrap();
        // The daemon flushes once per loop iteration, i.e. per batch of events.
        if i % 64 == 63 {
            s.flush().unwrap();
        }
    }
    s.flush().unwrap();
    let dt = t.elapsed();
    let rss1 = rss_kib();
    let st = s.stats();
    eprintln!(
        "submit, receiver down: {n} events of {} B in {dt:?} = {:.0} events/s; spool {} MiB; RSS {} → {} KiB",
        body.len(),
        n as f64 / dt.as_secs_f64(),
        st.spool_bytes >> 20,
        rss0,
        rss1
    );
    assert!(rss1 < rss0 + 32 * 1024, "RSS grew by {} KiB with the backlog", rss1 - rss0);
    s.shutdown(Duration::from_millis(100)).unwrap();

    // Receiver back: drain the backlog.
    std::fs::create_dir_all(&recv).unwrap();
    let t = Instant::now();
    let s = Shipper::start(&cfg(&dir), &outs).unwrap();
    let st = s.shutdown(Duration::from_secs(120)).unwrap();
    let dt = t.elapsed();
    assert_eq!(st.outputs[0].acked, st.last_pos);
    eprintln!(
        "drain to a file sink (fdatasync per batch of 512): {n} events in {dt:?} = {:.0} events/s",
        n as f64 / dt.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
