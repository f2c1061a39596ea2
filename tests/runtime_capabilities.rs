//! Least privilege at run time (issue 9): started as root with every capability, the running
//! daemon holds CAP_AUDIT_CONTROL alone (plus CAP_AUDIT_READ with `--multicast`) in every thread's
//! effective, permitted and bounding sets, nothing inheritable or ambient, no_new_privs set — and
//! still does its whole job: events arrive, a file output is reopened on SIGUSR1 (logrotate), rules
//! reload on SIGHUP, and at SIGTERM the kernel's rules and settings are put back.
//! (tests/unit_capabilities.rs checks the systemd unit's bounding set instead.) Kernel tests:
//! root, the kernel lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use common::{auditctl, marker, Daemon, KernelGuard, TempDir};

const AUDIT_CONTROL: u64 = 1 << 30;
const AUDIT_READ: u64 = 1 << 37;

/// `(tid, CapInh, CapPrm, CapEff, CapBnd, CapAmb, NoNewPrivs)` of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, [u64; 5], u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let field = |name: &str| {
            let v = status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {status}"));
            v.trim().to_string()
        };
        let hex = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
        let caps = [hex("CapInh:"), hex("CapPrm:"), hex("CapEff:"), hex("CapBnd:"), hex("CapAmb:")];
        let name = format!("{} ({})", task.file_name().to_string_lossy(), field("Name:"));
        out.push((name, caps, field("NoNewPrivs:").parse().unwrap()));
    }
    out
}

/// Wait until every thread is down to `kept` (the drop happens early in start-up), then insist
/// on it for each set of each thread.
fn assert_only(pid: u32, kept: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = [0, kept, kept, kept, 0];
    while thread_caps(pid).iter().any(|(_, caps, _)| *caps != want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let threads = thread_caps(pid);
    assert!(threads.len() >= 3, "reader, outputs and the main thread at least: {threads:?}");
    for (name, caps, nnp) in &threads {
        let [inh, prm, eff, bnd, amb] = *caps;
        assert_eq!(eff, kept, "thread {name}: CapEff {eff:#x}, want {kept:#x}");
        assert_eq!(prm, kept, "thread {name}: CapPrm {prm:#x}, want {kept:#x}");
        assert_eq!(bnd, kept, "thread {name}: CapBnd {bnd:#x}, want {kept:#x}");
        assert_eq!((inh, amb), (0, 0), "thread {name}: inheritable/ambient");
        assert_eq!(*nnp, 1, "thread {name}: no_new_privs");
    }
}

fn signal(daemon: &Daemon, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), sig).expect("kill");
}

fn wait_file_contains(path: &std::path::Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn running_daemon_holds_audit_control_alone_and_still_works() {
    let guard = KernelGuard::take();
    let before = guard.status();
    let dir = TempDir::new("runcaps");
    let key = marker("runcaps");
    let events = dir.path("events.jsonl");
    let config = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
        &format!(
            "[spool]\ndir = {:?}\n[[output]]\ntype = \"file\"\npath = {:?}\n",
            dir.path("spool").display().to_string(),
            events.display().to_string()
        ),
    );
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    assert_only(daemon.pid(), AUDIT_CONTROL);

    // Events arrive through the spool into the file output, as root without CAP_DAC_OVERRIDE.
    // Registration comes before the rules are loaded: exec again until one is audited.
    let first = marker("runcaps-1");
    let arrived = (0..15).any(|_| {
        assert!(Command::new("/bin/true").arg(&first).status().unwrap().success());
        wait_file_contains(&events, &first, Duration::from_secs(2))
    });
    assert!(arrived, "event in the file output");

    // logrotate: move the file, SIGUSR1, the daemon creates a new one.
    let moved = dir.path("events.jsonl.1");
    std::fs::rename(&events, &moved).unwrap();
    signal(&daemon, nix::sys::signal::Signal::SIGUSR1);
    std::thread::sleep(Duration::from_millis(500));
    let second = marker("runcaps-2");
    assert!(Command::new("/bin/true").arg(&second).status().unwrap().success());
    assert!(wait_file_contains(&events, &second, Duration::from_secs(30)), "reopened file gets new events");

    // SIGHUP: the rule file is read and loaded again (a new rule appears in the kernel).
    let key2 = marker("runcaps-hup");
    std::fs::write(
        dir.path("test.rules"),
        format!("-a always,exit -F arch=b64 -S execve -k {key}\n-w /etc/hosts -p wa -k {key2}\n"),
    )
    .unwrap();
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    let listed = || {
        let out = Command::new("auditctl").arg("-l").output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&key2)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed() {
        assert!(Instant::now() < deadline, "SIGHUP reload did not load the new rule");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_only(daemon.pid(), AUDIT_CONTROL);

    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let rules = AuditClient::open().and_then(|mut c| c.list_rules()).unwrap();
    assert_eq!(rules, guard.rules_before(), "rules put back at exit");
    let after = guard.status();
    assert_eq!(after.pid, 0, "unregistered");
    assert_eq!((after.enabled, after.backlog_limit), (before.enabled, before.backlog_limit), "settings put back");
}

#[test]
fn multicast_daemon_keeps_audit_read_too() {
    let guard = KernelGuard::take();
    let key = marker("runcaps-mc");
    // Another daemon's job in real life: auditing on, a rule.
    auditctl(&["-e", "1"]);
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let mut daemon = Daemon::start(&["run", "--multicast"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while thread_caps(daemon.pid()).iter().any(|(_, caps, _)| caps[2] != AUDIT_CONTROL | AUDIT_READ) {
        assert!(Instant::now() < deadline, "capabilities not dropped: {:?}", thread_caps(daemon.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the reader time to start after the drop, then prove it receives.
    let arg = marker("runcaps-mc-exec");
    let event = (0..10).find_map(|_| {
        assert!(Command::new("/bin/true").arg(&arg).status().unwrap().success());
        daemon.wait_for(Duration::from_secs(3), |v| v.to_string().contains(&arg))
    });
    assert!(event.is_some(), "multicast events arrive after the drop");
    assert_only(daemon.pid(), AUDIT_CONTROL | AUDIT_READ);
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    drop(guard);
}
