//! Schema v2's members (docs/schema.md "Interpretation") from an [`Interpretation`], written into
//! the event's buffer like the rest of the line: no intermediate values, no allocation.
//!
//! Decoded strings are for reading: one that is not UTF-8 (a hex-decoded Latin-1 file name) is
//! written with U+FFFD for each invalid sequence. The exact bytes are in the raw record beside it.
//! Member names are lowercase ASCII, so no two of one object differ only by letter case.

use super::is_plain;
use super::push_escaped;
use crate::enrich::user::Id;
use crate::enrich::{Interpretation, Text};

/// `,"uid":` … in [`crate::enrich::USER_IDS`] order (a test checks they agree).
const USER_KEYS: [&[u8]; 9] = [
    b",\"uid\":",
    b",\"gid\":",
    b",\"euid\":",
    b",\"suid\":",
    b",\"fsuid\":",
    b",\"egid\":",
    b",\"sgid\":",
    b",\"fsgid\":",
    b",\"auid\":",
];
/// `,"uid_name":` … in [`crate::enrich::USER_NAMES`] order.
const USER_NAME_KEYS: [&[u8]; 9] = [
    b",\"uid_name\":",
    b",\"gid_name\":",
    b",\"euid_name\":",
    b",\"suid_name\":",
    b",\"fsuid_name\":",
    b",\"egid_name\":",
    b",\"sgid_name\":",
    b",\"fsgid_name\":",
    b",\"auid_name\":",
];

/// What stays the same from one event to the next, written once and copied after: the `host`
/// member, the last `process` member and the run it was written for (a process's events come in
/// runs, src/enrich/memo.rs), and the last `user` member with the ids and names it was written
/// for (most events of a machine come from a few users).
#[derive(Debug, Default)]
pub(super) struct Memo {
    host: Vec<u8>,
    host_for: Vec<u8>,
    user_ids: [Option<Id>; 9],
    user_names: Vec<u8>,
    scratch: Vec<u8>,
    user_json: Vec<u8>,
    /// The last `process` member and the [`Interpretation::process_run`] it was written for.
    process_run: Option<u64>,
    process_json: Vec<u8>,
    /// The last `process.parent` member and the (pid, version) it was written for.
    parent_for: Option<(u32, u64)>,
    parent_json: Vec<u8>,
    /// The last `syscall` member, and the `file`, `network` and `keys` members with the path
    /// owners' names they were written with: the records alone decide the rest of them, so an
    /// event whose records repeat the last event's copies them (see [`members`]).
    syscall: Option<Vec<u8>>,
    tail: Option<Vec<u8>>,
    tail_names: Vec<u8>,
}

/// Append `,"host":…,"syscall":{…},…` (each member only when it has content). `repeat`: the
/// event's records are, byte for byte after their stamps, the last written event's (the JSON
/// writer's record memo knows): then the members that the records alone decide are the last
/// event's, copied.
pub(super) fn members(b: &mut Vec<u8>, i: &Interpretation, memo: &mut Memo, repeat: bool) {
    if let Some(host) = i.host {
        if memo.host_for != i.text(host) {
            memo.host_for.clear();
            memo.host_for.extend_from_slice(i.text(host));
            memo.host.clear();
            memo.host.extend_from_slice(b",\"host\":");
            text(&mut memo.host, i, host);
        }
        b.extend_from_slice(&memo.host);
    }
    copied_or_written(b, &mut memo.syscall, repeat, |b| syscall(b, i));
    if i.has_process() {
        process(b, i, memo);
    }
    if i.has_user() {
        user(b, i, memo);
    }
    // The path owners' names come from the name cache: the kept members answer for the same
    // names only.
    memo.scratch.clear();
    for p in &i.paths {
        for name in [p.ouid_name, p.ogid_name] {
            match name {
                Some(t) => {
                    memo.scratch.extend_from_slice(i.text(t));
                    memo.scratch.push(0);
                }
                None => memo.scratch.push(1),
            }
        }
    }
    let same_names = memo.tail_names == memo.scratch;
    if copied_or_written(b, &mut memo.tail, repeat && same_names, |b| tail(b, i)) {
        std::mem::swap(&mut memo.tail_names, &mut memo.scratch);
    }
}

