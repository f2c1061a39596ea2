//! Format v2: a *frame* holds the events of one commit (one loop iteration of the processing
//! thread), compressed as one block, behind one header and one CRC.
//!
//! ```text
//! frame  = header (32 bytes) | data (`data_len` bytes)
//! header = u32 LE data_len | u32 LE CRC-32 of header bytes 8..32 and data
//!        | u64 LE first position | u32 LE record count (>= 1) | u32 LE raw length
//!        | u8 codec (0 none, 1 lz4, 2 zstd) | 7 bytes zero
//! raw    = the data decompressed: `count` inner records, one after the other
//! inner  = u32 LE len | u64 LE time_ms | u16 LE id length | id (UTF-8) | body
//!          (len = 10 + id length + body length; position = first position + index)
//! ```
//! Why a frame per commit: JSON audit events repeat field names, paths and hex from one event to
//! the next, so a block of events compresses 4-10x where one event alone compresses ~2x; and a
//! commit is already written with one `pwrite`, so the frame costs no extra syscall. A reader
//! decompresses a frame once and hands out its records borrowed from the decompressed buffer.
//!
//! Bounds, checked before anything is allocated: `data_len` and the raw length are at most
//! [`max_raw`] (derived from `max_record_bytes`: a commit is cut into frames of at most
//! `STAGE_MAX` plus one record), and data that would not shrink is stored with codec 0, so the
//! stored size never exceeds the raw size. The CRC covers the compressed bytes: a torn or flipped
//! frame fails it before the decompressor sees it; a decompressor error or a raw length that does
//! not match is reported as corruption too, never as records.

use super::record::{DecodeError, RecordRef, MAX_ID_LEN};
use crc32fast::hash as crc32;

pub const HEADER_LEN: usize = 32;
/// Inner record bytes besides id and body: len, time_ms, id length.
pub const INNER_FIXED: usize = 4 + 8 + 2;
/// What `commit` stages before it writes a frame anyway (a larger batch becomes several frames).
/// Frames are shared with the outputs while their events wait to be acknowledged, so this sizes
/// most of the spool's memory in a storm: 1 MiB held 35-36 MB peak RSS flat out, 512 KiB 31-32
/// (docs/performance.md, "Fourth round"), 256 KiB 25-28 ("Fifth round"); a 20 k/s gather is
/// ~260 KB.
pub const STAGE_MAX: usize = 256 << 10;

/// The largest raw (decompressed) frame a spool with this `max_record_bytes` can write: what is
/// staged before the cut plus the record that crossed it.
pub fn max_raw(max_record_bytes: u64) -> u64 {
    STAGE_MAX as u64 + max_record_bytes + INNER_FIXED as u64 + MAX_ID_LEN as u64
}

