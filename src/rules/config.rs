//! `[rules]` config section: where the rule set comes from and how it is applied.
//!
//! ```toml
//! [rules]
//! sources = ["/etc/auditrelay/rules.d", "https://rules.example.org/web.rules"]
//! refresh_interval = "5m"
//! sha256 = { "https://rules.example.org/web.rules" = "<hex>" }
//! immutable = false
//! ```
//! No `sources` means the embedded rules/default.rules. URL sources are fetched with a
//! `fetch_timeout`, revalidated with ETags and kept under `cache_dir` (see [`crate::rules::fetch`]). `immutable = true` is the only way a
//! `-e 2` line is applied (it locks the rules until reboot).
//!
//! Who controls the kernel through a URL: a URL source must be https or pinned by `sha256`
//! (plain http without a pin is refused here, naming the source), and its control lines
//! (`-D`, `-e`, `-b`, `-f`, `-r`, `--backlog_wait_time`, `--loginuid-immutable`), which could
//! switch auditing off, are ignored (logged and counted) unless `apply_url_controls = true`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::HumanDuration;

/// The rule set `run` loads when no source is configured.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.rules");

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Files, rules.d directories or http(s) URLs, combined in order.
    pub sources: Vec<String>,
    /// How often URL sources are fetched again ("30s", "5m", "1h"); at least 1s.
    pub refresh_interval: HumanDuration,
    /// Optional pinned SHA-256 (hex) per URL source.
    pub sha256: BTreeMap<String, String>,
    /// Apply `-e 2` (rules locked until reboot). Off by default.
    pub immutable: bool,
    /// Where the last good copy of each URL source is kept (used when the server is unreachable).
    pub cache_dir: PathBuf,
    /// Time limit for one URL fetch.
    pub fetch_timeout: HumanDuration,
    /// Apply control lines (-D -e -b -f -r --backlog_wait_time --loginuid-immutable) that come from
    /// URL sources. Off: they are ignored, logged and counted; only rules are taken from a URL.
    pub apply_url_controls: bool,
    /// Load the sources into the kernel (and put the kernel's rules back at exit). `false`: the
    /// kernel's rules belong to something else (augenrules, configuration management) and are
    /// left alone; only auditrelay's own self-exclusion rule is added and removed.
    pub manage: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            sources: Vec::new(),
            refresh_interval: HumanDuration(Duration::from_secs(300)),
            sha256: BTreeMap::new(),
            immutable: false,
            cache_dir: PathBuf::from("/var/lib/auditrelay/rules-cache"),
            fetch_timeout: HumanDuration(Duration::from_secs(10)),
            apply_url_controls: false,
            manage: true,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesConfigError {
    #[error("[rules] refresh_interval must be at least 1s")]
    Interval,
    #[error("[rules] fetch_timeout must be at least 100ms")]
    FetchTimeout,
    #[error("[rules] sha256 for {url}: expected 64 hex digits")]
    Sha256 { url: String },
    #[error("[rules] sha256 pins {url}, which is not one of the sources")]
    UnknownPin { url: String },
    #[error(
        "[rules] sources: {url} is plain http without a [rules] sha256 pin: anyone on the network path could \
         rewrite the rules; use https, or pin its SHA-256"
    )]
    PlainHttp { url: String },
    #[error("[rules] manage = false leaves the kernel's rules alone: `{key}` would have no effect; remove it")]
    Unmanaged { key: &'static str },
}

/// Validated `[rules]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub sources: Vec<String>,
    pub refresh_interval: Duration,
    pub sha256: BTreeMap<String, String>,
    pub immutable: bool,
    pub cache_dir: PathBuf,
    pub fetch_timeout: Duration,
    pub apply_url_controls: bool,
    pub manage: bool,
}

impl Rules {
    /// The fetcher for URL sources, caching under `cache_dir`.
    pub fn fetcher(&self) -> crate::rules::fetch::Fetcher {
        crate::rules::fetch::Fetcher::new(self.fetch_timeout, Some(self.cache_dir.clone()))
    }
}

