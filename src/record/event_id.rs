//! The identity of an audit event: `audit(SECONDS.MMM:SERIAL)`.
//!
//! The kernel stamps every record of one event with the same timestamp (taken at syscall entry or
//! when the record was started) and the same serial, so the pair is the grouping key of the
//! reassembler. Serials are `u32` and wrap; only the pair is unique, and even the pair can repeat
//! after a reboot, which is why ordering serials is the gap tracker's job, not `Ord` here.
//!
//! Invariant: `Display` prints exactly the text the kernel wrote (`1795373270.780:6`, milliseconds
//! zero-padded to three digits), and [`EventId::parse_stamp`] accepts exactly that text back.

use std::fmt;

/// `audit(1795373270.780:6)` → seconds 1795373270, millis 780, serial 6.
///
/// Ordered by time, then serial: the natural order of `ausearch` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub seconds: u64,
    pub millis: u16,
    pub serial: u32,
}

/// Why an `audit(...)` stamp could not be read; the offset is relative to the stamp's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("expected \"audit(\" at byte {0}")]
    MissingPrefix(usize),
    #[error("bad seconds at byte {0}")]
    Seconds(usize),
    #[error("bad milliseconds at byte {0} (need exactly three digits)")]
    Millis(usize),
    #[error("bad serial at byte {0}")]
    Serial(usize),
    #[error("missing ')' after the serial at byte {0}")]
    Unclosed(usize),
}

impl EventId {
    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> u64 {
        self.seconds.saturating_mul(1000).saturating_add(u64::from(self.millis))
    }

    /// Parse `audit(SEC.MMM:SERIAL)` at the start of `bytes`; returns the id and the offset just
    /// after the closing parenthesis.
    pub fn parse_stamp(bytes: &[u8]) -> Result<(EventId, usize), StampError> {
        const PREFIX: &[u8] = b"audit(";
        if !bytes.starts_with(PREFIX) {
            return Err(StampError::MissingPrefix(0));
        }
        let mut pos = PREFIX.len();
        let (seconds, used) = parse_decimal(&bytes[pos..], 20).ok_or(StampError::Seconds(pos))?;
        pos += used;
        if bytes.get(pos) != Some(&b'.') {
            return Err(StampError::Seconds(pos));
        }
        pos += 1;
        let (millis, used) = parse_decimal(&bytes[pos..], 3).ok_or(StampError::Millis(pos))?;
        if used != 3 {
            return Err(StampError::Millis(pos));
        }
        pos += used;
        if bytes.get(pos) != Some(&b':') {
            return Err(StampError::Millis(pos));
        }
        pos += 1;
        let (serial, used) = parse_decimal(&bytes[pos..], 10).ok_or(StampError::Serial(pos))?;
        let serial = u32::try_from(serial).map_err(|_| StampError::Serial(pos))?;
        pos += used;
        if bytes.get(pos) != Some(&b')') {
            return Err(StampError::Unclosed(pos));
        }
        // millis has exactly three digits, so it is < 1000 and fits u16.
        let millis = u16::try_from(millis).map_err(|_| StampError::Millis(pos))?;
        Ok((EventId { seconds, millis, serial }, pos + 1))
    }
}

