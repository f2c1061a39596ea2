//! One output's view of the spool: streams records in position order, starting after the output's
//! acknowledged position: from the writer's recent frames in memory when it keeps up, else from
//! disk. Memory: one bounded read buffer and the current frame (both at most
//! [`super::frame::max_raw`]; the frame shared with the sink until its events are acknowledged),
//! whatever the backlog.

use std::time::{Duration, Instant};

use std::sync::Arc;

use super::frame::{self, Decoder};
use super::record::{Record, RecordRef};
use super::segment::{SegmentFile, Version};
use super::shared::Shared;
use super::store::{RecentFrame, Spool};
use super::SpoolError;

struct Current {
    first_pos: u64,
    version: Version,
    file: SegmentFile,
    /// File offset of the next record (v1) or frame (v2) to load.
    offset: u64,
    /// Position the next record in this segment must carry.
    expect: u64,
    /// A corrupt record was found: nothing more is read from this segment.
    poisoned: bool,
    /// v2: records of the decoded frame not yet handed out, and where the next one starts.
    left: u32,
    raw_at: usize,
}

impl Current {
    fn new(first_pos: u64, path: &std::path::Path, file: SegmentFile) -> Current {
        let version = super::segment::version(path);
        Current { first_pos, version, file, offset: 0, expect: first_pos, poisoned: false, left: 0, raw_at: 0 }
    }

    /// A v2 segment between frames.
    fn frame_done(&self) -> bool {
        self.version == Version::V2 && self.left == 0
    }

    /// More to read below `limit` (the segment's committed length), or in the decoded frame.
    fn more(&self, limit: u64) -> bool {
        !self.poisoned && (self.left > 0 || self.offset < limit)
    }
}

pub struct SpoolReader {
    spool: Spool,
    output: usize,
    next_pos: u64,
    cur: Option<Current>,
    decoder: Decoder,
    /// The raw records of the frame being handed out: decompressed once, or the writer's own
    /// (see [`super::shared`]); shared with whoever keeps its events.
    frame: Arc<Shared>,
}

enum Step {
    /// Read below `limit`; `recent` is the next frame when the writer still has it in memory.
    Read {
        limit: u64,
        recent: Option<RecentFrame>,
    },
    Open {
        first_pos: u64,
        path: std::path::PathBuf,
    },
    Again,
    Timeout,
}

impl Spool {
    /// A reader for output `idx` that starts after its acknowledged position.
    pub fn reader(&self, idx: usize) -> SpoolReader {
        let next_pos = self.acked(idx) + 1;
        SpoolReader {
            spool: self.clone(),
            output: idx,
            next_pos,
            cur: None,
            decoder: Decoder::default(),
            frame: Shared::own(Vec::new()),
        }
    }
}

impl SpoolReader {
    /// Position of the next record this reader will return (at least).
    pub fn next_pos(&self) -> u64 {
        self.next_pos
    }

