//! The control socket: a root-only unix stream socket on which the running daemon answers
//! `auditrelay status` with its [`Snapshot`].
//!
//! Protocol: the client sends one line (`status`), the daemon answers one JSON line and closes.
//! `status` → the snapshot; anything else → `{"error": "..."}`. A request longer than
//! [`MAX_REQUEST`] or slower than [`IO_TIMEOUT`] is dropped. Connections are served one at a time
//! on the control thread: each is bounded by the timeout, and the figures are a copy.
//!
//! Access: audit figures and output errors (host names, TLS errors) are for root. The socket's
//! directory is created 0700 when missing, the socket is 0600, and every accepted connection's
//! peer uid (SO_PEERCRED) must be 0; anyone else is refused with a logged warning, so a mistaken
//! `chmod` of the socket does not open it.
//!
//! A socket path that another live daemon answers on (e.g. a `--multicast` reader started next to
//! the registered daemon with the same config) is left to it: this daemon logs that and runs
//! without a control socket rather than steal it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Board, Snapshot};
use crate::units::HumanDuration;

pub const DEFAULT_SOCKET: &str = "/run/auditrelay/control.sock";
/// Longest request line accepted.
pub const MAX_REQUEST: usize = 256;
/// Longest reply a client reads (a snapshot is a few KiB per output).
pub const MAX_REPLY: u64 = 4 << 20;
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Path of the control socket; empty = no control socket.
    pub socket: PathBuf,
    /// `auditrelay status` exits non-zero when an output has been down this long.
    pub output_down_threshold: HumanDuration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            output_down_threshold: HumanDuration(Duration::from_secs(300)),
        }
    }
}

impl ControlConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.socket.as_os_str().is_empty() && !self.socket.is_absolute() {
            return Err(format!("control.socket {:?} must be an absolute path", self.socket));
        }
        // sun_path holds 108 bytes with its NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(format!("control.socket {:?} is longer than a unix socket path may be (107)", self.socket));
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.socket.as_os_str().is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {op}: {source}")]
    Io { path: PathBuf, op: &'static str, source: std::io::Error },
    #[error("the daemon is not running (nothing answers on {path})")]
    NotRunning { path: PathBuf },
    #[error("{path}: the daemon refused: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: unreadable reply: {message}")]
    Reply { path: PathBuf, message: String },
}

