//! `cargo bench --bench spool`: the disk spool's record codec, and append + read back through a
//! reader with acks, in events/s, for one real openat event (benches/data/openat-event.json, as
//! `auditrelay run` wrote it during the live benchmark).
//!
//! Kept small on purpose: the spool's API is being reworked; these measure what every version must
//! do (encode + checksum, write, read + verify, ack).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use auditrelay::spool::{record, Appended, Spool, SpoolConfig};

#[path = "measure.rs"]
mod measure;

const EVENT: &[u8] = include_bytes!("data/openat-event.json");
const ID: &str = "f609d2a9-e845-4d0e-aad7-31b2fd5e51cd:1796118282.188:681176";
const BUDGET: Duration = Duration::from_millis(1500);
const PER_PASS: usize = 10_000;

fn main() {
    let body = EVENT.strip_suffix(b"\n").unwrap_or(EVENT);
    println!("event: {} bytes of JSON", body.len());

    let mut buf = Vec::new();
    measure::measure("record encode", "events", BUDGET, || {
        buf.clear();
        for pos in 0..PER_PASS as u64 {
            record::encode(&mut buf, pos + 1, 1_796_118_282_188, ID, body);
        }
        black_box(&buf);
        PER_PASS
    });
    let encoded = buf.clone();
    measure::measure("record decode", "events", BUDGET, || {
        let mut at = 0;
        let mut n = 0;
        while at < encoded.len() {
            let (rec, len) = record::decode(&encoded[at..], 4 << 20).unwrap();
            black_box(rec);
            at += len;
            n += 1;
        }
        n
    });

    let dir = std::env::temp_dir().join(format!("auditrelay-bench-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = SpoolConfig { dir: dir.clone(), ..SpoolConfig::default() };
    {
        let spool = Spool::open(&cfg, &["bench".to_string()]).unwrap();
        let mut reader = spool.reader(0);
        measure::measure("append + read + ack", "events", BUDGET, || {
            for _ in 0..PER_PASS {
                let stored = spool.append(1_796_118_282_188, ID, body).unwrap();
                assert!(matches!(stored, Appended::Stored { .. }), "the event was not stored");
            }
            let mut last = 0;
            for _ in 0..PER_PASS {
                let rec = reader.next(Duration::from_secs(1)).unwrap().expect("an appended record");
                last = rec.pos;
            }
            spool.ack(0, last);
            spool.maintain().unwrap();
            PER_PASS
        });
        spool.flush().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
