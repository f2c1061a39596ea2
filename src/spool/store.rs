//! The spool itself: appending, rolling, the `on_full` policies, acks, cursors, deletion, recovery.
//! The design is in the parent module's docs.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use super::config::{OnFull, SpoolConfig};
use super::frame::{self, Encoder};
use super::record::{self, MAX_ID_LEN};
use super::segment::{self, sync_dir};
use super::shared::{Pool, Shared};
use super::{cursor, SpoolError};

/// zstd level of `compression = "zstd"`: level 1 measured best in CPU per byte saved (levels 2 and
/// 3 save at most 4 % more bytes for up to 20 % more CPU; docs/performance.md, "Spool compression").
const ZSTD_LEVEL: i32 = 1;
/// Event-time samples for the oldest unacknowledged age: at most one per this many ms...
const AGE_SAMPLE_MS: u64 = 1000;
/// ...and at most this many (a day of them; older detail is thinned, not grown without bound).
const AGE_SAMPLES_MAX: usize = 86_400;
/// Window of the growth rate behind `full_in`.
const GROWTH_WINDOW: Duration = Duration::from_secs(60);

/// Result of [`Spool::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored {
        pos: u64,
    },
    /// Refused under `on_full = "drop_newest"`; counted and announced later.
    Dropped,
}

/// Counters and levels; a snapshot from [`Spool::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events stored (loss notices not included).
    pub appended: u64,
    /// Unacknowledged events deleted with their segment under `drop_oldest`.
    pub dropped_oldest: u64,
    /// Events refused under `drop_newest`.
    pub dropped_newest: u64,
    /// Events refused because they exceed `max_record_bytes`.
    pub dropped_oversize: u64,
    /// Events lost because writing them to the segment failed (disk full, I/O error).
    pub write_lost: u64,
    /// Loss notices appended.
    pub loss_notices: u64,
    /// Bytes cut from a torn tail at recovery.
    pub recovered_truncated_bytes: u64,
    /// Events readers skipped because a record was corrupt (summed over outputs).
    pub corrupt_skipped: u64,
    /// Events lost with a torn tail cut at recovery (the count a torn frame announced, else 1).
    pub recovered_lost: u64,
    /// Bytes on disk (all segment files).
    pub bytes: u64,
    /// The bound of `bytes` (`max_bytes`).
    pub max_bytes: u64,
    pub segments: usize,
    /// Events held in the segments (acknowledged or not).
    pub events: u64,
    /// Events not yet acknowledged by the slowest output.
    pub unacked_events: u64,
    /// Age of the oldest unacknowledged event, by event time (to within a second, never less);
    /// `None` when everything is acknowledged.
    pub oldest_unacked_age: Option<Duration>,
    /// Net growth over the last minute (bytes written minus bytes freed by acknowledgements).
    pub growth_bytes_per_s: u64,
    /// At that rate, how long until `max_bytes` is reached; `None` while the spool does not grow.
    pub full_in: Option<Duration>,
    /// Raw (uncompressed) bytes of the events written since start, and what they took on disk
    /// (frame headers included): their ratio is the compression achieved.
    pub raw_bytes_written: u64,
    pub disk_bytes_written: u64,
    /// Position of the last stored record (0 = none yet).
    pub last_pos: u64,
    /// Per output (config order): name and acknowledged position.
    pub acked: Vec<(String, u64)>,
}

pub(crate) struct SegMeta {
    pub first_pos: u64,
    /// `first_pos - 1` while empty. For recovered older segments: the next one's `first_pos - 1`.
    pub last_pos: u64,
    /// Committed length: readers never read past it.
    pub bytes: u64,
    pub path: PathBuf,
    pub sealed: bool,
}

/// Why events were lost inside the spool; each reason gets its own in-band notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossReason {
    /// `on_full` dropped them (oldest or newest, per the policy).
    Full,
    /// Writing them to the segment failed.
    WriteError,
    /// A reader found a corrupt record or frame and skipped the rest of its segment.
    Corrupt,
    /// Recovery cut a torn tail (a crash or power cut during a write).
    TornTail,
}

impl LossReason {
    fn as_str(self) -> &'static str {
        match self {
            LossReason::Full => "full",
            LossReason::WriteError => "write_error",
            LossReason::Corrupt => "corrupt",
            LossReason::TornTail => "torn_tail",
        }
    }
}

struct PendingLoss {
    reason: LossReason,
    count: u64,
    /// Bytes cut or skipped (torn_tail, corrupt); 0 otherwise.
    bytes: u64,
    first_ms: u64,
    last_ms: u64,
}

/// Staged records are written as one frame in one `pwrite` per [`Spool::commit`]; this bounds the
/// staged bytes in between (a larger batch becomes several frames).
const STAGE_MAX: usize = frame::STAGE_MAX;

/// Frames kept in memory after they are written ([`State::recent`]). A reader that keeps up is
/// at most a commit behind the writer (one commit per hand-off, under a storm about every 10 ms: up to three frames of
/// `STAGE_MAX` flat out); one further behind reads the segment file like any other. Four of
/// 256 KiB hold what two of 512 KiB did (with two, a 60 k/s commit's first frame left memory
/// before its readers came for it).
const RECENT_FRAMES: usize = 4;

/// A frame just written, as [`State::recent`] keeps it.
#[derive(Clone)]
pub(crate) struct RecentFrame {
    /// The segment (its first position) and the frame's offset and length in it.
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
    pub first_pos: u64,
    pub count: u32,
    /// The frame's inner records, as [`frame::inner_at`] reads them.
    pub raw: Arc<Shared>,
}

