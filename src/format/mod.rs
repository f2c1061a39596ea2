//! Encoders: reassembled [`Output`](crate::reassemble::Output)s to the native JSON line
//! ([`json`]), and the native line to each output's own format ([`Formatter`]).
//!
//! ```text
//! Event ──JsonWriter──▶ native line ──spool──▶ per output: Formatter ──▶ native | go-audit | ecs | auditlog
//! ```
//! Why derived formats start from the native line: the spool stores one body per event, shared by
//! every output; each output converts in its own pump thread (plain thread, see
//! [`crate::output::shipper`]), so conversion costs neither the processing thread nor the async
//! runtime, and the native output is a passthrough. What the derived formats need beyond schema v1
//! is carried in it: a record's exact text (`"text"`, written when some output's format
//! [`needs_record_text`](OutputFormat::needs_record_text)), and schema v2's interpretation when
//! the enrichment stage wrote it (ECS falls back to the raw fields when it did not).

pub mod auditlog;
pub mod ecs;
pub mod goaudit;
pub mod json;
pub mod names;
pub mod native;

pub use json::JsonWriter;

use serde::Deserialize;

/// How an event is rendered for an output (`format = …` in an `[[output]]`, `replay --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum OutputFormat {
    /// auditrelay's native JSON (docs/schema.md), as spooled.
    #[default]
    #[serde(rename = "native")]
    #[value(name = "native")]
    Native,
    /// The object go-audit writes: `{"sequence","timestamp","messages":[{"type","data"}],"uid_map"}`.
    #[serde(rename = "go-audit")]
    #[value(name = "go-audit")]
    GoAudit,
    /// Elastic Common Schema as auditbeat's auditd module writes it.
    #[serde(rename = "ecs")]
    #[value(name = "ecs")]
    Ecs,
    /// auditd's audit.log text (RAW): one `type=… msg=audit(…): …` line per record.
    #[serde(rename = "auditlog")]
    #[value(name = "auditlog")]
    Auditlog,
    /// auditd's audit.log text with the ENRICHED part (0x1d, then the interpreted fields).
    #[serde(rename = "auditlog_enriched")]
    #[value(name = "auditlog_enriched")]
    AuditlogEnriched,
}

impl OutputFormat {
    /// The name as written in config.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Native => "native",
            OutputFormat::GoAudit => "go-audit",
            OutputFormat::Ecs => "ecs",
            OutputFormat::Auditlog => "auditlog",
            OutputFormat::AuditlogEnriched => "auditlog_enriched",
        }
    }

    /// Whether the native line must carry each record's exact text (`"text"`) for this format:
    /// go-audit's `data` and audit.log lines are the kernel's text byte for byte, which the
    /// `fields` object alone does not pin down (quoting, spacing, interleaved repeats).
    pub fn needs_record_text(self) -> bool {
        matches!(self, OutputFormat::GoAudit | OutputFormat::Auditlog | OutputFormat::AuditlogEnriched)
    }
}

/// A native line that is not what the writer produces.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a native JSON line: {0}")]
    Json(#[from] serde_json::Error),
}

/// Per-output converter from native lines to the output's format. Owns its buffers (reused for
/// every event) and its uid/gid name cache; one per pump thread.
pub struct Formatter {
    format: OutputFormat,
    buf: Vec<u8>,
    /// Per-record scratch space of the converters, reused across events.
    scratch: Vec<u8>,
    names: names::Names,
    /// The ECS writer's reused per-event state.
    ecs: ecs::Scratch,
    host: Option<String>,
    /// Events whose native line could not be read back; they are passed on as they are.
    pub failed: u64,
}

impl std::fmt::Debug for Formatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Formatter").field("format", &self.format).field("failed", &self.failed).finish()
    }
}

impl Formatter {
    pub fn new(format: OutputFormat) -> Formatter {
        Formatter::with_names(format, names::Names::system(names::DEFAULT_CAPACITY))
    }

    /// With a chosen name resolver (tests use a fixed table instead of NSS).
    pub fn with_names(format: OutputFormat, names: names::Names) -> Formatter {
        Formatter {
            format,
            buf: Vec::with_capacity(16 * 1024),
            scratch: Vec::with_capacity(4096),
            names,
            ecs: ecs::Scratch::default(),
            host: None,
            failed: 0,
        }
    }

    /// `host.name` for ECS when the event carries no `host` member (default: the kernel hostname).
    pub fn with_host(mut self, host: Option<String>) -> Formatter {
        self.host = host;
        self
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// `native` (one line, no trailing newline) in this output's format, no trailing newline;
    /// audit.log text is one line per record joined by `\n`. `time_ms` is the spool's time of the
    /// line (loss notices carry no time of their own). Valid until the next call.
    pub fn convert<'a>(&'a mut self, native: &'a [u8], time_ms: u64) -> Result<&'a [u8], FormatError> {
        if self.format == OutputFormat::Native {
            return Ok(native);
        }
        self.buf.clear();
        let line = native::NativeLine::parse(native)?;
        match self.format {
            OutputFormat::Native => {}
            OutputFormat::GoAudit => goaudit::write(&line, native, &mut self.names, &mut self.buf, &mut self.scratch),
            OutputFormat::Auditlog => auditlog::write(&line, time_ms, false, &mut self.names, &mut self.buf),
            OutputFormat::AuditlogEnriched => auditlog::write(&line, time_ms, true, &mut self.names, &mut self.buf),
            OutputFormat::Ecs => {
                let host = self.host.get_or_insert_with(kernel_hostname);
                ecs::write(&line, time_ms, host, &mut self.names, &mut self.ecs, &mut self.buf)
            }
        }
        Ok(&self.buf)
    }

    /// [`Formatter::convert`], and on a line that cannot be read back the line itself (counted in
    /// [`Formatter::failed`], logged at the first and then at powers of two): an output never
    /// loses an event to its format.
    pub fn convert_or_pass<'a>(&'a mut self, native: &'a [u8], time_ms: u64) -> &'a [u8] {
        if self.format == OutputFormat::Native {
            return native;
        }
        // Two steps so the borrow of `self.buf` ends before the fallback.
        if self.convert(native, time_ms).is_ok() {
            return &self.buf;
        }
        self.failed += 1;
        if self.failed.is_power_of_two() {
            let e = native::NativeLine::parse(native).err().map(|e| e.to_string()).unwrap_or_default();
            log::warn!(
                "format {}: a spooled line is not native JSON ({e}); passed on unconverted ({} so far)",
                self.format.name(),
                self.failed
            );
        }
        native
    }
}

/// The kernel's hostname (`uname -n`), `"localhost"` if it cannot be read.
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_parse_in_config_and_round_trip() {
        #[derive(Deserialize)]
        struct C {
            format: OutputFormat,
        }
        for f in [
            OutputFormat::Native,
            OutputFormat::GoAudit,
            OutputFormat::Ecs,
            OutputFormat::Auditlog,
            OutputFormat::AuditlogEnriched,
        ] {
            let c: C = toml::from_str(&format!("format = \"{}\"", f.name())).unwrap();
            assert_eq!(c.format, f);
        }
        let e = toml::from_str::<C>("format = \"xml\"").err().unwrap();
        assert!(e.to_string().contains("xml"), "{e}");
    }

    #[test]
    fn a_line_that_is_not_native_json_is_passed_on_and_counted() {
        let mut f = Formatter::with_names(OutputFormat::GoAudit, names::Names::fixed(&[]));
        assert_eq!(f.convert_or_pass(b"not json", 0), b"not json");
        assert_eq!(f.failed, 1);
    }
}
