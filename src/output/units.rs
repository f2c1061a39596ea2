//! Human-readable durations ("500ms", "2s", "5m", "1h") and sizes ("64KiB", "1MiB", or a plain
//! integer of bytes) for the network sinks' config keys.
//!
//! Both parse strictly: one unsigned integer and one known unit, no spaces, no fractions, so a typo
//! in a config file is an error that names the value instead of a silently different bound.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct UnitError {
    what: &'static str,
    value: String,
    reason: &'static str,
}

/// A config duration; deserializes from strings like "2s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// A config size in bytes; deserializes from an integer or strings like "64KiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSize(pub usize);

fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let n = s[..digits].parse().ok()?;
    Some((n, &s[digits..]))
}

pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = |reason| UnitError { what: "duration", value: s.to_string(), reason };
    let (n, unit) = split_number(s).ok_or_else(|| err("expected digits followed by ms, s, m or h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(|| err("too large"))?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(|| err("too large"))?),
        _ => return Err(err("unit must be ms, s, m or h")),
    };
    Ok(d)
}

pub fn parse_size(s: &str) -> Result<usize, UnitError> {
    let err = |reason| UnitError { what: "size", value: s.to_string(), reason };
    let (n, unit) = split_number(s).ok_or_else(|| err("expected digits followed by an optional B, KiB, MiB or GiB"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(err("unit must be B, KiB, MiB or GiB")),
    };
    let bytes = n.checked_mul(mult).ok_or_else(|| err("too large"))?;
    usize::try_from(bytes).map_err(|_| err("too large"))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(ConfigDuration).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: an integer of bytes or a string like \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigSize, E> {
                usize::try_from(v).map(ConfigSize).map_err(|_| E::custom("size too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigSize, E> {
                usize::try_from(v).map(ConfigSize).map_err(|_| E::custom("size must not be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigSize, E> {
                parse_size(v).map(ConfigSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "2", "2 s", "1.5s", "-1s", "2d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        for bad in ["", "KiB", "1kb", "1 KiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn size_from_toml_integer_or_string() {
        #[derive(Deserialize)]
        struct T {
            a: ConfigSize,
            b: ConfigSize,
        }
        let t: T = toml::from_str("a = 10\nb = \"2KiB\"").unwrap();
        assert_eq!((t.a.0, t.b.0), (10, 2048));
    }
}
