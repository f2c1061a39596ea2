//! The process table: what auditrelay knows about each live process, so an event can say who its
//! parent is (`process.parent`) and which container it runs in (`process.container_id`).
//!
//! ```text
//! /proc at daemon start ──seed──▶ ┌──────────────────────────────┐
//! execve/execveat ──exe,argv────▶ │ pid → Entry { start, ppid,   │ ──▶ parent {pid, exe, comm, argv}
//! clone/fork/vfork ─child=exit──▶ │   parent_start, exe, comm,   │ ──▶ container_id
//! exit_group ──────remove───────▶ │   argv, container_id }  LRU  │
//! any SYSCALL ─pid,ppid,exe,comm▶ └──────────────────────────────┘
//! ```
//!
//! Why (pid, start): pids are recycled. Each entry is one generation of its pid, named by its start
//! time (from /proc/<pid>/stat field 22 when seeded, else the time of the event that revealed it:
//! the clone that made it, or its first event). A child records the generation of its parent
//! (`parent_start`); when the parent's pid has since been taken by another process, the
//! generations differ and the child gets no parent facts rather than a stranger's. Only one
//! generation of a pid is live at a time, so the table is a map by pid whose entries carry their
//! start, and "(pid, start)" is the key every parent link is checked against.
//!
//! What the events cannot tell (so what is not pretended):
//! - a pid recycled without the table seeing the old process exit or the new one start (no rule on
//!   exit_group or clone): the next SYSCALL event of the pid with another `exe` (not an execve)
//!   starts a new generation; until then the old facts stand. An `exe` the seed read from /proc
//!   is the exception: a process in a container names its program from the container's root, so
//!   the first other name in an event replaces the seeded one and is the reference after;
//! - `exit` (not `exit_group`) is a thread's end and carries its process's pid, so it removes
//!   nothing; a process that ends that way leaves by the LRU bound;
//! - `clone3` does not show its flags in the record (a0 is a pointer), so a thread made by it
//!   gets an entry of its own (a copy of its process's facts, never used for an event, whose pid is
//!   the process's); `clone` with CLONE_THREAD in a0 is skipped;
//! - a container id comes only from /proc and is inherited at clone (and by a process first seen
//!   in an event from its known parent): a process moved into a container's cgroup after it
//!   started (a runtime's init) keeps the id it was first known with.
//!
//! Processes the table never saw: with a rule set that audits neither execve nor clone, a process
//! started after the daemon is known only from its own events, and its parent not at all. The
//! daemon then reads them from /proc in the background ([`super::proc_lookup`]) and
//! [`ProcessTable::adopt`]s what it read, for later events.
//!
//! Cost: per event two or three lookups in an `lru` map by pid and a comparison of `exe`; nothing
//! is allocated unless the table learns something new (an exec, a clone, a new pid). /proc is read
//! by [`seed_from_proc`] at daemon start and by the lookup thread, never on the processing thread
//! and never in `replay` (offline output must not depend on the replaying host). Bounded:
//! `process_table_size` entries (least recently used evicted), `process_argv_bytes` of argv kept
//! per entry.

use std::num::NonZeroUsize;
use std::path::Path;

/// CLONE_THREAD (linux/sched.h): the clone made a thread, not a process.
const CLONE_THREAD: u64 = 0x0001_0000;

/// Length of a container id (docker, containerd, cri-o, podman: 64 hex digits).
pub const CONTAINER_ID_LEN: usize = 64;

/// What one process is known to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The generation: Unix milliseconds of the process's start as far as it is known.
    pub start: u64,
    pub ppid: u32,
    /// The parent's generation when this entry learnt its parent; `None` when the parent was not
    /// in the table then (its facts are used as found).
    pub parent_start: Option<u64>,
    pub exe: Vec<u8>,
    pub comm: Vec<u8>,
    /// The arguments, each followed by a NUL (arguments hold no NUL); empty: not known.
    pub argv: Vec<u8>,
    pub argv_known: bool,
    /// Arguments past `process_argv_bytes` were left out.
    pub argv_truncated: bool,
    pub container_id: Option<[u8; CONTAINER_ID_LEN]>,
    /// `exe` was read from /proc/<pid>/exe, in the daemon's mount namespace: a process in another
    /// one (a container) reports another path for the same file in its events, which is no sign
    /// of a recycled pid.
    pub exe_from_proc: bool,
    /// Changes when `exe`, `comm` or `argv` change (unique in the table): a writer may reuse
    /// what it wrote for the same (pid, version).
    pub version: u64,
}