/// How frames are compressed (`[spool] compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    fn from_code(c: u8) -> Option<Compression> {
        match c {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size of the inner record for this id and body.
pub fn inner_len(id: &str, body: &[u8]) -> usize {
    INNER_FIXED + id.len() + body.len()
}

/// Append one inner record to the raw (staging) buffer. The caller checks `id.len() <= MAX_ID_LEN`.
pub fn push_inner(raw: &mut Vec<u8>, time_ms: u64, id: &str, body: &[u8]) {
    let len = (8 + 2 + id.len() + body.len()) as u32;
    raw.extend_from_slice(&len.to_le_bytes());
    raw.extend_from_slice(&time_ms.to_le_bytes());
    raw.extend_from_slice(&(id.len() as u16).to_le_bytes());
    raw.extend_from_slice(id.as_bytes());
    raw.extend_from_slice(body);
}

/// The inner record at `at` in a raw frame; returns it and the offset of the next one.
pub fn inner_at(raw: &[u8], at: usize, pos: u64) -> Result<(RecordRef<'_>, usize), DecodeError> {
    let rest = raw.get(at..).unwrap_or(&[]);
    if rest.len() < INNER_FIXED {
        return Err(DecodeError::Short { have: rest.len(), need: INNER_FIXED });
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len < 10 || len > rest.len() - 4 {
        return Err(DecodeError::BadLength(len as u32));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&rest[4..12]);
    let id_len = u16::from_le_bytes([rest[12], rest[13]]) as usize;
    if id_len > MAX_ID_LEN || 10 + id_len > len {
        return Err(DecodeError::BadId);
    }
    let id = std::str::from_utf8(&rest[INNER_FIXED..INNER_FIXED + id_len]).map_err(|_| DecodeError::BadId)?;
    let body = &rest[INNER_FIXED + id_len..4 + len];
    Ok((RecordRef { pos, time_ms: u64::from_le_bytes(t), id, body }, at + 4 + len))
}

/// A frame header, read before the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub data_len: u32,
    pub crc: u32,
    pub first_pos: u64,
    pub count: u32,
    pub raw_len: u32,
    pub codec: u8,
}

impl Header {
    /// Parse and bound-check the header at the start of `bytes`.
    pub fn parse(bytes: &[u8], max_raw: u64) -> Result<Header, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Short { have: bytes.len(), need: HEADER_LEN });
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut p = [0u8; 8];
        p.copy_from_slice(&bytes[8..16]);
        let h = Header {
            data_len: u32_at(0),
            crc: u32_at(4),
            first_pos: u64::from_le_bytes(p),
            count: u32_at(16),
            raw_len: u32_at(20),
            codec: bytes[24],
        };
        if u64::from(h.data_len) > max_raw || u64::from(h.raw_len) > max_raw {
            return Err(FrameError::Bound { data_len: h.data_len, raw_len: h.raw_len });
        }
        // The smallest inner record is INNER_FIXED bytes: a count the raw length cannot hold is a lie.
        if h.count == 0 || (h.count as usize).saturating_mul(INNER_FIXED) > h.raw_len as usize {
            return Err(FrameError::Count(h.count));
        }
        Ok(h)
    }

    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.data_len as usize
    }

    /// Position of the last record in the frame.
    pub fn last_pos(&self) -> u64 {
        self.first_pos + u64::from(self.count) - 1
    }
}

/// What is wrong with bytes that should hold a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated frame: {have} of {need} bytes")]
    Short { have: usize, need: usize },
    #[error("frame lengths out of bounds (data {data_len}, raw {raw_len})")]
    Bound { data_len: u32, raw_len: u32 },
    #[error("impossible record count {0}")]
    Count(u32),
    #[error("frame CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("unknown codec {0}")]
    Codec(u8),
    #[error("data does not decompress to the announced {want} bytes: {why}")]
    Decompress { want: u32, why: String },
    #[error("record {index} of the frame: {err}")]
    Inner { index: u32, err: String },
}

/// Compresses staged raw bytes into frames; owns the codec's reusable context.
pub struct Encoder {
    codec: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    level: i32,
    /// The codec's output, kept at its largest initialised length: compressing into `out` after
    /// zero-filling the codec's worst-case bound cost a memset of the frame's whole raw size per
    /// commit (2 % of the daemon's samples); only growth is zeroed now and the (small) compressed
    /// bytes are copied. Dropped after an outsized frame like [`Decoder::raw`].
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(codec: Compression, level: i32) -> Encoder {
        Encoder { codec, zstd: None, level, scratch: Vec::new() }
    }

    pub fn codec(&self) -> Compression {
        self.codec
    }

