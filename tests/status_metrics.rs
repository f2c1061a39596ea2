//! Issue 9, observability, end to end against the real kernel: the daemon with a RELP output whose
//! receiver is down logs the reconnect warning on stderr (log records are no longer discarded) and
//! its periodic summary; `auditrelay status` reads the daemon's figures over the control socket
//! and exits 1 naming the output that is down, and shows a SIGHUP reload's result; the Prometheus endpoint is scraped over HTTP; a
//! client that is not root (uid nobody, given just the capabilities to reach the socket and the
//! kernel) is refused by the SO_PEERCRED check and the refusal is logged; repeated warnings are
//! rate-limited with a "suppressed N similar messages" line.
//! Kernel test: root, the kernel lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{marker, KernelGuard, TempDir};

/// A loopback port nothing listens on (bound once, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn status(config: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["status", "--json", "--config", config]).output().unwrap()
}

fn scrape(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

/// The value of the sample line that starts with `prefix` (name and labels).
fn sample(page: &str, prefix: &str) -> Option<u64> {
    page.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[test]
fn status_and_metrics_show_the_daemons_figures_and_a_down_output() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("statusmetrics");
    let key = marker("obs");
    let (relp_port, metrics_port) = (free_port(), free_port());
    let socket = dir.path("run/control.sock");
    let extra = format!(
        "[spool]\ndir = {spool:?}\n\
         [[output]]\ntype = \"relp\"\nname = \"deadrelp\"\naddress = \"127.0.0.1:{relp_port}\"\n\
         [control]\nsocket = {socket:?}\noutput_down_threshold = \"1s\"\n\
         [metrics]\nlisten = \"{metrics_port}\"\n\
         [log]\nsummary_interval = \"1s\"\nrepeat_limit = 1\nrepeat_interval = \"2s\"\n",
        spool = dir.path("spool").display().to_string(),
        socket = socket.display().to_string(),
    );
    let config = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), &extra);
    let log = dir.path("stderr.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--config", &config])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();

    // Figures arrive once the daemon runs and the execs below were read.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, figures) = loop {
        let _ = Command::new("true").status();
        let out = status(&config);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let d = &v["daemon"];
        let down = d["outputs"][0]["down_secs"].as_u64().unwrap_or(0);
        if d["records_in"].as_u64().unwrap_or(0) > 0 && d["events_out"].as_u64().unwrap_or(0) > 0 && down >= 1 {
            break (out, v);
        }
        if let Ok(Some(s)) = daemon.try_wait() {
            panic!("the daemon exited ({s}): {}", stderr());
        }
        assert!(Instant::now() < deadline, "no figures: {v}\n{}", stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    let d = &figures["daemon"];
    assert_eq!(d["pid"].as_u64(), Some(u64::from(daemon.id())), "{d}");
    assert_eq!(figures["pid"].as_u64(), Some(u64::from(daemon.id())), "the kernel part stays: {figures}");
    assert_eq!(d["filter_drops"].as_u64(), Some(0), "the slot exists: {d}");
    // The process table was seeded from /proc (this test process at least) and is shown.
    assert!(d["process_table_seeded"].as_u64().is_some_and(|n| n >= 1), "{d}");
    assert!(d["process_table_entries"].as_u64().is_some_and(|n| n >= 1), "{d}");
    assert_eq!(d["rules"]["source"], "configured", "{d}");
    assert!(d["rules"]["loaded"].as_u64().unwrap() >= 1, "{d}");
    let o = &d["outputs"][0];
    assert_eq!((o["name"].as_str(), o["acked"].as_u64()), (Some("deadrelp"), Some(0)), "{o}");
    assert!(o["errors"].as_u64().unwrap() >= 1 && o["last_error"].as_str().unwrap().contains("refused"), "{o}");
    assert!(d["spool"]["events"].as_u64().unwrap() > 0, "{d}");
    assert!(d["spool"]["oldest_unacked_age_secs"].is_u64(), "{d}");
    // Enrichment with names is on by default: the execs' ids went through the name cache.
    let n = &d["names"];
    assert_eq!(n["enabled"], true, "{d}");
    assert!(n["misses"].as_u64().unwrap() >= 1 && n["queued"].as_u64().unwrap() >= 1, "{n}");
    for k in ["hits", "dropped", "evictions", "entries"] {
        assert!(n[k].is_u64(), "{k}: {n}");
    }
    // An output down past the threshold needs an operator: exit 1 and one line saying why.
    assert_eq!(out.status.code(), Some(1), "{figures}");
    let why = String::from_utf8_lossy(&out.stderr);
    assert_eq!(why.lines().count(), 1, "{why}");
    assert!(why.contains("output deadrelp down for"), "{why}");

    // Prometheus, over HTTP.
    let page = scrape(metrics_port);
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/plain; version=0.0.4"), "{page}");
    assert!(sample(&page, "auditrelay_records_in_total ").unwrap() > 0, "{page}");
    assert!(sample(&page, "auditrelay_events_out_total ").unwrap() > 0, "{page}");
    assert_eq!(sample(&page, "auditrelay_output_up{output=\"deadrelp\",kind=\"relp\"} "), Some(0), "{page}");
    assert_eq!(sample(&page, "auditrelay_output_acked_total{output=\"deadrelp\",kind=\"relp\"} "), Some(0));
    assert!(sample(&page, "auditrelay_output_errors_total{output=\"deadrelp\",kind=\"relp\"} ").unwrap() >= 1);
    assert!(sample(&page, "auditrelay_spool_events ").unwrap() > 0, "{page}");
    assert!(sample(&page, "auditrelay_name_cache_misses_total ").unwrap() >= 1, "{page}");
    assert!(sample(&page, "auditrelay_name_lookups_queued_total ").unwrap() >= 1, "{page}");
    for name in ["hits_total", "evictions_total", "entries"] {
        assert!(sample(&page, &format!("auditrelay_name_cache_{name} ")).is_some(), "{name}: {page}");
    }
    assert!(sample(&page, "auditrelay_name_lookups_dropped_total ").is_some(), "{page}");
    let body = page.split("\r\n\r\n").nth(1).unwrap();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(body.contains(&format!("# HELP {name} ")) && body.contains(&format!("# TYPE {name} ")), "{line}");
    }

    // A reload (SIGHUP) shows up with its result.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let reload = loop {
        let v: serde_json::Value = serde_json::from_slice(&status(&config).stdout).unwrap_or_default();
        let r = v["daemon"]["rules"].clone();
        if r["reloads"].as_u64().unwrap_or(0) >= 1 && r["last_reload"].is_object() {
            break r;
        }
        assert!(Instant::now() < deadline, "no reload in the figures: {v}\n{}", stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(reload["last_reload"]["ok"], true, "{reload}");
    assert!(reload["last_reload"]["message"].as_str().unwrap().starts_with("SIGHUP"), "{reload}");
    assert_eq!(reload["reloads_failed"].as_u64(), Some(0), "{reload}");

    // Not root: uid nobody with just CAP_DAC_OVERRIDE (to reach the 0700 directory and 0600
    // socket) and CAP_AUDIT_CONTROL (for the kernel part). The daemon's SO_PEERCRED check refuses.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["--inh-caps", "+dac_override,+audit_control", "--ambient-caps", "+dac_override,+audit_control", "--"])
        .arg(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["status", "--config", &config])
        .output()
        .expect("run setpriv (util-linux)");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(text.starts_with("enabled "), "the kernel part is shown: {text}");
    assert!(err.contains("refused: permission denied"), "{err}");
    assert!(!text.contains("records_in"), "no figures for a non-root client: {text}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stderr().contains("control socket: refused a connection from uid 65534") {
        assert!(Instant::now() < deadline, "refusal not logged:\n{}", stderr());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The dead receiver's reconnect warning and the summary line are visible on stderr.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stderr().contains("auditrelay: summary: ") {
        assert!(Instant::now() < deadline, "no summary line:\n{}", stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(daemon.wait().unwrap().success());
    let text = stderr();
    assert!(
        text.lines().any(|l| l.starts_with("auditrelay: warning: output deadrelp: ") && l.contains("retrying in")),
        "the reconnect warning (a log::warn! record) reaches stderr:\n{text}"
    );
    // Retries come every 0.5 s, 1 s, 2 s, ...: with one line per call site per 2 s, the second and
    // third are counted and reported in one line.
    assert!(
        text.lines().any(|l| l.starts_with("auditrelay: warning: suppressed ")
            && l.contains("similar messages from src/output/reconnect.rs:")
            && l.contains("(the last: output deadrelp: ")),
        "repeats are rate-limited and reported:\n{text}"
    );
    assert!(!socket.exists(), "the control socket is removed at exit");
    let gone = status(&config);
    let v: serde_json::Value = serde_json::from_slice(&gone.stdout).unwrap();
    assert!(v["daemon"].is_null() && v["daemon_error"].as_str().unwrap().contains("not running"), "{v}");
    assert_eq!(gone.status.code(), Some(0));
}
