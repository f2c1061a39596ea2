//! `count-reader`: the physical-limit proxy of the live benchmark (benches/live.py).
//!
//! ```text
//! count-reader --pattern 'key="arbench"' --counts FILE [--rcvbuf BYTES] [--batch N]
//! count-reader --stdin --pattern '"key":"arbench"' --counts FILE
//! ```
//! Netlink mode registers as the audit daemon (AUDIT_SET pid) on a NETLINK_AUDIT socket with a large
//! SO_RCVBUFFORCE buffer, receives with recvmmsg in batches and does nothing else: it counts
//! datagrams, and the SYSCALL records whose text contains the pattern (memmem). That is the least
//! any audit daemon must do, so its drain rate and CPU per event are the limit the others are
//! measured against. On SIGTERM or SIGINT it unregisters, reads what is still queued, writes its
//! counts and exits.
//!
//! Stdin mode counts the occurrences of the pattern in its standard input: the benchmark pipes
//! `auditrelay run` with no outputs (JSON lines on stdout) into it, so events can be counted without
//! a file.
//!
//! Either way the counts are a JSON object, rewritten (write + rename) into FILE about every 100 ms
//! while running, so the driver can follow them, and once more at exit:
//! `{"datagrams":N,"matched":M,"overruns":O,"truncated":T,"done":false}` (`done` is true in the last;
//! in stdin mode `datagrams` counts reads).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use auditrelay::netlink::codec;
use auditrelay::netlink::socket::{AuditSocket, Batch, BatchBuffers, Wait};
use memchr::memmem;

/// `AUDIT_SYSCALL`: the record that carries the rule's key.
const AUDIT_SYSCALL: u16 = 1300;
const COUNTS_EVERY: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

#[derive(Default)]
struct Counts {
    datagrams: u64,
    matched: u64,
    overruns: u64,
    truncated: u64,
}

