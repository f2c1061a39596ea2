//! Elastic Common Schema, the way auditbeat's auditd module writes it (go-libaudit's aucoalesce
//! normalizations plus auditbeat's ECS mapping), so dashboards and rules built on auditbeat work:
//!
//! | ECS | from |
//! |---|---|
//! | `@timestamp` | the event's `time` |
//! | `event.{kind,module,category,type,action,outcome}` | `kind` = `event`; category/type/action from the syscall (aucoalesce's normalizations.yaml) or the record type; outcome from `success=` / `res=` |
//! | `auditd.{message_type,sequence,result,session,data,paths,summary}` | the primary record's type (lowercase), the serial, `success`/`fail`/`unknown`, `ses`, the primary record's other fields (arch and syscall by name, SOCKADDR as `socket.*`), every PATH record, actor/object/how |
//! | `process.{pid,name,executable,working_directory,args,args_count,title}` | SYSCALL, CWD, EXECVE, PROCTITLE |
//! | `process.parent.{pid,executable,name,args,args_count}` | `pid` from the SYSCALL's `ppid`; the rest from v2's `process.parent` (the process table) |
//! | `container.id` | v2's `process.container_id` |
//! | `user.{id,name,group,effective,saved,filesystem,audit}` | the `*uid`/`*gid` fields and their names |
//! | `file.{path,device,inode,mode,uid,gid,owner,group}` | the PATH the syscall acted on |
//! | `source`/`destination` `{ip,port,path}`, `network.direction` | SOCKADDR: source for accept/recv*, destination for connect/send*, neither for bind (aucoalesce's rule) |
//! | `tags` | the rule keys |
//! | `host.name` | the event's `host`, else the output's host name |
//! | `event.original` | every record as an audit.log line (auditbeat's `include_raw_message`), so no raw field is lost |
//! | `auditrelay.{id,incomplete,late,truncated}` | auditrelay's own flags, when set |
//!
//! Interpretation comes from schema v2's members (`syscall`, `process`, `user`, `file`,
//! `network`, `keys`, `host`) when the event has them; each one absent is derived here from the
//! raw fields, so the format works with enrichment off. Loss notices become
//! `event.kind = "pipeline_error"` documents with the notice under `auditrelay.loss`.
//!
//! Why written directly: building a `serde_json::Value` per event (an allocation per string,
//! array and map) cost ~30 µs, 13–18× writing the native line (docs/performance.md). The document
//! is now written straight into the output buffer. Every string the event needs (decoded hex,
//! names, the v2 members read back) goes into one reused arena of the [`Scratch`] and is referred
//! to by `Span`; the v2 members are read into a reused flat tree (`Node`s, module `tree`), so in
//! steady state converting an event allocates nothing here (a test counts). Invariants kept from
//! the `Value` writer, byte for byte (tests/formats.rs goldens):
//! - members of every object in byte order of their names (serde_json's map is sorted), a name
//!   written twice keeps its last value;
//! - strings escaped as serde_json escapes them (`json::push_serde_escaped`), invalid UTF-8 as U+FFFD.

use std::io::Write as _;

use serde::de::DeserializeSeed;
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{push_rfc3339, push_serde_escaped};
use super::names::{Names, UNSET};
use super::native::{original_bytes, NativeLine, NativeRecord};
use crate::record::EventId;
use crate::rules::lookup::{self, Machine};

mod tree;

use tree::{
    as_int, as_str, as_u64, at, children, get, link, push_node, put, sorted_members, write_node, Kind, Node, NodeSeed,
    Span, NONE,
};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.0.0";

/// Append `line` as one ECS JSON document (no newline). `scratch` is reused across calls.
pub fn write(
    line: &NativeLine<'_>,
    time_ms: u64,
    host: &str,
    names: &mut Names,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    if line.is_event() {
        event(line, host, names, scratch, out);
    } else {
        notice(line, time_ms, host, scratch, out);
    }
}

/// One `auditd.data` value.
#[derive(Debug, Clone, Copy)]
enum Data {
    One(Span),
    /// `many[start..end]`: a repeated key's values.
    Many(u32, u32),
    /// The SOCKADDR's `socket` object (`socket` entries).
    Socket,
}

/// Reused per-event state of the ECS writer (one per [`super::Formatter`]).
#[derive(Debug, Default)]
pub struct Scratch {
    arena: Vec<u8>,
    nodes: Vec<Node>,
    tmp: Vec<u8>,
    order: Vec<u32>,
    ids: Vec<(Span, u32)>,
    /// `(id key, name)`: `("uid", "root")` for `uid_name`.
    id_names: Vec<(Span, Span)>,
    argv: Vec<Span>,
    /// `process.parent.argv` (v2 only).
    parent_argv: Vec<Span>,
    keys: Vec<Span>,
    paths: Vec<u32>,
    network: Vec<u32>,
    user_msg: Vec<(Span, Span)>,
    data: Vec<(Span, Data)>,
    many: Vec<Span>,
    socket: Vec<(Span, Span)>,
    /// The `file` member, written before its place in the document.
    file: Vec<u8>,
}

impl Scratch {
    fn clear(&mut self) {
        self.arena.clear();
        self.nodes.clear();
        self.ids.clear();
        self.id_names.clear();
        self.argv.clear();
        self.parent_argv.clear();
        self.keys.clear();
        self.paths.clear();
        self.network.clear();
        self.user_msg.clear();
        self.data.clear();
        self.many.clear();
        self.socket.clear();
    }
}

/// Copy `bytes` into the arena, each invalid UTF-8 sequence as U+FFFD (`from_utf8_lossy`).
fn put_lossy(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = arena.len() as u32;
    push_lossy_bytes(arena, bytes);
    Span { start, end: arena.len() as u32 }
}

fn push_lossy_bytes(arena: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        arena.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            arena.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
}

fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    push_serde_escaped(out, bytes);
    out.push(b'"');
}

/// `bytes` as a JSON string, invalid UTF-8 as U+FFFD.
fn push_lossy(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        push_serde_escaped(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Members written each with a leading comma; [`close`] turns the first into `{`.
fn member(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn close(out: &mut Vec<u8>, open: usize) {
    if out.len() == open {
        out.extend_from_slice(b"{}");
    } else {
        out[open] = b'{';
        out.push(b'}');
    }
}

/// `,"name":"value"`
fn str_member(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    member(out, name);
    push_str(out, value);
}

/// A process's `args`, `args_count`, `executable` and `name` members (those it has), in that
/// order: the members of `process` and `process.parent` that sort before `parent`/`pid`.
fn program(out: &mut Vec<u8>, arena: &[u8], args: &[Span], exe: Option<Span>, name: Option<Span>) {
    if !args.is_empty() {
        member(out, "args");
        str_list(out, arena, args);
        member(out, "args_count");
        push_int(out, args.len());
    }
    for (k, val) in [("executable", exe), ("name", name)] {
        if let Some(val) = val {
            str_member(out, k, at(arena, val));
        }
    }
}

fn str_list(out: &mut Vec<u8>, arena: &[u8], items: &[Span]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, at(arena, *s));
    }
    out.push(b']');
}

fn static_list(out: &mut Vec<u8>, items: &[&str]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, s.as_bytes());
    }
    out.push(b']');
}

/// A value as text: a string as it is, anything else as its JSON (`Value::to_string`).
fn value_string(sc: &mut Scratch, n: u32) -> Span {
    if let Kind::Str(s) = sc.nodes[n as usize].kind {
        return s;
    }
    sc.tmp.clear();
    write_node(&mut sc.tmp, &sc.arena, &sc.nodes, &mut sc.order, n);
    put(&mut sc.arena, &sc.tmp)
}

/// Read a v2 member into the tree.
fn parse(sc: &mut Scratch, raw: Option<&RawValue>) -> Option<u32> {
    let raw = raw?;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    NodeSeed { arena: &mut sc.arena, nodes: &mut sc.nodes, key: Span::default() }.deserialize(&mut de).ok()
}

// ---- notices ------------------------------------------------------------------------------

