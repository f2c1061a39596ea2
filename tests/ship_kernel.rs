//! End to end, as deployed: real kernel audit events (a marker workload of `/bin/true <tag>-<i>`
//! execs) → the real `auditrelay run` binary → its disk spool → a private rsyslogd over RELP
//! (imrelp) and over TCP (imtcp, RFC 6587 octet counting) at the same time, with faults: the
//! receiver stopped for 10 s, the receiver flapping, auditrelay killed -9 while events wait in its
//! spool.
//!
//! What each test asserts, per output: every line parses as RFC 5424 (PRI, version 1, the event's
//! own time, hostname, app-name, procid, msgid, SD) with a JSON MSG; every marker event arrives
//! (set equality by event `id`, and both outputs carry the same id for the same marker);
//! duplicates and steps back only within one window (RELP `window` / TCP `batch`), i.e. order is
//! preserved per output; and the kernel's `lost` counter does not move.
//!
//! Plain TCP has no application-level ack (see `src/output/tcp.rs`): a receiver stopped while its
//! socket buffer holds bytes its kernel already acknowledged loses them. Under receiver faults the
//! TCP output may therefore miss at most one batch per stop; RELP may miss nothing. Both numbers
//! are printed.
//!
//! Needs root, Debian's rsyslog + rsyslog-relp, and holds the kernel flock for each test.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use auditrelay::rules::data::RuleData;
use auditrelay::rules::sync::self_exclusion_pid;
use common::{marker, Daemon, KernelGuard, TempDir};
use support::{require_rsyslog, Rsyslogd};

/// RELP `window` and TCP `batch` in the config below: the most a resend can repeat.
const WINDOW: usize = 128;
/// The structured-data id the TCP output is configured with (RFC 5612's example enterprise number).
const SD_ID: &str = "auditrelay@32473";

/// Config: the marker rule only, a spool in the temp dir, one RELP and one TCP output.
fn write_config(tmp: &TempDir, rs: &Rsyslogd, key: &str) -> String {
    let rules = format!("-a always,exit -F arch=b64 -S execve -k {key}\n");
    let extra = format!(
        "\n[spool]\ndir = {spool:?}\nfsync_interval = \"100ms\"\ncursor_interval = \"100ms\"\ndrain_timeout = \"10s\"\n\n\
         [[output]]\ntype = \"relp\"\nname = \"relp\"\naddress = \"{relp}\"\nwindow = {WINDOW}\n\
         reconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n\n\
         [[output]]\ntype = \"tcp\"\nname = \"tcp\"\naddress = \"{tcp}\"\nframing = \"octet-counting\"\nbatch = {WINDOW}\n\
         sd_id = \"{SD_ID}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n",
        spool = tmp.path("spool").display().to_string(),
        relp = rs.relp_address(),
        tcp = rs.tcp_address(),
    );
    tmp.config_with_rules(&rules, &extra)
}

fn exec_marker(tag: &str, i: usize) {
    let st = Command::new("/bin/true").arg(format!("{tag}-{i}")).status().expect("run /bin/true");
    assert!(st.success());
}

/// Exec markers 0, 1, ... at `per_second` until `stop`; returns how many ran.
fn stream(tag: &str, per_second: u32, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    let tag = tag.to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0;
        while !stop.load(Ordering::Acquire) {
            exec_marker(&tag, i);
            i += 1;
            let due = start + Duration::from_secs(1) * i as u32 / per_second;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        i
    })
}

/// One received line, parsed as RFC 5424 with a JSON MSG.
#[derive(Debug)]
struct Msg {
    pri: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    /// `id` param of the SD element, when SD is not `-`: (SD-ID, value).
    sd: Option<(String, String)>,
    body: serde_json::Value,
}

