//! File sink: JSON lines appended to a file, size-based rotation with N generations, reopen on
//! SIGUSR1 (for logrotate's `postrotate`).
//!
//! Ack meaning: an event is acknowledged only after it was written and `fdatasync`ed, so an
//! acknowledged event survives a power cut. A failed write cuts the file back to its length before
//! the piece of whole lines being written (see [`WRITE_PIECE`]), so a retry (the shipper restarts
//! the sink and resends everything unacknowledged) never leaves half a line.
//!
//! Lines are written with `writev` straight from the events' spool frames (each body and its
//! `\n` one slice): no line buffer, no copy of an event in user space (docs/performance.md).
//!
//! Group commit: events are written as they arrive (a batch is what waited in the channel, up to
//! `batch`), but fdatasync'd — and then acknowledged — in groups: when `sync_interval` has passed
//! since the oldest unsynced write, when half the window (`batch`) is unsynced, and before a
//! rotation, a reopen or the end. At exec-storm rates an fdatasync per one- or two-event batch was
//! the file output's whole cost; unacknowledged events stay in the spool, so nothing is weakened.
//!
//! Page cache: after each fdatasync the synced bytes before the file's last `keep_cached` are
//! dropped from the page cache (`POSIX_FADV_DONTNEED`). An audit log is written once and read
//! rarely, or read at once by a tailer: left to the kernel, every line stays cached until memory
//! runs short, pushing out the host's own data (at 20 k events/s, 40 MB/s). Dropped pages go
//! back to the allocator warm and hold the next lines: on the 2-vCPU benchmark VM, where a page
//! never touched before costs the host a fault, writing into fresh page cache was two thirds of
//! this output's CPU and a fifth of the daemon's under a flat-out storm (docs/performance.md,
//! "Eleventh round"). A tailer less than `keep_cached` behind still reads from memory.
//!
//! Rotation: before a line would take the file past `max_size`, the file is synced and renamed
//! `path` → `path.1` → … → `path.<generations>`, the oldest is deleted, and a new `path` is created.
//!
//! A line cut short by a crash: kill -9 can stop a `writev` at a page boundary (the kernel checks
//! for a fatal signal between the pages it copies), leaving half a line at the end of the file,
//! and the restarted output would glue its next line onto it. Its event was not acknowledged (that
//! waits for the fdatasync after the write), so it is sent again whole; at open the half line is
//! cut off (see [`settle_tail`]), with a warning naming the bytes cut.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::delivery::{Ack, Deliveries, Delivery};
use super::OutputFormat;
use crate::units::de_size;

/// `[[output]] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub name: Option<String>,
    pub format: OutputFormat,
    /// The file; its directory must exist (a missing one is an error, retried with backoff, not
    /// created: a typo should not grow a tree).
    pub path: PathBuf,
    /// Rotate before the file would exceed this; 0 = never rotate (leave it to logrotate).
    #[serde(deserialize_with = "de_size")]
    pub max_size: u64,
    /// Rotated files kept: `path.1` (newest) … `path.N`.
    pub generations: u32,
    /// Most events written and not yet synced (acknowledged); half of it triggers a sync.
    pub batch: usize,
    /// Longest an event waits between being written and being fdatasync'd and acknowledged
    /// (group commit); also forced when half the window is unsynced. 0 = sync every batch.
    #[serde(deserialize_with = "crate::units::de_duration")]
    pub sync_interval: std::time::Duration,
    /// Permission bits for files this sink creates.
    pub mode: u32,
    /// Synced bytes kept in the page cache at the file's end; older ones are dropped (see the
    /// module docs).
    pub keep_cached: KeepCached,
}

/// `keep_cached`: how much of a file's synced end stays in the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepCached {
    /// The last this many bytes; what lies before them is dropped after each sync.
    Tail(u64),
    /// Everything: the page cache is left to the kernel (`"all"`).
    All,
}

impl<'de> Deserialize<'de> for KeepCached {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "all" => Ok(KeepCached::All),
            Raw::Text(t) => t.parse::<crate::units::ByteSize>().map(|b| KeepCached::Tail(b.0)).map_err(|e| {
                serde::de::Error::custom(format!("keep_cached: {e} (or \"all\" to leave the page cache alone)"))
            }),
            Raw::Bytes(n) => Ok(KeepCached::Tail(n)),
        }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            name: None,
            format: OutputFormat::Native,
            path: PathBuf::new(),
            max_size: 100 << 20,
            generations: 5,
            batch: 4096,
            sync_interval: std::time::Duration::from_millis(100),
            mode: 0o600,
            keep_cached: KeepCached::Tail(16 << 20),
        }
    }
}