fn notice(line: &NativeLine<'_>, time_ms: u64, host: &str, sc: &mut Scratch, out: &mut Vec<u8>) {
    let (what, raw) = match (line.loss, line.unparsed) {
        (Some(l), _) => ("loss", Some(l)),
        (_, Some(u)) => ("unparsed", Some(u)),
        _ => ("unknown", None),
    };
    let member_node = parse(sc, raw);
    let kind = member_node.and_then(|m| get(&sc.arena, &sc.nodes, m, "kind")).and_then(|k| as_str(&sc.nodes, k));
    out.extend_from_slice(b"{\"@timestamp\":\"");
    let id = EventId { seconds: time_ms / 1000, millis: (time_ms % 1000) as u16, serial: 0 };
    push_rfc3339(out, &id);
    out.extend_from_slice(b"\",\"auditrelay\":{");
    push_str(out, what.as_bytes());
    out.push(b':');
    match member_node {
        Some(m) => write_node(out, &sc.arena, &sc.nodes, &mut sc.order, m),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"},\"ecs\":{\"version\":\"");
    out.extend_from_slice(ECS_VERSION.as_bytes());
    out.extend_from_slice(b"\"},\"event\":{\"action\":");
    match kind {
        Some(k) => push_str(out, at(&sc.arena, k)),
        None => push_str(out, what.as_bytes()),
    }
    out.extend_from_slice(b",\"kind\":\"pipeline_error\",\"module\":\"auditd\"},\"host\":{\"name\":");
    push_str(out, host.as_bytes());
    out.extend_from_slice(b"}}");
}

// ---- what the document needs to know of an event ------------------------------------------

/// What the formats need to know of an event, from v2 members or the raw fields (the lists are
/// in the [`Scratch`]: ids, id names, argv, paths, network, keys).
#[derive(Debug, Default, Clone, Copy)]
struct View {
    syscall: Option<Span>,
    arch: Option<Span>,
    success: Option<bool>,
    exit: Option<Span>,
    pid: Option<i64>,
    ppid: Option<i64>,
    /// `process.parent.{exe,comm}` and `process.container_id` (v2 only: the process table's).
    parent_exe: Option<Span>,
    parent_comm: Option<Span>,
    container: Option<Span>,
    comm: Option<Span>,
    exe: Option<Span>,
    cwd: Option<Span>,
    title: Option<Span>,
    tty: Option<Span>,
    ses: Option<Span>,
    host: Option<Span>,
}

/// Fill the view from the raw fields (every member; v2 then overrides what it has).
fn raw_view(line: &NativeLine<'_>, primary: Option<&NativeRecord<'_>>, v: &mut View, sc: &mut Scratch) {
    let Some(p) = primary else { return };
    let get = |k: &str| p.fields.get(k).filter(|s| *s != "(null)" && *s != "?");
    let arena = &mut sc.arena;
    let arch = raw_arch(line);
    v.arch = arch.and_then(arch_name).or_else(|| get("arch")).map(|a| put(arena, a.as_bytes()));
    v.syscall = get("syscall").map(|s| {
        let name = s.parse::<u32>().ok().and_then(|nr| syscall_name(arch, nr)).unwrap_or(s);
        put(arena, name.as_bytes())
    });
    v.success = p.fields.get("success").map(|s| s == "yes");
    v.exit = get("exit").map(|e| {
        let name = e.parse::<i32>().ok().filter(|n| *n < 0).and_then(|n| lookup::errno_name(-n)).unwrap_or(e);
        put(arena, name.as_bytes())
    });
    v.pid = get("pid").and_then(|s| s.parse().ok());
    v.ppid = get("ppid").and_then(|s| s.parse().ok());
    v.comm = get("comm").map(|s| decode_hex_value(arena, &mut sc.tmp, s));
    v.exe = get("exe").map(|s| decode_hex_value(arena, &mut sc.tmp, s));
    v.tty = get("tty").map(|s| put(arena, s.as_bytes()));
    v.ses = get("ses").map(|s| put(arena, s.as_bytes()));
    for (k, val) in &p.fields.0 {
        let k = k.as_str();
        if (k.ends_with("uid") || k.ends_with("gid")) && k.len() <= 5 {
            if let Some(id) = val.first().and_then(|s| s.parse::<u32>().ok()) {
                let key = put(arena, k.as_bytes());
                sc.ids.push((key, id));
            }
        }
    }
    for r in &line.records {
        match r.type_id {
            Some(1307) => v.cwd = r.fields.get("cwd").map(|c| decode_hex_value(arena, &mut sc.tmp, c)),
            Some(1327) => {
                v.title = r.fields.get("proctitle").map(|t| {
                    let bytes: &[u8] = if hex_decode(t, &mut sc.tmp) { &sc.tmp } else { t.as_bytes() };
                    let start = arena.len() as u32;
                    for (i, part) in bytes.split(|b| *b == 0).filter(|s| !s.is_empty()).enumerate() {
                        if i > 0 {
                            arena.push(b' ');
                        }
                        push_lossy_bytes(arena, part);
                    }
                    Span { start, end: arena.len() as u32 }
                })
            }
            Some(1309) => {
                for (k, val) in &r.fields.0 {
                    let k = k.as_str();
                    if k.len() > 1 && k.starts_with('a') && k[1..].bytes().all(|b| b.is_ascii_digit()) {
                        if let Some(a) = val.first() {
                            let s = decode_hex_value(arena, &mut sc.tmp, a);
                            sc.argv.push(s);
                        }
                    }
                }
            }
            Some(1302) => {
                let obj = push_node(&mut sc.nodes, Kind::Obj, Span::default());
                let mut last = NONE;
                for (k, val) in &r.fields.0 {
                    if let Some(s) = val.first() {
                        let s = if k.as_str() == "name" {
                            decode_hex_value(arena, &mut sc.tmp, s)
                        } else {
                            put(arena, s.as_bytes())
                        };
                        let key = put(arena, k.as_str().as_bytes());
                        let c = push_node(&mut sc.nodes, Kind::Str(s), key);
                        link(&mut sc.nodes, obj, &mut last, c);
                    }
                }
                sc.paths.push(obj);
            }
            Some(1306) => {
                if let Some(a) =
                    r.fields.get("saddr").and_then(|s| decode_sockaddr(s, arena, &mut sc.nodes, &mut sc.tmp))
                {
                    sc.network.push(a);
                }
            }
            _ => {}
        }
    }
    if let Some(key) = get("key") {
        let bytes: &[u8] = if hex_decode(key, &mut sc.tmp) { &sc.tmp } else { key.as_bytes() };
        for k in bytes.split(|b| *b == 1) {
            let s = put_lossy(&mut sc.arena, k);
            sc.keys.push(s);
        }
    }
}

