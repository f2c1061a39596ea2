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
/// member, and the last `user` member with the ids and names it was written for (most events of
/// a machine come from a few users).
#[derive(Debug, Default)]
pub(super) struct Memo {
    host: Vec<u8>,
    host_for: Vec<u8>,
    user_ids: [Option<Id>; 9],
    user_names: Vec<u8>,
    scratch: Vec<u8>,
    user_json: Vec<u8>,
    /// The last `process.parent` member and the (pid, version) it was written for.
    parent_for: Option<(u32, u64)>,
    parent_json: Vec<u8>,
}

/// Append `,"host":…,"syscall":{…},…` (each member only when it has content).
pub(super) fn members(b: &mut Vec<u8>, i: &Interpretation, memo: &mut Memo) {
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
    if i.has_process() {
        process(b, i, memo);
    }
    if i.has_user() {
        user(b, i, memo);
    }
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
    use crate::enrich::{USER_IDS, USER_NAMES};

    #[test]
    fn member_prefixes_name_the_schema_ids() {
        for slot in 0..USER_IDS.len() {
            assert_eq!(USER_KEYS[slot], format!(",\"{}\":", USER_IDS[slot]).as_bytes());
            assert_eq!(USER_NAME_KEYS[slot], format!(",\"{}\":", USER_NAMES[slot]).as_bytes());
        }
    }
}