impl Entry {
    /// The arguments in order (none when not known).
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let all = if self.argv_known { &self.argv[..] } else { &[][..] };
        all.split_inclusive(|&b| b == 0).map(|a| a.strip_suffix(&[0]).unwrap_or(a))
    }

    fn set_argv<'a>(&mut self, args: impl Iterator<Item = &'a [u8]>, max_bytes: usize) {
        self.argv.clear();
        self.argv_known = true;
        self.argv_truncated = false;
        for a in args {
            if self.argv.len() + a.len() + 1 > max_bytes {
                self.argv_truncated = true;
                break;
            }
            self.argv.extend_from_slice(a);
            self.argv.push(0);
        }
    }
}

/// Counters for status and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    /// Entries now in the table.
    pub entries: u64,
    /// Entries dropped to make room (least recently used).
    pub evictions: u64,
    /// Entries read from /proc at start.
    pub seeded: u64,
    /// exit_group events that removed their process.
    pub exits: u64,
    /// Generations started for a pid the table already held (clone, or another exe seen).
    pub recycled: u64,
    /// Processes read from /proc after start, on an event's request (`proc_lookup`): added, or
    /// their missing facts (container id, arguments) filled.
    pub looked_up: u64,
    /// Lookups whose answer was not used: the pid had been taken by a process that started after
    /// the event that asked.
    pub looked_up_stale: u64,
}

/// The facts of one SYSCALL event the table learns from ([`ProcessTable::learn`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub comm: Option<&'a [u8]>,
    pub exe: Option<&'a [u8]>,
    pub syscall: Option<&'static str>,
    pub success: Option<bool>,
    pub exit: Option<i64>,
    /// `a0` of a `clone` (its flags).
    pub clone_flags: Option<u64>,
    /// Unix milliseconds of the event.
    pub time_ms: u64,
}

/// What a syscall means to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Exec,
    Clone,
    Exit,
    Other,
}

impl Change {
    pub fn of(syscall: Option<&str>) -> Change {
        match syscall {
            Some("execve" | "execveat") => Change::Exec,
            Some("clone" | "clone3" | "fork" | "vfork") => Change::Clone,
            Some("exit_group") => Change::Exit,
            _ => Change::Other,
        }
    }
}

/// The bounded process table (see the module doc).
pub struct ProcessTable {
    entries: lru::LruCache<u32, Entry>,
    max_argv_bytes: usize,
    /// The last [`Entry::version`] given.
    versions: u64,
    pub stats: ProcessStats,
}

impl std::fmt::Debug for ProcessTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessTable").field("len", &self.entries.len()).field("stats", &self.stats).finish()
    }
}

impl ProcessTable {
    /// At most `size` processes, `max_argv_bytes` of each one's arguments.
    pub fn new(size: usize, max_argv_bytes: usize) -> ProcessTable {
        let size = NonZeroUsize::new(size).unwrap_or(NonZeroUsize::MIN);
        ProcessTable { entries: lru::LruCache::new(size), max_argv_bytes, versions: 0, stats: ProcessStats::default() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `pid`, without making it recently used.
    pub fn peek(&self, pid: u32) -> Option<&Entry> {
        self.entries.peek(&pid)
    }

    /// Forget everything (a new replay starts from nothing).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.stats.entries = 0;
    }

    /// Insert `entry` as the live generation of `pid`, counting an eviction.
    fn put(&mut self, pid: u32, mut entry: Entry) {
        self.versions += 1;
        entry.version = self.versions;
        if let Some((old, _)) = self.entries.push(pid, entry) {
            if old != pid {
                self.stats.evictions += 1;
            }
        }
        self.stats.entries = self.entries.len() as u64;
    }

    /// The start of the current generation of `pid`, if known.
    fn start_of(&self, pid: u32) -> Option<u64> {
        self.entries.peek(&pid).map(|e| e.start)
    }

    /// A seeded process (from /proc). Call [`ProcessTable::link_parents`] after the last.
    pub fn seed(&mut self, pid: u32, entry: Entry) {
        self.stats.seeded += 1;
        self.put(pid, entry);
    }

    /// After seeding: each entry's parent generation, now that all of them are in.
    pub fn link_parents(&mut self) {
        let starts: std::collections::HashMap<u32, u64> = self.entries.iter().map(|(p, e)| (*p, e.start)).collect();
        for (_, e) in self.entries.iter_mut() {
            e.parent_start = starts.get(&e.ppid).copied();
        }
    }

    /// Learn from one SYSCALL event; `args` are the event's decoded EXECVE arguments.
    /// An `exit_group` is not applied here: call [`ProcessTable::exited`] after the event's own
    /// lookups. True when the event's process was not known before (a new entry or generation,
    /// made from the event's facts alone).
    pub fn learn<'a>(&mut self, f: &Facts<'_>, change: Change, args: impl Iterator<Item = &'a [u8]>) -> bool {
        // The parent's generation is looked up only when an entry is made or relinked (not on the
        // common path: a known process, same parent).
        let max_argv = self.max_argv_bytes;
        let mut relink = false;
        let exec = change == Change::Exec && f.success != Some(false);
        let mut recycled = false;
        let version = self.versions + 1;
        let mut changed = false;
        let mut new = false;
        match self.entries.get_mut(&f.pid) {
            Some(e) => {
                let other_exe = !exec && matches!((f.exe, e.exe.is_empty()), (Some(x), false) if x != e.exe);
                if other_exe && e.exe_from_proc {
                    // The event's name for the program the seed read: the event's is kept.
                    replace(&mut e.exe, f.exe);
                    e.exe_from_proc = false;
                    e.version = version;
                    changed = true;
                } else if other_exe {
                    // Another program under a known pid without an exec seen: the pid was
                    // recycled unseen. A new generation; the old one's facts are not carried.
                    recycled = true;
                } else {
                    if let Some(ppid) = f.ppid {
                        if ppid != e.ppid {
                            // Reparented (the parent died) or a link not known before.
                            e.ppid = ppid;
                            relink = true;
                        }
                    }
                    if exec {
                        replace(&mut e.exe, f.exe);
                        e.exe_from_proc = false;
                        replace(&mut e.comm, f.comm);
                        e.set_argv(args, max_argv);
                        changed = true;
                    } else {
                        changed = fill(&mut e.exe, f.exe) | fill(&mut e.comm, f.comm);
                    }
                    if changed {
                        e.version = version;
                    }
                }
            }
            None => {
                let mut e = self.first_seen(f, f.time_ms);
                if exec {
                    e.set_argv(args, max_argv);
                }
                self.put(f.pid, e);
                new = true;
            }
        }
        if changed {
            self.versions = version;
        }
        if relink {
            let parent_start = f.ppid.and_then(|p| self.start_of(p));
            if let Some(e) = self.entries.peek_mut(&f.pid) {
                e.parent_start = parent_start;
            }
        }
        if recycled {
            self.stats.recycled += 1;
            let start = self.next_start(f.pid, f.time_ms);
            let e = self.first_seen(f, start);
            self.put(f.pid, e);
            new = true;
        }
        if change == Change::Clone && f.success != Some(false) && f.clone_flags.is_none_or(|fl| fl & CLONE_THREAD == 0)
        {
            if let Some(child) = f.exit.and_then(|x| u32::try_from(x).ok()).filter(|&c| c > 0 && c != f.pid) {
                self.cloned(f.pid, child, f.time_ms);
            }
        }
        new
    }