/// Append `kept` when `reuse` and something is kept; else `write` and keep what it wrote. True
/// when written.
fn copied_or_written(
    b: &mut Vec<u8>,
    kept: &mut Option<Vec<u8>>,
    reuse: bool,
    write: impl FnOnce(&mut Vec<u8>),
) -> bool {
    if let Some(k) = kept.as_deref().filter(|_| reuse) {
        b.extend_from_slice(k);
        return false;
    }
    let start = b.len();
    write(b);
    let k = kept.get_or_insert_default();
    k.clear();
    k.extend_from_slice(&b[start..]);
    true
}

/// The `syscall` member.
fn syscall(b: &mut Vec<u8>, i: &Interpretation) {
    if let Some(s) = &i.syscall {
        b.extend_from_slice(b",\"syscall\":");
        let mut o = Obj::new(b);
        if let Some(name) = s.name {
            o.key(b",\"name\":");
            ascii(o.b, name);
        }
        o.key(b",\"arch\":");
        match s.arch.and_then(|a| a.name()) {
            Some(name) => ascii(o.b, name),
            None => text(o.b, i, s.arch_raw),
        }
        if let Some(n) = s.number {
            o.key(b",\"number\":");
            int(o.b, n);
        }
        if let Some(success) = s.success {
            o.key(b",\"success\":");
            o.b.extend_from_slice(if success { b"true" } else { b"false" });
        }
        if let Some(exit) = s.exit {
            o.key(b",\"exit\":");
            int(o.b, exit);
        }
        if let Some(name) = s.exit_name {
            o.key(b",\"exit_name\":");
            ascii(o.b, name);
        }
        o.close();
    }
}

/// The `file`, `network` and `keys` members.
fn tail(b: &mut Vec<u8>, i: &Interpretation) {
    if !i.paths.is_empty() {
        b.extend_from_slice(b",\"file\":{\"paths\":[");
        for (n, p) in i.paths.iter().enumerate() {
            if n > 0 {
                b.push(b',');
            }
            let mut o = Obj::new(b);
            o.opt_text(i, b",\"name\":", p.name);
            o.opt_text(i, b",\"nametype\":", p.nametype);
            if let Some(inode) = p.inode {
                o.key(b",\"inode\":");
                int(o.b, inode);
            }
            o.opt_text(i, b",\"dev\":", p.dev);
            o.opt_text(i, b",\"mode\":", p.mode);
            if let Some(sym) = &p.mode_symbolic {
                o.key(b",\"mode_symbolic\":");
                o.b.push(b'"');
                o.b.extend_from_slice(sym);
                o.b.push(b'"');
            }
            if let Some(id) = p.ouid {
                o.key(b",\"ouid\":");
                id_value(o.b, id);
            }
            if let Some(id) = p.ogid {
                o.key(b",\"ogid\":");
                id_value(o.b, id);
            }
            o.opt_text(i, b",\"ouid_name\":", p.ouid_name);
            o.opt_text(i, b",\"ogid_name\":", p.ogid_name);
            o.close();
        }
        b.extend_from_slice(b"]}");
    }
    if !i.network.is_empty() {
        b.extend_from_slice(b",\"network\":[");
        for (n, net) in i.network.iter().enumerate() {
            if n > 0 {
                b.push(b',');
            }
            let mut o = Obj::new(b);
            o.key(b",\"family\":");
            match net.addr.family {
                Some(name) => ascii(o.b, name),
                None => {
                    o.b.push(b'"');
                    o.b.extend_from_slice(itoa::Buffer::new().format(net.addr.family_number).as_bytes());
                    o.b.push(b'"');
                }
            }
            o.opt_text(i, b",\"address\":", net.address);
            if let Some(port) = net.addr.port {
                o.key(b",\"port\":");
                int(o.b, port);
            }
            o.opt_text(i, b",\"path\":", net.path);
            if let Some(pid) = net.addr.pid {
                o.key(b",\"pid\":");
                int(o.b, pid);
            }
            o.opt_text(i, b",\"raw\":", net.raw);
            o.close();
        }
        b.push(b']');
    }
    if !i.keys.is_empty() {
        b.extend_from_slice(b",\"keys\":");
        list(b, i, &i.keys);
    }
}

