//! One RELP session over one connection, and the unacked window that outlives it.
//!
//! The window (`unacked`) holds every delivery taken from the spool and not yet acked, with its
//! formatted message, in spool order. In a session the first `sent` of them have been sent with
//! consecutive txnrs starting at `base_txnr`; because librelp answers in command order, the next
//! rsp must carry `base_txnr`, and a 200 pops exactly the front. Anything else ends the session,
//! and the next session resends the whole window from the front.
//!
//! Reading runs in its own task that decodes frames into a bounded channel, so rsps are consumed
//! while a write is in progress and a dead peer is noticed without waiting for the next send.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::frame::{self, Command, Decoder, Frame, FrameError, Response};
use super::{Limits, RelpConfig};
use crate::output::delivery::{Ack, Deliveries, Delivery};
use crate::output::netstats::{bump, NET_STATS};
use crate::output::shutdown_requested;
use crate::output::syslog::Formatter;
use crate::output::tls::BoxStream;

/// Largest rsp/hint frame we accept from a server (open rsp offers are a few hundred bytes).
const MAX_SERVER_FRAME: usize = 64 * 1024;
/// How long `close` may take: writing it, then waiting for its rsp and the server's `serverclose`.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long handing the last ack to the spool may take at exit.
pub(crate) const ACK_FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Once the window is full, how long to wait for it to drain to half before sending into
/// whatever room there is. Why both: refilling as each rsp freed a slot made a receiver that
/// answers in bursts (imrelp under a flat-out storm) ping-pong with us in batches of a few frames
/// (0.15 wake-ups and 3.4 µs of this thread per event); waiting for half the window alone
/// stalls, because imrelp's socket keeps Nagle on: after the first rsp of a burst the rest wait
/// for our ACK, which with nothing of ours to send is a delayed one (40 ms). A frame sent after
/// this pause carries that ACK. See docs/performance.md.
const REFILL_PAUSE: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed by the receiver")]
    Eof,
    #[error("malformed frame from the receiver: {0}")]
    Frame(#[from] FrameError),
    #[error("txnr {txnr}: {what}")]
    Protocol { txnr: u32, what: String },
    #[error("txnr {txnr} (spool pos {pos}): receiver answered {code} {text}")]
    Rejected { txnr: u32, pos: u64, code: u16, text: String },
    #[error("receiver sent serverclose")]
    ServerClose,
    #[error("no rsp for txnr {txnr} within {timeout:?}")]
    Timeout { txnr: u32, timeout: Duration },
}

/// How a session ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown: `close` was sent; the sink is done.
    Closed,
    /// The txnr limit was reached with nothing outstanding; open a new session at once.
    Rotate,
}

struct Pending {
    /// The event (its bytes shared with the rest of its spool batch), kept for a resend. The
    /// RFC 5424 header is written straight into the frame at each send: keeping a formatted copy
    /// cost an allocation and a second copy of every body on this thread.
    delivery: Delivery,
    /// The body cut to fit `max_message_size`, for the rare event that does not.
    cut: Option<Vec<u8>>,
}

pub struct Session {
    name: String,
    window: usize,
    response_timeout: Duration,
    shutdown_timeout: Duration,
    limits: Limits,
    formatter: Formatter,
    deliveries: Deliveries,
    input_closed: bool,
    acks: mpsc::Sender<Ack>,
    pending_ack: Option<u64>,
    unacked: VecDeque<Pending>,
    /// The syslog header of the frame being written (reused).
    header: Vec<u8>,
    /// Set when a syslog frame was acked since the last `take_progress`.
    progress: bool,
    /// The window filled up: until this instant nothing more is taken unless the window has
    /// drained to half ([`REFILL_PAUSE`]).
    refill_after: Option<Instant>,
}

/// Aborts the reader task when the session ends, however it ends.
struct ReaderTask(JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_frames(mut rd: ReadHalf<BoxStream>, tx: mpsc::Sender<Result<Frame, SessionError>>) {
    let mut decoder = Decoder::new(MAX_SERVER_FRAME);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(Err(SessionError::Eof)).await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(SessionError::Io(e))).await;
                return;
            }
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.decode() {
                Ok(Some(f)) => {
                    if tx.send(Ok(f)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(SessionError::Frame(e))).await;
                    return;
                }
            }
        }
    }
}

