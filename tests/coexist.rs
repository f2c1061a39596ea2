//! Co-existence with whatever else owns the kernel's audit configuration (issue 9), against the
//! real kernel: `[kernel]` keys left out of the config are not applied, and `[rules] manage =
//! false` leaves the kernel's rules alone. Kernel tests: root, the kernel lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use auditrelay::rules::data::RuleData;
use auditrelay::rules::sync::self_exclusion;
use common::{auditctl, marker, Daemon, KernelGuard, TempDir};

/// The kernel's rules as auditctl -l prints them (readable in assertion messages).
fn rules_now() -> Vec<String> {
    let raw = AuditClient::open().and_then(|mut c| c.list_rules()).expect("AUDIT_LIST_RULES");
    raw.iter().map(|r| RuleData::decode(r).map_or_else(|e| format!("undecodable: {e}"), |r| r.to_string())).collect()
}

fn signal(daemon: &Daemon, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), sig).expect("kill");
}

/// Run `/bin/true <fresh marker>` until its event arrives: proves the daemon is past start-up
/// (rules loaded, `[kernel]` applied, reader running; registration comes before the rules, so the
/// first exec may go unaudited) and that the rule `key` audits exec.
fn exec_arrives(daemon: &mut Daemon, key: &str) {
    let arg = marker("coexist-exec");
    let event = (0..30).find_map(|_| {
        assert!(Command::new("/bin/true").arg(&arg).status().unwrap().success());
        daemon.wait_for(Duration::from_secs(1), |v| v.to_string().contains(&arg))
    });
    let event = event.unwrap_or_else(|| panic!("no event for the exec marker ({} lines seen)", daemon.seen.len()));
    assert!(event.to_string().contains(key), "the event was audited by the rule with key {key}: {event}");
}

/// Regression (issue 9): `[kernel] enabled` and `backlog_limit` were applied when the config left
/// them out, after the rules, so a rule file's `-b 32768` was put back to 8192.
#[test]
fn rule_file_backlog_limit_is_not_put_back_to_the_config_default() {
    let guard = KernelGuard::take();
    let before = guard.before();
    let wanted = if before.backlog_limit == 32768 { 32769 } else { 32768 };
    let dir = TempDir::new("coexist-b");
    let key = marker("coexist-b");
    let config = dir.config_with_rules(&format!("-b {wanted}\n-a always,exit -F arch=b64 -S execve -k {key}\n"), "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    exec_arrives(&mut daemon, &key);
    assert_eq!(guard.status().backlog_limit, wanted, "the rule file's -b is in force while running");
    assert_eq!(guard.status().enabled, 1);
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let after = guard.status();
    assert_eq!((after.backlog_limit, after.enabled), (before.backlog_limit, before.enabled), "put back at exit");
}

/// A written `[kernel]` key still wins over the rule file.
#[test]
fn written_kernel_key_wins_over_the_rule_file() {
    let guard = KernelGuard::take();
    let before = guard.before();
    let dir = TempDir::new("coexist-kb");
    let key = marker("coexist-kb");
    let config = dir.config_with_rules(
        &format!("-b 32768\n-a always,exit -F arch=b64 -S execve -k {key}\n"),
        "[kernel]\nbacklog_limit = 16384\n",
    );
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    exec_arrives(&mut daemon, &key);
    assert_eq!(guard.status().backlog_limit, 16384);
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(guard.status().backlog_limit, before.backlog_limit);
}

/// `[rules] manage = false`: the rules another tool loaded stay (nothing deleted, nothing
/// re-added), only the daemon's own self-exclusion rule is put at their head and removed at exit;
/// SIGHUP reloads nothing but puts the self-exclusion rule back after a foreign `auditctl -D`;
/// settings the other tool changes meanwhile are not "restored" at exit.
#[test]
fn unmanaged_rules_are_left_alone() {
    let guard = KernelGuard::take();
    let before = guard.before();
    let key = marker("coexist-foreign");
    // What augenrules would have loaded: a rule of its own.
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let foreign = rules_now();
    // Left by an auditrelay killed with -9 (pid-only form of older versions; no such pid runs):
    // ours to remove, and the only rule besides our own that is touched.
    auditctl(&["-A", "never,exit", "-S", "all", "-F", "pid=4194000"]);
    let dir = TempDir::new("coexist-unmanaged");
    let config = dir.path("auditrelay.toml");
    std::fs::write(&config, "[rules]\nmanage = false\n").unwrap();
    let mut daemon = Daemon::start(&["run", "--config", config.to_str().unwrap()]);
    daemon.wait_registered(Duration::from_secs(10));
    exec_arrives(&mut daemon, &key);

    let exe = std::fs::read_link(format!("/proc/{}/exe", daemon.pid())).unwrap();
    let ours = self_exclusion(daemon.pid(), exe.as_os_str().as_encoded_bytes()).to_string();
    let is_ours = |rule: &String, _pid: u32| *rule == ours;
    let running = rules_now();
    assert!(is_ours(&running[0], daemon.pid()), "the self-exclusion rule heads the exit list");
    assert_eq!(&running[1..], &foreign[..], "every foreign rule stays, in order; the stale one is gone");
    assert_eq!(guard.status().backlog_limit, before.backlog_limit, "no [kernel] key written: not touched");

    // SIGHUP: no reload.
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(rules_now(), running, "SIGHUP loads nothing with manage = false");

    // The rules' owner reloads (`-D`, its rules, a new -b); SIGHUP puts our rule back at the head.
    auditctl(&["-D"]);
    auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let foreign_b = if before.backlog_limit == 4321 { 4322 } else { 4321 };
    auditctl(&["-b", &foreign_b.to_string()]);
    signal(&daemon, nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rules_now().first().is_some_and(|r| is_ours(r, daemon.pid())) {
        assert!(Instant::now() < deadline, "SIGHUP did not put the self-exclusion rule back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(&rules_now()[1..], &foreign[..]);
    exec_arrives(&mut daemon, &key);

    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(rules_now(), foreign, "only the self-exclusion rule is gone at exit");
    let after = guard.status();
    assert_eq!(after.pid, 0, "unregistered");
    assert_eq!(after.backlog_limit, foreign_b, "the owner's -b is not put back by auditrelay");
}
