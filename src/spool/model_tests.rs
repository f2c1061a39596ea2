//! The spool against an in-memory model: random appends, reads, acks, flushes, crashes and clean
//! restarts. The model is a plain Vec of events plus, per output, what was read, acked, persisted.

use std::time::Duration;

use proptest::prelude::*;

use super::store::test_dir;
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read {
        out: usize,
        n: usize,
    },
    /// Ack a fraction (in 1/8) of what this output has read but not acked.
    Ack {
        out: usize,
        eighths: u64,
    },
    Maintain,
    Flush,
    /// Drop everything without flushing (kill -9: the page cache survives, unpersisted acks do not).
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..700).prop_map(Op::Append),
        4 => (0usize..2, 0usize..25).prop_map(|(out, n)| Op::Read { out, n }),
        3 => (0usize..2, 0u64..=8).prop_map(|(out, eighths)| Op::Ack { out, eighths }),
        1 => Just(Op::Maintain),
        1 => Just(Op::Flush),
        1 => Just(Op::Crash),
    ]
}

struct Out {
    read: u64,
    acked: u64,
    /// What a restart must at least resume from (acked as of the last flush).
    persisted: u64,
}

fn config(dir: &std::path::Path, max_bytes: u64, on_full: OnFull) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes: 2048,
        max_record_bytes: 1024,
        on_full,
        fsync_interval: Duration::from_millis(10),
        fsync_every: 0,
        // Cursors only move on Flush, so the model knows exactly what a crash keeps.
        cursor_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(5),
        ..SpoolConfig::default()
    }
}

fn body(n: usize, size: usize) -> Vec<u8> {
    let mut b = format!("{{\"n\":{n},\"p\":\"").into_bytes();
    b.resize(b.len() + size, b'a' + (n % 26) as u8);
    b.extend_from_slice(b"\"}");
    b
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    segment::list(dir).unwrap().iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// No bound pressure: the spool must behave exactly like the model (at-least-once after a crash,
    /// exactly the unacked suffix, in order, byte for byte).
    #[test]
    fn spool_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = test_dir("model");
        let cfg = config(&dir, 1 << 30, OnFull::DropOldest);
        let names = vec!["a".to_string(), "b".to_string()];
        let mut spool = Spool::open(&cfg, &names).unwrap();
        let mut readers: Vec<SpoolReader> = (0..2).map(|i| spool.reader(i)).collect();
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut outs: Vec<Out> = (0..2).map(|_| Out { read: 0, acked: 0, persisted: 0 }).collect();
        for op in ops {
            match op {
                Op::Append(size) => {
                    let b = body(model.len() + 1, size);
                    let got = spool.append(model.len() as u64, &format!("e{}", model.len() + 1), &b).unwrap();
                    model.push(b);
                    prop_assert_eq!(got, Appended::Stored { pos: model.len() as u64 });
                }
                Op::Read { out, n } => {
                    for _ in 0..n {
                        match readers[out].next(Duration::ZERO).unwrap() {
                            Some(rec) => {
                                prop_assert_eq!(rec.pos, outs[out].read + 1);
                                prop_assert_eq!(&rec.body, &model[(rec.pos - 1) as usize]);
                                prop_assert_eq!(rec.id, format!("e{}", rec.pos));
                                outs[out].read = rec.pos;
                            }
                            None => {
                                prop_assert_eq!(outs[out].read, model.len() as u64);
                                break;
                            }
                        }
                    }
                }
                Op::Ack { out, eighths } => {
                    let o = &mut outs[out];
                    let pos = o.acked + (o.read - o.acked) * eighths / 8;
                    spool.ack(out, pos);
                    o.acked = o.acked.max(pos);
                }
                Op::Maintain => spool.maintain().unwrap(),
                Op::Flush => {
                    spool.flush().unwrap();
                    for o in &mut outs {
                        o.persisted = o.acked;
                    }
                }
                Op::Crash => {
                    drop(readers);
                    drop(spool);
                    spool = Spool::open(&cfg, &names).unwrap();
                    for (i, o) in outs.iter_mut().enumerate() {
                        prop_assert_eq!(spool.acked(i), o.persisted);
                        o.acked = o.persisted;
                        o.read = o.persisted;
                    }
                    readers = (0..2).map(|i| spool.reader(i)).collect();
                }
            }
            // Bytes are accounted exactly, and nothing unacknowledged was deleted.
            let st = spool.stats();
            prop_assert_eq!(st.bytes, disk_bytes(&dir));
            let floor = outs.iter().map(|o| o.persisted).min().unwrap_or(0);
            let oldest = segment::list(&dir).unwrap().first().map(|(p, _)| *p).unwrap_or(u64::MAX);
            prop_assert!(oldest <= floor + 1 || floor >= model.len() as u64, "segment from {} deleted below floor {}", oldest, floor);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under drop_oldest pressure: the bound holds, readers see increasing positions whose content
    /// is what was appended at that position, and loss is counted.
    #[test]
    fn spool_under_pressure_keeps_bound_and_order(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = test_dir("modelfull");
        let max = 3 * 2048;
        let cfg = config(&dir, max, OnFull::DropOldest);
        let names = vec!["a".to_string(), "b".to_string()];
        let mut spool = Spool::open(&cfg, &names).unwrap();
        let mut readers: Vec<SpoolReader> = (0..2).map(|i| spool.reader(i)).collect();
        let mut by_pos = std::collections::HashMap::new();
        let mut last_read = [0u64; 2];
        let mut appended = 0usize;
        for op in ops {
            match op {
                Op::Append(size) => {
                    appended += 1;
                    let b = body(appended, size);
                    if let Appended::Stored { pos } = spool.append(0, &format!("e{appended}"), &b).unwrap() {
                        by_pos.insert(pos, b);
                    }
                }
                Op::Read { out, n } => {
                    for _ in 0..n {
                        let Some(rec) = readers[out].next(Duration::ZERO).unwrap() else { break };
                        prop_assert!(rec.pos > last_read[out]);
                        last_read[out] = rec.pos;
                        if !rec.id.starts_with("auditrelay-loss-") {
                            prop_assert_eq!(Some(&rec.body), by_pos.get(&rec.pos));
                        }
                    }
                }
                Op::Ack { out, eighths } => {
                    let acked = spool.acked(out);
                    spool.ack(out, acked + last_read[out].saturating_sub(acked) * eighths / 8);
                }
                Op::Maintain => spool.maintain().unwrap(),
                Op::Flush => spool.flush().unwrap(),
                Op::Crash => {
                    drop(readers);
                    drop(spool);
                    spool = Spool::open(&cfg, &names).unwrap();
                    readers = (0..2).map(|i| spool.reader(i)).collect();
                    for (i, l) in last_read.iter_mut().enumerate() {
                        *l = spool.acked(i);
                    }
                }
            }
            let st = spool.stats();
            prop_assert!(st.bytes <= max, "{} bytes over {}", st.bytes, max);
            prop_assert_eq!(st.bytes, disk_bytes(&dir));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
