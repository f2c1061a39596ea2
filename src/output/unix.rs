//! Local syslog output over a unix socket (default `/dev/log`).
//!
//! The `syslog` crate fits here: it connects to the socket as a datagram socket and falls back to a
//! stream socket (NUL-terminated messages) when the listener is a stream (EPROTOTYPE), which is the
//! part worth reusing. We do not use its formatters: they stamp the current time, and a shipped
//! event must carry its own. Our RFC 5424 message goes through the crate's writer unchanged (the
//! crate frames nothing on TCP, which is why TCP and RELP use our own formatter and framing).
//!
//! What an ack means here: the message was written to the local socket. On a datagram socket the
//! write blocks while the receiver's queue is full, so nothing is dropped on our side; what the
//! local daemon does with it afterwards is not visible. Note that some /dev/log readers (journald,
//! rsyslog imuxsock with its default special parser) expect RFC 3164 and may keep the RFC 5424
//! header as part of the message text.
//!
//! The crate's I/O is blocking, so writes run on tokio's blocking pool, one batch at a time.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use syslog::{LogFormat, Logger, LoggerBackend};
use tokio::sync::{mpsc, watch};

use crate::output::backoff::Backoff;
use crate::output::delivery::{Ack, Deliveries, Delivery};
use crate::output::netstats::{bump, NET_STATS};
use crate::output::syslog::{header_spec, BodyFormat, Facility, Formatter, HeaderSpec, Severity, SyslogError};
use crate::output::{shutdown_requested, sleep_unless_shutdown};
use crate::units::{ByteSize, HumanDuration};

/// Deliveries written per blocking call.
const BATCH: usize = 64;

/// `[[output]] type = "unix"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnixConfig {
    pub name: Option<String>,
    /// Path of the local syslog socket.
    pub address: PathBuf,
    pub format: BodyFormat,
    pub max_message_size: ByteSize,
    pub facility: Facility,
    pub severity: Severity,
    pub hostname: Option<String>,
    pub app_name: String,
    pub msgid: String,
    pub sd_id: Option<String>,
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
}

