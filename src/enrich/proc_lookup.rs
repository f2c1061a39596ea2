//! Reading /proc, off the processing thread, for the processes the process table never saw.
//!
//! The table learns from events and from the /proc seed at start. A rule set that audits neither
//! `execve` nor `clone` (file watches only, say) shows it no new process: a shell started after the
//! daemon has no entry, so its children's events carry no `process.parent`, and a container started
//! after the daemon has no `process.container_id` on any of its events (the id comes from the
//! cgroup file, and is otherwise only inherited at a clone the table saw). So when an event names
//! a process the table does not know (its own pid, new; or its parent's), the pid is queued here;
//! a thread reads `/proc/<pid>` as the seed does ([`process::read_process`]) and the answer is put
//! into the table before a later event is interpreted ([`ProcessTable::adopt`]). The event that
//! asked goes out without those members: the processing thread never waits on /proc.
//!
//! What is read: comm, arguments, cgroup and start time, which any process may read, and the
//! `exe` link only where the daemon may still read it: by then it has dropped CAP_SYS_PTRACE
//! (`daemon::privilege`), which another user's process (or a root one with more capabilities
//! than the daemon kept) needs, so theirs is left out and comes from their own events.
//!
//! What is not pretended: an answer is used only for the process the event meant. /proc's start
//! time is taken against the boot clock (not /proc/stat's whole-second `btime`), so "started
//! after the event that asked" is decided to the clock tick; such an answer (the pid was recycled
//! in between) is dropped and counted. A process that ended before it was read is gone (counted).
//!
//! Bounded: `[enrich] proc_lookups_per_second` reads at most (the thread sleeps to stay under;
//! 0 = off), `PENDING_MAX` requests waiting (more are dropped and counted; a later event asks
//! again). Daemon only: `replay` never reads this host's /proc.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use super::worker::Lazy;

use super::process::{self, Entry, ProcessTable, Read};

/// Requests waiting for the lookup thread at most.
const PENDING_MAX: usize = 256;

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupStats {
    pub asked: u64,
    pub answered: u64,
    /// The process had ended (or was a kernel thread) when read.
    pub gone: u64,
    /// Requests not queued because `PENDING_MAX` were waiting.
    pub queue_full: u64,
}

struct Request {
    pid: u32,
    asked_ms: u64,
}

struct Answer {
    pid: u32,
    asked_ms: u64,
    read: Option<Entry>,
}

/// The processing thread's side: asks without blocking, takes answers into the table.
#[derive(Debug)]
pub struct ProcLookups {
    proc: PathBuf,
    per_second: u32,
    max_argv: usize,
    pending: HashSet<u32>,
    worker: Lazy<Request, Answer>,
    pub stats: LookupStats,
}

impl ProcLookups {
    /// Lookups in `proc` (normally `/proc`), at most `per_second` reads a second, keeping
    /// `max_argv` bytes of arguments (`[enrich] process_argv_bytes`). The thread starts at the
    /// first request.
    pub fn new(proc: PathBuf, per_second: u32, max_argv: usize) -> ProcLookups {
        ProcLookups {
            proc,
            per_second: per_second.max(1),
            max_argv,
            pending: HashSet::new(),
            worker: Lazy::default(),
            stats: LookupStats::default(),
        }
    }

    /// Read `pid` for an event of `asked_ms` (Unix milliseconds), unless already asked.
    pub fn ask(&mut self, pid: u32, asked_ms: u64) {
        if pid == 0 || self.pending.contains(&pid) {
            return;
        }
        if self.pending.len() >= PENDING_MAX {
            return self.full();
        }
        let Some(requests) = self.requests() else { return };
        match requests.try_send(Request { pid, asked_ms }) {
            Ok(()) => {
                self.pending.insert(pid);
                self.stats.asked += 1;
            }
            Err(TrySendError::Full(_)) => self.full(),
            Err(TrySendError::Disconnected(_)) => self.worker.ended(),
        }
    }

    fn full(&mut self) {
        self.stats.queue_full += 1;
        if self.stats.queue_full.is_power_of_two() {
            log::warn!(
                "/proc lookups are behind: {} not queued so far ([enrich] proc_lookups_per_second = {}); those processes' parents come on later events",
                self.stats.queue_full,
                self.per_second
            );
        }
    }

