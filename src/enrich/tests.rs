//! Interpretation of whole events, from records as the kernel writes them.

use super::*;
use crate::record::EventId;

fn event(lines: &[&str]) -> Event {
    Event::from_log_lines(lines)
}

fn s(i: &Interpretation, t: Option<Text>) -> Option<String> {
    t.map(|t| String::from_utf8_lossy(i.text(t)).into_owned())
}

#[test]
fn an_i386_execve_that_failed() {
    let mut e = Enricher::new(Some("h1"), None, 1 << 16);
    let ev = event(&[
        r#"type=SYSCALL msg=audit(1.000:5): arch=40000003 syscall=11 success=no exit=-2 a0=1 a1=2 a2=3 a3=4 items=1 ppid=10 pid=11 auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=6D7920636F6D6D exe="/usr/bin/x" key=6B3101726F6F74"#,
        r#"type=CWD msg=audit(1.000:5): cwd=2F746D702F612062"#,
        r#"type=PATH msg=audit(1.000:5): item=0 name="/usr/bin/sudo" inode=42 dev=fe:00 mode=0104755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0"#,
        r#"type=PROCTITLE msg=audit(1.000:5): proctitle=7375646F002D69"#,
        "type=EOE msg=audit(1.000:5): ",
    ]);
    let i = e.interpret(&ev);
    assert_eq!(s(i, i.host).as_deref(), Some("h1"));
    let sc = i.syscall.unwrap();
    assert_eq!((sc.arch.and_then(Arch::name), sc.number, sc.name), (Some("i386"), Some(11), Some("execve")));
    assert_eq!((sc.success, sc.exit, sc.exit_name), (Some(false), Some(-2), Some("ENOENT")));
    assert_eq!(i.process.pid, Some(11));
    assert_eq!(s(i, i.process.comm).as_deref(), Some("my comm"));
    assert_eq!(s(i, i.process.exe).as_deref(), Some("/usr/bin/x"));
    assert_eq!(s(i, i.process.cwd).as_deref(), Some("/tmp/a b"));
    assert_eq!(s(i, i.process.tty).as_deref(), Some("pts0"));
    assert_eq!(i.process.ses, Some(Id::Id(3)));
    let title: Vec<_> = i.process.title.iter().map(|t| s(i, Some(*t)).unwrap()).collect();
    assert_eq!(title, ["sudo", "-i"]);
    assert_eq!(i.user.ids[0], Some(Id::Id(1000)));
    assert_eq!(i.user.ids[2], Some(Id::Id(0)));
    let keys: Vec<_> = i.keys.iter().map(|t| s(i, Some(*t)).unwrap()).collect();
    assert_eq!(keys, ["k1", "root"]);
    let p = i.paths[0];
    assert_eq!(s(i, p.name).as_deref(), Some("/usr/bin/sudo"));
    assert_eq!(p.mode_symbolic.as_ref().map(|m| &m[..]), Some(&b"-rwsr-xr-x"[..]));
    assert_eq!((p.inode, p.ouid), (Some(42), Some(Id::Id(0))));
    assert!(i.process.argv.is_none(), "no EXECVE record");
}

#[test]
fn a_user_space_record_gives_its_pid_and_ids() {
    let mut e = Enricher::new(None, None, 1 << 16);
    let ev = event(&[
        r#"type=USER_LOGIN msg=audit(2.000:9): pid=77 uid=0 auid=4294967295 ses=4294967295 msg='op=login acct="root" exe="/usr/sbin/sshd" hostname=? addr=10.0.0.1 terminal=ssh res=failed'"#,
    ]);
    let i = e.interpret(&ev);
    assert!(i.syscall.is_none() && i.host.is_none());
    assert_eq!(i.process.pid, Some(77));
    assert_eq!(i.process.ses, Some(Id::Unset));
    assert_eq!(i.user.ids[8], Some(Id::Unset));
    assert_eq!(i.user.ids[1], None);
}

#[test]
fn buffers_are_reused_across_events() {
    let mut e = Enricher::new(Some("h"), None, 1 << 16);
    let ev = event(&[
        r#"type=SYSCALL msg=audit(1.000:5): arch=c000003e syscall=42 success=yes exit=0 pid=1 uid=0 comm="c" exe="/e" key=(null)"#,
        r#"type=SOCKADDR msg=audit(1.000:5): saddr=020000507F0000010000000000000000"#,
        r#"type=EXECVE msg=audit(1.000:5): argc=2 a0="curl" a1="http://127.0.0.1/""#,
        "type=EOE msg=audit(1.000:5): ",
    ]);
    // The facts, not the run number (an exec starts a new run every time).
    let facts = |i: &Interpretation| format!("{i:?}").split("process_run").next().unwrap_or_default().to_string();
    let first = facts(e.interpret(&ev));
    let cap = e.interpretation.text.capacity();
    for _ in 0..100 {
        e.interpret(&ev);
    }
    assert_eq!(facts(e.interpret(&ev)), first, "same event, same interpretation");
    assert_eq!(e.interpretation.text.capacity(), cap, "no growth");
    let i = e.interpret(&ev);
    assert_eq!(i.network.len(), 1);
    assert_eq!(s(i, i.network[0].address).as_deref(), Some("127.0.0.1"));
    assert_eq!(i.network[0].addr.port, Some(80));
    assert!(i.keys.is_empty());
    let argv: Vec<_> = i.process.args.iter().map(|t| s(i, Some(*t)).unwrap()).collect();
    assert_eq!(argv, ["curl", "http://127.0.0.1/"]);
    let _ = EventId { seconds: 0, millis: 0, serial: 0 };
}

