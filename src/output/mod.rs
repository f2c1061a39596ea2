//! Outputs: sinks that take events from the spool and report what the receiver acknowledged.
//!
//! Every sink runs as its own task fed [`delivery::Delivery`] values in spool order by a
//! [`delivery::Deliveries`] source (the spool itself, or a bounded channel from a converting
//! reader) and answers with cumulative acknowledgements; what "acknowledged" means is said in
//! each sink's docs.
//! All sinks have the same shape:
//! ```text
//! pub async fn run(config: XConfig, deliveries: Deliveries, acks: mpsc::Sender<Ack>,
//!                  shutdown: watch::Receiver<bool>) -> Result<(), XError>
//! ```
//! [`OutputConfig::plan`] is the one place where a sink type is wired to its config; the
//! [`shipper::Shipper`] runs each planned sink under a supervisor that feeds it from the spool,
//! records its acks, and restarts it (resending everything unacknowledged) when it fails.

pub mod delivery;
pub mod exposure;
pub mod file;
pub mod priority;
pub mod shipper;
pub mod stdout;

// Network sinks: relp, syslog (RFC 5424 + RFC 6587), tcp, udp, unix, tls.
pub mod backoff;
pub mod netstats;
mod reconnect;
pub mod relp;
pub mod syslog;
pub mod tcp;
pub mod tls;
pub mod truncate;
pub mod udp;
pub mod unix;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use delivery::{Ack, Deliveries, Delivery};
pub use shipper::{Interrupter, OutputStats, ShipError, ShipStats, Shipper};

/// How an event is rendered for an output. The spool stores the native JSON; the other formats
/// are derived from it per output, in the output's spool-reader thread (see [`shipper`] and
/// [`crate::format`]).
pub use crate::format::OutputFormat;

/// Room kept for the RFC 5424 header when a derived format's body is fitted by its reader; the
/// sink fits the whole message exactly (a longer header makes it cut or stub the event there).
const SYSLOG_HEADER_ROOM: usize = 512;

/// One `[[output]]` table, selected by its `type` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutputConfig {
    File(file::FileConfig),
    Stdout(stdout::StdoutConfig),
    Relp(relp::RelpConfig),
    Tcp(tcp::TcpConfig),
    Udp(udp::UdpConfig),
    Unix(unix::UnixConfig),
}

impl OutputConfig {
    /// How to run this output: the only match over sink types.
    pub fn plan(&self) -> SinkPlan {
        match self {
            OutputConfig::File(c) => {
                SinkPlan::new("file", c.name.as_deref(), c.batch.min(file::QUEUE_MAX), c.clone(), file::run)
            }
            OutputConfig::Stdout(c) => SinkPlan::new("stdout", c.name.as_deref(), c.batch, c.clone(), stdout::run),
            OutputConfig::Relp(c) => SinkPlan::new("relp", c.name.as_deref(), c.window, c.clone(), relp::run)
                .with_header(syslog::header_spec!(c))
                .with_close_time(c.close_time()),
            OutputConfig::Tcp(c) => SinkPlan::new("tcp", c.name.as_deref(), c.batch, c.clone(), tcp::run)
                .with_header(syslog::header_spec!(c)),
            OutputConfig::Udp(c) => {
                SinkPlan::new("udp", c.name.as_deref(), 64, c.clone(), udp::run).with_header(syslog::header_spec!(c))
            }
            OutputConfig::Unix(c) => {
                SinkPlan::new("unix", c.name.as_deref(), 64, c.clone(), unix::run).with_header(syslog::header_spec!(c))
            }
        }
        .with_format(self.format(), self.max_message_size())
    }
}

impl OutputConfig {
    /// What each sink checks before it starts (header fields, window, batch, TLS files, ...),
    /// made once by [`Shipper::start`], which the daemon calls before it touches the kernel: a
    /// bad `[[output]]` table stops `run` before it registers or loads rules, never a daemon whose
    /// output restarts forever on its own config error. Reads TLS files, so not part of parsing.
    pub fn check(&self) -> Result<(), String> {
        match self {
            OutputConfig::File(c) => c.validate(),
            OutputConfig::Stdout(_) => Ok(()),
            OutputConfig::Relp(c) => relp::prepare(c).map(drop).map_err(|e| e.to_string()),
            OutputConfig::Tcp(c) => tcp::prepare(c).map(drop).map_err(|e| e.to_string()),
            OutputConfig::Udp(c) => udp::prepare(c).map(drop).map_err(|e| e.to_string()),
            OutputConfig::Unix(c) => unix::prepare(c).map(drop).map_err(|e| e.to_string()),
        }
    }