impl FileConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("file output needs `path`".into());
        }
        if self.max_size > 0 && self.generations == 0 {
            return Err("file output: `generations` must be at least 1 when `max_size` is set".into());
        }
        if self.batch == 0 {
            return Err("file output: `batch` must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file output {path}: {op}: {source}")]
    Io { path: PathBuf, op: &'static str, source: std::io::Error },
    #[error("file output: {0}")]
    Config(String),
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io { path, op, source }
}

/// Process-wide reopen generation: bumped by SIGUSR1 (each file sink listens itself) or by
/// [`request_reopen`] (for a daemon that handles signals in one place, and for tests).
static REOPEN: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Ask every running file sink to close and reopen its file (after logrotate moved it).
pub fn request_reopen() {
    REOPEN.send_modify(|g| *g += 1);
}

/// The open file and its length.
struct Target {
    cfg: FileConfig,
    file: File,
    len: u64,
    /// fdatasyncs done, for tests of the ack rule.
    syncs: u64,
    /// The file is dropped from the page cache below this offset (see [`Target::drop_cached`]).
    dropped: u64,
    /// The kernel refused to drop pages of this file once: logged, not tried again until another
    /// file is opened. (Linux refuses only a pipe, which an fdatasync would refuse first.)
    drop_refused: bool,
}

impl Target {
    fn open(cfg: FileConfig) -> Result<Target, FileError> {
        let file = open_append(&cfg.path, cfg.mode)?;
        let len = settled_len(&file, &cfg.path)?;
        Ok(Target { cfg, file, len, syncs: 0, dropped: 0, drop_refused: false })
    }

    fn reopen(&mut self) -> Result<(), FileError> {
        self.sync()?;
        let file = open_append(&self.cfg.path, self.cfg.mode)?;
        let len = settled_len(&file, &self.cfg.path)?;
        self.switch_to(file, len);
        Ok(())
    }

    /// Write to `file` (`len` bytes long) from now on. A file that already had lines (someone
    /// else's, or ours before a restart): its cached start goes with the first sync like anything
    /// else before the kept tail.
    fn switch_to(&mut self, file: File, len: u64) {
        self.file = file;
        self.len = len;
        self.dropped = 0;
        self.drop_refused = false;
    }

    /// Drop the synced bytes before the kept tail from the page cache: call only right after an
    /// fdatasync of everything written (`len`), so every page dropped is clean and on disk.
    /// Whole pages only: the page that holds the end of the file is the next write's, and dropping
    /// it would make that write read it back from disk first.
    ///
    /// The kernel drops only folios that lie wholly inside the range, and the page cache keeps a
    /// file in folios of up to 2 MiB: each range starts that far before the last one ended, so
    /// the folio that straddled the last end goes this time.
    fn drop_cached(&mut self) {
        let KeepCached::Tail(keep) = self.cfg.keep_cached else { return };
        let end = self.len.saturating_sub(keep) & !(page_size() - 1);
        if self.drop_refused || end <= self.dropped {
            return;
        }
        let start = self.dropped.saturating_sub(MAX_FOLIO);
        let (Ok(offset), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else { return };
        match nix::fcntl::posix_fadvise(&self.file, offset, len, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED) {
            Ok(()) => self.dropped = end,
            Err(e) => {
                self.drop_refused = true;
                log::warn!(
                    "file output {}: cannot drop written lines from the page cache ({e}); they stay cached \
                     until the kernel needs the memory",
                    self.cfg.path.display()
                );
            }
        }
    }

    fn rotate(&mut self) -> Result<(), FileError> {
        let path = self.cfg.path.clone();
        self.sync()?;
        let generation = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let n = self.cfg.generations;
        match std::fs::remove_file(generation(n)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&generation(n), "remove")(e)),
            _ => {}
        }
        for i in (1..n).rev() {
            match std::fs::rename(generation(i), generation(i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&generation(i), "rename")(e)),
                _ => {}
            }
        }
        std::fs::rename(&path, generation(1)).map_err(io(&path, "rename"))?;
        let file = open_append(&path, self.cfg.mode)?;
        self.switch_to(file, 0);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir, "fsync dir"))?;
        }
        Ok(())
    }

    /// Write a batch and fdatasync it: on success every line is durable.
    #[cfg(test)]
    fn write_batch(&mut self, batch: &[Delivery]) -> Result<(), FileError> {
        self.write_only(batch)?;
        self.sync()
    }

    fn sync(&mut self) -> Result<(), FileError> {
        self.file.sync_data().map_err(io(&self.cfg.path, "fdatasync"))?;
        self.syncs += 1;
        self.drop_cached();
        Ok(())
    }

    /// Write a batch without syncing it (rotation still syncs the old file before renaming it).
    fn write_only(&mut self, batch: &[Delivery]) -> Result<(), FileError> {
        let max = self.cfg.max_size;
        // The lines `batch[start..i]` not yet written, and their length.
        let (mut start, mut piece) = (0, 0u64);
        for (i, d) in batch.iter().enumerate() {
            let line_len = d.body().len() as u64 + 1;
            if max > 0 && self.len + piece > 0 && self.len + piece + line_len > max {
                self.write_lines(&batch[start..i], piece)?;
                (start, piece) = (i, 0);
                self.rotate()?;
            }
            piece += line_len;
            if piece >= WRITE_PIECE as u64 || i + 1 - start >= LINES_PER_WRITE {
                self.write_lines(&batch[start..=i], piece)?;
                (start, piece) = (i + 1, 0);
            }
        }
        self.write_lines(&batch[start..], piece)
    }

    /// Append `lines` (`len` bytes with their newlines) with `writev`, all of them or none: a
    /// failed or short write is cut back so that the resend starts on a line boundary.
    fn write_lines(&mut self, lines: &[Delivery], len: u64) -> Result<(), FileError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(2 * lines.len());
        for d in lines {
            slices.push(std::io::IoSlice::new(d.body()));
            slices.push(std::io::IoSlice::new(b"\n"));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(self.cut(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut(e)),
            }
        }
        self.len += len;
        Ok(())
    }

    /// Cut a partial piece off after a failed write (see `write_lines`).
    fn cut(&mut self, e: std::io::Error) -> FileError {
        let _ = self.file.set_len(self.len);
        io(&self.cfg.path, "write")(e)
    }
}