#[test]
fn config_bounds_are_checked_with_the_key() {
    assert!(EnrichConfig::default().validate().is_ok());
    let bad = EnrichConfig { name_cache_size: 1, ..EnrichConfig::default() };
    assert!(bad.validate().unwrap_err().contains("enrich.name_cache_size"));
    let bad = EnrichConfig { name_ttl: Duration::from_millis(1), ..EnrichConfig::default() };
    assert!(bad.validate().unwrap_err().contains("enrich.name_ttl"));
    let bad = EnrichConfig { name_queue: 0, ..EnrichConfig::default() };
    assert!(bad.validate().unwrap_err().contains("enrich.name_queue"));
    let bad = EnrichConfig { max_argv_bytes: 10, ..EnrichConfig::default() };
    assert!(bad.validate().unwrap_err().contains("enrich.max_argv_bytes"));
    let bad = EnrichConfig { host: Some(String::new()), ..EnrichConfig::default() };
    assert!(bad.validate().unwrap_err().contains("enrich.host"));
}

#[test]
fn key8_agrees_with_its_const_reference() {
    let keys: [&[u8]; 12] = [
        b"",
        b"a",
        b"ab",
        b"abc",
        b"abcd",
        b"abcde",
        b"nametype",
        b"syscall",
        b"a0",
        b"fsgid",
        b"toolongkey",
        b"\xff\x01",
    ];
    for key in keys {
        assert_eq!(super::key8(key), super::key8_const(key), "{key:?}");
    }
    for n in 0..=9usize {
        let key: Vec<u8> = (0..n).map(|i| 0x41 + i as u8).collect();
        assert_eq!(super::key8(&key), super::key8_const(&key), "{key:?}");
    }
}

/// What [`memo`] may change: the facts taken from the SYSCALL and PROCTITLE records, texts read.
fn subject_facts(i: &Interpretation) -> String {
    let p = &i.process;
    let texts = |ts: &[Text]| ts.iter().map(|t| s(i, Some(*t)).unwrap()).collect::<Vec<_>>();
    let sc = i.syscall.map(|sc| (sc.arch, s(i, Some(sc.arch_raw)), sc.number, sc.success, sc.exit, sc.exit_name));
    format!(
        "pid {:?} ppid {:?} comm {:?} exe {:?} tty {:?} ses {:?} ids {:?} keys {:?} syscall {sc:?} title {:?}",
        p.pid,
        p.ppid,
        s(i, p.comm),
        s(i, p.exe),
        s(i, p.tty),
        p.ses,
        i.user.ids,
        texts(&i.keys),
        texts(&p.title)
    )
}

#[test]
fn a_repeated_subject_gives_what_reading_it_gives() {
    let tail = "ppid=10 pid=11 auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=6D7920636F6D6D exe=\"/usr/bin/x\" key=6B3101726F6F74";
    let lines = [
        format!("arch=c000003e syscall=257 success=no exit=-2 a0=1 a1=2 a2=3 a3=4 items=1 {tail}"),
        // The same tail after another call: its facts from the memo, the call's from the prefix.
        format!("arch=40000003 syscall=5 success=yes exit=3 a0=9 a1=2 a2=3 a3=4 items=1 {tail}"),
        // A tail key before the tail: the first occurrence counts, so the memo must not answer.
        format!("arch=c000003e syscall=257 pid=99 uid=7 success=no exit=-2 items=1 {tail}"),
        // A prefix key in the tail (no `exit=` before it): its facts are not the tail's alone.
        "arch=c000003e syscall=257 a0=1 items=1 ppid=10 pid=11 uid=0 exit=5 comm=\"y\" key=(null)".to_string(),
        "arch=c000003e syscall=257 a0=2 items=1 ppid=10 pid=11 uid=0 exit=5 comm=\"y\" key=(null)".to_string(),
        // An arch without a name: its raw text is written after the memo's.
        format!("arch=deadbeef syscall=1 success=no exit=-13 a0=1 a1=2 a2=3 a3=4 items=0 {tail}"),
        format!("arch=c000003e syscall=257 success=no exit=-2 a0=1 a1=2 a2=3 a3=4 items=1 {tail} subj=x"),
    ];
    let titles = ["7375646F002D69", "7375646F002D69", "\"plain title\"", "7375646F002D69"];
    let order = [0, 1, 0, 2, 0, 3, 4, 4, 3, 5, 5, 1, 6, 0, 6];
    let mut warm = Enricher::new(Some("h1"), None, 1 << 16);
    for (step, &n) in order.iter().enumerate() {
        let title = titles[step % titles.len()];
        let ev = event(&[
            &format!("type=SYSCALL msg=audit(1.000:{step}): {}", lines[n]),
            &format!("type=PROCTITLE msg=audit(1.000:{step}): proctitle={title}"),
        ]);
        let want = subject_facts(Enricher::new(Some("h1"), None, 1 << 16).interpret(&ev));
        assert_eq!(subject_facts(warm.interpret(&ev)), want, "step {step}: line {n}");
    }
    // And the memo answered where it may: the same tail at the same place gives the same spans.
    let ev = |step: usize| event(&[&format!("type=SYSCALL msg=audit(1.000:{step}): {}", lines[0])]);
    let first = warm.interpret(&ev(100)).process.comm;
    assert_eq!(warm.interpret(&ev(101)).process.comm, first);
    assert!(warm.subject_memo.matches(ev(102).records[0].text_from_field(9), warm.interpretation.host_len));
}
