//! End to end, as deployed: real kernel execve events → the real `auditrelay run` → its spool →
//! four file outputs, one per format (native, go-audit, auditlog, ecs), and a `[[filter]]` that
//! drops one of the two marker programs before the spool.
//!
//! Asserts, per output: the kept marker's events arrive in that output's format (go-audit's
//! object with the EXECVE data, audit.log lines that `ausearch -if -k` finds, ECS documents with
//! the arguments and the rule key as tag), and the dropped marker's events are in none of them.
//!
//! Needs root and Debian's auditd package (ausearch); holds the kernel flock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{marker, Daemon, KernelGuard, TempDir};

const FORMATS: &[(&str, &str)] =
    &[("native", "native.jsonl"), ("go-audit", "go-audit.jsonl"), ("auditlog", "audit.log"), ("ecs", "ecs.jsonl")];

#[test]
fn each_output_ships_its_format_and_filtered_events_reach_none() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("formats");
    let key = marker("fmtkey");
    let mut extra = format!(
        "\n[spool]\ndir = {:?}\nfsync_interval = \"100ms\"\ncursor_interval = \"100ms\"\n",
        dir.path("spool").display().to_string()
    );
    for (format, file) in FORMATS {
        extra.push_str(&format!(
            "\n[[output]]\ntype = \"file\"\nname = \"{}\"\nformat = \"{format}\"\npath = {:?}\nsync_interval = \"50ms\"\n",
            format.replace('-', "_"),
            dir.path(file).display().to_string()
        ));
    }
    extra.push_str("\n[[filter]]\nname = \"no-false\"\naction = \"drop\"\nexe = [\"*/false\"]\n");
    let config = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), &extra);
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));

    let kept = marker("kept");
    let dropped = marker("dropped");
    for i in 0..3 {
        assert!(Command::new("/bin/true").arg(format!("{kept}-{i}")).status().unwrap().success());
        let _ = Command::new("/bin/false").arg(format!("{dropped}-{i}")).status().unwrap();
    }
    // Every output has all three kept events (each output syncs its file within 50 ms).
    let deadline = Instant::now() + Duration::from_secs(20);
    for (format, file) in FORMATS {
        loop {
            let text = std::fs::read_to_string(dir.path(file)).unwrap_or_default();
            if (0..3).all(|i| text.contains(&format!("{kept}-{i}"))) {
                break;
            }
            assert!(Instant::now() < deadline, "{format}: kept markers missing:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (status, _) = daemon.terminate();
    assert!(status.success(), "{status}");

    let read = |file: &str| std::fs::read_to_string(dir.path(file)).unwrap();
    for (format, file) in FORMATS {
        assert!(!read(file).contains(&dropped), "{format}: a filtered event was shipped");
    }

    // go-audit: one object per event; the marker's event has SYSCALL and EXECVE messages, no EOE.
    let go: Vec<serde_json::Value> = read("go-audit.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ev = go
        .iter()
        .find(|v| v["messages"].as_array().unwrap().iter().any(|m| m["data"].as_str().unwrap().contains(&kept)))
        .expect("go-audit event with the marker");
    let keys: Vec<&str> = ev.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{ev}");
    let types: Vec<u64> = ev["messages"].as_array().unwrap().iter().map(|m| m["type"].as_u64().unwrap()).collect();
    assert!(types.contains(&1300) && types.contains(&1309) && !types.contains(&1320), "{types:?}");
    assert_eq!(ev["uid_map"]["0"], "root");
    let syscall = ev["messages"].as_array().unwrap().iter().find(|m| m["type"] == 1300).unwrap();
    assert!(syscall["data"].as_str().unwrap().starts_with("arch=c000003e syscall=59 "), "{syscall}");

    // auditlog: ausearch reads the file and finds the key's events.
    let out = Command::new("ausearch")
        .args(["-if", &dir.path("audit.log").display().to_string(), "-k", &key, "--raw"])
        .output()
        .expect("ausearch (Debian package auditd)");
    let found = String::from_utf8_lossy(&out.stdout);
    assert!((0..3).all(|i| found.contains(&format!("{kept}-{i}"))), "ausearch -k {key}:\n{found}");

    // ecs: process.args carries the marker, tags the rule key, the event is an exec.
    let ecs: Vec<serde_json::Value> = read("ecs.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let doc = ecs
        .iter()
        .find(|d| d["process"]["args"].as_array().is_some_and(|a| a.iter().any(|x| x == &format!("{kept}-0"))))
        .expect("ECS document with the marker in process.args");
    assert_eq!(doc["event"]["action"], "executed");
    assert_eq!(doc["event"]["outcome"], "success");
    assert!(doc["tags"].as_array().unwrap().iter().any(|t| t == &key), "{doc}");
    assert!(doc["process"]["executable"].as_str().unwrap().ends_with("/true"), "{doc}");
}
