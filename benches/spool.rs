//! `cargo bench --bench spool`: the disk spool on real events.
//!
//! Event sets (all as `auditrelay run` spools them, unedited):
//! - `openat`: 2,000 consecutive events of the live benchmark's openat storm
//!   (tests/data/storm-openat.jsonl.zst, made by benches/capture_storms.py),
//! - `exec`: 2,000 of its exec storm (tests/data/storm-exec.jsonl.zst),
//! - `corpus`: the 499 events of the committed kernel corpus (tests/data/sample-audit.golden.jsonl).
//!
//! Printed, in this order:
//! 1. per codec (none, lz4, zstd 1-3) and event set, at the frame size the daemon writes during
//!    that storm (one frame per processing-loop commit: events of one 10 ms reader gather) and at
//!    one event per frame (an idle host): bytes on disk per event / its JSON bytes, compression
//!    and decompression CPU, and CPU per byte saved (the figure the default is picked by);
//! 2. append (stage + commit) + read + ack through a real spool in a temp dir, events per
//!    CPU-second, for each codec in the same run (`none` = the v1 cost: same bytes, plus a frame
//!    header);
//! 3. the outage line: 3,000,000 exec-storm events (10 minutes at 5 k events/s, frames of 50: 10 ms
//!    at 5 k/s) appended to a spool with the default `[spool]` (max_bytes 1 GiB) and no output
//!    acknowledging: must fit without a drop. `SPOOL_BENCH_OUTAGE=0` skips it (it takes a minute).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use auditrelay::spool::frame::{self, Decoder, Encoder, Header};
use auditrelay::spool::{Appended, Compression, Spool, SpoolConfig};

#[path = "measure.rs"]
mod measure;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
const BUDGET: Duration = Duration::from_millis(1500);

struct Set {
    name: &'static str,
    events: Vec<(String, Vec<u8>)>,
    /// Events per commit during the storm: its rate x the reader's 10 ms gather.
    frame: usize,
}

fn load(name: &'static str, file: &str, frame: usize) -> Set {
    let path = format!("{DATA}{file}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = if file.ends_with(".zst") { zstd::stream::decode_all(&bytes[..]).unwrap() } else { bytes };
    let events = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            let id = v["id"].as_str().map_or_else(|| format!("corpus:{}:{i}", v["timestamp"]), str::to_string);
            (id, l.to_vec())
        })
        .collect();
    Set { name, events, frame }
}

fn json_bytes(s: &Set) -> usize {
    s.events.iter().map(|(_, b)| b.len()).sum()
}

/// The events of `s` as frames of `per` events with `codec`; returns the frames' bytes.
fn frames(s: &Set, per: usize, enc: &mut Encoder, out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut raw = Vec::new();
    let mut pos = 1u64;
    for chunk in s.events.chunks(per) {
        raw.clear();
        for (id, body) in chunk {
            frame::push_inner(&mut raw, 0, id, body);
        }
        enc.encode(out, pos, chunk.len() as u32, &raw);
        pos += chunk.len() as u64;
    }
    out.len()
}

fn decode_frames(bytes: &[u8], dec: &mut Decoder) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let h = Header::parse(&bytes[at..], 8 << 20).unwrap();
        dec.decode(&h, &bytes[at..]).unwrap();
        n += h.count as usize;
        at += h.total_len();
    }
    n
}

fn cpu_of(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let cpu0 = measure::thread_cpu_time();
    let mut passes = 0;
    while start.elapsed() < Duration::from_millis(400) || passes < 3 {
        f();
        passes += 1;
    }
    (measure::thread_cpu_time() - cpu0).as_secs_f64() / f64::from(passes)
}

fn codecs() -> Vec<(&'static str, Compression, i32)> {
    vec![
        ("none", Compression::None, 0),
        ("lz4", Compression::Lz4, 0),
        ("zstd-1", Compression::Zstd, 1),
        ("zstd-2", Compression::Zstd, 2),
        ("zstd-3", Compression::Zstd, 3),
    ]
}

