//! The rule compiler against goldens captured from the real auditctl 3.0.9 and the real kernel
//! (tests/data/rules/regenerate.py). Pure: runs without root or a kernel.
//!
//! For every distinct rule line of the rule corpora:
//! - accepted by auditctl and the kernel → we accept it, `kernel_normalise(encode(line))` is
//!   byte-identical to what the kernel listed, and `print(decode(listed bytes))` is the
//!   `auditctl -l` text;
//! - rejected by auditctl → we reject it too, except lines auditctl 3.0.9 rejects only because its
//!   syscall table is older than the kernel's (listed below), which we accept because the kernel
//!   accepts them, and io_uring-list lines, which 3.0.9 rejects only because it predates io_uring
//!   support (auditctl 3.1 added the list; the kernel has had it since 5.16): we accept them as
//!   3.1+ does, and tests/rules_kernel.rs loads them into the real kernel;
//! - rejected by the kernel (ENOENT for missing watch parents, EINVAL, …) → we compile it (the
//!   kernel side is checked by tests/rules_kernel.rs);
//! - control lines → parsed as control lines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};

use auditrelay::rules::ast::Line;
use auditrelay::rules::data::{unhex, RuleData};
use auditrelay::rules::lex::{lex, Lexed};
use auditrelay::rules::parse::{parse_words, Host};
use auditrelay::rules::print;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rules");

/// The machine the goldens were captured on: which watched paths were directories, which users
/// and groups existed. auditctl consults exactly these while compiling.
struct RecordedHost {
    dirs: BTreeSet<String>,
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl Host for RecordedHost {
    fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }
    fn uid_by_name(&self, name: &str) -> Option<u32> {
        self.users.get(name).copied()
    }
    fn gid_by_name(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied()
    }
}

fn recorded_host() -> RecordedHost {
    let text = std::fs::read_to_string(format!("{DIR}/env.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let map = |k: &str| -> BTreeMap<String, u32> {
        v[k].as_object().unwrap().iter().map(|(n, id)| (n.clone(), id.as_u64().unwrap() as u32)).collect()
    };
    RecordedHost {
        dirs: v["dirs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect(),
        users: map("users"),
        groups: map("groups"),
    }
}

struct Golden {
    line: String,
    result: String,
    payloads: Vec<Vec<u8>>,
    listing: String,
    message: String,
}

fn goldens() -> Vec<Golden> {
    let text = std::fs::read_to_string(format!("{DIR}/goldens.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Golden {
                line: v["line"].as_str().unwrap().to_string(),
                result: v["result"].as_str().unwrap().to_string(),
                payloads: v["payloads"]
                    .as_array()
                    .map(|a| a.iter().map(|p| unhex(p.as_str().unwrap()).unwrap()).collect())
                    .unwrap_or_default(),
                listing: v["listing"].as_str().unwrap_or_default().to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

fn parse_line(line: &str, host: &RecordedHost) -> Result<Line, String> {
    match lex(line) {
        Lexed::Words(w) => parse_words(&w, host).map_err(|e| e.to_string()),
        other => Err(format!("lexed as {other:?}")),
    }
}

/// Syscalls auditctl 3.0.9 does not know but kernel 6.18 does: lines rejected only for these are
/// accepted by us on purpose.
const NEWER_THAN_AUDITCTL: &[&str] = &["fchmodat2", "file_setattr", "lsm_set_self_attr", "listmount", "statmount"];

#[test]
fn goldens_cover_the_corpora() {
    let g = goldens();
    assert!(g.len() > 1000, "goldens.jsonl has {} lines", g.len());
    assert!(g.iter().filter(|g| g.result == "accepted").count() > 900);
}

#[test]
fn accepted_lines_encode_to_the_kernel_listing_bytes() {
    let host = recorded_host();
    let mut failures = Vec::new();
    let mut checked = 0;
    for g in goldens().iter().filter(|g| g.result == "accepted") {
        let rule = match parse_line(&g.line, &host) {
            Ok(Line::Rule(r)) => r,
            other => {
                failures.push(format!("{}\n  we: {other:?}", g.line));
                continue;
            }
        };
        assert_eq!(g.payloads.len(), 1, "{}", g.line);
        let ours = rule.data.kernel_normalise().encode();
        if ours != g.payloads[0] {
            let theirs = RuleData::decode(&g.payloads[0]).unwrap();
            failures.push(format!("{}\n  kernel: {theirs:?}\n  ours:   {:?}", g.line, rule.data.kernel_normalise()));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{} of {checked} differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn kernel_listing_prints_as_auditctl_l() {
    let mut failures = Vec::new();
    for g in goldens().iter().filter(|g| g.result == "accepted") {
        let rules: Vec<RuleData> = g.payloads.iter().map(|p| RuleData::decode(p).unwrap()).collect();
        let text = print::listing(&rules);
        if text != g.listing {
            failures.push(format!("{}\n  auditctl -l: {}  we:          {}", g.line, g.listing, text));
        }
        // Our own listing of our own rule prints the same (what `rules list` shows after `rules load`).
    }
    assert!(failures.is_empty(), "{} differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn rejected_lines_are_rejected_except_newer_syscalls() {
    let host = recorded_host();
    let mut failures = Vec::new();
    let mut accepted_on_purpose = Vec::new();
    let mut io_uring = Vec::new();
    for g in goldens().iter().filter(|g| g.result == "rejected_auditctl") {
        let newer = NEWER_THAN_AUDITCTL.iter().find(|s| g.message.contains(&format!("Syscall name unknown: {s}")));
        // auditctl 3.0.9 has no io_uring list, so it calls the list word a bad keyword; that is
        // its age, not the line's fault (the same reasoning as for newer syscalls).
        let predates_io_uring = g.message.contains("bad keyword") && g.message.contains("io_uring");
        match (parse_line(&g.line, &host), newer) {
            (Ok(Line::Rule(r)), None)
                if predates_io_uring && r.data.list() == auditrelay::rules::data::FILTER_URING_EXIT =>
            {
                io_uring.push(g.line.clone())
            }
            (Err(_), None) => {}
            (Ok(Line::Rule(r)), Some(_)) if !r.newer_syscalls.is_empty() => accepted_on_purpose.push(g.line.clone()),
            (res, _) => failures.push(format!("{}\n  auditctl: {}\n  we: {res:?}", g.line, g.message)),
        }
    }
    assert!(failures.is_empty(), "{} differ:\n{}", failures.len(), failures.join("\n"));
    assert!(accepted_on_purpose.len() >= 20, "{accepted_on_purpose:?}");
    assert!(!io_uring.is_empty(), "the corpus has io_uring lines (tests/data/rules/edge-cases.rules)");
}

#[test]
fn kernel_rejected_lines_still_compile() {
    let host = recorded_host();
    for g in goldens().iter().filter(|g| g.result == "rejected_kernel" || g.result == "no_rule") {
        assert!(matches!(parse_line(&g.line, &host), Ok(Line::Rule(_))), "{}: {}", g.line, g.message);
    }
}

#[test]
fn control_lines_parse_as_control() {
    let host = recorded_host();
    for g in goldens().iter().filter(|g| g.result == "control") {
        assert!(matches!(parse_line(&g.line, &host), Ok(Line::Control(_))), "{}", g.line);
    }
}
