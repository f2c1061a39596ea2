//! `auditrelay run` killed with SIGKILL while real kernel events wait in its spool (the receiver, a
//! file output whose directory does not exist yet, is down), then started again with the receiver
//! up: every event that reached the spool arrives, once, in order, and the kernel's `lost` counter
//! does not move.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{auditctl, marker, Daemon, KernelGuard};

const EVENTS: usize = 200;

/// The event bodies in the spool's segments (compressed on disk: decoded, one after the other).
fn spool_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("seg-") {
            // A segment deleted or being appended to meanwhile: what decodes so far.
            for rec in auditrelay::spool::segment::read_records(&entry.path(), 4 << 20).unwrap_or_default() {
                all.extend_from_slice(&rec.body);
                all.push(b'\n');
            }
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The quoted JSON value of marker argument `i`: quotes keep `x-1` from matching `x-10`.
fn quoted(tag: &str, i: usize) -> String {
    format!("\"{tag}-{i}\"")
}

/// Poll `read` until it holds every marker `tag-0..EVENTS`; panics with `what` after 30 s.
fn wait_for_markers(read: impl Fn() -> Vec<u8>, tag: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bytes = read();
        if (0..EVENTS).all(|i| contains(&bytes, &quoted(tag, i))) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh temp dir holding a config with the given `[spool]` keys and one file output whose
/// directory (`recv`) does not exist yet, i.e. a receiver that is down.
struct Setup {
    dir: std::path::PathBuf,
    spool: std::path::PathBuf,
    recv: std::path::PathBuf,
    events: std::path::PathBuf,
    config_arg: String,
}

fn setup(tag: &str, spool_keys: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("auditrelay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let recv = dir.join("recv");
    let events = recv.join("events.jsonl");
    let config = dir.join("auditrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[spool]\ndir = \"{}\"\n{spool_keys}\n\
             [[output]]\ntype = \"file\"\nname = \"recv\"\npath = \"{}\"\nmax_size = 0\n",
            spool.display(),
            events.display()
        ),
    )
    .unwrap();
    let config_arg = config.to_string_lossy().to_string();
    Setup { dir, spool, recv, events, config_arg }
}

#[test]
fn kill_9_with_events_in_the_spool_then_restart_delivers_every_one() {
    let guard = KernelGuard::take();
    let Setup { dir, spool, recv, events, config_arg } =
        setup("kill9", "fsync_interval = \"100ms\"\ncursor_interval = \"100ms\"\ndrain_timeout = \"10s\"\n");

    let mut daemon = Daemon::start(&["run", "--config", &config_arg]);
    daemon.wait_registered(Duration::from_secs(10));
    let lost_before = guard.status().lost;
    let key = marker("k9key");
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let tag = marker("k9");
    for i in 0..EVENTS {
        assert!(Command::new("/bin/true").arg(format!("{tag}-{i}")).status().unwrap().success());
    }

    // Wait until every marker event is in the spool, then SIGKILL.
    wait_for_markers(|| spool_bytes(&spool), &tag, "markers did not all reach the spool");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(!events.exists(), "the receiver was down: nothing delivered before the kill");

    // The kernel keeps naming the dead pid until a send to it fails: make events until it lets go.
    let deadline = Instant::now() + Duration::from_secs(15);
    while guard.status().pid != 0 {
        assert!(Instant::now() < deadline, "kernel kept the dead daemon's pid");
        let _ = Command::new("/bin/true").status();
        std::thread::sleep(Duration::from_millis(50));
    }

    // Receiver up, daemon back: the spool is sent.
    std::fs::create_dir_all(&recv).unwrap();
    let mut daemon = Daemon::start(&["run", "--config", &config_arg]);
    daemon.wait_registered(Duration::from_secs(10));
    wait_for_markers(
        || std::fs::read(&events).unwrap_or_default(),
        &tag,
        "markers did not all arrive after the restart",
    );
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");

    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut at = Vec::new();
    for i in 0..EVENTS {
        let q = quoted(&tag, i);
        let hits: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.contains(&q)).map(|(n, _)| n).collect();
        assert_eq!(hits.len(), 1, "marker {i} delivered {} times", hits.len());
        at.push(hits[0]);
    }
    assert!(at.windows(2).all(|w| w[0] < w[1]), "order preserved");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["id"].is_string() || v.get("loss").is_some() || v.get("unparsed").is_some(), "{l}");
    }
    assert_eq!(guard.status().lost, lost_before, "kernel lost counter unchanged");
    let _ = std::fs::remove_dir_all(&dir);
}

/// on_full = "block" with the receiver down: the spool fills and event processing waits (the
/// kernel backlog takes the pressure), yet SIGTERM still ends the daemon promptly, and what was
/// spooled is delivered after a restart with the receiver up.
#[test]
fn block_policy_full_spool_still_stops_on_sigterm_and_keeps_what_it_spooled() {
    let _guard = KernelGuard::take();
    let Setup { dir, spool, recv, events, config_arg } = setup(
        "block",
        "max_bytes = \"64KiB\"\nsegment_bytes = \"16KiB\"\nmax_record_bytes = \"16KiB\"\n\
         on_full = \"block\"\ndrain_timeout = \"1s\"\n",
    );
    let mut daemon = Daemon::start(&["run", "--config", &config_arg]);
    daemon.wait_registered(Duration::from_secs(10));
    let key = marker("blockkey");
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    // Each execve event is ~1-2 KiB of JSON: a few hundred fill 64 KiB.
    let deadline = Instant::now() + Duration::from_secs(30);
    let full = loop {
        for _ in 0..20 {
            let _ = Command::new("/bin/true").status();
        }
        let size: u64 = std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        if size > 48 << 10 {
            break size;
        }
        assert!(Instant::now() < deadline, "spool did not fill");
    };
    // Keep the kernel busy a little longer so the processing thread is surely parked in submit.
    for _ in 0..100 {
        let _ = Command::new("/bin/true").status();
    }
    let spooled_before = spool_bytes(&spool);
    let t = Instant::now();
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    eprintln!("spool {full} bytes full; SIGTERM to exit took {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10));

    // Everything spooled is delivered after a restart with the receiver up.
    std::fs::create_dir_all(&recv).unwrap();
    let mut daemon = Daemon::start(&["run", "--config", &config_arg]);
    daemon.wait_registered(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
    let delivered = std::fs::read_to_string(&events).unwrap();
    let first_id = |bytes: &[u8]| -> Option<String> {
        let text = String::from_utf8_lossy(bytes);
        let start = text.find("\"id\":\"")? + 6;
        Some(text[start..].split('"').next()?.to_string())
    };
    let id = first_id(&spooled_before).expect("an event id in the spool");
    assert!(delivered.contains(&id), "the oldest spooled event {id} was delivered");
    let _ = std::fs::remove_dir_all(&dir);
}
