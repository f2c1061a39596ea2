//! The rule compiler and loader against the real kernel and the real auditctl (root, auditd's
//! auditctl installed). Each test holds the exclusive flock on /tmp/auditrelay-kernel.lock and
//! puts the kernel's rules and status back as it found them, also when an assertion fails (the
//! guard restores on drop, which runs during unwinding). Without root the tests say so and pass
//! vacuously — run them as root (tests/run-all.sh does).
//!
//! No test here ever applies `-e 2`, `-f 2` or `--loginuid-immutable`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::fs::File;
use std::process::Command;

use auditrelay::netlink::client::AuditClient;
use auditrelay::netlink::status::{mask, AuditStatus};
use auditrelay::rules::ast::Line;
use auditrelay::rules::compile;
use auditrelay::rules::data::{unhex, RuleData};
use auditrelay::rules::lex::{lex, Lexed};
use auditrelay::rules::parse::{parse_words, SystemHost};
use auditrelay::rules::print;
use auditrelay::rules::sync::{self, Permissions};
use nix::fcntl::{Flock, FlockArg};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rules");

struct KernelGuard {
    _lock: Flock<File>,
    rules: Vec<Vec<u8>>,
    status: AuditStatus,
}

impl KernelGuard {
    fn take() -> Option<KernelGuard> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("rules_kernel: not root, kernel tests skipped");
            return None;
        }
        let f = File::options().create(true).append(true).open("/tmp/auditrelay-kernel.lock").unwrap();
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
        let mut c = AuditClient::open().unwrap();
        let status = c.status().unwrap();
        assert_ne!(status.enabled, 2, "kernel audit rules are locked (enabled=2)");
        let rules = c.list_rules().unwrap();
        Some(KernelGuard { _lock: lock, rules, status })
    }
}

fn delete_all(c: &mut AuditClient) {
    for r in c.list_rules().unwrap() {
        c.delete_rule(&r).unwrap();
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        let Ok(mut c) = AuditClient::open() else { return };
        if let Ok(now) = c.list_rules() {
            for r in now {
                let _ = c.delete_rule(&r);
            }
        }
        for r in &self.rules {
            let _ = c.add_rule(r);
        }
        let s = &self.status;
        let restore = AuditStatus {
            mask: mask::BACKLOG_LIMIT | mask::BACKLOG_WAIT_TIME | mask::RATE_LIMIT | mask::FAILURE | mask::ENABLED,
            backlog_limit: s.backlog_limit,
            backlog_wait_time: s.backlog_wait_time,
            rate_limit: s.rate_limit,
            failure: s.failure,
            enabled: s.enabled,
            ..Default::default()
        };
        let _ = c.set_status(&restore);
    }
}

fn words(line: &str) -> Vec<String> {
    match lex(line) {
        Lexed::Words(w) => w,
        _ => Vec::new(),
    }
}

/// Load one line with auditctl; the kernel listing afterwards (None when refused).
fn auditctl_listing(c: &mut AuditClient, w: &[String]) -> Option<Vec<Vec<u8>>> {
    let ok = Command::new("auditctl").args(w).output().unwrap().status.success();
    let listed = c.list_rules().unwrap();
    delete_all(c);
    (ok && !listed.is_empty()).then_some(listed)
}

fn ours_listing(c: &mut AuditClient, data: &RuleData) -> Result<Vec<Vec<u8>>, String> {
    let res = c.add_rule(&data.encode()).map_err(|e| e.to_string());
    let listed = c.list_rules().unwrap();
    delete_all(c);
    res.map(|()| listed)
}