    /// The next record, waiting up to `wait` for one to be appended. `Ok(None)` on timeout.
    /// A corrupt record is returned as an error once; the reader then continues after it.
    pub fn next(&mut self, wait: Duration) -> Result<Option<Record>, SpoolError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.step(deadline) {
                Step::Timeout => return Ok(None),
                Step::Again => continue,
                Step::Open { first_pos, path } => match SegmentFile::open(&path) {
                    Ok(file) => self.cur = Some(Current::new(first_pos, &path, file)),
                    // Deleted under us by drop_oldest: step() will find the next one.
                    Err(SpoolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                },
                Step::Read { limit, recent } => {
                    if let Some((rec, _)) = self.read_ref(limit, recent)? {
                        return Ok(Some(rec.to_owned()));
                    }
                }
            }
        }
    }

    /// Everything committed after this reader's position, up to `max` records, handed to `each`
    /// in order, each with the shared frame it lies in (v2; `None` for a v1 record, borrowed from
    /// a read buffer); waits up to `wait` only while there is nothing at all. Returns how many were
    /// handed on (0 on timeout). One lock per segment visited, not per record, and one wake-up of
    /// the caller per batch however many records it holds.
    ///
    /// A corrupt record ends the batch: returned as an error when it is the first thing found,
    /// otherwise reported by the next call's continuation (it is logged and counted either way).
    pub fn next_batch(
        &mut self,
        wait: Duration,
        max: usize,
        each: &mut dyn FnMut(RecordRef<'_>, Option<&Arc<Shared>>),
    ) -> Result<usize, SpoolError> {
        let deadline = Instant::now() + wait;
        let mut n = 0;
        while n < max {
            // After the first record, never wait: return what we have.
            let step = self.step(if n == 0 { deadline } else { Instant::now() });
            match step {
                Step::Timeout => break,
                Step::Again => continue,
                Step::Open { first_pos, path } => match SegmentFile::open(&path) {
                    Ok(file) => self.cur = Some(Current::new(first_pos, &path, file)),
                    Err(SpoolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) if n == 0 => return Err(e),
                    Err(_) => break,
                },
                Step::Read { limit, mut recent } => loop {
                    match self.read_ref(limit, recent.take()) {
                        Ok(Some((rec, frame))) => {
                            each(rec, frame);
                            n += 1;
                            if n >= max {
                                return Ok(n);
                            }
                        }
                        Ok(None) => {}
                        Err(e) if n == 0 => return Err(e),
                        Err(_) => return Ok(n),
                    }
                    // At the end of a v2 frame, back to `step`: the next frame may be one the
                    // writer still holds (a lock per frame, not per record).
                    if self.cur.as_ref().is_none_or(|c| !c.more(limit) || c.frame_done()) {
                        break;
                    }
                },
            }
        }
        Ok(n)
    }

    fn step(&mut self, deadline: Instant) -> Step {
        let inner = &self.spool.inner;
        let mut st = inner.lock();
        if let Some(cur) = &self.cur {
            match st.segments.iter().find(|s| s.first_pos == cur.first_pos) {
                None => {
                    // Dropped by on_full = drop_oldest (already counted there).
                    self.cur = None;
                    return Step::Again;
                }
                Some(meta) if cur.more(meta.bytes) => {
                    let at = if cur.offset == 0 { Version::V2.data_start() } else { cur.offset };
                    let recent = (cur.version == Version::V2 && cur.left == 0)
                        .then(|| st.recent.iter().find(|r| r.segment == cur.first_pos && r.offset == at).cloned())
                        .flatten();
                    return Step::Read { limit: meta.bytes, recent };
                }
                Some(meta) if meta.sealed => {
                    self.next_pos = self.next_pos.max(meta.last_pos + 1);
                    self.cur = None;
                    return Step::Again;
                }
                Some(_) => {}
            }
        } else {
            let next = self.next_pos;
            if let Some(meta) = st.segments.iter().find(|s| !s.sealed || s.last_pos >= next) {
                // A gap before this segment: dropped or lost positions, nothing to deliver there.
                self.next_pos = next.max(meta.first_pos);
                return Step::Open { first_pos: meta.first_pos, path: meta.path.clone() };
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Step::Timeout;
        }
        st.data_waiters += 1;
        st = inner.data.wait_timeout(st, deadline - now).map_or_else(|p| p.into_inner().0, |r| r.0);
        st.data_waiters -= 1;
        drop(st);
        Step::Again
    }

    /// Read the record at the current offset; `None` when it was one to skip (before next_pos).
    /// Borrowed from the segment's read buffer (v1) or from the frame (v2, returned too), which
    /// is `recent` when that is the next one (the writer's own, nothing to read or decompress).
    #[allow(clippy::type_complexity)]
    fn read_ref(
        &mut self,
        limit: u64,
        recent: Option<RecentFrame>,
    ) -> Result<Option<(RecordRef<'_>, Option<&Arc<Shared>>)>, SpoolError> {
        let max = self.spool.inner.cfg.max_record_bytes;
        let next_pos = self.next_pos;
        let Some(cur) = self.cur.as_mut() else { return Ok(None) };
        let problem = match cur.version {
            Version::V1 => {
                let loaded = cur.file.load(cur.offset, limit, max)?;
                let file = &cur.file;
                match loaded.and_then(|range| super::record::decode_ref(file.bytes(range), max)) {
                    Ok((rec, used)) if rec.pos == cur.expect => {
                        cur.offset += used as u64;
                        cur.expect += 1;
                        if rec.pos < next_pos {
                            return Ok(None);
                        }
                        self.next_pos = rec.pos + 1;
                        return Ok(Some((rec, None)));
                    }
                    Ok((rec, _)) => format!("position {} where {} was expected", rec.pos, cur.expect),
                    Err(e) => e.to_string(),
                }
            }
            Version::V2 => 'frame: {
                // The writer's frame in memory, when it is the one expected here (it always is,
                // short of damage, which the file path below then reports).
                match recent.filter(|r| cur.left == 0 && r.first_pos == cur.expect) {
                    Some(r) if r.first_pos + u64::from(r.count) <= next_pos => {
                        // Acknowledged already: skipped.
                        cur.offset = r.offset + r.len;
                        cur.expect = r.first_pos + u64::from(r.count);
                        return Ok(None);
                    }
                    Some(r) => {
                        cur.offset = r.offset + r.len;
                        cur.left = r.count;
                        cur.raw_at = 0;
                        self.frame = r.raw;
                    }
                    None => {}
                }
                if cur.left == 0 {
                    if cur.offset == 0 {
                        if !cur.file.magic_ok(limit)? {
                            break 'frame "no v2 segment header".to_string();
                        }
                        cur.offset = Version::V2.data_start();
                        if cur.offset >= limit {
                            return Ok(None);
                        }
                    }
                    match cur.file.load_frame(cur.offset, limit, frame::max_raw(max))? {
                        Ok((h, _)) if h.first_pos != cur.expect => {
                            break 'frame format!("frame position {} where {} was expected", h.first_pos, cur.expect)
                        }
                        Ok((h, _)) if h.last_pos() < next_pos => {
                            // Acknowledged already (a reader resuming at its cursor): skipped
                            // without decompressing it.
                            cur.offset += h.total_len() as u64;
                            cur.expect = h.last_pos() + 1;
                            return Ok(None);
                        }
                        Ok((h, range)) => {
                            let pool = &self.spool.inner.pool;
                            let mut raw = pool.take(h.raw_len as usize);
                            match self.decoder.decode_into(&h, cur.file.bytes(range), &mut raw) {
                                Ok(()) => {
                                    cur.offset += h.total_len() as u64;
                                    cur.left = h.count;
                                    cur.raw_at = 0;
                                    self.frame = pool.share(raw);
                                }
                                Err(e) => break 'frame e.to_string(),
                            }
                        }
                        Err(e) => break 'frame e.to_string(),
                    }
                }
                match frame::inner_at(&self.frame, cur.raw_at, cur.expect) {
                    Ok((rec, next)) => {
                        cur.raw_at = next;
                        cur.left -= 1;
                        cur.expect += 1;
                        if rec.pos < next_pos {
                            return Ok(None);
                        }
                        self.next_pos = rec.pos + 1;
                        return Ok(Some((rec, Some(&self.frame))));
                    }
                    // Decoder::decode checked every record of the frame; kept for safety.
                    Err(e) => e.to_string(),
                }
            }
        };
        cur.poisoned = true;
        cur.left = 0;
        let err = SpoolError::Corrupt { path: cur.file.path().to_path_buf(), offset: cur.offset, reason: problem };
        let (first_pos, expect, offset) = (cur.first_pos, cur.expect, cur.offset);
        let mut st = self.spool.inner.lock();
        let (skipped, bytes) = st.segments.iter().find(|s| s.first_pos == first_pos).map_or((0, 0), |m| {
            ((m.last_pos + 1).saturating_sub(expect.max(next_pos)), m.bytes.saturating_sub(offset))
        });
        let first = st.note_corrupt(first_pos, skipped, bytes);
        drop(st);
        let name = self.spool.output_names().get(self.output).cloned().unwrap_or_default();
        if first {
            log::error!("spool: output {name}: {err}; skipping {skipped} events to the next segment (counted, announced in band as corrupt)");
        } else {
            log::warn!("spool: output {name}: {err}; skipping to the next segment (already counted)");
        }
        Err(err)
    }
}
