//! `auditrelay replay` on audit.log text as real systems write it: auditd's ENRICHED format,
//! standalone records logged inside an audited syscall, serial gaps open at the end of input,
//! auditd < 3.0's lines without the `:` after the stamp, type names newer than this build, CRLF
//! line endings, records overtaken by one stamped seconds later, and text that is not audit.log.
//!
//! The inputs in tests/data/replay-compat/ are written for these tests in the shapes found in the
//! test data of laurel, go-libaudit and audit-userspace (each file says which fault it reproduces
//! through its name); every test drives the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_auditrelay");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/replay-compat");

/// What one replay printed: JSON lines on stdout, messages on stderr (the summary line last).
struct Replay {
    lines: Vec<Value>,
    stderr: Vec<String>,
}

impl Replay {
    fn events(&self) -> Vec<&Value> {
        self.lines.iter().filter(|l| l.get("records").is_some()).collect()
    }

    fn losses(&self) -> Vec<&Value> {
        self.lines.iter().filter_map(|l| l.get("loss")).collect()
    }

    fn summary(&self) -> &str {
        self.stderr.last().map(String::as_str).unwrap_or_default()
    }

    /// The event with this serial; exactly one must exist.
    fn event(&self, serial: u64) -> &Value {
        let found: Vec<_> = self.events().into_iter().filter(|e| e["sequence"] == serial).collect();
        assert_eq!(found.len(), 1, "one event with serial {serial}: {:#?}", self.lines);
        found[0]
    }
}

fn replay(file: &str) -> Replay {
    let path = format!("{DATA}/{file}");
    let out = Command::new(BIN).args(["replay", &path]).output().expect("run auditrelay replay");
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8(out.stdout)
        .expect("UTF-8 JSON")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect();
    Replay { lines, stderr }
}

fn types(event: &Value) -> Vec<&str> {
    event["records"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect()
}

fn record<'a>(event: &'a Value, kind: &str) -> &'a Value {
    event["records"].as_array().unwrap().iter().find(|r| r["type"] == kind).unwrap_or_else(|| panic!("{kind}"))
}

#[test]
fn enriched_braced_values_are_one_value() {
    let r = replay("enriched-sockaddr.log");
    assert_eq!(r.events().len(), 2);
    let unix = record(r.event(5001), "SOCKADDR");
    assert_eq!(unix["interpreted"], serde_json::json!({"SADDR": "{ saddr_fam=local path=/run/example/sock }"}));
    assert!(unix["interpreted"].get("_words").is_none() && unix["interpreted"].get("path").is_none());
    let netlink = record(r.event(5002), "SOCKADDR");
    assert_eq!(netlink["interpreted"]["SADDR"], "{ fam=netlink nlnk-fam=16 nlnk-pid=0 }");
    // The rest of the ENRICHED section is as before: quoted names unquoted.
    assert_eq!(record(r.event(5001), "SYSCALL")["interpreted"]["AUID"], "alice");
}

#[test]
fn a_standalone_record_and_its_syscall_are_one_event() {
    let r = replay("standalone-with-syscall.log");
    assert_eq!(r.events().len(), 3, "{:#?}", r.lines);
    for e in r.events() {
        assert!(e.get("late").is_none() && e.get("incomplete").is_none(), "{e}");
    }
    assert_eq!(types(r.event(7001)), ["SERVICE_START", "SYSCALL", "SOCKADDR", "UNKNOWN[1420]", "EOE"]);
    assert_eq!(types(r.event(7002)), ["ANOM_PROMISCUOUS", "SYSCALL", "PROCTITLE", "EOE"]);
    // A standalone record nothing joins is still a whole event of its own.
    assert_eq!(types(r.event(7003)), ["USER_LOGIN"]);
    assert!(r.summary().contains("3 events (0 incomplete"), "{}", r.summary());
}

