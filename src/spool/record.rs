//! One spooled event as bytes: `len u32 LE | crc32 u32 LE | payload`, payload =
//! `pos u64 LE | time_ms u64 LE | id_len u16 LE | id | body`. Encode and decode are symmetric.

// crc32fast: the well-kept SIMD (PCLMULQDQ) CRC-32 (IEEE), the same checksum the hand-written table
// loop computed, so segments written before keep verifying. It was ~14 % of the daemon's CPU.
use crc32fast::hash as crc32;

/// Bytes before the payload: length and CRC.
pub const HEADER_LEN: usize = 8;
/// Fixed part of the payload: pos, time_ms, id length.
pub const PAYLOAD_FIXED: usize = 8 + 8 + 2;
/// Ids are short (boot id + time + serial); the bound keeps a corrupt id length harmless.
pub const MAX_ID_LEN: usize = 255;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pos: u64,
    pub time_ms: u64,
    pub id: String,
    pub body: Vec<u8>,
}

/// A decoded record borrowed from the bytes it was decoded from (no copy: readers hand it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub pos: u64,
    pub time_ms: u64,
    pub id: &'a str,
    pub body: &'a [u8],
}

impl RecordRef<'_> {
    pub fn to_owned(self) -> Record {
        Record { pos: self.pos, time_ms: self.time_ms, id: self.id.to_string(), body: self.body.to_vec() }
    }
}

/// Size on disk of a record with this id and body.
pub fn encoded_len(id: &str, body: &[u8]) -> usize {
    HEADER_LEN + PAYLOAD_FIXED + id.len() + body.len()
}

/// Append the encoding of one record to `out`. The caller checks `id.len() <= MAX_ID_LEN`.
pub fn encode(out: &mut Vec<u8>, pos: u64, time_ms: u64, id: &str, body: &[u8]) {
    let start = out.len();
    let payload_len = PAYLOAD_FIXED + id.len() + body.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(body);
    let crc = crc32(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What is wrong with bytes that should hold a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the announced payload: a torn write at the tail.
    Short { have: usize, need: usize },
    /// The length field is impossible (below the fixed part or above the configured maximum).
    BadLength(u32),
    /// The payload's checksum does not match.
    BadCrc { stored: u32, computed: u32 },
    /// The id length does not fit in the payload, or the id is not UTF-8.
    BadId,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short { have, need } => write!(f, "truncated: {have} of {need} bytes"),
            DecodeError::BadLength(n) => write!(f, "impossible payload length {n}"),
            DecodeError::BadCrc { stored, computed } => {
                write!(f, "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            DecodeError::BadId => f.write_str("id length out of range or id not UTF-8"),
        }
    }
}

/// Read the header at the start of `bytes`: the total record length (header + payload).
pub fn total_len(bytes: &[u8], max_payload: u64) -> Result<usize, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Short { have: bytes.len(), need: HEADER_LEN });
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if (len as usize) < PAYLOAD_FIXED || u64::from(len) > max_payload {
        return Err(DecodeError::BadLength(len));
    }
    Ok(HEADER_LEN + len as usize)
}

/// Decode the record at the start of `bytes`; returns it and the bytes it occupied.
pub fn decode(bytes: &[u8], max_payload: u64) -> Result<(Record, usize), DecodeError> {
    decode_ref(bytes, max_payload).map(|(r, used)| (r.to_owned(), used))
}

/// [`decode`] without copying: the id and body borrow from `bytes`.
pub fn decode_ref(bytes: &[u8], max_payload: u64) -> Result<(RecordRef<'_>, usize), DecodeError> {
    let total = total_len(bytes, max_payload)?;
    if bytes.len() < total {
        return Err(DecodeError::Short { have: bytes.len(), need: total });
    }
    let stored = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let payload = &bytes[HEADER_LEN..total];
    let computed = crc32(payload);
    if stored != computed {
        return Err(DecodeError::BadCrc { stored, computed });
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&payload[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let pos = u64_at(0);
    let time_ms = u64_at(8);
    let id_len = u16::from_le_bytes([payload[16], payload[17]]) as usize;
    if id_len > MAX_ID_LEN || PAYLOAD_FIXED + id_len > payload.len() {
        return Err(DecodeError::BadId);
    }
    let id = std::str::from_utf8(&payload[PAYLOAD_FIXED..PAYLOAD_FIXED + id_len]).map_err(|_| DecodeError::BadId)?;
    let body = &payload[PAYLOAD_FIXED + id_len..];
    Ok((RecordRef { pos, time_ms, id, body }, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1_700_000_000_123, "b1-1700000000.123:42", b"{\"a\":1}");
        assert_eq!(buf.len(), encoded_len("b1-1700000000.123:42", b"{\"a\":1}"));
        let (r, used) = decode(&buf, 1 << 20).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(
            r,
            Record {
                pos: 7,
                time_ms: 1_700_000_000_123,
                id: "b1-1700000000.123:42".into(),
                body: b"{\"a\":1}".to_vec()
            }
        );
    }

    #[test]
    fn checksum_is_the_crc32_segments_were_written_with() {
        // CRC-32/ISO-HDLC check values: what the earlier hand-written table loop produced, so
        // segments spooled before the switch to crc32fast still verify after an upgrade.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, "id", b"body");
        assert_eq!(u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]), crc32(&buf[HEADER_LEN..]));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, "id", b"body");
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b, 1 << 20).is_err(), "bit {i} flip not detected");
        }
    }

    #[test]
    fn short_and_bad_length() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 2, "id", b"body");
        for cut in 0..buf.len() {
            assert!(matches!(decode(&buf[..cut], 1 << 20), Err(DecodeError::Short { .. })), "cut {cut}");
        }
        assert!(matches!(decode(&buf, 10), Err(DecodeError::BadLength(_))));
        assert!(matches!(decode(&[0u8; 16], 1 << 20), Err(DecodeError::BadLength(0))));
    }

    proptest! {
        #[test]
        fn prop_round_trip(pos: u64, time_ms: u64, id in "[a-z0-9:.-]{0,64}", body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut buf = vec![0xAA; 3];
            encode(&mut buf, pos, time_ms, &id, &body);
            let (r, used) = decode(&buf[3..], 1 << 20).unwrap();
            prop_assert_eq!(used, buf.len() - 3);
            prop_assert_eq!(r, Record { pos, time_ms, id, body });
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, 1 << 20);
        }
    }
}