    /// A process first seen in an event (`f`), as generation `start`: its parent's generation and
    /// container id when the parent is known (a process is in its parent's container unless a
    /// runtime moved it, which only /proc can show).
    fn first_seen(&self, f: &Facts<'_>, start: u64) -> Entry {
        let parent = f.ppid.and_then(|p| self.entries.peek(&p));
        Entry {
            start,
            ppid: f.ppid.unwrap_or(0),
            parent_start: parent.map(|p| p.start),
            container_id: parent.and_then(|p| p.container_id),
            exe: f.exe.map(<[u8]>::to_vec).unwrap_or_default(),
            comm: f.comm.map(<[u8]>::to_vec).unwrap_or_default(),
            ..Entry::default()
        }
    }

    /// Whether `pid` has an entry (without touching its recency).
    pub fn knows(&self, pid: u32) -> bool {
        self.entries.contains(&pid)
    }

    /// `read`, the process `pid` as /proc showed it after an event of `asked_ms` asked for it
    /// (`proc_lookup`). Used only when it is the process the event meant: one that had started by
    /// then (a pid is held by one process at a time, so a process alive at the event and still
    /// there is that one). A newer one (the pid recycled since) is dropped and counted. An entry
    /// the table made meanwhile from events keeps its facts; the read only fills what events
    /// cannot tell (container id, arguments, exe and comm when unknown).
    pub fn adopt(&mut self, pid: u32, read: Entry, asked_ms: u64) {
        if read.start > asked_ms {
            self.stats.looked_up_stale += 1;
            return;
        }
        let version = self.versions + 1;
        match self.entries.get_mut(&pid) {
            Some(e) if e.start > asked_ms => {
                // The table has since learnt a later generation of the pid from events.
                self.stats.looked_up_stale += 1;
                return;
            }
            Some(e) => {
                let mut changed = false;
                if e.container_id.is_none() {
                    e.container_id = read.container_id;
                }
                if !e.argv_known && read.argv_known {
                    e.argv = read.argv;
                    e.argv_known = true;
                    e.argv_truncated = read.argv_truncated;
                    changed = true;
                }
                if e.exe.is_empty() && !read.exe.is_empty() {
                    e.exe = read.exe;
                    e.exe_from_proc = true;
                    changed = true;
                }
                changed |= fill(&mut e.comm, Some(&read.comm));
                if changed {
                    e.version = version;
                    self.versions = version;
                }
            }
            None => {
                let parent_start = self.start_of(read.ppid);
                self.put(pid, Entry { parent_start, ..read });
            }
        }
        self.stats.looked_up += 1;
    }

