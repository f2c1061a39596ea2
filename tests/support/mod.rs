//! A private rsyslogd for end-to-end tests: started from a temp-dir config on free loopback ports,
//! in the foreground as our child, stopped by pid (also on panic, by Drop).
//!
//! Needs Debian's `rsyslog` and `rsyslog-relp` (imrelp with the openssl TLS driver) and, for the
//! TLS test, the `openssl` CLI. Without rsyslogd the tests fail with a message saying so. There
//! is no switch that turns them into passes: to leave them out deliberately, run only the other
//! test binaries (`cargo test --lib`, `cargo test --test NAME`).

#![allow(dead_code)]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay::output::delivery::{Ack, Deliveries, Delivery};
use tokio::sync::{mpsc, watch};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn rsyslogd_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RSYSLOGD") {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Fails the test when rsyslogd is missing. (AUDITRELAY_SKIP_RSYSLOG=1 used to make these tests
/// return early, i.e. pass without running; it is refused now, saying how to leave them out.)
pub fn require_rsyslog() {
    assert!(
        std::env::var_os("AUDITRELAY_SKIP_RSYSLOG").is_none(),
        "AUDITRELAY_SKIP_RSYSLOG no longer skips (a skipped test must not pass): run only the test binaries \
         you want instead (`cargo test --lib`, `cargo test --test NAME`)"
    );
    assert!(
        rsyslogd_path().is_some(),
        "rsyslogd not found: apt-get install rsyslog rsyslog-relp (tests/run-all.sh does)"
    );
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("auditrelay-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("work")).expect("mkdir");
    dir
}

/// TLS files for imrelp (server side) and for auditrelay (client side).
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Run examples/rsyslog/make-test-certs.sh into `dir/certs`; None when openssl is missing.
pub fn make_certs(dir: &Path) -> Option<Certs> {
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rsyslog/make-test-certs.sh");
    let out = dir.join("certs");
    let st = Command::new("sh").arg(&script).arg(&out).stdout(Stdio::null()).status().expect("run cert script");
    assert!(st.success(), "make-test-certs.sh failed");
    Some(Certs {
        ca: out.join("ca.pem"),
        server_cert: out.join("server.pem"),
        server_key: out.join("server.key"),
        client_cert: out.join("client.pem"),
        client_key: out.join("client.key"),
    })
}

pub struct Rsyslogd {
    pub dir: PathBuf,
    pub relp_port: u16,
    pub tcp_port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Rsyslogd {
    /// Write the config (as in shared/reference/relp.md, plus optional TLS for imrelp) and start.
    pub fn start(tag: &str, certs: Option<&Certs>) -> Rsyslogd {
        let dir = temp_dir(tag);
        let relp_port = free_port();
        let tcp_port = free_port();
        let d = dir.display();
        let (relp_module, relp_tls) = match certs {
            None => ("module(load=\"imrelp\")".to_string(), String::new()),
            Some(c) => (
                "module(load=\"imrelp\" tls.tlslib=\"openssl\")".to_string(),
                format!(
                    " tls=\"on\" tls.cacert=\"{}\" tls.mycert=\"{}\" tls.myprivkey=\"{}\" tls.authMode=\"certvalid\"",
                    c.ca.display(),
                    c.server_cert.display(),
                    c.server_key.display()
                ),
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{d}/work\" maxMessageSize=\"256k\" parser.escapeControlCharactersOnReceive=\"off\")\n\
             {relp_module}\n\
             module(load=\"imtcp\")\n\
             template(name=\"RawMsg\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"fromRelp\") {{ action(type=\"omfile\" file=\"{d}/relp.log\" template=\"RawMsg\") }}\n\
             ruleset(name=\"fromTcp\")  {{ action(type=\"omfile\" file=\"{d}/tcp.log\"  template=\"RawMsg\") }}\n\
             input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{relp_port}\" ruleset=\"fromRelp\" maxDataSize=\"256k\"{relp_tls})\n\
             input(type=\"imtcp\"  address=\"127.0.0.1\" port=\"{tcp_port}\" ruleset=\"fromTcp\")\n"
        );
        Rsyslogd::from_config(dir, &conf, relp_port, tcp_port)
    }

    /// Start rsyslogd on a ready-made config in `dir`; `ports` are awaited as the readiness signal.
    pub fn from_config(dir: PathBuf, conf: &str, relp_port: u16, tcp_port: u16) -> Rsyslogd {
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        let mut r = Rsyslogd { dir, relp_port, tcp_port, conf: conf_path, child: None };
        r.restart();
        r
    }

    pub fn relp_address(&self) -> String {
        format!("127.0.0.1:{}", self.relp_port)
    }

    pub fn tcp_address(&self) -> String {
        format!("127.0.0.1:{}", self.tcp_port)
    }

    /// Start (again) on the same config and ports and wait until both ports accept.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = rsyslogd_path().expect("rsyslogd");
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(self.dir.join("rsyslogd.out")).expect("out file")))
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("rsyslogd.err")).expect("err file")))
            .spawn()
            .expect("spawn rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in [self.relp_port, self.tcp_port] {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Some(c) = self.child.as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        panic!("rsyslogd exited with {st}: {}", self.stderr());
                    }
                }
                assert!(Instant::now() < deadline, "rsyslogd port {port} not ready: {}", self.stderr());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslogd.err")).unwrap_or_default()
    }

    /// Graceful stop (SIGTERM), waiting for the process to exit.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Hard stop (SIGKILL).
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    fn signal(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
            let _ = c.wait();
        }
    }

    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Poll `file` until it has at least `n` lines or `timeout` passes.
    pub fn wait_lines(&self, file: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines(file);
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("rsyslogd test dir kept: {}", self.dir.display());
        }
    }
}