/// Override the view with schema v2's members (src/enrich), where the event has them.
fn v2_view(line: &NativeLine<'_>, v: &mut View, sc: &mut Scratch) {
    if let Some(h) = parse(sc, line.host).and_then(|h| as_str(&sc.nodes, h)) {
        v.host = Some(h);
    }
    if let Some(s) = parse(sc, line.syscall).filter(|s| matches!(sc.nodes[*s as usize].kind, Kind::Obj)) {
        let (arena, nodes) = (&sc.arena, &sc.nodes);
        if let Some(n) = get(arena, nodes, s, "name").and_then(|n| as_str(nodes, n)) {
            v.syscall = Some(n);
        }
        if let Some(a) = get(arena, nodes, s, "arch").and_then(|n| as_str(nodes, n)) {
            v.arch = Some(a);
        }
        if let Some(Kind::Bool(ok)) = get(arena, nodes, s, "success").map(|n| nodes[n as usize].kind) {
            v.success = Some(ok);
        }
        if let Some(e) = get(arena, nodes, s, "exit_name").and_then(|n| as_str(nodes, n)) {
            v.exit = Some(e);
        } else if let Some(e) = get(arena, nodes, s, "exit") {
            v.exit = Some(value_string(sc, e));
        }
    }
    if let Some(p) = parse(sc, line.process).filter(|p| matches!(sc.nodes[*p as usize].kind, Kind::Obj)) {
        let field = |sc: &mut Scratch, k: &str| {
            let n = get(&sc.arena, &sc.nodes, p, k).filter(|n| !matches!(sc.nodes[*n as usize].kind, Kind::Null))?;
            Some(value_string(sc, n))
        };
        if let Some(x) = get(&sc.arena, &sc.nodes, p, "pid").and_then(|n| as_int(&sc.arena, &sc.nodes, n)) {
            v.pid = Some(x);
        }
        if let Some(x) = get(&sc.arena, &sc.nodes, p, "ppid").and_then(|n| as_int(&sc.arena, &sc.nodes, n)) {
            v.ppid = Some(x);
        }
        v.comm = field(sc, "comm").or(v.comm);
        v.exe = field(sc, "exe").or(v.exe);
        v.container = field(sc, "container_id");
        if let Some(pp) =
            get(&sc.arena, &sc.nodes, p, "parent").filter(|n| matches!(sc.nodes[*n as usize].kind, Kind::Obj))
        {
            // The table's parent is the SYSCALL's ppid when the event has one.
            if v.ppid.is_none() {
                v.ppid = get(&sc.arena, &sc.nodes, pp, "pid").and_then(|n| as_int(&sc.arena, &sc.nodes, n));
            }
            let text = |sc: &mut Scratch, k: &str| {
                let n =
                    get(&sc.arena, &sc.nodes, pp, k).filter(|n| !matches!(sc.nodes[*n as usize].kind, Kind::Null))?;
                Some(value_string(sc, n))
            };
            v.parent_exe = text(sc, "exe");
            v.parent_comm = text(sc, "comm");
            if let Some(a) =
                get(&sc.arena, &sc.nodes, pp, "argv").filter(|a| matches!(sc.nodes[*a as usize].kind, Kind::Arr))
            {
                let mut c = sc.nodes[a as usize].first;
                while c != NONE {
                    let s = value_string(sc, c);
                    sc.parent_argv.push(s);
                    c = sc.nodes[c as usize].next;
                }
            }
        }
        v.cwd = field(sc, "cwd").or(v.cwd);
        v.tty = field(sc, "tty").or(v.tty);
        v.ses = field(sc, "ses").or(v.ses);
        if let Some(a) =
            get(&sc.arena, &sc.nodes, p, "argv").filter(|a| matches!(sc.nodes[*a as usize].kind, Kind::Arr))
        {
            sc.argv.clear();
            let mut c = sc.nodes[a as usize].first;
            while c != NONE {
                let s = value_string(sc, c);
                sc.argv.push(s);
                c = sc.nodes[c as usize].next;
            }
        }
        if let Some(t) =
            get(&sc.arena, &sc.nodes, p, "title").filter(|t| matches!(sc.nodes[*t as usize].kind, Kind::Arr))
        {
            // Each part as text first (a non-string part is written into the arena), then joined.
            let from = sc.many.len();
            let mut c = sc.nodes[t as usize].first;
            while c != NONE {
                let s = value_string(sc, c);
                sc.many.push(s);
                c = sc.nodes[c as usize].next;
            }
            let start = sc.arena.len() as u32;
            for i in from..sc.many.len() {
                if i > from {
                    sc.arena.push(b' ');
                }
                let s = sc.many[i];
                sc.arena.extend_from_within(s.start as usize..s.end as usize);
            }
            sc.many.truncate(from);
            v.title = Some(Span { start, end: sc.arena.len() as u32 });
        }
    }
    if let Some(u) = parse(sc, line.user).filter(|u| matches!(sc.nodes[*u as usize].kind, Kind::Obj)) {
        let from = sc.order.len();
        sorted_members(&sc.arena, &sc.nodes, u, &mut sc.order);
        for i in from..sc.order.len() {
            let c = sc.order[i];
            let key = sc.nodes[c as usize].key;
            let k = at(&sc.arena, key);
            if let Some(base) = k.strip_suffix(b"_name") {
                if let Some(n) = as_str(&sc.nodes, c) {
                    let base = Span { start: key.start, end: key.start + base.len() as u32 };
                    let arena = &sc.arena;
                    sc.id_names.retain(|(x, _)| at(arena, *x) != at(arena, base));
                    sc.id_names.push((base, n));
                }
                continue;
            }
            let id = match sc.nodes[c as usize].kind {
                Kind::Str(s) if at(&sc.arena, s) == b"unset" => Some(UNSET),
                _ => as_u64(&sc.nodes, c).and_then(|i| u32::try_from(i).ok()),
            };
            if let Some(id) = id {
                let arena = &sc.arena;
                sc.ids.retain(|(x, _)| at(arena, *x) != k);
                sc.ids.push((key, id));
            }
        }
        sc.order.truncate(from);
    }
    if let Some(f) = parse(sc, line.file) {
        if let Some(paths) =
            get(&sc.arena, &sc.nodes, f, "paths").filter(|p| matches!(sc.nodes[*p as usize].kind, Kind::Arr))
        {
            let is_obj = |c: &u32| matches!(sc.nodes[*c as usize].kind, Kind::Obj);
            if children(&sc.nodes, paths).any(|c| is_obj(&c)) {
                sc.paths.clear();
                sc.paths.extend(children(&sc.nodes, paths).filter(is_obj));
            }
        }
    }
    if let Some(n) = parse(sc, line.network).filter(|n| matches!(sc.nodes[*n as usize].kind, Kind::Arr)) {
        sc.network.clear();
        sc.network.extend(children(&sc.nodes, n).filter(|c| matches!(sc.nodes[*c as usize].kind, Kind::Obj)));
    }
    if let Some(k) = parse(sc, line.keys).filter(|k| matches!(sc.nodes[*k as usize].kind, Kind::Arr)) {
        sc.keys.clear();
        let mut c = sc.nodes[k as usize].first;
        while c != NONE {
            let s = value_string(sc, c);
            sc.keys.push(s);
            c = sc.nodes[c as usize].next;
        }
    }
}

/// The name recorded for id field `key` (`uid` → the `uid_name` entry).
fn id_name(sc: &Scratch, key: &[u8]) -> Option<Span> {
    sc.id_names.iter().find(|(k, _)| at(&sc.arena, *k) == key).map(|(_, n)| *n)
}

// ---- events -------------------------------------------------------------------------------

/// `user.*` slots, in the order the ids are read: uid gid euid egid suid sgid fsuid fsgid auid.
const USER_SLOTS: [&[u8]; 9] = [b"uid", b"gid", b"euid", b"egid", b"suid", b"sgid", b"fsuid", b"fsgid", b"auid"];

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    id: Option<u32>,
    name: Option<Span>,
    /// No name known and the id was unset (`"unset"` as the name) at some read of the slot.
    unset: bool,
}

