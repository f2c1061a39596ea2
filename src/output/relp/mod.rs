//! RELP output: our own client of the Reliable Event Logging Protocol as librelp (rsyslog's imrelp)
//! speaks it; no maintained Rust RELP crate exists.
//!
//! What an ack means here: `Ack(pos)` is sent once the receiver answered `rsp 200` for the frame
//! carrying `pos` and for every frame before it. imrelp answers after handing the message to
//! rsyslog's main queue, so an acked event survives our crash but not necessarily the receiver's
//! (that is rsyslog's queue configuration).
//!
//! Invariants:
//! - At most `window` deliveries are taken from the spool and not yet acked; the sink stops reading
//!   its delivery channel while the window is full, which is the back-pressure the spool sees.
//!   Once full, it takes nothing more until half the window is acked or 2 ms passed
//!   (`session::REFILL_PAUSE`: a window refilled slot by slot ping-pongs with the receiver).
//! - Frames go out in spool order and acks come back cumulative and in order.
//! - A broken session (I/O error, malformed frame, non-200 rsp, `serverclose`, response timeout)
//!   is reconnected with exponential backoff; the new session sends `open` (txnr 1) and then every
//!   unacked delivery again, in the original order, with new txnrs. Duplicates are therefore
//!   possible, and only within one window (frames the receiver took whose rsp we never saw).
//! - A session is closed and reopened before its txnr would pass 999,999,999 (librelp's wrap
//!   produces a number its own parser rejects).
//! - On shutdown no new delivery is taken; outstanding rsps are awaited for `shutdown_timeout`,
//!   then `close` is sent. Whatever is still unacked is redelivered by the spool after restart.
//!
//! Not done: a receiver whose `maxDataSize` is below our `max_message_size` rejects or drops the
//! session on big events forever (retried with backoff, logged each time): keep `max_message_size`
//! at or below the receiver's limit.

pub mod frame;
mod session;

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::output::backoff::Backoff;
use crate::output::delivery::{Ack, Deliveries};
use crate::output::reconnect::{self, ConnEnd, StreamSink};
use crate::output::syslog::{header_spec, BodyFormat, Facility, Formatter, HeaderSpec, Severity, SyslogError};
use crate::output::tls::{Connected, Connector, TlsConfig, TlsError};
use crate::units::{ByteSize, HumanDuration};

use session::{Session, SessionEnd};

/// Largest accepted window: bounds the memory held for resends (`window * max_message_size`).
pub const MAX_WINDOW: usize = 65_536;

/// `[[output]] type = "relp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelpConfig {
    /// Name used in logs; default: `relp:<address>`.
    pub name: Option<String>,
    /// `host:port` of the RELP receiver.
    pub address: String,
    pub format: BodyFormat,
    /// TLS from the first byte (imrelp `tls="on"`).
    pub tls: Option<TlsConfig>,
    /// Frames sent and not yet acknowledged, at most. Default 256 (librelp's is 128): one 10 ms
    /// gather of a 20 k/s storm fits one window, so a commit goes out in one write instead of
    /// trickling out as rsps free room (29 k sends and 29 k reads per 200 k events at 128, 2.8 k
    /// and 2.0 k at 256: −1 µs per event; the flat-out drain did not move, docs/performance.md).
    pub window: usize,
    /// Largest syslog message (header included); larger events are cut.
    pub max_message_size: ByteSize,
    pub facility: Facility,
    pub severity: Severity,
    /// HOSTNAME in the syslog header; default: the kernel hostname.
    pub hostname: Option<String>,
    pub app_name: String,
    pub msgid: String,
    /// SD-ID for a structured-data element carrying the event id (e.g. "auditrelay@12345").
    pub sd_id: Option<String>,
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
    /// TCP connect plus TLS handshake.
    pub connect_timeout: HumanDuration,
    /// How long the oldest outstanding frame may wait for its rsp before the session is
    /// considered dead; also bounds a single write.
    pub response_timeout: HumanDuration,
    /// How long shutdown waits for outstanding rsps before sending `close`.
    pub shutdown_timeout: HumanDuration,
}

