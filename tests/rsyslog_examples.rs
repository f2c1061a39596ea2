//! The receiver configs in examples/rsyslog/ are valid for the installed rsyslog (`rsyslogd -N1`)
//! and, run for real on loopback ports, receive what our outputs send: RELP, RELP over TLS with a
//! client certificate, plain TCP and TCP over TLS (RFC 5425). Needs rsyslog, rsyslog-relp,
//! rsyslog-openssl, rsyslog-elasticsearch and rsyslog-kafka (for the -N1 checks of the Elasticsearch
//! and Kafka configs), and the openssl CLI.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay::output::delivery::Ack;
use auditrelay::output::relp::{self, RelpConfig};
use auditrelay::output::tcp::{self, TcpConfig};
use auditrelay::output::tls::TlsConfig;
use tokio::sync::{mpsc, watch};

use support::*;

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rsyslog").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The example with its system paths moved into `dir` and its ports replaced.
fn localize(text: &str, dir: &Path, certs: &Path, ports: &[(&str, u16)]) -> String {
    let mut t = text
        .replace("/etc/rsyslog-certs", &certs.display().to_string())
        .replace("/var/spool/rsyslog", &dir.join("work").display().to_string())
        .replace("/var/log/auditrelay", &dir.display().to_string());
    for (from, to) in ports {
        t = t.replace(&format!("port=\"{from}\""), &format!("address=\"127.0.0.1\" port=\"{to}\""));
    }
    t
}

struct Setup {
    dir: PathBuf,
    certs: Certs,
}

fn setup(tag: &str) -> Setup {
    let dir = temp_dir(tag);
    let certs = make_certs(&dir).expect("openssl CLI not found: apt-get install openssl");
    Setup { dir, certs }
}

fn cert_dir(s: &Setup) -> PathBuf {
    s.certs.ca.parent().expect("cert dir").to_path_buf()
}

#[test]
fn every_example_config_passes_rsyslogd_n1() {
    require_rsyslog();
    let s = setup("examples-n1");
    let bin = rsyslogd_path().expect("rsyslogd");
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rsyslog"))
        .expect("examples dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    assert!(names.iter().any(|n| n == "kafka.conf") && names.iter().any(|n| n == "elasticsearch.conf"), "{names:?}");
    for name in &names {
        let conf = s.dir.join(name);
        std::fs::write(&conf, localize(&example(name), &s.dir, &cert_dir(&s), &[])).expect("write");
        let out = Command::new(&bin).arg("-N1").arg("-f").arg(&conf).output().expect("run rsyslogd -N1");
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && !text.contains("error"), "{name}: rsyslogd -N1 failed:\n{text}");
    }
    let tpl: serde_json::Value =
        serde_json::from_str(&example("elasticsearch-index-template.json")).expect("index template is JSON");
    let props = &tpl["template"]["mappings"]["properties"];
    for key in ["id", "sequence", "timestamp", "time", "node", "records", "truncated"] {
        assert!(props.get(key).is_some(), "index template lacks {key}");
    }
    assert_eq!(props["records"]["properties"]["fields"]["type"], "flattened");
    let _ = std::fs::remove_dir_all(&s.dir);
}

async fn run_until_acked<F, E>(
    n: u64,
    start: impl FnOnce(
        mpsc::Receiver<auditrelay::output::delivery::Delivery>,
        mpsc::Sender<Ack>,
        watch::Receiver<bool>,
    ) -> F,
) where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let (atx, mut arx) = mpsc::channel(64);
    let (stop, srx) = watch::channel(false);
    let task = tokio::spawn(start(rx, atx, srx));
    let acked = Arc::new(AtomicU64::new(0));
    let a = acked.clone();
    tokio::spawn(async move {
        while let Some(Ack(p)) = arx.recv().await {
            a.store(p, Ordering::SeqCst);
        }
    });
    for i in 1..=n {
        tx.send(delivery(i)).await.expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "acks stuck at {}", acked.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("join").expect("ok");
}

/// events.json (template %msg%) holds exactly the JSON bodies, in order.
fn assert_events_file(rs: &Rsyslogd, n: u64) {
    let lines = rs.wait_lines("events.json", n as usize, Duration::from_secs(20));
    assert_eq!(lines.len() as u64, n);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &body(i as u64 + 1), "line {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_examples_receive_our_events() {
    require_rsyslog();
    let s = setup("examples-relp");
    let certs = cert_dir(&s);
    for (name, tls) in [("relp.conf", false), ("relp-tls.conf", true)] {
        let dir = s.dir.join(name.trim_end_matches(".conf"));
        std::fs::create_dir_all(dir.join("work")).expect("mkdir");
        let port = free_port();
        let conf = localize(&example(name), &dir, &certs, &[("2514", port), ("2515", port)]);
        let rs = Rsyslogd::from_config(dir, &conf, port, port);
        let cfg = RelpConfig {
            address: format!("127.0.0.1:{port}"),
            tls: tls.then(|| TlsConfig {
                ca_file: s.certs.ca.clone(),
                cert_file: Some(s.certs.client_cert.clone()),
                key_file: Some(s.certs.client_key.clone()),
                server_name: None,
            }),
            ..RelpConfig::default()
        };
        run_until_acked(200, move |rx, atx, srx| relp::run(cfg, rx.into(), atx, srx)).await;
        assert_events_file(&rs, 200);
    }
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_example_receives_plain_and_tls() {
    require_rsyslog();
    let s = setup("examples-tcp");
    let (plain, tls_port) = (free_port(), free_port());
    let dir = s.dir.join("tcp");
    std::fs::create_dir_all(dir.join("work")).expect("mkdir");
    let conf = localize(&example("tcp.conf"), &dir, &cert_dir(&s), &[("10514", plain), ("6514", tls_port)]);
    let rs = Rsyslogd::from_config(dir, &conf, plain, tls_port);
    let cfg = TcpConfig { address: format!("127.0.0.1:{plain}"), ..TcpConfig::default() };
    run_until_acked(100, move |rx, atx, srx| tcp::run(cfg, rx.into(), atx, srx)).await;
    assert_events_file(&rs, 100);
    // Same events again over RFC 5425 TLS, verified against the test CA and the name 127.0.0.1.
    let cfg = TcpConfig {
        address: format!("127.0.0.1:{tls_port}"),
        tls: Some(TlsConfig { ca_file: s.certs.ca.clone(), cert_file: None, key_file: None, server_name: None }),
        ..TcpConfig::default()
    };
    run_until_acked(100, move |rx, atx, srx| tcp::run(cfg, rx.into(), atx, srx)).await;
    let lines = rs.wait_lines("events.json", 200, Duration::from_secs(20));
    assert_eq!(lines.len(), 200);
    for (i, l) in lines[100..].iter().enumerate() {
        assert_eq!(l, &body(i as u64 + 1));
    }
    let _ = std::fs::remove_dir_all(&s.dir);
}
