//! The spool: a disk-backed queue between the processing thread and the output sinks.
//!
//! Why: the receiver may be down for an hour and auditrelay may be killed -9; neither may lose an
//! event that was handed to the spool, and neither may make the processing thread (and through it
//! the netlink reader) wait. So every event is appended to disk first, and each output reads the
//! spool at its own pace and acknowledges what its receiver accepted.
//!
//! # Layout on disk (`[spool] dir`)
//! ```text
//! lock                         flock(LOCK_EX) held for the life of the process: one writer per spool
//! seg-00000000000000000001.log v1 segment (before compression): read after an upgrade, never written
//! seg-00000000000000004097.v2  v2 segment files, named by the position of their first record (20 digits)
//! cursor-<output name>         per output: last acknowledged position, 20 decimal digits + '\n'
//! ```
//! Positions are per-spool sequence numbers starting at 1 (`0` = "nothing", as an ack). Within a
//! segment positions are contiguous; between segments there may be a gap (events deleted by
//! `drop_oldest`, or a power cut that lost an unsynced tail whose positions were already acked).
//!
//! # On-disk format, version 2 (see [`frame`]; the version is in the file name and the magic)
//! ```text
//! segment = "ARSPOOL2" | frame | frame | ...
//! frame   = u32 LE data_len | u32 LE CRC-32 (IEEE) of the rest of the header and the data
//!         | u64 LE first pos | u32 LE count | u32 LE raw_len | u8 codec (0 none, 1 lz4, 2 zstd) | 7 x 0
//!         | data: `count` inner records, compressed as one block
//! inner   = u32 LE len | u64 LE time_ms | u16 LE id length | id (UTF-8) | body (JSON, no '\n')
//! ```
//! One frame is what one [`Spool::commit`] writes (one processing-loop iteration, at most
//! `STAGE_MAX` = 256 KiB of events before it is cut): audit JSON repeats itself from one event to
//! the next, so a frame of a storm's events (20-300 per hand-off) takes 0.03-0.14 of its
//! JSON with lz4 and 0.01-0.08 with zstd, where one event alone takes 0.4-0.8
//! (docs/performance.md, "Spool compression"). `compression` picks the codec for new frames; each
//! frame names its own, so changing it needs no migration. The default, lz4, was chosen by CPU
//! per byte saved: the least on every event set measured (zstd level 1 saves ~40 % more bytes of
//! what is left for 1.3-1.7x lz4's CPU).
//!
//! Positions stay per record: a frame holds `count` consecutive positions from `first pos`, so a
//! cursor (a position) addresses one record inside a frame and cursor files keep their v1 format.
//!
//! Bounds, checked before anything is allocated: `data_len` and `raw_len` are at most
//! `STAGE_MAX + max_record_bytes + 269` (`frame::max_raw`), data that would not shrink is stored
//! with codec 0 (stored size never above raw size + the 32-byte header), and a reader holds one
//! frame and its decompressed form. The writer keeps its last frames in memory for readers that
//! keep up ([`shared`]): they take a frame from there instead of reading and decompressing it, and
//! its events go to the sinks inside it; a frame lives until its last event is acknowledged
//! (`RECENT_FRAMES` kept, idle buffers pooled). An event larger than `max_record_bytes`, or with an id over 255
//! bytes, is refused by `append` with an error (and counted): the pipeline cuts oversized events
//! before this bound, which only guards the spool itself.
//!
//! # Version 1 (read only)
//! A v1 segment (`.log`) is records one after the other, each `u32 LE payload length | u32 LE CRC-32
//! of the payload | u64 LE pos | u64 LE time_ms | u16 LE id length | id | body` ([`record`]). After
//! an upgrade, v1 segments are read (and recovered, and deleted once acknowledged) like v2 ones;
//! new events go to a new v2 segment. `tests/data/spool-v1/` holds a spool written by the v1 code.
//!
//! Files are created 0600 in a 0700 directory: audit events are for root's eyes.
//!
//! # Writing, fsync policy and what a power cut can lose
//! [`Spool::stage`] encodes an event into a staging buffer (its position is assigned then);
//! [`Spool::commit`] compresses everything staged into one frame, writes it with one `pwrite` to
//! the active segment and wakes the readers once, so a record is visible to readers in the page
//! cache as soon as `commit` returns ([`Spool::append`] is both). Until their frame is written,
//! staged events count against `max_bytes` at their raw size plus a frame header (an upper bound). The processing thread commits once per loop iteration. The active segment is `fdatasync`ed
//! - after every `fsync_every` appended events (0 = never by count; 1 = every event),
//! - at least every `fsync_interval` while it has unsynced records (by the spool's sync thread),
//! - when it is sealed (rolled over at `segment_bytes`), so sealed segments are always durable.
//!
//! New segment and cursor files are made durable with an `fsync` of the directory.
//! A power cut (or kernel crash) can lose the records appended to the active segment since its last
//! fdatasync: at most `fsync_every - 1` events or `fsync_interval` worth of events. A kill -9 of the
//! process loses nothing that `commit` (or `append`) returned for: the data is in the page cache.
//!
//! # The one window kill -9 can still lose
//! Only what has not reached the spool yet: records the kernel already handed to us that are not
//! yet inside an appended event. In pipeline order:
//! - the netlink socket's receive buffer (`[netlink] receive_buffer`) — records the kernel has
//!   queued to our socket but the reader thread has not taken: about one hand-off's worth
//!   (`[netlink] hand_off_bytes`), at most one `[netlink] gather` pause (50 ms) of records, which
//!   the reader lets gather there; while the reader is short of CPU, up to the whole buffer
//!   (records the kernel still holds in its backlog instead wait for the next daemon);
//! - the reader → processing channel (`[netlink] channel_capacity` batches of up to
//!   `hand_off_bytes`) — normally empty; it only fills when processing falls behind;
//! - the reassembler's open events. This is the part that lasts: an event is open from its first
//!   record until EOE, a record type that ends an event by itself, or `[reassemble] event_timeout`
//!   (default 2 s). Syscall events end on the EOE the kernel sends right after their last record,
//!   so they are open for microseconds; records without an EOE (kernel records outside a syscall,
//!   or an event whose EOE is lost) wait up to the full `event_timeout`;
//! - events formatted in the processing loop and not yet appended (one loop iteration).
//!
//! So while processing keeps up, the window is at most `event_timeout` (2 s) plus one loop
//! iteration, and microseconds for ordinary syscall events; shorten it with a smaller
//! `event_timeout`. Records the kernel had not yet sent to our socket are the kernel's business:
//! after a kill -9 it keeps naming the dead pid until a send fails, then prints records to the
//! kernel log and, depending on the kernel and the `audit=` boot parameter, holds them for the next
//! daemon (which replaces the dead one's registration without error). Graceful shutdown (SIGTERM)
//! has no such window: it unregisters, drains the socket, flushes every open event and appends it
//! before exiting. `tests/ship_kernel.rs` kills the daemon once the marker events are spooled and
//! checks that every one of them is delivered after the restart.
//!
//! # Cursors (the ledger)
//! Each output has a cursor file holding the last position its receiver acknowledged. Acks arrive
//! cumulatively ([`crate::output::delivery::Ack`]); cursors are persisted (one in-place `pwrite` of
//! fixed width + fdatasync, see [`cursor`]: in place so that a full disk cannot stop them) at most
//! every `cursor_interval` and at shutdown. A cursor that lags behind the
//! real ack only causes resends after a crash: delivery is at-least-once, and each event carries a
//! stable `id` for receiver-side deduplication. Output names (config `name`, default `<type>-<index>`)
//! name the cursor files, so renaming an output makes it start again from the oldest spooled event.
//!
//! # Deletion
//! A sealed segment is deleted only when every configured output's *persisted* cursor is at or past
//! its last position (persisted, so that after a crash no cursor points into a deleted segment and
//! loss accounting stays exact). The active segment is never deleted. The only other way a segment
//! goes away is `on_full = "drop_oldest"`.
//!
//! # Bound and `on_full`
//! The sum of all segment sizes stays at or below `max_bytes`. When an append would exceed it:
//! - `drop_oldest` (default): delete the oldest sealed segments (rolling the active one first if it
//!   is the only one) even if not acknowledged; the unacknowledged events in them are counted,
//! - `drop_newest`: refuse the new event and count it,
//! - `block`: wait until outputs acknowledge enough to free a segment. Nothing already in the
//!   spool is dropped, but this stalls the caller (the processing thread). The netlink reader is
//!   not stalled with it: it waits once for `[netlink] channel_full_timeout`, then drops what the
//!   kernel sends until processing moves again, counted and announced in band as `channel_full`
//!   (the alternative, stalling the reader, would hold every audited process through the kernel's
//!   backlog_wait_time). So `block` means "the spool never drops", not "nothing is ever lost".
//!   [`Spool::interrupt`] (at shutdown) makes a blocked append give up with an error.
//!
//! Every loss inside the spool is counted in [`SpoolStats`], logged, and announced in band: once
//! space returns, a loss notice `{"loss":{"kind":"spool_dropped","reason":...}}` is appended before
//! the next event (one per reason: `full`, `write_error`, `corrupt` for what readers skipped,
//! `torn_tail` for what recovery cut, the last appended at once when the spool opens), so every
//! receiver sees that something is missing and how much.
//!
//! # Capacity figures and the early warning
//! [`Spool::stats`] reports bytes, events, unacknowledged events, the age of the oldest
//! unacknowledged event (by event time, from one sample per second of appends: never younger
//! than the truth, at most a second older), the net growth over the last minute (bytes written
//! minus bytes freed by acknowledgements; drops do not count as freeing) and, from it, `full_in`:
//! how long the free space lasts at that rate. When `full_in` drops below `warn_full_in`,
//! [`Spool::maintain`] logs a warning (once, re-armed when the estimate is back above twice the
//! threshold), before anything is dropped.
//!
//! # Recovery (on [`Spool::open`])
//! 1. Take the lock; list segments; delete empty ones.
//! 2. Scan the last segment frame by frame (v1: record by record), checking CRC, bounds,
//!    decompression and positions; a torn tail (a frame cut short by a crash, or one that fails a
//!    check, and everything after it) is truncated away, logged with path, offset and bytes cut,
//!    counted (`recovered_lost`: the counts the bad frame's header and the intact headers of the
//!    frames after it announce, else 1: at least one) and announced in band (`torn_tail`). A cut
//!    that falls exactly between frames is not detectable: that is the fsync window above. A record of a frame that fails its CRC is
//!    never handed out. Older segments were fdatasynced when sealed and are checked by readers as
//!    they stream them.
//! 3. Read each output's cursor; the next position is `max(last record, highest cursor) + 1`, so a
//!    position the receiver already acknowledged is never reused for a different event.
//! 4. Start a new active segment. Each reader resumes at `cursor + 1`: everything not acknowledged
//!    is sent again.
//!
//! # Readers and memory
//! A reader streams frames from disk with `pread` into a small buffer (64 KiB, or one frame if
//! larger), never past the writer's committed length, decompresses each frame once into a buffer
//! it reuses and hands out its records borrowed from it ([`SpoolReader::next_batch`]): memory is
//! one frame and its raw form, whatever the backlog. Frames wholly before the reader's cursor are
//! skipped without decompressing. A corrupt frame or record found by a reader (length, CRC,
//! decompression or position check) is reported with the segment path and offset; the reader
//! skips the rest of that segment; the skipped events are counted and announced (`corrupt`) once
//! per segment, whichever output found it first.
//!
//! # Errors
//! A failed write (disk full, I/O error) returns an error naming the segment path; the partial
//! record is cut off again and the next append starts a fresh segment, so nothing already accepted
//! is lost or hidden behind garbage.

