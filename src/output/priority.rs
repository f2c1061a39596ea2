//! CPU priorities: the kernel reader and event processing above the rest of the host, the output
//! threads below them.
//!
//! Why: on a busy host the reader must keep the kernel's backlog short (a full backlog loses
//! records, or stalls the audited processes for `backlog_wait_time`), while the outputs can fall
//! behind for a while without losing anything — the spool holds what they have not shipped yet.
//! Linux keeps a nice value per thread and copies it to the threads a thread creates, so:
//! - at start, before any thread is created and before the capability drop, the daemon's main
//!   thread (processing) lowers its nice value by `[netlink] priority_boost` (auditd's
//!   `priority_boost`; default 0 here, see there why): every thread inherits it; this needs
//!   CAP_SYS_NICE, which the drop then removes;
//! - each output thread raises its own nice value by `[spool] output_nice` when it starts (no
//!   privilege needed); the spool reader threads it starts inherit that.

/// Add `by` (0..=19) to the calling thread's nice value. A failure is logged, not fatal: the
/// outputs then compete with the reader on equal terms, which costs drain rate, not events.
pub fn lower_this_thread(by: i32) {
    adjust_this_thread(by, "output thread priority");
}

/// Take `by` (0..=20) from the calling thread's nice value (see the module docs). A failure
/// (no CAP_SYS_NICE) is logged, not fatal: the reader then competes with the host's processes on
/// equal terms, which costs drain rate under load, not events already read.
pub fn boost_this_thread(by: i32) {
    adjust_this_thread(-by, "reader priority boost");
}

fn adjust_this_thread(by: i32, what: &str) {
    if by == 0 {
        return;
    }
    let tid = nix::unistd::gettid().as_raw();
    // getpriority can return -1 as a value: errno tells an error apart.
    nix::errno::Errno::clear();
    // SAFETY: plain syscalls on this thread's own id with integer arguments.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if current == -1 && nix::errno::Errno::last_raw() != 0 {
        log::warn!("{what}: getpriority: {}", std::io::Error::last_os_error());
        return;
    }
    let target = (current + by).clamp(-20, 19);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, target) } != 0 {
        log::warn!("{what}: setpriority({target}): {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn raises_this_threads_nice_value_and_threads_it_starts_inherit_it() {
        std::thread::spawn(|| {
            let before = nice_of_this_thread();
            lower_this_thread(3);
            let after = nice_of_this_thread();
            assert_eq!(after, (before + 3).min(19));
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap();
            assert_eq!(child, after, "a thread started by an output thread inherits its priority");
        })
        .join()
        .unwrap();
        // Other threads (the test harness's) are untouched.
        lower_this_thread(0);
    }

    /// Run as root (the tests are): lowering a nice value needs CAP_SYS_NICE.
    #[test]
    fn a_boost_lowers_this_threads_nice_value_and_outputs_still_sit_below_it() {
        std::thread::spawn(|| {
            let before = nice_of_this_thread();
            boost_this_thread(4);
            assert_eq!(nice_of_this_thread(), (before - 4).max(-20));
            let output = std::thread::spawn(|| {
                lower_this_thread(10);
                nice_of_this_thread()
            })
            .join()
            .unwrap();
            assert_eq!(output, (before - 4).max(-20) + 10);
        })
        .join()
        .unwrap();
    }
}