/// The `user` member, copied from the memo when ids and names are the last event's.
fn user(b: &mut Vec<u8>, i: &Interpretation, memo: &mut Memo) {
    memo.scratch.clear();
    for name in &i.user.names {
        match name {
            Some(t) => {
                memo.scratch.extend_from_slice(i.text(*t));
                memo.scratch.push(0);
            }
            None => memo.scratch.push(1),
        }
    }
    if memo.user_ids == i.user.ids && memo.user_names == memo.scratch {
        b.extend_from_slice(&memo.user_json);
        return;
    }
    let start = b.len();
    b.extend_from_slice(b",\"user\":");
    let mut o = Obj::new(b);
    for slot in 0..USER_KEYS.len() {
        if let Some(id) = i.user.ids[slot] {
            o.key(USER_KEYS[slot]);
            id_value(o.b, id);
        }
        if let Some(name) = i.user.names[slot] {
            o.key(USER_NAME_KEYS[slot]);
            text(o.b, i, name);
        }
    }
    o.close();
    memo.user_ids = i.user.ids;
    std::mem::swap(&mut memo.user_names, &mut memo.scratch);
    memo.user_json.clear();
    memo.user_json.extend_from_slice(&b[start..]);
}

fn process(b: &mut Vec<u8>, i: &Interpretation, memo: &mut Memo) {
    if memo.process_run == Some(i.process_run) {
        b.extend_from_slice(&memo.process_json);
        return;
    }
    let start = b.len();
    let p = &i.process;
    b.extend_from_slice(b",\"process\":");
    let mut o = Obj::new(b);
    if let Some(pid) = p.pid {
        o.key(b",\"pid\":");
        int(o.b, pid);
    }
    if let Some(ppid) = p.ppid {
        o.key(b",\"ppid\":");
        int(o.b, ppid);
    }
    o.opt_text(i, b",\"comm\":", p.comm);
    o.opt_text(i, b",\"exe\":", p.exe);
    o.opt_text(i, b",\"cwd\":", p.cwd);
    if let Some(argv) = &p.argv {
        o.key(b",\"argv\":");
        list(o.b, i, &p.args);
        if let Some(argc) = argv.argc {
            o.key(b",\"argc\":");
            int(o.b, argc);
        }
        if argv.incomplete {
            o.key(b",\"argv_incomplete\":");
            o.b.extend_from_slice(b"true");
        }
        if argv.truncated {
            o.key(b",\"argv_truncated\":");
            o.b.extend_from_slice(b"true");
        }
    }
    if !p.title.is_empty() {
        o.key(b",\"title\":");
        list(o.b, i, &p.title);
    }
    o.opt_text(i, b",\"tty\":", p.tty);
    if let Some(ses) = p.ses {
        o.key(b",\"ses\":");
        id_value(o.b, ses);
    }
    process_context(&mut o, i, memo);
    o.close();
    // After an exec the next event starts a run (src/enrich/memo.rs): nothing to keep.
    if p.argv.is_some() {
        memo.process_run = None;
        return;
    }
    memo.process_run = Some(i.process_run);
    memo.process_json.clear();
    memo.process_json.extend_from_slice(&b[start..]);
}