#[test]
fn gaps_open_at_the_end_are_reported() {
    let r = replay("gaps-at-end.log");
    assert_eq!(r.losses(), vec![&serde_json::json!({"kind": "serial_gap", "first": 3, "last": 3, "count": 1})]);
    assert_eq!(r.lines.last().and_then(|l| l.get("loss")).map(|l| &l["first"]), Some(&Value::from(3)));
    assert!(r.stderr.iter().any(|l| l == "auditrelay: replay: loss: 1 audit serial(s) missing: 3..=3"));
    assert!(r.summary().contains("1 serials missing in 1 gaps"), "{}", r.summary());
}

#[test]
fn legacy_lines_without_the_colon_are_records() {
    let r = replay("legacy-daemon.log");
    assert!(r.summary().starts_with("auditrelay: replay: 4 lines, 4 records (0 of unknown type), 0 bad lines"));
    let config = record(r.event(8002), "DAEMON_CONFIG");
    assert_eq!(config["fields"]["pid"], "700");
    assert_eq!(config["fields"]["_words"], serde_json::json!(["config", "changed,"]));
    assert_eq!(
        record(r.event(8003), "DAEMON_ROTATE")["fields"]["_words"],
        serde_json::json!(["rotating", "log", "files"])
    );
    assert_eq!(record(r.event(8004), "DAEMON_END")["fields"], serde_json::json!({}));
    assert!(r.losses().is_empty(), "auditd's own serials are not the kernel's");
}

#[test]
fn unknown_type_names_keep_the_record_and_are_counted() {
    let r = replay("unknown-type.log");
    let ruleset = &r.event(9001)["records"][0];
    assert_eq!(ruleset["type"], "LANDLOCK_RULESET");
    assert!(ruleset.get("type_id").is_none(), "{ruleset}");
    assert_eq!(ruleset["fields"]["op"], "create");
    assert_eq!(types(r.event(9001)), ["LANDLOCK_RULESET", "SYSCALL", "EOE"]);
    // A name audit-userspace has is known, with its number.
    assert_eq!(r.event(9002)["records"][0]["type_id"], 1423);
    assert!(r.summary().contains("6 records (1 of unknown type), 0 bad lines"), "{}", r.summary());
}

#[test]
fn crlf_line_endings_are_not_part_of_values() {
    let r = replay("crlf.log");
    let cmd = record(r.event(9101), "USER_CMD");
    assert_eq!(cmd["fields"]["msg"], "cwd=\"/home/alice\" cmd=6964 exe=\"/usr/bin/sudo\" terminal=pts/1 res=success");
    assert_eq!(record(r.event(9102), "CWD")["fields"]["cwd"], "/home/alice");
    assert_eq!(types(r.event(9102)), ["CWD", "EOE"]);
    assert_eq!(record(r.event(9102), "EOE")["fields"], serde_json::json!({}));
    // Before, each `\r` became a word of its own record.
    for e in r.events() {
        for rec in e["records"].as_array().unwrap() {
            assert!(rec["fields"].get("_words").is_none(), "{rec}");
        }
    }
}

#[test]
fn a_record_stamped_ahead_does_not_cut_the_event_it_overtook() {
    let r = replay("out-of-order.log");
    assert_eq!(types(r.event(60)), ["SYSCALL", "EXECVE", "PATH", "EOE"]);
    assert_eq!(types(r.event(61)), ["SYSCALL", "SOCKADDR", "EOE"]);
    assert_eq!(types(r.event(62)), ["SYSCALL", "EOE"]);
    for e in r.events() {
        assert!(e.get("late").is_none() && e.get("incomplete").is_none(), "{e}");
    }
}

#[test]
fn what_is_not_audit_log_text_is_rejected_with_its_line_number() {
    let r = replay("not-audit-log.txt");
    let bad: Vec<&str> = r.stderr.iter().filter(|l| l.contains(": line ")).map(String::as_str).collect();
    assert_eq!(
        bad,
        [
            "auditrelay: replay: line 1: expected \"type=\" at byte 0",
            "auditrelay: replay: line 2: bad audit(...) stamp: expected \"audit(\" at byte 23",
            "auditrelay: replay: line 4: expected \"type=\" at byte 0",
        ]
    );
    assert!(r.summary().contains("5 lines, 2 records (0 of unknown type), 3 bad lines"), "{}", r.summary());
    assert_eq!(types(r.event(2)), ["SYSCALL", "EOE"]);
}
