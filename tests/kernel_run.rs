//! `auditrelay run` against the real kernel: registration, a real execve event, clean shutdown.

mod common;

use std::process::Command;
use std::time::Duration;

use auditrelay::netlink::client::AuditClient;
use common::{auditctl, marker, Daemon, KernelGuard, TempDir};
use serde_json::Value;

fn record_types(event: &Value) -> Vec<String> {
    event["records"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["type"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn has_execve_arg(event: &Value, arg: &str) -> bool {
    event["records"].as_array().is_some_and(|records| {
        records
            .iter()
            .any(|r| r["type"] == "EXECVE" && r["fields"].as_object().is_some_and(|f| f.values().any(|v| v == arg)))
    })
}

#[test]
fn execve_event_end_to_end_and_clean_shutdown() {
    let guard = KernelGuard::take();
    let before = guard.before();
    let dir = TempDir::new("run");
    let key = marker("key");
    let config = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));

    let arg = marker("execve");
    let status = Command::new("/bin/echo").arg(&arg).output().expect("run marker");
    assert!(status.status.success());

    let event = daemon
        .wait_for(Duration::from_secs(15), |v| has_execve_arg(v, &arg))
        .expect("an event with the marker argument");
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
    assert_eq!(
        (after.enabled, after.backlog_limit, after.failure, after.rate_limit),
        (before.enabled, before.backlog_limit, before.failure, before.rate_limit),
        "kernel settings restored"
    );
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
    let dir = TempDir::new("multicast");
    let key = marker("mkey");
    let config = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let rules_before = AuditClient::open().unwrap().list_rules().unwrap();
    let mut reader = Daemon::start(&["run", "--multicast", "--config", &config]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(guard.status().pid, daemon.pid(), "multicast mode does not take the daemon pid");
    assert_eq!(
        AuditClient::open().unwrap().list_rules().unwrap(),
        rules_before,
        "multicast mode leaves the rules alone"
    );
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
    let dir = TempDir::new("long");
    let key = marker("long");
    let config = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let head = marker("longarg");
    let arg = format!("{head}{}", "x".repeat(30_000));
    Command::new("/bin/true").arg(&arg).output().expect("marker");
    let hex_head: String = head.bytes().map(|b| format!("{b:02X}")).collect();
    let event = daemon
        .wait_for(Duration::from_secs(15), |v| {
            v["records"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| r["fields"]["a1[0]"].as_str().is_some_and(|s| s.starts_with(&hex_head)))
            })
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

/// With no config, `run` loads the embedded default rule set (self-exclusion rule first) and puts
/// the kernel's rules back as they were when it stops; auditctl-loaded rules from before survive.
#[test]
fn default_rules_are_loaded_and_the_previous_rules_restored() {
    let guard = KernelGuard::take();
    let key = marker("pre");
    auditctl(&["-w", "/etc/hosts", "-p", "wa", "-k", &key]);
    let before = AuditClient::open().unwrap().list_rules().unwrap();
    let mut daemon = Daemon::start(&["run"]);
    daemon.wait_registered(Duration::from_secs(10));
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["rules", "list"])
        .output()
        .expect("rules list");
    let text = String::from_utf8_lossy(&listed.stdout);
    let first = text.lines().next().unwrap_or_default();
    // Tied to our own exe too, so that a stale one (after kill -9) cannot hide a recycled pid.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_auditrelay")).expect("exe");
    assert_eq!(
        first,
        format!("-a never,exit -S all -F pid={} -F exe={}", daemon.pid(), exe.display()),
        "self-exclusion rule first:\n{text}"
    );
    assert!(text.contains("-S execve"), "default rules watch execve:\n{text}");
    assert!(!text.contains(&key), "the rule set replaces what was loaded:\n{text}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
    assert_eq!(AuditClient::open().unwrap().list_rules().unwrap(), before, "rules from before start are back");
    assert_eq!(guard.status().pid, 0);
}

/// A rule file with an error must not leave the host unaudited (issue 10: boot fails safe): the
/// daemon names file:line, falls back to the embedded default rules and keeps running; at exit the
/// kernel gets back exactly what it had.
#[test]
fn bad_rules_fall_back_to_the_embedded_defaults_and_keep_running() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("badrules");
    let cache = dir.path("cache");
    let extra = format!("cache_dir = {:?}\n", cache.display().to_string());
    let config = dir.config_with_rules("-a always,exit -F arch=b64 -S execve\n-a always,exit -S notasyscall\n", &extra);
    let log = dir.path("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--config", &config])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("run");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let rules = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["rules", "list"]).output().expect("rules list");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if guard.status().pid == child.id() && text.contains("-F key=exec") {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(std::time::Instant::now() < deadline, "no fallback rules loaded:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !rules.lines().any(|l| l.trim() == "-a always,exit -F arch=b64 -S execve"),
        "the broken set must not be half-applied:\n{rules}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(err.contains("test.rules:2"), "names file:line: {err}");
    assert!(err.contains("embedded"), "says it fell back: {err}");
    assert_eq!(AuditClient::open().unwrap().list_rules().unwrap(), guard.rules_before(), "rules put back");
    let after = guard.status();
    assert_eq!(after.pid, 0);
    assert_eq!((after.enabled, after.backlog_limit), (guard.before().enabled, guard.before().backlog_limit));
}

/// SIGHUP reloads the rule sources: the kernel gets the new set, the self-exclusion rule stays
/// first; a broken edit keeps the current rules.
#[test]
fn sighup_reloads_rules_and_a_bad_edit_keeps_the_current_ones() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("hup");
    let config = dir.config_with_rules("-w /etc/hosts -p wa -k hup-one\n", "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let list = || {
        let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["rules", "list"]).output().expect("rules list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = list();
            if text.contains(want) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "rules never showed {want:?}:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("-k hup-one");
    let hup = || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::Signal::SIGHUP)
            .expect("SIGHUP")
    };

    std::fs::write(dir.path("test.rules"), "-w /etc/passwd -p wa -k hup-two\n").expect("edit rules");
    hup();
    let text = wait_for("-k hup-two");
    assert!(!text.contains("hup-one"), "old rule removed:\n{text}");
    assert!(
        text.lines().next().is_some_and(|l| l.starts_with("-a never,exit -S all -F pid=")),
        "self-exclusion first:\n{text}"
    );

    std::fs::write(dir.path("test.rules"), "-w /etc/group -p wa -k hup-three\n-a always,exit -S nosuchcall\n")
        .expect("bad edit");
    hup();
    std::thread::sleep(Duration::from_secs(1));
    let text = list();
    assert!(text.contains("hup-two") && !text.contains("hup-three"), "bad set not applied:\n{text}");
    assert_eq!(daemon.child.try_wait().expect("wait"), None, "a bad reload does not stop the daemon");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
}

