//! RELP output against a real rsyslogd (imrelp): every event arrives as RFC 5424 with its JSON
//! intact, acks reach N, and stopping/flapping the receiver loses nothing and reorders nothing.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use auditrelay::output::delivery::Delivery;
use auditrelay::output::relp::{self, RelpConfig};
use auditrelay::output::tls::TlsConfig;
use auditrelay::units::HumanDuration;

use support::*;

type Running = support::Running<relp::RelpError>;

/// Start relp::run and feed it deliveries 1..=n, `pause` apart.
fn ship(cfg: RelpConfig, n: u64, pause: Duration, make: fn(u64) -> Delivery) -> Running {
    let window = cfg.window;
    support::ship(move |d, a, s| relp::run(cfg, d, a, s), window, n, pause, make)
}

/// Wait until `file` holds every sequence 1..=n (duplicates allowed), then return all lines.
fn wait_all(rs: &Rsyslogd, file: &str, n: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = rs.lines(file);
        let mut s = sequences(&lines);
        s.sort();
        s.dedup();
        if s.len() as u64 >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(rs: &Rsyslogd) -> RelpConfig {
    RelpConfig {
        address: rs.relp_address(),
        hostname: Some("e2e-host".into()),
        reconnect_min: HumanDuration(Duration::from_millis(100)),
        reconnect_max: HumanDuration(Duration::from_secs(1)),
        ..RelpConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_delivers_every_event_intact() {
    require_rsyslog();
    let rs = Rsyslogd::start("relp-basic", None);
    let n = 5000;
    let started = Instant::now();
    let r = ship(config(&rs), n, Duration::ZERO, delivery);
    wait_acked(&r, n, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    finish(r).await;
    eprintln!("RELP: {n} events acked in {elapsed:?} ({:.0}/s)", n as f64 / elapsed.as_secs_f64());
    let lines = wait_all(&rs, "relp.log", n);
    assert_eq!(lines.len() as u64, n, "no duplicates without faults");
    for (i, line) in lines.iter().enumerate() {
        let m = parse_5424(line);
        let seq = i as u64 + 1;
        assert_eq!(m.body_text, body(seq), "body changed in transit");
        assert_eq!(m.pri, 14);
        assert_eq!(m.hostname, "e2e-host");
        assert_eq!(m.app_name, "auditrelay");
        assert_eq!(m.msgid, "AUDIT");
        assert_eq!(m.procid, std::process::id().to_string());
        assert_eq!(m.timestamp, auditrelay::output::syslog::rfc3339_millis(1_795_373_270_000 + seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_receiver_stopped_for_seconds_loses_nothing() {
    require_rsyslog();
    let mut rs = Rsyslogd::start("relp-stop", None);
    let n = 3000;
    let cfg = config(&rs);
    let window = cfg.window as u64;
    let r = ship(cfg, n, Duration::from_micros(500), delivery);
    wait_acked(&r, 800, Duration::from_secs(30)).await;
    rs.stop();
    let acked_at_stop = r.acked.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(r.acked.load(Ordering::SeqCst) <= acked_at_stop + window, "acks while the receiver is down");
    rs.restart();
    wait_acked(&r, n, Duration::from_secs(60)).await;
    finish(r).await;
    let lines = wait_all(&rs, "relp.log", n);
    let seqs = sequences(&lines);
    assert_complete_in_order(&seqs, n, window);
    eprintln!("stop/restart: {} lines for {n} events ({} duplicates)", seqs.len(), seqs.len() as u64 - n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_receiver_flapping_loses_nothing() {
    require_rsyslog();
    let mut rs = Rsyslogd::start("relp-flap", None);
    let n = 4000;
    let mut cfg = config(&rs);
    cfg.window = 32;
    let window = cfg.window as u64;
    let r = ship(cfg, n, Duration::from_micros(300), delivery);
    for round in 0..6 {
        wait_acked(&r, 300 * (round + 1), Duration::from_secs(30)).await;
        rs.stop();
        tokio::time::sleep(Duration::from_millis(700)).await;
        rs.restart();
    }
    wait_acked(&r, n, Duration::from_secs(60)).await;
    finish(r).await;
    let lines = wait_all(&rs, "relp.log", n);
    let seqs = sequences(&lines);
    assert_complete_in_order(&seqs, n, window);
    eprintln!("flapping x6: {} lines for {n} events ({} duplicates)", seqs.len(), seqs.len() as u64 - n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_over_tls_with_client_certificate() {
    require_rsyslog();
    let certs_dir = temp_dir("relp-tls-certs");
    let Some(certs) = make_certs(&certs_dir) else {
        panic!("openssl CLI not found: apt-get install openssl");
    };
    let mut rs = Rsyslogd::start("relp-tls", Some(&certs));
    let mut cfg = config(&rs);
    cfg.tls = Some(client_tls(&certs, None));
    let n = 1000;
    let r = ship(cfg, n, Duration::from_micros(200), delivery);
    wait_acked(&r, 300, Duration::from_secs(30)).await;
    // A restart in the middle exercises a second TLS handshake and the resend path.
    rs.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    rs.restart();
    wait_acked(&r, n, Duration::from_secs(60)).await;
    finish(r).await;
    let seqs = sequences(&wait_all(&rs, "relp.log", n));
    assert_complete_in_order(&seqs, n, 128);
    let _ = std::fs::remove_dir_all(&certs_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_tls_with_wrong_ca_delivers_nothing() {
    require_rsyslog();
    let dir_a = temp_dir("relp-tls-a");
    let dir_b = temp_dir("relp-tls-b");
    let (Some(server_certs), Some(other)) = (make_certs(&dir_a), make_certs(&dir_b)) else {
        panic!("openssl CLI not found: apt-get install openssl");
    };
    let rs = Rsyslogd::start("relp-tls-bad", Some(&server_certs));
    let mut cfg = config(&rs);
    cfg.tls = Some(client_tls(&other, None));
    delivers_nothing(&rs, cfg, "acked over an untrusted TLS session").await;
    let _ = std::fs::remove_dir_all(&dir_a);
    let _ = std::fs::remove_dir_all(&dir_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_tls_with_wrong_server_name_delivers_nothing() {
    require_rsyslog();
    let dir = temp_dir("relp-tls-name");
    let certs = make_certs(&dir).expect("openssl CLI not found: apt-get install openssl");
    let rs = Rsyslogd::start("relp-tls-name", Some(&certs));
    let mut cfg = config(&rs);
    cfg.tls = Some(client_tls(&certs, Some("not-the-receiver.example")));
    delivers_nothing(&rs, cfg, "acked to a receiver with another name").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS client settings from `certs`, checking the receiver's name against `server_name` if given.
fn client_tls(certs: &Certs, server_name: Option<&str>) -> TlsConfig {
    TlsConfig {
        ca_file: certs.ca.clone(),
        cert_file: Some(certs.client_cert.clone()),
        key_file: Some(certs.client_key.clone()),
        server_name: server_name.map(str::to_string),
    }
}

/// Ship 10 events with `cfg` for 2 s: none may be acked or reach the receiver; then stop cleanly.
async fn delivers_nothing(rs: &Rsyslogd, cfg: RelpConfig, why: &str) {
    let r = ship(cfg, 10, Duration::ZERO, delivery);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.acked.load(Ordering::SeqCst), 0, "{why}");
    assert!(rs.lines("relp.log").is_empty());
    r.shutdown.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(10), r.task).await.expect("stops").expect("join").expect("ok");
}

fn huge_delivery(n: u64) -> Delivery {
    let arg = format!("BEGIN{}END", "x".repeat(500_000));
    let body = format!(
        "{{\"sequence\":{n},\"records\":[{{\"type\":\"EXECVE\",\"type_id\":1309,\"fields\":{{\"argc\":\"2\",\"a0\":\"/bin/true\",\"a1\":\"{arg}\"}}}}]}}"
    );
    Delivery::new(n, 1_795_373_270_000, &format!("huge-{n}"), &body.into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_oversized_events_arrive_cut_and_flagged() {
    require_rsyslog();
    let rs = Rsyslogd::start("relp-huge", None);
    let n = 5;
    let r = ship(config(&rs), n, Duration::ZERO, huge_delivery);
    wait_acked(&r, n, Duration::from_secs(30)).await;
    finish(r).await;
    let lines = wait_all(&rs, "relp.log", n);
    assert_eq!(lines.len() as u64, n);
    for line in &lines {
        assert!(line.len() <= 64 * 1024, "{} bytes", line.len());
        let m = parse_5424(line);
        assert_eq!(m.body["truncated"], true);
        let a1 = m.body["records"][0]["fields"]["a1"].as_str().expect("a1");
        assert!(a1.starts_with("BEGIN") && a1.ends_with("END"));
        assert!(a1.contains("original length 500008 bytes"), "{}", &a1[..100]);
    }
}