/// For every golden rule line: auditctl and auditrelay, each loading the line alone into the real
/// kernel, leave byte-identical AUDIT_LIST_RULES payloads (or are both refused), and `auditctl -l`'s
/// text of that state is what we print.
#[test]
fn auditctl_and_auditrelay_leave_identical_kernel_rules() {
    let Some(_guard) = KernelGuard::take() else { return };
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let text = std::fs::read_to_string(format!("{DIR}/goldens.jsonl")).unwrap();
    let (mut same, mut both_refused, mut newer) = (0, 0, 0);
    let mut failures = Vec::new();
    for l in text.lines() {
        let g: serde_json::Value = serde_json::from_str(l).unwrap();
        let line = g["line"].as_str().unwrap();
        let w = words(line);
        let Ok(Line::Rule(rule)) = parse_words(&w, &SystemHost) else { continue };
        if rule.op == auditrelay::rules::ast::RuleOp::Delete {
            continue;
        }
        if !rule.newer_syscalls.is_empty() {
            // auditctl 3.0.9 cannot express these; the kernel must take ours.
            match ours_listing(&mut c, &rule.data) {
                Ok(listed) => {
                    assert_eq!(listed, vec![rule.data.kernel_normalise().encode()], "{line}");
                    newer += 1;
                }
                Err(e) if e.contains("No such file") => both_refused += 1,
                Err(e) => failures.push(format!("{line}: kernel refused ours: {e}")),
            }
            continue;
        }
        let theirs = auditctl_listing(&mut c, &w);
        let ours = ours_listing(&mut c, &rule.data);
        match (theirs, ours) {
            (Some(t), Ok(o)) if t == o => {
                same += 1;
                if g["result"] == "accepted" {
                    // Same machine state as at capture: the golden bytes hold too.
                    let golden = unhex(g["payloads"][0].as_str().unwrap()).unwrap();
                    if o[0] != golden && g["line"].as_str().is_some_and(|l| !l.contains("-w ") && !l.contains("uid=") && !l.contains("gid=")) {
                        failures.push(format!("{line}: kernel bytes differ from the golden"));
                    }
                }
                let decoded: Vec<RuleData> = o.iter().map(|b| RuleData::decode(b).unwrap()).collect();
                if g["result"] == "accepted" && print::listing(&decoded) != g["listing"].as_str().unwrap() && !line.contains("-w ") {
                    failures.push(format!("{line}: listing text differs from auditctl -l"));
                }
            }
            (None, Err(_)) => both_refused += 1,
            (t, o) => failures.push(format!("{line}\n  auditctl: {:?}\n  ours: {:?}", t.map(|v| v.len()), o.map(|v| v.len()))),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(same > 900, "only {same} lines compared");
    eprintln!("rules_kernel: {same} identical, {both_refused} refused by both, {newer} newer-syscall lines loaded by us only");
}

/// `rules load` semantics on the real kernel: exact state, auditctl -l agrees, idempotent, and a
/// refusal midway leaves the previous rules in place.
#[test]
fn load_is_exact_idempotent_and_atomic() {
    let Some(_guard) = KernelGuard::take() else { return };
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.rules");
    let set = compile::compile_paths(&[std::path::Path::new(default)], &SystemHost).unwrap();
    let report = sync::load(&mut c, &set, Permissions::default()).unwrap();
    assert_eq!(report.unchanged, 0);
    let listed = sync::current_rules(&mut c).unwrap();
    assert_eq!(listed, set.desired);
    let auditctl_l = String::from_utf8(Command::new("auditctl").arg("-l").output().unwrap().stdout).unwrap();
    assert_eq!(print::listing(&listed), auditctl_l);
    assert_eq!(c.status().unwrap().backlog_limit, 8192);

    let again = sync::load(&mut c, &set, Permissions::default()).unwrap();
    assert!(again.steps.is_empty(), "{:?}", again.steps);

    let bad = compile::compile_text("bad.rules", "-w /etc/hosts -k new\n-w /nonexistent-dir-auditrelay/f -k missing\n", &SystemHost).unwrap();
    let err = sync::load(&mut c, &bad, Permissions::default()).unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(sync::current_rules(&mut c).unwrap(), set.desired);
}

/// `run`'s self-exclusion rule is the first exit rule while loaded and gone after removal.
#[test]
fn self_exclusion_rule_on_the_real_kernel() {
    let Some(_guard) = KernelGuard::take() else { return };
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let pid = std::process::id();
    let set = compile::compile_text("t.rules", "-a always,exit -F arch=b64 -S openat -k t\n", &SystemHost).unwrap();
    sync::load_for_daemon(&mut c, &set, pid, Permissions::default()).unwrap();
    let listed = sync::current_rules(&mut c).unwrap();
    assert_eq!(print::rule_text(&listed[0]), format!("-a never,exit -S all -F pid={pid}\n"));
    assert_eq!(listed.len(), 2);
    sync::remove_self_exclusion(&mut c, pid).unwrap();
    assert_eq!(sync::current_rules(&mut c).unwrap(), set.desired);
}