fn event(line: &NativeLine<'_>, host: &str, names: &mut Names, sc: &mut Scratch, out: &mut Vec<u8>) {
    let primary = line.records.iter().find(|r| r.type_id == Some(1300)).or_else(|| line.records.first());
    let mut v = View::default();
    raw_view(line, primary, &mut v, sc);
    v2_view(line, &mut v, sc);
    // Names of ids NSS knows, for those v2 did not name.
    for i in 0..sc.ids.len() {
        let (key, id) = sc.ids[i];
        if id == UNSET || id_name(sc, at(&sc.arena, key)).is_some() {
            continue;
        }
        let n = if at(&sc.arena, key).ends_with(b"gid") { names.group(id) } else { names.user(id) };
        if let Some(n) = n {
            let n = put(&mut sc.arena, n.as_bytes());
            sc.id_names.push((key, n));
        }
    }

    let message_type = primary.map(|r| {
        let s = put(&mut sc.arena, r.type_name.as_str().as_bytes());
        sc.arena[s.start as usize..].make_ascii_lowercase();
        s
    });
    if let Some(msg) = primary.and_then(|r| r.fields.get("msg")) {
        inner_fields(msg, sc);
    }
    // A user-space record names its program and peer inside `msg='…'` (aucoalesce reads them too).
    let inner = |sc: &Scratch, k: &str| {
        sc.user_msg
            .iter()
            .find(|(x, _)| at(&sc.arena, *x) == k.as_bytes())
            .map(|(_, v)| *v)
            .filter(|v| at(&sc.arena, *v) != b"?")
    };
    if v.exe.is_none() {
        v.exe = inner(sc, "exe");
    }
    let user_peer = inner(sc, "addr")
        .filter(|a| std::str::from_utf8(at(&sc.arena, *a)).is_ok_and(|a| a.parse::<std::net::IpAddr>().is_ok()));
    let (category, kind_type, action, object_type) = classify(&v, &sc.arena, primary);
    let result = match v.success {
        Some(true) => "success",
        Some(false) => "fail",
        None => match sc.user_msg.iter().find(|(k, _)| at(&sc.arena, *k) == b"res").map(|(_, r)| at(&sc.arena, *r)) {
            Some(b"success" | b"1" | b"yes") => "success",
            Some(b"failed" | b"fail" | b"0" | b"no") => "fail",
            _ => "unknown",
        },
    };
    let outcome = match result {
        "success" => "success",
        "fail" => "failure",
        _ => "unknown",
    };

    // user.*: the last value of a slot wins, a name only where one is known.
    let mut slots = [Slot::default(); 9];
    for (key, id) in &sc.ids {
        let k = at(&sc.arena, *key);
        let Some(slot) = USER_SLOTS.iter().position(|s| *s == k) else { continue };
        slots[slot].id = Some(*id);
        match id_name(sc, k) {
            Some(n) => slots[slot].name = Some(n),
            None => slots[slot].unset |= *id == UNSET,
        }
    }

    // file.*: the path the syscall acted on: aucoalesce's `path_index` (1 for mkdir and mount, 2
    // for rename, else 0), the first path when there are fewer.
    let index = match v.syscall.map(|s| at(&sc.arena, s)) {
        Some(b"mkdir" | b"mkdirat" | b"mount") => 1,
        Some(b"rename" | b"renameat" | b"renameat2") => 2,
        _ => 0,
    };
    let target = sc.paths.get(index).or_else(|| sc.paths.first()).copied();
    let mut object_primary: Option<Span> = None;
    let mut file = std::mem::take(&mut sc.file);
    file.clear();
    if let Some(p) = target {
        let field = |sc: &mut Scratch, k: &str| get(&sc.arena, &sc.nodes, p, k).map(|n| value_string(sc, n));
        let name = field(sc, "name");
        object_primary = name;
        let dev = field(sc, "dev");
        let inode = field(sc, "inode");
        let mode = field(sc, "mode").map(|m| file_mode(sc, m));
        let ouid = field(sc, "ouid");
        let owner = match ouid.and_then(|u| parse_u32(&sc.arena, u)) {
            Some(id) => match field(sc, "ouid_name") {
                Some(n) => Some(n),
                None => names.user(id).map(|n| put(&mut sc.arena, n.as_bytes())),
            },
            None => None,
        };
        let ogid = field(sc, "ogid");
        let group = match ogid.and_then(|g| parse_u32(&sc.arena, g)) {
            Some(id) => match field(sc, "ogid_name") {
                Some(n) => Some(n),
                None => names.group(id).map(|n| put(&mut sc.arena, n.as_bytes())),
            },
            None => None,
        };
        // Sorted: device gid group inode mode owner path uid.
        member(&mut file, "file");
        let open = file.len();
        let a = &sc.arena;
        for (k, val) in [
            ("device", dev),
            ("gid", ogid),
            ("group", group),
            ("inode", inode),
            ("mode", mode),
            ("owner", owner),
            ("path", name),
            ("uid", ouid),
        ] {
            if let Some(val) = val {
                str_member(&mut file, k, at(a, val));
            }
        }
        if file.len() == open {
            file.clear();
        } else {
            close(&mut file, open);
        }
    }

    // source / destination by syscall (aucoalesce's addSockaddrRecord).
    let addr = sc.network.iter().copied().find(|a| {
        get(&sc.arena, &sc.nodes, *a, "address").is_some() || get(&sc.arena, &sc.nodes, *a, "path").is_some()
    });
    let side = match (addr, v.syscall.map(|s| at(&sc.arena, s))) {
        (Some(_), Some(b"recvfrom" | b"recvmsg" | b"accept" | b"accept4")) => Some(("source", "ingress")),
        (Some(_), Some(b"connect" | b"sendto" | b"sendmsg")) => Some(("destination", "egress")),
        _ => None,
    };
    let mut peer = [None::<Span>; 3]; // ip, path, port (as text)
    let mut port: Option<u16> = None;
    if let (Some(a), Some(_)) = (addr, side) {
        if let Some(ip) = get(&sc.arena, &sc.nodes, a, "address") {
            let s = value_string(sc, ip);
            object_primary = Some(s);
            peer[0] = Some(s);
        }
        if let Some(p) = get(&sc.arena, &sc.nodes, a, "port") {
            let s = value_string(sc, p);
            port = std::str::from_utf8(at(&sc.arena, s)).ok().and_then(|p| p.parse::<u16>().ok());
        }
        if let Some(path) = get(&sc.arena, &sc.nodes, a, "path") {
            let s = value_string(sc, path);
            object_primary = Some(s);
            peer[1] = Some(s);
        }
    }
    let write_peer = |out: &mut Vec<u8>, sc: &Scratch, name: &str| {
        member(out, name);
        let open = out.len();
        if let Some(ip) = peer[0] {
            str_member(out, "ip", at(&sc.arena, ip));
        }
        if let Some(path) = peer[1] {
            str_member(out, "path", at(&sc.arena, path));
        }
        if let Some(port) = port {
            member(out, "port");
            push_int(out, port);
        }
        close(out, open);
    };

    // auditd.data, gathered before anything is written (its values may go into the arena).
    data(line, primary, &v, sc);

    let doc = out.len();
    member(out, "@timestamp");
    match &line.time {
        Some(t) => push_str(out, t.as_str().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }

    // auditd
    member(out, "auditd");
    let auditd = out.len();
    member(out, "data");
    write_data(out, sc);
    member(out, "message_type");
    push_str(out, message_type.map_or(&b""[..], |m| at(&sc.arena, m)));
    if !sc.paths.is_empty() {
        member(out, "paths");
        out.push(b'[');
        for i in 0..sc.paths.len() {
            if i > 0 {
                out.push(b',');
            }
            write_node(out, &sc.arena, &sc.nodes, &mut sc.order, sc.paths[i]);
        }
        out.push(b']');
    }
    member(out, "result");
    push_str(out, result.as_bytes());
    member(out, "sequence");
    match line.sequence {
        Some(s) => push_int(out, s),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(s) = v.ses.filter(|s| at(&sc.arena, *s) != b"4294967295") {
        str_member(out, "session", at(&sc.arena, s));
    }
    // summary: actor, how, object
    let actor = |slot: usize| -> Option<Actor> {
        let s = slots_lookup(sc, USER_SLOTS[slot])?;
        Some(match id_name(sc, USER_SLOTS[slot]) {
            Some(n) => Actor::Name(n),
            None if s == UNSET => Actor::Unset,
            None => Actor::Id(s),
        })
    };
    let (primary_actor, secondary_actor) = (actor(8), actor(0));
    let how = v.exe.or(v.comm);
    if primary_actor.is_some()
        || secondary_actor.is_some()
        || object_type.is_some()
        || object_primary.is_some()
        || how.is_some()
    {
        member(out, "summary");
        let summary = out.len();
        if primary_actor.is_some() || secondary_actor.is_some() {
            member(out, "actor");
            let o = out.len();
            for (k, a) in [("primary", primary_actor), ("secondary", secondary_actor)] {
                if let Some(a) = a {
                    member(out, k);
                    match a {
                        Actor::Name(n) => push_str(out, at(&sc.arena, n)),
                        Actor::Unset => push_str(out, b"unset"),
                        Actor::Id(id) => {
                            out.push(b'"');
                            push_int(out, id);
                            out.push(b'"');
                        }
                    }
                }
            }
            close(out, o);
        }
        if let Some(h) = how {
            str_member(out, "how", at(&sc.arena, h));
        }
        if object_type.is_some() || object_primary.is_some() {
            member(out, "object");
            let o = out.len();
            if let Some(p) = object_primary {
                str_member(out, "primary", at(&sc.arena, p));
            }
            if let Some(t) = object_type {
                str_member(out, "type", t.as_bytes());
            }
            close(out, o);
        }
        close(out, summary);
    }
    close(out, auditd);

    // auditrelay
    if line.id.is_some() || line.incomplete || line.late || line.truncated {
        member(out, "auditrelay");
        let o = out.len();
        if let Some(id) = &line.id {
            str_member(out, "id", id.as_str().as_bytes());
        }
        for (flag, on) in [("incomplete", line.incomplete), ("late", line.late), ("truncated", line.truncated)] {
            if on {
                member(out, flag);
                out.extend_from_slice(b"true");
            }
        }
        close(out, o);
    }
    if let Some(c) = v.container {
        member(out, "container");
        out.extend_from_slice(b"{\"id\":");
        push_str(out, at(&sc.arena, c));
        out.push(b'}');
    }
    if side.is_some_and(|(s, _)| s == "destination") {
        write_peer(out, sc, "destination");
    }
    member(out, "ecs");
    out.extend_from_slice(b"{\"version\":");
    push_str(out, ECS_VERSION.as_bytes());
    out.push(b'}');

    // event
    member(out, "event");
    let ev = out.len();
    if let Some(a) = action {
        str_member(out, "action", a.as_bytes());
    }
    member(out, "category");
    static_list(out, category);
    out.extend_from_slice(b",\"kind\":\"event\",\"module\":\"auditd\"");
    member(out, "original");
    out.push(b'[');
    for (i, r) in line.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let text = &mut sc.tmp;
        text.clear();
        text.extend_from_slice(b"type=");
        text.extend_from_slice(r.type_name.as_str().as_bytes());
        text.extend_from_slice(b" msg=audit(");
        text.extend_from_slice(line.timestamp.as_ref().map_or("", |t| t.as_str()).as_bytes());
        text.push(b':');
        text.extend_from_slice(itoa::Buffer::new().format(line.sequence.unwrap_or(0)).as_bytes());
        text.push(b')');
        r.after_stamp(text, true);
        push_lossy(out, text);
    }
    out.push(b']');
    str_member(out, "outcome", outcome.as_bytes());
    member(out, "type");
    static_list(out, kind_type);
    close(out, ev);

    out.extend_from_slice(&file);
    sc.file = file;
    member(out, "host");
    out.extend_from_slice(b"{\"name\":");
    match v.host {
        Some(h) => push_str(out, at(&sc.arena, h)),
        None => push_str(out, host.as_bytes()),
    }
    out.push(b'}');
    if side.is_some() {
        member(out, "network");
        out.extend_from_slice(b"{\"direction\":");
        push_str(out, side.map_or("", |(_, d)| d).as_bytes());
        out.push(b'}');
    }

    // process: args args_count executable name parent pid title working_directory
    let has_process = v.pid.is_some()
        || v.ppid.is_some()
        || v.title.is_some()
        || v.comm.is_some()
        || v.exe.is_some()
        || v.cwd.is_some()
        || !sc.argv.is_empty();
    if has_process {
        member(out, "process");
        let o = out.len();
        program(out, &sc.arena, &sc.argv, v.exe, v.comm);
        if let Some(p) = v.ppid {
            // parent: args args_count executable name pid
            member(out, "parent");
            let o = out.len();
            program(out, &sc.arena, &sc.parent_argv, v.parent_exe, v.parent_comm);
            member(out, "pid");
            push_int(out, p);
            close(out, o);
        }
        if let Some(p) = v.pid {
            member(out, "pid");
            push_int(out, p);
        }
        for (k, val) in [("title", v.title), ("working_directory", v.cwd)] {
            if let Some(val) = val {
                str_member(out, k, at(&sc.arena, val));
            }
        }
        close(out, o);
    }
    out.extend_from_slice(b",\"service\":{\"type\":\"auditd\"}");
    if side.is_some_and(|(s, _)| s == "source") {
        write_peer(out, sc, "source");
    } else if let Some(ip) = user_peer {
        member(out, "source");
        out.extend_from_slice(b"{\"ip\":");
        push_str(out, at(&sc.arena, ip));
        out.push(b'}');
    }
    if !sc.keys.is_empty() {
        member(out, "tags");
        str_list(out, &sc.arena, &sc.keys);
    }

    // user: audit effective filesystem group id name saved (each {group, id, name})
    if slots.iter().any(|s| s.id.is_some()) {
        member(out, "user");
        let o = out.len();
        // (name, own slot, its group's slot)
        for (k, own, group) in [
            ("audit", Some(8), None),
            ("effective", Some(2), Some(3)),
            ("filesystem", Some(6), Some(7)),
            ("group", Some(1), None),
        ] {
            let own = own.filter(|s| slots[*s].id.is_some());
            let group = group.filter(|s: &usize| slots[*s].id.is_some());
            if own.is_none() && group.is_none() {
                continue;
            }
            member(out, k);
            let inner = out.len();
            if let Some(g) = group {
                member(out, "group");
                let gi = out.len();
                id_and_name(out, &sc.arena, slots[g]);
                close(out, gi);
            }
            if let Some(s) = own {
                id_and_name(out, &sc.arena, slots[s]);
            }
            close(out, inner);
        }
        id_and_name(out, &sc.arena, slots[0]);
        if slots[4].id.is_some() || slots[5].id.is_some() {
            member(out, "saved");
            let inner = out.len();
            if slots[5].id.is_some() {
                member(out, "group");
                let gi = out.len();
                id_and_name(out, &sc.arena, slots[5]);
                close(out, gi);
            }
            id_and_name(out, &sc.arena, slots[4]);
            close(out, inner);
        }
        close(out, o);
    }
    close(out, doc);
}

/// `,"id":"…","name":"…"` of a slot (nothing when the id is not there).
fn id_and_name(out: &mut Vec<u8>, arena: &[u8], slot: Slot) {
    let Some(id) = slot.id else { return };
    out.extend_from_slice(b",\"id\":\"");
    push_int(out, id);
    out.push(b'"');
    match slot.name {
        Some(n) => str_member(out, "name", at(arena, n)),
        None if slot.unset => str_member(out, "name", b"unset"),
        None => {}
    }
}

#[derive(Debug, Clone, Copy)]
enum Actor {
    Name(Span),
    Unset,
    Id(u32),
}

/// The first id read for `key` (`summary.actor` takes the first, as the `Value` writer did).
fn slots_lookup(sc: &Scratch, key: &[u8]) -> Option<u32> {
    sc.ids.iter().find(|(k, _)| at(&sc.arena, *k) == key).map(|(_, i)| *i)
}

fn parse_u32(arena: &[u8], s: Span) -> Option<u32> {
    std::str::from_utf8(at(arena, s)).ok()?.parse().ok()
}

/// aucoalesce's `file.mode`: the permission bits only, `%#o` (`0644`); not octal: as it is.
fn file_mode(sc: &mut Scratch, m: Span) -> Span {
    let parsed = std::str::from_utf8(at(&sc.arena, m)).ok().and_then(|s| u32::from_str_radix(s, 8).ok());
    let start = sc.arena.len() as u32;
    match parsed {
        Some(bits) => {
            // `{:#o}` then "0o" → "0": a leading 0 and the octal digits.
            let _ = write!(sc.arena, "0{:o}", bits & 0o7777);
        }
        None => {
            // The value with every "0o" made "0", as `str::replace` did.
            let mut i = m.start as usize;
            while i < m.end as usize {
                if sc.arena[i] == b'0' && i + 1 < m.end as usize && sc.arena[i + 1] == b'o' {
                    sc.arena.push(b'0');
                    i += 2;
                } else {
                    let b = sc.arena[i];
                    sc.arena.push(b);
                    i += 1;
                }
            }
        }
    }
    Span { start, end: sc.arena.len() as u32 }
}

/// `auditd.data`: the primary record's fields not mapped elsewhere (arch and syscall by name,
/// exit as errno name on failure), SOCKADDR as `socket.*`, and a user-space message's inner fields.
fn data(line: &NativeLine<'_>, primary: Option<&NativeRecord<'_>>, v: &View, sc: &mut Scratch) {
    const MAPPED: &[&str] = &[
        "pid", "ppid", "comm", "exe", "ses", "key", "success", "uid", "gid", "euid", "egid", "suid", "sgid", "fsuid",
        "fsgid", "auid", "msg",
    ];
    if let Some(p) = primary {
        for (k, val) in &p.fields.0 {
            if MAPPED.contains(&k.as_str()) {
                continue;
            }
            let latin1 = p.is_latin1(k.as_str());
            let mut values = val.iter();
            let value = match (values.next(), values.next()) {
                (Some(one), None) => Data::One(put_lossy(&mut sc.arena, &original_bytes(one.as_str(), latin1))),
                _ => {
                    let from = sc.many.len() as u32;
                    for s in val.iter() {
                        let s = put_lossy(&mut sc.arena, &original_bytes(s.as_str(), latin1));
                        sc.many.push(s);
                    }
                    Data::Many(from, sc.many.len() as u32)
                }
            };
            let key = put(&mut sc.arena, k.as_str().as_bytes());
            data_insert(sc, key, value, true);
        }
    }
    if let Some(a) = v.arch {
        let key = put(&mut sc.arena, b"arch");
        data_insert(sc, key, Data::One(a), true);
    }
    if let Some(s) = v.syscall {
        let key = put(&mut sc.arena, b"syscall");
        data_insert(sc, key, Data::One(s), true);
    }
    if v.success == Some(false) {
        if let Some(e) = v.exit {
            let key = put(&mut sc.arena, b"exit");
            data_insert(sc, key, Data::One(e), true);
        }
    }
    for i in 0..sc.user_msg.len() {
        let (k, val) = sc.user_msg[i];
        data_insert(sc, k, Data::One(val), false);
    }
    if let Some(sa) = line.records.iter().find(|r| r.type_id == Some(1306)) {
        if let Some(saddr) = sa.fields.get("saddr") {
            let key = put(&mut sc.arena, b"saddr");
            let val = put(&mut sc.arena, saddr.as_bytes());
            sc.socket.push((key, val));
        }
        if let Some(a) = sc.network.first().copied() {
            let mut c = sc.nodes[a as usize].first;
            while c != NONE {
                let k = sc.nodes[c as usize].key;
                let key = if at(&sc.arena, k) == b"address" { put(&mut sc.arena, b"addr") } else { k };
                let val = value_string(sc, c);
                let arena = &sc.arena;
                match sc.socket.iter_mut().find(|(x, _)| at(arena, *x) == at(arena, key)) {
                    Some(slot) => slot.1 = val,
                    None => sc.socket.push((key, val)),
                }
                c = sc.nodes[c as usize].next;
            }
        }
        let key = put(&mut sc.arena, b"socket");
        data_insert(sc, key, Data::Socket, true);
    }
    let (arena, data, socket) = (&sc.arena, &mut sc.data, &mut sc.socket);
    data.sort_by(|a, b| at(arena, a.0).cmp(at(arena, b.0)));
    socket.sort_by(|a, b| at(arena, a.0).cmp(at(arena, b.0)));
}

/// A map's insert (`replace`) or `entry().or_insert` (not `replace`).
fn data_insert(sc: &mut Scratch, key: Span, value: Data, replace: bool) {
    let arena = &sc.arena;
    match sc.data.iter_mut().find(|(k, _)| at(arena, *k) == at(arena, key)) {
        Some(slot) if replace => slot.1 = value,
        Some(_) => {}
        None => sc.data.push((key, value)),
    }
}

fn write_data(out: &mut Vec<u8>, sc: &Scratch) {
    out.push(b'{');
    for (i, (k, val)) in sc.data.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, at(&sc.arena, *k));
        out.push(b':');
        match *val {
            Data::One(s) => push_str(out, at(&sc.arena, s)),
            Data::Many(from, to) => str_list(out, &sc.arena, &sc.many[from as usize..to as usize]),
            Data::Socket => {
                out.push(b'{');
                for (j, (k, v)) in sc.socket.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    push_str(out, at(&sc.arena, *k));
                    out.push(b':');
                    push_str(out, at(&sc.arena, *v));
                }
                out.push(b'}');
            }
        }
    }
    out.push(b'}');
}