impl Counts {
    fn write(&self, path: &Path, done: bool) {
        let text = format!(
            "{{\"datagrams\":{},\"matched\":{},\"overruns\":{},\"truncated\":{},\"done\":{done}}}\n",
            self.datagrams, self.matched, self.overruns, self.truncated
        );
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            eprintln!("count-reader: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

struct Args {
    stdin: bool,
    pattern: Vec<u8>,
    counts: PathBuf,
    rcvbuf: usize,
    batch: usize,
}

fn usage() -> ! {
    eprintln!("usage: count-reader [--stdin] --pattern TEXT --counts FILE [--rcvbuf BYTES] [--batch N]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    // 64 MiB and 64 slots: auditrelay's own defaults ([netlink] receive_buffer and batch).
    let mut args = Args { stdin: false, pattern: Vec::new(), counts: PathBuf::new(), rcvbuf: 64 << 20, batch: 64 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stdin" {
            args.stdin = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--pattern" => args.pattern = value.into_bytes(),
            "--counts" => args.counts = PathBuf::from(value),
            "--rcvbuf" => args.rcvbuf = value.parse().unwrap_or_else(|_| usage()),
            "--batch" => args.batch = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.pattern.is_empty() || args.counts.as_os_str().is_empty() {
        usage()
    }
    args
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic. No SA_RESTART, so a blocked recvmmsg or
        // read returns EINTR and the loop sees STOP.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Count one event datagram: every datagram, and SYSCALL records carrying the pattern.
fn count_datagram(counts: &mut Counts, finder: &memmem::Finder<'_>, datagram: &[u8], truncated: bool) {
    counts.datagrams += 1;
    counts.truncated += u64::from(truncated);
    if codec::Header::parse(datagram).is_some_and(|h| h.kind == AUDIT_SYSCALL)
        && finder.find(codec::event_payload(datagram)).is_some()
    {
        counts.matched += 1;
    }
}

fn run_netlink(args: &Args) -> Result<Counts, String> {
    let finder = memmem::Finder::new(&args.pattern);
    let socket = AuditSocket::unicast().map_err(|e| e.to_string())?;
    let rcvbuf = socket.set_receive_buffer(args.rcvbuf).map_err(|e| e.to_string())?;
    let mut client = AuditClient::with_socket(socket).map_err(|e| e.to_string())?;
    client.set_pid(std::process::id()).map_err(|e| format!("cannot register as the audit daemon: {e}"))?;
    eprintln!("count-reader: registered as the audit daemon (pid {}, {rcvbuf:?})", std::process::id());
    let (socket, early) = client.into_parts();
    socket.set_receive_timeout(COUNTS_EVERY).map_err(|e| e.to_string())?;

    let mut counts = Counts::default();
    for d in &early {
        count_datagram(&mut counts, &finder, d, false);
    }
    let mut buffers = BatchBuffers::new(args.batch);
    let mut last_write = Instant::now();
    let mut receive = |counts: &mut Counts| -> Result<bool, String> {
        match buffers.receive(&socket, Wait::ForOne).map_err(|e| e.to_string())? {
            Batch::Received(n) => {
                for i in 0..n {
                    let (d, truncated) = buffers.get(i);
                    count_datagram(counts, &finder, d, truncated);
                }
                Ok(true)
            }
            Batch::Idle => Ok(false),
            Batch::Overrun => {
                counts.overruns += 1;
                Ok(true)
            }
        }
    };
    while !STOP.load(Ordering::Relaxed) {
        receive(&mut counts)?;
        if last_write.elapsed() >= COUNTS_EVERY {
            counts.write(&args.counts, false);
            last_write = Instant::now();
        }
    }
    // Only the registered daemon's own process may unregister it; then take what is still queued.
    let unregistered = AuditClient::open().and_then(|mut c| c.set_pid(0));
    socket.set_receive_timeout(Duration::from_millis(20)).map_err(|e| e.to_string())?;
    while receive(&mut counts)? {}
    unregistered.map_err(|e| format!("cannot unregister: {e}"))?;
    Ok(counts)
}

fn run_stdin(args: &Args) -> Result<Counts, String> {
    let finder = memmem::Finder::new(&args.pattern);
    let keep = args.pattern.len() - 1;
    let mut counts = Counts::default();
    let mut stdin = std::io::stdin().lock();
    // The last `keep` bytes of each chunk are carried over, so a match split between reads counts once.
    let mut buf = vec![0u8; 1 << 20];
    let mut carried = 0;
    let mut last_write = Instant::now();
    let mut written = 0;
    loop {
        // Wait for input at most COUNTS_EVERY, so the counts file is current also when input stops.
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        let ready = unsafe { libc::poll(&mut pfd, 1, COUNTS_EVERY.as_millis() as libc::c_int) };
        if ready == 0 {
            if counts.matched != written {
                counts.write(&args.counts, false);
                written = counts.matched;
            }
            continue;
        }
        let n = match stdin.read(&mut buf[carried..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read stdin: {e}")),
        };
        counts.datagrams += 1;
        let filled = carried + n;
        let mut end_of_last_match = 0;
        for at in finder.find_iter(&buf[..filled]) {
            counts.matched += 1;
            end_of_last_match = at + args.pattern.len();
        }
        let tail_start = filled.saturating_sub(keep).max(end_of_last_match);
        buf.copy_within(tail_start..filled, 0);
        carried = filled - tail_start;
        if last_write.elapsed() >= COUNTS_EVERY {
            counts.write(&args.counts, false);
            written = counts.matched;
            last_write = Instant::now();
        }
    }
    Ok(counts)
}

fn main() {
    let args = parse_args();
    let result = if args.stdin {
        run_stdin(&args)
    } else {
        install_signal_handlers();
        run_netlink(&args)
    };
    match result {
        Ok(counts) => counts.write(&args.counts, true),
        Err(e) => {
            eprintln!("count-reader: {e}");
            std::process::exit(1);
        }
    }
}
