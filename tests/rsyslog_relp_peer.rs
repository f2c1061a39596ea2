//! Client-certificate authentication against a real rsyslog imrelp with `tls.authMode="name"` and
//! `tls.permittedPeer` (issue 10, Security), end to end through the daemon and its spool:
//! 1. the daemon presents a certificate from the right CA but with a name the receiver does not
//!    permit: imrelp refuses the session, nothing arrives, and the events stay in the spool
//!    (the shutdown summary counts them spooled and the RELP output's acks at 0);
//! 2. restarted on the same spool with the permitted certificate ("auditrelay"), the daemon
//!    delivers them: nothing was lost.
//!
//! Real kernel (root, the kernel lock), real rsyslogd with rsyslog-relp, the openssl CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{marker, Daemon, KernelGuard, TempDir};
use support::{free_port, require_rsyslog, temp_dir, Rsyslogd};

/// imrelp over TLS that admits only clients whose certificate names "auditrelay".
fn start_receiver(certs: &std::path::Path) -> Rsyslogd {
    let dir = temp_dir("relp-peer");
    let (relp_port, tcp_port) = (free_port(), free_port());
    let (d, c) = (dir.display(), certs.display());
    let conf = format!(
        "global(workDirectory=\"{d}/work\" maxMessageSize=\"256k\")\n\
         module(load=\"imrelp\" tls.tlslib=\"openssl\")\n\
         module(load=\"imtcp\")\n\
         template(name=\"RawMsg\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         ruleset(name=\"fromRelp\") {{ action(type=\"omfile\" file=\"{d}/relp.log\" template=\"RawMsg\") }}\n\
         input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{relp_port}\" ruleset=\"fromRelp\" maxDataSize=\"256k\"\n\
               tls=\"on\" tls.cacert=\"{c}/ca.pem\" tls.mycert=\"{c}/server.pem\" tls.myprivkey=\"{c}/server.key\"\n\
               tls.authMode=\"name\" tls.permittedPeer=[\"auditrelay\"])\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp_port}\" ruleset=\"fromRelp\")\n"
    );
    Rsyslogd::from_config(dir, &conf, relp_port, tcp_port)
}

/// A daemon with stderr captured (read on a thread so the pipe never fills).
struct Run {
    daemon: Daemon,
    stderr: std::thread::JoinHandle<String>,
}

fn start_daemon(config: &str) -> Run {
    let ready = common::Ready::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrelay"));
    ready.pass_to(&mut cmd);
    let mut child = cmd.args(["run", "--config", config]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let mut daemon = Daemon { child, lines: std::sync::mpsc::channel().1, seen: Vec::new(), ready: Some(ready) };
    daemon.wait_registered(Duration::from_secs(10));
    Run { daemon, stderr }
}

fn stop(run: Run) -> String {
    let (exit, _) = run.daemon.terminate();
    let err = run.stderr.join().unwrap();
    assert!(exit.success(), "exit status {exit}: {err}");
    err
}

fn contains(path: &std::path::Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

#[test]
fn only_the_permitted_client_certificate_is_accepted_and_nothing_is_lost() {
    require_rsyslog();
    let guard = KernelGuard::take();
    let dir = TempDir::new("relp-peer");
    let certs = dir.path("certs");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rsyslog/make-test-certs.sh");
    let made =
        Command::new("sh").arg(script).arg(&certs).args(["localhost", "intruder"]).stdout(Stdio::null()).status();
    assert!(made.expect("sh").success(), "make-test-certs.sh (needs the openssl CLI)");
    let rs = start_receiver(&certs);

    let key = marker("relp-peer");
    let local = dir.path("local.jsonl");
    let config_for = |client: &str| {
        dir.config_with_rules(
            &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
            &format!(
                "[spool]\ndir = {spool:?}\n\
                 [[output]]\ntype = \"file\"\nname = \"local\"\npath = {local:?}\n\
                 [[output]]\ntype = \"relp\"\nname = \"central\"\naddress = {addr:?}\n\
                 reconnect_min = \"100ms\"\nreconnect_max = \"500ms\"\n\
                 [output.tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {k:?}\n",
                spool = dir.path("spool").display().to_string(),
                local = local.display().to_string(),
                addr = rs.relp_address(),
                ca = certs.join("ca.pem").display().to_string(),
                cert = certs.join(format!("{client}.pem")).display().to_string(),
                k = certs.join(format!("{client}.key")).display().to_string(),
            ),
        )
    };

    // 1. Valid certificate, name not permitted.
    let run = start_daemon(&config_for("intruder"));
    let refused = marker("relp-peer-refused");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !contains(&local, &refused) {
        assert!(Instant::now() < deadline, "the event did not even reach the local file output");
        assert!(Command::new("/bin/true").arg(&refused).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(500));
    }
    // Several reconnect attempts (100–500 ms apart) get refused meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    assert!(rs.lines("relp.log").is_empty(), "nothing reaches the receiver without a permitted certificate");
    let summary = stop(run);
    let line = summary.lines().find(|l| l.contains("outputs:")).unwrap_or_else(|| panic!("summary line: {summary}"));
    assert!(line.contains("central=0"), "no RELP acks for the refused client: {line}");
    assert!(!line.contains(" 0 events spooled"), "the events were spooled: {line}");
    // Segments hold compressed frames: decode them as the spool's readers do.
    let segments: String = std::fs::read_dir(dir.path("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seg-")))
        .flat_map(|p| auditrelay::spool::segment::read_records(&p, 64 << 20).unwrap_or_default())
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(segments.contains(&refused), "the refused events wait in the spool");

    // 2. The permitted certificate, same spool: what was refused arrives now.
    let run = start_daemon(&config_for("client"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rs.lines("relp.log").iter().any(|l| l.contains(&refused)) {
        assert!(Instant::now() < deadline, "spooled events not delivered after the permitted client connected");
        std::thread::sleep(Duration::from_millis(200));
    }
    let accepted = marker("relp-peer-accepted");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rs.lines("relp.log").iter().any(|l| l.contains(&accepted)) {
        assert!(Instant::now() < deadline, "new events not delivered over the permitted session");
        assert!(Command::new("/bin/true").arg(&accepted).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(500));
    }
    let summary = stop(run);
    assert!(!summary.contains("central=0"), "{summary}");
    drop(guard);
}