pub mod config;
pub mod cursor;
pub mod frame;
pub mod reader;
pub mod record;
pub mod segment;
pub mod shared;
pub(crate) mod store;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use config::{OnFull, SpoolConfig};
pub use frame::Compression;
pub use reader::SpoolReader;
pub use record::Record;
pub use store::{inspect, Appended, Spool, SpoolStats, SpoolSummary};

use std::path::PathBuf;

/// Everything that can go wrong in the spool; each variant says where.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {op}: {source}")]
    Io { path: PathBuf, op: &'static str, source: std::io::Error },
    #[error("spool {path}: write: {source}: {events} events lost (counted, announced in band)")]
    Write { path: PathBuf, events: u64, source: std::io::Error },
    #[error("spool {path}: already locked by another process")]
    Locked { path: PathBuf },
    #[error("spool {path} offset {offset}: corrupt record: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("spool cursor {path}: invalid content {content:?}")]
    BadCursor { path: PathBuf, content: String },
    #[error("spool: event {id:?} is {size} bytes, more than max_record_bytes ({max})")]
    TooLarge { id: String, size: usize, max: u64 },
    #[error("spool: event id {id:?} is longer than 255 bytes")]
    IdTooLong { id: String },
    #[error("spool full (on_full = block) and shutting down: event not stored")]
    Interrupted,
    #[error("spool: invalid config: {0}")]
    Config(String),
}

impl SpoolError {
    /// Events this error lost that had been handed to the spool (a failed write of staged events).
    pub fn events_lost(&self) -> u64 {
        match self {
            SpoolError::Write { events, .. } => *events,
            _ => 0,
        }
    }

    fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.into();
        move |source| SpoolError::Io { path, op, source }
    }
}
