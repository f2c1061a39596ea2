//! Upgrade: a spool written by the v1 code (uncompressed segments, before format v2) is read by
//! this version with nothing lost: every unacknowledged event of every output, from its cursor,
//! byte for byte; new events go to v2 segments; the old ones are deleted once acknowledged.
//!
//! tests/data/spool-v1/ was written by the spool code of commit 0e562a3 (the last v1 version) with
//! tests/data/spool-v1.writer.rs.txt: the first 40 events of tests/data/sample-audit.golden.jsonl,
//! outputs `relp-0` (acknowledged up to 25) and `file-1` (up to 10), 16 KiB segments.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrelay::spool::{Record, Spool, SpoolConfig};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spool-v1");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.golden.jsonl");

fn copy_fixture(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("auditrelay-upgrade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(FIXTURE).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    d
}

fn read_all(s: &Spool, idx: usize) -> Vec<Record> {
    let mut r = s.reader(idx);
    let mut out = Vec::new();
    while let Some(rec) = r.next(Duration::ZERO).unwrap() {
        out.push(rec);
    }
    out
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_spool_written_by_the_v1_code_is_read_after_the_upgrade() {
    let dir = copy_fixture("read");
    assert!(segment_names(&dir).iter().all(|n| n.ends_with(".log")), "the fixture is v1");
    let golden: Vec<String> = std::fs::read_to_string(GOLDEN).unwrap().lines().take(40).map(str::to_string).collect();
    let cfg =
        SpoolConfig { dir: dir.clone(), max_record_bytes: 16 << 10, segment_bytes: 64 << 10, ..SpoolConfig::default() };
    let s = Spool::open(&cfg, &["relp-0".to_string(), "file-1".to_string()]).unwrap();
    let st = s.stats();
    assert_eq!((st.recovered_lost, st.recovered_truncated_bytes, st.last_pos), (0, 0, 40), "{st:?}");
    for (idx, acked) in [(0, 25u64), (1, 10)] {
        let recs = read_all(&s, idx);
        assert_eq!(recs.iter().map(|r| r.pos).collect::<Vec<_>>(), (acked + 1..=40).collect::<Vec<_>>());
        for r in &recs {
            let line = &golden[(r.pos - 1) as usize];
            // The fixture was written before records listed their hex-encoded keys (`hex`): the
            // same event, less that member.
            let mut want: serde_json::Value = serde_json::from_str(line).unwrap();
            for rec in want["records"].as_array_mut().unwrap() {
                rec.as_object_mut().unwrap().remove("hex");
            }
            let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(got, want, "event {}", r.pos);
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(r.id, format!("fixture-boot:{}:{}", v["timestamp"].as_str().unwrap(), v["sequence"]));
        }
    }
    // New events go to a v2 segment after the old ones, and read on from there.
    s.append(1, "after-upgrade", br#"{"after":"upgrade"}"#).unwrap();
    let names = segment_names(&dir);
    assert!(names.last().unwrap().ends_with(".v2"), "{names:?}");
    assert_eq!(read_all(&s, 1).last().unwrap().id, "after-upgrade");
    // Everything acknowledged: the v1 segments go like any other.
    s.ack(0, 41);
    s.ack(1, 41);
    s.flush().unwrap();
    let names = segment_names(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".v2"));
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_v1_spool_cut_by_a_crash_is_recovered_and_the_cut_announced() {
    let dir = copy_fixture("torn");
    // A crash while the v1 code wrote: the last segment ends in half a record.
    let last = dir.join(segment_names(&dir).last().unwrap());
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 100).unwrap();
    let cfg =
        SpoolConfig { dir: dir.clone(), max_record_bytes: 16 << 10, segment_bytes: 64 << 10, ..SpoolConfig::default() };
    let s = Spool::open(&cfg, &["relp-0".to_string(), "file-1".to_string()]).unwrap();
    let st = s.stats();
    assert_eq!(st.recovered_lost, 1, "{st:?}");
    let recs = read_all(&s, 0);
    // 26..=39 intact, 40 cut, and the notice of the cut in its place.
    assert_eq!(recs.iter().map(|r| r.pos).collect::<Vec<_>>(), (26..=40).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_slice(&recs.last().unwrap().body).unwrap();
    assert_eq!((v["loss"]["reason"].as_str(), v["loss"]["count"].as_u64()), (Some("torn_tail"), Some(1)));
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}
