//! Configuration in two stages: raw TOML (serde, unknown keys rejected with their name, defaults in
//! one place per section) → validated [`Config`]. Each pipeline stage owns its section's type.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::enrich::EnrichConfig;
use crate::logging::LogConfig;
use crate::netlink::settings::{KernelConfig, NetlinkConfig};
use crate::output::OutputConfig;
use crate::reassemble::ReassembleConfig;
use crate::rules::config::RulesConfig;
use crate::spool::SpoolConfig;
use crate::telemetry::control::ControlConfig;
use crate::telemetry::metrics::MetricsConfig;

/// Where `run` looks for a config file when none is given.
pub const DEFAULT_PATH: &str = "/etc/auditrelay/auditrelay.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("config {0}")]
    Untrusted(#[from] crate::file_trust::Untrusted),
}

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub netlink: NetlinkConfig,
    #[serde(default)]
    pub kernel: KernelConfig,
    #[serde(default)]
    pub reassemble: ReassembleConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[[output]]` tables; none means JSON lines on stdout without a spool.
    #[serde(default)]
    pub output: Vec<OutputConfig>,
    #[serde(default)]
    pub rules: RulesConfig,
    /// `[log]`, `[control]`, `[metrics]`: how the daemon reports on itself (see crate::telemetry).
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[[filter]]` tables, applied in order before the spool (src/filter.rs).
    #[serde(default)]
    pub filter: Vec<crate::filter::FilterConfig>,
    #[serde(default)]
    pub enrich: EnrichConfig,
}

impl Config {
    /// Load `path`, or the default path when it exists, or the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok(Config::default()),
        };
        // Root obeys this file: refuse one that someone else could change (crate::file_trust).
        crate::file_trust::check_trusted_as_root(&path)?;
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
        Ok(config)
    }

    /// Cross-field checks that serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.kernel.validate()?;
        self.reassemble.validate()?;
        self.enrich.validate()?;
        self.rules.validate().map_err(|e| e.to_string())?;
        self.spool.validate().map_err(|e| e.to_string())?;
        self.log.validate()?;
        self.control.validate()?;
        self.metrics.validate()?;
        crate::output::output_names(&self.output).map_err(|(name, m)| format!("[[output]] {name}: {m}"))?;
        crate::filter::Filters::compile(&self.filter).map_err(|e| e.to_string())?;
        if self.netlink.batch == 0 || self.netlink.channel_capacity == 0 {
            return Err("netlink.batch and netlink.channel_capacity must be at least 1".into());
        }
        if self.netlink.hand_off_bytes.0 < 16 << 10 || self.netlink.hand_off_bytes.0 > 64 << 20 {
            return Err("netlink.hand_off_bytes must be between 16KiB and 64MiB".into());
        }
        if !(0..=20).contains(&self.netlink.priority_boost) {
            return Err("netlink.priority_boost must be between 0 and 20".into());
        }
        if self.netlink.gather.0 > std::time::Duration::from_millis(100) {
            return Err("netlink.gather must be at most 100ms (it is added to every event's latency)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[netlink]\nrecieve_buffer = 1\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.starts_with("a.toml:") && e.contains("recieve_buffer"), "{e}");
        let e = Config::parse("[nope]\n", Path::new("a.toml")).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_key() {
        let e = Config::parse("[kernel]\nfailure = 2\n", Path::new("b.toml")).unwrap_err().to_string();
        assert!(e.contains("allow_panic"), "{e}");
        let e = Config::parse("[netlink]\nbatch = 0\n", Path::new("b.toml")).unwrap_err().to_string();
        assert!(e.contains("netlink.batch"), "{e}");
        let e = Config::parse("[spool]\nmax_bytes = \"1MiB\"\n", Path::new("b.toml")).unwrap_err().to_string();
        assert!(e.contains("max_bytes") && e.contains("segment_bytes"), "{e}");
        let e = Config::parse("[[output]]\ntype = \"file\"\n", Path::new("b.toml")).unwrap_err().to_string();
        assert!(e.contains("file-0") && e.contains("path"), "{e}");
        let e = Config::parse("[[output]]\ntype = \"stdout\"\nname = \"a b\"\n", Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`name`"), "{e}");
    }

    #[test]
    fn bad_filters_are_rejected_at_load_with_the_key() {
        let e = Config::parse("[[filter]]\naction = \"drop\"\nsyscall = [\"opn\"]\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: [[filter]] filter-0: syscall:"), "{e}");
        let e = Config::parse("[[filter]]\naction = \"drop\"\nsycall = [\"open\"]\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sycall"), "{e}");
        let e = Config::parse("[[filter]]\naction = \"discard\"\nkey = [\"x\"]\n", Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("discard"), "{e}");
        let c = Config::parse("[[filter]]\naction = \"keep\"\nkey = [\"x\"]\n", Path::new("f.toml")).unwrap();
        assert_eq!(c.filter.len(), 1);
    }

    #[test]
    fn shipped_example_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/auditrelay.toml"));
        let text = std::fs::read_to_string(path).expect("example config");
        Config::parse(&text, path).expect("example parses");
    }
}
