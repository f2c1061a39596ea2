//! Chaos suite, the daemon's own ground (issue 10), on the real kernel: kill -9 during spool
//! writes then restart; a burst that overflows a tiny netlink receive buffer; Debian's auditd
//! holding the audit socket; SIGTERM to a `--multicast` reader on a busy host; config and rule
//! errors that must never be half applied. Each case says what it may lose and checks exactly
//! that, and is bounded in time.
//!
//! Needs root, Debian's auditd package (auditd, auditctl), and holds the kernel flock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod common;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay::netlink::client::AuditClient;
use chaos::{config, exec_markers, file_output, markers_in, wait_markers, Spawned};
use common::{marker, KernelGuard, TempDir};

/// Exec markers `<tag>-<n>` as fast as possible until `stop`; the counter says how many ran.
fn storm(tag: &str, stop: Arc<AtomicBool>, count: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    let tag = tag.to_string();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let i = count.load(Ordering::Relaxed);
            exec_markers(&tag, i..i + 1);
            count.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn file_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |n| &text[..n]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("file output line is not JSON ({e}): {l}")))
        .collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seg-")))
        .collect();
    v.sort();
    v
}

/// kill -9 three times while a storm of execs is being spooled, then once more while nothing is
/// delivered (the output's directory is missing) and one spooled record is corrupted on disk and
/// the segment's tail torn. Every start recovers (registers, runs, exits cleanly at the end);
/// every line delivered is valid JSON; the corrupted record is never delivered as valid.
/// Lost: what the kernel dropped while no daemon was registered (its `lost` counter), the torn
/// tail, and the corrupted record (the reader skips what fails its CRC: logged, counted). Every
/// marker the spool held intact arrives.
#[test]
fn kill9_during_spool_writes_then_restart_recovers_and_never_resends_corruption() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("kill9w");
    let (key, tag) = (marker("ck"), marker("k9"));
    let recv = dir.path("recv");
    let out = recv.join("events.jsonl");
    let cfg = config(&dir, &key, &file_output(&out));
    // Frames stored uncompressed, so the test can find marker 20's bytes on disk and damage them
    // (the CRC per frame is the same for every codec).
    let text = std::fs::read_to_string(&cfg).unwrap().replace("[spool]\n", "[spool]\ncompression = \"none\"\n");
    std::fs::write(&cfg, text).unwrap();
    std::fs::create_dir_all(&recv).unwrap();
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let mut stormer = None;
    for round in 0..3 {
        let mut d = Spawned::start(&dir.0, &format!("round{round}"), &["run", "--config", &cfg]);
        d.wait_ready(&key, Duration::from_secs(10));
        if stormer.is_none() {
            stormer = Some(storm(&tag, stop.clone(), count.clone()));
        }
        std::thread::sleep(Duration::from_millis(400 + 150 * round));
        assert!(d.alive(), "round {round}: {}", d.stderr());
        d.kill9();
    }
    stop.store(true, Ordering::Release);
    stormer.take().unwrap().join().unwrap();
    // Round 4: nothing delivered (receiver directory gone), markers spooled, then kill -9.
    std::fs::rename(&recv, dir.path("recv-before")).unwrap();
    let late = marker("k9late");
    let mut d = Spawned::start(&dir.0, "round3", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));
    exec_markers(&late, 0..40);
    std::thread::sleep(Duration::from_millis(800));
    d.kill9();
    // Corrupt marker 20's record in place (a digit becomes 'X') and tear the segment's tail.
    let victim = format!("\"{late}-20\"");
    let mut corrupted = false;
    for seg in segments(&dir.path("spool")) {
        let mut bytes = std::fs::read(&seg).unwrap();
        if let Some(at) = bytes.windows(victim.len()).position(|w| w == victim.as_bytes()) {
            bytes[at + victim.len() - 2] = b'X';
            corrupted = true;
        }
        if seg == *segments(&dir.path("spool")).last().unwrap() {
            bytes.extend_from_slice(&[0x55; 37]);
        }
        std::fs::write(&seg, bytes).unwrap();
    }
    assert!(corrupted, "marker 20 was spooled");
    std::fs::create_dir_all(&recv).unwrap();
    let d = Spawned::start(&dir.0, "final", &["run", "--config", &cfg]);
    let got = wait_markers(&late, 40, Duration::from_secs(20), || file_events(&out));
    let stderr_final = d.stderr();
    assert!(d.terminate(Duration::from_secs(15)).success(), "{stderr_final}");
    let events = file_events(&out);
    let corrupt_id = format!("{late}-2X");
    for e in &events {
        assert!(!e.to_string().contains(&corrupt_id), "a corrupted record was delivered as valid: {e}");
    }
    // Only what the corrupt frame (and the rest of its segment) held may be missing, and all of
    // it is announced in band: the CRC covers a whole frame, the events of one commit. In the
    // last segment recovery cannot tell a damaged frame from a torn write: it cuts the tail
    // there and announces it as `torn_tail`.
    let missing: BTreeSet<usize> = (0..40).filter(|i| !got.contains(i)).collect();
    assert!(missing.contains(&20), "the corrupted marker was not delivered: {missing:?}");
    let announced: u64 = events
        .iter()
        .filter(|e| {
            e["loss"]["kind"] == "spool_dropped"
                && (e["loss"]["reason"] == "corrupt" || e["loss"]["reason"] == "torn_tail")
        })
        .map(|e| e["loss"]["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        announced >= missing.len() as u64,
        "{} missing, {announced} announced as corrupt or torn_tail: {missing:?}",
        missing.len()
    );
    let storm_seen = markers_in(&file_events(&dir.path("recv-before").join("events.jsonl")), &tag);
    for round in 0..4 {
        let err = std::fs::read_to_string(dir.path(&format!("round{round}.stderr"))).unwrap_or_default();
        assert!(!err.contains("panicked"), "round {round} panicked: {err}");
    }
    assert!(!stderr_final.contains("panicked"), "{stderr_final}");
    eprintln!(
        "kill9: storm of {} execs over 3 kills: {} distinct delivered; late markers: 40 spooled, {} missing after \
         corrupting #20 ({:?})",
        count.load(Ordering::Relaxed),
        storm_seen.len(),
        missing.len(),
        missing
    );
}

