//! The daemon runs with no more privilege than packaging/auditrelay.service gives it: the unit's
//! CapabilityBoundingSet= and NoNewPrivileges=, applied here with setpriv(1) (util-linux) because
//! systemd is not PID 1 in CI. It registers, loads rules, spools and emits an event, and at SIGTERM
//! restores the kernel, all within that bounding set. Kernel test: root, the kernel lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{marker, Daemon, KernelGuard, TempDir};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/auditrelay.service");

/// `CAP_AUDIT_CONTROL CAP_NET_ADMIN` → `-all,+audit_control,+net_admin` (setpriv's syntax).
fn bounding_set_from_unit() -> String {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let caps =
        text.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("unit sets CapabilityBoundingSet=");
    let mut spec = String::from("-all");
    for cap in caps.split_whitespace() {
        spec.push_str(",+");
        spec.push_str(&cap.trim_start_matches("CAP_").to_ascii_lowercase());
    }
    spec
}

#[test]
fn daemon_runs_within_the_units_capability_bounding_set() {
    let guard = KernelGuard::take();
    let before = guard.status();
    let dir = TempDir::new("unitcaps");
    let key = marker("unitcaps");
    let spool = dir.path("spool");
    let config = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
        &format!(
            "[netlink]\npriority_boost = 4\n[spool]\ndir = {:?}\n[[output]]\ntype = \"stdout\"\n",
            spool.display().to_string()
        ),
    );
    let bounding = bounding_set_from_unit();
    let ready = common::Ready::new();
    let mut cmd = Command::new("setpriv");
    ready.pass_to(&mut cmd);
    let mut child = cmd
        .args(["--bounding-set", &bounding, "--inh-caps=-all", "--no-new-privs", "--"])
        .arg(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--config", &config])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run setpriv (util-linux)");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // setpriv execs the daemon: same pid.
    let mut daemon = Daemon { child, lines, seen: Vec::new(), ready: Some(ready) };
    daemon.wait_registered(Duration::from_secs(10));

    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let cap = |name: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    // CAP_NET_ADMIN 12, CAP_SYS_NICE 23, CAP_AUDIT_CONTROL 30, CAP_AUDIT_READ 37.
    let allowed = (1u64 << 12) | (1 << 23) | (1 << 30) | (1 << 37);
    assert_eq!(cap("CapBnd:") & !allowed, 0, "bounding set wider than the unit's:\n{status}");
    assert_eq!(cap("CapEff:") & !allowed, 0, "effective capabilities outside the unit's set:\n{status}");
    assert_eq!(cap("CapEff:") & (1 << 23), 0, "CAP_SYS_NICE is dropped once the priority is raised:\n{status}");
    // [netlink] priority_boost took effect within the unit's set: nice is field 19.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
    let nice: i32 = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(16).unwrap().parse().unwrap();
    assert_eq!(nice, -4, "the main (processing) thread runs at nice -4: {stat}");

    let arg = marker("unitcaps-exec");
    let lost_before = guard.status().lost;
    assert!(Command::new("/bin/echo").arg(&arg).output().unwrap().status.success());
    // Generous: the spool and the stdout output sit between the kernel and us, on a shared machine.
    let event = daemon.wait_for(Duration::from_secs(45), |v| v.to_string().contains(&arg));
    assert!(
        event.is_some(),
        "no event for the marker from the daemon running within the unit's capabilities \
         ({} lines seen; kernel lost {} records meanwhile)",
        daemon.seen.len(),
        guard.status().lost.wrapping_sub(lost_before)
    );
    assert!(spool.is_dir(), "the spool was created");

    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let after = guard.status();
    assert_eq!(after.pid, 0, "unregistered at exit");
    assert_eq!((after.enabled, after.backlog_limit), (before.enabled, before.backlog_limit), "settings restored");
}