    /// `child` was made by `parent` at `time_ms`: a new generation with the parent's facts (a
    /// child runs its parent's program until it execs).
    fn cloned(&mut self, parent: u32, child: u32, time_ms: u64) {
        let Some(p) = self.entries.peek(&parent) else { return };
        let mut e = Entry { start: 0, ppid: parent, parent_start: Some(p.start), ..p.clone() };
        if self.entries.contains(&child) {
            self.stats.recycled += 1;
        }
        e.start = self.next_start(child, time_ms);
        self.put(child, e);
    }

    /// A start for a new generation of `pid` that differs from the one it replaces (two
    /// generations in one millisecond).
    fn next_start(&self, pid: u32, time_ms: u64) -> u64 {
        match self.start_of(pid) {
            Some(old) if old >= time_ms => old + 1,
            _ => time_ms,
        }
    }

    /// The process `pid` ended (exit_group).
    pub fn exited(&mut self, pid: u32) {
        if self.entries.pop(&pid).is_some() {
            self.stats.exits += 1;
        }
        self.stats.entries = self.entries.len() as u64;
    }

    /// The parent of `pid` (whose parent the event says is `ppid`, when it says), if known and
    /// still the generation `pid` was born to.
    pub fn parent_of(&mut self, pid: u32, ppid: Option<u32>) -> Option<(u32, &Entry)> {
        self.context(pid, ppid).1
    }

    /// The container id of `pid` and its parent ([`ProcessTable::parent_of`]), in one lookup of
    /// `pid` (this runs for every event).
    pub fn context(&mut self, pid: u32, ppid: Option<u32>) -> (Option<[u8; CONTAINER_ID_LEN]>, Option<(u32, &Entry)>) {
        let entry = self.entries.peek(&pid);
        let container = entry.and_then(|e| e.container_id);
        let (ppid, want) = match (entry, ppid) {
            (Some(e), Some(p)) if e.ppid == p => (p, e.parent_start),
            (Some(e), None) if e.ppid != 0 => (e.ppid, e.parent_start),
            (_, Some(p)) => (p, None),
            _ => return (container, None),
        };
        let parent = self.entries.get(&ppid).filter(|parent| want.is_none_or(|start| start == parent.start));
        (container, parent.map(|p| (ppid, p)))
    }
}

fn replace(slot: &mut Vec<u8>, value: Option<&[u8]>) {
    if let Some(v) = value {
        slot.clear();
        slot.extend_from_slice(v);
    }
}

/// Set an unknown `slot`; true when it changed.
fn fill(slot: &mut Vec<u8>, value: Option<&[u8]>) -> bool {
    let fills = slot.is_empty() && value.is_some_and(|v| !v.is_empty());
    if fills {
        replace(slot, value);
    }
    fills
}