/// A `--multicast` reader with a 4 KiB receive buffer and a burst of 2000 execs beside the
/// registered daemon: the kernel drops multicast copies (ENOBUFS); the reader counts them, says
/// so in band (`{"loss":{"kind":"socket_overrun",...}}`) and keeps going (a marker after the burst
/// arrives). Lost: only multicast copies, counted; the unicast daemon loses nothing.
#[test]
fn burst_overflowing_a_tiny_receive_buffer_is_counted_and_the_reader_goes_on() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("enobufs");
    let (key, tag) = (marker("ck"), marker("burst"));
    let out = dir.path("unicast.jsonl");
    let cfg = config(&dir, &key, &file_output(&out));
    let mut d = Spawned::start(&dir.0, "unicast", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));
    let tiny = dir.path("tiny.toml");
    std::fs::write(&tiny, "[netlink]\nreceive_buffer = \"4KiB\"\n").unwrap();
    let tiny = tiny.display().to_string();
    let mut m = Spawned::start(&dir.0, "multicast", &["run", "--multicast", "--config", &tiny]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(m.alive(), "{}", m.stderr());
    const BURST: usize = 2000;
    let children: Vec<_> = (0..BURST)
        .map(|i| Command::new("/bin/true").arg(format!("{tag}-{i}")).stdout(Stdio::null()).spawn().unwrap())
        .collect();
    for mut c in children {
        c.wait().unwrap();
    }
    let after = marker("after");
    let mut seen_after = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen_after && Instant::now() < deadline {
        exec_markers(&after, 0..1);
        std::thread::sleep(Duration::from_millis(300));
        seen_after = markers_in(&m.json_lines(), &after).contains(&0);
    }
    assert!(seen_after, "the multicast reader keeps going after the overflow: {}", m.stderr());
    let lines = m.json_lines();
    let overruns: u64 = lines
        .iter()
        .filter(|v| v["loss"]["kind"] == "socket_overrun")
        .map(|v| v["loss"]["count"].as_u64().unwrap_or(0))
        .sum();
    let copies = markers_in(&lines, &tag).len();
    assert!(overruns > 0, "ENOBUFS counted in band (multicast got {copies} of {BURST}): {}", m.stderr());
    assert!(m.stderr().contains("ENOBUFS"), "and logged: {}", m.stderr());
    let unicast = wait_markers(&tag, BURST, Duration::from_secs(20), || file_events(&out));
    assert_eq!(unicast.len(), BURST, "the unicast daemon lost nothing");
    assert!(m.terminate(Duration::from_secs(10)).success());
    assert!(d.terminate(Duration::from_secs(15)).success());
    eprintln!(
        "enobufs: multicast copies {copies} of {BURST}, {overruns} overruns announced; unicast {BURST} of {BURST}"
    );
}