/// event.category, event.type, event.action and summary.object.type.
type Classes = (&'static [&'static str], &'static [&'static str], Option<&'static str>, Option<&'static str>);

fn classify(v: &View, arena: &[u8], primary: Option<&NativeRecord<'_>>) -> Classes {
    let syscall = v.syscall.and_then(|s| std::str::from_utf8(at(arena, s)).ok());
    if let Some(sc) = syscall.filter(|_| primary.is_some_and(|p| p.type_id == Some(1300))) {
        type Row = (&'static str, &'static str, &'static [&'static str], &'static [&'static str]);
        let (action, object, category, kind): Row = match sc {
            "creat" => ("opened-file", "file", &["file"], &["creation"]),
            "fallocate" | "truncate" | "ftruncate" => ("opened-file", "file", &["file"], &["change"]),
            "open" | "openat" | "openat2" | "readlink" | "readlinkat" => ("opened-file", "file", &["file"], &["info"]),
            "read" => ("read-file", "file", &["file"], &["info"]),
            "write" => ("wrote-to-file", "file", &["file"], &["change"]),
            "setxattr" | "fsetxattr" | "lsetxattr" | "removexattr" | "fremovexattr" | "lremovexattr" => {
                ("changed-file-attributes-of", "file", &["file"], &["change"])
            }
            "chmod" | "fchmod" | "fchmodat" | "fchmodat2" => {
                ("changed-file-permissions-of", "file", &["file"], &["change"])
            }
            "chown" | "fchown" | "fchownat" | "lchown" => ("changed-file-ownership-of", "file", &["file"], &["change"]),
            "finit_module" | "init_module" => ("loaded-kernel-module", "file", &["driver"], &["start"]),
            "delete_module" => ("unloaded-kernel-module", "file", &["driver"], &["end"]),
            "mkdir" | "mkdirat" => ("created-directory", "file", &["file"], &["creation"]),
            "mount" => ("mounted", "filesystem", &["file"], &["creation"]),
            "rename" | "renameat" | "renameat2" => ("renamed", "file", &["file"], &["change"]),
            "access" | "faccessat" | "faccessat2" | "fstatat" | "newfstatat" | "stat" | "stat64" | "fstat"
            | "lstat" | "getxattr" | "lgetxattr" | "fgetxattr" => ("checked-metadata-of", "file", &["file"], &["info"]),
            "statfs" | "fstatfs" => ("checked-filesystem-metadata-of", "filesystem", &["file"], &["info"]),
            "symlink" | "symlinkat" => ("symlinked", "file", &["file"], &["creation"]),
            "umount" | "umount2" => ("unmounted", "filesystem", &["file"], &["deletion"]),
            "rmdir" | "unlink" | "unlinkat" => ("deleted", "file", &["file"], &["deletion"]),
            "utime" | "utimes" | "futimesat" | "futimens" | "utimensat" => {
                ("changed-timestamp-of", "file", &["file"], &["info"])
            }
            "execve" | "execveat" => ("executed", "file", &["process"], &["start"]),
            "listen" => ("listen-for-connections", "socket", &["network"], &["start"]),
            "accept" | "accept4" => ("accepted-connection-from", "socket", &["network"], &["connection", "start"]),
            "bind" => ("bound-socket", "socket", &["network"], &["start"]),
            "connect" => ("connected-to", "socket", &["network"], &["connection", "start"]),
            "recv" | "recvfrom" | "recvmsg" | "recvmmsg" => {
                ("received-from", "socket", &["network"], &["connection", "info"])
            }
            "send" | "sendto" | "sendmsg" | "sendmmsg" => ("sent-to", "socket", &["network"], &["connection", "info"]),
            "kill" | "tkill" | "tgkill" => ("killed-pid", "process", &["process"], &["end"]),
            "setuid" | "seteuid" | "setfsuid" | "setreuid" | "setgid" | "setegid" | "setfsgid" | "setregid"
            | "setresuid" | "setresgid" => ("changed-identity-of", "process", &["process"], &["change"]),
            "settimeofday" | "clock_settime" | "stime" | "adjtimex" => {
                ("changed-system-time", "system", &["host"], &["change"])
            }
            "mknod" | "mknodat" => ("make-device", "file", &["file"], &["creation"]),
            "sethostname" | "setdomainname" => ("changed-system-name", "system", &["host"], &["change"]),
            "mmap" | "mmap2" | "brk" => ("allocated-memory", "memory", &["process"], &["info"]),
            "sched_setparam" | "sched_setscheduler" | "sched_setattr" => {
                ("adjusted-scheduling-policy-of", "process", &["process"], &["change"])
            }
            _ => return (&["process"], &["info"], None, None),
        };
        return (category, kind, Some(action), Some(object));
    }
    let Some(p) = primary else { return (&[], &[], None, None) };
    let (action, category, kind): (&'static str, &'static [&'static str], &'static [&'static str]) =
        match p.type_name.as_str() {
            "USER_LOGIN" => ("logged-in", &["authentication"], &["start"]),
            "USER_LOGOUT" => ("logged-out", &["authentication"], &["end"]),
            "USER_AUTH" => ("authenticated", &["authentication"], &["info"]),
            "USER_ACCT" => ("was-authorized", &["authentication"], &["info"]),
            "USER_START" => ("started-session", &["session"], &["start"]),
            "USER_END" => ("ended-session", &["session"], &["end"]),
            "CRED_ACQ" => ("acquired-credentials", &["authentication"], &["info"]),
            "CRED_DISP" => ("disposed-credentials", &["authentication"], &["info"]),
            "CRED_REFR" => ("refreshed-credentials", &["authentication"], &["info"]),
            "USER_CMD" => ("ran-command", &["process"], &["start"]),
            "USER_ERR" => ("error", &["authentication"], &["info"]),
            "ADD_USER" => ("added-user-account", &["iam"], &["user", "creation"]),
            "DEL_USER" => ("deleted-user-account", &["iam"], &["user", "deletion"]),
            "ADD_GROUP" => ("added-group-account-to", &["iam"], &["group", "creation"]),
            "DEL_GROUP" => ("deleted-group-account-from", &["iam"], &["group", "deletion"]),
            "USER_MGMT" | "ACCT_LOCK" | "ACCT_UNLOCK" | "USER_CHAUTHTOK" => {
                ("modified-user-account", &["iam"], &["user", "change"])
            }
            "GRP_MGMT" | "GRP_CHAUTHTOK" => ("modified-group-account", &["iam"], &["group", "change"]),
            "SERVICE_START" => ("started-service", &["process"], &["start"]),
            "SERVICE_STOP" => ("stopped-service", &["process"], &["end"]),
            "SYSTEM_BOOT" => ("started-system", &["host"], &["start"]),
            "SYSTEM_SHUTDOWN" => ("shutdown-system", &["host"], &["end"]),
            "CONFIG_CHANGE" | "DAEMON_CONFIG" => ("changed-audit-configuration", &["configuration"], &["change"]),
            "ANOM_PROMISCUOUS" => ("changed-promiscuous-mode-on-device", &["network"], &["info"]),
            "ANOM_ABEND" => ("crashed-program", &["process"], &["end"]),
            "ANOM_LOGIN_FAILURES" => ("failed-log-in-too-many-times-to", &["authentication"], &["info"]),
            "AVC" | "USER_AVC" | "SELINUX_ERR" | "APPARMOR_DENIED" => {
                ("violated-mac-policy", &["intrusion_detection"], &["denied"])
            }
            "KERN_MODULE" => ("loaded-kernel-module", &["driver"], &["start"]),
            _ => return (&[], &["info"], None, None),
        };
    (category, kind, Some(action), None)
}

/// `(uid, name)` pairs from schema v2's `user` member (`uid` + `uid_name`, …), empty without it.
pub fn v2_user_names(line: &NativeLine<'_>) -> Vec<(u32, String)> {
    let Some(raw) = line.user else { return Vec::new() };
    let Ok(Value::Object(u)) = serde_json::from_str::<Value>(raw.get()) else { return Vec::new() };
    u.iter()
        .filter_map(|(k, val)| {
            let name = u.get(&format!("{k}_name"))?.as_str()?;
            let id = u32::try_from(val.as_u64()?).ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

/// The SYSCALL record's `arch` as a number (AUDIT_ARCH_*).
pub fn raw_arch(line: &NativeLine<'_>) -> Option<u32> {
    line.records
        .iter()
        .find(|r| r.type_id == Some(1300))
        .and_then(|r| r.fields.get("arch"))
        .and_then(|a| u32::from_str_radix(a, 16).ok())
}

/// auditd's name of an AUDIT_ARCH_* value.
pub fn arch_name(arch: u32) -> Option<&'static str> {
    Some(match arch {
        0xc000_003e => "x86_64",
        0x4000_0003 => "i386",
        0xc000_00b7 => "aarch64",
        0x4000_0028 => "arm",
        0x8000_0015 => "ppc64",
        0xc000_0015 => "ppc64le",
        0x8000_0016 => "s390x",
        0xc000_00f3 => "riscv64",
        _ => return None,
    })
}

/// The syscall's name in its arch's table (x86_64 and i386 are known).
pub fn syscall_name(arch: Option<u32>, nr: u32) -> Option<&'static str> {
    lookup::syscall_any_name(Machine::from_elf(arch?)?, nr)
}

/// A kernel-hex value (even count of uppercase hex digits) decoded, else the value itself.
fn decode_hex_value(arena: &mut Vec<u8>, tmp: &mut Vec<u8>, s: &str) -> Span {
    if s.len() >= 2 && hex_decode(s, tmp) {
        put_lossy(arena, tmp)
    } else {
        put(arena, s.as_bytes())
    }
}

/// Decode kernel hex (an even count of uppercase hex digits) into `out`; false if `s` is not.
fn hex_decode(s: &str, out: &mut Vec<u8>) -> bool {
    hex_decode_case(s, false, out)
}

fn hex_decode_case(s: &str, any_case: bool, out: &mut Vec<u8>) -> bool {
    out.clear();
    let b = s.as_bytes();
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' if any_case => Some(c - b'a' + 10),
        _ => None,
    };
    if !b.len().is_multiple_of(2) {
        return false;
    }
    for pair in b.chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return false,
        }
    }
    true
}

