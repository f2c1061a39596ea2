//! TCP syslog output: RFC 5424 messages, RFC 6587 octet-counting (default) or LF framing, optionally
//! in TLS from the first byte (RFC 5425).
//!
//! What an ack means here, honestly: syslog over TCP has no application-level acknowledgement.
//! `Ack(pos)` is sent once the batch holding `pos` was written and the kernel's send queue for the
//! socket has drained (`SIOCOUTQ` reads 0), i.e. the receiving host's TCP stack acknowledged the
//! bytes. That catches a receiver that is gone (its RST or FIN fails the wait and the batch is
//! rewritten after reconnect), but not one that dies after its kernel took the bytes and before the
//! daemon processed them: rsyslog stopped at that moment loses what sat in its socket buffer. Use
//! RELP when that matters.
//!
//! Invariants:
//! - At most `batch` deliveries are taken and not yet acked; they are kept framed and rewritten, in
//!   order, on the next connection if the wait for the send queue fails.
//! - A reader task watches the connection; rsyslog never sends on it, so any read result (EOF,
//!   error, or unexpected bytes) means the connection is over.
//! - Shutdown stops taking deliveries; everything written and confirmed was acked already.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::output::backoff::Backoff;
use crate::output::delivery::{Ack, Deliveries, Delivery};
use crate::output::netstats::{bump, NET_STATS};
use crate::output::reconnect::{self, ConnEnd, StreamSink};
use crate::output::shutdown_requested;
use crate::output::syslog::{header_spec, BodyFormat, Facility, Formatter, Framing, HeaderSpec, Severity, SyslogError};
use crate::output::tls::{BoxStream, Connected, Connector, TlsConfig, TlsError};
use crate::units::{ByteSize, HumanDuration};

pub const MAX_BATCH: usize = 65_536;

/// `[[output]] type = "tcp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Name used in logs; default: `tcp:<address>`.
    pub name: Option<String>,
    pub address: String,
    pub format: BodyFormat,
    /// TLS from the first byte (RFC 5425; rsyslog imtcp with a TLS stream driver).
    pub tls: Option<TlsConfig>,
    pub framing: Framing,
    pub max_message_size: ByteSize,
    /// Deliveries written per batch and held until the send queue drains.
    pub batch: usize,
    pub facility: Facility,
    pub severity: Severity,
    pub hostname: Option<String>,
    pub app_name: String,
    pub msgid: String,
    pub sd_id: Option<String>,
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
    pub connect_timeout: HumanDuration,
    /// How long a batch may take to be written and acknowledged by the peer's TCP stack.
    pub write_timeout: HumanDuration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        let h = HeaderSpec::defaults(64 * 1024);
        TcpConfig {
            name: None,
            address: "127.0.0.1:514".to_string(),
            format: BodyFormat::Native,
            tls: None,
            framing: Framing::OctetCounting,
            max_message_size: ByteSize(h.max_message_size as u64),
            batch: 128,
            facility: h.facility,
            severity: h.severity,
            hostname: h.hostname,
            app_name: h.app_name,
            msgid: h.msgid,
            sd_id: h.sd_id,
            reconnect_min: HumanDuration(Duration::from_millis(500)),
            reconnect_max: HumanDuration(Duration::from_secs(30)),
            connect_timeout: HumanDuration(Duration::from_secs(10)),
            write_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

impl TcpConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("tcp:{}", self.address))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error(transparent)]
    Header(#[from] SyslogError),
    #[error("output {output}: {source}")]
    Tls { output: String, source: TlsError },
    #[error("output {output}: batch {batch} must be between 1 and {MAX_BATCH}")]
    Batch { output: String, batch: usize },
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error("connection closed by the receiver")]
    Closed,
    #[error("batch not acknowledged by the receiver's TCP stack within {0:?}")]
    Timeout(Duration),
}

/// Bytes written to `fd` and not yet acknowledged by the peer (`SIOCOUTQ`).
fn unsent_bytes(fd: RawFd) -> io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (== SIOCOUTQ for sockets) writes one c_int through the pointer, which points
    // at a live local; `fd` is the socket owned by the connection that is alive during this call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ as _, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

struct Sink {
    name: String,
    framing: Framing,
    batch: usize,
    write_timeout: Duration,
    formatter: Formatter,
    deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    pending_ack: Option<u64>,
    /// Taken, framed, not yet confirmed: (pos, frame).
    unconfirmed: VecDeque<(u64, Vec<u8>)>,
    input_closed: bool,
    scratch: Vec<u8>,
    progress: bool,
}

impl Sink {
    fn take(&mut self, d: Delivery) {
        let mut framed = Vec::with_capacity(d.body().len() + 128);
        self.formatter.format_framed(&d, self.framing, &mut framed, &mut self.scratch);
        self.unconfirmed.push_back((d.pos, framed));
    }