/// SIGTERM to a `--multicast` reader while the host stays busy: it stops within a bound (the
/// reader takes what is queued, for at most 2 s, and never waits for silence). Lost: records
/// after the stop (it is leaving).
#[test]
fn sigterm_stops_a_multicast_reader_on_a_busy_host() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("mcstop");
    let (key, tag) = (marker("ck"), marker("busy"));
    let cfg = config(&dir, &key, &file_output(&dir.path("u.jsonl")));
    let mut d = Spawned::start(&dir.0, "unicast", &["run", "--config", &cfg]);
    d.wait_ready(&key, Duration::from_secs(10));
    let plain = dir.path("plain.toml");
    std::fs::write(&plain, "").unwrap();
    let plain = plain.display().to_string();
    let mut m = Spawned::start(&dir.0, "multicast", &["run", "--multicast", "--config", &plain]);
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let stormers: Vec<_> = (0..2).map(|_| storm(&tag, stop.clone(), count.clone())).collect();
    std::thread::sleep(Duration::from_secs(1));
    assert!(m.alive(), "{}", m.stderr());
    let t0 = Instant::now();
    m.signal(nix::sys::signal::Signal::SIGTERM);
    let st = m.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    stop.store(true, Ordering::Release);
    for s in stormers {
        s.join().unwrap();
    }
    let st = st.unwrap_or_else(|| panic!("multicast reader still running 10 s after SIGTERM on a busy host"));
    assert!(st.success(), "{st}: {}", m.stderr());
    assert!(d.terminate(Duration::from_secs(15)).success());
    eprintln!("multicast stop: {took:.2?} after SIGTERM with {} execs running", count.load(Ordering::Relaxed));
}