pub(crate) struct State {
    pub segments: VecDeque<SegMeta>,
    /// The open file of the last segment when it is not sealed.
    active: Option<Arc<File>>,
    pub next_pos: u64,
    total_bytes: u64,
    pub acked: Vec<u64>,
    persisted: Vec<u64>,
    synced_pos: u64,
    last_sync: Instant,
    last_persist: Instant,
    /// Losses not yet announced, at most one per reason.
    pending_loss: Vec<PendingLoss>,
    pub stats: SpoolStats,
    /// Records encoded by `append` and not yet written (positions already assigned), as the raw
    /// inner records of the next frame: written by `commit`, before a roll, or when `STAGE_MAX`
    /// is reached. Readers never see them until then. `total_bytes` counts them raw plus one
    /// frame header until written (an upper bound: the frame is never larger).
    staged: Vec<u8>,
    staged_count: u64,
    /// A frame was written since readers were last told ([`Spool::commit`] tells them only then:
    /// an idle daemon commits every loop iteration, and each telling wakes every output).
    unannounced: bool,
    encoder: Encoder,
    /// The frame being written (reused).
    frame_buf: Vec<u8>,
    /// The last frames written, raw, for readers that are caught up: they take a frame from here
    /// instead of reading and decompressing it, and hand its events on without copying them
    /// (see [`super::shared`]). Oldest first, at most `RECENT_FRAMES`.
    pub recent: VecDeque<RecentFrame>,
    /// (position, event time ms) samples, oldest first, for the oldest unacknowledged age.
    age_samples: VecDeque<(u64, u64)>,
    /// (when, bytes written - bytes freed by acks) samples over `GROWTH_WINDOW`.
    growth: VecDeque<(Instant, u64)>,
    bytes_freed: u64,
    /// Warned that the spool fills within `warn_full_in`; re-armed once it no longer does.
    warned_full_in: bool,
    /// Segments (first position) whose corruption is already counted and announced: every output
    /// reading them finds the same damage.
    corrupt_seen: Vec<u64>,
    /// Threads waiting on `space` (a `block`ed append, a drain wait). Acks signal `space` only
    /// when there is one: a condvar signal is a futex syscall even with nobody waiting, and acks
    /// come once per sink burst.
    space_waiters: usize,
    /// Readers waiting on `data`.
    pub data_waiters: usize,
}

pub(crate) struct Inner {
    pub cfg: SpoolConfig,
    pub outputs: Vec<String>,
    pub state: Mutex<State>,
    /// Signalled when records are committed or a segment is sealed: wakes readers. Kept apart from
    /// `space` so that acks (one per sink batch) do not wake every reader for nothing. Signalled
    /// only when a reader waits on it (`State::data_waiters`), see `space_waiters`.
    pub data: Condvar,
    /// Per output, notified with `data`: a sink that reads the spool on its own async thread
    /// (`output::Deliveries::pull`) waits on this instead of a condvar. Notifying it without a
    /// waiter only leaves a permit (no syscall).
    more: Vec<Arc<tokio::sync::Notify>>,
    /// Signalled on acks, deletions and interrupts: wakes `block`ed appends and drain waits.
    pub space: Condvar,
    /// Serialises cursor writes between the sync thread and a blocked append.
    persist_lock: Mutex<()>,
    /// Raw frame buffers: the writer's staged frames and the readers' decompressed ones.
    pub pool: Pool,
    /// Set by [`Spool::interrupt`]: a `block`ed append gives up (the daemon is shutting down).
    interrupted: std::sync::atomic::AtomicBool,
    _lock: Flock<File>,
}