/// SOCKADDR `saddr` → `{family, address, port}` / `{family, path}` (raw fallback; enrichment's
/// `network` member, when present, is used instead), as an object node.
fn decode_sockaddr(saddr: &str, arena: &mut Vec<u8>, nodes: &mut Vec<Node>, tmp: &mut Vec<u8>) -> Option<u32> {
    if !hex_decode_case(saddr, true, tmp) {
        return None;
    }
    let b = &*tmp;
    let family = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let obj = push_node(nodes, Kind::Obj, Span::default());
    let mut last = NONE;
    let mut add = |arena: &mut Vec<u8>, nodes: &mut Vec<Node>, key: &str, kind: Kind| {
        let key = put(arena, key.as_bytes());
        let c = push_node(nodes, kind, key);
        link(nodes, obj, &mut last, c);
    };
    let text = |arena: &mut Vec<u8>, value: &dyn std::fmt::Display| {
        let start = arena.len() as u32;
        let _ = write!(arena, "{value}");
        Kind::Str(Span { start, end: arena.len() as u32 })
    };
    match family {
        2 if b.len() >= 8 => {
            let family = text(arena, &"inet");
            add(arena, nodes, "family", family);
            add(arena, nodes, "port", Kind::U64(u64::from(u16::from_be_bytes([b[2], b[3]]))));
            let address = text(arena, &std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]));
            add(arena, nodes, "address", address);
        }
        10 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            let family = text(arena, &"inet6");
            add(arena, nodes, "family", family);
            add(arena, nodes, "port", Kind::U64(u64::from(u16::from_be_bytes([b[2], b[3]]))));
            let address = text(arena, &std::net::Ipv6Addr::from(a));
            add(arena, nodes, "address", address);
        }
        1 => {
            let p = &b[2..];
            let start = arena.len() as u32;
            if p.first() == Some(&0) {
                arena.push(b'@');
                push_lossy_bytes(arena, p[1..].split(|c| *c == 0).next().unwrap_or_default());
            } else {
                push_lossy_bytes(arena, p.split(|c| *c == 0).next().unwrap_or_default());
            }
            let path = Kind::Str(Span { start, end: arena.len() as u32 });
            let family = text(arena, &"unix");
            add(arena, nodes, "family", family);
            add(arena, nodes, "path", path);
        }
        16 => {
            let family = text(arena, &"netlink");
            add(arena, nodes, "family", family);
        }
        _ => {
            nodes.pop();
            return None;
        }
    }
    Some(obj)
}

