//! The rule compiler and loader against the real kernel and the real auditctl (root, auditd's
//! auditctl installed). Each test holds the exclusive flock on /tmp/auditrelay-kernel.lock and
//! puts the kernel's rules and status back as it found them, also when an assertion fails (the
//! guard restores on drop, which runs during unwinding). They need root and fail without it.
//!
//! No test here ever applies `-e 2`, `-f 2` or `--loginuid-immutable`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::KernelGuard;

use std::process::Command;

use auditrelay::netlink::client::AuditClient;
use auditrelay::rules::ast::Line;
use auditrelay::rules::compile;
use auditrelay::rules::data::{self as rule_data, unhex, FieldEntry, RuleData, FILTER_URING_EXIT};
use auditrelay::rules::lex::{lex, Lexed};
use auditrelay::rules::parse::{parse_words, SystemHost};
use auditrelay::rules::print;
use auditrelay::rules::sync::{self, Permissions};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rules");

fn delete_all(c: &mut AuditClient) {
    for r in c.list_rules().unwrap() {
        c.delete_rule(&r).unwrap();
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
    let _guard = KernelGuard::take();
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
        if !rule.newer_syscalls.is_empty() || rule.data.list() == FILTER_URING_EXIT {
            // auditctl 3.0.9 cannot express these (syscalls newer than its table, the io_uring
            // list it predates); the kernel must take ours.
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
                    if o[0] != golden
                        && g["line"]
                            .as_str()
                            .is_some_and(|l| !l.contains("-w ") && !l.contains("uid=") && !l.contains("gid="))
                    {
                        failures.push(format!("{line}: kernel bytes differ from the golden"));
                    }
                }
                let decoded: Vec<RuleData> = o.iter().map(|b| RuleData::decode(b).unwrap()).collect();
                if g["result"] == "accepted"
                    && print::listing(&decoded) != g["listing"].as_str().unwrap()
                    && !line.contains("-w ")
                {
                    failures.push(format!("{line}: listing text differs from auditctl -l"));
                }
            }
            (None, Err(_)) => both_refused += 1,
            (t, o) => {
                failures.push(format!("{line}\n  auditctl: {:?}\n  ours: {:?}", t.map(|v| v.len()), o.map(|v| v.len())))
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(same > 900, "only {same} lines compared");
    eprintln!(
        "rules_kernel: {same} identical, {both_refused} refused by both, {newer} newer-syscall lines loaded by us only"
    );
}

/// `rules load` semantics on the real kernel: exact state, auditctl -l agrees, idempotent, and a
/// refusal midway leaves the previous rules in place.
#[test]
fn load_is_exact_idempotent_and_atomic() {
    let _guard = KernelGuard::take();
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

    let bad = compile::compile_text(
        "bad.rules",
        "-w /etc/hosts -k new\n-w /nonexistent-dir-auditrelay/f -k missing\n",
        &SystemHost,
    )
    .unwrap();
    let err = sync::load(&mut c, &bad, Permissions::default()).unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(sync::current_rules(&mut c).unwrap(), set.desired);
}

/// `run`'s self-exclusion rule is the first exit rule while loaded, tied to the daemon's exe (the
/// kernel takes `-F exe=` on a never,exit rule and auditctl -l prints it as we do), and gone after
/// removal.
#[test]
fn self_exclusion_rule_on_the_real_kernel() {
    let _guard = KernelGuard::take();
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let pid = std::process::id();
    let exe = sync::own_exe().unwrap();
    let set = compile::compile_text("t.rules", "-a always,exit -F arch=b64 -S openat -k t\n", &SystemHost).unwrap();
    sync::load_for_daemon(&mut c, &set, pid, &exe, Permissions::default()).unwrap();
    let listed = sync::current_rules(&mut c).unwrap();
    let expected = format!("-a never,exit -S all -F pid={pid} -F exe={}\n", String::from_utf8_lossy(&exe));
    assert_eq!(print::rule_text(&listed[0]), expected);
    let auditctl_l = String::from_utf8(Command::new("auditctl").arg("-l").output().unwrap().stdout).unwrap();
    assert_eq!(auditctl_l.lines().next().map(|l| format!("{l}\n")), Some(expected));
    assert_eq!(sync::self_exclusion_of(&listed[0]), Some((pid, exe.clone())));
    assert_eq!(listed.len(), 2);
    sync::remove_self_exclusion(&mut c, pid, &exe).unwrap();
    assert_eq!(sync::current_rules(&mut c).unwrap(), set.desired);
}

/// io_uring rules (auditctl 3.1+ syntax, which auditctl 3.0.9 cannot express) through the real
/// kernel: `auditrelay rules load` puts them in, the kernel lists them back byte-identical to what
/// we compiled, decode + print gives the text upstream `auditctl -l` prints, `-d` lines delete
/// them, and a field we refuse on this list (perm) is one the kernel refuses too.
#[test]
fn io_uring_rules_round_trip_through_the_kernel() {
    let _guard = KernelGuard::take();
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let rules = "-a always,exit -F arch=b64 -S openat -k sys-open\n\
                 -a always,io_uring -S openat,openat2 -F auid>=1000 -F auid!=unset -k uring-open\n\
                 -a always,io_uring -S connect,bind,listen -k uring-net\n\
                 -A never,io_uring -F uid=0 -F exe=/usr/bin/true\n\
                 -a always,io_uring -S 22,sendmsg -F gid!=0 -F exe!=/usr/bin/curl\n\
                 -a always,io_uring -S all -k uring-all\n";
    // What upstream auditctl -l prints for that state: lists in kernel order (exit 4, io_uring 7),
    // -A first within its list, operations in bit order, numbers where the table has no name,
    // `-S all` for the full mask of a rule without -S, the table's names for an explicit `-S all`.
    let expected = "-a always,exit -F arch=b64 -S openat -F key=sys-open\n\
                    -a never,io_uring -S all -F uid=0 -F exe=/usr/bin/true\n\
                    -a always,io_uring -S openat,openat2 -F auid>=1000 -F auid!=-1 -F key=uring-open\n\
                    -a always,io_uring -S connect,bind,listen -F key=uring-net\n\
                    -a always,io_uring -S sendmsg,22 -F gid!=0 -F exe!=/usr/bin/curl\n\
                    -a always,io_uring -S sendmsg,recvmsg,accept,connect,fallocate,openat,close,openat2,shutdown,renameat,unlinkat,mkdirat,symlinkat,linkat,msg_ring,fsetxattr,setxattr,fgetxattr,getxattr,uring_cmd,sendmsg_zc,waitid,futex_wait,futex_wake,futex_waitv,fixed_fd_install,ftruncate,bind,listen -F key=uring-all\n";
    let dir = std::env::temp_dir().join(format!("auditrelay-uring-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("uring.rules");
    std::fs::write(&file, rules).unwrap();
    let bin = env!("CARGO_BIN_EXE_auditrelay");
    let out = Command::new(bin).args(["rules", "load", file.to_str().unwrap()]).output().unwrap();
    assert!(
        out.status.success(),
        "rules load: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let set = compile::compile_text("uring.rules", rules, &SystemHost).unwrap();
    let listed = c.list_rules().unwrap();
    let ours: Vec<Vec<u8>> = set.desired.iter().map(RuleData::encode).collect();
    assert_eq!(listed, ours, "kernel bytes differ from what we compiled");
    let decoded: Vec<RuleData> = listed.iter().map(|b| RuleData::decode(b).unwrap()).collect();
    assert_eq!(print::listing(&decoded), expected);
    let cli = Command::new(bin).args(["rules", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&cli.stdout), expected);

    // -d with the same words deletes exactly that rule.
    let del = "-d always,io_uring -S connect,bind,listen -k uring-net\n-d never,io_uring -F uid=0 -F exe=/usr/bin/true\n-d always,io_uring -S all -k uring-all\n";
    for l in del.lines() {
        let Ok(Line::Rule(r)) = parse_words(&words(l), &SystemHost) else { panic!("{l}") };
        c.delete_rule(&r.data.encode()).unwrap();
    }
    let left: Vec<RuleData> = c.list_rules().unwrap().iter().map(|b| RuleData::decode(b).unwrap()).collect();
    assert_eq!(
        print::listing(&left),
        "-a always,exit -F arch=b64 -S openat -F key=sys-open\n\
         -a always,io_uring -S openat,openat2 -F auid>=1000 -F auid!=-1 -F key=uring-open\n\
         -a always,io_uring -S sendmsg,22 -F gid!=0 -F exe!=/usr/bin/curl\n"
    );

    // We refuse perm on io_uring at parse time; the kernel refuses it too (EINVAL).
    let mut perm = RuleData::new(FILTER_URING_EXIT, rule_data::ACTION_ALWAYS);
    perm.set_all_syscalls();
    perm.fields.push(FieldEntry::num(rule_data::F_PERM, rule_data::OP_EQUAL, rule_data::PERM_WRITE));
    let err = c.add_rule(&perm.encode()).unwrap_err();
    assert!(err.to_string().contains("Invalid argument"), "{err}");
    assert!(parse_words(&words("-a always,io_uring -F perm=w"), &SystemHost).is_err());

    delete_all(&mut c);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Numeric `-S` over auditctl's whole range (tests/data/rules/numeric-syscalls.jsonl, captured
/// from auditctl 3.0.9): our rule for every spelling auditctl accepts, loaded into the real
/// kernel, lists as byte-identical to auditctl's (SHA-256 of the payload), and `rules load` of it
/// (which lists back and verifies) succeeds — also for 2032–2047, the bits the kernel expands
/// into syscall classes.
#[test]
fn numeric_syscalls_leave_the_kernel_rule_auditctl_leaves() {
    use sha2::{Digest, Sha256};
    let _guard = KernelGuard::take();
    let mut c = AuditClient::open().unwrap();
    delete_all(&mut c);
    let text = std::fs::read_to_string(format!("{DIR}/numeric-syscalls.jsonl")).unwrap();
    let (mut same, mut failures) = (0, Vec::new());
    for l in text.lines() {
        let g: serde_json::Value = serde_json::from_str(l).unwrap();
        if g["result"] != "accepted" {
            continue;
        }
        let s = g["s"].as_str().unwrap();
        let line = format!("-a always,exit -F arch=b64 -S {s}");
        let Ok(Line::Rule(rule)) = parse_words(&words(&line), &SystemHost) else {
            failures.push(format!("{line}: we refuse it"));
            continue;
        };
        match ours_listing(&mut c, &rule.data) {
            Ok(listed) if listed.len() == 1 => {
                let sha = rule_data::hex(Sha256::digest(&listed[0]).as_slice());
                if sha == g["sha256"].as_str().unwrap() {
                    same += 1;
                } else {
                    failures.push(format!("{line}: the kernel lists ours differently from auditctl's"));
                }
            }
            other => failures.push(format!("{line}: {other:?}")),
        }
        let set = compile::compile_text("n.rules", &line, &SystemHost).unwrap();
        match sync::load(&mut c, &set, Permissions::default()) {
            Ok(_) => {
                let listed = c.list_rules().unwrap();
                let sha = listed.first().map(|p| rule_data::hex(Sha256::digest(p).as_slice()));
                if listed.len() != 1 || sha.as_deref() != g["sha256"].as_str() {
                    failures.push(format!("{line}: after rules load the kernel holds another rule than auditctl's"));
                }
                // Loading the same set again changes nothing the kernel lists.
                if let Err(e) = sync::load(&mut c, &set, Permissions::default()) {
                    failures.push(format!("{line}: second rules load: {e}"));
                }
                if c.list_rules().unwrap() != listed {
                    failures.push(format!("{line}: second rules load changed the kernel's rule"));
                }
            }
            Err(e) => failures.push(format!("{line}: rules load: {e}")),
        }
        delete_all(&mut c);
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(same >= 2048, "only {same} spellings compared");
}
