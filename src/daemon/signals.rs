//! Process signals as flags: handlers only store to atomics (async-signal-safe); the threads that
//! act on them poll with bounded waits.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    let flag = match sig {
        libc::SIGHUP => &RELOAD,
        libc::SIGUSR1 => &REOPEN,
        _ => &STOP,
    };
    flag.store(true, Ordering::Release);
}

/// SIGTERM/SIGINT: stop. SIGHUP: reload rule sources. SIGUSR1: reopen output files (logrotate).
pub fn install() -> Result<(), nix::Error> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// True once per SIGHUP.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::AcqRel)
}

/// True once per SIGUSR1.
pub fn take_reopen() -> bool {
    REOPEN.swap(false, Ordering::AcqRel)
}
