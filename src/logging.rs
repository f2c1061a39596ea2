//! The one logger: `tracing` with the `log` facade bridged in, to the journal when systemd runs us
//! and to stderr otherwise, with repeated messages rate-limited.
//!
//! Why one: the output code logs with `log::warn!` and the rest used `eprintln!`; with no logger
//! installed every `log` record was discarded, so an operator whose log server was unreachable saw
//! nothing. Now every record of either facade goes through the same filter, rate limit and sink.
//!
//! - Destination: the journal (`tracing-journald`, priority and code location as journal fields)
//!   when `JOURNAL_STREAM` or `INVOCATION_ID` says systemd started us and the journal socket
//!   answers; stderr otherwise, one line each as `auditrelay: warning: ...`.
//! - Levels: `[log] level` (an `EnvFilter` directive list such as `info` or
//!   `info,auditrelay::output=debug`); the environment variable [`ENV_FILTER`] overrides it.
//! - Repeats: at most `[log] repeat_limit` messages per call site per `[log] repeat_interval`;
//!   the rest are counted, and once the interval is over one line says how many were suppressed
//!   (with the last of them as an example). ERROR and WARN are limited too: a receiver that is down
//!   fails every few seconds, and one line a minute says so as well as a thousand would.
//! - ERROR is for data loss or when an operator must act; WARN for trouble the daemon works around.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::units::HumanDuration;

/// Environment variable whose value (RUST_LOG syntax) replaces `[log] level`.
pub const ENV_FILTER: &str = "AUDITRELAY_LOG";

/// The target of the "suppressed N similar messages" lines; they are never limited themselves.
const REPEATS_TARGET: &str = "auditrelay::log::repeats";
/// The target of the periodic summary line, which is never limited either: it is periodic by
/// design, whatever `summary_interval` and the repeat limit are.
pub const SUMMARY_TARGET: &str = "auditrelay::summary";

/// Most call sites whose repeats are tracked at once; beyond it, finished windows are forgotten
/// first and then the oldest (a bound, since call sites are finite but `log` records carry
/// arbitrary file/line pairs).
const MAX_SITES: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `EnvFilter` directives: `info`, `debug`, `warn,auditrelay::output=debug`, ...
    pub level: String,
    /// How often the daemon logs its one-line summary of what went in, out and was lost; 0 = off.
    pub summary_interval: HumanDuration,
    /// Messages from one call site let through per `repeat_interval`; 0 = no limit.
    pub repeat_limit: u32,
    pub repeat_interval: HumanDuration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            summary_interval: HumanDuration(Duration::from_secs(60)),
            repeat_limit: 10,
            repeat_interval: HumanDuration(Duration::from_secs(60)),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), String> {
        parse_filter(&self.level).map_err(|e| format!("log.level {:?}: {e}", self.level))?;
        if self.repeat_limit > 0 && self.repeat_interval.0.is_zero() {
            return Err("log.repeat_interval must be more than 0 when log.repeat_limit is set".into());
        }
        Ok(())
    }
}

/// `EnvFilter` syntax, except that a directive without `=` must be a level: a bare word is a
/// target name to `EnvFilter` (`loud` would mean "everything from target `loud`"), which in a
/// config file is a typo.
fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for d in directives.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !d.contains('=') && !d.contains('[') && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) {
            return Err(format!("{d:?} is not a level (off, error, warn, info, debug, trace) nor target=level"));
        }
    }
    EnvFilter::builder().parse(directives).map_err(|e| e.to_string())
}

/// Where log lines went, for the daemon's start-up line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Journald,
    Stderr,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Whether systemd started us: it sets `INVOCATION_ID` for every unit and `JOURNAL_STREAM` when