impl Default for UnixConfig {
    fn default() -> Self {
        let h = HeaderSpec::defaults(64 * 1024);
        UnixConfig {
            name: None,
            address: PathBuf::from("/dev/log"),
            format: BodyFormat::Native,
            max_message_size: ByteSize(h.max_message_size as u64),
            facility: h.facility,
            severity: h.severity,
            hostname: h.hostname,
            app_name: h.app_name,
            msgid: h.msgid,
            sd_id: h.sd_id,
            reconnect_min: HumanDuration(Duration::from_millis(100)),
            reconnect_max: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnixError {
    #[error(transparent)]
    Header(#[from] SyslogError),
}

/// Passes an already formatted message through the crate's writer (`write_fmt` is the path that
/// handles partial writes and the stream NUL terminator correctly).
#[derive(Clone, Copy)]
struct Preformatted;

impl LogFormat<&str> for Preformatted {
    fn format<W: std::io::Write>(&self, w: &mut W, _: syslog::Severity, message: &str) -> syslog::Result<()> {
        write!(w, "{message}").map_err(syslog::Error::Write)
    }
}

type Conn = Logger<LoggerBackend, Preformatted>;

/// Connect if needed and write `msgs` in order; returns the connection (if still usable), how many
/// were written, and the error that stopped it.
fn write_batch(conn: Option<Conn>, path: &PathBuf, msgs: &[String]) -> (Option<Conn>, usize, Option<String>) {
    let mut conn = match conn {
        Some(c) => c,
        None => match syslog::unix_custom(Preformatted, path) {
            Ok(c) => c,
            Err(e) => return (None, 0, Some(e.to_string())),
        },
    };
    for (i, m) in msgs.iter().enumerate() {
        if let Err(e) = conn.info(m.as_str()) {
            return (None, i, Some(e.to_string()));
        }
    }
    (Some(conn), msgs.len(), None)
}

impl UnixConfig {
    /// Name used in logs: `name`, else `unix:<address>`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("unix:{}", self.address.display()))
    }
}

/// The checks `run` makes before it connects; the daemon makes them at start too
/// ([`crate::output::OutputConfig::check`]).
pub fn prepare(config: &UnixConfig) -> Result<Formatter, UnixError> {
    let name = config.display_name();
    Ok(Formatter::new(&name, &header_spec!(config))?)
}

/// Run the unix socket output until shutdown or until the delivery channel closes.
pub async fn run(
    config: UnixConfig,
    mut deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), UnixError> {
    let formatter = prepare(&config)?;
    let name = config.display_name();
    let mut backoff = Backoff::new(config.reconnect_min.0, config.reconnect_max.0);
    let mut conn: Option<Conn> = None;
    // (pos, message) taken and not yet written, in order.
    let mut pending: Vec<(u64, String)> = Vec::new();
    let mut scratch = Vec::new();
    let format = |d: &Delivery, scratch: &mut Vec<u8>| {
        scratch.clear();
        formatter.format(d, scratch);
        String::from_utf8_lossy(scratch).into_owned()
    };
    loop {
        if shutdown_requested(&shutdown) {
            return Ok(());
        }
        if pending.is_empty() {
            tokio::select! {
                d = deliveries.recv() => match d {
                    Some(d) => pending.push((d.pos, format(&d, &mut scratch))),
                    None => return Ok(()),
                },
                _ = shutdown.changed() => continue,
            }
            while pending.len() < BATCH {
                match deliveries.try_recv() {
                    Ok(d) => pending.push((d.pos, format(&d, &mut scratch))),
                    Err(_) => break,
                }
            }
        }
        let msgs: Vec<String> = pending.iter().map(|(_, m)| m.clone()).collect();
        let path = config.address.clone();
        let taken = conn.take();
        let (back, written, err) = match tokio::task::spawn_blocking(move || write_batch(taken, &path, &msgs)).await {
            Ok(r) => r,
            Err(e) => (None, 0, Some(e.to_string())),
        };
        conn = back;
        if written > 0 {
            let pos = pending[written - 1].0;
            pending.drain(..written);
            bump(&NET_STATS.acked, written as u64);
            backoff.reset();
            if acks.send(Ack(pos)).await.is_err() {
                return Ok(());
            }
        }
        if let Some(e) = err {
            bump(&NET_STATS.reconnects, 1);
            crate::telemetry::output(&name).failed(&e);
            let delay = backoff.next_delay();
            log::warn!("output {name}: {e}; {} deliveries wait, retrying in {delay:?}", pending.len());
            sleep_unless_shutdown(delay, &mut shutdown).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    type Harness = (
        mpsc::Sender<Delivery>,
        mpsc::Receiver<Ack>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<Result<(), UnixError>>,
    );
    use std::os::unix::net::{UnixDatagram, UnixListener};

    fn delivery(i: u64) -> Delivery {
        Delivery::new(i, 1000, "x", format!("{{\"n\":{i}}}").as_bytes())
    }

    fn start(path: PathBuf) -> Harness {
        let cfg = UnixConfig { address: path, hostname: Some("h".into()), ..UnixConfig::default() };
        let (tx, rx) = mpsc::channel(8);
        let (atx, arx) = mpsc::channel(8);
        let (stx, srx) = watch::channel(false);
        (tx, arx, stx, tokio::spawn(run(cfg, rx.into(), atx, srx)))
    }

    // Multi-threaded: the test reads the socket with blocking calls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn datagram_socket_gets_one_message_per_event() {
        let dir = std::env::temp_dir().join(format!("auditrelay-unix-dg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let (tx, mut acks, stop, task) = start(path);
        for i in 1..=3 {
            tx.send(delivery(i)).await.unwrap();
        }
        let mut buf = [0u8; 4096];
        for i in 1..=3 {
            let n = server.recv(&mut buf).unwrap();
            let s = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(s.starts_with("<14>1 1970-01-01T00:00:01.000Z h auditrelay "), "{s}");
            assert!(s.ends_with(&format!("{{\"n\":{i}}}")), "{s}");
        }
        let mut last = 0;
        while last < 3 {
            last = acks.recv().await.unwrap().0;
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn stream_socket_gets_nul_terminated_messages() {
        let dir = std::env::temp_dir().join(format!("auditrelay-unix-st-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let listener = UnixListener::bind(&path).unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while all.iter().filter(|&&b| b == 0).count() < 2 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        let (tx, mut acks, stop, task) = start(path);
        tx.send(delivery(1)).await.unwrap();
        tx.send(delivery(2)).await.unwrap();
        let mut last = 0;
        while last < 2 {
            last = acks.recv().await.unwrap().0;
        }
        let all = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
        let msgs: Vec<&[u8]> = all.split(|&b| b == 0).filter(|m| !m.is_empty()).collect();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].ends_with(b"{\"n\":2}"));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn missing_socket_is_retried_not_skipped() {
        let dir = std::env::temp_dir().join(format!("auditrelay-unix-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let (tx, mut acks, stop, task) = start(path.clone());
        tx.send(delivery(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(acks.try_recv().is_err(), "acked with no socket");
        let server = UnixDatagram::bind(&path).unwrap();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), acks.recv()).await.unwrap(), Some(Ack(1)));
        let mut buf = [0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"{\"n\":1}"));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