/// A handle on one spool directory; cheap to clone (shared by the writer, readers, sync thread).
#[derive(Clone)]
pub struct Spool {
    pub(crate) inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
pub(crate) fn now_ms_for_tests() -> u64 {
    now_ms()
}

/// Spool and shipper messages: through the `log` facade (the daemon installs the one logger).
pub(crate) fn log(msg: std::fmt::Arguments<'_>) {
    log::warn!("spool: {msg}");
}

impl Inner {
    /// Records were committed or a segment sealed: tell the readers.
    fn more_data(&self, st: &State) {
        if st.data_waiters > 0 {
            self.data.notify_all();
        }
        self.more.iter().for_each(|n| n.notify_one());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind, still consistent enough to
        // keep shipping; refusing to continue would lose more than it protects.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Spool {
    /// Open (creating if needed) and recover the spool in `cfg.dir` for these outputs.
    pub fn open(cfg: &SpoolConfig, outputs: &[String]) -> Result<Spool, SpoolError> {
        cfg.validate()?;
        let dir = cfg.dir.clone();
        crate::file_trust::refuse_symlink(&dir, "spool directory").map_err(|e| SpoolError::Io {
            path: dir.clone(),
            op: "open",
            source: std::io::Error::other(e.why),
        })?;
        // Audit events are sensitive: the spool is for root's eyes only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(SpoolError::io(&dir, "create dir"))?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(crate::file_trust::NO_FOLLOW)
            .open(&lock_path)
            .map_err(SpoolError::io(&lock_path, "open"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| SpoolError::Locked { path: dir.clone() })?;

        let mut stats = SpoolStats::default();
        let mut found = segment::list(&dir)?;
        // Empty files carry nothing and would collide with the name of the next segment.
        found.retain(|(_, p)| match std::fs::metadata(p) {
            Ok(m) if m.len() == 0 => std::fs::remove_file(p).is_err(),
            _ => true,
        });
        let mut segments = VecDeque::new();
        let mut last_rec_pos = 0u64;
        let mut pending_loss = Vec::new();
        let mut age_samples = VecDeque::new();
        for (i, (first, path)) in found.iter().enumerate() {
            let bytes = std::fs::metadata(path).map_err(SpoolError::io(path, "stat"))?.len();
            if let Some((next_first, _)) = found.get(i + 1) {
                let last_pos = next_first.saturating_sub(1).max(first.saturating_sub(1));
                if let Some(ms) = segment::first_time_ms(path, cfg.max_record_bytes) {
                    age_samples.push_back((*first, ms));
                }
                segments.push_back(SegMeta { first_pos: *first, last_pos, bytes, path: path.clone(), sealed: true });
                last_rec_pos = last_rec_pos.max(last_pos);
                continue;
            }
            let scan = segment::scan(path, *first, cfg.max_record_bytes)?;
            if let Some((offset, reason)) = &scan.problem {
                let cut = scan.file_len - scan.valid_len;
                log::error!(
                    "spool recovery: {}: bad record at offset {offset} ({reason}); truncating {cut} bytes ({} events) after {} good records (announced in band as torn_tail)",
                    path.display(),
                    scan.cut_events,
                    scan.records
                );
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(crate::file_trust::NO_FOLLOW)
                    .open(path)
                    .map_err(SpoolError::io(path, "open"))?;
                f.set_len(scan.valid_len).map_err(SpoolError::io(path, "truncate"))?;
                f.sync_all().map_err(SpoolError::io(path, "fsync"))?;
                stats.recovered_truncated_bytes += cut;
                stats.recovered_lost += scan.cut_events;
                note_loss(&mut pending_loss, LossReason::TornTail, scan.cut_events, cut);
            }
            if let (Some(ms), Some(_)) = (scan.first_ms, scan.last_pos) {
                age_samples.push_back((*first, ms));
            }
            match scan.last_pos {
                Some(last) => {
                    segments.push_back(SegMeta {
                        first_pos: *first,
                        last_pos: last,
                        bytes: scan.valid_len,
                        path: path.clone(),
                        sealed: true,
                    });
                    last_rec_pos = last_rec_pos.max(last);
                }
                None => {
                    std::fs::remove_file(path).map_err(SpoolError::io(path, "remove empty segment"))?;
                }
            }
        }

        let mut acked = Vec::with_capacity(outputs.len());
        for name in outputs {
            if !cursor::valid_name(name) {
                return Err(SpoolError::Config(format!("output name {name:?} is not usable as a file name")));
            }
            let pos = cursor::load(&dir, name)?;
            if pos.is_none() {
                // Create it now, while there may still be space: later writes are in place.
                cursor::store(&dir, name, 0)?;
            }
            acked.push(pos.unwrap_or(0));
        }
        // Never hand out a position some receiver already acknowledged (its data may have been
        // lost with an unsynced tail), or that output would skip the new event.
        let max_cursor = cursor::load_all(&dir)?.into_iter().map(|(_, p)| p).max().unwrap_or(0);
        let next_pos = last_rec_pos.max(max_cursor) + 1;
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let now = Instant::now();
        let state = State {
            segments,
            active: None,
            next_pos,
            total_bytes,
            persisted: acked.clone(),
            acked,
            synced_pos: next_pos - 1,
            last_sync: now,
            last_persist: now,
            pending_loss,
            stats,
            staged: Vec::new(),
            staged_count: 0,
            unannounced: false,
            encoder: Encoder::new(cfg.compression, ZSTD_LEVEL),
            frame_buf: Vec::new(),
            recent: VecDeque::with_capacity(RECENT_FRAMES + 1),
            age_samples,
            growth: VecDeque::new(),
            bytes_freed: 0,
            warned_full_in: false,
            corrupt_seen: Vec::new(),
            space_waiters: 0,
            data_waiters: 0,
        };
        let spool = Spool {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                outputs: outputs.to_vec(),
                more: outputs.iter().map(|_| Arc::new(tokio::sync::Notify::new())).collect(),
                state: Mutex::new(state),
                data: Condvar::new(),
                space: Condvar::new(),
                persist_lock: Mutex::new(()),
                pool: Pool::default(),
                interrupted: std::sync::atomic::AtomicBool::new(false),
                _lock: lock,
            }),
        };
        {
            let mut st = spool.inner.lock();
            spool.open_segment(&mut st)?;
            // A torn tail cut above is announced now, not only before the next event.
            if !st.pending_loss.is_empty() {
                spool.stage_notices(&mut st)?;
                spool.write_staged(&mut st)?;
            }
        }
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    pub fn output_names(&self) -> &[String] {
        &self.inner.outputs
    }

    /// Append one event and write it at once: [`Spool::stage`] + [`Spool::commit`].
    pub fn append(&self, time_ms: u64, id: &str, body: &[u8]) -> Result<Appended, SpoolError> {
        let appended = self.stage(time_ms, id, body)?;
        self.commit()?;
        Ok(appended)
    }

    /// Stage one event: it gets its position and is encoded; [`Spool::commit`] writes everything
    /// staged in one `pwrite` and wakes the readers once. Never waits for a sink, except under
    /// `on_full = "block"`.
    ///
    /// A write error reported here may concern events staged by earlier calls: the error says how
    /// many were lost, and they are announced in band like every other loss.
    pub fn stage(&self, time_ms: u64, id: &str, body: &[u8]) -> Result<Appended, SpoolError> {
        if id.len() > MAX_ID_LEN {
            return Err(SpoolError::IdTooLong { id: id.chars().take(64).collect() });
        }
        // The same bound as the v1 record format had: fixed part + id + body.
        if (record::encoded_len(id, body) - record::HEADER_LEN) as u64 > self.inner.cfg.max_record_bytes {
            let mut st = self.inner.lock();
            st.stats.dropped_oversize += 1;
            return Err(SpoolError::TooLarge {
                id: id.to_string(),
                size: body.len(),
                max: self.inner.cfg.max_record_bytes,
            });
        }
        let cfg = &self.inner.cfg;
        let mut st = self.inner.lock();
        loop {
            // Room for the record plus, should it start a frame or (after a roll) a segment, their
            // headers: staging may roll, so the bound is checked against the most it can cost.
            let len = (frame::inner_len(id, body) + frame::HEADER_LEN + segment::MAGIC.len()) as u64;
            let notice_len: u64 = notices(&st, cfg.on_full)
                .iter()
                .map(|(id, b)| (frame::inner_len(id, b) + frame::HEADER_LEN) as u64)
                .sum();
            if st.total_bytes + len + notice_len <= cfg.max_bytes {
                self.stage_notices(&mut st)?;
                let pos = self.stage_record(&mut st, time_ms, id, body)?;
                st.stats.appended += 1;
                return Ok(Appended::Stored { pos });
            }
            match cfg.on_full {
                OnFull::DropNewest => {
                    if !st.pending_loss.iter().any(|l| l.reason == LossReason::Full) {
                        log::error!(
                            "spool: full ({} of {} bytes): dropping new events (on_full = drop_newest)",
                            st.total_bytes,
                            cfg.max_bytes
                        );
                    }
                    note_loss(&mut st.pending_loss, LossReason::Full, 1, 0);
                    st.stats.dropped_newest += 1;
                    return Ok(Appended::Dropped);
                }
                OnFull::DropOldest => {
                    if !self.delete_acked(&mut st)? && !self.drop_oldest_segment(&mut st)? {
                        // Nothing left to drop: only possible if max_bytes cannot hold one record,
                        // which validation rules out; refuse rather than exceed the bound.
                        note_loss(&mut st.pending_loss, LossReason::Full, 1, 0);
                        st.stats.dropped_newest += 1;
                        return Ok(Appended::Dropped);
                    }
                }
                OnFull::Block => {
                    if self.inner.interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(SpoolError::Interrupted);
                    }
                    if !self.delete_acked(&mut st)? {
                        // Write what is staged and seal the active segment, so that sinks can
                        // read and acknowledge it and acks can free it too.
                        self.write_staged(&mut st)?;
                        if st.segments.back().is_some_and(|s| !s.sealed && s.last_pos >= s.first_pos) {
                            self.roll(&mut st)?;
                        }
                        drop(st);
                        self.persist_cursors(true)?;
                        st = self.inner.lock();
                        if !self.delete_acked(&mut st)? {
                            st = self.wait_space(st, Duration::from_millis(100));
                        }
                    }
                }
            }
        }
    }

