//! Protocol tests against an in-process fake RELP server on 127.0.0.1 whose answers each test
//! scripts. The real-rsyslog tests live in tests/rsyslog_*.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use super::frame::{encode, Command, Decoder};
use super::*;
use crate::output::delivery::{Ack, Delivery};
use crate::units::HumanDuration;

/// What the fake server does with the n-th syslog frame it receives (counted over all connections).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    /// Don't answer (yet).
    Hold,
    /// Answer with this code instead of 200.
    Code(u16),
    /// Send `0 serverclose 0` and close without answering.
    ServerClose,
    /// Close the connection without answering.
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    conn: usize,
    txnr: u32,
    n: u64,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    closes: usize,
    conns: usize,
    opens_txnr: Vec<u32>,
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

struct Fake {
    addr: String,
    state: Arc<Mutex<State>>,
    release: Arc<Notify>,
}

fn body_n(msg: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(msg);
    let json = &s[s.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["n"].as_u64().unwrap()
}

async fn fake_server(script: Script) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    let release = Arc::new(Notify::new());
    let (st, rel) = (state.clone(), release.clone());
    tokio::spawn(async move {
        let mut conn_no = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            conn_no += 1;
            st.lock().unwrap().conns = conn_no;
            let (st, rel, script) = (st.clone(), rel.clone(), script.clone());
            let conn = conn_no;
            tokio::spawn(async move {
                let mut dec = Decoder::new(1 << 20);
                let mut buf = vec![0u8; 65536];
                let mut held: Vec<u32> = Vec::new();
                loop {
                    let n = tokio::select! {
                        r = sock.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                        _ = rel.notified() => {
                            let mut out = Vec::new();
                            for t in held.drain(..) { encode(t, "rsp", b"200 OK", &mut out); }
                            if sock.write_all(&out).await.is_err() { return; }
                            continue;
                        }
                    };
                    dec.extend(&buf[..n]);
                    let mut out = Vec::new();
                    while let Some(f) = dec.decode().unwrap() {
                        match f.command {
                            Command::Open => {
                                st.lock().unwrap().opens_txnr.push(f.txnr);
                                encode(
                                    f.txnr,
                                    "rsp",
                                    b"200 OK\nrelp_version=0\nrelp_software=fake\ncommands=syslog",
                                    &mut out,
                                );
                            }
                            Command::Close => {
                                st.lock().unwrap().closes += 1;
                                encode(f.txnr, "rsp", b"", &mut out);
                                encode(0, "serverclose", b"", &mut out);
                                let _ = sock.write_all(&out).await;
                                return;
                            }
                            Command::Syslog => {
                                let idx = {
                                    let mut s = st.lock().unwrap();
                                    s.seen.push(Seen { conn, txnr: f.txnr, n: body_n(&f.data) });
                                    s.seen.len()
                                };
                                match script(idx) {
                                    Answer::Ok if held.is_empty() => encode(f.txnr, "rsp", b"200 OK", &mut out),
                                    Answer::Ok | Answer::Hold => held.push(f.txnr),
                                    Answer::Code(c) => {
                                        encode(f.txnr, "rsp", format!("{c} go away").as_bytes(), &mut out)
                                    }
                                    Answer::ServerClose => {
                                        encode(0, "serverclose", b"", &mut out);
                                        let _ = sock.write_all(&out).await;
                                        return;
                                    }
                                    Answer::Drop => {
                                        let _ = sock.write_all(&out).await;
                                        return;
                                    }
                                }
                            }
                            other => panic!("fake server got {other}"),
                        }
                    }
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Fake { addr, state, release }
}

fn config(addr: &str, window: usize) -> RelpConfig {
    RelpConfig {
        address: addr.to_string(),
        window,
        hostname: Some("testhost".into()),
        reconnect_min: HumanDuration(Duration::from_millis(10)),
        reconnect_max: HumanDuration(Duration::from_millis(50)),
        response_timeout: HumanDuration(Duration::from_secs(5)),
        shutdown_timeout: HumanDuration(Duration::from_secs(2)),
        ..RelpConfig::default()
    }
}

fn delivery(n: u64) -> Delivery {
    Delivery::new(n, 1_795_373_270_780 + n, &format!("id-{n}"), format!("{{\"n\":{n}}}").as_bytes())
}

struct Harness {
    tx: mpsc::Sender<Delivery>,
    acks: mpsc::Receiver<Ack>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), RelpError>>,
}

fn start(cfg: RelpConfig, limits: Limits) -> Harness {
    let (tx, rx) = mpsc::channel(cfg.window);
    let (atx, acks) = mpsc::channel(16);
    let (shutdown, srx) = watch::channel(false);
    let task = tokio::spawn(run_with(cfg, limits, rx.into(), atx, srx));
    Harness { tx, acks, shutdown, task }
}

/// Feed deliveries 1..=n (from a separate task, since the window may block) and wait for the
/// cumulative ack to reach n. Acks must be strictly increasing.
async fn deliver_all(h: &mut Harness, n: u64) {
    let tx = h.tx.clone();
    tokio::spawn(async move {
        for i in 1..=n {
            if tx.send(delivery(i)).await.is_err() {
                return;
            }
        }
    });
    let mut last = 0;
    while last < n {
        let Ack(p) = tokio::time::timeout(Duration::from_secs(20), h.acks.recv()).await.expect("ack timeout").unwrap();
        assert!(p > last, "ack went from {last} to {p}");
        last = p;
    }
}

async fn stop(h: Harness) {
    h.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.task).await.unwrap().unwrap().unwrap();
}

/// Every n in 1..=total is seen, and within each connection the numbers increase by one.
fn assert_in_order_per_conn(seen: &[Seen], total: u64) {
    let mut all: Vec<u64> = seen.iter().map(|s| s.n).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    for w in seen.windows(2) {
        if w[0].conn == w[1].conn {
            assert_eq!(w[1].n, w[0].n + 1, "order broken: {w:?}");
            assert_eq!(w[1].txnr, w[0].txnr + 1, "txnr gap: {w:?}");
        }
    }
}

#[tokio::test]
async fn delivers_in_order_with_consecutive_txnrs() {
    let fake = fake_server(Arc::new(|_| Answer::Ok)).await;
    let mut h = start(config(&fake.addr, 8), Limits::default());
    deliver_all(&mut h, 200).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    assert_eq!(s.conns, 1);
    assert_eq!(s.opens_txnr, [1]);
    assert_eq!(s.seen.len(), 200);
    assert_eq!(s.seen[0].txnr, 2, "first syslog after open is txnr 2");
    assert_in_order_per_conn(&s.seen, 200);
    assert_eq!(s.closes, 1, "close sent on shutdown");
}

#[tokio::test]
async fn sender_stops_at_a_full_window() {
    let fake = fake_server(Arc::new(|_| Answer::Hold)).await;
    let mut h = start(config(&fake.addr, 5), Limits::default());
    for i in 1..=5 {
        h.tx.send(delivery(i)).await.unwrap();
    }
    // The window is full: these wait in the channel (capacity 5), not on the wire.
    for i in 6..=10 {
        h.tx.send(delivery(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.state.lock().unwrap().seen.len(), 5);
    assert!(h.acks.try_recv().is_err(), "nothing may be acked yet");
    let release = fake.release.clone();
    let releaser = tokio::spawn(async move {
        loop {
            release.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut last = 0;
    while last < 10 {
        let Ack(p) = tokio::time::timeout(Duration::from_secs(5), h.acks.recv()).await.unwrap().unwrap();
        last = p;
    }
    releaser.abort();
    stop(h).await;
    assert_in_order_per_conn(&fake.state.lock().unwrap().seen, 10);
}

#[tokio::test]
async fn serverclose_reconnects_and_resends_unacked_in_order() {
    let fake = fake_server(Arc::new(|i| if i == 30 { Answer::ServerClose } else { Answer::Ok })).await;
    let mut h = start(config(&fake.addr, 16), Limits::default());
    deliver_all(&mut h, 100).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    assert_eq!(s.conns, 2);
    assert_eq!(s.opens_txnr, [1, 1]);
    assert_in_order_per_conn(&s.seen, 100);
    let second: Vec<&Seen> = s.seen.iter().filter(|x| x.conn == 2).collect();
    assert_eq!(second[0].txnr, 2, "new session starts over at txnr 2");
    assert_eq!(second[0].n, 30, "resend starts at the first unacked delivery");
}

#[tokio::test]
async fn non_200_rsp_is_not_delivered_and_is_resent() {
    let fake = fake_server(Arc::new(|i| if i == 7 { Answer::Code(500) } else { Answer::Ok })).await;
    let before = crate::output::netstats::snapshot().relp_rejects;
    let mut h = start(config(&fake.addr, 4), Limits::default());
    deliver_all(&mut h, 20).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    assert!(s.conns >= 2);
    let rejected = s.seen[6].n;
    let again: Vec<&Seen> = s.seen.iter().filter(|x| x.conn == 2).collect();
    assert_eq!(again[0].n, rejected, "rejected delivery is the first one resent");
    assert_in_order_per_conn(&s.seen, 20);
    assert!(crate::output::netstats::snapshot().relp_rejects > before);
}

#[tokio::test]
async fn dropped_connection_resends_whole_window_in_order() {
    // Hold answers for 6..=10, then drop the connection on 10: 6..=10 must come again, in order.
    let fake = fake_server(Arc::new(|i| match i {
        1..=5 => Answer::Ok,
        6..=9 => Answer::Hold,
        10 => Answer::Drop,
        _ => Answer::Ok,
    }))
    .await;
    let mut h = start(config(&fake.addr, 5), Limits::default());
    deliver_all(&mut h, 30).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    let second: Vec<u64> = s.seen.iter().filter(|x| x.conn == 2).map(|x| x.n).take(5).collect();
    assert_eq!(second, [6, 7, 8, 9, 10]);
    assert_in_order_per_conn(&s.seen, 30);
    // Duplicates only within one window.
    assert!(s.seen.len() as u64 <= 30 + 5);
}

#[tokio::test]
async fn session_rotates_before_txnr_limit() {
    let fake = fake_server(Arc::new(|_| Answer::Ok)).await;
    let mut h = start(config(&fake.addr, 4), Limits { max_txnr: 10 });
    deliver_all(&mut h, 40).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    assert!(s.conns >= 5, "{} sessions", s.conns);
    assert!(s.seen.iter().all(|x| x.txnr < 10));
    assert_eq!(s.seen.len(), 40, "rotation must not duplicate anything");
    assert_in_order_per_conn(&s.seen, 40);
    assert!(s.closes >= 4, "each rotation closes the old session");
}

#[tokio::test]
async fn silent_receiver_times_out_and_reconnects() {
    let fake = fake_server(Arc::new(|i| if i == 3 { Answer::Hold } else { Answer::Ok })).await;
    let mut cfg = config(&fake.addr, 4);
    cfg.response_timeout = HumanDuration(Duration::from_millis(300));
    let mut h = start(cfg, Limits::default());
    // The held rsp is never released; a new session must take over.
    deliver_all(&mut h, 10).await;
    stop(h).await;
    let s = fake.state.lock().unwrap();
    assert!(s.conns >= 2);
    assert_in_order_per_conn(&s.seen, 10);
}

#[tokio::test]
async fn shutdown_while_receiver_down_returns_promptly() {
    // Nothing listens on this port (bound and dropped).
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let h = start(config(&addr, 4), Limits::default());
    h.tx.send(delivery(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(h).await;
}

#[tokio::test]
async fn closed_input_drains_and_closes() {
    let fake = fake_server(Arc::new(|_| Answer::Ok)).await;
    let Harness { tx, mut acks, shutdown: _keep, task } = start(config(&fake.addr, 8), Limits::default());
    for i in 1..=5 {
        tx.send(delivery(i)).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    let mut last = 0;
    while let Ok(Ack(p)) = acks.try_recv() {
        last = p;
    }
    assert_eq!(last, 5);
    assert_eq!(fake.state.lock().unwrap().closes, 1);
}

#[tokio::test]
async fn invalid_window_is_a_config_error() {
    let (_tx, rx) = mpsc::channel(1);
    let (atx, _arx) = mpsc::channel(1);
    let (_s, srx) = watch::channel(false);
    let r = run(RelpConfig { window: 0, ..RelpConfig::default() }, rx.into(), atx, srx).await;
    assert!(matches!(r, Err(RelpError::Window { .. })));
}

#[test]
fn config_keys_parse_and_unknown_keys_are_rejected() {
    let c: RelpConfig = toml::from_str(
        "address = \"10.0.0.1:2514\"\nwindow = 64\nmax_message_size = \"128KiB\"\nfacility = \"authpriv\"\n\
         reconnect_max = \"1m\"\n[tls]\nca_file = \"/etc/ca.pem\"\nserver_name = \"logs\"\n",
    )
    .unwrap();
    assert_eq!(c.window, 64);
    assert_eq!(c.max_message_size.0, 128 * 1024);
    assert_eq!(c.tls.unwrap().server_name.as_deref(), Some("logs"));
    assert!(toml::from_str::<RelpConfig>("address = \"x:1\"\nwindwo = 3").is_err());
    assert!(toml::from_str::<RelpConfig>("type = \"relp\"").is_err(), "type belongs to the enum, not here");
}

/// A receiver that, like imrelp behind Nagle, answers only the oldest frame it holds each time
/// new bytes arrive: once the window is full, the sink must send again into the one free slot
/// after its refill pause instead of waiting for half the window forever.
#[tokio::test]
async fn a_full_window_refills_even_when_rsps_come_one_per_write() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut dec = Decoder::new(1 << 20);
        let mut buf = vec![0u8; 65536];
        let mut held = std::collections::VecDeque::new();
        let mut got = Vec::new();
        loop {
            let n = match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => n,
            };
            dec.extend(&buf[..n]);
            let mut out = Vec::new();
            while let Some(f) = dec.decode().unwrap() {
                match f.command {
                    Command::Open => encode(f.txnr, "rsp", b"200 OK\nrelp_version=0\ncommands=syslog", &mut out),
                    Command::Syslog => {
                        got.push(body_n(&f.data));
                        held.push_back(f.txnr);
                    }
                    Command::Close => {
                        for t in held.drain(..) {
                            encode(t, "rsp", b"200 OK", &mut out);
                        }
                        encode(f.txnr, "rsp", b"", &mut out);
                        encode(0, "serverclose", b"", &mut out);
                        let _ = sock.write_all(&out).await;
                        return got;
                    }
                    other => panic!("fake server got {other}"),
                }
            }
            if let Some(t) = held.pop_front() {
                encode(t, "rsp", b"200 OK", &mut out);
            }
            if sock.write_all(&out).await.is_err() {
                return got;
            }
        }
    });
    let mut h = start(config(&addr, 8), Limits::default());
    // 40 deliveries through a window of 8 with one rsp per write: the ack reaches 32 only if the
    // sink keeps sending into single free slots.
    let tx = h.tx.clone();
    tokio::spawn(async move {
        for i in 1..=40 {
            if tx.send(delivery(i)).await.is_err() {
                return;
            }
        }
    });
    let mut last = 0;
    while last < 32 {
        let Ack(p) = tokio::time::timeout(Duration::from_secs(20), h.acks.recv()).await.expect("ack timeout").unwrap();
        assert!(p > last, "ack went from {last} to {p}");
        last = p;
    }
    stop(h).await;
    let got = server.await.unwrap();
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "in order, once each");
}