/// `exe_sha256`, `parent` and `container_id` (src/enrich/process.rs, exe_hash.rs). The parent
/// is mostly the last event's (a process's events come in runs): then its member is copied.
fn process_context(o: &mut Obj<'_>, i: &Interpretation, memo: &mut Memo) {
    let p = &i.process;
    if let Some(d) = &p.exe_sha256 {
        o.key(b",\"exe_sha256\":\"");
        crate::enrich::exe_hash::hex_into(d, o.b);
        o.b.push(b'"');
    }
    if let Some(parent) = &p.parent {
        if memo.parent_for == Some((parent.pid, parent.version)) {
            o.b.extend_from_slice(&memo.parent_json);
            o.opt_text(i, b",\"container_id\":", p.container_id);
            return;
        }
        let start = o.b.len();
        o.key(b",\"parent\":");
        let mut po = Obj::new(o.b);
        po.key(b",\"pid\":");
        int(po.b, parent.pid);
        po.opt_text(i, b",\"exe\":", parent.exe);
        po.opt_text(i, b",\"comm\":", parent.comm);
        if parent.argv {
            po.key(b",\"argv\":");
            list(po.b, i, &p.parent_args);
        }
        if parent.argv_truncated {
            po.key(b",\"argv_truncated\":true");
        }
        po.close();
        memo.parent_for = Some((parent.pid, parent.version));
        memo.parent_json.clear();
        memo.parent_json.extend_from_slice(&o.b[start..]);
    }
    o.opt_text(i, b",\"container_id\":", p.container_id);
}

/// Members of one object. Every member is written with a leading comma (a constant-length copy
/// with its name); [`Obj::close`] turns the first comma into the `{`, so no per-member branch.
struct Obj<'b> {
    b: &'b mut Vec<u8>,
    open: usize,
}