    /// Write everything staged by [`Spool::append`] to the active segment (one `pwrite`), make it
    /// visible to readers and wake them once. Until this returns, a kill -9 loses staged events
    /// (the window the module doc describes as "one loop iteration").
    pub fn commit(&self) -> Result<(), SpoolError> {
        let mut st = self.inner.lock();
        self.write_staged(&mut st)
    }

    /// Stage the loss notices that are due (the caller checked there is room for them).
    fn stage_notices(&self, st: &mut State) -> Result<(), SpoolError> {
        for (nid, nbody) in notices(st, self.inner.cfg.on_full) {
            self.stage_record(st, now_ms(), &nid, &nbody)?;
            st.stats.loss_notices += 1;
        }
        for l in std::mem::take(&mut st.pending_loss) {
            log::warn!("spool: appended a loss notice for {} events lost ({})", l.count, l.reason.as_str());
        }
        Ok(())
    }

    /// Give the event its position and encode it into the staging buffer.
    fn stage_record(&self, st: &mut State, time_ms: u64, id: &str, body: &[u8]) -> Result<u64, SpoolError> {
        let inner = frame::inner_len(id, body);
        let need_roll = match (st.active.is_some(), st.segments.back()) {
            (true, Some(s)) => {
                let holds = s.last_pos >= s.first_pos || st.staged_count > 0;
                holds && s.bytes + stage_cost(st, inner) + st.staged.len() as u64 > self.inner.cfg.segment_bytes
            }
            _ => true,
        };
        if need_roll {
            if let Err(e) = self.roll(st) {
                return Err(count_unstaged(st, e));
            }
        }
        let pos = st.next_pos;
        st.total_bytes += stage_cost(st, inner);
        frame::push_inner(&mut st.staged, time_ms, id, body);
        st.staged_count += 1;
        st.next_pos += 1;
        st.stats.last_pos = pos;
        st.stats.raw_bytes_written += inner as u64;
        let sample_due = st.age_samples.back().is_none_or(|&(_, ms)| time_ms >= ms + AGE_SAMPLE_MS);
        if sample_due && st.age_samples.len() < AGE_SAMPLES_MAX {
            st.age_samples.push_back((pos, time_ms));
        }
        if st.staged.len() >= STAGE_MAX {
            // Readers are told at the commit that follows (once per loop iteration, however many
            // frames the iteration's events make), not per frame.
            self.write_frame(st)?;
        }
        Ok(pos)
    }

    /// Write what is staged as a frame and tell the readers.
    fn write_staged(&self, st: &mut State) -> Result<(), SpoolError> {
        let written = self.write_frame(st);
        if std::mem::take(&mut st.unannounced) {
            self.inner.more_data(st);
        }
        written
    }