    /// `max_message_size` of a syslog-speaking output (None for file and stdout).
    fn max_message_size(&self) -> Option<usize> {
        match self {
            OutputConfig::File(_) | OutputConfig::Stdout(_) => None,
            OutputConfig::Relp(c) => Some(c.max_message_size.as_usize()),
            OutputConfig::Tcp(c) => Some(c.max_message_size.as_usize()),
            OutputConfig::Udp(c) => Some(c.max_message_size.as_usize()),
            OutputConfig::Unix(c) => Some(c.max_message_size.as_usize()),
        }
    }

    /// The output's `format`.
    pub fn format(&self) -> OutputFormat {
        match self {
            OutputConfig::File(c) => c.format,
            OutputConfig::Stdout(c) => c.format,
            OutputConfig::Relp(c) => c.format,
            OutputConfig::Tcp(c) => c.format,
            OutputConfig::Udp(c) => c.format,
            OutputConfig::Unix(c) => c.format,
        }
    }
}

/// The cursor name of each output (config `name`, default `<type>-<index>`), after checking what
/// the shipper relies on: names usable as file names and unique, per-type settings consistent.
/// Errors are (output name, message naming the key).
pub fn output_names(outputs: &[OutputConfig]) -> Result<Vec<String>, (String, String)> {
    let mut names: Vec<String> = Vec::with_capacity(outputs.len());
    for (i, cfg) in outputs.iter().enumerate() {
        let plan = cfg.plan();
        let name = plan.name.clone().unwrap_or_else(|| format!("{}-{i}", plan.kind));
        if !crate::spool::cursor::valid_name(&name) {
            return Err((name, "`name` must be 1-64 of [A-Za-z0-9_.-], not starting with '.'".into()));
        }
        if names.contains(&name) {
            return Err((name, "two outputs have this `name`".into()));
        }
        if let OutputConfig::File(f) = cfg {
            f.validate().map_err(|m| (name.clone(), m))?;
        }
        names.push(name);
    }
    Ok(names)
}

/// True once shutdown was signalled or its sender is gone (the daemon is going away either way).
pub(crate) fn shutdown_requested(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Wait out a retry delay, cut short by a shutdown signal; the caller re-checks
/// [`shutdown_requested`] afterwards.
pub(crate) async fn sleep_unless_shutdown(delay: std::time::Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

/// A sink's failure as the supervisor sees it: the sink's own error, with its "where".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(Box<dyn std::error::Error + Send + Sync>);

pub type SinkFuture = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send>>;
type Launch = Arc<dyn Fn(Deliveries, mpsc::Sender<Ack>, watch::Receiver<bool>) -> SinkFuture + Send + Sync>;

/// Everything the shipper needs to (re)start one output.
#[derive(Clone)]
pub struct SinkPlan {
    pub kind: &'static str,
    /// Config `name`: names the output's cursor file; default `<kind>-<index>`.
    pub name: Option<String>,
    /// Capacity of the delivery channel of a converting output (the most events in flight
    /// between its spool-reader thread and the sink) and of its ack channel.
    pub window: usize,
    /// What each spooled native line is converted to before the sink sees it.
    pub format: OutputFormat,
    /// Largest converted body the sink can send whole (`max_message_size` less room for the
    /// syslog header); a bigger one is cut on its native line before conversion (see shipper).
    pub max_body: Option<usize>,
    /// For syslog-speaking outputs: their header, so that bodies over `max_message_size` are cut
    /// where they are read from the spool, before they reach the sink's session.
    pub header: Option<syslog::HeaderSpec>,
    /// How long the sink may take to stop once shutdown is signalled before the shipper aborts
    /// it (whatever it had not had acknowledged stays in the spool): the sink's own bound where
    /// it has one (RELP: `shutdown_timeout` plus its close), else [`DEFAULT_CLOSE_TIME`].
    pub close_time: std::time::Duration,
    launch: Launch,
}

/// Stop bound of sinks without a close handshake (file: one fdatasync; stream sinks: a write in
/// flight to a stalled peer is cut here, and its events are resent after the next start).
pub const DEFAULT_CLOSE_TIME: std::time::Duration = std::time::Duration::from_secs(3);

impl std::fmt::Debug for SinkPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkPlan")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("window", &self.window)
            .field("format", &self.format)
            .field("close_time", &self.close_time)
            .finish()
    }
}