/// The largest folio the page cache holds a file in (a PMD-sized one on x86-64 and arm64 with
/// 4 KiB pages); see [`Target::drop_cached`].
const MAX_FOLIO: u64 = 2 << 20;

/// The page size, for page-aligned cache drops (4 KiB where sysconf cannot tell).
fn page_size() -> u64 {
    static PAGE: LazyLock<u64> = LazyLock::new(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    });
    *PAGE
}

/// What [`settle_tail`] found at the end of an existing file.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Empty, or it ends with a newline: `len` bytes.
    Clean { len: u64 },
    /// A line of ours that a crash left unfinished: the `bytes` from offset `at` on were cut off.
    Cut { at: u64, bytes: u64 },
    /// Text that does not start like a line an output writes (a JSON object, an audit.log line)
    /// and has no final newline: kept, and ended with one at offset `at` so that our first line
    /// starts a line of its own.
    Ended { at: u64 },
}

impl Tail {
    /// The file's length after settling.
    fn len(&self) -> u64 {
        match *self {
            Tail::Clean { len } => len,
            Tail::Cut { at, .. } => at,
            Tail::Ended { at } => at + 1,
        }
    }
}

/// How far back from the end the start of an unfinished line is looked for: past the longest
/// line an output writes with the spool's default `max_record_bytes` (4 MiB). Text without a
/// newline that far back is not taken for ours, so it is ended, not cut.
const TAIL_SCAN: u64 = 16 << 20;

/// Make the end of an existing file a line boundary: cut off a line of ours left unfinished by a
/// crash, end anything else with a newline.
fn settle_tail(file: &File, path: &Path) -> Result<Tail, FileError> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(io(path, "stat"))?.len();
    let mut last = [0u8; 1];
    if len == 0 {
        return Ok(Tail::Clean { len });
    }
    file.read_exact_at(&mut last, len - 1).map_err(io(path, "read"))?;
    if last[0] == b'\n' {
        return Ok(Tail::Clean { len });
    }
    let floor = len.saturating_sub(TAIL_SCAN);
    let mut chunk = vec![0u8; 64 << 10];
    let (mut end, mut start_of_line) = (len, (floor == 0).then_some(0));
    while end > floor {
        let start = end.saturating_sub(chunk.len() as u64).max(floor);
        let piece = &mut chunk[..(end - start) as usize];
        file.read_exact_at(piece, start).map_err(io(path, "read"))?;
        if let Some(p) = memchr::memrchr(b'\n', piece) {
            start_of_line = Some(start + p as u64 + 1);
            break;
        }
        end = start;
    }
    if let Some(at) = start_of_line {
        let mut head = [0u8; 5];
        let n = head.len().min((len - at) as usize);
        file.read_exact_at(&mut head[..n], at).map_err(io(path, "read"))?;
        let head = &head[..n];
        // Every format's line starts so: a JSON object, or auditd's `type=` / `node=`.
        if head.starts_with(b"{") || b"type=".starts_with(head) || b"node=".starts_with(head) {
            file.set_len(at).map_err(io(path, "truncate"))?;
            return Ok(Tail::Cut { at, bytes: len - at });
        }
    }
    let mut f = file;
    f.write_all(b"\n").map_err(io(path, "write"))?;
    Ok(Tail::Ended { at: len })
}

