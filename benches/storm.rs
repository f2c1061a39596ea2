//! `storm`: the audit event generator of the live benchmark (benches/live.py).
//!
//! ```text
//! storm openat [--rate N] [--duration S]           failing openat of a path that does not exist
//! storm exec   [--rate N] [--duration S] [--gid G]  fork + execve /bin/true
//! ```
//! `--rate 0` (the default) is flat out; otherwise the storm is paced against CLOCK_MONOTONIC in small
//! bursts (about 2000 wake-ups a second at most), catching up when it falls behind, so the mean rate
//! is exact even when single sleeps overshoot. At the end it prints one JSON line:
//! `{"workload":"openat","rate":20000,"syscalls":100000,"wall_s":5.0,"achieved":20000.0,"pid":123,...}`
//! where `syscalls` counts the audited syscalls made (openat, or execve: failed forks make none).
//!
//! The benchmark's single rule must match this process only: for `openat` it names this binary
//! (`-F exe=<path of storm> -F success=0`: its own start-up opens succeed); for `exec` the exe is /bin/true, which anything may run, so the storm
//! first switches to a group nobody else uses (`--gid`) and the rule filters on it (`-F gid=G`);
//! the children inherit it. Each `openat` event is SYSCALL, CWD, PATH, PROCTITLE, EOE; each exec event
//! SYSCALL, BPRM_FCAPS (root runs it), EXECVE, CWD, PATH ×2, PROCTITLE, EOE.
//!
//! Single-threaded on purpose: between fork and execve the child only calls execve and _exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::time::{Duration, Instant};

/// The path every `openat` fails on (ENOENT). It must not contain the benchmark key.
const MISSING: &str = "/nonexistent/auditrelay-storm";
/// Children of the exec storm alive at once: enough to overlap fork/exec/exit, few enough to stay
/// a steady stream.
const MAX_CHILDREN: usize = 16;
/// Upper bound on pacing wake-ups per second; a burst is rate / this many operations.
const WAKEUPS_PER_S: u64 = 2000;

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Openat,
    Exec,
}

struct Args {
    workload: Workload,
    rate: u64,
    duration: Duration,
    gid: Option<u32>,
}

fn usage() -> ! {
    eprintln!("usage: storm openat|exec [--rate N (0 = flat out)] [--duration SECONDS] [--gid G]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let workload = match it.next().as_deref() {
        Some("openat") => Workload::Openat,
        Some("exec") => Workload::Exec,
        _ => usage(),
    };
    let mut args = Args { workload, rate: 0, duration: Duration::from_secs(5), gid: None };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--rate" => args.rate = value.parse().unwrap_or_else(|_| usage()),
            "--duration" => {
                let s: f64 = value.parse().unwrap_or_else(|_| usage());
                if !(s > 0.0 && s < 3600.0) {
                    usage()
                }
                args.duration = Duration::from_secs_f64(s);
            }
            "--gid" => args.gid = Some(value.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    args
}

/// One failing openat. The result is ignored: the failure is the point.
fn openat_once(path: &CString) {
    // SAFETY: `path` is a valid NUL-terminated string; a failed openat returns -1 and opens nothing.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
    if fd >= 0 {
        // SAFETY: fd was just returned to us by openat.
        unsafe { libc::close(fd) };
    }
}

/// Forks and execs the child for the exec storm, and reaps it.
struct Spawner {
    path: CString,
    argv: [*const libc::c_char; 2],
    envp: [*const libc::c_char; 1],
    children: usize,
    /// Forks that failed: no execve, no event.
    fork_failed: u64,
    /// Children that did not exit 0 (their execve was still made, and audited).
    child_failed: u64,
}

impl Spawner {
    fn new() -> Spawner {
        let path = CString::new("/bin/true").expect("no NUL");
        let argv = [path.as_ptr(), std::ptr::null()];
        Spawner { path, argv, envp: [std::ptr::null()], children: 0, fork_failed: 0, child_failed: 0 }
    }

    fn spawn(&mut self) {
        while self.children >= MAX_CHILDREN {
            self.reap(true);
        }
        // SAFETY: this program is single-threaded; the child calls only execve and _exit, both
        // async-signal-safe, with argv/envp built before the fork.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => unsafe {
                libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
                libc::_exit(127);
            },
            p if p > 0 => self.children += 1,
            _ => {
                self.fork_failed += 1;
                self.reap(true);
            }
        }
    }

    /// Reap exited children: all that are ready, and if `block`, at least one.
    fn reap(&mut self, mut block: bool) {
        while self.children > 0 {
            let mut status = 0;
            let flags = if block { 0 } else { libc::WNOHANG };
            // SAFETY: waitpid writes one int into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
            if pid <= 0 {
                return;
            }
            self.children -= 1;
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                self.child_failed += 1;
            }
            block = false;
        }
    }
}

fn main() {
    let args = parse_args();
    if let Some(gid) = args.gid {
        // SAFETY: plain syscalls on this process; setgroups with an empty list drops supplementary groups.
        let ok = unsafe { libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(gid) == 0 };
        if !ok {
            eprintln!("storm: setgid({gid}): {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
    }
    let missing = CString::new(MISSING).expect("no NUL");
    let mut spawner = Spawner::new();
    let mut op = || match args.workload {
        Workload::Openat => openat_once(&missing),
        Workload::Exec => {
            spawner.spawn();
            spawner.reap(false);
        }
    };

    let start = Instant::now();
    let mut done: u64 = 0;
    if args.rate == 0 {
        // Flat out: look at the clock once per 256 operations.
        while start.elapsed() < args.duration {
            for _ in 0..256 {
                op();
            }
            done += 256;
        }
    } else {
        let burst = (args.rate / WAKEUPS_PER_S).max(1);
        let total = (args.rate as f64 * args.duration.as_secs_f64()) as u64;
        while done < total {
            // Operations due by now; after a late wake-up several bursts run back to back.
            let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
            if done < due {
                let n = (due - done).min(burst);
                for _ in 0..n {
                    op();
                }
                done += n;
                continue;
            }
            let next = Duration::from_secs_f64((done + burst).min(total) as f64 / args.rate as f64);
            std::thread::sleep(next.saturating_sub(start.elapsed()));
        }
    }
    while spawner.children > 0 {
        spawner.reap(true);
    }
    let wall = start.elapsed().as_secs_f64();
    // Audited syscalls made: every openat; every execve (a fork that failed made none).
    let syscalls = done - spawner.fork_failed;
    let workload = match args.workload {
        Workload::Openat => "openat",
        Workload::Exec => "exec",
    };
    println!(
        "{{\"workload\":\"{workload}\",\"rate\":{},\"syscalls\":{syscalls},\"wall_s\":{wall:.6},\"achieved\":{:.1},\"pid\":{},\"fork_failed\":{},\"child_failed\":{}}}",
        args.rate,
        syscalls as f64 / wall,
        std::process::id(),
        spawner.fork_failed,
        spawner.child_failed
    );
}