    /// Write what is staged as a frame (readers find it when next told, see `write_staged`).
    fn write_frame(&self, st: &mut State) -> Result<(), SpoolError> {
        if st.staged.is_empty() {
            return Ok(());
        }
        let offset = match (&st.active, st.segments.back()) {
            (Some(_), Some(m)) => m.bytes,
            _ => return Err(SpoolError::Config("records staged without an active segment".into())),
        };
        let file = st.active.clone().ok_or_else(|| SpoolError::Config("no active segment".into()))?;
        let first_pos = st.next_pos - st.staged_count;
        let staged_cost = (frame::HEADER_LEN + st.staged.len()) as u64;
        let mut buf = std::mem::take(&mut st.frame_buf);
        buf.clear();
        st.encoder.encode(&mut buf, first_pos, st.staged_count as u32, &st.staged);
        let written = file.write_all_at(&buf, offset);
        let frame_len = buf.len() as u64;
        if buf.capacity() > 2 * STAGE_MAX {
            buf = Vec::new();
        }
        st.frame_buf = buf;
        let next_pos = st.next_pos;
        let Some(meta) = st.segments.back_mut() else {
            return Err(SpoolError::Config("records staged without an active segment".into()));
        };
        if let Err(source) = written {
            // Cut the partial write and never write to this file again: the next append starts a
            // new segment, so garbage can only ever sit at the tail of a sealed segment. The staged
            // events are lost: counted, logged by the caller, announced in band.
            let _ = file.set_len(offset);
            let path = meta.path.clone();
            let events = st.staged_count;
            st.total_bytes -= staged_cost;
            st.staged.clear();
            st.staged_count = 0;
            st.stats.write_lost += events;
            note_loss(&mut st.pending_loss, LossReason::WriteError, events, 0);
            self.seal_active(st, false);
            return Err(SpoolError::Write { path, events, source });
        }
        meta.bytes += frame_len;
        st.unannounced = true;
        // Staged records hold the positions just before `next_pos`, in order.
        meta.last_pos = next_pos - 1;
        let last = meta.last_pos;
        let segment = meta.first_pos;
        st.total_bytes = st.total_bytes - staged_cost + frame_len;
        st.stats.disk_bytes_written += frame_len;
        let count = st.staged_count as u32;
        st.staged_count = 0;
        let mut next_staged = self.inner.pool.take(st.staged.len().min(STAGE_MAX));
        next_staged.clear();
        let raw = std::mem::replace(&mut st.staged, next_staged);
        if raw.capacity() <= 2 * STAGE_MAX {
            if st.recent.len() >= RECENT_FRAMES {
                st.recent.pop_front();
            }
            let raw = self.inner.pool.share(raw);
            st.recent.push_back(RecentFrame { segment, offset, len: frame_len, first_pos, count, raw });
        }
        let every = self.inner.cfg.fsync_every;
        if every > 0 && last - st.synced_pos >= every {
            let path = st.segments.back().map(|s| s.path.clone()).unwrap_or_default();
            file.sync_data().map_err(SpoolError::io(path, "fdatasync"))?;
            st.synced_pos = last;
            st.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Seal the active segment (fdatasync'd) and open the next one.
    fn roll(&self, st: &mut State) -> Result<(), SpoolError> {
        self.write_staged(st)?;
        if let (Some(file), Some(meta)) = (st.active.as_ref(), st.segments.back()) {
            if st.synced_pos < meta.last_pos {
                file.sync_data().map_err(SpoolError::io(&meta.path, "fdatasync"))?;
                st.synced_pos = meta.last_pos;
            }
        }
        self.seal_active(st, true);
        self.open_segment(st)
    }

    /// Mark the last segment sealed; an empty one is removed so its name can be reused.
    fn seal_active(&self, st: &mut State, synced: bool) {
        st.active = None;
        if let Some(meta) = st.segments.back_mut() {
            meta.sealed = true;
            if !synced {
                // Records of a segment that failed are as durable as the page cache makes them.
                st.synced_pos = st.synced_pos.max(meta.last_pos);
            }
            if meta.last_pos < meta.first_pos {
                let _ = std::fs::remove_file(&meta.path);
                st.total_bytes -= meta.bytes;
                st.segments.pop_back();
            }
        }
        self.inner.more_data(st);
    }

    fn open_segment(&self, st: &mut State) -> Result<(), SpoolError> {
        let path = segment::path(&self.inner.cfg.dir, st.next_pos);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(crate::file_trust::NO_FOLLOW)
            .open(&path)
            .map_err(SpoolError::io(&path, "create segment"))?;
        if let Err(e) = file.write_all_at(&segment::MAGIC, 0) {
            let _ = std::fs::remove_file(&path);
            return Err(SpoolError::Io { path, op: "write segment header", source: e });
        }
        sync_dir(&self.inner.cfg.dir)?;
        let bytes = segment::MAGIC.len() as u64;
        st.total_bytes += bytes;
        st.segments.push_back(SegMeta {
            first_pos: st.next_pos,
            last_pos: st.next_pos - 1,
            bytes,
            path,
            sealed: false,
        });
        st.active = Some(Arc::new(file));
        Ok(())
    }

    /// Delete the oldest segment whatever its acks say. Returns false when there is nothing to drop.
    fn drop_oldest_segment(&self, st: &mut State) -> Result<bool, SpoolError> {
        let Some(front) = st.segments.front() else { return Ok(false) };
        if !front.sealed {
            if front.last_pos < front.first_pos && st.staged_count == 0 {
                return Ok(false);
            }
            self.roll(st)?;
        }
        let Some(front) = st.segments.front() else { return Ok(false) };
        let unacked =
            st.acked.iter().map(|&a| front.last_pos.saturating_sub(a.max(front.first_pos - 1))).max().unwrap_or(0);
        std::fs::remove_file(&front.path).map_err(SpoolError::io(&front.path, "remove segment"))?;
        log::error!(
            "spool: full: dropped segment {} (positions {}..={}) with {unacked} unacknowledged events (on_full = drop_oldest)",
            front.path.display(),
            front.first_pos,
            front.last_pos
        );
        st.total_bytes -= front.bytes;
        st.segments.pop_front();
        st.stats.dropped_oldest += unacked;
        if unacked > 0 {
            note_loss(&mut st.pending_loss, LossReason::Full, unacked, 0);
        }
        Ok(true)
    }

    /// Delete sealed segments every output's persisted cursor has passed. Returns whether any went.
    fn delete_acked(&self, st: &mut State) -> Result<bool, SpoolError> {
        let floor = st.persisted.iter().copied().min().unwrap_or(0);
        let mut any = false;
        while let Some(front) = st.segments.front() {
            if !front.sealed || front.last_pos > floor {
                break;
            }
            match std::fs::remove_file(&front.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::Io { path: front.path.clone(), op: "remove segment", source }),
            }
            st.total_bytes -= front.bytes;
            st.bytes_freed += front.bytes;
            st.segments.pop_front();
            any = true;
        }
        if any && st.space_waiters > 0 {
            self.inner.space.notify_all();
        }
        Ok(any)
    }

    /// Wait on `space` at most `timeout`, counted in `space_waiters`.
    fn wait_space<'a>(&self, mut st: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        st.space_waiters += 1;
        let mut st = self.inner.space.wait_timeout(st, timeout).map_or_else(|p| p.into_inner().0, |r| r.0);
        st.space_waiters -= 1;
        st
    }

    /// Record output `idx`'s cumulative ack. Acks never go backwards; an ack past the last written
    /// position is a sink bug and is clamped.
    pub fn ack(&self, idx: usize, pos: u64) {
        let mut st = self.inner.lock();
        let last = st.next_pos - 1;
        let waiters = st.space_waiters;
        if let Some(a) = st.acked.get_mut(idx) {
            if pos > *a {
                *a = pos.min(last);
                if waiters > 0 {
                    self.inner.space.notify_all();
                }
            }
        }
    }

    /// Write cursors that changed (all when `force`, else only after `cursor_interval`).
    fn persist_cursors(&self, force: bool) -> Result<(), SpoolError> {
        let _g = self.inner.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let todo: Vec<(usize, u64)> = {
            let st = self.inner.lock();
            if !force && st.last_persist.elapsed() < self.inner.cfg.cursor_interval {
                return Ok(());
            }
            st.acked
                .iter()
                .zip(&st.persisted)
                .enumerate()
                .filter(|(_, (a, p))| a > p)
                .map(|(i, (a, _))| (i, *a))
                .collect()
        };
        for &(i, pos) in &todo {
            cursor::store(&self.inner.cfg.dir, &self.inner.outputs[i], pos)?;
        }
        let mut st = self.inner.lock();
        for (i, pos) in todo {
            st.persisted[i] = st.persisted[i].max(pos);
        }
        st.last_persist = Instant::now();
        Ok(())
    }

    /// fdatasync the active segment if it has records older than `fsync_interval` (or `force`).
    fn sync_active(&self, force: bool) -> Result<(), SpoolError> {
        let (file, path, upto) = {
            let mut st = self.inner.lock();
            if force {
                self.write_staged(&mut st)?;
            }
            let interval = self.inner.cfg.fsync_interval;
            let due = force || (!interval.is_zero() && st.last_sync.elapsed() >= interval);
            match (&st.active, st.segments.back()) {
                (Some(f), Some(m)) if due && st.synced_pos < m.last_pos => (f.clone(), m.path.clone(), m.last_pos),
                _ => return Ok(()),
            }
        };
        // Outside the lock: appends continue while the disk flushes.
        file.sync_data().map_err(SpoolError::io(path, "fdatasync"))?;
        let mut st = self.inner.lock();
        st.synced_pos = st.synced_pos.max(upto);
        st.last_sync = Instant::now();
        Ok(())
    }

    /// Periodic work (the sync thread calls this every few hundred ms): fsync by interval, persist
    /// cursors by interval, delete fully acknowledged segments.
    pub fn maintain(&self) -> Result<(), SpoolError> {
        self.sync_active(false)?;
        self.persist_cursors(false)?;
        let mut st = self.inner.lock();
        self.delete_acked(&mut st)?;
        self.watch_growth(&mut st, Instant::now());
        Ok(())
    }

    /// Sample the net growth and warn when, at that rate, the spool is full within `warn_full_in`
    /// (once per approach; re-armed when the estimate is back above twice the threshold).
    fn watch_growth(&self, st: &mut State, now: Instant) {
        if let Some(floor) = st.acked.iter().copied().min() {
            let target = (floor + 1).max(st.segments.front().map_or(0, |m| m.first_pos));
            while st.age_samples.get(1).is_some_and(|&(pos, _)| pos <= target) {
                st.age_samples.pop_front();
            }
        }
        let net = st.stats.disk_bytes_written.saturating_sub(st.bytes_freed);
        if st.growth.back().is_none_or(|&(t, _)| now.duration_since(t) >= Duration::from_secs(1)) {
            st.growth.push_back((now, net));
        }
        while st.growth.len() > 2 && st.growth.get(1).is_some_and(|&(t, _)| now.duration_since(t) >= GROWTH_WINDOW) {
            st.growth.pop_front();
        }
        let threshold = self.inner.cfg.warn_full_in;
        if threshold.is_zero() {
            return;
        }
        let (rate, full_in) = growth_estimate(&st.growth, now, net, st.total_bytes, self.inner.cfg.max_bytes);
        match full_in {
            Some(left) if left < threshold && !st.warned_full_in => {
                st.warned_full_in = true;
                let unacked = unacked_events(st);
                log::warn!(
                    "spool {}: full in ~{} min at the current rate ({} KiB/s net; {} of {} bytes, {unacked} events unacknowledged); then on_full = {} applies",
                    self.inner.cfg.dir.display(),
                    left.as_secs().div_ceil(60),
                    rate / 1024,
                    st.total_bytes,
                    self.inner.cfg.max_bytes,
                    self.inner.cfg.on_full
                );
            }
            Some(left) if left < 2 * threshold => {}
            _ => st.warned_full_in = false,
        }
    }

    /// Make everything durable: fdatasync, persist all cursors, delete what is fully acknowledged.
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.sync_active(true)?;
        self.persist_cursors(true)?;
        let mut st = self.inner.lock();
        self.delete_acked(&mut st)?;
        Ok(())
    }