/// The container id in a `/proc/<pid>/cgroup` text: the last path component of any line that is
/// 64 hex digits, alone (`/docker/<id>`, `/kubepods/…/<id>`) or as a systemd scope
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`).
/// The runtimes' monitor processes (`crio-conmon-<id>`, `libpod-conmon-<id>`) are outside the
/// container and get none.
pub fn container_id(cgroup: &[u8]) -> Option<[u8; CONTAINER_ID_LEN]> {
    let mut found = None;
    for line in cgroup.split(|&b| b == b'\n') {
        // hierarchy-ID:controllers:path
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        for component in path.split(|&b| b == b'/') {
            if let Some(id) = component_id(component) {
                found = Some(id);
            }
        }
    }
    found
}

fn component_id(c: &[u8]) -> Option<[u8; CONTAINER_ID_LEN]> {
    let c = c.strip_suffix(b".scope").unwrap_or(c);
    if c.len() < CONTAINER_ID_LEN {
        return None;
    }
    let (prefix, id) = c.split_at(c.len() - CONTAINER_ID_LEN);
    let known = matches!(prefix, b"" | b"docker-" | b"cri-containerd-" | b"crio-" | b"libpod-" | b"containerd-");
    if !known || !id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return None;
    }
    id.try_into().ok()
}

/// Figures of one seeding, for the start-up log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub processes: u64,
    /// Processes that ended (or could not be read) between listing /proc and reading them.
    pub unreadable: u64,
}

/// Seed `table` from `proc` (normally `/proc`): every process's pid, ppid, start time, exe, comm,
/// cmdline and cgroup. Called once at daemon start, never in replay.
pub fn seed_from_proc(table: &mut ProcessTable, proc: &Path) -> std::io::Result<SeedReport> {
    let boot_ms = boot_time_ms(proc)?;
    let mut report = SeedReport::default();
    let mut cmdline = Vec::new();
    for dirent in std::fs::read_dir(proc)? {
        let Ok(dirent) = dirent else { continue };
        let name = dirent.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        match read_process(&dirent.path(), pid, boot_ms, table.max_argv_bytes, &mut cmdline) {
            Read::Process(e) => {
                table.seed(pid, e);
                report.processes += 1;
            }
            Read::KernelThread => {}
            Read::Gone => report.unreadable += 1,
        }
    }
    table.link_parents();
    Ok(report)
}

/// What one `/proc/<pid>` directory held ([`read_process`]).
#[derive(Debug)]
pub enum Read {
    Process(Entry),
    /// kthreadd or one of its children: no program, no events of interest.
    KernelThread,
    /// Ended (or never was) before its `stat` could be read.
    Gone,
}

/// The process in `dir` (`/proc/<pid>`): ppid, comm and start time from `stat` (start =
/// `boot_ms` + its start ticks), the `exe` link, `cmdline` (at most `max_argv` bytes kept;
/// `cmdline` is a reused buffer) and the container id from `cgroup`. Used by the seed at start and
/// by the lookups of processes the table never saw (`proc_lookup`).
pub fn read_process(dir: &Path, pid: u32, boot_ms: u64, max_argv: usize, cmdline: &mut Vec<u8>) -> Read {
    let Some((ppid, comm, start_ticks)) = std::fs::read(dir.join("stat")).ok().and_then(|s| parse_stat(&s)) else {
        return Read::Gone;
    };
    if ppid == 2 || pid == 2 {
        return Read::KernelThread;
    }
    let exe =
        std::fs::read_link(dir.join("exe")).map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string()));
    let mut e = Entry {
        start: boot_ms + start_ticks.saturating_mul(1000) / clock_ticks(),
        ppid,
        exe_from_proc: exe.is_ok(),
        exe: exe.unwrap_or_default(),
        comm,
        ..Entry::default()
    };
    cmdline.clear();
    if let Ok(mut f) = std::fs::File::open(dir.join("cmdline")) {
        // At most what is kept (and one byte more, to know it was cut): a hostile process's
        // arguments can be megabytes.
        use std::io::Read as _;
        let _ = (&mut f).take(max_argv as u64 + 1).read_to_end(cmdline);
        if !cmdline.is_empty() {
            let body = cmdline.strip_suffix(&[0]).unwrap_or(cmdline);
            e.set_argv(body.split(|&b| b == 0), max_argv);
        }
    }
    if let Ok(cg) = std::fs::read(dir.join("cgroup")) {
        e.container_id = container_id(&cg);
    }
    Read::Process(e)
}

/// `(ppid, comm, starttime)` from a `/proc/<pid>/stat` text. `comm` is in parentheses and may
/// itself hold `)` and spaces, so the fields are counted from the last `)`.
pub fn parse_stat(stat: &[u8]) -> Option<(u32, Vec<u8>, u64)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let comm = stat.get(open + 1..close)?.to_vec();
    let rest = stat.get(close + 1..)?;
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    // Field 3 is the state; ppid is field 4, starttime field 22.
    let ppid = std::str::from_utf8(fields.nth(1)?).ok()?.parse().ok()?;
    let start = std::str::from_utf8(fields.nth(17)?).ok()?.trim().parse().ok()?;
    Some((ppid, comm, start))
}

fn boot_time_ms(proc: &Path) -> std::io::Result<u64> {
    let stat = std::fs::read(proc.join("stat"))?;
    stat.split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"btime ").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok()))
        .map(|s| s * 1000)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no btime line in /proc/stat"))
}

/// USER_HZ, the unit of /proc's start times (100 on every Linux port but a few old ones); asked
/// once, as the seed reads every process.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it reads a constant of the C library.
        let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pid: u32, ppid: u32, exe: &'static str, syscall: &'static str, exit: i64, t: u64) -> Facts<'static> {
        Facts {
            pid,
            ppid: Some(ppid),
            comm: Some(exe.rsplit('/').next().unwrap_or(exe).as_bytes()),
            exe: Some(exe.as_bytes()),
            syscall: Some(syscall),
            success: Some(true),
            exit: Some(exit),
            clone_flags: None,
            time_ms: t,
        }
    }

    fn learn(t: &mut ProcessTable, f: Facts<'_>, args: &[&str]) {
        t.learn(&f, Change::of(f.syscall), args.iter().map(|a| a.as_bytes()));
    }

    fn parent_exe(t: &mut ProcessTable, pid: u32, ppid: u32) -> Option<(u32, String)> {
        t.parent_of(pid, Some(ppid)).map(|(p, e)| (p, String::from_utf8_lossy(&e.exe).into_owned()))
    }

    #[test]
    fn an_exec_replaces_exe_comm_and_argv() {
        let mut t = ProcessTable::new(16, 1024);
        learn(&mut t, facts(10, 1, "/bin/bash", "openat", 3, 1), &[]);
        learn(&mut t, facts(10, 1, "/usr/bin/curl", "execve", 0, 2), &["curl", "", "http://x/"]);
        let e = t.peek(10).unwrap();
        assert_eq!((&e.exe[..], &e.comm[..]), (&b"/usr/bin/curl"[..], &b"curl"[..]));
        assert_eq!(e.args().collect::<Vec<_>>(), [&b"curl"[..], b"", b"http://x/"]);
        assert_eq!(e.start, 1, "an exec keeps the process's generation");
    }

    #[test]
    fn a_clone_child_inherits_its_parent_until_it_execs() {
        let mut t = ProcessTable::new(16, 1024);
        learn(&mut t, facts(10, 1, "/bin/bash", "execve", 0, 1), &["bash", "-l"]);
        let mut f = facts(10, 1, "/bin/bash", "clone", 11, 2);
        f.clone_flags = Some(0x0120_0011);
        learn(&mut t, f, &[]);
        let child = t.peek(11).unwrap().clone();
        assert_eq!((child.ppid, &child.exe[..]), (10, &b"/bin/bash"[..]));
        assert_eq!(child.args().count(), 2);
        assert_eq!(parent_exe(&mut t, 11, 10), Some((10, "/bin/bash".into())));
        learn(&mut t, facts(11, 10, "/usr/bin/id", "execve", 0, 3), &["id"]);
        assert_eq!(t.peek(11).unwrap().exe, b"/usr/bin/id");
        assert_eq!(t.peek(10).unwrap().exe, b"/bin/bash", "the parent is unchanged");
    }

    #[test]
    fn a_thread_clone_makes_no_entry_and_a_failed_clone_neither() {
        let mut t = ProcessTable::new(16, 1024);
        let mut f = facts(10, 1, "/bin/app", "clone", 12, 1);
        f.clone_flags = Some(0x003d_0f00);
        learn(&mut t, f, &[]);
        let mut f = facts(10, 1, "/bin/app", "fork", -11, 1);
        f.success = Some(false);
        learn(&mut t, f, &[]);
        assert!(t.peek(12).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn exit_group_removes_and_exit_does_not() {
        let mut t = ProcessTable::new(16, 1024);
        learn(&mut t, facts(10, 1, "/bin/app", "exit", 0, 1), &[]);
        assert!(t.peek(10).is_some(), "a thread's exit carries its process's pid");
        learn(&mut t, facts(10, 1, "/bin/app", "exit_group", 0, 2), &[]);
        t.exited(10);
        assert!(t.peek(10).is_none());
        assert_eq!((t.stats.exits, t.stats.entries), (1, 0));
    }

    #[test]
    fn a_recycled_pid_never_gives_its_old_facts_to_the_old_ones_children() {
        let mut t = ProcessTable::new(16, 1024);
        // 20 = sshd; it forks 30.
        learn(&mut t, facts(20, 1, "/usr/sbin/sshd", "execve", 0, 1), &["sshd"]);
        learn(&mut t, facts(20, 1, "/usr/sbin/sshd", "clone", 30, 2), &[]);
        assert_eq!(parent_exe(&mut t, 30, 20), Some((20, "/usr/sbin/sshd".into())));
        // sshd exits unseen; pid 20 is taken by a cron job whose first event the table sees.
        learn(&mut t, facts(20, 1, "/usr/sbin/cron", "openat", 3, 5), &[]);
        assert_eq!(t.stats.recycled, 1);
        assert_eq!(t.peek(20).unwrap().start, 5);
        // 30 still says ppid 20 (it would be reparented had its parent died seen; here the table
        // cannot know): the generation it was born to is gone, so no parent facts.
        assert_eq!(parent_exe(&mut t, 30, 20), None);
        // A clone of the new 20 links to the new generation.
        learn(&mut t, facts(20, 1, "/usr/sbin/cron", "fork", 31, 6), &[]);
        assert_eq!(parent_exe(&mut t, 31, 20), Some((20, "/usr/sbin/cron".into())));
        // 30 is reparented to init (1, unknown here): its event's ppid changes.
        learn(&mut t, facts(1, 0, "/sbin/init", "openat", 3, 7), &[]);
        learn(&mut t, facts(30, 1, "/usr/sbin/sshd", "openat", 3, 7), &[]);
        assert_eq!(parent_exe(&mut t, 30, 1), Some((1, "/sbin/init".into())));
    }

    #[test]
    fn a_seeded_exe_named_otherwise_in_events_is_not_a_recycled_pid() {
        let mut t = ProcessTable::new(16, 1024);
        let id = [b'a'; CONTAINER_ID_LEN];
        let seeded = Entry {
            start: 1,
            ppid: 1,
            exe: b"/var/lib/docker/overlay2/x/merged/usr/sbin/nginx".to_vec(),
            exe_from_proc: true,
            argv: b"nginx\0".to_vec(),
            argv_known: true,
            container_id: Some(id),
            ..Entry::default()
        };
        t.seed(60, seeded);
        learn(&mut t, facts(60, 1, "/usr/sbin/nginx", "openat", 3, 5), &[]);
        let e = t.peek(60).unwrap();
        assert_eq!((e.start, &e.exe[..], e.container_id), (1, &b"/usr/sbin/nginx"[..], Some(id)));
        assert_eq!((t.stats.recycled, e.args().count()), (0, 1));
        // From now on the event's name is the reference: another one is another program.
        learn(&mut t, facts(60, 1, "/usr/bin/other", "openat", 3, 6), &[]);
        assert_eq!(t.stats.recycled, 1);
    }

    #[test]
    fn a_process_first_seen_in_an_event_takes_its_known_parents_container() {
        let mut t = ProcessTable::new(16, 1024);
        let id = [b'c'; CONTAINER_ID_LEN];
        t.seed(
            70,
            Entry {
                start: 1,
                ppid: 1,
                exe: b"/usr/bin/containerd-shim".to_vec(),
                container_id: Some(id),
                ..Entry::default()
            },
        );
        assert!(learn_new(&mut t, facts(71, 70, "/usr/sbin/nginx", "openat", 3, 9)));
        assert_eq!(t.peek(71).unwrap().container_id, Some(id));
        assert!(!learn_new(&mut t, facts(71, 70, "/usr/sbin/nginx", "openat", 3, 10)), "known now");
        // Parent unknown: nothing to take.
        assert!(learn_new(&mut t, facts(81, 80, "/bin/cat", "openat", 3, 9)));
        assert_eq!(t.peek(81).unwrap().container_id, None);
    }

    fn learn_new(t: &mut ProcessTable, f: Facts<'_>) -> bool {
        t.learn(&f, Change::of(f.syscall), std::iter::empty())
    }

    #[test]
    fn a_process_read_later_is_adopted_only_when_it_is_the_one_the_event_meant() {
        let mut t = ProcessTable::new(16, 1024);
        let id = [b'd'; CONTAINER_ID_LEN];
        let read = |start: u64| Entry {
            start,
            ppid: 1,
            exe: b"/bin/sh".to_vec(),
            comm: b"sh".to_vec(),
            argv: b"sh\0-c\0x\0".to_vec(),
            argv_known: true,
            container_id: Some(id),
            exe_from_proc: true,
            ..Entry::default()
        };
        t.seed(1, Entry { start: 0, exe: b"/sbin/init".to_vec(), ..Entry::default() });
        // Not in the table: added, linked to its parent's generation.
        t.adopt(90, read(50), 100);
        let e = t.peek(90).unwrap();
        assert_eq!((e.start, e.parent_start, e.container_id, e.args().count()), (50, Some(0), Some(id), 3));
        assert_eq!(t.stats.looked_up, 1);
        // Started after the event that asked: the pid is someone else's now.
        t.adopt(91, read(150), 100);
        assert!(!t.knows(91));
        assert_eq!(t.stats.looked_up_stale, 1);
        // Known from an event meanwhile: the event's facts stay, the read fills what they lack.
        learn(&mut t, facts(92, 1, "/bin/dash", "openat", 3, 100), &[]);
        let v = t.peek(92).unwrap().version;
        t.adopt(92, read(40), 100);
        let e = t.peek(92).unwrap();
        assert_eq!((&e.exe[..], e.start, e.container_id, e.args().count()), (&b"/bin/dash"[..], 100, Some(id), 3));
        assert!(e.version > v, "a writer must not reuse the old parent text");
        // A later generation learnt from events (started after the asking event): untouched.
        learn(&mut t, facts(93, 1, "/bin/new", "openat", 3, 200), &[]);
        t.adopt(93, read(40), 100);
        let e = t.peek(93).unwrap();
        assert_eq!((e.container_id, e.args().count()), (None, 0));
        assert_eq!((t.stats.looked_up, t.stats.looked_up_stale), (2, 2));
    }

    #[test]
    fn a_pid_reused_by_a_clone_is_a_new_generation() {
        let mut t = ProcessTable::new(16, 1024);
        learn(&mut t, facts(40, 1, "/bin/old", "execve", 0, 1), &["old"]);
        learn(&mut t, facts(41, 40, "/bin/old", "openat", 3, 1), &[]);
        learn(&mut t, facts(40, 1, "/bin/old", "exit_group", 0, 2), &[]);
        t.exited(40);
        learn(&mut t, facts(50, 1, "/bin/new", "execve", 0, 3), &["new"]);
        learn(&mut t, facts(50, 1, "/bin/new", "clone", 40, 3), &[]);
        let e = t.peek(40).unwrap();
        assert_eq!((e.ppid, e.start, &e.exe[..]), (50, 3, &b"/bin/new"[..]));
        // 41 was learnt while the old 40 lived; it is reparented in fact, but an event still
        // naming 40 must not get the new 40's facts.
        assert_eq!(parent_exe(&mut t, 41, 40), None);
    }

    #[test]
    fn a_version_changes_with_the_facts_a_parent_shows() {
        let mut t = ProcessTable::new(16, 1024);
        learn(&mut t, facts(10, 1, "/bin/bash", "openat", 3, 1), &[]);
        let v1 = t.peek(10).unwrap().version;
        learn(&mut t, facts(10, 1, "/bin/bash", "openat", 3, 2), &[]);
        assert_eq!(t.peek(10).unwrap().version, v1, "nothing new");
        learn(&mut t, facts(10, 1, "/bin/id", "execve", 0, 3), &["id"]);
        let v2 = t.peek(10).unwrap().version;
        assert_ne!(v2, v1);
        learn(&mut t, facts(10, 1, "/bin/id", "clone", 11, 4), &[]);
        assert_ne!(t.peek(11).unwrap().version, v2, "unique in the table");
    }

    #[test]
    fn the_bound_evicts_the_least_recently_used() {
        let mut t = ProcessTable::new(3, 1024);
        for pid in 1..=3 {
            learn(&mut t, facts(pid, 0, "/bin/x", "openat", 3, 1), &[]);
        }
        learn(&mut t, facts(1, 0, "/bin/x", "openat", 3, 2), &[]);
        learn(&mut t, facts(4, 0, "/bin/x", "openat", 3, 3), &[]);
        assert!(t.peek(2).is_none(), "2 was the least recently used");
        assert!(t.peek(1).is_some() && t.peek(3).is_some() && t.peek(4).is_some());
        assert_eq!((t.stats.evictions, t.stats.entries), (1, 3));
    }

    #[test]
    fn argv_is_bounded_per_entry() {
        let mut t = ProcessTable::new(4, 8);
        learn(&mut t, facts(1, 0, "/bin/x", "execve", 0, 1), &["abc", "def", "ghi"]);
        let e = t.peek(1).unwrap();
        assert_eq!(e.args().collect::<Vec<_>>(), [&b"abc"[..], b"def"]);
        assert!(e.argv_truncated);
    }

    #[test]
    fn container_ids_from_real_cgroup_lines() {
        let id = "4f1b1a1f2b2e3c3d4e4f5a5b6c6d7e7f8091a2b3c4d5e6f708192a3b4c5d6e7f";
        let cases = [
            // docker, cgroup v2 with the systemd driver
            format!("0::/system.slice/docker-{id}.scope\n"),
            // docker, cgroup v1 (cgroupfs driver)
            format!("12:pids:/docker/{id}\n11:memory:/docker/{id}\n1:name=systemd:/docker/{id}\n"),
            // kubernetes + containerd, systemd driver
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b3a0f3e_1c5e_4a6e_9b1e_2d6c1f0e8a7b.slice/cri-containerd-{id}.scope\n"),
            // kubernetes + containerd, cgroupfs driver
            format!("0::/kubepods/besteffort/pod0b3a0f3e-1c5e-4a6e-9b1e-2d6c1f0e8a7b/{id}\n"),
            // cri-o
            format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{id}.scope\n"),
            // podman (rootful, and rootless under a user slice)
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope\n"),
        ];
        for c in &cases {
            assert_eq!(container_id(c.as_bytes()).as_ref().map(|i| &i[..]), Some(id.as_bytes()), "{c}");
        }
        let none = [
            "0::/user.slice/user-1000.slice/session-3.scope\n".to_string(),
            "0::/init.scope\n".to_string(),
            "0::/\n".to_string(),
            format!("0::/machine.slice/libpod-conmon-{id}.scope\n"),
            format!("0::/system.slice/crio-conmon-{id}.scope\n"),
            // uppercase or a digit short is not an id
            format!("0::/docker/{}\n", id.to_uppercase()),
            format!("0::/docker/{}\n", &id[1..]),
        ];
        for c in &none {
            assert_eq!(container_id(c.as_bytes()), None, "{c}");
        }
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = b"1234 (a) b (c) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(stat), Some((77, b"a) b (c".to_vec(), 98765)));
        assert_eq!(parse_stat(b"1 (x"), None);
    }

    #[test]
    fn seeding_reads_this_process() {
        let mut t = ProcessTable::new(1 << 16, 4096);
        let report = seed_from_proc(&mut t, Path::new("/proc")).unwrap();
        assert!(report.processes >= 1);
        let me = t.peek(std::process::id()).expect("this process is seeded");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(Path::new(std::ffi::OsStr::from_bytes(&me.exe)), std::env::current_exe().unwrap());
        assert!(me.args().count() >= 1);
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(me.start <= now_ms && me.start + 3_600_000 > now_ms, "start {} now {now_ms}", me.start);
        assert_eq!(t.stats.seeded, report.processes);
    }

    use std::os::unix::ffi::OsStrExt;
}
