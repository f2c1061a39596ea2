//! `auditrelay status` run by a user without CAP_AUDIT_CONTROL: the kernel refuses, and the one
//! error line says what to do about it (issue 9).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The uid/gid of Debian's `nobody`; the test drops to them from root (dropping the uid drops the
/// capabilities; the supplementary groups do not matter to the kernel's check).
const NOBODY: u32 = 65534;

#[test]
fn status_as_a_plain_user_says_it_needs_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test drops from root to nobody: run it as root (tests/run-all.sh)");
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .arg("status")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run auditrelay status as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "status as nobody succeeded: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("needs root (CAP_AUDIT_CONTROL)"), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "the kernel's own words stay: {stderr}");
}
