//! Chaos suite, hostile argv (issue 10): a program with a hostile name exec'd with arguments full
//! of control characters, quotes, newlines, 0x1d (auditd's ENRICHED separator), invalid UTF-8,
//! backslashes, JSON and shell syntax; then a 6 MB argv. Through the real kernel, the real daemon
//! and every output at once: a file, RELP and TCP to a private rsyslogd.
//!
//! Intact: every argument, the exe path and comm come out as the kernel wrote them (hex when the
//! kernel hex-encodes them) and decode to the bytes exec'd. Unambiguous: a value is hex exactly
//! when its key is listed in the record's `hex` member, so a literal argument that merely looks
//! like hex (`41`) is never read as the byte `A`.
//!
//! Lost: nothing from the small event on any output. The 6 MB event arrives whole in the file
//! output (its spool record limit is raised above it); over RELP and TCP it is cut to
//! `max_message_size` as docs/configuration.md says: `"truncated": true`, arguments cut in the
//! middle with a marker stating their original length, or records stubbed.
//!
//! Needs root, rsyslog + rsyslog-relp, and holds the kernel flock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod common;
mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use chaos::{event_of_message, file_output, kernel_form, marker_of, relp_output, tcp_output, wait_markers, Spawned};
use common::{marker, KernelGuard, TempDir};

/// Linux MAX_ARG_STRLEN (128 KiB, NUL included): the longest single argument.
const MAX_ARG: usize = 128 * 1024 - 1;
/// 46 arguments of MAX_ARG: 6.03 MB of argv, just under what exec takes at all (fs/exec.c: three
/// quarters of _STK_LIM, 6 MiB, for argv and environment together, with a large enough stack limit).
const BIG_ARGS: usize = 46;

fn hostile_args(tag: &str) -> Vec<Vec<u8>> {
    vec![
        format!("{tag}-0").into_bytes(),
        b"ctl:\x01\x02\x07\x08\t\x0b\x0c\r\x1b\x7f".to_vec(),
        b"quotes:\"'`\"\"".to_vec(),
        b"new\nline\n".to_vec(),
        b"sep:\x1d:rs\x1e:us\x1f".to_vec(),
        b"\xff\xfe\xc3\x28\xa0\xa1".to_vec(),
        b"back\\slash\\\\".to_vec(),
        b"sp ace  two".to_vec(),
        b"json:{\"a\":[1,2],\"b\":null}".to_vec(),
        b"%s%n$(id)`id`;|&<>".to_vec(),
        b"41".to_vec(),
        b"A".to_vec(),
        Vec::new(),
        "é€𝄞".as_bytes().to_vec(),
    ]
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The bytes a field stands for: hex-decoded when the record lists it in `hex`.
fn value_bytes(record: &serde_json::Value, key: &str) -> Vec<u8> {
    let v = record["fields"][key].as_str().unwrap_or_else(|| panic!("no {key} in {record}"));
    let hex = record["hex"].as_array().is_some_and(|h| h.iter().any(|k| k == key));
    if hex {
        unhex(v)
    } else {
        v.as_bytes().to_vec()
    }
}

fn record<'a>(event: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    event["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}: {event}"))
}

fn check_small(output: &str, event: &serde_json::Value, args: &[Vec<u8>], exe: &[u8]) {
    let execve = record(event, "EXECVE");
    assert_eq!(execve["fields"]["argc"], args.len().to_string(), "{output}: argc");
    for (i, arg) in args.iter().enumerate() {
        let key = format!("a{i}");
        assert_eq!(
            execve["fields"][&key].as_str().unwrap(),
            kernel_form(arg),
            "{output}: {key} as the kernel wrote it"
        );
        assert_eq!(value_bytes(execve, &key), *arg, "{output}: {key} decodes to what was exec'd");
    }
    let syscall = record(event, "SYSCALL");
    assert_eq!(value_bytes(syscall, "exe"), exe, "{output}: exe");
    let base = &exe[exe.iter().rposition(|b| *b == b'/').unwrap() + 1..];
    assert_eq!(value_bytes(syscall, "comm"), base[..base.len().min(15)], "{output}: comm");
}

