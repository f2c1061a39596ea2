//! Prometheus text exposition (format 0.0.4) of the [`Snapshot`], served on `[metrics] listen`.
//!
//! Off by default. `listen = "9464"` or `":9464"` binds the loopback address; a full
//! `host:port` binds that host (an operator's explicit choice to expose audit figures).
//!
//! Why a hand-written HTTP responder: it answers exactly one thing (`GET /metrics`) with
//! `Connection: close`; a web framework would bring a router, keep-alive and body handling that
//! this does not need, and more code between the network and the daemon. Bounds: a request is
//! read up to [`MAX_REQUEST`] bytes and [`IO_TIMEOUT`]; at most `[metrics] max_connections` are
//! served at once (each on a short-lived thread), further ones get `503` and are closed.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Board, Snapshot};

pub const MAX_REQUEST: usize = 8 << 10;
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `port`, `:port` (loopback) or `host:port`; unset = no endpoint.
    pub listen: Option<String>,
    /// Scrapes served at once.
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: None, max_connections: 4 }
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.listen {
            listen_addr(l)?;
        }
        if self.max_connections == 0 {
            return Err("metrics.max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// The address to bind, `None` when off.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        self.listen.as_deref().map(listen_addr).transpose()
    }
}

/// `9464` and `:9464` → loopback; `0.0.0.0:9464`, `[::1]:9464` as written.
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let bad = || format!("metrics.listen {text:?}: expected PORT, :PORT or IP:PORT");
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| bad())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: name, type and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: Kind::Counter, help }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: Kind::Gauge, help }
}

pub const UPTIME: Metric = gauge("auditrelay_uptime_seconds", "Seconds since the daemon started.");
pub const RECORDS_IN: Metric = counter("auditrelay_records_in_total", "Kernel audit records received.");
pub const DATAGRAMS_IN: Metric = counter("auditrelay_datagrams_in_total", "Netlink datagrams received.");
pub const BYTES_IN: Metric = counter("auditrelay_bytes_in_total", "Bytes of kernel audit records received.");
pub const EVENTS_IN: Metric = counter("auditrelay_events_in_total", "Events reassembled from kernel records.");
pub const EVENTS_OUT: Metric =
    counter("auditrelay_events_out_total", "Lines handed to the spool or stdout (events, loss notices, unparsable).");
pub const EVENTS_INCOMPLETE: Metric = counter(
    "auditrelay_events_incomplete_total",
    "Events emitted before they were complete (timeout, caps, shutdown).",
);
pub const EVENTS_LATE: Metric =
    counter("auditrelay_events_late_total", "Events of records that arrived after their event was emitted.");
pub const UNPARSABLE: Metric =
    counter("auditrelay_unparsable_records_total", "Kernel records that could not be parsed (kept as hex).");
pub const SERIAL_GAPS: Metric = counter("auditrelay_serial_gaps_total", "Holes in the kernel's event serial numbers.");
pub const MISSING_SERIALS: Metric =
    counter("auditrelay_missing_serials_total", "Serial numbers missing in those holes.");
pub const KERNEL_LOST: Metric =
    counter("auditrelay_kernel_lost_total", "Records the kernel dropped (its lost counter) since the daemon started.");
pub const ENOBUFS: Metric =
    counter("auditrelay_enobufs_total", "Netlink receive buffer overflows (ENOBUFS): the kernel dropped records.");
pub const TRUNCATED: Metric = counter("auditrelay_truncated_datagrams_total", "Netlink datagrams cut (MSG_TRUNC).");
pub const CHANNEL_DROPS: Metric =
    counter("auditrelay_channel_drops_total", "Records dropped because processing stayed behind the reader.");
pub const FILTER_DROPS: Metric = counter("auditrelay_filter_drops_total", "Events dropped by filters.");
pub const SPOOL_REFUSED: Metric = counter("auditrelay_spool_refused_total", "Events the spool refused (too large).");
pub const SPOOL_WRITE_ERRORS: Metric =
    counter("auditrelay_spool_write_errors_total", "Events lost to spool write errors (disk full, I/O).");