/// stdout/stderr are connected to the journal.
fn under_systemd() -> bool {
    ["JOURNAL_STREAM", "INVOCATION_ID"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// The installed logger; [`Installed::start_reporter`] starts the thread that reports suppressed
/// repeats. That is a separate step because threads copy the capabilities of the thread that
/// starts them: the daemon starts it only after dropping its capabilities.
#[must_use]
pub struct Installed {
    pub destination: Destination,
    reporter: Option<(Arc<Repeats>, Duration)>,
}

impl Installed {
    pub fn start_reporter(self) {
        let Some((repeats, tick)) = self.reporter else { return };
        // Not fatal: without it, suppressed messages are only not reported.
        if let Err(e) =
            std::thread::Builder::new().name("log-repeats".into()).spawn(move || report_repeats_forever(&repeats, tick))
        {
            log::warn!("cannot start the log-repeats thread: {e}");
        }
    }
}

/// Install the daemon's logger (see the module docs; with the journal, also a panic hook that
/// logs panics at ERROR). Call once, first thing in `run`.
pub fn install(config: &LogConfig) -> Result<Installed, LogError> {
    let (filter, env_error) = match std::env::var(ENV_FILTER) {
        Ok(v) if !v.trim().is_empty() => match parse_filter(&v) {
            Ok(f) => (f, None),
            Err(e) => (config_filter(config), Some(format!("{ENV_FILTER}={v:?} ignored: {e}"))),
        },
        _ => (config_filter(config), None),
    };
    let repeats = Arc::new(Repeats::new(config.repeat_limit, config.repeat_interval.0));
    let systemd = under_systemd();
    let (journald, journal_error) = match systemd.then(tracing_journald::layer) {
        Some(Ok(layer)) => (Some(layer), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let destination = if journald.is_some() { Destination::Journald } else { Destination::Stderr };
    let journald = journald.map(|l| l.with_syslog_identifier("auditrelay".into()));
    let stderr = (destination == Destination::Stderr)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).event_format(Plain));
    tracing_subscriber::registry()
        .with(filter)
        .with(RepeatLimit(repeats.clone()))
        .with(journald)
        .with(stderr)
        .try_init()
        .map_err(|_| LogError::AlreadyInstalled)?;
    if destination == Destination::Journald {
        // On stderr the default hook's message is the log line already; in the journal it would
        // lack the priority, so log it there too.
        install_panic_hook();
    }
    if let Some(e) = journal_error {
        log::warn!("started by systemd but the journal socket does not answer ({e}): logging to stderr");
    }
    if let Some(e) = env_error {
        log::warn!("{e}");
    }
    let tick = (config.repeat_interval.0 / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    Ok(Installed { destination, reporter: (config.repeat_limit > 0).then_some((repeats, tick)) })
}

/// For the CLI subcommands: warnings and errors of library code on stderr, no rate limit. Their
/// own output (rule check errors, status text) is printed directly and does not come through here.
pub fn install_cli() {
    let filter = match std::env::var(ENV_FILTER) {
        Ok(v) if !v.trim().is_empty() => parse_filter(&v).unwrap_or_else(|_| EnvFilter::new("warn")),
        _ => EnvFilter::new("warn"),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).event_format(Plain))
        .try_init();
}

fn config_filter(config: &LogConfig) -> EnvFilter {
    // Validated with the config; a default never fails to parse.
    parse_filter(&config.level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A panic in any thread is logged to the journal at ERROR before the default hook prints it.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log::error!("thread {thread} panicked: {info}");
        default(info);
    }));
}

fn report_repeats_forever(repeats: &Repeats, tick: Duration) {
    loop {
        std::thread::sleep(tick);
        for r in repeats.take_finished(Instant::now()) {
            r.log();
        }
    }
}

/// `auditrelay: warning: message`, the form the daemon's lines had before the logger; no
/// timestamp (stderr of a foreground process, or a file the caller names; the journal has its own).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        write!(writer, "auditrelay: {level}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// One call site's current window.
struct Window {
    started: Instant,
    passed: u32,
    suppressed: u64,
    level: Level,
    /// The last suppressed message, as an example for the report.
    example: String,
}

impl Window {
    fn new(started: Instant, level: Level) -> Window {
        Window { started, passed: 0, suppressed: 0, level, example: String::new() }
    }
}

/// What was suppressed at one call site during a finished window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub site: String,
    pub level: Level,
    pub count: u64,
    pub example: String,
    pub interval: Duration,
}

impl Suppressed {
    fn log(&self) {
        let (site, n, ex, every) = (&self.site, self.count, &self.example, self.interval);
        macro_rules! at {
            ($lvl:expr) => {
                tracing::event!(target: REPEATS_TARGET, $lvl,
                    "suppressed {n} similar messages from {site} in {every:?} (the last: {ex})")
            };
        }
        match self.level {
            Level::ERROR => at!(Level::ERROR),
            Level::WARN => at!(Level::WARN),
            Level::INFO => at!(Level::INFO),
            Level::DEBUG => at!(Level::DEBUG),
            Level::TRACE => at!(Level::TRACE),
        }
    }
}

/// The rate limit's state: call site → window, and the reports of windows that ended, waiting for
/// the repeats thread. Plain data behind a mutex (log lines are rare next to events; the lock is
/// held for a map lookup).
struct Repeats {
    limit: u32,
    interval: Duration,
    state: Mutex<RepeatState>,
}

#[derive(Default)]
struct RepeatState {
    sites: HashMap<String, Window>,
    /// Reports of windows that ended when their site logged again; emitted by the repeats thread
    /// (an event emitted from inside the dispatcher would be dropped).
    finished: Vec<Suppressed>,
}