/// [`settle_tail`], said in the log; the length after.
fn settled_len(file: &File, path: &Path) -> Result<u64, FileError> {
    let tail = settle_tail(file, path)?;
    match tail {
        Tail::Clean { .. } => {}
        Tail::Cut { at, bytes } => log::warn!(
            "file output {}: cut {bytes} bytes at offset {at}, a line left unfinished by a crash (its event is sent again)",
            path.display()
        ),
        Tail::Ended { at } => log::warn!(
            "file output {}: it did not end with a newline and its last line is not one an output writes; kept it and ended it with one at offset {at}",
            path.display()
        ),
    }
    Ok(tail.len())
}

/// Open for append, creating with exactly `mode` (the daemon's umask 0077 would narrow a 0640),
/// never through a symbolic link (crate::file_trust).
fn open_append(path: &Path, mode: u32) -> Result<File, FileError> {
    crate::file_trust::refuse_symlink(path, "file output path").map_err(|e| FileError::Io {
        path: path.to_path_buf(),
        op: "open",
        source: std::io::Error::other(e.why),
    })?;
    let created = !path.exists();
    // Readable too: `settle_tail` reads the end of an existing file.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(mode)
        .custom_flags(crate::file_trust::NO_FOLLOW)
        .open(path)
        .map_err(io(path, "open"))?;
    if created {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io(path, "chmod"))?;
    }
    Ok(file)
}

/// Most events queued between the spool and the sink. Written events are dropped at once (only
/// their positions wait for the sync), so this, not `batch`, bounds the sink's memory: with the
/// queue as large as a 4096-event `batch`, two such queues of ~1 KB events were a quarter of the
/// daemon's peak RSS in a storm (docs/performance.md).
pub const QUEUE_MAX: usize = 1024;

/// Most events one turn of the sink takes from its deliveries. What a turn holds comes on top of
/// the queue: taking up to `batch` (4096) held four queues of events at once, a quarter of a
/// flat-out storm's peak (heaptrack, docs/performance.md). A spool reader batch's worth: one
/// write of ~256 KiB per turn, a wake-up per 256 events.
const TURN_MAX: usize = 256;

/// Bytes of lines written with one `writev` at most (plus a line): what a failed write cuts back.
/// A 256 KiB write costs no more per byte than a larger one; the fdatasync, not the write, is
/// what is grouped.
const WRITE_PIECE: usize = 256 << 10;

/// Lines per `writev` at most: two slices each, within the kernel's `IOV_MAX` (1024).
const LINES_PER_WRITE: usize = 512;

/// Run the file sink until `shutdown` turns true or the delivery channel closes.
///
/// File I/O (write, fdatasync, rename) blocks and is done right here, inline: the shipper runs
/// each output on a thread of its own under a current-thread runtime, so blocking it blocks no
/// other output. Handing every write to `spawn_blocking` instead cost two thread wake-ups per
/// batch (docs/performance.md).
pub async fn run(
    config: FileConfig,
    deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), FileError> {
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| FileError::Config(format!("cannot listen for SIGUSR1: {e}")))?;
    serve(config, deliveries, acks, shutdown, REOPEN.subscribe(), Some(usr1)).await
}