impl RulesConfig {
    pub fn validate(&self) -> Result<Rules, RulesConfigError> {
        let refresh_interval = self.refresh_interval.0;
        if refresh_interval < Duration::from_secs(1) {
            return Err(RulesConfigError::Interval);
        }
        for (source, pin) in &self.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RulesConfigError::Sha256 { url: source.clone() });
            }
            if !self.sources.contains(source) {
                return Err(RulesConfigError::UnknownPin { url: source.clone() });
            }
        }
        if self.fetch_timeout.0 < Duration::from_millis(100) {
            return Err(RulesConfigError::FetchTimeout);
        }
        if let Some(url) = self.sources.iter().find(|s| s.starts_with("http://") && !self.sha256.contains_key(*s)) {
            return Err(RulesConfigError::PlainHttp { url: url.clone() });
        }
        if !self.manage {
            // A key that can only matter when rules are loaded is a misunderstanding: say so.
            if !self.sources.is_empty() {
                return Err(RulesConfigError::Unmanaged { key: "sources" });
            }
            if self.immutable {
                return Err(RulesConfigError::Unmanaged { key: "immutable" });
            }
        }
        Ok(Rules {
            sources: self.sources.clone(),
            refresh_interval,
            sha256: self.sha256.clone(),
            immutable: self.immutable,
            cache_dir: self.cache_dir.clone(),
            fetch_timeout: self.fetch_timeout.0,
            apply_url_controls: self.apply_url_controls,
            manage: self.manage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c: RulesConfig = toml::from_str("").unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.refresh_interval, Duration::from_secs(300));
        assert!(!v.immutable);
        let c: RulesConfig = toml::from_str(
            "sources = [\"/etc/auditrelay/rules.d\", \"https://x/y.rules\"]\nrefresh_interval = \"30s\"\nsha256 = { \"https://x/y.rules\" = \"0000000000000000000000000000000000000000000000000000000000000000\" }\n",
        )
        .unwrap();
        assert_eq!(c.validate().unwrap().refresh_interval, Duration::from_secs(30));
        let bad: Result<RulesConfig, _> = toml::from_str("sourcez = []");
        assert!(bad.is_err());
        let c = RulesConfig { sha256: [("https://z".to_string(), "ab".to_string())].into(), ..RulesConfig::default() };
        assert_eq!(c.validate(), Err(RulesConfigError::Sha256 { url: "https://z".into() }));
        let c: RulesConfig = toml::from_str("refresh_interval = \"10ms\"").unwrap();
        assert_eq!(c.validate(), Err(RulesConfigError::Interval));
        assert!(toml::from_str::<RulesConfig>("refresh_interval = \"5x\"").is_err());
    }

    /// Regression: a plain-http source without a pin was accepted, so anyone on the path could
    /// rewrite the rules (and, through control lines, switch auditing off).
    #[test]
    fn plain_http_needs_a_pin() {
        let c: RulesConfig = toml::from_str("sources = [\"http://rules.example.org/a.rules\"]").unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err, RulesConfigError::PlainHttp { url: "http://rules.example.org/a.rules".into() });
        assert!(err.to_string().contains("[rules] sources") && err.to_string().contains("sha256"), "{err}");
        let pinned = RulesConfig {
            sha256: [("http://rules.example.org/a.rules".to_string(), "ab".repeat(32))].into(),
            ..c.clone()
        };
        assert!(pinned.validate().is_ok());
        let https: RulesConfig = toml::from_str("sources = [\"https://rules.example.org/a.rules\"]").unwrap();
        assert!(!https.validate().unwrap().apply_url_controls, "control lines from URLs are off by default");
    }

    #[test]
    fn unmanaged_refuses_keys_that_would_do_nothing() {
        let c: RulesConfig = toml::from_str("manage = false").unwrap();
        assert!(!c.validate().unwrap().manage);
        let c: RulesConfig = toml::from_str("manage = false\nsources = [\"/etc/audit/rules.d\"]").unwrap();
        assert_eq!(c.validate(), Err(RulesConfigError::Unmanaged { key: "sources" }));
        let c: RulesConfig = toml::from_str("manage = false\nimmutable = true").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("immutable"));
        assert!(RulesConfig::default().validate().unwrap().manage, "managed by default");
    }

    #[test]
    fn example_config_documents_a_valid_rules_section() {
        let text = include_str!("../../examples/auditrelay.toml");
        let config = crate::config::Config::parse(text, std::path::Path::new("examples/auditrelay.toml")).unwrap();
        assert_eq!(config.rules, RulesConfig::default());
        for key in [
            "sources",
            "refresh_interval",
            "sha256",
            "immutable",
            "cache_dir",
            "fetch_timeout",
            "apply_url_controls",
            "manage",
        ] {
            assert!(text.contains(&format!("{key} =")), "examples/auditrelay.toml must document [rules] {key}");
        }
    }

    #[test]
    fn embedded_default_rules_compile() {
        struct H;
        impl crate::rules::parse::Host for H {
            fn is_dir(&self, p: &str) -> bool {
                std::path::Path::new(p).is_dir()
            }
            fn uid_by_name(&self, _: &str) -> Option<u32> {
                None
            }
            fn gid_by_name(&self, _: &str) -> Option<u32> {
                None
            }
        }
        let set = crate::rules::compile::compile_text("default.rules", DEFAULT_RULES, &H).unwrap();
        assert!(set.desired.len() >= 10);
    }
}