enum Ev {
    Nothing,
    Frame(Option<Result<Frame, SessionError>>),
    Delivery(Option<Delivery>),
    RspTimeout,
}

/// The per-connection part of a session.
struct Conn {
    wr: WriteHalf<BoxStream>,
    frames: mpsc::Receiver<Result<Frame, SessionError>>,
    _reader: ReaderTask,
    next_txnr: u32,
    /// txnr of `unacked[0]` when `sent > 0`.
    base_txnr: u32,
    sent: usize,
    /// When the oldest outstanding frame started waiting (reset on every rsp).
    waiting_since: Instant,
    out: Vec<u8>,
}

impl Session {
    pub fn new(
        name: &str,
        config: &RelpConfig,
        limits: Limits,
        formatter: Formatter,
        deliveries: Deliveries,
        acks: mpsc::Sender<Ack>,
    ) -> Session {
        Session {
            name: name.to_string(),
            window: config.window,
            response_timeout: config.response_timeout.0,
            shutdown_timeout: config.shutdown_timeout.0,
            limits,
            formatter,
            deliveries,
            input_closed: false,
            acks,
            pending_ack: None,
            unacked: VecDeque::new(),
            header: Vec::new(),
            progress: false,
            refill_after: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The delivery channel is closed and nothing is left to deliver.
    pub fn input_done(&self) -> bool {
        self.input_closed && self.unacked.is_empty()
    }

    pub fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    /// Hand the pending cumulative ack to the spool (bounded wait: at exit the spool may be gone).
    pub async fn flush_ack(&mut self) {
        if let Some(pos) = self.pending_ack.take() {
            let _ = tokio::time::timeout(ACK_FLUSH_WAIT, self.acks.send(Ack(pos))).await;
        }
    }

    async fn write(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let res = tokio::time::timeout(self.response_timeout, async {
            conn.wr.write_all(&conn.out).await?;
            conn.wr.flush().await
        })
        .await;
        conn.out.clear();
        match res {
            Ok(r) => Ok(r?),
            Err(_) => Err(SessionError::Io(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))),
        }
    }

    fn next_frame_txnr(conn: &mut Conn) -> u32 {
        let t = conn.next_txnr;
        conn.next_txnr += 1;
        t
    }

    /// Wait for the next frame from the reader, bounded by `timeout`.
    async fn recv_frame(conn: &mut Conn, timeout: Duration, txnr: u32) -> Result<Frame, SessionError> {
        match tokio::time::timeout(timeout, conn.frames.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(SessionError::Eof),
            Err(_) => Err(SessionError::Timeout { txnr, timeout }),
        }
    }

    async fn open(&mut self, stream: BoxStream) -> Result<Conn, SessionError> {
        let (rd, wr) = tokio::io::split(stream);
        let (tx, frames) = mpsc::channel(self.window + 8);
        let reader = ReaderTask(tokio::spawn(read_frames(rd, tx)));
        let mut conn = Conn {
            wr,
            frames,
            _reader: reader,
            next_txnr: 1,
            base_txnr: 0,
            sent: 0,
            waiting_since: Instant::now(),
            out: Vec::new(),
        };
        let offers = format!("relp_version=0\nrelp_software=auditrelay,{}\ncommands=syslog", env!("CARGO_PKG_VERSION"));
        let txnr = Self::next_frame_txnr(&mut conn);
        frame::encode(txnr, "open", offers.as_bytes(), &mut conn.out);
        self.write(&mut conn).await?;
        let f = Self::recv_frame(&mut conn, self.response_timeout, txnr).await?;
        let rsp = self.check_rsp(&f, txnr, 0)?;
        if !rsp.data.lines().any(|l| l.strip_prefix("commands=").is_some_and(|c| c.split(',').any(|c| c == "syslog"))) {
            return Err(SessionError::Protocol { txnr, what: format!("server does not offer syslog: {:?}", rsp.data) });
        }
        Ok(conn)
    }

    /// `f` must be the rsp to `txnr`, with code 200.
    fn check_rsp(&self, f: &Frame, txnr: u32, pos: u64) -> Result<Response, SessionError> {
        match f.command {
            Command::Rsp => {}
            Command::ServerClose => return Err(SessionError::ServerClose),
            ref other => {
                return Err(SessionError::Protocol {
                    txnr: f.txnr,
                    what: format!("unexpected command {other} from the receiver"),
                })
            }
        }
        if f.txnr != txnr {
            return Err(SessionError::Protocol {
                txnr: f.txnr,
                what: format!("rsp out of order, expected txnr {txnr}"),
            });
        }
        let rsp = Response::parse(&f.data).ok_or_else(|| SessionError::Protocol {
            txnr,
            what: format!("unparsable rsp {:?}", String::from_utf8_lossy(&f.data)),
        })?;
        if rsp.code != 200 {
            bump(&NET_STATS.relp_rejects, 1);
            return Err(SessionError::Rejected { txnr, pos, code: rsp.code, text: rsp.text });
        }
        Ok(rsp)
    }

    /// Encode `unacked[conn.sent]` as the next syslog frame.
    fn encode_next(&mut self, conn: &mut Conn) {
        if conn.sent == 0 {
            conn.base_txnr = conn.next_txnr;
            conn.waiting_since = Instant::now();
        }
        let txnr = Self::next_frame_txnr(conn);
        let p = &self.unacked[conn.sent];
        let d = &p.delivery;
        self.header.clear();
        self.formatter.push_header(d.time_ms, d.id(), &mut self.header);
        let body = p.cut.as_deref().unwrap_or(d.body());
        frame::encode_parts(txnr, "syslog", &[&self.header, body], &mut conn.out);
        conn.sent += 1;
    }

    fn on_frame(&mut self, conn: &mut Conn, f: Frame) -> Result<(), SessionError> {
        if f.command == Command::ServerClose {
            return Err(SessionError::ServerClose);
        }
        let Some(front) = self.unacked.front() else {
            return Err(SessionError::Protocol {
                txnr: f.txnr,
                what: format!("unexpected {} with nothing outstanding", f.command),
            });
        };
        if conn.sent == 0 {
            return Err(SessionError::Protocol {
                txnr: f.txnr,
                what: format!("unexpected {} with nothing sent", f.command),
            });
        }
        // The common `200 OK` is checked without building a Response (two Strings per event).
        if f.command != Command::Rsp || f.txnr != conn.base_txnr || Response::code(&f.data) != Some(200) {
            self.check_rsp(&f, conn.base_txnr, front.delivery.pos)?;
        }
        let pos = front.delivery.pos;
        self.unacked.pop_front();
        conn.sent -= 1;
        conn.base_txnr += 1;
        conn.waiting_since = Instant::now();
        self.pending_ack = Some(pos);
        self.progress = true;
        bump(&NET_STATS.acked, 1);
        Ok(())
    }

    fn push(&mut self, d: Delivery) {
        let cut = self.formatter.cut_body(&d);
        self.unacked.push_back(Pending { delivery: d, cut });
    }

    /// Room for another frame in this session (window, with the refill pause, and txnr limit;
    /// one txnr kept for `close`).
    fn can_send(&mut self, conn: &Conn) -> bool {
        if self.unacked.len() >= self.window {
            if self.refill_after.is_none() {
                self.refill_after = Some(Instant::now() + REFILL_PAUSE);
            }
            return false;
        }
        if let Some(after) = self.refill_after {
            if self.unacked.len() > self.window / 2 && Instant::now() < after {
                return false;
            }
            self.refill_after = None;
        }
        conn.next_txnr < self.limits.max_txnr
    }

    /// Run one session on a connected stream until shutdown, rotation or error.
    pub async fn run(
        &mut self,
        stream: BoxStream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SessionError> {
        let mut conn = self.open(stream).await?;
        // Resend the window, in order, with this session's txnrs.
        let resend = self.unacked.len();
        while conn.sent < self.unacked.len() {
            self.encode_next(&mut conn);
        }
        if resend > 0 {
            bump(&NET_STATS.resent, resend as u64);
            log::info!("output {}: session open, resending {resend} unacked deliveries", self.name);
            self.write(&mut conn).await?;
        }
        let mut draining_until: Option<Instant> = None;
        loop {
            if draining_until.is_none() && (shutdown_requested(shutdown) || self.input_closed) {
                draining_until = Some(Instant::now() + self.shutdown_timeout);
            }
            if let Some(deadline) = draining_until {
                if conn.sent == 0 || Instant::now() >= deadline {
                    self.close(&mut conn).await;
                    return Ok(SessionEnd::Closed);
                }
            } else if conn.sent == 0 && conn.next_txnr >= self.limits.max_txnr {
                self.close(&mut conn).await;
                return Ok(SessionEnd::Rotate);
            }
            let take = draining_until.is_none() && !self.input_closed && self.can_send(&conn);
            let rsp_deadline = conn.waiting_since + self.response_timeout;
            let drain_deadline = draining_until.unwrap_or(rsp_deadline);
            let ev = tokio::select! {
                biased;
                f = conn.frames.recv() => Ev::Frame(f),
                permit = self.acks.reserve(), if self.pending_ack.is_some() => {
                    if let (Ok(permit), Some(pos)) = (permit, self.pending_ack.take()) {
                        permit.send(Ack(pos));
                    }
                    Ev::Nothing
                },
                d = self.deliveries.recv(), if take => Ev::Delivery(d),
                _ = shutdown.changed(), if draining_until.is_none() => Ev::Nothing,
                _ = tokio::time::sleep_until(rsp_deadline), if conn.sent > 0 => Ev::RspTimeout,
                _ = tokio::time::sleep_until(drain_deadline), if draining_until.is_some() => Ev::Nothing,
                _ = tokio::time::sleep_until(self.refill_after.unwrap_or(rsp_deadline)),
                    if self.refill_after.is_some() && !take => Ev::Nothing,
            };
            match ev {
                Ev::Nothing => {}
                Ev::Frame(Some(Ok(f))) => {
                    self.on_frame(&mut conn, f)?;
                    // Take every rsp already queued in this turn: one loop pass (and one set of
                    // timers) per burst of acks, not per ack.
                    while let Ok(next) = conn.frames.try_recv() {
                        self.on_frame(&mut conn, next?)?;
                    }
                }
                Ev::Frame(Some(Err(e))) => return Err(e),
                Ev::Frame(None) => return Err(SessionError::Eof),
                Ev::RspTimeout => {
                    return Err(SessionError::Timeout { txnr: conn.base_txnr, timeout: self.response_timeout });
                }
                Ev::Delivery(None) => self.input_closed = true,
                Ev::Delivery(Some(d)) => {
                    self.push(d);
                    self.encode_next(&mut conn);
                    // Batch whatever else is ready into the same write.
                    while self.can_send(&conn) {
                        match self.deliveries.try_recv() {
                            Ok(d) => {
                                self.push(d);
                                self.encode_next(&mut conn);
                            }
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                self.input_closed = true;
                                break;
                            }
                        }
                    }
                    self.write(&mut conn).await?;
                }
            }
        }
    }

    /// Send `close` and wait briefly for its rsp and the server's `serverclose`. Frames still
    /// outstanding stay in the window (the spool redelivers them after restart).
    async fn close(&mut self, conn: &mut Conn) {
        let txnr = Self::next_frame_txnr(conn);
        frame::encode(txnr, "close", b"", &mut conn.out);
        // One deadline for the write and the answers: a stalled receiver must not stretch the
        // close past what the shipper waits for (RelpConfig::close_time).
        let deadline = Instant::now() + CLOSE_WAIT;
        match tokio::time::timeout_at(deadline, self.write(conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::debug!("output {}: close: {e}", self.name);
                return;
            }
            Err(_) => {
                log::debug!("output {}: close: not written within {CLOSE_WAIT:?}", self.name);
                return;
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match Self::recv_frame(conn, left, txnr).await {
                // Late rsps to outstanding syslog frames still count.
                Ok(f) if f.command == Command::Rsp && conn.sent > 0 && f.txnr == conn.base_txnr => {
                    if self.on_frame(conn, f).is_err() {
                        break;
                    }
                }
                Ok(f) if f.command == Command::Rsp && f.txnr == txnr => {}
                Ok(f) if f.command == Command::ServerClose => break,
                Ok(_) | Err(_) => break,
            }
        }
        let _ = conn.wr.shutdown().await;
    }
}
