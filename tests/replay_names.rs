//! `auditrelay replay` with names on is reproducible: names are resolved inline (offline replay
//! may wait on NSS), so two replays of one capture write the same bytes and an id this machine
//! knows (0 → root) has its name on the very first event that carries it. The daemon keeps
//! resolving in the background (src/enrich/user.rs); only replay chooses to wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn replay(config: &str) -> Vec<u8> {
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample-audit.log");
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["replay", "--config", config])
        .arg(&capture)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn replay_with_names_is_reproducible_and_names_the_first_event() {
    let dir = common::TempDir::new("replay-names");
    let config = dir.path("auditrelay.toml");
    std::fs::write(&config, "[enrich]\nenabled = true\nnames = true\n").unwrap();
    let config = config.display().to_string();
    let first = replay(&config);
    let second = replay(&config);
    assert!(!first.is_empty());
    assert!(first == second, "two replays of one capture with names on differ");

    let events: Vec<serde_json::Value> =
        first.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    let with_root: Vec<&serde_json::Value> = events.iter().filter(|e| e["user"]["uid"] == 0).collect();
    assert!(with_root.len() > 10, "the capture has events of uid 0: {}", with_root.len());
    assert_eq!(with_root[0]["user"]["uid_name"], "root", "the first event carrying uid 0: {}", with_root[0]);
    for e in &with_root {
        assert_eq!(e["user"]["uid_name"], "root", "every event of uid 0 is named: {e}");
    }
    let with_root_group = events.iter().find(|e| e["user"]["gid"] == 0).expect("an event of gid 0");
    assert_eq!(with_root_group["user"]["gid_name"], "root");
}