/// The running control socket; stopped and its file removed on drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Bind the socket and serve `board` from a thread named `control`. `Ok(None)` when another
    /// live daemon answers on the path (logged).
    pub fn start(config: &ControlConfig, board: Arc<Board>) -> Result<Option<ControlServer>, ControlError> {
        let path = config.socket.clone();
        let io = |op| {
            let path = path.clone();
            move |source| ControlError::Io { path, op, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create directory"))?;
            }
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(&path).is_ok() {
                    log::warn!(
                        "control socket {} is served by another running daemon: this one runs without a control socket",
                        path.display()
                    );
                    return Ok(None);
                }
                // Left behind by a daemon that was killed.
                std::fs::remove_file(&path).map_err(io("remove stale socket"))?;
            }
            Ok(_) => {
                return Err(ControlError::Io {
                    path: path.clone(),
                    op: "bind",
                    source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is not a socket"),
                })
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(&path).map_err(io("bind"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod 0600"))?;
        // Non-blocking accept after a wait for a connection (`wait_for_connection`), so the thread
        // notices `stop`; the owner's drop connects once to end the wait.
        listener.set_nonblocking(true).map_err(io("set non-blocking"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || accept_loop(&listener, &board, &stop))
                .map_err(io("start thread"))?
        };
        log::debug!("control socket on {}", path.display());
        Ok(Some(ControlServer { path, stop, thread: Some(thread) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Ends the accept loop's wait now rather than at its timeout; it sees `stop` and leaves
        // this connection unserved.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, board: &Board, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve_one(stream, board) {
                    log::debug!("control socket: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                super::wait_for_connection(std::os::fd::AsFd::as_fd(listener))
            }
            Err(e) => {
                log::warn!("control socket: accept: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn serve_one(stream: UnixStream, board: &Board) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(std::io::Error::from)?;
    let mut out = &stream;
    // The request is read before any answer, also for a refusal: closing with unread input would
    // reset the connection and the client would see ECONNRESET instead of the reason.
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST as u64)).read_line(&mut line)?;
    if cred.uid() != 0 {
        log::warn!(
            "control socket: refused a connection from uid {} (pid {}): it answers root only",
            cred.uid(),
            cred.pid()
        );
        return reply(&mut out, &error_json("permission denied: the control socket answers root only"));
    }
    let answer = match line.trim() {
        "status" => match board.latest() {
            Some(s) => serde_json::to_string(&s).unwrap_or_else(|e| error_json(&format!("encoding: {e}"))),
            None => error_json("starting: no figures yet"),
        },
        other => {
            error_json(&format!("unknown request {:?} (known: status)", other.chars().take(40).collect::<String>()))
        }
    };
    reply(&mut out, &answer)
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

fn reply(out: &mut impl Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Ask the daemon listening on `path` for its snapshot.
pub fn query(path: &Path) -> Result<Snapshot, ControlError> {
    let io = |op| move |source| ControlError::Io { path: path.to_path_buf(), op, source };
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Err(ControlError::NotRunning { path: path.to_path_buf() })
        }
        Err(e) => return Err(io("connect")(e)),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io("set timeout"))?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io("set timeout"))?;
    stream.write_all(b"status\n").map_err(io("send"))?;
    let mut text = String::new();
    (&stream).take(MAX_REPLY).read_to_string(&mut text).map_err(io("receive"))?;
    parse_reply(path, &text)
}

fn parse_reply(path: &Path, text: &str) -> Result<Snapshot, ControlError> {
    let value: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| ControlError::Reply { path: path.to_path_buf(), message: e.to_string() })?;
    if let Some(message) = value.get("error").and_then(|e| e.as_str()) {
        return Err(ControlError::Refused { path: path.to_path_buf(), message: message.to_string() });
    }
    serde_json::from_value(value).map_err(|e| ControlError::Reply { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("auditrelay-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Root (the test runs as root, as CI does) reads the figures; the directory and socket modes
    /// are root-only; a second server on the same path leaves it to the first; drop removes it.
    #[test]
    fn root_reads_the_published_snapshot() {
        let d = dir("root");
        let cfg = ControlConfig { socket: d.join("sub/control.sock"), ..ControlConfig::default() };
        let board = Arc::new(Board::default());
        let server = ControlServer::start(&cfg, board.clone()).unwrap().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("sub")), 0o700);
        assert_eq!(mode(&cfg.socket), 0o600);
        let uid = nix::unistd::geteuid().as_raw();
        let first = query(&cfg.socket);
        if uid != 0 {
            assert!(matches!(first, Err(ControlError::Refused { .. })), "{first:?}");
            return;
        }
        assert!(
            matches!(&first, Err(ControlError::Refused { message, .. }) if message.contains("no figures yet")),
            "{first:?}"
        );
        board.publish(Snapshot { version: 1, records_in: 42, ..Snapshot::default() });
        assert_eq!(query(&cfg.socket).unwrap().records_in, 42);
        assert!(ControlServer::start(&cfg, board).unwrap().is_none(), "a live socket is not stolen");
        drop(server);
        assert!(!cfg.socket.exists());
        assert!(matches!(query(&cfg.socket), Err(ControlError::NotRunning { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn relative_or_overlong_paths_are_refused() {
        let mut c = ControlConfig { socket: "run/x.sock".into(), ..ControlConfig::default() };
        assert!(c.validate().unwrap_err().contains("control.socket"));
        c.socket = PathBuf::from(format!("/{}", "x".repeat(120)));
        assert!(c.validate().is_err());
        c.socket = PathBuf::new();
        assert!(c.validate().is_ok() && !c.enabled());
    }

    #[test]
    fn an_error_reply_is_a_refusal() {
        let e = parse_reply(Path::new("/s"), "{\"error\":\"permission denied\"}\n").unwrap_err();
        assert!(e.to_string().contains("refused: permission denied"), "{e}");
        assert!(parse_reply(Path::new("/s"), "garbage").is_err());
    }
}