    /// Write every unconfirmed frame, wait until the peer's TCP stack has them, then ack.
    async fn write_and_confirm(
        &mut self,
        wr: &mut WriteHalf<BoxStream>,
        fd: RawFd,
        dead: &mut oneshot::Receiver<()>,
    ) -> Result<(), ConnError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut buf = Vec::new();
        for (_, f) in &self.unconfirmed {
            buf.extend_from_slice(f);
        }
        let write = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, write) => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ConnError::Write(e)),
                Err(_) => return Err(ConnError::Timeout(self.write_timeout)),
            },
            _ = &mut *dead => return Err(ConnError::Closed),
        }
        let mut poll = Duration::from_micros(200);
        loop {
            match unsent_bytes(fd) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ConnError::Write(e)),
            }
            if Instant::now() >= deadline {
                return Err(ConnError::Timeout(self.write_timeout));
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = &mut *dead => return Err(ConnError::Closed),
            }
            poll = (poll * 2).min(Duration::from_millis(20));
        }
        if let Some((pos, _)) = self.unconfirmed.back() {
            self.pending_ack = Some(*pos);
            bump(&NET_STATS.acked, self.unconfirmed.len() as u64);
            self.progress = true;
        }
        self.unconfirmed.clear();
        Ok(())
    }

    async fn flush_ack(&mut self) {
        if let Some(pos) = self.pending_ack.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.acks.send(Ack(pos))).await;
        }
    }

    /// One connection; Ok when shutdown or input closed, Err when the connection failed.
    async fn run_conn(&mut self, conn: Connected, shutdown: &mut watch::Receiver<bool>) -> Result<(), ConnError> {
        let fd = conn.fd;
        let (mut rd, mut wr) = tokio::io::split(conn.stream);
        let (dead_tx, mut dead) = oneshot::channel();
        let watcher = tokio::spawn(async move {
            let mut b = [0u8; 512];
            let _ = rd.read(&mut b).await;
            let _ = dead_tx.send(());
        });
        let _abort = AbortOnDrop(watcher);
        if !self.unconfirmed.is_empty() {
            bump(&NET_STATS.resent, self.unconfirmed.len() as u64);
            log::info!("output {}: rewriting {} unconfirmed deliveries", self.name, self.unconfirmed.len());
            self.write_and_confirm(&mut wr, fd, &mut dead).await?;
        }
        loop {
            if shutdown_requested(shutdown) || self.input_closed {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            let next = tokio::select! {
                biased;
                _ = &mut dead => return Err(ConnError::Closed),
                permit = self.acks.reserve(), if self.pending_ack.is_some() => {
                    if let (Ok(permit), Some(pos)) = (permit, self.pending_ack.take()) {
                        permit.send(Ack(pos));
                    }
                    None
                },
                _ = shutdown.changed() => None,
                d = self.deliveries.recv() => Some(d),
            };
            match next {
                None => {}
                Some(None) => self.input_closed = true,
                Some(Some(d)) => {
                    self.take(d);
                    while self.unconfirmed.len() < self.batch {
                        match self.deliveries.try_recv() {
                            Ok(d) => self.take(d),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                self.input_closed = true;
                                break;
                            }
                        }
                    }
                    self.write_and_confirm(&mut wr, fd, &mut dead).await?;
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The checks `run` makes before it connects; the daemon makes them at start too
/// ([`crate::output::OutputConfig::check`]).
pub fn prepare(config: &TcpConfig) -> Result<(Formatter, Connector), TcpError> {
    let name = config.display_name();
    if config.batch == 0 || config.batch > MAX_BATCH {
        return Err(TcpError::Batch { output: name, batch: config.batch });
    }
    let formatter = Formatter::new(&name, &header_spec!(config))?;
    let connector = Connector::new(&config.address, config.tls.as_ref(), config.connect_timeout.0)
        .map_err(|source| TcpError::Tls { output: name.clone(), source })?;
    Ok((formatter, connector))
}

/// Run the TCP output until shutdown (or the delivery channel closes). Errors only for invalid
/// configuration; network trouble is retried forever with backoff.
pub async fn run(
    config: TcpConfig,
    deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), TcpError> {
    let name = config.display_name();
    let (formatter, connector) = prepare(&config)?;
    let backoff = Backoff::new(config.reconnect_min.0, config.reconnect_max.0);
    let mut sink = Sink {
        name: name.clone(),
        framing: config.framing,
        batch: config.batch,
        write_timeout: config.write_timeout.0,
        formatter,
        deliveries,
        acks,
        pending_ack: None,
        unconfirmed: VecDeque::new(),
        input_closed: false,
        scratch: Vec::new(),
        progress: false,
    };
    reconnect::run(&name, &mut sink, &connector, backoff, &mut shutdown).await;
    Ok(())
}

impl StreamSink for Sink {
    type Error = ConnError;

    fn connect_failed(e: io::Error) -> ConnError {
        ConnError::Connect(e)
    }

    fn finished(&self) -> bool {
        self.input_closed && self.unconfirmed.is_empty()
    }

    async fn serve(&mut self, conn: Connected, shutdown: &mut watch::Receiver<bool>) -> Result<ConnEnd, ConnError> {
        self.run_conn(conn, shutdown).await.map(|()| ConnEnd::Done)
    }

    fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    fn backlog(&self) -> String {
        format!("{} unconfirmed deliveries will be rewritten", self.unconfirmed.len())
    }

    async fn flush_ack(&mut self) {
        Sink::flush_ack(self).await
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
        tokio::task::JoinHandle<Result<(), TcpError>>,
    );
    use tokio::net::TcpListener;

    fn delivery(i: u64) -> Delivery {
        Delivery::new(i, 0, "x", format!("{{\"n\":{i}}}").as_bytes())
    }

    /// Split an octet-counted stream into messages.
    fn octet_frames(mut b: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let sp = b.iter().position(|&c| c == b' ').unwrap();
            let len: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().unwrap();
            out.push(String::from_utf8(b[sp + 1..sp + 1 + len].to_vec()).unwrap());
            b = &b[sp + 1 + len..];
        }
        out
    }

    fn start(cfg: TcpConfig) -> Harness {
        let (tx, rx) = mpsc::channel(16);
        let (atx, arx) = mpsc::channel(16);
        let (stx, srx) = watch::channel(false);
        (tx, arx, stx, tokio::spawn(run(cfg, rx.into(), atx, srx)))
    }

    fn cfg(addr: String, framing: Framing) -> TcpConfig {
        TcpConfig {
            address: addr,
            framing,
            hostname: Some("h".into()),
            reconnect_min: HumanDuration(Duration::from_millis(10)),
            ..TcpConfig::default()
        }
    }

    #[tokio::test]
    async fn octet_counted_messages_acked_after_write() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut acks, stop, task) = start(cfg(l.local_addr().unwrap().to_string(), Framing::OctetCounting));
        let (mut s, _) = l.accept().await.unwrap();
        for i in 1..=20 {
            tx.send(delivery(i)).await.unwrap();
        }
        let mut last = 0;
        while last < 20 {
            last = acks.recv().await.unwrap().0;
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let msgs = octet_frames(&all);
        assert_eq!(msgs.len(), 20);
        for (i, m) in msgs.iter().enumerate() {
            assert!(m.starts_with("<14>1 1970-01-01T00:00:00.000Z h auditrelay "), "{m}");
            assert!(m.ends_with(&format!("{{\"n\":{}}}", i + 1)), "{m}");
        }
    }

    #[tokio::test]
    async fn lf_framing() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut acks, stop, task) = start(cfg(l.local_addr().unwrap().to_string(), Framing::Lf));
        let (mut s, _) = l.accept().await.unwrap();
        tx.send(delivery(1)).await.unwrap();
        tx.send(delivery(2)).await.unwrap();
        let mut last = 0;
        while last < 2 {
            last = acks.recv().await.unwrap().0;
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("{\"n\":2}"));
    }

    #[tokio::test]
    async fn closed_receiver_is_noticed_and_reconnected() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut acks, stop, task) = start(cfg(l.local_addr().unwrap().to_string(), Framing::OctetCounting));
        let (s, _) = l.accept().await.unwrap();
        tx.send(delivery(1)).await.unwrap();
        assert_eq!(acks.recv().await.unwrap(), Ack(1));
        drop(s);
        // The sink notices the close without sending anything and connects again.
        let (mut s2, _) = tokio::time::timeout(Duration::from_secs(5), l.accept()).await.unwrap().unwrap();
        tx.send(delivery(2)).await.unwrap();
        assert_eq!(acks.recv().await.unwrap(), Ack(2));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let mut all = Vec::new();
        s2.read_to_end(&mut all).await.unwrap();
        let msgs = octet_frames(&all);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].ends_with("{\"n\":2}"));
    }

    #[tokio::test]
    async fn nothing_acked_while_nobody_listens() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let (tx, mut acks, stop, task) = start(cfg(addr.clone(), Framing::OctetCounting));
        tx.send(delivery(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(acks.try_recv().is_err());
        // The receiver appears: the held delivery is written and acked.
        let l = TcpListener::bind(&addr).await.unwrap();
        let (_s, _) = tokio::time::timeout(Duration::from_secs(5), l.accept()).await.unwrap().unwrap();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), acks.recv()).await.unwrap(), Some(Ack(1)));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
