//! Configuration in two stages: raw TOML (serde, unknown keys rejected with their name, defaults in
//! one place per section) → validated [`Config`]. Each pipeline stage owns its section's type.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::netlink::settings::{KernelConfig, NetlinkConfig};
use crate::output::OutputConfig;
use crate::reassemble::ReassembleConfig;
use crate::spool::SpoolConfig;

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
}

impl Config {
    /// Load `path`, or the default path when it exists, or the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }
}
