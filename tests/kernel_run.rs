//! `auditrelay run` against the real kernel: registration, a real execve event, clean shutdown.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{auditctl, marker, Daemon, KernelGuard};
use serde_json::Value;

fn record_types(event: &Value) -> Vec<String> {
    event["records"].as_array().map(|r| r.iter().filter_map(|r| r["type"].as_str().map(String::from)).collect()).unwrap_or_default()
}

fn has_execve_arg(event: &Value, arg: &str) -> bool {
    event["records"].as_array().is_some_and(|records| {
        records.iter().any(|r| r["type"] == "EXECVE" && r["fields"].as_object().is_some_and(|f| f.values().any(|v| v == arg)))
    })
}

#[test]
fn execve_event_end_to_end_and_clean_shutdown() {
    let guard = KernelGuard::take();
    let before = guard.before();
    let mut daemon = Daemon::start(&["run"]);
    daemon.wait_registered(Duration::from_secs(10));
    let key = marker("key");
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);

    let arg = marker("execve");
    let status = Command::new("/bin/echo").arg(&arg).output().expect("run marker");
    assert!(status.status.success());

    let event = daemon.wait_for(Duration::from_secs(15), |v| has_execve_arg(v, &arg)).expect("an event with the marker argument");
    let types = record_types(&event);
    for t in ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"] {
        assert!(types.iter().any(|x| x == t), "record {t} missing from {types:?}");
    }
    assert_eq!(types.last().map(String::as_str), Some("EOE"), "completed on EOE: {types:?}");
    assert!(event.get("incomplete").is_none(), "complete event: {event}");
    let syscall = event["records"].as_array().and_then(|r| r.iter().find(|r| r["type"] == "SYSCALL")).expect("SYSCALL");
    assert_eq!(syscall["fields"]["syscall"], "59");
    assert_eq!(syscall["fields"]["key"], key.as_str());
    assert!(event["sequence"].as_u64().is_some() && event["timestamp"].is_string() && event["time"].is_string());
    // One event per serial: the marker shows up in exactly one event.
    let (exit, rest) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let with_marker = rest.iter().filter(|l| l.contains(&arg)).count();
    assert_eq!(with_marker, 1, "exactly one event carries the marker");

    let after = guard.status();
    assert_eq!(after.pid, 0, "unregistered on SIGTERM");
    assert_eq!((after.enabled, after.backlog_limit, after.failure, after.rate_limit), (before.enabled, before.backlog_limit, before.failure, before.rate_limit), "kernel settings restored");
}

#[test]
fn second_daemon_is_refused_with_the_holding_pid() {
    let _guard = KernelGuard::take();
    let mut first = Daemon::start(&["run"]);
    first.wait_registered(Duration::from_secs(10));
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).arg("run").output().expect("second run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", first.pid())), "names the holder: {err}");
    assert!(err.contains("--multicast"), "suggests --multicast: {err}");
    let (exit, _) = first.terminate();
    assert!(exit.success());
}

#[test]
fn multicast_reader_coexists_with_the_daemon() {
    let guard = KernelGuard::take();
    let mut daemon = Daemon::start(&["run"]);
    daemon.wait_registered(Duration::from_secs(10));
    let mut reader = Daemon::start(&["run", "--multicast"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(guard.status().pid, daemon.pid(), "multicast mode does not take the daemon pid");
    let key = marker("mkey");
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let arg = marker("multicast");
    Command::new("/bin/echo").arg(&arg).output().expect("marker");
    assert!(reader.wait_for(Duration::from_secs(15), |v| has_execve_arg(v, &arg)).is_some(), "multicast copy");
    assert!(daemon.wait_for(Duration::from_secs(15), |v| has_execve_arg(v, &arg)).is_some(), "unicast copy");
    let (r, _) = reader.terminate();
    let (d, _) = daemon.terminate();
    assert!(r.success() && d.success());
    assert_eq!(guard.status().pid, 0);
}

/// An argument longer than one record: the kernel hex-encodes it and splits it across EXECVE
/// records (`a1_len`, `a1[0]`, `a1[1]`, ...). Every piece must come through whole, so the
/// reassembled hex equals the argument; datagrams near the kernel's 8970-byte limit included.
#[test]
fn split_execve_argument_arrives_whole() {
    let _guard = KernelGuard::take();
    let mut daemon = Daemon::start(&["run"]);
    daemon.wait_registered(Duration::from_secs(10));
    let key = marker("long");
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let head = marker("longarg");
    let arg = format!("{head}{}", "x".repeat(30_000));
    Command::new("/bin/true").arg(&arg).output().expect("marker");
    let hex_head: String = head.bytes().map(|b| format!("{b:02X}")).collect();
    let event = daemon
        .wait_for(Duration::from_secs(15), |v| {
            v["records"].as_array().is_some_and(|rs| rs.iter().any(|r| r["fields"]["a1[0]"].as_str().is_some_and(|s| s.starts_with(&hex_head))))
        })
        .expect("event with the split argument");
    let mut pieces: Vec<(usize, String)> = Vec::new();
    let mut declared = 0usize;
    for r in event["records"].as_array().expect("records").iter().filter(|r| r["type"] == "EXECVE") {
        let fields = r["fields"].as_object().expect("fields");
        if let Some(len) = fields.get("a1_len").and_then(|v| v.as_str()) {
            declared = len.parse().expect("a1_len");
        }
        for (k, v) in fields {
            if let Some(index) = k.strip_prefix("a1[").and_then(|i| i.strip_suffix(']')) {
                pieces.push((index.parse().expect("piece index"), v.as_str().expect("hex").to_string()));
            }
        }
    }
    pieces.sort();
    assert!(pieces.iter().enumerate().all(|(i, (n, _))| i == *n), "pieces 0..n, none missing or repeated");
    let hex: String = pieces.into_iter().map(|(_, p)| p).collect();
    assert_eq!(declared, arg.len() * 2, "a1_len counts hex characters");
    let expected: String = arg.bytes().map(|b| format!("{b:02X}")).collect();
    assert_eq!(hex.len(), expected.len(), "no piece lost or cut");
    assert!(hex == expected, "argument reassembles byte for byte");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
}