/// The sink loop, with the reopen triggers as parameters so tests can drive them.
async fn serve(
    config: FileConfig,
    mut deliveries: Deliveries,
    acks: mpsc::Sender<Ack>,
    mut shutdown: watch::Receiver<bool>,
    mut reopen: watch::Receiver<u64>,
    mut usr1: Option<tokio::signal::unix::Signal>,
) -> Result<(), FileError> {
    config.validate().map_err(FileError::Config)?;
    let batch_max = config.batch;
    let sync_interval = config.sync_interval;
    let mut target = Some(Target::open(config)?);
    reopen.mark_unchanged();
    let mut batch: Vec<Delivery> = Vec::with_capacity(batch_max.min(TURN_MAX));
    // Written, not yet synced: the last such position, how many, and when the oldest was written.
    let mut unsynced: Option<(u64, usize, tokio::time::Instant)> = None;
    loop {
        let signalled = async {
            match usr1.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let sync_due = async {
            match unsynced {
                Some((_, _, since)) => tokio::time::sleep_until(since + sync_interval).await,
                None => std::future::pending().await,
            }
        };
        let mut action = Action::Write;
        tokio::select! {
            biased;
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    action = Action::Stop;
                }
            }
            _ = reopen.changed() => action = Action::Reopen,
            _ = signalled => action = Action::Reopen,
            _ = sync_due => action = Action::Sync,
            d = deliveries.recv() => match d {
                Some(d) => {
                    batch.push(d);
                    // At most TURN_MAX per turn (see there); group commit counts unsynced events
                    // across turns, so `batch` still decides when to sync.
                    deliveries.take_waiting(&mut batch, batch_max.min(TURN_MAX));
                }
                None => action = Action::Stop,
            },
        }
        let Some(t) = target.as_mut() else { return Ok(()) };
        let written = batch.last().map(|d| d.pos);
        let count = batch.len();
        let pending = unsynced.map_or(0, |(_, n, _)| n) + count;
        // Sync now unless this is a plain write that the interval and the window still allow to wait.
        let sync_now = match action {
            Action::Write => sync_interval.is_zero() || pending * 2 >= batch_max,
            Action::Sync | Action::Reopen | Action::Stop => true,
        };
        // Blocking I/O right here: this task has a thread of its own (see `run`).
        match action {
            Action::Reopen => t.reopen()?,
            _ => {
                t.write_only(&batch)?;
                if sync_now {
                    t.sync()?;
                }
            }
        }
        let last = written.or(unsynced.map(|(p, _, _)| p));
        if sync_now {
            unsynced = None;
            if let Some(pos) = last {
                if acks.send(Ack(pos)).await.is_err() {
                    return Ok(());
                }
            }
        } else if let Some(pos) = last {
            let since = unsynced.map_or_else(tokio::time::Instant::now, |(_, _, since)| since);
            unsynced = Some((pos, pending, since));
        }
        if matches!(action, Action::Stop) {
            return Ok(());
        }
        batch.clear();
    }
}

