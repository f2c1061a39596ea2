//! RFC 5424 syslog messages carrying one JSON event each, and RFC 6587 framing for stream transports.
//!
//! Why our own formatter: the `syslog` crate stamps messages with the current time and frames TCP
//! with nothing at all, while a shipped audit event must carry its own timestamp (it may leave the
//! spool hours later) and a stream receiver must be told where each message ends. The crate is used
//! only for the local unix socket (see `unix.rs`), where its datagram/stream detection is what we want.
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG` with
//! - PRI = facility * 8 + severity, from config;
//! - TIMESTAMP = the event's own time, RFC 3339 UTC with milliseconds;
//! - HOSTNAME / APP-NAME / MSGID from config (defaults: the kernel hostname, `auditrelay`, `AUDIT`),
//!   PROCID = our pid;
//! - SD = `-`, or `[SD_ID id="<event id>"]` when `sd_id` is configured;
//! - MSG = the JSON event, UTF-8 without a BOM (receivers hand the BOM to JSON parsers otherwise).
//!
//! Invariant: a formatted message is never longer than `max_message_size` (header included); the body
//! is cut by [`crate::output::truncate`] when needed, and every cut is counted and logged.

use serde::Deserialize;

use crate::output::delivery::Delivery;
use crate::output::netstats::{bump, NET_STATS};
use crate::output::truncate::{self, Fit};

/// Smallest accepted `max_message_size`: room for a header and an event stub.
pub const MIN_MESSAGE_SIZE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    #[default]
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    /// RFC 5424 facility 13, "log audit" (rsyslog calls it `security`).
    Audit,
    /// RFC 5424 facility 14, "log alert".
    Alert,
    /// RFC 5424 facility 15, "clock daemon".
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Emerg,
    Alert,
    Crit,
    Err,
    Warning,
    Notice,
    #[default]
    Info,
    Debug,
}

impl Severity {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// RFC 6587 framing on stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `LEN SP MSG`: any byte may appear in MSG. The default.
    #[default]
    OctetCounting,
    /// `MSG LF`: the classic framing; an LF inside MSG would split it, so LFs are replaced by spaces
    /// (native JSON never contains a raw LF, so this only guards foreign bodies).
    Lf,
}

/// The event body format: any [`crate::format::OutputFormat`]. With `auditlog`, one syslog
/// message carries the event's lines joined by LF (under `framing = "lf"` they become spaces).
pub type BodyFormat = crate::format::OutputFormat;

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("output {output}: {key} {value:?} is not valid in an RFC 5424 header: {reason}")]
    Header { output: String, key: &'static str, value: String, reason: &'static str },
    #[error("output {output}: max_message_size {value} is below the minimum {min}")]
    TooSmall { output: String, value: usize, min: usize },
}

/// The header fields every syslog-speaking output shares, after validation.
#[derive(Debug, Clone)]
pub struct HeaderSpec {
    pub facility: Facility,
    pub severity: Severity,
    pub hostname: Option<String>,
    pub app_name: String,
    pub msgid: String,
    pub sd_id: Option<String>,
    pub max_message_size: usize,
}

impl HeaderSpec {
    /// The header defaults of every syslog output (the one place they are written down); only the
    /// size limit depends on the transport.
    pub fn defaults(max_message_size: usize) -> HeaderSpec {
        HeaderSpec {
            facility: Facility::default(),
            severity: Severity::default(),
            hostname: None,
            app_name: "auditrelay".to_string(),
            msgid: "AUDIT".to_string(),
            sd_id: None,
            max_message_size,
        }
    }
}

/// `header_spec!(config)`: the [`HeaderSpec`] from an output config's header keys (`facility`,
/// `severity`, `hostname`, `app_name`, `msgid`, `sd_id`, `max_message_size`).
///
/// Why a macro: those keys are repeated field by field in each syslog output's config struct,
/// because serde's `flatten` does not work together with `deny_unknown_fields`; this is the one
/// mapping from the same-named fields to a spec, checked by the compiler for each struct.
macro_rules! header_spec {
    ($config:expr) => {
        $crate::output::syslog::HeaderSpec {
            facility: $config.facility,
            severity: $config.severity,
            hostname: $config.hostname.clone(),
            app_name: $config.app_name.clone(),
            msgid: $config.msgid.clone(),
            sd_id: $config.sd_id.clone(),
            max_message_size: $config.max_message_size.as_usize(),
        }
    };
}
pub(crate) use header_spec;

/// Builds RFC 5424 messages for one output.
#[derive(Debug, Clone)]
pub struct Formatter {
    output: String,
    pri: u8,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd_id: Option<String>,
    max_message_size: usize,
}

/// The kernel's idea of our hostname; `-` (RFC 5424 NILVALUE) when unreadable.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

fn check_header_field(output: &str, key: &'static str, value: &str, max: usize) -> Result<(), SyslogError> {
    let err = |reason| SyslogError::Header { output: output.to_string(), key, value: value.to_string(), reason };
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > max {
        return Err(err("too long for its RFC 5424 field"));
    }
    if !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(err("only printable US-ASCII without spaces is allowed"));
    }
    Ok(())
}

impl Formatter {
    pub fn new(output: &str, spec: &HeaderSpec) -> Result<Formatter, SyslogError> {
        if spec.max_message_size < MIN_MESSAGE_SIZE {
            return Err(SyslogError::TooSmall {
                output: output.to_string(),
                value: spec.max_message_size,
                min: MIN_MESSAGE_SIZE,
            });
        }
        let hostname = spec.hostname.clone().unwrap_or_else(system_hostname);
        check_header_field(output, "hostname", &hostname, 255)?;
        check_header_field(output, "app_name", &spec.app_name, 48)?;
        check_header_field(output, "msgid", &spec.msgid, 32)?;
        if let Some(sd) = &spec.sd_id {
            check_header_field(output, "sd_id", sd, 32)?;
            if sd.bytes().any(|b| matches!(b, b'=' | b']' | b'"')) {
                return Err(SyslogError::Header {
                    output: output.to_string(),
                    key: "sd_id",
                    value: sd.clone(),
                    reason: "must not contain '=', ']' or '\"'",
                });
            }
        }
        Ok(Formatter {
            output: output.to_string(),
            pri: spec.facility.code() * 8 + spec.severity.code(),
            hostname,
            app_name: spec.app_name.clone(),
            procid: std::process::id().to_string(),
            msgid: spec.msgid.clone(),
            sd_id: spec.sd_id.clone(),
            max_message_size: spec.max_message_size,
        })
    }

    /// Append the RFC 5424 header for a message of event `id` at `time_ms`, up to and including
    /// the space before MSG. Written straight into `out`, without a header String or a formatted
    /// timestamp per message: this runs once per event and output.
    pub(crate) fn push_header(&self, time_ms: u64, id: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(self.pri).as_bytes());
        out.extend_from_slice(b">1 ");
        push_rfc3339_millis(time_ms, out);
        out.push(b' ');
        for field in [&self.hostname, &self.app_name, &self.procid, &self.msgid] {
            out.extend_from_slice(field.as_bytes());
            out.push(b' ');
        }
        match &self.sd_id {
            None => out.extend_from_slice(b"- "),
            Some(sd) => {
                out.push(b'[');
                out.extend_from_slice(sd.as_bytes());
                out.extend_from_slice(b" id=\"");
                for &c in id.as_bytes() {
                    // RFC 5424 6.3.3: '"', '\' and ']' are escaped in PARAM-VALUE.
                    if matches!(c, b'"' | b'\\' | b']') {
                        out.push(b'\\');
                    }
                    out.push(c);
                }
                out.extend_from_slice(b"\"] ");
            }
        }
    }

    /// `body` cut so that its message fits `max_message_size` (counted and logged), or as it is
    /// when it fits. Called where the shipper reads the spool for this output (its own thread:
    /// cutting a multi-megabyte event is CPU-heavy and holds up nobody else);
    /// [`Formatter::format`] then finds the body fits and only checks its length.
    pub fn prefit<'a>(&self, pos: u64, time_ms: u64, id: &str, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        // The header is under 700 bytes plus the escaped id: most bodies need no exact check.
        if body.len() + 700 + 2 * id.len() <= self.max_message_size {
            return std::borrow::Cow::Borrowed(body);
        }
        let mut header = Vec::with_capacity(256);
        self.push_header(time_ms, id, &mut header);
        let budget = self.max_message_size.saturating_sub(header.len());
        match truncate::fit(body, budget, id, time_ms) {
            Fit::AsIs(body) => std::borrow::Cow::Borrowed(body),
            Fit::Cut { body, report } => {
                self.count_cut(pos, id, &report);
                std::borrow::Cow::Owned(body)
            }
        }
    }

    fn count_cut(&self, pos: u64, id: &str, report: &truncate::CutReport) {
        if report.event_stubbed || report.records_stubbed > 0 {
            bump(&NET_STATS.stubbed_events, 1);
        } else {
            bump(&NET_STATS.truncated_events, 1);
        }
        log::warn!(
            "output {}: event {} (pos {}) of {} bytes exceeds max_message_size {}: cut {} argument(s), \
             stubbed {} record(s){}, now {} bytes",
            self.output,
            id,
            pos,
            report.original_len,
            self.max_message_size,
            report.args_cut,
            report.records_stubbed,
            if report.event_stubbed { ", replaced the event by a stub" } else { "" },
            report.final_len
        );
    }

    /// Append the RFC 5424 message for `d` to `out` (no framing). Never exceeds `max_message_size`:
    /// a body [`Formatter::prefit`] has not cut already is cut here.
    pub fn format(&self, d: &Delivery, out: &mut Vec<u8>) {
        let start = out.len();
        self.push_header(d.time_ms, d.id(), out);
        let budget = self.max_message_size.saturating_sub(out.len() - start);
        match truncate::fit(d.body(), budget, d.id(), d.time_ms) {
            Fit::AsIs(body) => out.extend_from_slice(body),
            Fit::Cut { body, report } => {
                self.count_cut(d.pos, d.id(), &report);
                out.extend_from_slice(&body);
            }
        }
    }

    /// `d`'s body cut to fit `max_message_size` behind its header, or None when it fits as is
    /// ([`Self::prefit`] on a delivery).
    pub fn cut_body(&self, d: &Delivery) -> Option<Vec<u8>> {
        match self.prefit(d.pos, d.time_ms, d.id(), d.body()) {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(cut) => Some(cut),
        }
    }

    /// Append `d` framed for a stream transport.
    pub fn format_framed(&self, d: &Delivery, framing: Framing, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        scratch.clear();
        self.format(d, scratch);
        frame(framing, scratch, out);
    }
}

/// Append one RFC 6587 frame holding `msg` to `out`.
pub fn frame(framing: Framing, msg: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(itoa::Buffer::new().format(msg.len()).as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
        }
        Framing::Lf => {
            out.extend(msg.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            out.push(b'\n');
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch (UTC).
pub fn rfc3339_millis(ms: u64) -> String {
    let mut out = Vec::with_capacity(24);
    push_rfc3339_millis(ms, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`rfc3339_millis`] appended to `out`: the native JSON's `time` writer, from milliseconds.
pub fn push_rfc3339_millis(ms: u64, out: &mut Vec<u8>) {
    let id = crate::record::EventId { seconds: ms / 1000, millis: (ms % 1000) as u16, serial: 0 };
    crate::format::json::push_rfc3339(out, &id);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec() -> HeaderSpec {
        HeaderSpec {
            facility: Facility::Authpriv,
            severity: Severity::Notice,
            hostname: Some("host1".into()),
            app_name: "auditrelay".into(),
            msgid: "AUDIT".into(),
            sd_id: None,
            max_message_size: 64 * 1024,
        }
    }

    fn delivery(body: &str) -> Delivery {
        Delivery::new(1, 1_795_373_270_780, "boot-1795373270.780-6", body.as_bytes())
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_795_373_270_780), "2026-11-22T18:47:50.780Z");
        assert_eq!(rfc3339_millis(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339_millis(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn header_layout() {
        let f = Formatter::new("t", &spec()).unwrap();
        let mut out = Vec::new();
        f.format(&delivery("{\"sequence\":6}"), &mut out);
        let pid = std::process::id();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("<85>1 2026-11-22T18:47:50.780Z host1 auditrelay {pid} AUDIT - {{\"sequence\":6}}")
        );
    }

    #[test]
    fn structured_data_carries_escaped_id() {
        let f = Formatter::new("t", &HeaderSpec { sd_id: Some("auditrelay@32473".into()), ..spec() }).unwrap();
        let d = Delivery::new(1, 1_795_373_270_780, "a\"b]c\\", b"{}");
        let mut out = Vec::new();
        f.format(&d, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(" [auditrelay@32473 id=\"a\\\"b\\]c\\\\\"] {}"), "{s}");
    }

    #[test]
    fn framing() {
        let mut out = Vec::new();
        frame(Framing::OctetCounting, b"hello", &mut out);
        frame(Framing::Lf, b"a\nb", &mut out);
        assert_eq!(out, b"5 helloa b\n");
    }

    #[test]
    fn oversized_event_fits_and_is_counted() {
        let f = Formatter::new("t", &HeaderSpec { max_message_size: 2048, ..spec() }).unwrap();
        let body =
            format!("{{\"records\":[{{\"type\":\"EXECVE\",\"fields\":{{\"a0\":\"{}\"}}}}]}}", "x".repeat(100_000));
        let before = crate::output::netstats::snapshot().truncated_events;
        let mut out = Vec::new();
        f.format(&delivery(&body), &mut out);
        assert!(out.len() <= 2048, "{}", out.len());
        assert!(crate::output::netstats::snapshot().truncated_events > before);
    }

    #[test]
    fn invalid_header_values_rejected() {
        assert!(Formatter::new("t", &HeaderSpec { app_name: "has space".into(), ..spec() }).is_err());
        assert!(Formatter::new("t", &HeaderSpec { msgid: "x".repeat(33), ..spec() }).is_err());
        assert!(Formatter::new("t", &HeaderSpec { max_message_size: 100, ..spec() }).is_err());
        assert!(Formatter::new("t", &HeaderSpec { sd_id: Some("a=b".into()), ..spec() }).is_err());
    }

    #[test]
    fn facility_codes() {
        assert_eq!(Facility::Kern.code(), 0);
        assert_eq!(Facility::Authpriv.code(), 10);
        assert_eq!(Facility::Audit.code(), 13);
        assert_eq!(Facility::Local7.code(), 23);
        assert_eq!(Severity::Debug.code(), 7);
    }
}
