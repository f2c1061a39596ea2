//! `auditrelay run` boots on safe rules whatever the rule server does (real kernel, real binary):
//! an unreachable URL without a cache → the embedded rules; a body that does not match its pin →
//! the cached copy that does; a remote syntax error → the last good set. The daemon registers and
//! runs each time, with its self-exclusion rule tied to its exe, and restores the kernel at exit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use auditrelay::netlink::client::AuditClient;
use auditrelay::rules::data::RuleData;
use auditrelay::rules::print;
use auditrelay::rules::sync;
use common::{Daemon, KernelGuard, TempDir};
use sha2::{Digest, Sha256};

/// Serve `body` to every request until the test ends (one connection at a time).
fn serve(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/site.rules", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
}

fn sha(text: &str) -> String {
    auditrelay::rules::data::hex(Sha256::digest(text.as_bytes()).as_slice())
}

/// Start with `config`, wait for registration, return the kernel's rules as `auditctl -l` text.
fn boot_and_list(config: &str) -> String {
    let mut daemon = Daemon::start(&["run", "--config", config]);
    daemon.wait_registered(Duration::from_secs(20));
    let mut c = AuditClient::open().unwrap();
    let rules: Vec<RuleData> = c.list_rules().unwrap().iter().map(|b| RuleData::decode(b).unwrap()).collect();
    let pid = daemon.pid();
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_auditrelay")).unwrap();
    assert_eq!(
        sync::self_exclusion_of(&rules[0]),
        Some((pid, exe.as_os_str().as_encoded_bytes().to_vec())),
        "first rule: the self-exclusion tied to the daemon's exe"
    );
    print::listing(&rules)
}

#[test]
fn boot_falls_back_to_safe_rules_and_keeps_running() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("failsafe");
    let cache = dir.path("cache");

    // Self-exclusion rules a daemon killed with -9 left behind (a pid beyond pid_max, so surely
    // dead), in the exe-tied form and in the pid-only form of older versions: removed at start
    // and not put back at exit.
    let dead = 4_194_305;
    let mut c = AuditClient::open().unwrap();
    for exe in [&b"/usr/bin/auditrelay"[..], b""] {
        c.add_rule(&sync::self_exclusion(dead, exe).encode()).unwrap();
    }

    // 1. Unreachable https URL, nothing cached: the embedded default rules.
    let config = dir.path("a.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\nsources = [\"https://127.0.0.1:9/x.rules\"]\ncache_dir = {:?}\nfetch_timeout = \"2s\"\n",
            cache.display().to_string()
        ),
    )
    .unwrap();
    let listed = boot_and_list(config.to_str().unwrap());
    assert!(listed.contains("-k exec") || listed.contains("key=exec"), "embedded rules loaded:\n{listed}");
    assert!(!listed.contains(&format!("pid={dead}")), "stale self-exclusions removed at start:\n{listed}");
    let after_first: Vec<RuleData> = c.list_rules().unwrap().iter().map(|b| RuleData::decode(b).unwrap()).collect();
    assert!(after_first.iter().all(|r| sync::self_exclusion_of(r).is_none()), "and not restored at exit");

    // 2. The server's body does not match the pin; the cached copy does: the cached copy.
    let good = "-w /etc/hosts -p wa -k failsafe-cached\n";
    let url = serve("-a never,exit -S all -k failsafe-attacker\n");
    // The cache layout of src/rules/fetch.rs: `<sha256 of the URL>.rules`.
    let name = sha(&url);
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(format!("{name}.rules")), good).unwrap();
    let config = dir.path("b.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\nsources = [{url:?}]\nsha256 = {{ {url:?} = {:?} }}\ncache_dir = {:?}\n",
            sha(good),
            cache.display().to_string()
        ),
    )
    .unwrap();
    let listed = boot_and_list(config.to_str().unwrap());
    assert!(listed.contains("failsafe-cached") && !listed.contains("failsafe-attacker"), "{listed}");
    assert!(cache.join("last-good.rules").exists(), "a loaded configured set is kept as last good");

    // 3. The server serves a syntax error (pinned, so it is "genuine"): the last good set.
    let bad = "-a always,exit -S no_such_syscall -k failsafe-bad\n";
    let url = serve(bad);
    let config = dir.path("c.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\nsources = [{url:?}]\nsha256 = {{ {url:?} = {:?} }}\ncache_dir = {:?}\n",
            sha(bad),
            cache.display().to_string()
        ),
    )
    .unwrap();
    let listed = boot_and_list(config.to_str().unwrap());
    assert!(listed.contains("failsafe-cached"), "last good set loaded:\n{listed}");

    let after = guard.status();
    assert_eq!(after.pid, 0);
    let rules_now = AuditClient::open().unwrap().list_rules().unwrap();
    assert_eq!(rules_now, guard.rules_before(), "rules restored at exit");
}
