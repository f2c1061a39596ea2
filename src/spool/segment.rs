//! Segment files: naming, listing, scanning for recovery, and bounded positioned reads.
//!
//! Two on-disk versions, told apart by the file name (so that no byte pattern can be mistaken for
//! the other): `seg-<first pos>.log` is v1 (records one after the other, see [`super::record`],
//! written before compression existed, read and never written now) and `seg-<first pos>.v2` is v2
//! (an 8-byte magic [`MAGIC`], then frames, see [`super::frame`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, FrameError};
use super::record::{self, DecodeError, Record, RecordRef, HEADER_LEN};
use super::SpoolError;

const PREFIX: &str = "seg-";
const SUFFIX_V1: &str = ".log";
const SUFFIX_V2: &str = ".v2";
/// First bytes of a v2 segment.
pub const MAGIC: [u8; 8] = *b"ARSPOOL2";
/// Read-ahead per reader; a larger record is read whole.
pub const CHUNK: usize = 64 << 10;

/// The on-disk format of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Uncompressed records (spools written before format v2): read only.
    V1,
    /// Compressed frames.
    V2,
}

impl Version {
    /// Where the first record or frame starts.
    pub fn data_start(self) -> u64 {
        match self {
            Version::V1 => 0,
            Version::V2 => MAGIC.len() as u64,
        }
    }
}

/// The path of a new (v2) segment.
pub fn path(dir: &Path, first_pos: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{first_pos:020}{SUFFIX_V2}"))
}

/// The path a v1 segment had (for upgrade tests and tools).
pub fn path_v1(dir: &Path, first_pos: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{first_pos:020}{SUFFIX_V1}"))
}

/// `seg-00000000000000000042.log` → (42, V1); `seg-00000000000000000042.v2` → (42, V2).
pub fn parse_name(name: &str) -> Option<(u64, Version)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (digits, version) = if let Some(d) = rest.strip_suffix(SUFFIX_V1) {
        (d, Version::V1)
    } else {
        (rest.strip_suffix(SUFFIX_V2)?, Version::V2)
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, version))
}

/// The version of a segment file, from its name.
pub fn version(path: &Path) -> Version {
    match path.file_name().and_then(|n| n.to_str()).and_then(parse_name) {
        Some((_, v)) => v,
        None => Version::V2,
    }
}

