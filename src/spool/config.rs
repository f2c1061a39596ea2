//! `[spool]` configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::frame::Compression;
use super::SpoolError;
use crate::units::{de_duration, de_size};

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
    /// At shutdown, how long outputs get to deliver what is spooled before the process exits
    /// (what is left is sent after the next start).
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// How the events of one commit (a frame) are compressed on disk; see [`crate::spool::frame`].
    pub compression: Compression,
    /// Log a warning when, at the recent rate of growth, the spool is full in less than this
    /// ("0s": never warn).
    #[serde(deserialize_with = "de_duration")]
    pub warn_full_in: Duration,
    /// Added to the nice value of each output's threads (sink and spool reader), 0..=19: under
    /// load the kernel reader and event processing get the CPU first and the outputs catch up
    /// from the spool (see [`crate::output::priority`]).
    pub output_nice: i32,
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
            drain_timeout: Duration::from_secs(5),
            // Chosen by measurement (least CPU per byte saved on every event set measured):
            // docs/performance.md, "Spool compression".
            compression: Compression::Lz4,
            warn_full_in: Duration::from_secs(600),
            // Measured, docs/performance.md "Third round": flat-out drain +3-10 % at 10, +17-20 %
            // at 19; 10 keeps a tenth of a contended core for the outputs per nice-0 competitor.
            output_nice: 10,
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
        if !(0..=19).contains(&self.output_nice) {
            return Err(SpoolError::Config(format!("output_nice = {} must be between 0 and 19", self.output_nice)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!((c.compression, c.warn_full_in), (Compression::Lz4, Duration::from_secs(600)));
        c.validate().unwrap();
        let c: SpoolConfig = toml::from_str("compression = \"zstd\"\nwarn_full_in = \"30m\"\n").unwrap();
        assert_eq!((c.compression, c.warn_full_in), (Compression::Zstd, Duration::from_secs(1800)));
        assert_eq!(SpoolConfig::default().output_nice, 10);
        for bad in [-1, 20] {
            let c = SpoolConfig { output_nice: bad, ..SpoolConfig::default() };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("output_nice"), "{e}");
        }
        assert!(toml::from_str::<SpoolConfig>("compression = \"gzip\"").is_err());
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