#[test]
fn hostile_argv_arrives_intact_and_unambiguous_through_file_relp_and_tcp() {
    support::require_rsyslog();
    let _guard = KernelGuard::take();
    let dir = TempDir::new("argv");
    let rs = support::Rsyslogd::start("argv", None);
    let (key, tag) = (marker("ck"), marker("hostile"));
    let file = dir.path("events.jsonl");
    let extra = format!(
        "\n[spool]\ndir = {:?}\nmax_record_bytes = \"16MiB\"\nsegment_bytes = \"64MiB\"\nfsync_interval = \"100ms\"\n\
         cursor_interval = \"100ms\"\n\n[reassemble]\nevent_timeout = \"20s\"\n{}{}{}",
        dir.path("spool").display().to_string(),
        file_output(&file),
        relp_output(&rs.relp_address()),
        tcp_output(&rs.tcp_address()),
    );
    let cfg = dir.config_with_rules(&format!("-a always,exit -F arch=b64 -S execve -k {key}\n"), &extra);
    let mut d = Spawned::start(&dir.0, "daemon", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));

    // A copy of /bin/true under a hostile name: exe and comm are hostile too.
    let mut exe = dir.0.as_os_str().as_bytes().to_vec();
    exe.extend_from_slice(b"/t\n\"r\x1d\xffue with space");
    std::fs::copy("/bin/true", OsStr::from_bytes(&exe)).unwrap();
    let args = hostile_args(&tag);
    let st = Command::new(OsStr::from_bytes(&exe))
        .arg0(OsStr::from_bytes(&args[0]))
        .args(args[1..].iter().map(|a| OsStr::from_bytes(a)))
        .status()
        .unwrap();
    assert!(st.success());
    // argv[0] is what we passed as arg0; a0 is that.

    // 6 MB of argv: raise the stack limit so ARG_MAX (a quarter of it) holds it.
    let big: Vec<String> = (0..BIG_ARGS)
        .map(|i| {
            let mut s = format!("HEAD{i:02}-");
            let tail = format!("-TAIL{i:02}");
            while s.len() < MAX_ARG - tail.len() {
                s.push(char::from(b'a' + (s.len() % 26) as u8));
            }
            s + &tail
        })
        .collect();
    let mut cmd = Command::new("/bin/true");
    cmd.arg(format!("{tag}-1")).args(&big);
    // SAFETY: setrlimit is async-signal-safe; only the child's own limit is changed.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 256 << 20, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_STACK, &lim) != 0 {
                let _ = libc::setrlimit(libc::RLIMIT_STACK, &libc::rlimit { rlim_cur: 256 << 20, rlim_max: 256 << 20 });
            }
            Ok(())
        });
    }
    let st = cmd.status().expect("exec with a 6 MB argv");
    assert!(st.success(), "6 MB exec: {st}");

    let file_events = || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |n| &text[..n]).to_string();
        complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>()
    };
    let got = wait_markers(&tag, 2, Duration::from_secs(120), file_events);
    if got.len() != 2 {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        panic!(
            "file output: both events ({} lines, {} bytes, marker 1 in text: {}, spool: {:?}): {}",
            text.lines().count(),
            text.len(),
            text.contains(&format!("{tag}-1")),
            std::fs::read_dir(dir.path("spool")).map(|r| r
                .flatten()
                .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect::<Vec<_>>()),
            d.stderr()
        );
    }
    let in_syslog = |name: &str| -> Vec<serde_json::Value> {
        rs.lines(name).iter().map(|l| event_of_message(l.as_bytes())).collect()
    };
    let relp = wait_markers(&tag, 2, Duration::from_secs(30), || in_syslog("relp.log"));
    let tcp = wait_markers(&tag, 2, Duration::from_secs(30), || in_syslog("tcp.log"));
    let stderr = d.stderr();
    assert!(d.terminate(Duration::from_secs(20)).success(), "{stderr}");

    let find = |events: &[serde_json::Value], n: usize| events.iter().find(|e| marker_of(e, &tag) == Some(n)).cloned();
    let all_file = file_events();
    let small = find(&all_file, 0).unwrap();
    check_small("file", &small, &args, &exe);
    for (name, events) in [("relp", in_syslog("relp.log")), ("tcp", in_syslog("tcp.log"))] {
        let e = find(&events, 0).unwrap_or_else(|| panic!("{name}: the hostile event ({relp:?} {tcp:?})"));
        check_small(name, &e, &args, &exe);
        assert_eq!(e["id"], small["id"], "{name}: same id as the file output");
    }

    // The 6 MB event: whole in the file (split arguments joined back), cut as documented elsewhere.
    let whole = find(&all_file, 1).unwrap();
    assert!(whole.get("truncated").is_none(), "file output: not cut");
    // Each piece decoded by the record's own `hex` list (the kernel hex-encodes split arguments).
    let mut pieces: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for r in whole["records"].as_array().unwrap().iter().filter(|r| r["type"] == "EXECVE") {
        for k in r["fields"].as_object().unwrap().keys() {
            pieces.insert(k.clone(), value_bytes(r, k));
        }
    }
    for (i, arg) in big.iter().enumerate() {
        let k = i + 2;
        let mut joined: Vec<u8> = Vec::new();
        for p in 0.. {
            match pieces.get(&format!("a{k}[{p}]")) {
                Some(b) => joined.extend_from_slice(b),
                None => break,
            }
        }
        let value = if joined.is_empty() { pieces[&format!("a{k}")].clone() } else { joined };
        assert_eq!(value.len(), arg.len(), "a{k}: length");
        assert!(value == arg.as_bytes(), "a{k}: bytes differ");
    }
    let big_len = whole.to_string().len();
    for (name, events) in [("relp", in_syslog("relp.log")), ("tcp", in_syslog("tcp.log"))] {
        let e = find(&events, 1)
            .or_else(|| events.iter().find(|e| e["id"] == whole["id"]).cloned())
            .unwrap_or_else(|| panic!("{name}: the 6 MB event, cut or stubbed"));
        assert_eq!(e["id"], whole["id"], "{name}: identity kept");
        assert_eq!(e["truncated"], true, "{name}: flagged");
        let text = e.to_string();
        assert!(text.len() <= 64 * 1024, "{name}: within max_message_size");
        assert!(
            text.contains("auditrelay: cut, original length")
                || text.contains("removed to fit")
                || text.contains("exceeded max_message_size"),
            "{name}: says what was cut"
        );
    }
    eprintln!("hostile argv: small event intact on file, relp, tcp; 6 MB event ({big_len} bytes of JSON) whole in the file, cut on relp/tcp");
}
