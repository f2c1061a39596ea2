//! The connection loop of the stream sinks (RELP, TCP): connect, serve the connection until it
//! ends, then back off and connect again, for as long as the sink runs.
//!
//! Why one loop: both sinks keep what the receiver has not confirmed and send it again on the next
//! connection, so what differs is only the per-connection protocol ([`StreamSink::serve`]); the
//! retry policy around it must not drift apart between them.
//!
//! Invariants:
//! - The backoff starts again from its minimum only after a connection delivered something, so a
//!   receiver that accepts connections and then fails every one is still retried with growing delays.
//! - A pending ack is flushed before every wait and before returning, so the spool learns of
//!   progress even while the receiver is away.
//! - Shutdown cuts connecting and waiting short; the loop returns once shutdown was requested or
//!   the sink has nothing left to send.

use std::fmt::Display;
use std::io;

use tokio::sync::watch;

use crate::output::backoff::Backoff;
use crate::output::netstats::{bump, NET_STATS};
use crate::output::tls::{Connected, Connector};
use crate::output::{shutdown_requested, sleep_unless_shutdown};

/// How a connection ended without an error.
pub(crate) enum ConnEnd {
    /// The sink is done (shutdown or input closed, everything confirmed).
    Done,
    /// Connect again at once, without backoff (e.g. a RELP session that ran out of txnrs).
    Again,
}

/// One stream sink's state across connections.
pub(crate) trait StreamSink {
    type Error: Display;
    fn connect_failed(e: io::Error) -> Self::Error;
    /// Input closed and everything taken is confirmed: nothing to connect for.
    fn finished(&self) -> bool;
    /// Run the sink's protocol on one connection until it ends.
    async fn serve(&mut self, conn: Connected, shutdown: &mut watch::Receiver<bool>) -> Result<ConnEnd, Self::Error>;
    /// Whether something was delivered since the last call.
    fn take_progress(&mut self) -> bool;
    /// For the retry log line, e.g. "3 unacked deliveries will be resent".
    fn backlog(&self) -> String;
    /// Send the ack held back, if any (bounded wait).
    async fn flush_ack(&mut self);
}

/// Run `sink` over connections from `connector` until it is done or shutdown is requested.
pub(crate) async fn run<S: StreamSink>(
    name: &str,
    sink: &mut S,
    connector: &Connector,
    mut backoff: Backoff,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut first = true;
    let counters = crate::telemetry::output(name);
    loop {
        if shutdown_requested(shutdown) || sink.finished() {
            sink.flush_ack().await;
            return;
        }
        let connected = tokio::select! {
            r = connector.connect() => r,
            _ = shutdown.changed() => continue,
        };
        let end = match connected {
            Ok(conn) => {
                if !first {
                    bump(&NET_STATS.reconnects, 1);
                }
                counters.connected(!first);
                first = false;
                sink.serve(conn, shutdown).await
            }
            Err(e) => Err(S::connect_failed(e)),
        };
        match end {
            Ok(ConnEnd::Done) => {
                sink.flush_ack().await;
                return;
            }
            Ok(ConnEnd::Again) => continue,
            Err(e) => {
                if sink.take_progress() {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                counters.failed(&e.to_string());
                log::warn!("output {name}: {e}; {}; retrying in {delay:?}", sink.backlog());
                sink.flush_ack().await;
                sleep_unless_shutdown(delay, shutdown).await;
            }
        }
    }
}
