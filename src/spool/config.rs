//! `[spool]` configuration, plus the size ("1GiB") and duration ("2s") strings it uses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::SpoolError;

/// What to do when an append would push the spool past `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    DropOldest,
    DropNewest,
    Block,
}

impl fmt::Display for OnFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFull::DropOldest => "drop_oldest",
            OnFull::DropNewest => "drop_newest",
            OnFull::Block => "block",
        })
    }
}

/// `[spool]`: see the module docs of [`crate::spool`] for what each bound means.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    #[serde(deserialize_with = "de_size")]
    pub max_bytes: u64,
    #[serde(deserialize_with = "de_size")]
    pub segment_bytes: u64,
    #[serde(deserialize_with = "de_size")]
    pub max_record_bytes: u64,
    pub on_full: OnFull,
    #[serde(deserialize_with = "de_duration")]
    pub fsync_interval: Duration,
    pub fsync_every: u64,
    #[serde(deserialize_with = "de_duration")]
    pub cursor_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("/var/lib/auditrelay/spool"),
            max_bytes: 1 << 30,
            segment_bytes: 32 << 20,
            max_record_bytes: 4 << 20,
            on_full: OnFull::DropOldest,
            fsync_interval: Duration::from_secs(1),
            fsync_every: 0,
            cursor_interval: Duration::from_secs(1),
        }
    }
}

impl SpoolConfig {
    /// The relations between the bounds that the spool relies on.
    pub fn validate(&self) -> Result<(), SpoolError> {
        // Header + pos + time + id length: the smallest possible record.
        if self.max_record_bytes < 64 {
            return Err(SpoolError::Config(format!("max_record_bytes = {} is below 64", self.max_record_bytes)));
        }
        if self.max_record_bytes > u64::from(u32::MAX) {
            return Err(SpoolError::Config("max_record_bytes must be below 4GiB".into()));
        }
        if self.segment_bytes < self.max_record_bytes {
            return Err(SpoolError::Config(format!(
                "segment_bytes ({}) must be at least max_record_bytes ({})",
                self.segment_bytes, self.max_record_bytes
            )));
        }
        // Two segments: the one being dropped or drained and the active one.
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(SpoolError::Config(format!(
                "max_bytes ({}) must be at least twice segment_bytes ({})",
                self.max_bytes, self.segment_bytes
            )));
        }
        if self.fsync_interval.is_zero() && self.fsync_every == 0 {
            return Err(SpoolError::Config("fsync_interval = \"0s\" needs fsync_every >= 1".into()));
        }
        if self.cursor_interval.is_zero() {
            return Err(SpoolError::Config("cursor_interval must be above 0".into()));
        }
        Ok(())
    }
}

/// Parse "1GiB", "64MiB", "512KiB", "10MB", "4096" or "4096B" into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {text:?}: expected e.g. \"64MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parse "250ms", "2s", "5m", "1h" (an integer and a unit) into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. \"2s\""))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("invalid duration {text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    Ok(d)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Int(u64),
    Text(String),
}

/// serde helper: a size as a string with a unit, or a plain integer (bytes).
pub fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(n) => Ok(n),
        SizeValue::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// serde helper: a duration string such as "2s".
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096 B"), Ok(4096));
        assert!(parse_size("1 GB?").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2d").is_err());
    }

    #[test]
    fn toml_section_and_unknown_key() {
        let c: SpoolConfig = toml::from_str(
            "dir = \"/tmp/x\"\nmax_bytes = \"1GiB\"\non_full = \"drop_newest\"\nsegment_bytes = 8388608\nfsync_every = 1\n",
        )
        .unwrap();
        assert_eq!(c.max_bytes, 1 << 30);
        assert_eq!(c.segment_bytes, 8 << 20);
        assert_eq!(c.on_full, OnFull::DropNewest);
        assert_eq!(c.fsync_interval, Duration::from_secs(1));
        c.validate().unwrap();
        let e = toml::from_str::<SpoolConfig>("max_byte = \"1GiB\"").unwrap_err();
        assert!(e.to_string().contains("max_byte"), "{e}");
        SpoolConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_rejects_inconsistent_bounds() {
        let c = SpoolConfig { max_bytes: 1 << 20, segment_bytes: 1 << 20, ..SpoolConfig::default() };
        assert!(c.validate().is_err());
        let c = SpoolConfig { segment_bytes: 1 << 10, max_bytes: 1 << 30, ..SpoolConfig::default() };
        assert!(c.validate().is_err());
    }
}