    /// Append one frame holding `raw` (`count` records from `first_pos`) to `out`.
    pub fn encode(&mut self, out: &mut Vec<u8>, first_pos: u64, count: u32, raw: &[u8]) {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        let data_start = out.len();
        let mut codec = self.codec;
        let bound = match codec {
            Compression::None => 0,
            Compression::Lz4 => lz4_flex::block::get_maximum_output_size(raw.len()),
            Compression::Zstd => zstd::zstd_safe::compress_bound(raw.len()),
        };
        if self.scratch.len() > 2 * STAGE_MAX && bound <= STAGE_MAX {
            self.scratch = Vec::new();
        }
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
        }
        let scratch = &mut self.scratch[..bound];
        let written = match codec {
            Compression::None => None,
            Compression::Lz4 => lz4_flex::block::compress_into(raw, scratch).ok(),
            Compression::Zstd => {
                if self.zstd.is_none() {
                    // Creating a context only fails on allocation failure; then store raw.
                    self.zstd = zstd::bulk::Compressor::new(self.level).ok();
                }
                self.zstd.as_mut().and_then(|z| z.compress_to_buffer(raw, &mut scratch[..]).ok())
            }
        };
        match written {
            Some(n) if n < raw.len() => out.extend_from_slice(&self.scratch[..n]),
            _ => {
                // Not smaller (tiny or incompressible): store as is, so stored <= raw always.
                codec = Compression::None;
                out.extend_from_slice(raw);
            }
        }
        let data_len = (out.len() - data_start) as u32;
        let h = &mut out[start..data_start];
        h[0..4].copy_from_slice(&data_len.to_le_bytes());
        h[8..16].copy_from_slice(&first_pos.to_le_bytes());
        h[16..20].copy_from_slice(&count.to_le_bytes());
        h[20..24].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        h[24] = codec.code();
        let crc = crc32(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decompresses frames into a reusable raw buffer (one per reader: bounded by [`max_raw`]).
#[derive(Default)]
pub struct Decoder {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    pub raw: Vec<u8>,
}

impl Decoder {
    /// Check the frame in `bytes` (header + data, as [`Header::total_len`] says) and decompress
    /// it into `self.raw`, checking that its records are all there.
    pub fn decode(&mut self, h: &Header, bytes: &[u8]) -> Result<(), FrameError> {
        let mut raw = std::mem::take(&mut self.raw);
        let done = self.decode_into(h, bytes, &mut raw);
        self.raw = raw;
        done
    }

    /// [`Decoder::decode`] into `raw`, whatever it held before: `raw` ends up exactly the frame's
    /// raw length. Not cleared first: `resize` zero-fills only growth (clearing made it a memset
    /// of every frame), and each codec below either writes all of it or the frame is refused.
    pub fn decode_into(&mut self, h: &Header, bytes: &[u8], raw: &mut Vec<u8>) -> Result<(), FrameError> {
        let total = h.total_len();
        if bytes.len() < total {
            return Err(FrameError::Short { have: bytes.len(), need: total });
        }
        let computed = crc32(&bytes[8..total]);
        if computed != h.crc {
            return Err(FrameError::BadCrc { stored: h.crc, computed });
        }
        let data = &bytes[HEADER_LEN..total];
        let want = h.raw_len as usize;
        if raw.capacity() > 2 * STAGE_MAX && want <= STAGE_MAX {
            *raw = Vec::new();
        }
        raw.resize(want, 0);
        let bad = |why: String| FrameError::Decompress { want: h.raw_len, why };
        match Compression::from_code(h.codec) {
            None => return Err(FrameError::Codec(h.codec)),
            Some(Compression::None) => {
                if data.len() != want {
                    return Err(bad(format!("{} stored bytes", data.len())));
                }
                raw.copy_from_slice(data);
            }
            Some(Compression::Lz4) => {
                let n = lz4_flex::block::decompress_into(data, raw).map_err(|e| bad(e.to_string()))?;
                if n != want {
                    return Err(bad(format!("got {n}")));
                }
            }
            Some(Compression::Zstd) => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?);
                }
                let z = self.zstd.as_mut().ok_or_else(|| bad("no context".into()))?;
                let n = z.decompress_to_buffer(data, &mut raw[..]).map_err(|e| bad(e.to_string()))?;
                if n != want {
                    return Err(bad(format!("got {n}")));
                }
            }
        }
        check_records(h, raw)
    }
}

