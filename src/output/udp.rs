//! UDP syslog output (RFC 5426): one RFC 5424 message per datagram, for local or same-LAN receivers.
//!
//! What an ack means here: nothing beyond "the kernel accepted the datagram". UDP is unacknowledged
//! and lossy by design (receiver down, socket buffer full, a lost packet); nothing here can notice.
//! A send error (e.g. ECONNREFUSED reported from an earlier ICMP, ENOBUFS) is retried with backoff
//! for the same datagram, so the sink never skips an event on an error it can see. Use RELP for
//! anything that must arrive.
//!
//! `max_message_size` defaults to 8 KiB and may not exceed 65,507 (the IPv4 UDP payload limit);
//! oversized events are cut like on every other network output.

use std::time::Duration;

use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::output::backoff::Backoff;
use crate::output::delivery::{Ack, Deliveries};
use crate::output::netstats::{bump, NET_STATS};
use crate::output::syslog::{header_spec, BodyFormat, Facility, Formatter, HeaderSpec, Severity, SyslogError};
use crate::output::{shutdown_requested, sleep_unless_shutdown};
use crate::units::{ByteSize, HumanDuration};

pub const MAX_DATAGRAM: usize = 65_507;

/// `[[output]] type = "udp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    pub name: Option<String>,
    pub address: String,
    pub format: BodyFormat,
    pub max_message_size: ByteSize,
    pub facility: Facility,
    pub severity: Severity,
    pub hostname: Option<String>,
    pub app_name: String,
    pub msgid: String,
    pub sd_id: Option<String>,
    /// Backoff between retries of a datagram whose send failed.
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
}

impl Default for UdpConfig {
    fn default() -> Self {
        let h = HeaderSpec::defaults(8 * 1024);
        UdpConfig {
            name: None,
            address: "127.0.0.1:514".to_string(),
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
pub enum UdpError {
    #[error(transparent)]
    Header(#[from] SyslogError),
    #[error("output {output}: max_message_size {size} exceeds the UDP payload limit {MAX_DATAGRAM}")]
    TooLarge { output: String, size: usize },
}

async fn connect(address: &str) -> std::io::Result<UdpSocket> {
    let target = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))?;
    let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(target).await?;
    Ok(sock)
}

impl UdpConfig {
    /// Name used in logs: `name`, else `udp:<address>`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("udp:{}", self.address))
    }
}

/// The checks `run` makes before it sends; the daemon makes them at start too
/// ([`crate::output::OutputConfig::check`]).
pub fn prepare(config: &UdpConfig) -> Result<Formatter, UdpError> {
    let name = config.display_name();
    if config.max_message_size.as_usize() > MAX_DATAGRAM {
        return Err(UdpError::TooLarge { output: name, size: config.max_message_size.as_usize() });
    }
    Ok(Formatter::new(&name, &header_spec!(config))?)
}

/// Run the UDP output until shutdown or until the delivery channel closes.
pub async fn run(
    config: UdpConfig,
    mut deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), UdpError> {
    let formatter = prepare(&config)?;
    let name = config.display_name();
    let mut backoff = Backoff::new(config.reconnect_min.0, config.reconnect_max.0);
    let mut sock: Option<UdpSocket> = None;
    let mut msg = Vec::new();
    loop {
        if shutdown_requested(&shutdown) {
            return Ok(());
        }
        let d = tokio::select! {
            d = deliveries.recv() => match d {
                Some(d) => d,
                None => return Ok(()),
            },
            _ = shutdown.changed() => continue,
        };
        msg.clear();
        formatter.format(&d, &mut msg);
        // Retry this datagram until it is sent or we shut down: never skip an event on an error.
        loop {
            let sent = match &sock {
                Some(s) => s.send(&msg).await.map(|_| ()),
                None => match connect(&config.address).await {
                    Ok(s) => {
                        let r = s.send(&msg).await.map(|_| ());
                        sock = Some(s);
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            match sent {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    sock = None;
                    bump(&NET_STATS.reconnects, 1);
                    crate::telemetry::output(&name).failed(&e.to_string());
                    let delay = backoff.next_delay();
                    log::warn!("output {name}: send of pos {} failed: {e}; retrying in {delay:?}", d.pos);
                    sleep_unless_shutdown(delay, &mut shutdown).await;
                    if shutdown_requested(&shutdown) {
                        return Ok(());
                    }
                }
            }
        }
        bump(&NET_STATS.acked, 1);
        if acks.send(Ack(d.pos)).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::output::delivery::Delivery;

    #[tokio::test]
    async fn one_datagram_per_event_acked_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = UdpConfig {
            address: server.local_addr().unwrap().to_string(),
            hostname: Some("h".into()),
            ..UdpConfig::default()
        };
        let (tx, rx) = mpsc::channel(8);
        let (atx, mut arx) = mpsc::channel(8);
        let (stx, srx) = watch::channel(false);
        let task = tokio::spawn(run(cfg, rx.into(), atx, srx));
        for i in 1..=3u64 {
            tx.send(Delivery::new(i, 0, "x", format!("{{\"n\":{i}}}").as_bytes())).await.unwrap();
        }
        let mut buf = [0u8; 2048];
        for i in 1..=3u64 {
            let n = server.recv(&mut buf).await.unwrap();
            let s = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(s.starts_with("<14>1 1970-01-01T00:00:00.000Z h auditrelay "), "{s}");
            assert!(s.ends_with(&format!(" AUDIT - {{\"n\":{i}}}")), "{s}");
            assert_eq!(arx.recv().await.unwrap(), Ack(i));
        }
        stx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn oversized_limit_rejected() {
        let (_tx, rx) = mpsc::channel(1);
        let (atx, _arx) = mpsc::channel(1);
        let (_s, srx) = watch::channel(false);
        let cfg = UdpConfig { max_message_size: ByteSize(70_000), ..UdpConfig::default() };
        assert!(matches!(run(cfg, rx.into(), atx, srx).await, Err(UdpError::TooLarge { .. })));
    }
}
