//! Shared parts of the chaos suite (tests/chaos_*.rs): the daemon as a child whose stdout and
//! stderr go to files, marker workloads, and fake receivers that misbehave on purpose.
//!
//! Fake receivers are small std TCP listeners in the test process. Each connection keeps the
//! behaviour it was accepted under (a stalled or garbled stream cannot be resumed cleanly), and
//! only connections accepted in [`Mode::Good`] take messages.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use auditrelay::output::relp::frame::{encode, Command as RelpCommand, Decoder};

/// `auditrelay` started by a test, stdout and stderr in files of `dir`.
pub struct Spawned {
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Spawned {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Spawned {
        let out = dir.join(format!("{name}.stdout"));
        let err = dir.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start auditrelay");
        Spawned { child, out, err }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Complete stdout lines parsed as JSON (a line being written is left out).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |n| &text[..n]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
            .collect()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn wait_registered(&mut self, timeout: Duration) {
        let err = self.err.clone();
        crate::common::wait_registered(&mut self.child, timeout, || std::fs::read_to_string(&err).unwrap_or_default());
    }

    /// Registered, and the kernel lists a rule with `key`: the daemon registers first and loads
    /// its rules after, so a marker exec'd in between would not be audited.
    pub fn wait_ready(&mut self, key: &str, timeout: Duration) {
        self.wait_registered(timeout);
        let deadline = Instant::now() + timeout;
        let mut client = AuditClient::open().expect("socket");
        loop {
            let rules = client.list_rules().expect("AUDIT_LIST_RULES");
            if rules.iter().any(|r| r.windows(key.len()).any(|w| w == key.as_bytes())) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("auditrelay exited early ({st}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "rule {key} not loaded within {timeout:?}: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the exit (without signalling) up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig);
    }

    /// SIGTERM; the exit status within `within`, else the test fails.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let st = self.wait_exit(within);
        st.unwrap_or_else(|| panic!("did not exit within {within:?} of SIGTERM: {}", self.stderr()))
    }

    pub fn kill9(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Config: one execve rule with `key`, a spool in `dir`, and the given `[[output]]` tables.
pub fn config(dir: &crate::common::TempDir, key: &str, extra: &str) -> String {
    let rules = format!("-a always,exit -F arch=b64 -S execve -k {key}\n");
    let spool = format!(
        "\n[spool]\ndir = {:?}\nfsync_interval = \"100ms\"\ncursor_interval = \"100ms\"\ndrain_timeout = \"5s\"\n",
        dir.path("spool").display().to_string()
    );
    dir.config_with_rules(&rules, &format!("{spool}{extra}"))
}

/// A RELP output table with short retry and timeout settings.
pub fn relp_output(address: &str) -> String {
    format!(
        "\n[[output]]\ntype = \"relp\"\nname = \"relp\"\naddress = \"{address}\"\nreconnect_min = \"100ms\"\n\
         reconnect_max = \"500ms\"\nconnect_timeout = \"1s\"\nresponse_timeout = \"2s\"\nshutdown_timeout = \"1s\"\n"
    )
}

pub fn tcp_output(address: &str) -> String {
    format!(
        "\n[[output]]\ntype = \"tcp\"\nname = \"tcp\"\naddress = \"{address}\"\nreconnect_min = \"100ms\"\n\
         reconnect_max = \"500ms\"\nconnect_timeout = \"1s\"\nwrite_timeout = \"2s\"\nbatch = 16\n"
    )
}

pub fn file_output(path: &Path) -> String {
    format!("\n[[output]]\ntype = \"file\"\nname = \"file\"\npath = {:?}\n", path.display().to_string())
}

/// Exec `/bin/true <tag>-<i>` for i in `range`.
pub fn exec_markers(tag: &str, range: std::ops::Range<usize>) {
    for i in range {
        let st = Command::new("/bin/true").arg(format!("{tag}-{i}")).status().expect("/bin/true");
        assert!(st.success());
    }
}

/// The marker number of an event (`a1`, or `a0` for a program exec'd under the marker as its
/// name, `= "<tag>-<i>"` in its EXECVE record).
pub fn marker_of(event: &serde_json::Value, tag: &str) -> Option<usize> {
    event["records"].as_array()?.iter().filter(|r| r["type"] == "EXECVE").find_map(|r| {
        ["a1", "a0"].iter().find_map(|k| r["fields"][*k].as_str()?.strip_prefix(tag)?.strip_prefix('-')?.parse().ok())
    })
}

/// The JSON event inside a syslog message (everything from the first `{`).
pub fn event_of_message(msg: &[u8]) -> serde_json::Value {
    let at = msg.iter().position(|b| *b == b'{').unwrap_or_else(|| panic!("no JSON: {}", String::from_utf8_lossy(msg)));
    serde_json::from_slice(&msg[at..])
        .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {}", String::from_utf8_lossy(msg)))
}

pub fn markers_in(events: &[serde_json::Value], tag: &str) -> BTreeSet<usize> {
    events.iter().filter_map(|e| marker_of(e, tag)).collect()
}

/// Poll `get` until it holds every marker in `0..n` or `timeout` passes; returns what it held.
pub fn wait_markers(
    tag: &str,
    n: usize,
    timeout: Duration,
    get: impl Fn() -> Vec<serde_json::Value>,
) -> BTreeSet<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = markers_in(&get(), tag);
        if (0..n).all(|i| got.contains(&i)) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a fake receiver does with a connection accepted while it is in this mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing listens on the port (connect: ECONNREFUSED).
    Refuse,
    /// Accept, read what comes, then reset the connection (SO_LINGER 0). Plain TCP: a small
    /// window, and the reset comes once the queue is still, with all of it recorded.
    Reset,
    /// RELP: open accepted, every syslog frame answered `500`.
    Code500,
    /// Answer whatever comes with bytes that are no protocol at all.
    Garbage,
    /// Accept and read everything, never answer.
    Stall,
    /// A correct receiver that keeps every message.
    Good,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Relp,
    /// RFC 6587 octet counting, as the TCP output sends it.
    Tcp,
}

/// A receiver on a fixed loopback port whose behaviour the test switches.
pub struct FakeReceiver {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    /// Messages taken by connections in [`Mode::Good`].
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Bytes read and thrown away by connections in other modes (what a receiver "had" and lost).
    swallowed: Arc<Mutex<Vec<u8>>>,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeReceiver {
    pub fn start(proto: Proto, mode: Mode) -> FakeReceiver {
        let port = crate::support::free_port();
        let r = FakeReceiver {
            port,
            mode: Arc::new(Mutex::new(mode)),
            got: Arc::default(),
            swallowed: Arc::default(),
            accepted: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, got, swallowed, accepted, stop) =
            (r.mode.clone(), r.got.clone(), r.swallowed.clone(), r.accepted.clone(), r.stop.clone());
        std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !stop.load(Ordering::Relaxed) {
                let m = *mode.lock().unwrap();
                if m == Mode::Refuse {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let Some(l) = listener.as_ref() else {
                    match TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => {
                            l.set_nonblocking(true).unwrap();
                            if proto == Proto::Tcp {
                                small_receive_window(&l);
                            }
                            listener = Some(l);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                    continue;
                };
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        accepted.fetch_add(1, Ordering::Relaxed);
                        let (got, swallowed, stop) = (got.clone(), swallowed.clone(), stop.clone());
                        std::thread::spawn(move || serve(s, proto, m, &got, &swallowed, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        r
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().iter().map(|m| event_of_message(m)).collect()
    }

    pub fn messages(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn swallowed(&self) -> Vec<u8> {
        self.swallowed.lock().unwrap().clone()
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One SOL_SOCKET option of the open socket `fd`, set to `value`.
fn set_socket_option<T>(fd: std::os::fd::RawFd, name: libc::c_int, value: &T) {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from `value`, a live reference; `fd` is
    // open, and both callers pass the type the option takes.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        );
    }
}

fn reset_on_close(s: &TcpStream) {
    set_socket_option(s.as_raw_fd(), libc::SO_LINGER, &libc::linger { l_onoff: 1, l_linger: 0 });
}

/// A receive buffer of the kernel's minimum for the connections `l` accepts (set before their
/// handshake, so the window they advertise is small): a plain-TCP sender then has most of a
/// batch still unacknowledged in its own send queue when [`reset_tcp_with_what_it_holds`] resets.
fn small_receive_window(l: &TcpListener) {
    set_socket_option(l.as_raw_fd(), libc::SO_RCVBUF, &(1 as libc::c_int));
}

/// Plain TCP, [`Mode::Reset`]: what a plain-TCP receiver "had" at its reset is everything its
/// kernel acknowledged, read by it or still queued unread; the sender counts all of that as
/// delivered (`SIOCOUTQ` reads 0). Reading then resetting at once left a race: bytes acked into
/// the queue between the read and the reset were lost without being seen here.
///
/// So: wait until the queue has stopped growing (the small window is full or the sender has
/// nothing more), record the whole queue with `MSG_PEEK` (peeking frees no window, so nothing new
/// is let in), and reset. Nothing can arrive between the peek and the reset: the window is closed,
/// or the sender is idle and the test makes no new markers by then.
fn reset_tcp_with_what_it_holds(s: &TcpStream, swallowed: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    let fd = s.as_raw_fd();
    let queued = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points to a live local.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD as _, &mut n as *mut libc::c_int) };
        if r < 0 {
            None
        } else {
            Some(n as usize)
        }
    };
    let (mut last, mut still) = (0usize, 0u32);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let Some(n) = queued() else { return };
        if n > 0 && n == last {
            still += 1;
        } else {
            still = 0;
        }
        last = n;
        // 200 ms without a byte more.
        if still < 4 {
            continue;
        }
        let mut buf = vec![0u8; n];
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which is live and that long.
        let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
        if got <= 0 {
            return;
        }
        swallowed.lock().unwrap().extend_from_slice(&buf[..got as usize]);
        reset_on_close(s);
        return;
    }
}

fn serve(
    mut s: TcpStream,
    proto: Proto,
    mode: Mode,
    got: &Mutex<Vec<Vec<u8>>>,
    swallowed: &Mutex<Vec<u8>>,
    stop: &AtomicBool,
) {
    if proto == Proto::Tcp && mode == Mode::Reset {
        return reset_tcp_with_what_it_holds(&s, swallowed, stop);
    }
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut dec = Decoder::new(1 << 24);
    let mut pending: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let bytes = &buf[..n];
        match mode {
            Mode::Refuse => return,
            Mode::Reset => {
                swallowed.lock().unwrap().extend_from_slice(bytes);
                reset_on_close(&s);
                return;
            }
            Mode::Stall => {
                swallowed.lock().unwrap().extend_from_slice(bytes);
                continue;
            }
            Mode::Garbage => {
                swallowed.lock().unwrap().extend_from_slice(bytes);
                if s.write_all(b"\x00\xffgarbage \x1d not a protocol\n\n7 rsp x\n").is_err() {
                    return;
                }
                continue;
            }
            Mode::Code500 | Mode::Good => {}
        }
        if proto == Proto::Tcp {
            pending.extend_from_slice(bytes);
            // LEN SP MSG, repeated.
            while let Some(sp) = pending.iter().position(|b| *b == b' ') {
                let len: usize = std::str::from_utf8(&pending[..sp]).unwrap().parse().unwrap();
                if pending.len() < sp + 1 + len {
                    break;
                }
                got.lock().unwrap().push(pending[sp + 1..sp + 1 + len].to_vec());
                pending.drain(..sp + 1 + len);
            }
            continue;
        }
        dec.extend(bytes);
        let mut out = Vec::new();
        loop {
            let f = match dec.decode() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            match f.command {
                RelpCommand::Open => {
                    encode(f.txnr, "rsp", b"200 OK\nrelp_version=0\nrelp_software=chaos\ncommands=syslog", &mut out)
                }
                RelpCommand::Syslog if mode == Mode::Code500 => encode(f.txnr, "rsp", b"500 not now", &mut out),
                RelpCommand::Syslog => {
                    got.lock().unwrap().push(f.data.clone());
                    encode(f.txnr, "rsp", b"200 OK", &mut out);
                }
                _ => {
                    encode(f.txnr, "rsp", b"", &mut out);
                    encode(0, "serverclose", b"", &mut out);
                    let _ = s.write_all(&out);
                    return;
                }
            }
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// The kernel's text for one execve argument: hex when it holds a quote, a byte below 0x21 or
/// above 0x7e (kernel audit_string_contains_control), else the bytes as they are.
pub fn kernel_form(arg: &[u8]) -> String {
    if arg.iter().any(|&b| b == b'"' || !(0x21..=0x7e).contains(&b)) {
        arg.iter().map(|b| format!("{b:02X}")).collect()
    } else {
        String::from_utf8(arg.to_vec()).unwrap()
    }
}

pub fn lost_now() -> u32 {
    AuditClient::open().and_then(|mut c| c.status()).expect("AUDIT_GET").lost
}