    /// Wait until every output acknowledged the last stored position, or `deadline`.
    pub fn wait_all_acked(&self, deadline: Instant) -> bool {
        let mut st = self.inner.lock();
        loop {
            let last = st.next_pos - 1;
            if st.acked.iter().all(|&a| a >= last) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.wait_space(st, deadline - now);
        }
    }

    pub fn acked(&self, idx: usize) -> u64 {
        self.inner.lock().acked.get(idx).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> SpoolStats {
        let st = self.inner.lock();
        let mut s = st.stats.clone();
        s.bytes = st.total_bytes;
        s.max_bytes = self.inner.cfg.max_bytes;
        s.segments = st.segments.len();
        s.last_pos = st.next_pos - 1;
        s.events = st.segments.iter().map(|m| (m.last_pos + 1).saturating_sub(m.first_pos)).sum();
        s.unacked_events = unacked_events(&st);
        s.oldest_unacked_age = oldest_unacked_ms(&st).map(|ms| Duration::from_millis(now_ms().saturating_sub(ms)));
        let net = st.stats.disk_bytes_written.saturating_sub(st.bytes_freed);
        (s.growth_bytes_per_s, s.full_in) =
            growth_estimate(&st.growth, Instant::now(), net, st.total_bytes, self.inner.cfg.max_bytes);
        s.acked = self.inner.outputs.iter().cloned().zip(st.acked.iter().copied()).collect();
        s
    }

    /// How often the sync thread should call [`Spool::maintain`]: often enough for both intervals.
    pub fn tick(&self) -> Duration {
        let c = &self.inner.cfg;
        let f = if c.fsync_interval.is_zero() { c.cursor_interval } else { c.fsync_interval.min(c.cursor_interval) };
        (f / 2).clamp(Duration::from_millis(10), Duration::from_millis(200))
    }

    /// Notified when output `idx` may have more to read (see `Inner::more`).
    pub fn more(&self, idx: usize) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.more.get(idx).cloned()
    }