/// All segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SpoolError::io(dir, "read_dir"))? {
        let entry = entry.map_err(SpoolError::io(dir, "read_dir"))?;
        if let Some((first, _)) = entry.file_name().to_str().and_then(parse_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A segment file read through a bounded buffer, never past a caller-given limit (the writer's
/// committed length), so bytes being written concurrently are never seen.
pub struct SegmentFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    buf_off: u64,
}

impl SegmentFile {
    pub fn open(path: &Path) -> Result<SegmentFile, SpoolError> {
        let file = File::open(path).map_err(SpoolError::io(path, "open"))?;
        Ok(SegmentFile { file, path: path.to_path_buf(), buf: Vec::new(), buf_off: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ensure(&mut self, offset: u64, need: usize, limit: u64) -> Result<(), SpoolError> {
        let have_end = self.buf_off + self.buf.len() as u64;
        if self.buf_off <= offset && offset + need as u64 <= have_end {
            return Ok(());
        }
        let len = (need.max(CHUNK) as u64).min(limit.saturating_sub(offset)) as usize;
        if self.buf.capacity() > 2 * CHUNK && len <= CHUNK {
            self.buf = Vec::new();
        }
        self.buf.resize(len, 0);
        self.buf_off = offset;
        let read = self.file.read_exact_at(&mut self.buf, offset);
        if read.is_err() {
            // Nothing of this range is known: never serve it from the buffer.
            self.buf.clear();
        }
        read.map_err(SpoolError::io(&self.path, "read"))
    }

    /// The record at `offset`, which must end at or before `limit`. `Ok(Err(_))` is a record that
    /// does not decode (the caller decides whether that is a torn tail or corruption).
    pub fn record_at(
        &mut self,
        offset: u64,
        limit: u64,
        max_payload: u64,
    ) -> Result<Result<(Record, usize), DecodeError>, SpoolError> {
        Ok(self.record_ref_at(offset, limit, max_payload)?.map(|(r, used)| (r.to_owned(), used)))
    }

    /// [`SegmentFile::record_at`] borrowing the record from the read buffer.
    pub fn record_ref_at(
        &mut self,
        offset: u64,
        limit: u64,
        max_payload: u64,
    ) -> Result<Result<(RecordRef<'_>, usize), DecodeError>, SpoolError> {
        Ok(match self.load(offset, limit, max_payload)? {
            Ok(range) => record::decode_ref(self.bytes(range), max_payload),
            Err(e) => Err(e),
        })
    }

    /// Bring the whole record at `offset` into the read buffer, checking only its length; returns
    /// where it sits in the buffer, for [`SegmentFile::bytes`].
    pub fn load(
        &mut self,
        offset: u64,
        limit: u64,
        max_payload: u64,
    ) -> Result<Result<std::ops::Range<usize>, DecodeError>, SpoolError> {
        let avail = limit.saturating_sub(offset);
        if avail < HEADER_LEN as u64 {
            return Ok(Err(DecodeError::Short { have: avail as usize, need: HEADER_LEN }));
        }
        self.ensure(offset, HEADER_LEN, limit)?;
        let start = (offset - self.buf_off) as usize;
        let total = match record::total_len(&self.buf[start..], max_payload) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if (total as u64) > avail {
            return Ok(Err(DecodeError::Short { have: avail as usize, need: total }));
        }
        self.ensure(offset, total, limit)?;
        let start = (offset - self.buf_off) as usize;
        Ok(Ok(start..start + total))
    }

    /// Bring the whole v2 frame at `offset` into the read buffer, checking its header's bounds
    /// only (the CRC is the decoder's job); returns the header and where the frame sits.
    pub fn load_frame(
        &mut self,
        offset: u64,
        limit: u64,
        max_raw: u64,
    ) -> Result<Result<(frame::Header, std::ops::Range<usize>), FrameError>, SpoolError> {
        let avail = limit.saturating_sub(offset);
        if avail < frame::HEADER_LEN as u64 {
            return Ok(Err(FrameError::Short { have: avail as usize, need: frame::HEADER_LEN }));
        }
        self.ensure(offset, frame::HEADER_LEN, limit)?;
        let start = (offset - self.buf_off) as usize;
        let h = match frame::Header::parse(&self.buf[start..], max_raw) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let total = h.total_len();
        if (total as u64) > avail {
            return Ok(Err(FrameError::Short { have: avail as usize, need: total }));
        }
        self.ensure(offset, total, limit)?;
        let start = (offset - self.buf_off) as usize;
        Ok(Ok((h, start..start + total)))
    }

    /// The frame header at `offset` if all of its 32 bytes are there and within bounds.
    pub fn peek_header(&mut self, offset: u64, limit: u64, max_raw: u64) -> Result<Option<frame::Header>, SpoolError> {
        if limit.saturating_sub(offset) < frame::HEADER_LEN as u64 {
            return Ok(None);
        }
        self.ensure(offset, frame::HEADER_LEN, limit)?;
        let start = (offset - self.buf_off) as usize;
        Ok(frame::Header::parse(&self.buf[start..], max_raw).ok())
    }

    /// Whether a v2 segment starts with [`MAGIC`] (false when it is shorter than that).
    pub fn magic_ok(&mut self, limit: u64) -> Result<bool, SpoolError> {
        if limit < MAGIC.len() as u64 {
            return Ok(false);
        }
        self.ensure(0, MAGIC.len(), limit)?;
        Ok(self.buf[(0 - self.buf_off) as usize..][..MAGIC.len()] == MAGIC)
    }

    /// Bytes of the read buffer that [`SegmentFile::load`] returned.
    pub fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// What recovery found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: u64,
    /// Position of the last good record, if any.
    pub last_pos: Option<u64>,
    /// Time (ms) of the first good record, if any.
    pub first_ms: Option<u64>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    pub file_len: u64,
    /// The first bad record or frame: offset and what is wrong with it.
    pub problem: Option<(u64, String)>,
    /// Events in what is cut after the problem, as far as can be told: the record counts of the bad
    /// frame and of the frames after it whose headers are intact and follow on, else 1 (at least
    /// one event was being written). v1: 1 (at least).
    pub cut_events: u64,
}

/// Read a whole segment, checking every record or frame (length, CRC, decompression, contiguous
/// positions from `first_pos`).
pub fn scan(path: &Path, first_pos: u64, max_record_bytes: u64) -> Result<Scan, SpoolError> {
    let file_len = std::fs::metadata(path).map_err(SpoolError::io(path, "stat"))?.len();
    let mut f = SegmentFile::open(path)?;
    let mut s =
        Scan { records: 0, last_pos: None, first_ms: None, valid_len: 0, file_len, problem: None, cut_events: 0 };
    match version(path) {
        Version::V1 => {
            while s.valid_len < file_len {
                match f.record_at(s.valid_len, file_len, max_record_bytes)? {
                    Ok((rec, used)) => {
                        let want = first_pos + s.records;
                        if rec.pos != want {
                            s.problem = Some((s.valid_len, format!("position {} where {want} was expected", rec.pos)));
                            break;
                        }
                        s.records += 1;
                        s.last_pos = Some(rec.pos);
                        s.first_ms.get_or_insert(rec.time_ms);
                        s.valid_len += used as u64;
                    }
                    Err(e) => {
                        s.problem = Some((s.valid_len, e.to_string()));
                        break;
                    }
                }
            }
            if s.problem.is_some() {
                s.cut_events = 1;
            }
        }
        Version::V2 => {
            if !f.magic_ok(file_len)? {
                s.problem = Some((0, "no v2 segment header".into()));
                s.cut_events = u64::from(file_len > 0);
                return Ok(s);
            }
            s.valid_len = Version::V2.data_start();
            let max_raw = frame::max_raw(max_record_bytes);
            let mut dec = frame::Decoder::default();
            while s.valid_len < file_len {
                let want = first_pos + s.records;
                let problem = match f.load_frame(s.valid_len, file_len, max_raw)? {
                    Ok((h, _)) if h.first_pos != want => {
                        s.cut_events = u64::from(h.count);
                        format!("frame position {} where {want} was expected", h.first_pos)
                    }
                    Ok((h, range)) => match dec.decode(&h, f.bytes(range)) {
                        Ok(()) => {
                            if s.first_ms.is_none() {
                                s.first_ms = frame::inner_at(&dec.raw, 0, h.first_pos).ok().map(|(r, _)| r.time_ms);
                            }
                            s.records += u64::from(h.count);
                            s.last_pos = Some(h.last_pos());
                            s.valid_len += h.total_len() as u64;
                            continue;
                        }
                        Err(e) => {
                            s.cut_events = u64::from(h.count);
                            e.to_string()
                        }
                    },
                    Err(e) => {
                        s.cut_events = match f.peek_header(s.valid_len, file_len, max_raw)? {
                            Some(h) if h.first_pos == want => u64::from(h.count),
                            _ => 1,
                        };
                        e.to_string()
                    }
                };
                // Frames after the bad one are cut with it: count those whose headers still say
                // they follow on (a flipped byte inside one frame leaves the later ones whole).
                if let Some(h) = f.peek_header(s.valid_len, file_len, max_raw)?.filter(|h| h.first_pos == want) {
                    let (mut off, mut next) = (s.valid_len + h.total_len() as u64, h.last_pos() + 1);
                    while let Some(h) = f.peek_header(off, file_len, max_raw)?.filter(|h| h.first_pos == next) {
                        s.cut_events += u64::from(h.count);
                        off += h.total_len() as u64;
                        next = h.last_pos() + 1;
                    }
                }
                s.problem = Some((s.valid_len, problem));
                break;
            }
        }
    }
    Ok(s)
}

/// Event time of the first record of a segment (one read; `None` when it does not decode). Used at
/// open for the oldest-unacknowledged age of segments recovery does not scan.
pub fn first_time_ms(path: &Path, max_record_bytes: u64) -> Option<u64> {
    let len = std::fs::metadata(path).ok()?.len();
    let mut f = SegmentFile::open(path).ok()?;
    match version(path) {
        Version::V1 => f.record_ref_at(0, len, max_record_bytes).ok()?.ok().map(|(r, _)| r.time_ms),
        Version::V2 => {
            let (h, range) = f.load_frame(MAGIC.len() as u64, len, frame::max_raw(max_record_bytes)).ok()?.ok()?;
            let mut dec = frame::Decoder::default();
            dec.decode(&h, f.bytes(range)).ok()?;
            frame::inner_at(&dec.raw, 0, h.first_pos).ok().map(|(r, _)| r.time_ms)
        }
    }
}

/// Every record of a segment file (v1 or v2) that decodes, in order, stopping at the first one
/// that does not (with a writer appending meanwhile, that is its unfinished tail). For tools and
/// tests that look inside a spool without opening it; no position check.
pub fn read_records(path: &Path, max_record_bytes: u64) -> Result<Vec<Record>, SpoolError> {
    let len = std::fs::metadata(path).map_err(SpoolError::io(path, "stat"))?.len();
    let mut f = SegmentFile::open(path)?;
    let mut out = Vec::new();
    match version(path) {
        Version::V1 => {
            let mut at = 0;
            while let Ok((rec, used)) = f.record_at(at, len, max_record_bytes)? {
                out.push(rec);
                at += used as u64;
            }
        }
        Version::V2 => {
            if !f.magic_ok(len)? {
                return Ok(out);
            }
            let mut at = Version::V2.data_start();
            let mut dec = frame::Decoder::default();
            while let Ok((h, range)) = f.load_frame(at, len, frame::max_raw(max_record_bytes))? {
                if dec.decode(&h, f.bytes(range)).is_err() {
                    break;
                }
                let mut raw_at = 0;
                for i in 0..h.count {
                    let Ok((r, next)) = frame::inner_at(&dec.raw, raw_at, h.first_pos + u64::from(i)) else { break };
                    out.push(r.to_owned());
                    raw_at = next;
                }
                at += h.total_len() as u64;
            }
        }
    }
    Ok(out)
}

/// fsync a directory so that created, renamed or deleted entries in it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(SpoolError::io(dir, "fsync dir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = path(Path::new("/s"), 42);
        assert_eq!(p, Path::new("/s/seg-00000000000000000042.v2"));
        assert_eq!(parse_name("seg-00000000000000000042.log"), Some((42, Version::V1)));
        assert_eq!(parse_name("seg-00000000000000000042.v2"), Some((42, Version::V2)));
        assert_eq!(version(&path_v1(Path::new("/s"), 7)), Version::V1);
        assert_eq!(parse_name("seg-42.log"), None);
        assert_eq!(parse_name("seg-0000000000000000004x.log"), None);
        assert_eq!(parse_name("cursor-relp-0"), None);
    }
}