fn main() {
    let sets = [
        load("openat", "storm-openat.jsonl.zst", 200),
        load("exec", "storm-exec.jsonl.zst", 20),
        load("corpus", "sample-audit.golden.jsonl", 20),
    ];
    for s in &sets {
        println!(
            "{}: {} events, {:.0} bytes of JSON per event",
            s.name,
            s.events.len(),
            json_bytes(s) as f64 / s.events.len() as f64
        );
    }

    println!("\n## 1. codecs (disk/JSON = bytes on disk per event / JSON bytes; CPU per event; ns CPU per byte saved)");
    println!(
        "{:<7} {:<7} {:>6} {:>9} {:>10} {:>10} {:>12}",
        "set", "codec", "frame", "disk/JSON", "comp µs/ev", "dec µs/ev", "ns/byte saved"
    );
    let mut buf = Vec::new();
    for s in &sets {
        let json = json_bytes(s) as f64;
        let n = s.events.len() as f64;
        for per in [s.frame, 1] {
            for (name, codec, level) in codecs() {
                let mut enc = Encoder::new(codec, level);
                let disk = frames(s, per, &mut enc, &mut buf);
                let comp = cpu_of(|| {
                    black_box(frames(s, per, &mut enc, &mut buf));
                });
                let mut dec = Decoder::default();
                let decomp = cpu_of(|| {
                    assert_eq!(decode_frames(&buf, &mut dec), s.events.len());
                });
                let saved = json - disk as f64;
                let per_saved = if saved > 0.0 { format!("{:.2}", comp * 1e9 / saved) } else { "-".into() };
                println!(
                    "{:<7} {:<7} {:>6} {:>9.3} {:>10.2} {:>10.2} {:>12}",
                    s.name,
                    name,
                    per,
                    disk as f64 / json,
                    comp * 1e6 / n,
                    decomp * 1e6 / n,
                    per_saved
                );
            }
        }
    }

    println!("\n## 2. spool append (stage + commit per frame) + read + ack, exec storm events, frames of 20");
    let exec = &sets[1];
    let mut base = None;
    for (name, codec, _) in
        [("none", Compression::None, 0), ("lz4", Compression::Lz4, 0), ("zstd", Compression::Zstd, 1)]
    {
        let dir = std::env::temp_dir().join(format!("auditrelay-bench-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = SpoolConfig { dir: dir.clone(), compression: codec, ..SpoolConfig::default() };
        let spool = Spool::open(&cfg, &["bench".to_string()]).unwrap();
        let mut reader = spool.reader(0);
        let rate = measure::measure(&format!("append+read+ack {name}"), "events", BUDGET, || {
            for chunk in exec.events.chunks(exec.frame) {
                for (id, body) in chunk {
                    let stored = spool.stage(1_796_118_282_188, id, body).unwrap();
                    assert!(matches!(stored, Appended::Stored { .. }), "the event was not stored");
                }
                spool.commit().unwrap();
            }
            let mut last = 0;
            let mut n = 0;
            while n < exec.events.len() {
                n += reader
                    .next_batch(Duration::from_secs(1), 1024, &mut |r, _| {
                        black_box(r.body);
                        last = r.pos;
                    })
                    .unwrap();
            }
            spool.ack(0, last);
            spool.maintain().unwrap();
            exec.events.len()
        });
        let st = spool.stats();
        let b = *base.get_or_insert(rate);
        println!(
            "  {name}: {:.2}x the events/CPU-s of none; disk/raw {:.3}",
            rate / b,
            st.disk_bytes_written as f64 / st.raw_bytes_written as f64
        );
        drop(reader);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    if std::env::var("SPOOL_BENCH_OUTAGE").as_deref() != Ok("0") {
        outage(exec);
    }
}

/// 10 minutes at 5 k events/s with the receiver down, default `[spool]`: must fit.
fn outage(s: &Set) {
    const EVENTS: usize = 3_000_000;
    const PER_FRAME: usize = 50;
    println!("\n## 3. outage: {EVENTS} exec-storm events (10 min at 5 k/s), default [spool], nothing acknowledged");
    // On disk (not a tmpfs /tmp): what a real spool directory is.
    let dir = std::path::Path::new("/var/tmp").join(format!("auditrelay-bench-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = SpoolConfig { dir: dir.clone(), ..SpoolConfig::default() };
    let spool = Spool::open(&cfg, &["relp-down".to_string()]).unwrap();
    let start = Instant::now();
    let cpu0 = measure::thread_cpu_time();
    let mut json = 0u64;
    let mut i = 0;
    while i < EVENTS {
        for _ in 0..PER_FRAME.min(EVENTS - i) {
            let (id, body) = &s.events[i % s.events.len()];
            json += body.len() as u64;
            assert!(matches!(spool.stage(1_796_118_282_188, id, body).unwrap(), Appended::Stored { .. }));
            i += 1;
        }
        spool.commit().unwrap();
    }
    spool.flush().unwrap();
    let cpu = (measure::thread_cpu_time() - cpu0).as_secs_f64();
    let st = spool.stats();
    let fits = st.dropped_oldest == 0 && st.dropped_newest == 0 && st.bytes <= cfg.max_bytes;
    println!(
        "outage: {EVENTS} events, {:.1} GB of JSON -> {:.1} MB on disk ({:.3}x, {:.0} bytes/event) of max_bytes {} MiB: {} ({} dropped); the default max_bytes holds {:.0} min at 5 k/s; append {:.0} events/CPU-s ({:.1} s wall)",
        json as f64 / 1e9,
        st.bytes as f64 / 1e6,
        st.bytes as f64 / json as f64,
        st.bytes as f64 / EVENTS as f64,
        cfg.max_bytes >> 20,
        if fits { "fits" } else { "DOES NOT FIT" },
        st.dropped_oldest + st.dropped_newest,
        cfg.max_bytes as f64 / (st.bytes as f64 / EVENTS as f64) / 5000.0 / 60.0,
        EVENTS as f64 / cpu,
        start.elapsed().as_secs_f64()
    );
    // Catch-up: the receiver is back; read everything once.
    let mut reader = spool.reader(0);
    let cpu0 = measure::thread_cpu_time();
    let mut n = 0;
    while n < EVENTS {
        n += reader
            .next_batch(Duration::from_secs(1), 4096, &mut |r, _| {
                black_box(r.body);
            })
            .unwrap();
    }
    println!("catch-up read: {:.0} events/CPU-s", EVENTS as f64 / (measure::thread_cpu_time() - cpu0).as_secs_f64());
    drop(reader);
    drop(spool);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(fits, "the outage does not fit in the default spool");
}
