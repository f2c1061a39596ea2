//! `[reassemble]` config section: every bound of the reassembler, with its defaults in one place.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Bounds and timers of the reassembler. See examples/auditrelay.toml for each key's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReassembleConfig {
    /// An event still incomplete this long after its first record is emitted with `incomplete`.
    #[serde(deserialize_with = "de_duration")]
    pub event_timeout: Duration,
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
        if self.event_timeout.is_zero() || self.gap_timeout.is_zero() {
            return Err("reassemble.event_timeout and reassemble.gap_timeout must be positive".into());
        }
        Ok(())
    }
}

/// `"2s"`, `"500ms"`, `"5m"`, `"1h"`, `"1500us"`: an integer and a unit, no spaces.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. \"2s\" or \"500ms\""))?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("invalid duration {text:?}: unit must be one of us, ms, s, m, h")),
    };
    Ok(d)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("2 s").is_err());
        assert!(parse_duration("-2s").is_err());
    }

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