    /// Make appends blocked by `on_full = "block"` (now and later) return
    /// [`SpoolError::Interrupted`], so a shutdown is not held up by a receiver that never returns.
    /// Callable from any thread (e.g. a signal handler task).
    pub fn interrupt(&self) {
        self.inner.interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.space.notify_all();
    }

    /// Wake everything waiting on the spool (readers re-check their stop flags).
    pub fn wake(&self) {
        self.inner.data.notify_all();
        self.inner.more.iter().for_each(|n| n.notify_one());
        self.inner.space.notify_all();
    }
}

/// What a spool directory holds, read without taking its lock (for `status` while the daemon runs:
/// a segment may be appended to or deleted meanwhile, so the numbers are a snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSummary {
    pub segments: usize,
    pub bytes: u64,
    /// First position of the oldest segment (0 when empty).
    pub oldest_pos: u64,
    /// Every cursor file: output name and acknowledged position.
    pub cursors: Vec<(String, u64)>,
}

pub fn inspect(dir: &Path) -> Result<SpoolSummary, SpoolError> {
    let segs = segment::list(dir)?;
    let mut bytes = 0;
    for (_, p) in &segs {
        match std::fs::metadata(p) {
            Ok(m) => bytes += m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::Io { path: p.clone(), op: "stat", source }),
        }
    }
    let mut cursors = cursor::load_all(dir)?;
    cursors.sort();
    Ok(SpoolSummary { segments: segs.len(), bytes, oldest_pos: segs.first().map_or(0, |(p, _)| *p), cursors })
}

fn note_loss(pending: &mut Vec<PendingLoss>, reason: LossReason, n: u64, bytes: u64) {
    let now = now_ms();
    match pending.iter_mut().find(|l| l.reason == reason) {
        Some(l) => {
            l.count += n;
            l.bytes += bytes;
            l.last_ms = now;
        }
        None => pending.push(PendingLoss { reason, count: n, bytes, first_ms: now, last_ms: now }),
    }
}

impl State {
    /// A reader found corruption in the segment starting at `first_pos`: count and announce it
    /// once, whichever output found it first. Returns whether this call was the first.
    pub(crate) fn note_corrupt(&mut self, first_pos: u64, events: u64, bytes: u64) -> bool {
        if self.corrupt_seen.contains(&first_pos) {
            return false;
        }
        // Bounded: only segments still in the spool can be read, and deleted ones are forgotten.
        let live: Vec<u64> = self.segments.iter().map(|m| m.first_pos).collect();
        self.corrupt_seen.retain(|p| live.contains(p));
        self.corrupt_seen.push(first_pos);
        self.stats.corrupt_skipped += events;
        note_loss(&mut self.pending_loss, LossReason::Corrupt, events, bytes);
        true
    }
}

/// The record being staged was lost because starting a new segment failed (disk full, I/O error):
/// count it like a failed write, so that no loss goes unannounced.
fn count_unstaged(st: &mut State, e: SpoolError) -> SpoolError {
    st.stats.write_lost += 1;
    note_loss(&mut st.pending_loss, LossReason::WriteError, 1, 0);
    match e {
        SpoolError::Write { path, events, source } => SpoolError::Write { path, events: events + 1, source },
        SpoolError::Io { path, source, .. } => SpoolError::Write { path, events: 1, source },
        other => other,
    }
}

