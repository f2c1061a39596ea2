//! packaging/auditrelay.service as systemd reads it: `systemd-analyze verify` (syntax, directives
//! this systemd knows, an executable ExecStart) and `systemd-analyze security --offline` (the
//! hardening adds up). The installed unit is verified again by tests/package.sh, from the .deb.
//!
//! Needs Debian's `systemd` package (tests/run-all.sh installs it); without `systemd-analyze` the
//! tests fail saying so. systemd need not be running: both commands read unit files only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/auditrelay.service");
/// The exposure `systemd-analyze security` may report at most (0 best, 10 worst). The unit scores
/// 2.3 with systemd 252; what is left is what the job needs (root, netlink and inet sockets, the
/// audit capabilities, the host's network and user namespaces).
const MAX_EXPOSURE: &str = "3";

fn systemd_analyze() -> &'static str {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "systemd-analyze not found: apt-get install systemd (tests/run-all.sh does)");
    "systemd-analyze"
}

/// The unit with ExecStart pointing at the binary cargo built: verify checks it is executable, and
/// /usr/bin/auditrelay exists only once the package is installed.
fn unit_with_built_binary(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("auditrelay-unit-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(UNIT).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/auditrelay "), "the unit runs the packaged binary");
    let text =
        text.replace("ExecStart=/usr/bin/auditrelay ", &format!("ExecStart={} ", env!("CARGO_BIN_EXE_auditrelay")));
    let path = dir.join("auditrelay.service");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn run(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new(systemd_analyze()).args(args).arg(unit).output().expect("run systemd-analyze");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let (dir, unit) = unit_with_built_binary("verify");
    // --man=no: the man page is installed by the package only (tests/package.sh verifies with it).
    let (ok, text) = run(&["verify", "--man=no"], &unit);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    // verify warns (unknown or misplaced directives) without failing: any word about our unit is a defect.
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("auditrelay")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns about the unit:\n{}", ours.join("\n"));
}

#[test]
fn unit_hardening_stays_below_the_exposure_bound() {
    let (dir, unit) = unit_with_built_binary("security");
    let threshold = format!("--threshold={}", MAX_EXPOSURE.parse::<f64>().unwrap() * 10.0);
    let (ok, text) = run(&["security", "--offline=yes", "--no-pager", &threshold], &unit);
    let _ = std::fs::remove_dir_all(&dir);
    let overall = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("(no overall line)");
    assert!(ok, "exposure above {MAX_EXPOSURE}: {overall}\n{text}");
}

#[test]
fn unit_states_what_the_daemon_relies_on() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let values = |key: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::to_string).collect()
    };
    assert_eq!(values("Type"), ["notify"], "READY=1 after rules and reader");
    assert_eq!(values("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert!(values("Conflicts").iter().any(|v| v.split_whitespace().any(|u| u == "auditd.service")));
    // CAP_SYS_NICE only for `[netlink] priority_boost`; the daemon drops it once the boost is set.
    assert_eq!(values("CapabilityBoundingSet"), ["CAP_AUDIT_CONTROL CAP_AUDIT_READ CAP_NET_ADMIN CAP_SYS_NICE"]);
    assert_eq!(values("ProtectSystem"), ["strict"]);
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    assert_eq!(values("PrivateTmp"), ["yes"]);
    assert!(values("ReadWritePaths").iter().any(|v| v == "/var/lib/auditrelay"), "spool and rules cache");
    assert!(!values("WatchdogSec").is_empty());
    // The spool and the rules cache must lie inside what the unit lets the daemon write.
    let defaults = auditrelay::config::Config::default();
    assert!(defaults.spool.dir.starts_with("/var/lib/auditrelay"), "{}", defaults.spool.dir.display());
    assert!(defaults.rules.cache_dir.starts_with("/var/lib/auditrelay"), "{}", defaults.rules.cache_dir.display());
}

#[test]
fn package_default_config_parses() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/auditrelay.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let config = auditrelay::config::Config::parse(&text, path).unwrap();
    assert_eq!(config.rules.sources, ["/etc/auditrelay/rules.d"]);
    assert!(config.spool.dir.starts_with("/var/lib/auditrelay"));
}

/// `auditrelay generate`: what tests/package.sh puts into the .deb, from the CLI definition itself.
#[test]
fn generate_writes_man_pages_and_completions() {
    let dir = std::env::temp_dir().join(format!("auditrelay-generate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let generate = |what: &str, sub: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["generate", what]).arg(dir.join(sub)).output();
        let out = out.expect("run auditrelay generate");
        assert!(out.status.success(), "generate {what}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let pages = generate("man", "man");
    let completions = generate("completions", "completions");
    let exists = |p: &str| dir.join(p).is_file();
    let all = ["man/auditrelay.1", "man/auditrelay-run.1", "man/auditrelay-rules-check.1", "man/auditrelay-status.1"];
    let found: Vec<bool> = all.iter().map(|p| exists(p)).collect();
    let shells = ["completions/auditrelay.bash", "completions/_auditrelay", "completions/auditrelay.fish"];
    let found_shells: Vec<bool> = shells.iter().map(|p| exists(p)).collect();
    let hidden = exists("man/auditrelay-generate.1");
    let page = std::fs::read_to_string(dir.join("man/auditrelay.1")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(found.iter().all(|&f| f), "{all:?} → {found:?}; printed:\n{pages}");
    assert!(found_shells.iter().all(|&f| f), "{shells:?} → {found_shells:?}; printed:\n{completions}");
    assert!(!hidden, "the hidden generate subcommand gets no page");
    assert!(page.contains("auditrelay\\-run(1)"), "auditrelay(1) lists its subcommands' pages");
}
