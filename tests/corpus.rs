//! Golden tests from real data: tests/data/sample-audit.log and tests/data/sample-netlink.jsonl are an
//! audit.log and the raw netlink datagrams it was written from, captured from this kind of machine's
//! kernel (tests/data/README.md says how; tests/data/capture makes a fresh pair).
//!
//! Regenerate the golden JSON after an intended schema change with
//! `AUDITRELAY_REGENERATE_GOLDEN=1 cargo test --test corpus` and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use auditrelay::format::JsonWriter;
use auditrelay::reassemble::ReassembleConfig;
use auditrelay::record::{parse_log_line, parse_netlink, MessageType, Record};
use auditrelay::replay::{replay_with, ReplayStats};

const AUDIT_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log");
const NETLINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-netlink.jsonl");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.golden.jsonl");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the corpus is committed in tests/data/; see tests/data/README.md)"))
}

fn replay_corpus() -> (ReplayStats, Vec<u8>, Vec<String>) {
    let input = read(AUDIT_LOG);
    let mut sink = Vec::new();
    let mut bad = Vec::new();
    let stats = replay_with(&input[..], &ReassembleConfig::default(), &mut JsonWriter::new(None), &mut sink, |e| {
        bad.push(e.to_string())
    })
    .unwrap();
    (stats, sink, bad)
}

/// `(timestamp, serial)` → record type names, read from the log with plain string operations,
/// independently of the parser under test.
fn independent_grouping(log: &str) -> BTreeMap<(String, u32), Vec<String>> {
    let mut groups: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        let kind = line.split_whitespace().find_map(|w| w.strip_prefix("type=")).unwrap().to_string();
        let stamp = line.split("msg=audit(").nth(1).unwrap().split(')').next().unwrap();
        let (ts, serial) = stamp.split_once(':').unwrap();
        groups.entry((ts.to_string(), serial.parse().unwrap())).or_default().push(kind);
    }
    groups
}

#[test]
fn replay_groups_the_corpus_exactly_by_event_id() {
    let log = String::from_utf8(read(AUDIT_LOG)).unwrap();
    let expected = independent_grouping(&log);
    let (stats, json, bad) = replay_corpus();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(stats.records as usize, log.lines().count());
    assert_eq!(stats.bad_lines, 0);

    let mut got: BTreeMap<(String, u32), Vec<String>> = BTreeMap::new();
    let mut incomplete = Vec::new();
    for line in json.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert!(v.get("loss").is_none(), "no serial in this capture is missing: {v}");
        assert!(v.get("late").is_none(), "{v}");
        let key = (v["timestamp"].as_str().unwrap().to_string(), v["sequence"].as_u64().unwrap() as u32);
        let types = v["records"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap().to_string()).collect();
        if v.get("incomplete").is_some() {
            incomplete.push(key.clone());
        }
        assert!(got.insert(key.clone(), types).is_none(), "event {key:?} emitted twice");
    }
    assert_eq!(got.len(), expected.len(), "one event per distinct audit(...) id");
    assert_eq!(got, expected);
    assert_eq!(stats.events as usize, expected.len());

    // Every multi-record event of this capture ends with EOE, every other one is a standalone type;
    // so nothing may come out incomplete.
    assert!(incomplete.is_empty(), "incomplete: {incomplete:?}");
    let standalone = expected.values().filter(|types| types.last().map(String::as_str) != Some("EOE")).count();
    assert_eq!(stats.reassemble.completed_standalone as usize, standalone);
    assert_eq!(stats.reassemble.completed_end as usize, expected.len() - standalone);
}

#[test]
fn replay_output_matches_the_golden_file() {
    let (_, json, _) = replay_corpus();
    if std::env::var_os("AUDITRELAY_REGENERATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &json).unwrap();
    }
    let golden = read(GOLDEN);
    if json != golden {
        let first_diff = json.split(|&b| b == b'\n').zip(golden.split(|&b| b == b'\n')).position(|(a, b)| a != b);
        panic!(
            "replay output differs from {GOLDEN} at line {:?}; if intended, rerun with AUDITRELAY_REGENERATE_GOLDEN=1",
            first_diff.map(|i| i + 1)
        );
    }
}

/// Minimal standard base64 decoding (the corpus stores payloads so).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    out
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn same_record(a: &Record, b: &Record) -> bool {
    a.kind == b.kind && a.id == b.id && a.body() == b.body() && a.fields().eq(b.fields())
}

#[test]
fn every_netlink_datagram_parses_and_matches_its_log_line() {
    let log = String::from_utf8(read(AUDIT_LOG)).unwrap();
    let mut log_records = log.lines().map(|l| parse_log_line(l.as_bytes()).unwrap());
    let datagrams = String::from_utf8(read(NETLINK)).unwrap();
    let mut events = 0;
    let mut control = BTreeSet::new();
    for (n, line) in datagrams.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let header = hex(v["header_hex"].as_str().unwrap());
        let payload = base64(v["payload_b64"].as_str().unwrap());
        assert_eq!(header.len(), 16, "datagram {n}: nlmsghdr is 16 bytes");
        let nlmsg_len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_le_bytes(header[4..6].try_into().unwrap());
        // NLMSG_ERROR (the AUDIT_SET ack) and AUDIT_REPLACE are control messages, not records,
        // and carry a normal nlmsg_len.
        if kind == 2 || kind == MessageType::REPLACE.0 {
            assert_eq!(nlmsg_len, payload.len() + 16, "datagram {n}");
            assert!(parse_netlink(kind, &payload).is_err(), "datagram {n}: binary control payload");
            control.insert(kind);
            continue;
        }
        // The unicast quirk: event records carry nlmsg_len = payload length, header not counted.
        assert_eq!(nlmsg_len, payload.len(), "datagram {n}");
        let record = parse_netlink(kind, &payload).unwrap_or_else(|e| panic!("datagram {n}: {e}"));
        let from_log = log_records.next().unwrap();
        assert!(same_record(&record, &from_log), "datagram {n}: {record:?} != {from_log:?}");
        // Both print back as the very line auditd wrote.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        record.write_log_line(&mut a);
        from_log.write_log_line(&mut b);
        assert_eq!(a, b, "datagram {n}");
        assert_eq!(&b[..], from_log.raw(), "datagram {n}");
        events += 1;
    }
    assert!(log_records.next().is_none());
    assert_eq!(events, log.lines().count());
    assert_eq!(control, BTreeSet::from([2, MessageType::REPLACE.0]));
}