pub const SPOOL_DROPPED: Metric =
    counter("auditrelay_spool_dropped_total", "Events the full spool dropped, by policy (oldest, newest, oversize).");
pub const CUT_TO_FIT: Metric =
    counter("auditrelay_events_cut_to_fit_total", "Events cut to fit [spool] max_record_bytes (flagged truncated).");
pub const PROCESS_TABLE_ENTRIES: Metric =
    gauge("auditrelay_process_table_entries", "Processes in the process table ([enrich] process_table_size).");
pub const PROCESS_TABLE_EVICTIONS: Metric =
    counter("auditrelay_process_table_evictions_total", "Processes evicted from the full process table.");
pub const PROCESS_TABLE_SEEDED: Metric =
    gauge("auditrelay_process_table_seeded", "Processes read from /proc into the process table at start.");
pub const PROCESS_TABLE_LOOKED_UP: Metric = counter(
    "auditrelay_process_table_looked_up_total",
    "Processes the table never saw, read from /proc later ([enrich] proc_lookups_per_second).",
);
pub const PROCESS_TABLE_LOOKED_UP_STALE: Metric = counter(
    "auditrelay_process_table_looked_up_stale_total",
    "/proc lookups dropped: the pid belonged to a newer process than the event that asked.",
);
pub const SPOOL_BYTES: Metric = gauge("auditrelay_spool_bytes", "Bytes in the spool's segments.");
pub const SPOOL_SEGMENTS: Metric = gauge("auditrelay_spool_segments", "Segment files in the spool.");
pub const SPOOL_EVENTS: Metric =
    gauge("auditrelay_spool_events", "Events in the spool not acknowledged by every output.");
pub const SPOOL_OLDEST: Metric =
    gauge("auditrelay_spool_oldest_unacked_age_seconds", "Age of the oldest event not acknowledged by every output.");
pub const SPOOL_MAX_BYTES: Metric = gauge("auditrelay_spool_max_bytes", "The spool's size limit ([spool] max_bytes).");
pub const SPOOL_FULL_IN: Metric = gauge(
    "auditrelay_spool_full_in_seconds",
    "How long the spool's free space lasts at its recent growth (absent while it does not grow).",
);
pub const SPOOL_RAW_WRITTEN: Metric =
    counter("auditrelay_spool_raw_bytes_written_total", "JSON bytes committed to the spool since start.");
pub const SPOOL_DISK_WRITTEN: Metric =
    counter("auditrelay_spool_disk_bytes_written_total", "Bytes those took on disk (compressed) since start.");
pub const OUTPUT_SENT: Metric =
    counter("auditrelay_output_sent_total", "Deliveries the output's sink took from the spool.");
pub const OUTPUT_ACKED: Metric = counter("auditrelay_output_acked_total", "Events the output's receiver acknowledged.");
pub const OUTPUT_PENDING: Metric =
    gauge("auditrelay_output_pending_events", "Spooled events the output has not acknowledged.");
pub const OUTPUT_ERRORS: Metric =
    counter("auditrelay_output_errors_total", "Output failures (connect, send, receiver, sink).");
pub const OUTPUT_RECONNECTS: Metric = counter("auditrelay_output_reconnects_total", "Output reconnections.");
pub const OUTPUT_RESTARTS: Metric =
    counter("auditrelay_output_restarts_total", "Times the output's sink was restarted.");
pub const OUTPUT_UP: Metric = gauge("auditrelay_output_up", "1 while the output works, 0 while it is down.");
pub const OUTPUT_DOWN: Metric =
    gauge("auditrelay_output_down_seconds", "How long the output has been down (0 while up).");