impl SinkPlan {
    pub fn new<C, E, F, Fut>(kind: &'static str, name: Option<&str>, window: usize, config: C, run: F) -> SinkPlan
    where
        C: Clone + Send + Sync + 'static,
        F: Fn(C, Deliveries, mpsc::Sender<Ack>, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let launch: Launch = Arc::new(move |d, a, s| {
            let fut = run(config.clone(), d, a, s);
            Box::pin(async move { fut.await.map_err(|e| SinkError(Box::new(e))) })
        });
        SinkPlan {
            kind,
            name: name.map(str::to_string),
            window: window.max(1),
            format: OutputFormat::Native,
            max_body: None,
            header: None,
            close_time: DEFAULT_CLOSE_TIME,
            launch,
        }
    }

    /// Deliver bodies converted to `format` (on a spool-reader thread, see [`shipper`]),
    /// fitted to a syslog `max_message_size` when given.
    pub fn with_format(mut self, format: OutputFormat, max_message_size: Option<usize>) -> SinkPlan {
        self.format = format;
        self.max_body = max_message_size.map(|m| m.saturating_sub(SYSLOG_HEADER_ROOM));
        self
    }

    pub fn with_close_time(mut self, close_time: std::time::Duration) -> SinkPlan {
        self.close_time = close_time;
        self
    }

    pub fn with_header(mut self, header: syslog::HeaderSpec) -> SinkPlan {
        self.header = Some(header);
        self
    }

    /// Start one incarnation of the sink.
    pub fn launch(
        &self,
        deliveries: Deliveries,
        acks: mpsc::Sender<Ack>,
        shutdown: watch::Receiver<bool>,
    ) -> SinkFuture {
        (self.launch)(deliveries, acks, shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Outputs {
        output: Vec<OutputConfig>,
    }

    #[test]
    fn output_tables_select_by_type_and_reject_unknown_keys() {
        let o: Outputs = toml::from_str(
            "[[output]]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\nmax_size = \"10MiB\"\n\n[[output]]\ntype = \"stdout\"\nname = \"console\"\n",
        )
        .unwrap();
        assert!(
            matches!(&o.output[0], OutputConfig::File(f) if f.max_size == 10 << 20 && f.format == OutputFormat::Native)
        );
        assert_eq!(o.output[1].plan().name.as_deref(), Some("console"));
        let e = toml::from_str::<Outputs>("[[output]]\ntype = \"file\"\npath = \"/x\"\nrotate = 3\n").err().unwrap();
        assert!(e.to_string().contains("rotate"), "{e}");
        let e = toml::from_str::<Outputs>("[[output]]\ntype = \"carrier-pigeon\"\n").err().unwrap();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
        let o = toml::from_str::<Outputs>("[[output]]\ntype = \"stdout\"\nformat = \"ecs\"\n").unwrap();
        assert_eq!(o.output[0].plan().format, OutputFormat::Ecs);
        let e = toml::from_str::<Outputs>("[[output]]\ntype = \"stdout\"\nformat = \"cef\"\n").err().unwrap();
        assert!(e.to_string().contains("cef"), "{e}");
    }

    /// Chaos suite finding: a RELP table with `window = 0` passed start, and the sink's own check
    /// failed at every restart, forever, with rules loaded. Sink checks are made at start now.
    #[test]
    fn sink_config_errors_are_found_before_the_daemon_starts() {
        for (table, word) in [
            ("type = \"relp\"\nwindow = 0", "window"),
            ("type = \"tcp\"\nbatch = 0", "batch"),
            ("type = \"udp\"\nmax_message_size = \"1MiB\"", "udp"),
            ("type = \"unix\"\naddress = \"/dev/log\"\napp_name = \"has space\"", "app_name"),
            ("type = \"relp\"\nmsgid = \"\"", "msgid"),
        ] {
            let o: Outputs = toml::from_str(&format!("[[output]]\n{table}\n")).unwrap();
            let message = o.output[0].check().expect_err(table);
            assert!(message.contains(word), "{table}: {message}");
        }
    }

    /// The shipped example config parses, including the commented-out [[output]] examples.
    #[test]
    fn example_config_parses_with_outputs_uncommented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/auditrelay.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = crate::config::Config::parse(&text, &path).unwrap();
        c.spool.validate().unwrap();
        assert!(c.output.is_empty());
        let start = text.find("# [[output]]\n").unwrap();
        let uncommented: String = text[start..]
            .lines()
            .filter(|l| !l.starts_with("# #") && l.trim() != "#")
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let c = crate::config::Config::parse(&format!("{}{uncommented}", &text[..start]), &path).unwrap();
        let kinds: Vec<&str> = c.output.iter().map(|o| o.plan().kind).collect();
        assert_eq!(kinds, ["file", "stdout", "relp", "tcp", "udp", "unix"]);
        assert_eq!(c.filter.len(), 2, "the [[filter]] examples parse too");
        assert!(matches!(&c.output[2], OutputConfig::Relp(r) if r.window == 256 && r.tls.is_some()));
        assert!(matches!(&c.output[0], OutputConfig::File(f) if f.mode == 0o600 && f.generations == 5));
    }
}