/// Debian's auditd (private config dir, RAW log in the temp dir) holds the audit socket:
/// `auditrelay run` refuses with an error naming auditd's pid and `--multicast`, touching
/// nothing; `--multicast` reads beside it. auditd is stopped by pid and the audit pid put back.
/// Lost: nothing (auditd and the multicast reader both see the marker).
#[test]
fn debian_auditd_holds_the_socket_clear_error_and_multicast_beside_it() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("auditd");
    std::fs::create_dir_all(dir.path("etc/plugins.d")).unwrap();
    let log = dir.path("audit.log");
    let conf = dir.path("etc/auditd.conf");
    std::fs::write(
        &conf,
        format!(
            "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_group = root\nlog_format = RAW\nflush = INCREMENTAL_ASYNC\n\
             freq = 50\nmax_log_file = 0\nnum_logs = 0\npriority_boost = 4\nname_format = NONE\nmax_log_file_action = IGNORE\n\
             space_left = 75\nspace_left_action = IGNORE\nverify_email = no\naction_mail_acct = root\nadmin_space_left = 50\n\
             admin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\nuse_libwrap = no\n\
             tcp_listen_queue = 5\ntcp_max_per_addr = 1\ntcp_client_max_idle = 0\ntransport = TCP\ndistribute_network = no\n\
             q_depth = 2000\noverflow_action = SYSLOG\nmax_restarts = 10\nplugin_dir = {}\nend_of_event_timeout = 2\n",
            log.display(),
            dir.path("etc/plugins.d").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let mut auditd = Command::new("auditd")
        .args(["-n", "-c"])
        .arg(dir.path("etc"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path("auditd.err")).unwrap())
        .spawn()
        .expect("start Debian's auditd (apt-get install auditd)");
    let auditd_pid = auditd.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard.status().pid != auditd_pid {
        assert!(
            auditd.try_wait().unwrap().is_none(),
            "auditd exited: {:?}",
            std::fs::read_to_string(dir.path("auditd.err"))
        );
        assert!(Instant::now() < deadline, "auditd did not register");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rules_before = AuditClient::open().unwrap().list_rules().unwrap();
    let key = marker("ck");
    let cfg = config(&dir, &key, "");
    let mut refused = Spawned::start(&dir.0, "refused", &["run", "--config", &cfg]);
    let st = refused.wait_exit(Duration::from_secs(10)).expect("run gives up at once");
    let err = refused.stderr();
    assert!(!st.success(), "{err}");
    assert!(err.contains(&format!("pid {auditd_pid}")), "names auditd's pid: {err}");
    assert!(err.contains("--multicast"), "suggests --multicast: {err}");
    assert_eq!(guard.status().pid, auditd_pid, "auditd keeps the socket");
    assert_eq!(AuditClient::open().unwrap().list_rules().unwrap(), rules_before, "rules untouched");
    // auditd owns the rules: add the marker rule the way its admin would.
    common::auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", &key]);
    let plain = dir.path("plain.toml");
    std::fs::write(&plain, "").unwrap();
    let plain = plain.display().to_string();
    let m = Spawned::start(&dir.0, "multicast", &["run", "--multicast", "--config", &plain]);
    std::thread::sleep(Duration::from_millis(500));
    let tag = marker("beside");
    let got = wait_markers(&tag, 1, Duration::from_secs(10), || {
        exec_markers(&tag, 0..1);
        m.json_lines()
    });
    assert!(got.contains(&0), "multicast beside auditd: {}", m.stderr());
    assert_eq!(guard.status().pid, auditd_pid, "multicast does not take the socket");
    assert!(m.terminate(Duration::from_secs(10)).success());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains(&format!("{tag}-0")), "auditd logged the marker too");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(auditd_pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while auditd.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "auditd did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut client = AuditClient::open().unwrap();
    if client.status().unwrap().pid != 0 {
        client.set_pid(0).unwrap();
    }
    assert_eq!(client.status().unwrap().pid, 0, "audit pid put back");
}

/// Errors are never half applied. A config with a bad output stops `run` before it touches the
/// kernel. A rule file whose third rule the kernel refuses leaves `rules load` with the rules it
/// found (rolled back), and a SIGHUP reload of such a file leaves the running daemon's rules as
/// they were. A rule file with a syntax error at boot: not its first lines, but the embedded
/// defaults (fail safe), said on stderr. Lost: nothing; the kernel's rules are compared exactly.
#[test]
fn config_and_rule_errors_are_never_half_applied() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("halfapply");
    let list = || AuditClient::open().unwrap().list_rules().unwrap();
    common::auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "unlinkat", "-k", &marker("pre")]);
    let before = list();
    let status_before = guard.status();

    // 1. Bad output table (window 0) after valid rules: refused before registering.
    let key = marker("ck");
    let cfg = config(&dir, &key, "\n[[output]]\ntype = \"relp\"\naddress = \"127.0.0.1:1\"\nwindow = 0\n");
    let mut d = Spawned::start(&dir.0, "badcfg", &["run", "--config", &cfg]);
    let st = d.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(!st.success());
    assert!(d.stderr().contains("window"), "names the key: {}", d.stderr());
    assert_eq!(list(), before, "rules untouched by a bad config");
    let now = guard.status();
    assert_eq!(
        (now.pid, now.enabled, now.backlog_limit),
        (status_before.pid, status_before.enabled, status_before.backlog_limit)
    );

    // 2. `rules load` with a kernel-refused third rule: rolled back, exactly the rules before.
    let refused = dir.path("refused.rules");
    std::fs::write(
        &refused,
        format!(
            "-a always,exit -F arch=b64 -S openat -k {a}\n-a always,exit -F arch=b64 -S openat -k {b}\n\
             -a always,exit -F arch=b64 -F dir=/nonexistent-{c}/ -F perm=wa -k {c}\n-a always,exit -F arch=b64 -S openat -k {d}\n",
            a = marker("r1"),
            b = marker("r2"),
            c = marker("r3"),
            d = marker("r4")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["rules", "load"]).arg(&refused).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(list(), before, "no rule of the refused set stays");

    // 3. A daemon on good rules; SIGHUP with the refused set in place: its rules stay.
    let good_key = marker("good");
    let cfg = config(&dir, &good_key, "");
    let mut d = Spawned::start(&dir.0, "daemon", &["run", "--config", &cfg]);
    d.wait_ready(&good_key, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let running = list();
    assert_ne!(running, before);
    std::fs::copy(&refused, dir.path("test.rules")).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.alive(), "{}", d.stderr());
    assert_eq!(list(), running, "a refused reload changes nothing");
    assert!(d.terminate(Duration::from_secs(15)).success());
    assert_eq!(list(), before, "rules put back at exit");

    // 4. Syntax error on line 3 at boot: never lines 1-2 alone; the embedded defaults run.
    let (k1, k2) = (marker("s1"), marker("s2"));
    let cfg = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S openat -k {k1}\n-a always,exit -F arch=b64 -S openat -k {k2}\n-a bogus,list\n"),
        &format!(
            "cache_dir = {:?}\n\n[spool]\ndir = {:?}\n",
            dir.path("rules-cache").display().to_string(),
            dir.path("spool").display().to_string()
        ),
    );
    let mut d = Spawned::start(&dir.0, "syntax", &["run", "--config", &cfg]);
    d.wait_registered(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let loaded: Vec<String> = list().iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    assert!(!loaded.iter().any(|r| r.contains(&k1) || r.contains(&k2)), "part of a broken file was loaded");
    let err = d.stderr();
    assert!(
        err.contains("not usable") && err.contains("embedded"),
        "says it falls back (no last good copy here): {err}"
    );
    assert!(d.terminate(Duration::from_secs(15)).success());
    assert_eq!(list(), before);
}