/// Leading ASCII digits (at least one, at most `max_digits`) as a number, and how many were used.
///
/// Eight digits at a time while eight are there (a stamp's seconds and serial are nine or ten
/// digits), then one pass over the rest, each byte tested and accumulated together: this runs
/// three times per record.
#[inline]
fn parse_decimal(bytes: &[u8], max_digits: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut used = 0;
    while used + 8 <= max_digits {
        let Some(chunk) = bytes.get(used..used + 8) else { break };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let Some(eight) = eight_digits(u64::from_le_bytes(word)) else { break };
        value = value.checked_mul(100_000_000)?.checked_add(eight)?;
        used += 8;
    }
    for &b in &bytes[used..] {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        if used == max_digits {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        used += 1;
    }
    (used > 0).then_some((value, used))
}

/// The number written by eight ASCII digits loaded little-endian (first digit in the low byte),
/// or `None` if any byte is not a digit.
#[inline]
fn eight_digits(word: u64) -> Option<u64> {
    const LANES: u64 = 0x0101_0101_0101_0101;
    // Every high nibble 3, and no low nibble above 9 (adding 6 would carry it into the high one;
    // with every high nibble 3 the addition cannot carry across bytes).
    let high = word & (0xF0 * LANES);
    let carried = (word.wrapping_add(0x06 * LANES) & (0xF0 * LANES)) >> 4;
    if high | carried != 0x33 * LANES {
        return None;
    }
    let d = word - 0x30 * LANES;
    // Pairs, then quads, then all eight: each step's lanes hold at most 99, 9999, 99999999, so
    // no product spills into the next lane before the mask.
    let d = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d * 100 + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((d * 10_000 + (d >> 32)) & 0xFFFF_FFFF)
}

impl EventId {
    /// Append `seconds.millis:serial`, as `Display` writes it, without the formatting machinery
    /// (this runs once per event).
    pub fn push_to(&self, out: &mut String) {
        let mut n = itoa::Buffer::new();
        out.push_str(n.format(self.seconds));
        out.push('.');
        let millis = n.format(self.millis);
        out.extend(std::iter::repeat_n('0', 3usize.saturating_sub(millis.len())));
        out.push_str(millis);
        out.push(':');
        out.push_str(n.format(self.serial));
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}:{}", self.seconds, self.millis, self.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let (id, end) = EventId::parse_stamp(b"audit(1795373270.780:6): x=1").unwrap();
        assert_eq!(id, EventId { seconds: 1795373270, millis: 780, serial: 6 });
        assert_eq!(end, "audit(1795373270.780:6)".len());
        assert_eq!(id.to_string(), "1795373270.780:6");
        let mut pushed = String::from("x:");
        EventId { millis: 7, ..id }.push_to(&mut pushed);
        assert_eq!(pushed, "x:1795373270.007:6");
        assert_eq!(id.unix_millis(), 1_795_373_270_780);
    }

    #[test]
    fn keeps_leading_zero_millis() {
        let (id, _) = EventId::parse_stamp(b"audit(1.005:4294967295)").unwrap();
        assert_eq!(id.millis, 5);
        assert_eq!(id.serial, u32::MAX);
        assert_eq!(id.to_string(), "1.005:4294967295");
    }

    #[test]
    fn rejects_malformed_stamps() {
        assert_eq!(EventId::parse_stamp(b"audi(1.000:1)"), Err(StampError::MissingPrefix(0)));
        assert_eq!(EventId::parse_stamp(b"audit(x.000:1)"), Err(StampError::Seconds(6)));
        assert_eq!(EventId::parse_stamp(b"audit(1.00:1)"), Err(StampError::Millis(8)));
        assert_eq!(EventId::parse_stamp(b"audit(1.0000:1)"), Err(StampError::Millis(8)));
        assert_eq!(EventId::parse_stamp(b"audit(1.000:4294967296)"), Err(StampError::Serial(12)));
        assert_eq!(EventId::parse_stamp(b"audit(1.000:5"), Err(StampError::Unclosed(13)));
        assert_eq!(EventId::parse_stamp(b"audit(1.000:)"), Err(StampError::Serial(12)));
        // u64 seconds: 20 digits fit up to u64::MAX, 21 digits or overflow do not.
        let max = format!("audit({}.000:1)", u64::MAX);
        assert_eq!(EventId::parse_stamp(max.as_bytes()).map(|(id, _)| id.seconds), Ok(u64::MAX));
        assert_eq!(EventId::parse_stamp(b"audit(18446744073709551616.000:1)"), Err(StampError::Seconds(6)));
        assert_eq!(EventId::parse_stamp(b"audit(000000000000000000001.000:1)"), Err(StampError::Seconds(6)));
        assert_eq!(EventId::parse_stamp(b"audit(1.000:00000000001)"), Err(StampError::Serial(12)));
        assert_eq!(EventId::parse_stamp(b"audit(1.000:0000000001)").map(|(id, _)| id.serial), Ok(1));
    }

    #[test]
    fn decimals_match_the_standard_parser() {
        for text in ["0", "7", "12345678", "123456789", "99999999999", "18446744073709551615", "18446744073709551616"] {
            let expected = text.parse::<u64>().ok().map(|v| (v, text.len()));
            assert_eq!(parse_decimal(text.as_bytes(), 20), expected, "{text}");
            assert_eq!(parse_decimal(format!("{text}:1").as_bytes(), 20), expected, "{text}:1");
        }
        assert_eq!(parse_decimal(b"1234567/", 10), Some((1234567, 7)));
        assert_eq!(parse_decimal(b"12345678:", 10), Some((12345678, 8)));
        assert_eq!(parse_decimal(b"1234567890", 9), None);
        assert_eq!(parse_decimal(b"12345678\xff", 9), Some((12345678, 8)));
        assert_eq!(parse_decimal(b"", 9), None);
        for bad in [b'/', b':', 0x3a | 0x80, b' ', 0xb0, 0x39 + 0x10] {
            let mut text = *b"11111111";
            for at in 0..8 {
                text[at] = bad;
                let digits = at;
                let expected = (digits > 0).then(|| (text[..at].iter().fold(0, |v, _| v * 10 + 1), digits));
                assert_eq!(parse_decimal(&text, 20), expected, "{text:?}");
                text[at] = b'1';
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decimals_match_a_digit_loop(text in proptest::collection::vec(proptest::sample::select(b"0123456789/:a".to_vec()), 0..24), max in 1usize..21) {
            let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
            let expected = if digits == 0 || digits > max {
                None
            } else {
                text[..digits].iter().try_fold(0u64, |v, &b| v.checked_mul(10)?.checked_add(u64::from(b - b'0'))).map(|v| (v, digits))
            };
            proptest::prop_assert_eq!(parse_decimal(&text, max), expected);
        }
    }

    #[test]
    fn orders_by_time_then_serial() {
        let a = EventId { seconds: 1, millis: 999, serial: 9 };
        let b = EventId { seconds: 2, millis: 0, serial: 1 };
        let c = EventId { seconds: 2, millis: 0, serial: 2 };
        assert!(a < b && b < c);
    }
}