impl Default for RelpConfig {
    fn default() -> Self {
        let h = HeaderSpec::defaults(64 * 1024);
        RelpConfig {
            name: None,
            address: "127.0.0.1:2514".to_string(),
            format: BodyFormat::Native,
            tls: None,
            window: 256,
            max_message_size: ByteSize(h.max_message_size as u64),
            facility: h.facility,
            severity: h.severity,
            hostname: h.hostname,
            app_name: h.app_name,
            msgid: h.msgid,
            sd_id: h.sd_id,
            reconnect_min: HumanDuration(Duration::from_millis(500)),
            reconnect_max: HumanDuration(Duration::from_secs(30)),
            connect_timeout: HumanDuration(Duration::from_secs(10)),
            response_timeout: HumanDuration(Duration::from_secs(30)),
            shutdown_timeout: HumanDuration(Duration::from_secs(5)),
        }
    }
}

impl RelpConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("relp:{}", self.address))
    }

    /// The longest an orderly stop takes once shutdown is signalled: `shutdown_timeout` for
    /// outstanding rsps, then `close` and its answers, then the last ack handed to the spool. The
    /// shipper waits this long before it aborts the sink (one bound, derived, never two timers
    /// that disagree).
    pub fn close_time(&self) -> Duration {
        self.shutdown_timeout.0 + session::CLOSE_WAIT + session::ACK_FLUSH_WAIT
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelpError {
    #[error(transparent)]
    Header(#[from] SyslogError),
    #[error("output {output}: {source}")]
    Tls { output: String, source: TlsError },
    #[error("output {output}: window {window} must be between 1 and {MAX_WINDOW}")]
    Window { output: String, window: usize },
}

/// Knobs tests turn; production uses [`Limits::default`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Highest txnr a session may use before it is closed and reopened.
    pub max_txnr: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_txnr: frame::MAX_TXNR }
    }
}

/// Run the RELP output until shutdown is signalled (or the delivery channel closes and everything
/// taken is acked or the shutdown timeout passed). Errors only for invalid configuration; network
/// trouble is retried forever, because the spool keeps the events meanwhile.
pub async fn run(
    config: RelpConfig,
    deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RelpError> {
    run_with(config, Limits::default(), deliveries, acks, shutdown).await
}

/// The checks `run` makes before it connects. The daemon makes them at start too
/// ([`crate::output::OutputConfig::check`]), so a bad table stops `run` before the kernel is touched.
pub fn prepare(config: &RelpConfig) -> Result<(Formatter, Connector), RelpError> {
    let name = config.display_name();
    if config.window == 0 || config.window > MAX_WINDOW {
        return Err(RelpError::Window { output: name, window: config.window });
    }
    let formatter = Formatter::new(&name, &header_spec!(config))?;
    let connector = Connector::new(&config.address, config.tls.as_ref(), config.connect_timeout.0)
        .map_err(|source| RelpError::Tls { output: name.clone(), source })?;
    Ok((formatter, connector))
}

pub(crate) async fn run_with(
    config: RelpConfig,
    limits: Limits,
    deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelpError> {
    let name = config.display_name();
    let (formatter, connector) = prepare(&config)?;
    let backoff = Backoff::new(config.reconnect_min.0, config.reconnect_max.0);
    let mut session = Session::new(&name, &config, limits, formatter, deliveries, acks);
    reconnect::run(&name, &mut session, &connector, backoff, &mut shutdown).await;
    Ok(())
}

impl StreamSink for Session {
    type Error = session::SessionError;

    fn connect_failed(e: std::io::Error) -> Self::Error {
        session::SessionError::Connect(e)
    }

    fn finished(&self) -> bool {
        self.input_done()
    }

    async fn serve(&mut self, conn: Connected, shutdown: &mut watch::Receiver<bool>) -> Result<ConnEnd, Self::Error> {
        match self.run(conn.stream, shutdown).await? {
            SessionEnd::Closed => Ok(ConnEnd::Done),
            SessionEnd::Rotate => {
                log::info!("output {}: txnr limit reached, reopening the session", self.name());
                Ok(ConnEnd::Again)
            }
        }
    }

    fn take_progress(&mut self) -> bool {
        Session::take_progress(self)
    }

    fn backlog(&self) -> String {
        format!("{} unacked deliveries will be resent", self.unacked())
    }

    async fn flush_ack(&mut self) {
        Session::flush_ack(self).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