impl<'b> Obj<'b> {
    /// After `"name":` has been written.
    fn new(b: &'b mut Vec<u8>) -> Obj<'b> {
        let open = b.len();
        Obj { b, open }
    }

    /// `,"name":` — `key` is the whole prefix, e.g. `b",\"pid\":"`.
    #[inline]
    fn key(&mut self, key: &'static [u8]) {
        self.b.extend_from_slice(key);
    }

    fn opt_text(&mut self, i: &Interpretation, key: &'static [u8], value: Option<Text>) {
        if let Some(t) = value {
            self.key(key);
            text(self.b, i, t);
        }
    }

    fn close(self) {
        if self.b.len() == self.open {
            self.b.extend_from_slice(b"{}");
        } else {
            self.b[self.open] = b'{';
            self.b.push(b'}');
        }
    }
}

fn int(b: &mut Vec<u8>, n: impl itoa::Integer) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An id as an integer, or `"unset"`.
fn id_value(b: &mut Vec<u8>, id: Id) {
    match id {
        Id::Id(n) => int(b, n),
        Id::Unset => b.extend_from_slice(b"\"unset\""),
    }
}

/// A static ASCII name (tables): no escaping needed.
fn ascii(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
}

fn list(b: &mut Vec<u8>, i: &Interpretation, items: &[Text]) {
    b.push(b'[');
    for (n, t) in items.iter().enumerate() {
        if n > 0 {
            b.push(b',');
        }
        text(b, i, *t);
    }
    b.push(b']');
}

/// A decoded string: UTF-8 as is, invalid sequences as U+FFFD.
fn text(b: &mut Vec<u8>, i: &Interpretation, t: Text) {
    let bytes = i.text(t);
    b.push(b'"');
    // Nearly all decoded text is plain ASCII: one pass that settles both UTF-8 and escaping.
    if is_plain(bytes) {
        b.extend_from_slice(bytes);
    } else if std::str::from_utf8(bytes).is_ok() {
        push_escaped(b, bytes, false);
    } else {
        for chunk in bytes.utf8_chunks() {
            push_escaped(b, chunk.valid().as_bytes(), false);
            if !chunk.invalid().is_empty() {
                b.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
    }
    b.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::process::{self, ProcessTable};
    use crate::enrich::Enricher;
    use crate::enrich::{USER_IDS, USER_NAMES};
    use crate::format::JsonWriter;
    use crate::reassemble::{Event, Output};

    fn writer() -> JsonWriter {
        let enricher = Enricher::new(Some("h"), None, 1 << 16).with_processes(Some(ProcessTable::new(64, 1 << 10)));
        JsonWriter::new(None).with_enricher(Some(enricher))
    }

    /// One event of `pid` (parent `ppid`): syscall `nr` returning `exit`, in `cwd`, with
    /// `title`, and EXECVE `args` when given.
    fn event(
        serial: u32,
        (pid, ppid): (u32, u32),
        (nr, exit): (u32, i64),
        cwd: &str,
        title: &str,
        args: &[&str],
    ) -> Event {
        let stamp = format!("msg=audit(1700000000.{:03}:{serial}):", serial % 1000);
        let mut lines = vec![format!(
            "type=SYSCALL {stamp} arch=c000003e syscall={nr} success={} exit={exit} a0=0 a1=0 a2=0 a3=0 items=0 ppid={ppid} pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts1 ses=2 comm=\"c{pid}\" exe=\"/bin/e{pid}\" key=\"k\"",
            if exit < 0 { "no" } else { "yes" }
        )];
        if !args.is_empty() {
            let a: Vec<String> = args.iter().enumerate().map(|(n, a)| format!("a{n}=\"{a}\"")).collect();
            lines.push(format!("type=EXECVE {stamp} argc={} {}", args.len(), a.join(" ")));
        }
        lines.push(format!("type=CWD {stamp} cwd=\"{cwd}\""));
        lines.push(format!("type=PROCTITLE {stamp} proctitle=\"{title}\""));
        Event::from_log_lines(&lines)
    }

    #[test]
    fn a_process_member_copied_from_the_last_event_is_the_one_its_records_give() {
        const OPENAT: (u32, i64) = (257, -2);
        // (written, event); not written: seen by the process table only (a filtered event), or
        // with no records, a /proc lookup's answer (the parent runs another program).
        let lookup = Event { records: Vec::new(), ..event(0, (1, 0), OPENAT, "/", "", &[]) };
        let steps: Vec<(bool, Event)> = vec![
            (true, event(1, (50, 1), OPENAT, "/", "t50", &[])),
            (true, event(2, (50, 1), OPENAT, "/", "t50", &[])),
            // The parent becomes known: the same records, another `process.parent`.
            (true, event(3, (1, 0), (59, 0), "/", "init", &["init"])),
            (true, event(4, (50, 1), OPENAT, "/", "t50", &[])),
            (true, event(5, (50, 1), OPENAT, "/", "t50", &[])),
            // The parent runs another program, seen only by the process table (a filtered event).
            (false, event(6, (1, 0), (59, 0), "/", "init", &["init", "2"])),
            (true, event(7, (50, 1), OPENAT, "/", "t50", &[])),
            (true, event(8, (50, 1), (56, 51), "/", "t50", &[])),
            (true, event(9, (51, 50), OPENAT, "/", "t50", &[])),
            (true, event(10, (51, 50), OPENAT, "/", "t50", &[])),
            (true, event(11, (50, 1), OPENAT, "/", "t50", &[])),
            (false, lookup),
            (true, event(11, (50, 1), OPENAT, "/", "t50", &[])),
            (true, event(12, (50, 1), OPENAT, "/tmp", "t50", &[])),
            (true, event(13, (50, 1), OPENAT, "/tmp", "t50 x", &[])),
            (true, event(14, (50, 1), OPENAT, "/tmp", "t50 x", &[])),
            // An exec of the same program with the same records but its arguments: never copied.
            (true, event(15, (50, 1), (59, 0), "/tmp", "t50 x", &["e50"])),
            (true, event(16, (50, 1), (59, 0), "/tmp", "t50 x", &["e50"])),
            (true, event(17, (50, 1), OPENAT, "/tmp", "t50 x", &[])),
        ];
        let (mut warm, mut cold) = (writer(), writer());
        let mut copies = 0;
        for (n, (written, ev)) in steps.iter().enumerate() {
            if !written {
                for w in [&mut warm, &mut cold] {
                    let enricher = w.enricher().unwrap();
                    if ev.records.is_empty() {
                        let facts = process::Facts {
                            pid: 1,
                            ppid: Some(0),
                            comm: Some(b"init"),
                            exe: Some(b"/sbin/init"),
                            syscall: Some("execve"),
                            success: Some(true),
                            exit: Some(0),
                            clone_flags: None,
                            time_ms: 1_700_000_000_000,
                        };
                        let args = [&b"init"[..], b"3"];
                        enricher.processes().unwrap().learn(&facts, process::Change::Exec, args.into_iter());
                    } else {
                        enricher.observe(ev);
                    }
                }
                continue;
            }
            let run = warm.memo.process_run;
            let line = String::from_utf8(warm.write(&Output::Event(ev.clone())).to_vec()).unwrap();
            copies += usize::from(run.is_some() && warm.memo.process_run == run);
            cold.enricher().unwrap().forget_memos();
            cold.memo = Memo::default();
            let want = String::from_utf8(cold.write(&Output::Event(ev.clone())).to_vec()).unwrap();
            assert_eq!(line, want, "step {n}");
        }
        // Steps 2, 5, 10 and 14 repeat the last event's process, so does 8 (a clone changes the
        // child, not the caller); 17 follows an exec, 7 a filtered event.
        assert_eq!(copies, 5, "the memo answered where it may, and only there");
        // The same records again (steps 2, 5, 10, 11 after the lookup, 14, 16) kept what those
        // records gave and asked only the tables: the lookup's new parent still showed (step 11).
        assert_eq!(warm.enricher().unwrap().repeated, 6, "the repeat path was taken");
        assert_eq!(cold.enricher().unwrap().repeated, 0);
    }

    /// Names the cache learns between two events of the same records are written with the
    /// second: the kept `user` and `file` members answer for the names they were written with.
    #[test]
    fn names_that_arrive_between_two_repeats_are_written() {
        use crate::enrich::user::{CacheBounds, NameCache};
        let bounds = CacheBounds { size: 8, ttl: std::time::Duration::from_secs(600), queue: 8 };
        let names = NameCache::new(bounds, Box::new(|_, id| Some(format!("n{id}"))));
        let mut w = JsonWriter::new(None).with_enricher(Some(Enricher::new(Some("h"), Some(names), 1 << 16)));
        let ev = |serial: u32| {
            let stamp = format!("msg=audit(1700000000.000:{serial}):");
            Event::from_log_lines(&[
                format!("type=SYSCALL {stamp} arch=c000003e syscall=257 success=yes exit=3 a0=0 a1=0 a2=0 a3=0 items=1 ppid=1 pid=9 auid=7 uid=7 gid=7 euid=7 suid=7 fsuid=7 egid=7 sgid=7 fsgid=7 tty=pts1 ses=2 comm=\"c\" exe=\"/bin/c\" key=\"k\""),
                format!("type=PATH {stamp} item=0 name=\"/etc/x\" inode=5 dev=08:01 mode=0100644 ouid=8 ogid=9 nametype=NORMAL"),
                format!("type=EOE {stamp}"),
            ])
        };
        let first = String::from_utf8(w.write(&Output::Event(ev(1))).to_vec()).unwrap();
        assert!(!first.contains("n7") && !first.contains("ouid_name"), "names are not known yet: {first}");
        w.enricher().unwrap().names().unwrap().settle(std::time::Duration::from_secs(10));
        let second = String::from_utf8(w.write(&Output::Event(ev(2))).to_vec()).unwrap();
        assert!(second.contains(r#""uid":7,"uid_name":"n7""#), "{second}");
        assert!(second.contains(r#""ouid":8,"ogid":9,"ouid_name":"n8","ogid_name":"n9""#), "{second}");
        assert_eq!(w.enricher().unwrap().repeated, 1, "the second event took the repeat path");
        let third = String::from_utf8(w.write(&Output::Event(ev(3))).to_vec()).unwrap();
        let members = |line: &str| line[line.find(",\"host\"").unwrap()..].to_string();
        assert_eq!(members(&third), members(&second), "copied whole the third time");
    }

    #[test]
    fn member_prefixes_name_the_schema_ids() {
        for slot in 0..USER_IDS.len() {
            assert_eq!(USER_KEYS[slot], format!(",\"{}\":", USER_IDS[slot]).as_bytes());
            assert_eq!(USER_NAME_KEYS[slot], format!(",\"{}\":", USER_NAMES[slot]).as_bytes());
        }
    }
}
