//! `cargo bench --bench pipeline`: parse + reassemble + JSON over the real corpus, in records/s.
//!
//! No framework: each stage runs over the corpus repeatedly for about a second and prints its
//! throughput per CPU-second (the thread's CPU clock, robust on a shared machine) and per wall second; the figure for `pipeline` is the baseline for later performance work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use auditrelay::format::JsonWriter;
use auditrelay::reassemble::{ReassembleConfig, Reassembler};
use auditrelay::record::{parse_log_line, Record};
use auditrelay::replay::replay_with;

const AUDIT_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log");
const BUDGET: Duration = Duration::from_millis(1500);

/// This thread's CPU time: on a shared machine wall time measures the neighbours too.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Run `pass` (which handles the whole corpus and returns its record count) until the budget is
/// spent; print records per wall second and per CPU second, return the latter.
fn measure(name: &str, mut pass: impl FnMut() -> usize) -> f64 {
    pass(); // warm-up
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut records = 0usize;
    let mut passes = 0;
    while start.elapsed() < BUDGET {
        records += pass();
        passes += 1;
    }
    let wall = records as f64 / start.elapsed().as_secs_f64();
    let cpu = records as f64 / (thread_cpu_time() - cpu_start).as_secs_f64();
    println!("{name:<26} {cpu:>10.0} records/CPU-s {wall:>10.0} records/wall-s  ({passes} passes)");
    cpu
}

fn main() {
    let text = std::fs::read(AUDIT_LOG).unwrap_or_else(|e| panic!("{AUDIT_LOG}: {e}"));
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let records: Vec<Record> = lines.iter().map(|l| parse_log_line(l).unwrap()).collect();
    let cfg = ReassembleConfig::default();
    println!("corpus: {} records, {} bytes", records.len(), text.len());

    measure("parse", || {
        for l in &lines {
            black_box(parse_log_line(l).ok());
        }
        lines.len()
    });

    measure("reassemble (pre-parsed)", || {
        let now = Instant::now();
        let mut r = Reassembler::new(&cfg);
        let mut out = Vec::new();
        for rec in &records {
            r.push(rec.clone(), now, &mut out);
            out.clear();
        }
        r.flush(&mut out);
        black_box(&out);
        records.len()
    });

    let now = Instant::now();
    let mut r = Reassembler::new(&cfg);
    let mut outputs = Vec::new();
    for rec in &records {
        r.push(rec.clone(), now, &mut outputs);
    }
    r.flush(&mut outputs);
    let mut writer = JsonWriter::new(Some("0f6c6b0e-8e8a-4a47-9d0b-2f7d1f0e5a31".into()));
    measure("json (pre-reassembled)", || {
        let mut bytes = 0;
        for o in &outputs {
            bytes += writer.write(o).len();
        }
        black_box(bytes);
        records.len()
    });

    let mut writer = JsonWriter::new(None);
    let rate = measure("pipeline (replay)", || {
        let mut sink = std::io::sink();
        let stats = replay_with(&text[..], &cfg, &mut writer, &mut sink, |e| panic!("{e}")).unwrap();
        stats.records as usize
    });
    println!("baseline: {rate:.0} records per CPU-second, parse + reassemble + JSON, one thread");
}