    /// Put the answers so far into `table`. Call before each event's lookups; nearly free while
    /// nothing is pending.
    pub fn drain(&mut self, table: &mut ProcessTable) {
        if self.pending.is_empty() {
            return;
        }
        let Some(answers) = self.worker.answers() else { return };
        while let Ok(a) = answers.try_recv() {
            self.pending.remove(&a.pid);
            self.stats.answered += 1;
            match a.read {
                Some(e) => table.adopt(a.pid, e, a.asked_ms),
                None => self.stats.gone += 1,
            }
        }
    }

    fn requests(&mut self) -> Option<&SyncSender<Request>> {
        let (proc, per_second, max_argv) = (&self.proc, self.per_second, self.max_argv);
        let without = "processes started after the daemon get no parent or container facts unless events show them";
        self.worker.requests("/proc lookup", without, || {
            let proc = proc.clone();
            let gap = Duration::from_secs(1) / per_second;
            let mut cmdline = Vec::new();
            let mut last: Option<Instant> = None;
            super::worker::spawn("auditrelay-proc", PENDING_MAX, PENDING_MAX, move |r: Request| {
                // The rate bound: one read per `gap`.
                if let Some(rest) = last.and_then(|t| gap.checked_sub(t.elapsed())) {
                    std::thread::sleep(rest);
                }
                last = Some(Instant::now());
                let dir = proc.join(r.pid.to_string());
                let read = match process::read_process(&dir, r.pid, boot_ms(), max_argv, &mut cmdline) {
                    Read::Process(e) => Some(e),
                    Read::KernelThread | Read::Gone => None,
                };
                Answer { pid: r.pid, asked_ms: r.asked_ms, read }
            })
        })
    }

    /// Wait until every request is answered or `timeout` passes (tests).
    pub fn settle(&mut self, table: &mut ProcessTable, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.pending.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
            self.drain(table);
        }
    }
}

/// The boot instant in Unix milliseconds, to the millisecond: now on the real-time clock minus
/// the time since boot (CLOCK_BOOTTIME, which /proc's start ticks count from, suspend included).
/// /proc/stat's `btime` would do at start, but it is whole seconds, too coarse to tell a
/// recycled pid from the one an event meant.
fn boot_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux since 2.6.39.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0;
    let since_boot_ms = if ok { ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000 } else { 0 };
    let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    now_ms.saturating_sub(since_boot_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> u64 {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn a_process_the_table_never_saw_is_read_and_adopted() {
        let mut table = ProcessTable::new(64, 1024);
        let mut l = ProcLookups::new("/proc".into(), 1000, 1024);
        let me = std::process::id();
        assert!(!table.knows(me));
        l.ask(me, now_ms());
        l.ask(me, now_ms()); // asked once only
        l.settle(&mut table, Duration::from_secs(10));
        assert_eq!((l.stats.asked, l.stats.answered, l.stats.gone), (1, 1, 0));
        let e = table.peek(me).expect("adopted");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(e.exe, exe.as_os_str().as_encoded_bytes());
        assert!(e.argv_known && e.args().next().is_some());
        assert_eq!(table.stats.looked_up, 1);
        // Our start is precise to the tick: before now, and not long before this test began.
        let started = std::fs::metadata("/proc/self").unwrap().modified().unwrap();
        let started_ms = started.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(e.start <= now_ms() && e.start + 2_000 >= started_ms, "{} vs {started_ms}", e.start);
    }

    #[test]
    fn an_answer_about_a_process_newer_than_the_asking_event_is_dropped() {
        let mut table = ProcessTable::new(64, 1024);
        let mut l = ProcLookups::new("/proc".into(), 1000, 1024);
        // Asked by an event from a minute before this process started: the pid was someone else's.
        l.ask(std::process::id(), 1_000);
        l.settle(&mut table, Duration::from_secs(10));
        assert_eq!(l.stats.answered, 1);
        assert!(!table.knows(std::process::id()));
        assert_eq!((table.stats.looked_up, table.stats.looked_up_stale), (0, 1));
    }

    #[test]
    fn a_pid_with_no_process_is_gone() {
        let mut table = ProcessTable::new(64, 1024);
        let mut l = ProcLookups::new("/proc".into(), 1000, 1024);
        // Above pid_max (at most 2^22): never a process.
        l.ask(4_194_400, now_ms());
        l.settle(&mut table, Duration::from_secs(10));
        assert_eq!((l.stats.answered, l.stats.gone), (1, 1));
        assert_eq!(table.len(), 0);
    }
}
