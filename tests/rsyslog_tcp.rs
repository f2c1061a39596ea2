//! TCP syslog output against a real rsyslogd (imtcp): octet-counted and LF-framed messages arrive
//! intact and in order; a stopped receiver is noticed and the output recovers. Plain TCP has no
//! application ack, so a receiver stop may lose what its socket buffer held: that loss is measured
//! and bounded here, not claimed to be zero.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use auditrelay::output::syslog::Framing;
use auditrelay::output::tcp::{self, TcpConfig};
use auditrelay::units::HumanDuration;

use support::*;

type Running = support::Running<tcp::TcpError>;

fn ship(cfg: TcpConfig, n: u64, pause: Duration) -> Running {
    support::ship(move |d, a, s| tcp::run(cfg, d, a, s), 128, n, pause, delivery)
}

fn config(rs: &Rsyslogd, framing: Framing) -> TcpConfig {
    TcpConfig {
        address: rs.tcp_address(),
        framing,
        hostname: Some("e2e-host".into()),
        reconnect_min: HumanDuration(Duration::from_millis(100)),
        reconnect_max: HumanDuration(Duration::from_secs(1)),
        ..TcpConfig::default()
    }
}

async fn delivers_intact(framing: Framing, tag: &str) {
    let rs = Rsyslogd::start(tag, None);
    let n = 5000;
    let started = Instant::now();
    let r = ship(config(&rs, framing), n, Duration::ZERO);
    wait_acked(&r, n, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    finish(r).await;
    eprintln!("TCP {framing:?}: {n} events acked in {elapsed:?} ({:.0}/s)", n as f64 / elapsed.as_secs_f64());
    let lines = rs.wait_lines("tcp.log", n as usize, Duration::from_secs(30));
    assert_eq!(lines.len() as u64, n);
    for (i, line) in lines.iter().enumerate() {
        let m = parse_5424(line);
        assert_eq!(m.body_text, body(i as u64 + 1), "body changed in transit");
        assert_eq!(m.hostname, "e2e-host");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counting_delivers_every_event_intact() {
    require_rsyslog();
    delivers_intact(Framing::OctetCounting, "tcp-octet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lf_framing_delivers_every_event_intact() {
    require_rsyslog();
    delivers_intact(Framing::Lf, "tcp-lf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_receiver_restart_recovers_in_order_with_bounded_loss() {
    require_rsyslog();
    let mut rs = Rsyslogd::start("tcp-restart", None);
    let n = 3000;
    let cfg = config(&rs, Framing::OctetCounting);
    let batch = cfg.batch as u64;
    let r = ship(cfg, n, Duration::from_micros(500));
    for round in 1..=3 {
        wait_acked(&r, 700 * round, Duration::from_secs(30)).await;
        rs.stop();
        tokio::time::sleep(Duration::from_secs(2)).await;
        rs.restart();
    }
    wait_acked(&r, n, Duration::from_secs(60)).await;
    finish(r).await;
    let lines = rs.wait_lines("tcp.log", n as usize, Duration::from_secs(10));
    let seqs = sequences(&lines);
    // Order: never backwards except a rewrite of one unconfirmed batch.
    let mut high = 0;
    for &s in &seqs {
        assert!(s > high || high - s < batch, "went back from {high} to {s}");
        high = high.max(s);
    }
    assert_eq!(high, n, "the last event arrived");
    let mut uniq = seqs.clone();
    uniq.sort();
    uniq.dedup();
    let lost = n - uniq.len() as u64;
    eprintln!("TCP 3 receiver restarts: {} lines, {} unique of {n}, {lost} lost", seqs.len(), uniq.len());
    assert!(lost <= 3 * batch, "lost {lost}: more than one batch per restart");
}