pub const RULES_LOADED: Metric = gauge("auditrelay_rules_loaded", "Rules in the set last loaded into the kernel.");
pub const RULES_RELOADS: Metric = counter("auditrelay_rules_reloads_total", "Rule reloads attempted.");
pub const RULES_RELOADS_FAILED: Metric =
    counter("auditrelay_rules_reloads_failed_total", "Rule reloads that failed (the current rules stayed).");
pub const RULES_LAST_RELOAD_OK: Metric =
    gauge("auditrelay_rules_last_reload_success", "1 when the last rule reload succeeded, 0 when it failed.");

pub const NAME_HITS: Metric =
    counter("auditrelay_name_cache_hits_total", "User/group name lookups answered from the cache.");
pub const NAME_MISSES: Metric =
    counter("auditrelay_name_cache_misses_total", "User/group name lookups of ids not in the cache.");
pub const NAME_QUEUED: Metric =
    counter("auditrelay_name_lookups_queued_total", "User/group name lookups handed to the NSS resolver thread.");
pub const NAME_DROPPED: Metric = counter(
    "auditrelay_name_lookups_dropped_total",
    "User/group name lookups dropped because the resolver's queue was full (asked again later).",
);
pub const NAME_EVICTIONS: Metric =
    counter("auditrelay_name_cache_evictions_total", "Entries pushed out of the full user/group name cache.");
pub const NAME_ENTRIES: Metric = gauge("auditrelay_name_cache_entries", "Entries in the user/group name cache.");

struct Page(String);

