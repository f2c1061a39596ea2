//! Issue 9: started by systemd (`INVOCATION_ID` set), the daemon logs to the journal's native
//! socket with a priority per level and its syslog identifier, not to stderr.
//!
//! No journald is needed: the daemon runs in a private mount namespace (`unshare --mount`) with a
//! fresh tmpfs on /run, where a small listener (python3) binds /run/systemd/journal/socket and
//! prints each datagram it gets. The run fails on purpose right after its first log lines (the
//! spool directory cannot be created), before it touches the kernel, so no kernel lock is needed.
//! Needs root (for the namespace), `unshare` (util-linux) and python3; fails without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::TempDir;

/// Binds the journal socket, runs argv with INVOCATION_ID set, prints `exit=N` and then every
/// non-empty datagram after a `---` line, one `KEY=value` line per field (newlines in values as
/// `\n`); the child's stderr goes to stderr. Fields come in the journal's native format:
/// `KEY=value\n`, or `KEY\n` + 64-bit little-endian length + value + `\n` (systemd's
/// journal-native-protocol), which tracing-journald uses for every field.
const LISTENER: &str = r#"
import os, socket, subprocess, sys
def fields(d):
    i = 0
    while i < len(d):
        nl = d.index(b"\n", i)
        line = d[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            n = int.from_bytes(d[nl + 1:nl + 9], "little")
            k, v = line, d[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        yield k + b"=" + v.replace(b"\n", b"\\n")
os.makedirs("/run/systemd/journal", exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
env = dict(os.environ, INVOCATION_ID="0123456789abcdef0123456789abcdef")
env.pop("JOURNAL_STREAM", None)
env.pop("AUDITRELAY_LOG", None)
p = subprocess.run(sys.argv[1:], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
s.setblocking(False)
sys.stdout.write("exit=%d\n" % p.returncode)
while True:
    try:
        d = s.recv(1 << 20)
    except BlockingIOError:
        break
    if d:
        sys.stdout.buffer.write(b"---\n" + b"".join(f + b"\n" for f in fields(d)))
sys.stdout.flush()
sys.stderr.buffer.write(p.stderr)
"#;

#[test]
fn under_systemd_the_log_goes_to_the_journal_with_priorities() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root for a private mount namespace (tests/run-all.sh)");
    let dir = TempDir::new("journald");
    let config = dir.path("auditrelay.toml");
    // A control socket that cannot be made (WARN), the metrics endpoint (INFO), then a spool that
    // cannot be created: the run stops before it registers with the kernel.
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"/proc/auditrelay-none/control.sock\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [spool]\ndir = \"/proc/auditrelay-none/spool\"\n\
             [[output]]\ntype = \"file\"\npath = {:?}\n",
            dir.path("out.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let script = "mount -t tmpfs tmpfs /run && exec python3 -c \"$0\" \"$@\"";
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script, LISTENER])
        .arg(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run unshare (util-linux) with python3");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "listener failed: {text}\n{err}");
    assert!(text.starts_with("exit=1\n"), "the run stops on the spool: {text}\n{err}");
    let datagrams: Vec<&str> = text.split("---\n").skip(1).collect();
    let find = |needle: &str| datagrams.iter().find(|d| d.contains(needle)).copied();
    let warn = find("MESSAGE=no control socket").unwrap_or_else(|| panic!("no WARN datagram: {text}"));
    assert!(warn.contains("PRIORITY=4\n"), "WARN is priority 4 (warning): {warn}");
    assert!(warn.contains("SYSLOG_IDENTIFIER=auditrelay\n"), "{warn}");
    let info = find("MESSAGE=metrics on http://127.0.0.1:").unwrap_or_else(|| panic!("no INFO datagram: {text}"));
    assert!(info.contains("PRIORITY=5\n"), "INFO is priority 5 (notice): {info}");
    // The log went to the journal, not to stderr; main's own error line (the binary's edge) stays.
    assert!(!err.contains("no control socket"), "{err}");
    assert!(err.contains("auditrelay: error: ") && err.contains("auditrelay-none/spool"), "{err}");
}