/// Strict RFC 5424 parse of what our formatter writes: at most one SD element with one `id` param.
fn parse_5424(line: &str) -> Msg {
    let rest = line.strip_prefix('<').unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap_or_else(|| panic!("no PRI end: {line}"));
    let pri: u8 = pri.parse().unwrap_or_else(|_| panic!("PRI {pri:?}: {line}"));
    assert!(pri <= 191, "PRI {pri}");
    let rest = rest.strip_prefix("1 ").unwrap_or_else(|| panic!("not version 1: {line}"));
    let mut head = rest.splitn(6, ' ');
    let mut field = |what: &str| head.next().unwrap_or_else(|| panic!("no {what}: {line}")).to_string();
    let (timestamp, hostname, app_name, procid, msgid) =
        (field("TIMESTAMP"), field("HOSTNAME"), field("APP-NAME"), field("PROCID"), field("MSGID"));
    let rest = field("SD");
    let ts = timestamp.as_bytes();
    assert!(
        ts.len() == 24 && ts[4] == b'-' && ts[10] == b'T' && ts[13] == b':' && ts[19] == b'.' && ts[23] == b'Z',
        "TIMESTAMP {timestamp}: {line}"
    );
    let (sd, msg) = if let Some(msg) = rest.strip_prefix("- ") {
        (None, msg)
    } else {
        let element = rest.strip_prefix('[').unwrap_or_else(|| panic!("SD is neither - nor [..]: {line}"));
        let (sd_id, params) = element.split_once(' ').unwrap_or_else(|| panic!("SD without params: {line}"));
        let value = params.strip_prefix("id=\"").unwrap_or_else(|| panic!("SD param is not id: {line}"));
        // PARAM-VALUE escapes `"`, `\` and `]` with a backslash (RFC 5424 6.3.3).
        let mut id = String::new();
        let mut chars = value.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => id.push(chars.next().unwrap_or_else(|| panic!("SD escape at end: {line}")).1),
                Some((n, '"')) => break n,
                Some((_, c)) => id.push(c),
                None => panic!("SD value not closed: {line}"),
            }
        };
        let msg = value[end..].strip_prefix("\"] ").unwrap_or_else(|| panic!("SD element not closed: {line}"));
        (Some((sd_id.to_string(), id)), msg)
    };
    assert!(!msg.starts_with('\u{feff}'), "BOM before the JSON: {line}");
    let body = serde_json::from_str(msg).unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {line}"));
    Msg { pri, timestamp, hostname, app_name, procid, msgid, sd, body }
}

/// The marker number in an event's EXECVE record (`a1="<tag>-<i>"`), if it is one of ours.
fn marker_of(body: &serde_json::Value, tag: &str) -> Option<usize> {
    body["records"]
        .as_array()?
        .iter()
        .filter(|r| r["type"] == "EXECVE")
        .filter_map(|r| r["fields"].as_object())
        .flat_map(|f| f.values())
        .find_map(|v| v.as_str()?.strip_prefix(tag)?.strip_prefix('-')?.parse().ok())
}

/// A marker event as one output delivered it.
struct Marked {
    marker: usize,
    id: String,
    msg: Msg,
}

/// Every line of `file` parsed; the marker events among them, in arrival order.
fn received(rs: &Rsyslogd, file: &str, tag: &str) -> (usize, Vec<Marked>) {
    let lines = rs.lines(file);
    let marked = lines
        .iter()
        .filter_map(|line| {
            let msg = parse_5424(line);
            let marker = marker_of(&msg.body, tag)?;
            let id = msg.body["id"].as_str().unwrap_or_else(|| panic!("marker event without id: {line}")).to_string();
            Some(Marked { marker, id, msg })
        })
        .collect();
    (lines.len(), marked)
}

