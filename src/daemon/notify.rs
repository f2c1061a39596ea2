//! Telling systemd how the daemon is doing (sd_notify), for packaging/auditrelay.service's
//! `Type=notify` and `WatchdogSec=`.
//!
//! The unit starts its dependents and reports "started" only on [`ready`], which the daemon sends
//! once the kernel rules are loaded and the netlink reader runs: a unit that is "active" is one
//! whose events are being read. With `WatchdogSec=` set, systemd passes `WATCHDOG_USEC` and kills
//! and restarts the daemon when no [`watchdog`] ping arrives within it; [`watchdog_interval`] is
//! how often to ping (half the timeout, as sd_watchdog_enabled(3) advises), so ping from the task
//! whose liveness matters (the one that reads the kernel), not from an idle timer.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset: a shell, the tests) every call does nothing and
//! succeeds, and [`watchdog_interval`] is `None`.

use std::io;
use std::time::Duration;

use sd_notify::NotifyState;

/// A notification that could not be sent to the socket systemd named.
#[derive(Debug, thiserror::Error)]
#[error("cannot send {state} to systemd's notify socket: {source}")]
pub struct NotifyError {
    state: &'static str,
    #[source]
    source: io::Error,
}

fn send(state: &'static str, message: &[NotifyState]) -> Result<(), NotifyError> {
    sd_notify::notify(message).map_err(|source| NotifyError { state, source })
}

/// `READY=1`: rules loaded, reader running. systemd marks the unit started.
pub fn ready() -> Result<(), NotifyError> {
    send("READY=1", &[NotifyState::Ready])
}

/// `WATCHDOG=1`: still alive. Send every [`watchdog_interval`].
pub fn watchdog() -> Result<(), NotifyError> {
    send("WATCHDOG=1", &[NotifyState::Watchdog])
}

/// `STOPPING=1`: shutting down (draining, restoring the kernel's settings); systemd waits up to
/// the unit's `TimeoutStopSec=`.
pub fn stopping() -> Result<(), NotifyError> {
    send("STOPPING=1", &[NotifyState::Stopping])
}

/// How often to call [`watchdog`]: half of the `WatchdogSec=` systemd set for this process, or
/// `None` when there is no watchdog (not under systemd, or the variable is meant for another pid).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// One test for all of it: it sets process-wide environment variables, which tests running in
    /// parallel must not see half-set.
    #[test]
    fn silent_without_systemd_and_sends_each_state_with_it() {
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
        assert!(ready().is_ok() && watchdog().is_ok() && stopping().is_ok());
        assert_eq!(watchdog_interval(), None);

        let dir = std::env::temp_dir().join(format!("auditrelay-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "30000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        let mut buf = [0u8; 256];
        let mut received = Vec::new();
        for send in [ready, watchdog, stopping] {
            send().unwrap();
            let n = socket.recv(&mut buf).unwrap();
            received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let interval = watchdog_interval();
        std::env::set_var("WATCHDOG_PID", "1");
        let other_pid = watchdog_interval();
        std::fs::remove_file(&path).unwrap();
        let gone = ready();
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(received, ["READY=1\n", "WATCHDOG=1\n", "STOPPING=1\n"]);
        assert_eq!(interval, Some(Duration::from_secs(15)));
        assert_eq!(other_pid, None, "WATCHDOG_PID names another process");
        let err = gone.expect_err("the socket is gone: the failure is reported, not swallowed");
        assert!(err.to_string().starts_with("cannot send READY=1 to systemd's notify socket"), "{err}");
    }
}