impl Repeats {
    fn new(limit: u32, interval: Duration) -> Repeats {
        Repeats { limit, interval, state: Mutex::new(RepeatState::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RepeatState> {
        // Plain counters: still usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a message from `site` may pass now; `message` is called only when it may not.
    fn admit(&self, site: &str, level: Level, now: Instant, message: impl FnOnce() -> String) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut st = self.lock();
        let RepeatState { sites, finished } = &mut *st;
        if !sites.contains_key(site) && sites.len() >= MAX_SITES {
            self.evict(sites, now);
        }
        let w = sites.entry(site.to_string()).or_insert_with(|| Window::new(now, level));
        if now.duration_since(w.started) >= self.interval {
            if w.suppressed > 0 {
                finished.push(self.report(site, w));
            }
            *w = Window::new(now, level);
        }
        if w.passed < self.limit {
            w.passed += 1;
            true
        } else {
            w.suppressed += 1;
            w.level = level;
            w.example = message();
            false
        }
    }

    fn report(&self, site: &str, w: &Window) -> Suppressed {
        Suppressed {
            site: site.to_string(),
            level: w.level,
            count: w.suppressed,
            example: w.example.clone(),
            interval: self.interval,
        }
    }

    fn evict(&self, sites: &mut HashMap<String, Window>, now: Instant) {
        sites.retain(|_, w| w.suppressed > 0 || now.duration_since(w.started) < self.interval);
        if sites.len() >= MAX_SITES {
            if let Some(oldest) = sites.iter().min_by_key(|(_, w)| w.started).map(|(k, _)| k.clone()) {
                sites.remove(&oldest);
            }
        }
    }

    /// Reports for the windows that ended with something suppressed; their counts start again.
    fn take_finished(&self, now: Instant) -> Vec<Suppressed> {
        let mut st = self.lock();
        let RepeatState { sites, finished } = &mut *st;
        let mut out = std::mem::take(finished);
        for (site, w) in sites.iter_mut() {
            if w.suppressed > 0 && now.duration_since(w.started) >= self.interval {
                out.push(self.report(site, w));
                *w = Window::new(now, w.level);
            }
        }
        out.sort_by(|a, b| a.site.cmp(&b.site));
        out
    }
}

/// The layer that applies [`Repeats`] to every event (both facades) before any output sees it.
struct RepeatLimit(Arc<Repeats>);

/// The `message` field of an event, for the example in a suppression report.
#[derive(Default)]
struct MessageOf(String);

impl Visit for MessageOf {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for RepeatLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // `log` records all share one callsite per level: their own file and line tell them apart.
        let normalized = event.normalized_metadata();
        let m = normalized.as_ref().unwrap_or(meta);
        if m.target() == REPEATS_TARGET || m.target() == SUMMARY_TARGET {
            return true;
        }
        let site = format!("{}:{}", m.file().unwrap_or(m.target()), m.line().unwrap_or(0));
        self.0.admit(&site, *m.level(), Instant::now(), || {
            let mut v = MessageOf::default();
            event.record(&mut v);
            v.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_passes_its_limit_then_is_counted_and_reported_once_the_interval_ends() {
        let r = Repeats::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let passed = (0..10).filter(|i| r.admit("a.rs:1", Level::WARN, t0, || format!("m{i}"))).count();
        assert_eq!(passed, 3);
        // Another site has its own budget.
        assert!(r.admit("b.rs:2", Level::WARN, t0, String::new));
        assert!(r.take_finished(t0 + Duration::from_secs(59)).is_empty());
        let reports = r.take_finished(t0 + Duration::from_secs(60));
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!((reports[0].site.as_str(), reports[0].count, reports[0].example.as_str()), ("a.rs:1", 7, "m9"));
        assert_eq!(reports[0].level, Level::WARN);
        // Reported once; the new window passes again.
        assert!(r.take_finished(t0 + Duration::from_secs(200)).is_empty());
        assert!(r.admit("a.rs:1", Level::WARN, t0 + Duration::from_secs(261), String::new));
    }

    /// Through a real subscriber: the layer tells call sites apart and lets the summary through.
    #[test]
    fn the_layer_limits_each_call_site_on_its_own() {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                let mut v = MessageOf::default();
                event.record(&mut v);
                self.0.lock().unwrap().push(v.0);
            }
        }
        let seen = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(RepeatLimit(Arc::new(Repeats::new(2, Duration::from_secs(60)))))
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..5 {
                tracing::warn!("again {i}");
                tracing::info!(target: SUMMARY_TARGET, "summary {i}");
            }
            tracing::warn!("another site");
        });
        let seen = seen.0.lock().unwrap().clone();
        let again = seen.iter().filter(|m| m.starts_with("again")).count();
        let summaries = seen.iter().filter(|m| m.starts_with("summary")).count();
        assert_eq!((again, summaries), (2, 5), "{seen:?}");
        assert!(seen.iter().any(|m| m == "another site"), "{seen:?}");
    }

    #[test]
    fn limit_zero_lets_everything_through() {
        let r = Repeats::new(0, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!((0..1000).all(|_| r.admit("a:1", Level::ERROR, t0, String::new)));
    }

    #[test]
    fn tracked_sites_are_bounded() {
        let r = Repeats::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_SITES * 2) {
            let _ = r.admit(&format!("s:{i}"), Level::INFO, t0, String::new);
        }
        assert!(r.lock().sites.len() <= MAX_SITES);
    }

    #[test]
    fn level_directives_are_validated_with_the_key() {
        let mut c = LogConfig::default();
        assert!(c.validate().is_ok());
        c.level = "info,auditrelay::output=debug".into();
        assert!(c.validate().is_ok());
        c.level = "loud".into();
        let e = c.validate().unwrap_err();
        assert!(e.contains("log.level") && e.contains("not a level"), "{e}");
        c.level = "auditrelay=loud".into();
        assert!(c.validate().is_err());
    }
}