impl Page {
    fn family(&mut self, m: &Metric) {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.0, "# HELP {} {}\n# TYPE {} {kind}", m.name, m.help, m.name);
    }

    fn one(&mut self, m: &Metric, v: u64) {
        self.family(m);
        let _ = writeln!(self.0, "{} {v}", m.name);
    }

    fn labelled(&mut self, m: &Metric, rows: &[(Vec<(&str, &str)>, u64)]) {
        self.family(m);
        for (labels, v) in rows {
            let l: Vec<String> = labels.iter().map(|(k, val)| format!("{k}=\"{}\"", escape(val))).collect();
            let _ = writeln!(self.0, "{}{{{}}} {v}", m.name, l.join(","));
        }
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition page for `s`.
pub fn render(s: &Snapshot) -> String {
    let mut p = Page(String::with_capacity(8 << 10));
    for (m, v) in [
        (UPTIME, s.uptime_secs),
        (RECORDS_IN, s.records_in),
        (DATAGRAMS_IN, s.datagrams_in),
        (BYTES_IN, s.bytes_in),
        (EVENTS_IN, s.events_in),
        (EVENTS_OUT, s.events_out),
        (EVENTS_INCOMPLETE, s.events_incomplete),
        (EVENTS_LATE, s.events_late),
        (UNPARSABLE, s.unparsable_records),
        (SERIAL_GAPS, s.serial_gaps),
        (MISSING_SERIALS, s.missing_serials),
        (KERNEL_LOST, s.kernel_lost),
        (ENOBUFS, s.enobufs),
        (TRUNCATED, s.truncated_datagrams),
        (CHANNEL_DROPS, s.channel_drops),
        (FILTER_DROPS, s.filter_drops),
        (SPOOL_REFUSED, s.spool_refused),
        (SPOOL_WRITE_ERRORS, s.spool_write_errors),
        (CUT_TO_FIT, s.events_cut_to_fit),
        (PROCESS_TABLE_ENTRIES, s.process_table_entries),
        (PROCESS_TABLE_EVICTIONS, s.process_table_evictions),
        (PROCESS_TABLE_SEEDED, s.process_table_seeded),
        (PROCESS_TABLE_LOOKED_UP, s.process_table_looked_up),
        (PROCESS_TABLE_LOOKED_UP_STALE, s.process_table_looked_up_stale),
    ] {
        p.one(&m, v);
    }
    p.labelled(
        &SPOOL_DROPPED,
        &[
            (vec![("policy", "oldest")], s.spool.dropped_oldest),
            (vec![("policy", "newest")], s.spool.dropped_newest),
            (vec![("policy", "oversize")], s.spool.dropped_oversize),
        ],
    );
    if s.spool.enabled {
        p.one(&SPOOL_BYTES, s.spool.bytes);
        p.one(&SPOOL_SEGMENTS, s.spool.segments);
        p.one(&SPOOL_EVENTS, s.spool.events);
        p.one(&SPOOL_OLDEST, s.spool.oldest_unacked_age_secs.unwrap_or(0));
        p.one(&SPOOL_MAX_BYTES, s.spool.max_bytes);
        if let Some(secs) = s.spool.full_in_secs {
            p.one(&SPOOL_FULL_IN, secs);
        }
        p.one(&SPOOL_RAW_WRITTEN, s.spool.raw_bytes_written);
        p.one(&SPOOL_DISK_WRITTEN, s.spool.disk_bytes_written);
    }
    let per_output = |f: &dyn Fn(&super::OutputFigures) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
        s.outputs.iter().map(|o| (vec![("output", o.name.as_str()), ("kind", o.kind.as_str())], f(o))).collect()
    };
    if !s.outputs.is_empty() {
        p.labelled(&OUTPUT_SENT, &per_output(&|o| o.sent));
        p.labelled(&OUTPUT_ACKED, &per_output(&|o| o.acked));
        p.labelled(&OUTPUT_PENDING, &per_output(&|o| o.pending));
        p.labelled(&OUTPUT_ERRORS, &per_output(&|o| o.errors));
        p.labelled(&OUTPUT_RECONNECTS, &per_output(&|o| o.reconnects));
        p.labelled(&OUTPUT_RESTARTS, &per_output(&|o| o.restarts));
        p.labelled(&OUTPUT_UP, &per_output(&|o| u64::from(o.down_secs.is_none())));
        p.labelled(&OUTPUT_DOWN, &per_output(&|o| o.down_secs.unwrap_or(0)));
    }
    if s.names.enabled {
        let n = &s.names;
        for (m, v) in [
            (NAME_HITS, n.hits),
            (NAME_MISSES, n.misses),
            (NAME_QUEUED, n.queued),
            (NAME_DROPPED, n.dropped),
            (NAME_EVICTIONS, n.evictions),
            (NAME_ENTRIES, n.entries),
        ] {
            p.one(&m, v);
        }
    }
    p.one(&RULES_LOADED, s.rules.loaded);
    p.one(&RULES_RELOADS, s.rules.reloads);
    p.one(&RULES_RELOADS_FAILED, s.rules.reloads_failed);
    if let Some(r) = &s.rules.last_reload {
        p.one(&RULES_LAST_RELOAD_OK, u64::from(r.ok));
    }
    p.0
}