/// Poll both files until each holds every marker 0..n (duplicates allowed) or `timeout` passes.
fn wait_markers(rs: &Rsyslogd, tag: &str, n: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let complete = |file: &str| {
        let mut seen = vec![false; n];
        for m in rs.lines(file).iter().filter_map(|l| marker_of(&parse_5424(l).body, tag)) {
            if let Some(s) = seen.get_mut(m) {
                *s = true;
            }
        }
        seen.iter().all(|s| *s)
    };
    while !(complete("relp.log") && complete("tcp.log")) {
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

/// What one output delivered, checked.
struct Outcome {
    lines: usize,
    duplicates: usize,
    missing: Vec<usize>,
    /// marker → event id
    ids: BTreeMap<usize, String>,
}

/// Header fields, ids, order (steps back only to resend, by less than one window), duplicates.
fn check_output(name: &str, marked: &[Marked], lines: usize, n: usize, procids: &[u32]) -> Outcome {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let mut ids: BTreeMap<usize, String> = BTreeMap::new();
    let mut high: Option<usize> = None;
    for m in marked {
        assert!(m.marker < n, "{name}: marker {} was never run (only {n})", m.marker);
        assert_eq!(m.msg.pri, 14, "{name}: PRI user.info");
        assert_eq!(m.msg.app_name, "auditrelay");
        assert_eq!(m.msg.msgid, "AUDIT");
        assert_eq!(m.msg.hostname, hostname);
        assert!(
            procids.iter().any(|p| m.msg.procid == p.to_string()),
            "{name}: PROCID {} not one of {procids:?}",
            m.msg.procid
        );
        assert_eq!(m.msg.timestamp, m.msg.body["time"].as_str().unwrap(), "{name}: TIMESTAMP is the event's own time");
        match name {
            "tcp" => assert_eq!(m.msg.sd, Some((SD_ID.to_string(), m.id.clone())), "{name}: SD carries the event id"),
            _ => assert_eq!(m.msg.sd, None, "{name}: no SD configured"),
        }
        let prev = ids.entry(m.marker).or_insert_with(|| m.id.clone());
        assert_eq!(*prev, m.id, "{name}: marker {} arrived under two ids", m.marker);
        match high {
            Some(h) if m.marker <= h => {
                assert!(
                    h - m.marker < WINDOW,
                    "{name}: went back from marker {h} to {}: more than one window",
                    m.marker
                )
            }
            _ => high = Some(m.marker),
        }
    }
    let mut unique: Vec<&String> = ids.values().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{name}: two markers share an event id");
    let missing = (0..n).filter(|i| !ids.contains_key(i)).collect();
    Outcome { lines, duplicates: marked.len() - ids.len(), missing, ids }
}

/// Check both outputs against each other and the marker count; returns (relp, tcp).
fn check_both(rs: &Rsyslogd, tag: &str, n: usize, procids: &[u32], tcp_may_miss: usize) -> (Outcome, Outcome) {
    let (relp_lines, relp) = received(rs, "relp.log", tag);
    let (tcp_lines, tcp) = received(rs, "tcp.log", tag);
    let relp = check_output("relp", &relp, relp_lines, n, procids);
    let tcp = check_output("tcp", &tcp, tcp_lines, n, procids);
    assert!(
        relp.missing.is_empty(),
        "relp: {} of {n} marker events missing: {:?}",
        relp.missing.len(),
        &relp.missing[..relp.missing.len().min(20)]
    );
    assert!(
        tcp.missing.len() <= tcp_may_miss,
        "tcp: {} of {n} marker events missing (at most {tcp_may_miss} allowed): {:?}",
        tcp.missing.len(),
        &tcp.missing[..tcp.missing.len().min(20)]
    );
    // Set equality by id: the same event carries the same id on both outputs.
    for (marker, id) in &tcp.ids {
        assert_eq!(relp.ids.get(marker), Some(id), "marker {marker}: relp and tcp disagree on the id");
    }
    (relp, tcp)
}

fn report(test: &str, n: usize, elapsed: Duration, relp: &Outcome, tcp: &Outcome) {
    eprintln!(
        "{test}: {n} marker events in {elapsed:.1?}; relp {} lines, {} duplicate markers; tcp {} lines, {} duplicate markers, {} missing",
        relp.lines,
        relp.duplicates,
        tcp.lines,
        tcp.duplicates,
        tcp.missing.len()
    );
}

fn lost_now() -> u32 {
    AuditClient::open().and_then(|mut c| c.status()).expect("AUDIT_GET").lost
}

/// Marker numbers found (as JSON string values `"<tag>-<i>"`) in the spool's segment files.
fn spooled_markers(dir: &Path, tag: &str) -> BTreeSet<usize> {
    let needle = format!("\"{tag}-");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("seg-") {
            // Segments are compressed frames: decode them as the spool's readers do (a frame being
            // written is simply not read yet).
            let records = auditrelay::spool::segment::read_records(&entry.path(), 64 << 20).unwrap_or_default();
            for rec in records {
                let text = String::from_utf8_lossy(&rec.body);
                for (at, _) in text.match_indices(&needle) {
                    let rest = &text[at + needle.len()..];
                    if let Some((digits, _)) = rest.split_once('"') {
                        found.extend(digits.parse::<usize>().ok());
                    }
                }
            }
        }
    }
    found
}

/// Pids named by self-exclusion rules the kernel lists now.
fn self_exclusion_pids() -> Vec<u32> {
    let rules = AuditClient::open().and_then(|mut c| c.list_rules()).expect("AUDIT_LIST_RULES");
    rules.iter().filter_map(|raw| self_exclusion_pid(&RuleData::decode(raw).expect("decode kernel rule"))).collect()
}

#[test]
fn relp_and_tcp_deliver_every_kernel_event() {
    let guard = KernelGuard::take();
    require_rsyslog();
    let lost_before = guard.status().lost;
    let tmp = TempDir::new("ship-e2e");
    let rs = Rsyslogd::start("ship-e2e", None);
    let config = write_config(&tmp, &rs, &marker("e2ekey"));
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let tag = marker("e2e");
    let n = 300;
    let start = Instant::now();
    for i in 0..n {
        exec_marker(&tag, i);
    }
    let waited = wait_markers(&rs, &tag, n, Duration::from_secs(30));
    let elapsed = start.elapsed();
    let pid = daemon.pid();
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "auditrelay exit status {exit}");
    let (relp, tcp) = check_both(&rs, &tag, n, &[pid], 0);
    assert_eq!(relp.duplicates, 0, "relp: duplicates without a fault");
    assert_eq!(tcp.duplicates, 0, "tcp: duplicates without a fault");
    assert_eq!(lost_now(), lost_before, "kernel lost counter moved");
    report("no fault", n, elapsed, &relp, &tcp);
    eprintln!("no fault: last marker received {waited:.1?} after the wait began");
}

