//! Human units in config files: byte sizes ("8MiB", "1GiB", "4096") and durations ("2s", "500ms",
//! "5m", "1h"). This is the one parser for every section of the config.
//!
//! Written values parse strictly: digits immediately followed by a known unit, no spaces, no sign,
//! no fractions, so a typo in a config file is an error that names the value instead of a silently
//! different bound. A duration string must carry its unit ("500" could mean ms or s); a bare TOML
//! integer is a number of bytes (sizes) or seconds (durations), as examples/auditrelay.toml says.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct UnitError {
    what: &'static str,
    text: String,
    why: &'static str,
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as an in-memory length; saturates on targets whose `usize` is narrower than 64 bits
    /// (such a bound is above anything allocatable there and is caught by the caller's own limit).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// A duration written for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// Leading ASCII digits as a number, and the rest of `s`; `None` when there are no digits or the
/// number does not fit in a u64.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n = s[..digits].parse().ok()?;
    Some((n, &s[digits..]))
}

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<ByteSize, UnitError> {
        let err = |why| UnitError { what: "size", text: s.to_string(), why };
        let (n, unit) =
            split_number(s).ok_or_else(|| err("expected digits followed by B, KiB, MiB, GiB, KB, MB or GB"))?;
        let mult: u64 = match unit {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(err("unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| err("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<HumanDuration, UnitError> {
        let err = |why| UnitError { what: "duration", text: s.to_string(), why };
        let (n, unit) = split_number(s).ok_or_else(|| err("expected digits followed by ms, s, m or h"))?;
        let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| err("too large"));
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => secs(60)?,
            "h" => secs(3600)?,
            _ => return Err(err("unknown unit (use ms, s, m or h)")),
        };
        Ok(HumanDuration(d))
    }
}

/// Accepts a non-negative TOML integer or a string, and hands each to the given constructors.
struct UnitVisitor<T> {
    expecting: &'static str,
    from_int: fn(u64) -> T,
}

impl<T: FromStr<Err = UnitError>> Visitor<'_> for UnitVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.from_int)(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v).map(self.from_int).map_err(|_| E::custom(format!("{v} must not be negative")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            expecting: "a size: an integer of bytes or a string like \"64KiB\"",
            from_int: ByteSize,
        })
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            expecting: "a duration: an integer of seconds or a string like \"500ms\"",
            from_int: |n| HumanDuration(Duration::from_secs(n)),
        })
    }
}

/// serde `deserialize_with` helper for plain `u64` byte fields.
pub fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ByteSize::deserialize(d).map(|b| b.0)
}

/// serde `deserialize_with` helper for plain `Duration` fields.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(d).map(|h| h.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("8MiB".parse(), Ok(ByteSize(8 << 20)));
        assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("64KiB".parse(), Ok(ByteSize(65536)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("2MB".parse(), Ok(ByteSize(2_000_000)));
        for bad in ["", "KiB", "1XB", "1kb", "2 MB", "1 KiB", " 1KiB", "1KiB ", "-1", "1.5KiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert!("99999999999999999999".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!("2s".parse(), Ok(HumanDuration(Duration::from_secs(2))));
        assert_eq!("500ms".parse(), Ok(HumanDuration(Duration::from_millis(500))));
        assert_eq!("5m".parse(), Ok(HumanDuration(Duration::from_secs(300))));
        assert_eq!("1h".parse(), Ok(HumanDuration(Duration::from_secs(3600))));
        for bad in ["", "s", "2", "2 s", " 2s", "1.5s", "-1s", "2d", "5 fortnights", "99999999999999999999h"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn from_toml_int_or_string() {
        #[derive(Deserialize)]
        struct T {
            a: ByteSize,
            b: HumanDuration,
        }
        let t: T = toml::from_str("a = 10\nb = \"250ms\"").expect("parses");
        assert_eq!((t.a, t.b.0), (ByteSize(10), Duration::from_millis(250)));
        let t: T = toml::from_str("a = \"2KiB\"\nb = 3").expect("parses");
        assert_eq!((t.a, t.b.0), (ByteSize(2048), Duration::from_secs(3)));
        let e = toml::from_str::<T>("a = \"ten\"\nb = 1").err().expect("error").to_string();
        assert!(e.contains("invalid size \"ten\""), "{e}");
        let e = toml::from_str::<T>("a = -1\nb = 1").err().expect("error").to_string();
        assert!(e.contains("must not be negative"), "{e}");
    }
}
