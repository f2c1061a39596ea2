//! Shared helpers for end-to-end tests against the real kernel.
//!
//! Only one process can be the audit daemon and rules are global, so every kernel test holds an
//! exclusive flock on [`LOCK_PATH`] (scripts use `flock` on the same file) for its whole run, and a
//! [`KernelGuard`] puts back the status and rule list it found, also when the test fails. They
//! need root and fail (rather than skip) without it: CI runs them as root.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use auditrelay::netlink::status::{mask, AuditStatus};
use nix::fcntl::{Flock, FlockArg};

pub const LOCK_PATH: &str = "/tmp/auditrelay-kernel.lock";

pub struct KernelGuard {
    _lock: Flock<File>,
    before: AuditStatus,
    rules: Vec<Vec<u8>>,
}

impl KernelGuard {
    pub fn take() -> KernelGuard {
        assert!(
            nix::unistd::geteuid().is_root(),
            "kernel tests need root (CAP_AUDIT_CONTROL): run them as tests/run-all.sh does"
        );
        let file = File::options().create(true).truncate(false).write(true).open(LOCK_PATH).expect("open lock file");
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e).expect("flock");
        let mut client = AuditClient::open().expect("audit netlink socket");
        let before = client.status().expect("AUDIT_GET");
        assert_ne!(before.enabled, 2, "kernel audit rules are locked (enabled=2): kernel tests cannot run");
        assert_eq!(
            before.pid, 0,
            "another audit daemon (pid {}) is registered; tests need the kernel to themselves",
            before.pid
        );
        let rules = client.list_rules().expect("AUDIT_LIST_RULES");
        KernelGuard { _lock: lock, before, rules }
    }

    pub fn before(&self) -> AuditStatus {
        self.before
    }

    /// The kernel's rules when the guard was taken.
    pub fn rules_before(&self) -> &[Vec<u8>] {
        &self.rules
    }

    /// The current status.
    pub fn status(&self) -> AuditStatus {
        AuditClient::open().and_then(|mut c| c.status()).expect("AUDIT_GET")
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        let Ok(mut client) = AuditClient::open() else { return };
        if let Ok(now) = client.status() {
            if now.pid != 0 && now.pid != self.before.pid {
                // A daemon a test started is still registered: it is a child of ours; kill it.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(now.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                std::thread::sleep(Duration::from_millis(200));
                let _ = client.set_pid(0);
            }
        }
        // Put the rule list back exactly, order included.
        if let Ok(rules) = client.list_rules() {
            if rules != self.rules {
                for rule in &rules {
                    let _ = client.delete_rule(rule);
                }
                for rule in &self.rules {
                    let _ = client.add_rule(rule);
                }
            }
        }
        let b = self.before;
        let _ = client.set_status(&AuditStatus {
            mask: mask::ENABLED | mask::FAILURE | mask::RATE_LIMIT | mask::BACKLOG_LIMIT | mask::BACKLOG_WAIT_TIME,
            ..b
        });
    }
}

/// A datagram socket in systemd's place (`NOTIFY_SOCKET`): the daemon sends `READY=1` on it
/// once its rules are loaded and its reader runs. Registration comes before the rules, so a test
/// that acts as soon as the kernel names the daemon may exec before anything audits it.
pub struct Ready {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Ready {
    pub fn new() -> Ready {
        let path = std::env::temp_dir().join(format!("{}.notify", marker("ready")));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        Ready { socket, path }
    }

    /// Have `cmd` notify this socket.
    pub fn pass_to(&self, cmd: &mut Command) {
        cmd.env("NOTIFY_SOCKET", &self.path);
    }

    /// Whether `READY=1` arrived (waits up to 100 ms).
    fn arrived(&self) -> bool {
        let mut buf = [0u8; 512];
        match self.socket.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"),
            Err(_) => false,
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running `auditrelay` with its stdout lines arriving on a channel.
pub struct Daemon {
    pub child: Child,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
    /// Set: [`Daemon::wait_registered`] also waits for `READY=1` (rules loaded, reader running).
    pub ready: Option<Ready>,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        let ready = Ready::new();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrelay"));
        ready.pass_to(&mut cmd);
        let mut child =
            cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start auditrelay");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines: rx, seen: Vec::new(), ready: Some(ready) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until the kernel names this process as its audit daemon and, with [`Daemon::ready`]
    /// set, until it said `READY=1` (its rules are loaded and its reader runs).
    pub fn wait_registered(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut client = AuditClient::open().expect("socket");
        let mut registered = false;
        let mut ready = self.ready.is_none();
        loop {
            registered = registered || client.status().map(|s| s.pid).ok() == Some(self.pid());
            ready = ready || self.ready.as_ref().is_some_and(Ready::arrived);
            if registered && ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("auditrelay exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "auditrelay did not {} within {timeout:?}",
                if registered { "say READY=1" } else { "register" }
            );
            if ready {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The first JSON line (parsed) for which `pred` holds, waiting up to `timeout`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        for line in &self.seen {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else { break };
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            self.seen.push(line);
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    /// SIGTERM and wait for the exit status, collecting the remaining output.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                self.seen.extend(self.lines.try_iter());
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return (status, std::mem::take(&mut self.seen));
            }
            assert!(Instant::now() < deadline, "auditrelay did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until the kernel names `child` as its audit daemon; `why` says more when it does not.
pub fn wait_registered(child: &mut Child, timeout: Duration, why: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    let mut client = AuditClient::open().expect("socket");
    loop {
        if client.status().map(|s| s.pid).ok() == Some(child.id()) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("auditrelay exited early: {status} {}", why());
        }
        assert!(Instant::now() < deadline, "auditrelay did not register within {timeout:?} {}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run Debian's auditctl (the reference implementation) and insist it succeeds.
pub fn auditctl(args: &[&str]) {
    let out = Command::new("auditctl").args(args).output().expect("run auditctl (apt-get install auditd)");
    assert!(out.status.success(), "auditctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A marker unique to this test run.
pub fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("auditrelay-{name}-{}-{nanos}", std::process::id())
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(marker(name));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }

    /// Write a config whose only rule source is `rules` (auditctl syntax); returns the config path.
    pub fn config_with_rules(&self, rules: &str, extra_toml: &str) -> String {
        let rules_path = self.path("test.rules");
        std::fs::write(&rules_path, rules).expect("write rules");
        let config = self.path("auditrelay.toml");
        std::fs::write(&config, format!("[rules]\nsources = [{:?}]\n{extra_toml}", rules_path.display().to_string()))
            .expect("write config");
        config.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