/// The running endpoint; stopped on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, max_connections: usize, board: Arc<Board>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        // Non-blocking accept after a wait for a connection, so the thread sees `stop` (the
        // drop connects once to end the wait).
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || accept_loop(&listener, &board, max_connections.max(1), &stop))?
        };
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Ends the accept loop's wait now; a listener on 0.0.0.0 or [::] is reached on loopback.
        let mut to = self.addr;
        if to.ip().is_unspecified() {
            to.set_ip(if to.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, board: &Arc<Board>, max: usize, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                if active.fetch_add(1, Ordering::AcqRel) >= max {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let _ = respond(&stream, "503 Service Unavailable", "text/plain", "busy\n");
                    continue;
                }
                let (board, active2) = (board.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
                    if let Err(e) = serve_one(&stream, &board) {
                        log::debug!("metrics: {e}");
                    }
                    active2.fetch_sub(1, Ordering::AcqRel);
                });
                if let Err(e) = spawned {
                    active.fetch_sub(1, Ordering::AcqRel);
                    log::warn!("metrics: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                super::wait_for_connection(std::os::fd::AsFd::as_fd(listener))
            }
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The request head, read up to the blank line, at most [`MAX_REQUEST`] bytes.
fn read_head(mut stream: &TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn serve_one(stream: &TcpStream, board: &Board) -> std::io::Result<()> {
    let Some(head) = read_head(stream)? else {
        return respond(stream, "431 Request Header Fields Too Large", "text/plain", "request too large\n");
    };
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => match board.latest() {
            Some(s) => respond(stream, "200 OK", CONTENT_TYPE, &render(&s)),
            None => respond(stream, "503 Service Unavailable", "text/plain", "starting\n"),
        },
        ("GET", _) => respond(stream, "404 Not Found", "text/plain", "see /metrics\n"),
        _ => respond(stream, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(mut stream: &TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::OutputFigures;

    #[test]
    fn listen_without_a_host_is_loopback() {
        assert_eq!(listen_addr("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(listen_addr(":9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(listen_addr("0.0.0.0:1").unwrap(), "0.0.0.0:1".parse().unwrap());
        assert_eq!(listen_addr("[::1]:2").unwrap(), "[::1]:2".parse().unwrap());
        assert!(listen_addr("localhost").unwrap_err().contains("metrics.listen"));
        assert!(MetricsConfig::default().addr().unwrap().is_none(), "off by default");
    }

    #[test]
    fn every_family_has_help_and_type_and_labels_are_escaped() {
        let mut s = Snapshot { records_in: 5, ..Snapshot::default() };
        s.outputs.push(OutputFigures {
            name: "a\"b".into(),
            kind: "relp".into(),
            acked: 3,
            ..OutputFigures::default()
        });
        let page = render(&s);
        assert!(page.contains("\nauditrelay_records_in_total 5\n"), "{page}");
        assert!(page.contains("auditrelay_output_acked_total{output=\"a\\\"b\",kind=\"relp\"} 3"), "{page}");
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("auditrelay_"), "{line}");
            assert!(page.contains(&format!("# HELP {name} ")) && page.contains(&format!("# TYPE {name} ")), "{name}");
            if page.contains(&format!("# TYPE {name} counter")) {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }

    #[test]
    fn the_name_cache_is_exposed_when_names_are_on() {
        let off = render(&Snapshot::default());
        assert!(!off.contains("auditrelay_name_"), "{off}");
        let names = super::super::NameFigures { enabled: true, hits: 7, dropped: 2, entries: 3, ..Default::default() };
        let page = render(&Snapshot { names, ..Snapshot::default() });
        for (line, m) in [
            ("auditrelay_name_cache_hits_total 7", NAME_HITS),
            ("auditrelay_name_cache_misses_total 0", NAME_MISSES),
            ("auditrelay_name_lookups_queued_total 0", NAME_QUEUED),
            ("auditrelay_name_lookups_dropped_total 2", NAME_DROPPED),
            ("auditrelay_name_cache_evictions_total 0", NAME_EVICTIONS),
            ("auditrelay_name_cache_entries 3", NAME_ENTRIES),
        ] {
            assert!(page.contains(&format!("\n{line}\n")), "{line}: {page}");
            assert!(page.contains(&format!("# HELP {} {}\n", m.name, m.help)), "{}", m.name);
        }
    }

    #[test]
    fn the_endpoint_answers_get_metrics_and_refuses_the_rest() {
        let board = Arc::new(Board::default());
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), 2, board.clone()).unwrap();
        let ask = |req: &str| {
            let mut c = TcpStream::connect(server.addr()).unwrap();
            // A refusal may close before the whole request is read: keep what came back.
            let _ = c.write_all(req.as_bytes());
            let mut out = String::new();
            let _ = c.read_to_string(&mut out);
            out
        };
        assert!(ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 503"));
        board.publish(Snapshot { records_in: 9, ..Snapshot::default() });
        let ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains("auditrelay_records_in_total 9"), "{ok}");
        assert!(ask("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(ask("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        assert!(ask(&big).starts_with("HTTP/1.1 431"));
    }
}