/// What one turn of the sink loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Write what arrived; sync if the window or the interval says so.
    Write,
    /// The sync interval passed: sync and acknowledge what was written.
    Sync,
    /// Reopen the file (logrotate moved it); what was written is synced first.
    Reopen,
    /// Shutdown or the end of input: sync, acknowledge, return.
    Stop,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn delivery(pos: u64, body: &str) -> Delivery {
        Delivery::new(pos, pos, &format!("id-{pos}"), body.as_bytes())
    }

    fn dir(name: &str) -> crate::spool::store::TestDir {
        crate::spool::store::test_dir(name)
    }

    struct Harness {
        tx: mpsc::Sender<Delivery>,
        acks: mpsc::Receiver<Ack>,
        stop: watch::Sender<bool>,
        reopen: watch::Sender<u64>,
        task: tokio::task::JoinHandle<Result<(), FileError>>,
    }

    fn start(cfg: FileConfig) -> Harness {
        let (tx, rx) = mpsc::channel(cfg.batch);
        let (atx, acks) = mpsc::channel(64);
        let (stop, srx) = watch::channel(false);
        let (reopen, rrx) = watch::channel(0);
        let task = tokio::spawn(serve(cfg, rx.into(), atx, srx, rrx, None));
        Harness { tx, acks, stop, reopen, task }
    }

    async fn ack(h: &mut Harness) -> u64 {
        tokio::time::timeout(Duration::from_secs(5), h.acks.recv()).await.unwrap().unwrap().0
    }

    #[test]
    fn a_large_batch_is_written_whole_in_bounded_pieces() {
        let d = dir("filepieces");
        let path = d.join("events.jsonl");
        let mut t = Target::open(FileConfig { path: path.clone(), ..FileConfig::default() }).unwrap();
        let body = "x".repeat(4000);
        let batch: Vec<Delivery> = (1..=400).map(|i| delivery(i, &body)).collect();
        t.write_batch(&batch).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!((text.len() as u64, t.len), (400 * 4001, 400 * 4001));
        assert!(text.lines().all(|l| l == body));
        // Many short lines: more than one writev's worth of slices.
        let batch: Vec<Delivery> = (401..=1500).map(|i| delivery(i, "{}")).collect();
        t.write_batch(&batch).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| *l == "{}").count(), 1100);
        assert_eq!(t.len, text.len() as u64);
    }

    /// Each case's file (name, content before) opened and one line appended: the content after.
    fn check_opened(cases: &[(&str, &[u8], &[u8])]) {
        for (name, before, expected) in cases {
            let d = dir(name);
            let path = d.join("events.jsonl");
            std::fs::write(&path, before).unwrap();
            let mut t = Target::open(FileConfig { path: path.clone(), ..FileConfig::default() }).unwrap();
            t.write_batch(&[delivery(9, "{\"n\":9}")]).unwrap();
            let after = std::fs::read(&path).unwrap();
            assert_eq!(after, *expected, "{name}");
            assert_eq!(t.len, after.len() as u64, "{name}");
        }
    }

    #[test]
    fn a_line_left_unfinished_by_a_crash_is_cut_off_at_open() {
        let long = format!("{{\"n\":1}}\n{{\"pad\":\"{}", "p".repeat(200 << 10));
        check_opened(&[
            // As a kill -9 left it in the crash test: a page boundary inside a line.
            ("filetorn", b"{\"n\":1}\n{\"n\":2,\"pad\":\"pp", b"{\"n\":1}\n{\"n\":9}\n"),
            ("filetorn-first", b"{\"n\":1,\"pa", b"{\"n\":9}\n"),
            (
                "filetorn-auditlog",
                b"type=SYSCALL msg=audit(1.0:1): x\ntype=PA",
                b"type=SYSCALL msg=audit(1.0:1): x\n{\"n\":9}\n",
            ),
            ("filetorn-short", b"{\"n\":1}\nty", b"{\"n\":1}\n{\"n\":9}\n"),
            // Longer than one read back from the end.
            ("filetorn-long", long.as_bytes(), b"{\"n\":1}\n{\"n\":9}\n"),
        ]);
    }

    #[test]
    fn text_an_output_did_not_write_is_kept_and_ended_with_a_newline() {
        check_opened(&[
            ("fileforeign", b"{\"n\":1}\nnot ours", b"{\"n\":1}\nnot ours\n{\"n\":9}\n"),
            ("fileclean", b"{\"n\":1}\n", b"{\"n\":1}\n{\"n\":9}\n"),
            ("fileempty", b"", b"{\"n\":9}\n"),
        ]);
    }

    #[tokio::test]
    async fn batches_are_written_synced_and_acked_cumulatively() {
        let d = dir("filesink");
        let path = d.join("events.jsonl");
        let mut h = start(FileConfig { path: path.clone(), ..FileConfig::default() });
        for i in 1..=100 {
            h.tx.send(delivery(i, &format!("{{\"n\":{i}}}"))).await.unwrap();
        }
        let mut last = 0;
        while last < 100 {
            let a = ack(&mut h).await;
            assert!(a > last, "acks increase");
            last = a;
            // Everything acknowledged is in the file at that moment.
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.lines().count() as u64 >= a);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let want: String = (1..=100).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(text, want);
        h.stop.send(true).unwrap();
        h.task.await.unwrap().unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn every_batch_is_fdatasynced_before_it_counts_and_rotation_syncs_the_old_file() {
        let d = dir("filesync");
        let mut t =
            Target::open(FileConfig { path: d.join("s.jsonl"), max_size: 25, generations: 3, ..FileConfig::default() })
                .unwrap();
        t.write_batch(&[delivery(1, "aaaaaaaaa"), delivery(2, "bbbbbbbbb")]).unwrap();
        assert_eq!(t.syncs, 1, "one fdatasync per batch");
        // The third line does not fit: the old file is synced before the rename, the new one after.
        t.write_batch(&[delivery(3, "ccccccccc")]).unwrap();
        assert_eq!(t.syncs, 3);
        assert_eq!(std::fs::read_to_string(d.join("s.jsonl.1")).unwrap(), "aaaaaaaaa\nbbbbbbbbb\n");
        assert_eq!(std::fs::read_to_string(d.join("s.jsonl")).unwrap(), "ccccccccc\n");
    }

    /// Which pages of the file at `path` are in the page cache (mincore over a read-only map).
    fn resident_pages(path: &Path) -> Vec<bool> {
        use std::os::fd::AsRawFd;
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let page = page_size() as usize;
        let pages = len.div_ceil(page);
        // SAFETY: a private read-only map of a file we opened, of its current length, unmapped
        // below; mincore writes one byte per page into a vector of exactly that many bytes.
        unsafe {
            let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
            assert_ne!(map, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
            let mut vec = vec![0u8; pages];
            let r = libc::mincore(map, len, vec.as_mut_ptr());
            let err = std::io::Error::last_os_error();
            libc::munmap(map, len);
            assert_eq!(r, 0, "mincore: {err}");
            vec.iter().map(|b| b & 1 == 1).collect()
        }
    }

    /// The file's pages wholly before `len - keep - MAX_FOLIO` are out of the page cache and the
    /// last `keep` bytes are in it (in between: a folio that straddles the drop's end stays
    /// until the next drop).
    fn check_cached(path: &Path, keep: u64) {
        let len = std::fs::metadata(path).unwrap().len();
        let page = page_size();
        let resident = resident_pages(path);
        let dropped_below = len.saturating_sub(keep + MAX_FOLIO);
        for (i, r) in resident.iter().enumerate() {
            let (from, to) = (i as u64 * page, (i as u64 + 1) * page);
            if to <= dropped_below {
                assert!(!*r, "page {i} of {} is still cached: {resident:?}", resident.len());
            }
            if from + keep >= len {
                assert!(*r, "page {i} of the kept tail was dropped: {resident:?}");
            }
        }
        assert!(!resident[0], "something was dropped");
    }

    #[test]
    fn synced_lines_before_the_kept_tail_leave_the_page_cache_and_the_tail_stays() {
        let d = dir("filecache");
        // The drop is a no-op on a filesystem whose pages are the data itself (tmpfs): this test
        // needs one that writes back to a disk, as the daemon's /var/log does.
        let fs = nix::sys::statfs::statfs(d.as_path()).unwrap();
        assert_ne!(
            fs.filesystem_type(),
            nix::sys::statfs::TMPFS_MAGIC,
            "{} is on tmpfs: set TMPDIR to a disk",
            d.display()
        );
        let keep = 1 << 20;
        let path = d.join("events.jsonl");
        let cfg = FileConfig { path: path.clone(), keep_cached: KeepCached::Tail(keep), ..FileConfig::default() };
        let mut t = Target::open(cfg).unwrap();
        // Lines of a length that is no divisor of the page, so pages end mid-line.
        let body = "y".repeat(999);
        let lines = |from: u64, n: u64| (from..from + n).map(|i| delivery(i, &body)).collect::<Vec<_>>();
        t.write_only(&lines(1, 6000)).unwrap();
        // Written, not yet synced: nothing may go (dirty pages are the only copy).
        assert!(resident_pages(&path).iter().all(|r| *r), "unsynced pages stay cached");
        t.sync().unwrap();
        check_cached(&path, keep);
        // Each sync drops what the kept tail left behind since the last one, the folio that
        // straddled the last drop's end among it.
        for k in 0..4 {
            t.write_batch(&lines(6001 + k * 700, 700)).unwrap();
            check_cached(&path, keep);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 6000 + 4 * 700);
        assert!(text.lines().all(|l| l == body), "the data is intact");

        // "all": nothing is dropped.
        let path = d.join("all.jsonl");
        let mut t =
            Target::open(FileConfig { path: path.clone(), keep_cached: KeepCached::All, ..FileConfig::default() })
                .unwrap();
        t.write_batch(&lines(1, 6000)).unwrap();
        assert!(resident_pages(&path).iter().all(|r| *r));

        // A rotation drops the old file's synced start too.
        let path = d.join("rot.jsonl");
        let cfg = FileConfig {
            path: path.clone(),
            max_size: 5000 * 1000,
            generations: 2,
            keep_cached: KeepCached::Tail(keep),
            ..FileConfig::default()
        };
        let mut t = Target::open(cfg).unwrap();
        t.write_only(&lines(1, 6000)).unwrap();
        check_cached(&d.join("rot.jsonl.1"), keep);
    }

    #[test]
    fn keep_cached_is_a_size_or_all() {
        let parse = |v: &str| toml::from_str::<FileConfig>(&format!("path = \"/x\"\nkeep_cached = {v}"));
        assert_eq!(parse("\"8MiB\"").unwrap().keep_cached, KeepCached::Tail(8 << 20));
        assert_eq!(parse("0").unwrap().keep_cached, KeepCached::Tail(0));
        assert_eq!(parse("\"all\"").unwrap().keep_cached, KeepCached::All);
        assert_eq!(FileConfig::default().keep_cached, KeepCached::Tail(16 << 20));
        let e = parse("\"lots\"").unwrap_err().to_string();
        assert!(e.contains("keep_cached") && e.contains("lots") && e.contains("all"), "{e}");
        assert!(parse("-1").is_err());
    }

    #[tokio::test]
    async fn group_commit_acks_after_the_interval_or_when_half_the_window_is_unsynced() {
        let d = dir("filegroup");
        let path = d.join("g.jsonl");
        let cfg = FileConfig {
            path: path.clone(),
            batch: 100,
            sync_interval: Duration::from_millis(300),
            ..FileConfig::default()
        };
        let mut h = start(cfg);
        h.tx.send(delivery(1, "one")).await.unwrap();
        // Written at once, but not acknowledged before it was synced, which waits for the interval.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert!(h.acks.try_recv().is_err(), "acked before the group sync");
        let t0 = std::time::Instant::now();
        assert_eq!(ack(&mut h).await, 1);
        assert!(t0.elapsed() < Duration::from_millis(1000));
        // Half the window unsynced forces the sync (and the ack) without waiting for the interval.
        let t1 = std::time::Instant::now();
        for i in 2..=51 {
            h.tx.send(delivery(i, "x")).await.unwrap();
        }
        let mut last = 0;
        while last < 51 {
            last = ack(&mut h).await;
        }
        assert!(t1.elapsed() < Duration::from_millis(250), "{:?}", t1.elapsed());
        h.stop.send(true).unwrap();
        h.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_syncs_and_acknowledges_what_was_written() {
        let d = dir("filestop");
        let cfg =
            FileConfig { path: d.join("s.jsonl"), sync_interval: Duration::from_secs(60), ..FileConfig::default() };
        let mut h = start(cfg);
        h.tx.send(delivery(7, "seven")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.stop.send(true).unwrap();
        assert_eq!(ack(&mut h).await, 7);
        h.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn rotation_keeps_n_generations_and_never_splits_a_line() {
        let d = dir("filerotate");
        let path = d.join("a.jsonl");
        // 10-byte lines, at most 3 per file.
        let mut h =
            start(FileConfig { path: path.clone(), max_size: 35, generations: 2, batch: 4, ..FileConfig::default() });
        for i in 1..=20u64 {
            h.tx.send(delivery(i, &format!("{{\"n\":{i:04}}}"))).await.unwrap();
        }
        while ack(&mut h).await < 20 {}
        h.stop.send(true).unwrap();
        h.task.await.unwrap().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let gen = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(!gen(3).exists(), "only 2 generations kept");
        // 20 lines, 3 per file: 18 in six full files, the last 2 in the current file.
        assert_eq!(read(&path), "{\"n\":0019}\n{\"n\":0020}\n");
        assert_eq!(read(&gen(1)), "{\"n\":0016}\n{\"n\":0017}\n{\"n\":0018}\n");
        assert_eq!(read(&gen(2)), "{\"n\":0013}\n{\"n\":0014}\n{\"n\":0015}\n");
        for p in [path.clone(), gen(1), gen(2)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 35);
        }
    }

    #[tokio::test]
    async fn reopen_follows_a_renamed_file() {
        let d = dir("filereopen");
        let path = d.join("r.jsonl");
        let moved = d.join("r.jsonl.old");
        let mut h = start(FileConfig { path: path.clone(), max_size: 0, ..FileConfig::default() });
        h.tx.send(delivery(1, "one")).await.unwrap();
        assert_eq!(ack(&mut h).await, 1);
        std::fs::rename(&path, &moved).unwrap(); // what logrotate does
        h.reopen.send_modify(|g| *g += 1);
        // Give the sink the reopen before the next event (the select is biased to it anyway).
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.tx.send(delivery(2, "two")).await.unwrap();
        assert_eq!(ack(&mut h).await, 2);
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        h.stop.send(true).unwrap();
        h.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn sigusr1_reopens() {
        let d = dir("filesigusr1");
        let path = d.join("s.jsonl");
        let moved = d.join("s.jsonl.1");
        let (tx, rx) = mpsc::channel(8);
        let (atx, mut acks) = mpsc::channel(8);
        let (stop, srx) = watch::channel(false);
        let task = tokio::spawn(run(
            FileConfig { path: path.clone(), max_size: 0, ..FileConfig::default() },
            rx.into(),
            atx,
            srx,
        ));
        tx.send(delivery(1, "one")).await.unwrap();
        assert_eq!(acks.recv().await.unwrap().0, 1);
        std::fs::rename(&path, &moved).unwrap();
        // The sink's own SIGUSR1 listener is installed (it acked), so this does not kill the test.
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(delivery(2, "two")).await.unwrap();
        assert_eq!(acks.recv().await.unwrap().0, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "one\n");
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn open_error_names_the_path() {
        let mut h = start(FileConfig { path: PathBuf::from("/nonexistent-dir/x.jsonl"), ..FileConfig::default() });
        let e = (&mut h.task).await.unwrap().unwrap_err().to_string();
        assert!(e.contains("/nonexistent-dir/x.jsonl") && e.contains("open"), "{e}");
    }
}