/// Stream markers at 20/s through a running daemon while `fault` acts on the receiver, then
/// check that every marker arrived on both outputs with at most `tcp_slack` missing on tcp and
/// duplicates only from resends.
fn stream_through_fault(name: &str, label: &str, tcp_slack: usize, fault: impl FnOnce(&mut Rsyslogd)) {
    let guard = KernelGuard::take();
    require_rsyslog();
    let lost_before = guard.status().lost;
    let tmp = TempDir::new(&format!("ship-{name}"));
    let mut rs = Rsyslogd::start(&format!("ship-{name}"), None);
    let config = write_config(&tmp, &rs, &marker(&format!("{name}key")));
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let tag = marker(name);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = stream(&tag, 20, stop.clone());
    fault(&mut rs);
    stop.store(true, Ordering::Release);
    let n = producer.join().unwrap();
    let waited = wait_markers(&rs, &tag, n, Duration::from_secs(30));
    let elapsed = start.elapsed();
    let pid = daemon.pid();
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "auditrelay exit status {exit}");
    let (relp, tcp) = check_both(&rs, &tag, n, &[pid], tcp_slack);
    assert_eq!(lost_now(), lost_before, "kernel lost counter moved");
    report(label, n, elapsed, &relp, &tcp);
    eprintln!("{label}: all arrived {waited:.1?} after the stream ended");
}

#[test]
fn receiver_down_10s_then_back() {
    stream_through_fault("down", "receiver down 10 s", WINDOW, |rs| {
        std::thread::sleep(Duration::from_secs(4));
        rs.stop();
        std::thread::sleep(Duration::from_secs(10));
        rs.restart();
        std::thread::sleep(Duration::from_secs(5));
    });
}

#[test]
fn receiver_flapping_10_times() {
    let flaps = 10;
    stream_through_fault("flap", "receiver flapping x10", flaps * WINDOW, |rs| {
        for _ in 0..flaps {
            std::thread::sleep(Duration::from_millis(1000));
            rs.stop();
            std::thread::sleep(Duration::from_millis(1000));
            rs.restart();
        }
        std::thread::sleep(Duration::from_secs(1));
    });
}

#[test]
fn kill_9_while_receiver_down_then_restart() {
    let guard = KernelGuard::take();
    require_rsyslog();
    let lost_before = guard.status().lost;
    let tmp = TempDir::new("ship-kill9");
    let mut rs = Rsyslogd::start("ship-kill9", None);
    rs.stop();
    let config = write_config(&tmp, &rs, &marker("k9key"));
    let mut first = Daemon::start(&["run", "--config", &config]);
    first.wait_registered(Duration::from_secs(10));
    let tag = marker("k9");
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        exec_marker(&tag, i);
    }
    // Kill only once every marker event is in the spool (the one window kill -9 can lose is before
    // that: see src/spool/mod.rs).
    let spool = tmp.path("spool");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if spooled_markers(&spool, &tag).len() >= n {
            break;
        }
        assert!(Instant::now() < deadline, "marker events did not all reach the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
    let spooled_after = start.elapsed();
    let dead = first.pid();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(rs.lines("relp.log").is_empty() && rs.lines("tcp.log").is_empty(), "the receiver was down");
    assert!(self_exclusion_pids().contains(&dead), "the killed daemon's self-exclusion rule is still loaded");

    // The kernel still names the dead pid; the next registration must replace it without help.
    rs.restart();
    let mut second = Daemon::start(&["run", "--config", &config]);
    second.wait_registered(Duration::from_secs(10));
    let waited = wait_markers(&rs, &tag, n, Duration::from_secs(30));
    let elapsed = start.elapsed();
    let pid = second.pid();
    let (exit, _) = second.terminate();
    assert!(exit.success(), "auditrelay exit status {exit}");
    // Nothing was acked before the kill, so everything comes from the restarted daemon.
    let (relp, tcp) = check_both(&rs, &tag, n, &[pid], 0);
    assert_eq!(lost_now(), lost_before, "kernel lost counter moved");

    // The restarted daemon put back the rules it found, but not the dead one's self-exclusion.
    let left = self_exclusion_pids();
    assert!(
        left.is_empty(),
        "self-exclusion rules left behind for pids {left:?} (killed daemon: {dead}, restarted: {pid})"
    );
    report("kill -9 with receiver down", n, elapsed, &relp, &tcp);
    eprintln!(
        "kill -9: markers spooled {spooled_after:.1?} after the first exec; all arrived {waited:.1?} after the restart"
    );
    drop(guard);
}