/// Every record of the frame must be there and fill its raw length exactly: checked once, so
/// handing records out later cannot fail half-way through a frame.
fn check_records(h: &Header, raw: &[u8]) -> Result<(), FrameError> {
    let mut at = 0;
    for index in 0..h.count {
        at = inner_at(raw, at, h.first_pos + u64::from(index))
            .map_err(|e| FrameError::Inner { index, err: e.to_string() })?
            .1;
    }
    if at != raw.len() {
        return Err(FrameError::Inner {
            index: h.count,
            err: format!("{} bytes after the last record", raw.len() - at),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(codec: Compression, recs: &[(u64, &str, &[u8])]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (t, id, b) in recs {
            push_inner(&mut raw, *t, id, b);
        }
        let mut out = vec![0xEE; 3];
        Encoder::new(codec, 1).encode(&mut out, 40, recs.len() as u32, &raw);
        out.split_off(3)
    }

    /// (pos, time_ms, id, body) of each record.
    type Decoded = Vec<(u64, u64, String, Vec<u8>)>;

    fn decode_all(bytes: &[u8]) -> Result<Decoded, FrameError> {
        let h = Header::parse(bytes, max_raw(1 << 20))?;
        let mut d = Decoder::default();
        d.decode(&h, bytes)?;
        let mut at = 0;
        let mut out = Vec::new();
        for i in 0..h.count {
            let (r, next) = inner_at(&d.raw, at, h.first_pos + u64::from(i)).unwrap();
            out.push((r.pos, r.time_ms, r.id.to_string(), r.body.to_vec()));
            at = next;
        }
        Ok(out)
    }

    #[test]
    fn round_trip_every_codec_and_it_shrinks_repetitive_json() {
        let body = br#"{"records":[{"type":"SYSCALL","fields":{"arch":"c000003e","syscall":"257"}}]}"#;
        let recs: Vec<(u64, &str, &[u8])> = (0..50).map(|i| (1000 + i, "id-x", &body[..])).collect();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let f = frame(codec, &recs);
            let got = decode_all(&f).unwrap();
            assert_eq!(got.len(), 50);
            assert_eq!(got[7], (47, 1007, "id-x".to_string(), body.to_vec()));
            if codec != Compression::None {
                assert!(f.len() * 4 < 50 * body.len(), "{codec}: {} bytes", f.len());
                assert_eq!(f[24], codec.code());
            }
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let f = frame(Compression::Zstd, &[(1, "a", b"q")]);
        assert_eq!(f[24], 0);
        assert_eq!(decode_all(&f).unwrap(), vec![(40, 1, "a".to_string(), b"q".to_vec())]);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_detected() {
        let recs: Vec<(u64, &str, &[u8])> = (0..5).map(|i| (i, "id", &b"{\"a\":\"aaaaaaaaaaaaaaaa\"}"[..])).collect();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let f = frame(codec, &recs);
            for i in 0..f.len() * 8 {
                let mut b = f.clone();
                b[i / 8] ^= 1 << (i % 8);
                // Reserved header bytes are covered by the CRC too.
                assert!(decode_all(&b).is_err(), "{codec}: bit {i} flip not detected");
            }
            for cut in 0..f.len() {
                assert!(decode_all(&f[..cut]).is_err(), "{codec}: cut at {cut} not detected");
            }
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(codec in prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
                           recs in proptest::collection::vec((any::<u64>(), "[a-z0-9:.-]{0,40}", proptest::collection::vec(any::<u8>(), 0..300)), 1..20)) {
            let refs: Vec<(u64, &str, &[u8])> = recs.iter().map(|(t, i, b)| (*t, i.as_str(), b.as_slice())).collect();
            let got = decode_all(&frame(codec, &refs)).unwrap();
            for (k, (g, r)) in got.iter().zip(&recs).enumerate() {
                prop_assert_eq!(g, &(40 + k as u64, r.0, r.1.clone(), r.2.clone()));
            }
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&bytes);
        }
    }
}