/// What staging an inner record of `inner` bytes adds to `total_bytes`: the record, plus a frame
/// header when it starts a frame.
fn stage_cost(st: &State, inner: usize) -> u64 {
    (inner + if st.staged_count == 0 { frame::HEADER_LEN } else { 0 }) as u64
}

/// Every loss notice that is due, as (id, body).
fn notices(st: &State, policy: OnFull) -> Vec<(String, Vec<u8>)> {
    let s = &st.stats;
    let total = s.dropped_oldest + s.dropped_newest + s.write_lost + s.corrupt_skipped + s.recovered_lost;
    st.pending_loss.iter().map(|l| loss_notice(l, policy, st.next_pos, total)).collect()
}

fn unacked_events(st: &State) -> u64 {
    let last = st.next_pos - 1;
    let floor = st.acked.iter().copied().min().unwrap_or(last);
    let oldest = st.segments.front().map_or(last + 1, |m| m.first_pos);
    (last + 1).saturating_sub((floor + 1).max(oldest))
}

/// Event time of the oldest unacknowledged event (from the samples: never later than the truth).
fn oldest_unacked_ms(st: &State) -> Option<u64> {
    let last = st.next_pos - 1;
    let floor = st.acked.iter().copied().min().unwrap_or(last);
    if floor >= last {
        return None;
    }
    let target = (floor + 1).max(st.segments.front().map_or(0, |m| m.first_pos));
    let i = st.age_samples.partition_point(|&(pos, _)| pos <= target);
    st.age_samples.get(i.saturating_sub(1)).map(|&(_, ms)| ms)
}

/// Net growth rate (bytes/s) over the samples' window and how long the free space lasts at it.
fn growth_estimate(
    samples: &VecDeque<(Instant, u64)>,
    now: Instant,
    net: u64,
    bytes: u64,
    max: u64,
) -> (u64, Option<Duration>) {
    let Some(&(t0, net0)) = samples.front() else { return (0, None) };
    let dt = now.duration_since(t0).as_secs_f64();
    // Below a few seconds of history a rate says more about one burst than about the trend.
    if dt < 5.0 || net <= net0 {
        return (0, None);
    }
    let rate = (net - net0) as f64 / dt;
    let left = max.saturating_sub(bytes) as f64 / rate;
    (rate as u64, Some(Duration::from_secs_f64(left.min(1e9))))
}

/// The in-band loss notice: id and JSON body.
/// `count` is what was dropped since the previous notice (which may itself have been dropped);
/// `total` is every event dropped since the process started.
fn loss_notice(l: &PendingLoss, policy: OnFull, pos: u64, total: u64) -> (String, Vec<u8>) {
    let body = serde_json::json!({
        "loss": {
            "kind": "spool_dropped",
            "reason": l.reason.as_str(),
            "policy": policy.to_string(),
            "count": l.count,
            "total": total,
            "bytes": l.bytes,
            "first_ms": l.first_ms,
            "last_ms": l.last_ms,
        }
    });
    (format!("auditrelay-loss-{}-{}-{pos}", l.reason.as_str(), l.first_ms), body.to_string().into_bytes())
}

/// A fresh directory for one test, removed with everything in it when the test ends (also when
/// it fails: the guard drops while the panic unwinds), so test runs leave nothing in the temp dir.
#[cfg(test)]
pub(crate) struct TestDir(PathBuf);

#[cfg(test)]
impl std::ops::Deref for TestDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

#[cfg(test)]
impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> TestDir {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "auditrelay-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TestDir(d)
}

#[cfg(test)]
mod growth_tests {
    use super::*;

    #[test]
    fn full_in_from_the_net_growth_over_the_window() {
        let t0 = Instant::now();
        let mut samples = VecDeque::new();
        assert_eq!(growth_estimate(&samples, t0, 0, 0, 1000), (0, None));
        samples.push_back((t0, 1_000));
        // Too little history: no estimate from one burst.
        assert_eq!(growth_estimate(&samples, t0 + Duration::from_secs(2), 5_000, 0, 1 << 20), (0, None));
        // 10 s, 10_000 bytes net: 1000 B/s; 100_000 bytes left: 100 s.
        let (rate, left) = growth_estimate(&samples, t0 + Duration::from_secs(10), 11_000, 900_000, 1_000_000);
        assert_eq!((rate, left), (1000, Some(Duration::from_secs(100))));
        // Not growing (receiver keeps up, or shrinking): never full.
        assert_eq!(growth_estimate(&samples, t0 + Duration::from_secs(10), 1_000, 900_000, 1_000_000), (0, None));
    }

    #[test]
    fn a_growing_spool_warns_once_before_it_is_full_and_rearms() {
        let dir = test_dir("warnfull");
        let cfg = SpoolConfig {
            dir: dir.clone(),
            max_bytes: 1 << 20,
            segment_bytes: 64 << 10,
            max_record_bytes: 4096,
            warn_full_in: Duration::from_secs(600),
            ..SpoolConfig::default()
        };
        let s = Spool::open(&cfg, &["out".to_string()]).unwrap();
        let t0 = Instant::now();
        let mut st = s.inner.lock();
        s.watch_growth(&mut st, t0);
        // 10 KB/s for 10 s of (simulated) time, nothing acknowledged: ~100 s left < 10 min.
        st.stats.disk_bytes_written += 100_000;
        st.total_bytes += 100_000;
        s.watch_growth(&mut st, t0 + Duration::from_secs(10));
        assert!(st.warned_full_in, "warned");
        // The receiver is back and frees more than is written: re-armed.
        st.bytes_freed += 200_000;
        s.watch_growth(&mut st, t0 + Duration::from_secs(20));
        assert!(!st.warned_full_in, "re-armed");
    }
}
