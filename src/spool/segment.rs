//! Segment files: naming, listing, scanning for recovery, and bounded positioned reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, DecodeError, Record, RecordRef, HEADER_LEN};
use super::SpoolError;

const PREFIX: &str = "seg-";
const SUFFIX: &str = ".log";
/// Read-ahead per reader; a larger record is read whole.
pub const CHUNK: usize = 64 << 10;

pub fn path(dir: &Path, first_pos: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{first_pos:020}{SUFFIX}"))
}

/// `seg-00000000000000000042.log` → 42.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// All segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SpoolError::io(dir, "read_dir"))? {
        let entry = entry.map_err(SpoolError::io(dir, "read_dir"))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
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
        self.file.read_exact_at(&mut self.buf, offset).map_err(SpoolError::io(&self.path, "read"))
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
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    pub file_len: u64,
    /// The first bad record: offset and what is wrong with it.
    pub problem: Option<(u64, String)>,
}

/// Read a whole segment, checking every record (length, CRC, contiguous positions from `first_pos`).
pub fn scan(path: &Path, first_pos: u64, max_payload: u64) -> Result<Scan, SpoolError> {
    let file_len = std::fs::metadata(path).map_err(SpoolError::io(path, "stat"))?.len();
    let mut f = SegmentFile::open(path)?;
    let mut s = Scan { records: 0, last_pos: None, valid_len: 0, file_len, problem: None };
    while s.valid_len < file_len {
        match f.record_at(s.valid_len, file_len, max_payload)? {
            Ok((rec, used)) => {
                let want = first_pos + s.records;
                if rec.pos != want {
                    s.problem = Some((s.valid_len, format!("position {} where {want} was expected", rec.pos)));
                    break;
                }
                s.records += 1;
                s.last_pos = Some(rec.pos);
                s.valid_len += used as u64;
            }
            Err(e) => {
                s.problem = Some((s.valid_len, e.to_string()));
                break;
            }
        }
    }
    Ok(s)
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
        assert_eq!(p, Path::new("/s/seg-00000000000000000042.log"));
        assert_eq!(parse_name("seg-00000000000000000042.log"), Some(42));
        assert_eq!(parse_name("seg-42.log"), None);
        assert_eq!(parse_name("seg-0000000000000000004x.log"), None);
        assert_eq!(parse_name("cursor-relp-0"), None);
    }
}