/// Records the kernel drops for a full backlog consume no serial, so only the kernel's `lost`
/// counter shows them: a stalled daemon (SIGSTOP) with a tiny backlog and no backlog wait must
/// produce a `kernel_lost` notice in-band whose count matches the kernel counter's increase.
#[test]
fn kernel_backlog_loss_is_announced_in_band() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("lost");
    let key = marker("lost");
    let config = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
        "[kernel]\nbacklog_limit = 64\nbacklog_wait_time = 0\n[netlink]\nreceive_buffer = \"32KiB\"\nlost_poll_interval = \"1s\"\n",
    );
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let lost_before = guard.status().lost;
    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    for i in 0..400 {
        Command::new("/bin/true").arg(format!("{key}-{i}")).status().expect("marker");
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let lost_after = guard.status().lost;
    assert!(lost_after > lost_before, "the stalled daemon made the kernel drop records ({lost_before} → {lost_after})");
    let notice =
        daemon.wait_for(Duration::from_secs(10), |v| v["loss"]["kind"] == "kernel_lost").expect("kernel_lost notice");
    let mut announced = notice["loss"]["records"].as_u64().expect("records");
    // The drop may straddle two polls: add any later notice.
    if let Some(more) = daemon.wait_for(Duration::from_secs(2), |v| v["loss"]["kind"] == "kernel_lost" && v != &notice)
    {
        announced += more["loss"]["records"].as_u64().expect("records");
    }
    assert_eq!(announced, u64::from(lost_after - lost_before), "notice counts what the kernel counted: {notice}");
    let (exit, _) = daemon.terminate();
    assert!(exit.success());
}