/// A received line parsed as RFC 5424 with a JSON MSG.
#[derive(Debug)]
pub struct Received {
    pub pri: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub body: serde_json::Value,
    pub body_text: String,
}

/// Strict enough RFC 5424 parse for our own messages (SD is `-`).
pub fn parse_5424(line: &str) -> Received {
    let rest = line.strip_prefix('<').unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap_or_else(|| panic!("no PRI end: {line}"));
    let rest = rest.strip_prefix("1 ").unwrap_or_else(|| panic!("not version 1: {line}"));
    let parts: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(parts.len(), 7, "fields: {line}");
    let ts = parts[0];
    assert_eq!(ts.len(), 24, "timestamp {ts}");
    assert!(ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".", "timestamp {ts}");
    assert_eq!(parts[5], "-", "SD: {line}");
    let body: serde_json::Value = serde_json::from_str(parts[6]).unwrap_or_else(|e| panic!("JSON {e}: {line}"));
    Received {
        pri: pri.parse().expect("pri"),
        timestamp: ts.to_string(),
        hostname: parts[1].to_string(),
        app_name: parts[2].to_string(),
        procid: parts[3].to_string(),
        msgid: parts[4].to_string(),
        body,
        body_text: parts[6].to_string(),
    }
}

/// An audit-like event body numbered `n` (the number is what tests track).
pub fn body(n: u64) -> String {
    format!(
        "{{\"sequence\":{n},\"timestamp\":\"1795373270.{:03}\",\"node\":\"test\",\"records\":[\
         {{\"type\":\"SYSCALL\",\"type_id\":1300,\"fields\":{{\"arch\":\"c000003e\",\"syscall\":\"59\",\"key\":\"marker \\\"q\\\"\"}}}},\
         {{\"type\":\"EXECVE\",\"type_id\":1309,\"fields\":{{\"argc\":\"2\",\"a0\":\"/bin/echo\",\"a1\":\"hello é {n}\"}}}}]}}",
        n % 1000
    )
}

pub fn delivery(n: u64) -> Delivery {
    Delivery::new(n, 1_795_373_270_000 + n, &format!("test-{n}"), &body(n).into_bytes())
}

/// Sequence numbers in arrival order.
pub fn sequences(lines: &[String]) -> Vec<u64> {
    lines.iter().map(|l| parse_5424(l).body["sequence"].as_u64().expect("sequence")).collect()
}

/// Every 1..=n arrived; order preserved (a step back only to resend, by at most `window`).
pub fn assert_complete_in_order(seqs: &[u64], n: u64, window: u64) {
    let mut seen = std::collections::BTreeSet::new();
    let mut high = 0;
    for &s in seqs {
        if s <= high {
            assert!(high - s < window, "went back from {high} to {s}: more than one window ({window})");
        } else {
            assert_eq!(s, high + 1, "gap: {high} then {s}");
            high = s;
        }
        seen.insert(s);
    }
    let missing: Vec<u64> = (1..=n).filter(|i| !seen.contains(i)).collect();
    assert!(missing.is_empty(), "missing {} events: {:?}", missing.len(), &missing[..missing.len().min(20)]);
    assert_eq!(high, n);
}

/// A sink task under test, fed by a feeder task; `acked` follows its cumulative acks.
pub struct Running<E> {
    pub acked: Arc<AtomicU64>,
    pub shutdown: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), E>>,
    pub feeder: tokio::task::JoinHandle<()>,
}

/// Start a sink (`run` gets its delivery channel of `capacity`, ack channel and shutdown) and feed
/// it deliveries 1..=n made by `make`, `pause` apart. Acks are checked never to go backwards.
pub fn ship<E, Fut>(
    run: impl FnOnce(Deliveries, mpsc::Sender<Ack>, watch::Receiver<bool>) -> Fut,
    capacity: usize,
    n: u64,
    pause: Duration,
    make: fn(u64) -> Delivery,
) -> Running<E>
where
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity);
    let (atx, mut arx) = mpsc::channel::<Ack>(64);
    let (shutdown, srx) = watch::channel(false);
    let task = tokio::spawn(run(rx.into(), atx, srx));
    let acked = Arc::new(AtomicU64::new(0));
    let a = acked.clone();
    tokio::spawn(async move {
        while let Some(Ack(p)) = arx.recv().await {
            let prev = a.swap(p, Ordering::SeqCst);
            assert!(p > prev, "ack went backwards: {prev} -> {p}");
        }
    });
    let feeder = tokio::spawn(async move {
        for i in 1..=n {
            if tx.send(make(i)).await.is_err() {
                return;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    });
    Running { acked, shutdown, task, feeder }
}

pub async fn wait_acked<E>(r: &Running<E>, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while r.acked.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "acks stuck at {} of {n}", r.acked.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn finish<E: std::fmt::Debug>(r: Running<E>) {
    r.feeder.await.expect("feeder");
    // The sink may have finished already: the feeder closing the channel ends it too.
    let _ = r.shutdown.send(true);
    tokio::time::timeout(Duration::from_secs(15), r.task).await.expect("sink stops").expect("join").expect("sink ok");
}