/// The `key=value` pairs inside a user-space record's `msg='…'` (quotes removed), into
/// [`Scratch::user_msg`].
fn inner_fields(msg: &str, sc: &mut Scratch) {
    let mut rest = msg.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(' ') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        if !key.is_empty() && !key.contains(' ') {
            let k = put(&mut sc.arena, key.as_bytes());
            let v = put(&mut sc.arena, value.as_bytes());
            sc.user_msg.push((k, v));
        }
        rest = next.trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(native: &str) -> Value {
        let line = NativeLine::parse(native.as_bytes()).unwrap();
        let mut out = Vec::new();
        write(&line, 0, "h1", &mut Names::fixed(&[(0, "root"), (1000, "alice")]), &mut Scratch::default(), &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    const CONNECT: &str = r#"{"sequence":9,"timestamp":"1.000","time":"1970-01-01T00:00:01.000Z","records":[{"type":"SYSCALL","type_id":1300,"fields":{"arch":"c000003e","syscall":"42","success":"no","exit":"-111","a0":"3","ppid":"1","pid":"77","auid":"1000","uid":"0","gid":"0","tty":"pts0","ses":"3","comm":"curl","exe":"/usr/bin/curl","key":"6E657401657874"}},{"type":"SOCKADDR","type_id":1306,"fields":{"saddr":"02000539010203040000000000000000"}},{"type":"EXECVE","type_id":1309,"fields":{"argc":"2","a0":"curl","a1":"312E322E332E34"}},{"type":"EOE","type_id":1320,"fields":{}}]}"#;

    #[test]
    fn raw_fields_give_auditbeat_shaped_documents() {
        let d = convert(CONNECT);
        assert_eq!(d["@timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(d["event"]["action"], "connected-to");
        assert_eq!(d["event"]["category"], json!(["network"]));
        assert_eq!(d["event"]["type"], json!(["connection", "start"]));
        assert_eq!(d["event"]["outcome"], "failure");
        assert_eq!(d["auditd"]["result"], "fail");
        assert_eq!(d["auditd"]["data"]["exit"], "ECONNREFUSED");
        assert_eq!(d["auditd"]["data"]["syscall"], "connect");
        assert_eq!(d["auditd"]["data"]["arch"], "x86_64");
        assert_eq!(d["auditd"]["session"], "3");
        assert_eq!(d["destination"], json!({"ip": "1.2.3.4", "port": 1337}));
        assert_eq!(d["network"]["direction"], "egress");
        assert_eq!(d["user"]["id"], "0");
        assert_eq!(d["user"]["name"], "root");
        assert_eq!(d["user"]["audit"], json!({"id": "1000", "name": "alice"}));
        assert_eq!(d["process"]["args"], json!(["curl", "1.2.3.4"]));
        assert_eq!(d["process"]["pid"], 77);
        assert_eq!(d["process"]["parent"]["pid"], 1);
        assert_eq!(d["tags"], json!(["net", "ext"]));
        assert_eq!(d["host"]["name"], "h1");
        assert_eq!(d["auditd"]["summary"]["actor"], json!({"primary": "alice", "secondary": "root"}));
        assert_eq!(d["auditd"]["summary"]["object"], json!({"type": "socket", "primary": "1.2.3.4"}));
    }

    #[test]
    fn v2_members_win_over_raw_fields() {
        let native = CONNECT.replacen(
            r#""records""#,
            r#""host":"web-9","syscall":{"name":"connect","arch":"x86_64","number":42,"success":false,"exit":-111,"exit_name":"ECONNREFUSED"},"user":{"uid":0,"uid_name":"toor","auid":"unset"},"keys":["k1"],"records""#,
            1,
        );
        let d = convert(&native);
        assert_eq!(d["host"]["name"], "web-9");
        assert_eq!(d["user"]["name"], "toor");
        assert_eq!(d["user"]["audit"], json!({"id": "4294967295", "name": "unset"}));
        assert_eq!(d["tags"], json!(["k1"]));
    }

    #[test]
    fn the_process_tables_parent_and_container_map_to_ecs() {
        let native = CONNECT.replacen(
            r#""records""#,
            r#""process":{"pid":77,"ppid":1,"comm":"curl","exe":"/usr/bin/curl","parent":{"pid":1,"exe":"/usr/bin/bash","comm":"bash","argv":["bash","-c","curl 1.2.3.4"]},"container_id":"4f1b1a1f2b2e3c3d4e4f5a5b6c6d7e7f8091a2b3c4d5e6f708192a3b4c5d6e7f"},"records""#,
            1,
        );
        let d = convert(&native);
        assert_eq!(
            d["process"]["parent"],
            json!({"pid": 1, "executable": "/usr/bin/bash", "name": "bash", "args": ["bash", "-c", "curl 1.2.3.4"], "args_count": 3})
        );
        assert_eq!(d["container"]["id"], "4f1b1a1f2b2e3c3d4e4f5a5b6c6d7e7f8091a2b3c4d5e6f708192a3b4c5d6e7f");
        // Members in byte order, as everywhere in the document.
        let text = String::from_utf8({
            let line = NativeLine::parse(native.as_bytes()).unwrap();
            let mut out = Vec::new();
            write(&line, 0, "h1", &mut Names::fixed(&[]), &mut Scratch::default(), &mut out);
            out
        })
        .unwrap();
        assert!(text.contains(r#""parent":{"args":["bash","-c","curl 1.2.3.4"],"args_count":3,"executable":"/usr/bin/bash","name":"bash","pid":1}"#), "{text}");
        assert!(text.find(r#""container":"#) < text.find(r#""destination":"#));
        // Raw fields only: the parent is its pid.
        assert_eq!(convert(CONNECT)["process"]["parent"], json!({"pid": 1}));
        assert!(convert(CONNECT).get("container").is_none());
    }

    #[test]
    fn loss_notices_are_pipeline_errors() {
        let d = convert(r#"{"loss":{"kind":"kernel_lost","records":3,"kernel_total":7}}"#);
        assert_eq!(d["event"]["kind"], "pipeline_error");
        assert_eq!(d["event"]["action"], "kernel_lost");
        assert_eq!(d["auditrelay"]["loss"]["records"], 3);
    }

    /// Counts the allocations of the thread that runs a test (the test harness runs tests on
    /// several threads at once; each counts only its own).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is passed to the system allocator unchanged; the counter is a
    // const-initialised thread local, which does not allocate.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: as above.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: as above.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// The reason for writing directly: once the buffers have grown, converting an event (v1 or
    /// v2: the enriched corpus) allocates nothing in this writer. Left out: the events whose v2
    /// members hold a string with a JSON escape (`\"`, `\n`: 11 of 499), where serde_json's
    /// reader unescapes into a buffer of its own, one per member read.
    #[test]
    fn steady_state_conversion_allocates_nothing() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.golden-v2.jsonl");
        let v2 = std::fs::read(path).unwrap();
        let v1 = CONNECT.as_bytes();
        let escaped = |l: &[u8]| memchr::memmem::find(l, b",\"host\":").is_some_and(|end| l[end..].contains(&b'\\'));
        let mut lines: Vec<&[u8]> = v2.split(|b| *b == b'\n').filter(|l| !l.is_empty() && !escaped(l)).collect();
        assert!(lines.len() > 450, "{}", lines.len());
        lines.push(v1);
        lines.push(br#"{"loss":{"kind":"kernel_lost","records":3,"kernel_total":7}}"#);
        let parsed: Vec<NativeLine<'_>> = lines.iter().map(|l| NativeLine::parse(l).unwrap()).collect();
        let mut names = Names::fixed(&[(0, "root"), (1000, "kit")]);
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let mut run = || {
            for line in &parsed {
                out.clear();
                write(line, 0, "h1", &mut names, &mut scratch, &mut out);
            }
        };
        run();
        let before = ALLOCATIONS.with(|c| c.get());
        run();
        let after = ALLOCATIONS.with(|c| c.get());
        assert_eq!(after - before, 0, "allocations converting {} events a second time", parsed.len());
    }
}
