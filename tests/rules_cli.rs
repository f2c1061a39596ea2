//! `auditrelay rules check|compile` as a user runs them: the shipped rule sets check clean, errors
//! come out as file:line with exit code 1, and compile prints one JSON object per kernel rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_auditrelay");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn shipped_rule_sets_check_clean() {
    for f in ["default.rules", "stig-like.rules", "pci-like.rules", "containers.rules"] {
        let path = format!("{ROOT}/rules/{f}");
        let (code, out, err) = run(&["rules", "check", &path]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.starts_with("ok: "), "{f}: {out}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("## auditrelay"), "{f} needs a comment header");
        assert!(text.contains("volume"), "{f} header must state its expected volume");
    }
}

#[test]
fn the_whole_rules_directory_checks_as_one_augenrules_set() {
    let (code, out, err) = run(&["rules", "check", &format!("{ROOT}/rules")]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_fails_with_file_line_messages() {
    let dir = std::env::temp_dir().join(format!("auditrelay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.rules");
    std::fs::write(
        &f,
        "# ok\n-a always,exit -F arch=b64 -S execve -k ok\n-a always,exit -F arch=b64 -S nosuch\n-w relative/path\n",
    )
    .unwrap();
    let (code, _, err) = run(&["rules", "check", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:3: `nosuch`: unknown syscall", f.display())), "{err}");
    assert!(err.contains(&format!("{}:4: ", f.display())), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// io_uring rules (auditctl 3.1+ syntax) check clean and compile with operation names; the two
/// mistakes upstream auditctl refuses (a syscall name that is no io_uring operation, a field the
/// list does not take) come out as file:line.
#[test]
fn io_uring_rules_check_and_compile() {
    let dir = std::env::temp_dir().join(format!("auditrelay-cli-uring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("uring.rules");
    std::fs::write(&good, "-a always,io_uring -S openat,openat2 -F auid>=1000 -F auid!=unset -k uring-open\n-A never,io_uring -S connect -F uid=0\n-a always,io_uring -F exe=/usr/bin/curl -k uring-curl\n").unwrap();
    let (code, out, err) = run(&["rules", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&["rules", "compile", "--format", "json", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let objs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs[0]["list"], "io_uring");
    assert_eq!(objs[0]["syscalls"], serde_json::json!(["openat", "openat2"]));
    assert_eq!(objs[1]["op"], "prepend");
    assert_eq!(objs[2]["syscalls"], "all");

    let bad = dir.join("bad-uring.rules");
    std::fs::write(&bad, "-a always,io_uring -S openat -k ok\n-a always,io_uring -S execve\n-a always,io_uring -S openat -F path=/etc/shadow\n").unwrap();
    let (code, _, err) = run(&["rules", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:2: `execve`: unknown io_uring operation", bad.display())), "{err}");
    assert!(
        err.contains(&format!("{}:3: `-F path=/etc/shadow`: path can only be used on the exit list", bad.display())),
        "{err}"
    );
    assert!(!err.contains(&format!("{}:1:", bad.display())), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compile_json_one_object_per_rule() {
    let (code, out, err) = run(&["rules", "compile", "--format", "json", &format!("{ROOT}/rules/default.rules")]);
    assert_eq!(code, 0, "{err}");
    let objs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(objs.len() >= 10);
    let exec = &objs[0];
    assert_eq!(exec["list"], "exit");
    assert_eq!(exec["action"], "always");
    assert_eq!(exec["syscalls"], serde_json::json!(["execve", "execveat"]));
    assert_eq!(exec["fields"][0], serde_json::json!({"name": "arch", "op": "=", "value": "b64"}));
    assert!(exec["hex"].as_str().unwrap().len() > 2080);
}
