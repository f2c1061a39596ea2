//! `[reassemble]` config section: every bound of the reassembler, with its defaults in one place.

use std::time::Duration;

use serde::Deserialize;

use crate::units::de_duration;

/// Bounds and timers of the reassembler. See examples/auditrelay.toml for each key's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReassembleConfig {
    /// An event still incomplete this long after its first record is emitted with `incomplete`.
    #[serde(deserialize_with = "de_duration")]
    pub event_timeout: Duration,
    /// A record of a type that is usually a whole event by itself waits this long for records of
    /// the same event (SYSCALL … EOE when it was logged inside an audited syscall) before it is
    /// emitted alone; zero emits it at once. The latency cost of standalone events.
    #[serde(deserialize_with = "de_duration")]
    pub standalone_grace: Duration,
    /// At most this many events in flight; beyond it the oldest is emitted with `incomplete`.
    pub max_in_flight: usize,
    /// At most this many records in one event; beyond it the event is emitted with `incomplete`
    /// and later records of it come out as `late` events.
    pub max_records_per_event: usize,
    /// A missing serial is reported once a serial this far beyond it has arrived…
    pub reorder_window: u32,
    /// …or once it has been missing this long.
    #[serde(deserialize_with = "de_duration")]
    pub gap_timeout: Duration,
    /// A serial this far from the expected one (either way) is a restart of the sequence (reboot,
    /// another log concatenated), not a gap: tracking restarts from it and nothing is reported lost.
    pub max_serial_jump: u32,
    /// How many completed event ids are remembered to recognise late records.
    pub completed_memory: usize,
    /// Distinct `node=` names tracked separately (replay of aggregated logs); further nodes share
    /// one slot, which only weakens their gap detection.
    pub max_nodes: usize,
}

impl Default for ReassembleConfig {
    fn default() -> Self {
        ReassembleConfig {
            event_timeout: Duration::from_secs(2),
            standalone_grace: Duration::from_millis(10),
            max_in_flight: 8192,
            max_records_per_event: 4096,
            reorder_window: 4096,
            gap_timeout: Duration::from_secs(5),
            max_serial_jump: 1_000_000,
            completed_memory: 16384,
            max_nodes: 256,
        }
    }
}

impl ReassembleConfig {
    /// Reject bounds that would make the reassembler useless; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_in_flight", self.max_in_flight),
            ("max_records_per_event", self.max_records_per_event),
            ("reorder_window", self.reorder_window as usize),
            ("completed_memory", self.completed_memory),
            ("max_nodes", self.max_nodes),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("reassemble.{key} must be at least 1"));
        }
        if self.max_serial_jump <= self.reorder_window {
            return Err("reassemble.max_serial_jump must exceed reassemble.reorder_window".into());
        }
        if self.max_serial_jump >= 1 << 31 {
            return Err("reassemble.max_serial_jump must be below 2^31 (serials wrap at 2^32)".into());
        }
        if self.standalone_grace >= self.event_timeout {
            return Err("reassemble.standalone_grace must be shorter than reassemble.event_timeout".into());
        }
        if self.event_timeout.is_zero() || self.gap_timeout.is_zero() {
            return Err("reassemble.event_timeout and reassemble.gap_timeout must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_with_defaults_and_unknown_keys() {
        let cfg: ReassembleConfig = toml::from_str("event_timeout = \"3s\"\nmax_in_flight = 10").unwrap();
        assert_eq!(cfg.event_timeout, Duration::from_secs(3));
        assert_eq!(cfg.max_in_flight, 10);
        assert_eq!(cfg.reorder_window, ReassembleConfig::default().reorder_window);
        let err = toml::from_str::<ReassembleConfig>("event_timout = \"3s\"").unwrap_err().to_string();
        assert!(err.contains("event_timout"), "{err}");
        let err = toml::from_str::<ReassembleConfig>("event_timeout = \"3 parsecs\"").unwrap_err().to_string();
        assert!(err.contains("invalid duration"), "{err}");
        let cfg: ReassembleConfig = toml::from_str("gap_timeout = 7").unwrap();
        assert_eq!(cfg.gap_timeout, Duration::from_secs(7));
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let text = include_str!("../../examples/auditrelay.toml");
        let mut file: toml::Table = toml::from_str(text).unwrap();
        let section = file.remove("reassemble").expect("examples/auditrelay.toml has a [reassemble] section");
        let cfg: ReassembleConfig = section.try_into().unwrap();
        assert_eq!(cfg, ReassembleConfig::default());
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(ReassembleConfig::default().validate(), Ok(()));
        let cfg = ReassembleConfig { max_in_flight: 0, ..Default::default() };
        assert!(cfg.validate().unwrap_err().contains("max_in_flight"));
        let cfg = ReassembleConfig { max_serial_jump: 10, reorder_window: 10, ..Default::default() };
        assert!(cfg.validate().unwrap_err().contains("max_serial_jump"));
    }
}
