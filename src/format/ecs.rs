//! Elastic Common Schema, the way auditbeat's auditd module writes it (go-libaudit's aucoalesce
//! normalizations plus auditbeat's ECS mapping), so dashboards and rules built on auditbeat work:
//!
//! | ECS | from |
//! |---|---|
//! | `@timestamp` | the event's `time` |
//! | `event.{kind,module,category,type,action,outcome}` | `kind` = `event`; category/type/action from the syscall (aucoalesce's normalizations.yaml) or the record type; outcome from `success=` / `res=` |
//! | `auditd.{message_type,sequence,result,session,data,paths,summary}` | the primary record's type (lowercase), the serial, `success`/`fail`/`unknown`, `ses`, the primary record's other fields (arch and syscall by name, SOCKADDR as `socket.*`), every PATH record, actor/object/how |
//! | `process.{pid,parent.pid,name,executable,working_directory,args,title}` | SYSCALL, CWD, EXECVE, PROCTITLE |
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

use serde_json::{json, Map, Value};

use super::names::{Names, UNSET};
use super::native::{original_bytes, NativeLine, NativeRecord};
use crate::rules::lookup::{self, Machine};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "8.0.0";

/// Append `line` as one ECS JSON document (no newline).
pub fn write(line: &NativeLine<'_>, time_ms: u64, host: &str, names: &mut Names, out: &mut Vec<u8>) {
    let doc = if line.is_event() { event(line, host, names) } else { notice(line, time_ms, host) };
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &doc);
}

fn notice(line: &NativeLine<'_>, time_ms: u64, host: &str) -> Value {
    let (what, raw) = match (line.loss, line.unparsed) {
        (Some(l), _) => ("loss", l.get()),
        (_, Some(u)) => ("unparsed", u.get()),
        _ => ("unknown", "null"),
    };
    let member: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    let action = member.get("kind").and_then(Value::as_str).unwrap_or(what).to_string();
    json!({
        "@timestamp": rfc3339_ms(time_ms),
        "event": {"kind": "pipeline_error", "module": "auditd", "action": action},
        "host": {"name": host},
        "ecs": {"version": ECS_VERSION},
        "auditrelay": {what: member},
    })
}

/// What the formats need to know of an event, from v2 members or the raw fields.
#[derive(Debug, Default)]
struct View {
    syscall: Option<String>,
    arch: Option<String>,
    success: Option<bool>,
    exit: Option<String>,
    pid: Option<i64>,
    ppid: Option<i64>,
    comm: Option<String>,
    exe: Option<String>,
    cwd: Option<String>,
    argv: Vec<String>,
    title: Option<String>,
    tty: Option<String>,
    ses: Option<String>,
    ids: Vec<(String, u32)>,
    id_names: Vec<(String, String)>,
    paths: Vec<Map<String, Value>>,
    network: Vec<Map<String, Value>>,
    keys: Vec<String>,
    host: Option<String>,
}

fn event(line: &NativeLine<'_>, host: &str, names: &mut Names) -> Value {
    let primary = line.records.iter().find(|r| r.type_id == Some(1300)).or_else(|| line.records.first());
    let mut v = View::default();
    raw_view(line, primary, &mut v);
    v2_view(line, &mut v);
    // Names of ids NSS knows, for those v2 did not name.
    for (key, id) in &v.ids {
        let name_key = format!("{key}_name");
        if v.id_names.iter().any(|(k, _)| *k == name_key) || *id == UNSET {
            continue;
        }
        let n = if key.ends_with("gid") { names.group(*id) } else { names.user(*id) };
        if let Some(n) = n {
            v.id_names.push((name_key, n.to_string()));
        }
    }

    let message_type = primary.map(|r| r.type_name.as_str().to_ascii_lowercase()).unwrap_or_default();
    let user_msg = primary.and_then(|r| r.fields.get("msg")).map(inner_fields).unwrap_or_default();
    // A user-space record names its program and peer inside `msg='…'` (aucoalesce reads them too).
    let inner = |k: &str| user_msg.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone()).filter(|v| v != "?");
    if v.exe.is_none() {
        v.exe = inner("exe");
    }
    let user_peer = inner("addr").filter(|a| a.parse::<std::net::IpAddr>().is_ok());
    let (category, kind_type, action, object_type) = classify(&v, primary);
    let result = match v.success {
        Some(true) => "success",
        Some(false) => "fail",
        None => match user_msg.iter().find(|(k, _)| k == "res").map(|(_, r)| r.as_str()) {
            Some("success" | "1" | "yes") => "success",
            Some("failed" | "fail" | "0" | "no") => "fail",
            _ => "unknown",
        },
    };
    let outcome = match result {
        "success" => "success",
        "fail" => "failure",
        _ => "unknown",
    };

    let mut ev = Map::new();
    ev.insert("kind".into(), json!("event"));
    ev.insert("module".into(), json!("auditd"));
    ev.insert("category".into(), json!(category));
    ev.insert("type".into(), json!(kind_type));
    if let Some(a) = &action {
        ev.insert("action".into(), json!(a));
    }
    ev.insert("outcome".into(), json!(outcome));
    let originals: Vec<Value> = line
        .records
        .iter()
        .map(|r| {
            let mut text = Vec::new();
            r.after_stamp(&mut text, true);
            json!(format!(
                "type={} msg=audit({}:{}){}",
                r.type_name.as_str(),
                line.timestamp.as_ref().map_or("", |t| t.as_str()),
                line.sequence.unwrap_or(0),
                String::from_utf8_lossy(&text)
            ))
        })
        .collect();
    ev.insert("original".into(), Value::Array(originals));

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(line.time.as_ref().map(|t| t.as_str().to_string())));
    doc.insert("event".into(), Value::Object(ev));
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert("service".into(), json!({"type": "auditd"}));
    doc.insert("host".into(), json!({"name": v.host.clone().unwrap_or_else(|| host.to_string())}));

    // user.*
    let mut user = Map::new();
    for (key, id) in &v.ids {
        let name = id_name(&v.id_names, key);
        let id_str = id.to_string();
        let (path, id_leaf, name_leaf): (&[&str], &str, &str) = match key.as_str() {
            "uid" => (&[], "id", "name"),
            "gid" => (&["group"], "id", "name"),
            "euid" => (&["effective"], "id", "name"),
            "egid" => (&["effective", "group"], "id", "name"),
            "suid" => (&["saved"], "id", "name"),
            "sgid" => (&["saved", "group"], "id", "name"),
            "fsuid" => (&["filesystem"], "id", "name"),
            "fsgid" => (&["filesystem", "group"], "id", "name"),
            "auid" => (&["audit"], "id", "name"),
            _ => continue,
        };
        let obj = nested(&mut user, path);
        obj.insert(id_leaf.into(), json!(id_str));
        if let Some(n) = name.or_else(|| (*id == UNSET).then(|| "unset".to_string())) {
            obj.insert(name_leaf.into(), json!(n));
        }
    }
    if !user.is_empty() {
        doc.insert("user".into(), Value::Object(user));
    }

    // process.*
    let mut process = Map::new();
    if let Some(p) = v.pid {
        process.insert("pid".into(), json!(p));
    }
    if let Some(p) = v.ppid {
        process.insert("parent".into(), json!({"pid": p}));
    }
    if let Some(t) = &v.title {
        process.insert("title".into(), json!(t));
    }
    if let Some(c) = &v.comm {
        process.insert("name".into(), json!(c));
    }
    if let Some(e) = &v.exe {
        process.insert("executable".into(), json!(e));
    }
    if let Some(c) = &v.cwd {
        process.insert("working_directory".into(), json!(c));
    }
    if !v.argv.is_empty() {
        process.insert("args".into(), json!(v.argv));
        process.insert("args_count".into(), json!(v.argv.len()));
    }
    if !process.is_empty() {
        doc.insert("process".into(), Value::Object(process));
    }

    // file.*: the path the syscall acted on: aucoalesce's `path_index` (1 for mkdir and mount, 2
    // for rename, else 0), the first path when there are fewer.
    let index = match v.syscall.as_deref() {
        Some("mkdir" | "mkdirat" | "mount") => 1,
        Some("rename" | "renameat" | "renameat2") => 2,
        _ => 0,
    };
    let target = v.paths.get(index).or_else(|| v.paths.first());
    let mut object_primary: Option<String> = None;
    if let Some(p) = target {
        let mut file = Map::new();
        let s = |k: &str| p.get(k).map(value_string);
        if let Some(n) = s("name") {
            object_primary = Some(n.clone());
            file.insert("path".into(), json!(n));
        }
        if let Some(d) = s("dev") {
            file.insert("device".into(), json!(d));
        }
        if let Some(i) = s("inode") {
            file.insert("inode".into(), json!(i));
        }
        if let Some(m) = s("mode") {
            // aucoalesce: the permission bits only, `%#o`.
            let bits = u32::from_str_radix(&m, 8).map(|m| format!("{:#o}", m & 0o7777)).unwrap_or(m);
            file.insert("mode".into(), json!(bits.replace("0o", "0")));
        }
        if let Some(u) = s("ouid") {
            if let Ok(id) = u.parse::<u32>() {
                if let Some(n) = s("ouid_name").or_else(|| names.user(id).map(str::to_string)) {
                    file.insert("owner".into(), json!(n));
                }
            }
            file.insert("uid".into(), json!(u));
        }
        if let Some(g) = s("ogid") {
            if let Ok(id) = g.parse::<u32>() {
                if let Some(n) = s("ogid_name").or_else(|| names.group(id).map(str::to_string)) {
                    file.insert("group".into(), json!(n));
                }
            }
            file.insert("gid".into(), json!(g));
        }
        if !file.is_empty() {
            doc.insert("file".into(), Value::Object(file));
        }
    }

    if let Some(ip) = &user_peer {
        doc.insert("source".into(), json!({"ip": ip}));
    }
    // source / destination by syscall (aucoalesce's addSockaddrRecord).
    let addr = v.network.iter().find(|a| a.get("address").is_some() || a.get("path").is_some());
    if let (Some(a), Some(sc)) = (addr, v.syscall.as_deref()) {
        let side = match sc {
            "recvfrom" | "recvmsg" | "accept" | "accept4" => Some(("source", "ingress")),
            "connect" | "sendto" | "sendmsg" => Some(("destination", "egress")),
            _ => None,
        };
        if let Some((side, direction)) = side {
            let mut m = Map::new();
            if let Some(ip) = a.get("address") {
                object_primary = Some(value_string(ip));
                m.insert("ip".into(), json!(value_string(ip)));
            }
            if let Some(port) = a.get("port").and_then(|p| value_string(p).parse::<u16>().ok()) {
                m.insert("port".into(), json!(port));
            }
            if let Some(path) = a.get("path") {
                object_primary = Some(value_string(path));
                m.insert("path".into(), json!(value_string(path)));
            }
            doc.insert(side.into(), Value::Object(m));
            doc.insert("network".into(), json!({"direction": direction}));
        }
    }

    if !v.keys.is_empty() {
        doc.insert("tags".into(), json!(v.keys));
    }

    // auditd.*
    let mut auditd = Map::new();
    auditd.insert("message_type".into(), json!(message_type));
    auditd.insert("sequence".into(), json!(line.sequence));
    auditd.insert("result".into(), json!(result));
    if let Some(s) = v.ses.as_ref().filter(|s| s.as_str() != "4294967295") {
        auditd.insert("session".into(), json!(s));
    }
    auditd.insert("data".into(), Value::Object(data(line, primary, &v, &user_msg)));
    if !v.paths.is_empty() {
        auditd.insert("paths".into(), json!(v.paths));
    }
    let mut summary = Map::new();
    let actor_name = |key: &str| {
        let id = v.ids.iter().find(|(k, _)| k == key).map(|(_, i)| *i)?;
        let name = id_name(&v.id_names, key);
        Some(name.unwrap_or_else(|| if id == UNSET { "unset".into() } else { id.to_string() }))
    };
    let mut actor = Map::new();
    if let Some(a) = actor_name("auid") {
        actor.insert("primary".into(), json!(a));
    }
    if let Some(u) = actor_name("uid") {
        actor.insert("secondary".into(), json!(u));
    }
    if !actor.is_empty() {
        summary.insert("actor".into(), Value::Object(actor));
    }
    let mut object = Map::new();
    if let Some(t) = object_type {
        object.insert("type".into(), json!(t));
    }
    if let Some(p) = object_primary {
        object.insert("primary".into(), json!(p));
    }
    if !object.is_empty() {
        summary.insert("object".into(), Value::Object(object));
    }
    if let Some(how) = v.exe.clone().or_else(|| v.comm.clone()) {
        summary.insert("how".into(), json!(how));
    }
    if !summary.is_empty() {
        auditd.insert("summary".into(), Value::Object(summary));
    }
    doc.insert("auditd".into(), Value::Object(auditd));

    let mut own = Map::new();
    if let Some(id) = &line.id {
        own.insert("id".into(), json!(id.as_str()));
    }
    for (flag, on) in [("incomplete", line.incomplete), ("late", line.late), ("truncated", line.truncated)] {
        if on {
            own.insert(flag.into(), json!(true));
        }
    }
    if !own.is_empty() {
        doc.insert("auditrelay".into(), Value::Object(own));
    }
    Value::Object(doc)
}

/// `auditd.data`: the primary record's fields not mapped elsewhere (arch and syscall by name,
/// exit as errno name on failure), SOCKADDR as `socket.*`, and a user-space message's inner fields.
fn data(
    line: &NativeLine<'_>,
    primary: Option<&NativeRecord<'_>>,
    v: &View,
    user_msg: &[(String, String)],
) -> Map<String, Value> {
    const MAPPED: &[&str] = &[
        "pid", "ppid", "comm", "exe", "ses", "key", "success", "uid", "gid", "euid", "egid", "suid", "sgid", "fsuid",
        "fsgid", "auid", "msg",
    ];
    let mut m = Map::new();
    if let Some(p) = primary {
        for (k, val) in &p.fields.0 {
            if MAPPED.contains(&k.as_str()) {
                continue;
            }
            let vals: Vec<String> = val
                .iter()
                .map(|s| String::from_utf8_lossy(&original_bytes(s.as_str(), p.is_latin1(k.as_str()))).into_owned())
                .collect();
            let value = if vals.len() == 1 { json!(vals[0]) } else { json!(vals) };
            m.insert(k.as_str().to_string(), value);
        }
    }
    if let Some(a) = &v.arch {
        m.insert("arch".into(), json!(a));
    }
    if let Some(s) = &v.syscall {
        m.insert("syscall".into(), json!(s));
    }
    if v.success == Some(false) {
        if let Some(e) = &v.exit {
            m.insert("exit".into(), json!(e));
        }
    }
    for (k, val) in user_msg {
        m.entry(k.clone()).or_insert_with(|| json!(val));
    }
    if let Some(sa) = line.records.iter().find(|r| r.type_id == Some(1306)) {
        let mut socket = Map::new();
        if let Some(saddr) = sa.fields.get("saddr") {
            socket.insert("saddr".into(), json!(saddr));
        }
        if let Some(a) = v.network.first() {
            for (k, val) in a {
                let key = if k == "address" { "addr" } else { k.as_str() };
                socket.insert(key.into(), json!(value_string(val)));
            }
        }
        m.insert("socket".into(), Value::Object(socket));
    }
    m
}

/// event.category, event.type, event.action and summary.object.type.
fn classify(
    v: &View,
    primary: Option<&NativeRecord<'_>>,
) -> (Vec<&'static str>, Vec<&'static str>, Option<String>, Option<&'static str>) {
    if let Some(sc) = v.syscall.as_deref().filter(|_| primary.is_some_and(|p| p.type_id == Some(1300))) {
        let (action, object, category, kind): (&str, &str, &[&str], &[&str]) = match sc {
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
            _ => return (vec!["process"], vec!["info"], None, None),
        };
        return (category.to_vec(), kind.to_vec(), Some(action.to_string()), Some(object));
    }
    let Some(p) = primary else { return (vec![], vec![], None, None) };
    let (action, category, kind): (&str, &[&str], &[&str]) = match p.type_name.as_str() {
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
        _ => return (vec![], vec!["info"], None, None),
    };
    (category.to_vec(), kind.to_vec(), Some(action.to_string()), None)
}

/// Fill the view from the raw fields (every member; v2 then overrides what it has).
fn raw_view(line: &NativeLine<'_>, primary: Option<&NativeRecord<'_>>, v: &mut View) {
    let Some(p) = primary else { return };
    let get = |k: &str| p.fields.get(k).filter(|s| *s != "(null)" && *s != "?").map(str::to_string);
    let arch = raw_arch(line);
    v.arch = arch.and_then(arch_name).map(str::to_string).or_else(|| get("arch"));
    v.syscall =
        get("syscall").map(|s| s.parse::<u32>().ok().and_then(|nr| syscall_name(arch, nr)).map_or(s, str::to_string));
    v.success = p.fields.get("success").map(|s| s == "yes");
    v.exit = get("exit").map(|e| {
        e.parse::<i32>().ok().filter(|n| *n < 0).and_then(|n| lookup::errno_name(-n)).map_or(e, str::to_string)
    });
    v.pid = get("pid").and_then(|s| s.parse().ok());
    v.ppid = get("ppid").and_then(|s| s.parse().ok());
    v.comm = get("comm").map(|s| decode_hex_value(&s));
    v.exe = get("exe").map(|s| decode_hex_value(&s));
    v.tty = get("tty");
    v.ses = get("ses");
    for (k, val) in &p.fields.0 {
        let k = k.as_str();
        if (k.ends_with("uid") || k.ends_with("gid")) && k.len() <= 5 {
            if let Some(id) = val.first().and_then(|s| s.parse::<u32>().ok()) {
                v.ids.push((k.to_string(), id));
            }
        }
    }
    for r in &line.records {
        match r.type_id {
            Some(1307) => v.cwd = r.fields.get("cwd").map(decode_hex_value),
            Some(1327) => {
                v.title = r.fields.get("proctitle").map(|t| {
                    let bytes = hex_decode(t).unwrap_or_else(|| t.as_bytes().to_vec());
                    let parts: Vec<String> = bytes
                        .split(|b| *b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    parts.join(" ")
                })
            }
            Some(1309) => {
                for (k, val) in &r.fields.0 {
                    let k = k.as_str();
                    if k.len() > 1 && k.starts_with('a') && k[1..].bytes().all(|b| b.is_ascii_digit()) {
                        if let Some(a) = val.first() {
                            v.argv.push(decode_hex_value(a));
                        }
                    }
                }
            }
            Some(1302) => {
                let mut m = Map::new();
                for (k, val) in &r.fields.0 {
                    if let Some(s) = val.first() {
                        let s = if k.as_str() == "name" { decode_hex_value(s) } else { s.to_string() };
                        m.insert(k.as_str().to_string(), json!(s));
                    }
                }
                v.paths.push(m);
            }
            Some(1306) => {
                if let Some(a) = r.fields.get("saddr").and_then(decode_sockaddr) {
                    v.network.push(a);
                }
            }
            _ => {}
        }
    }
    if let Some(key) = get("key") {
        let bytes = hex_decode(&key).unwrap_or_else(|| key.into_bytes());
        v.keys = bytes.split(|b| *b == 1).map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    }
}

/// Override the view with schema v2's members (src/enrich), where the event has them.
fn v2_view(line: &NativeLine<'_>, v: &mut View) {
    let parse =
        |raw: Option<&serde_json::value::RawValue>| raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
    if let Some(Value::String(h)) = parse(line.host) {
        v.host = Some(h);
    }
    if let Some(Value::Object(s)) = parse(line.syscall) {
        if let Some(n) = s.get("name").and_then(Value::as_str) {
            v.syscall = Some(n.to_string());
        }
        if let Some(a) = s.get("arch").and_then(Value::as_str) {
            v.arch = Some(a.to_string());
        }
        if let Some(ok) = s.get("success").and_then(Value::as_bool) {
            v.success = Some(ok);
        }
        if let Some(e) = s.get("exit_name").and_then(Value::as_str) {
            v.exit = Some(e.to_string());
        } else if let Some(e) = s.get("exit") {
            v.exit = Some(value_string(e));
        }
    }
    if let Some(Value::Object(p)) = parse(line.process) {
        let s = |k: &str| p.get(k).filter(|v| !v.is_null()).map(value_string);
        if let Some(x) = p.get("pid").and_then(int) {
            v.pid = Some(x);
        }
        if let Some(x) = p.get("ppid").and_then(int) {
            v.ppid = Some(x);
        }
        v.comm = s("comm").or(v.comm.take());
        v.exe = s("exe").or(v.exe.take());
        v.cwd = s("cwd").or(v.cwd.take());
        v.tty = s("tty").or(v.tty.take());
        v.ses = s("ses").or(v.ses.take());
        if let Some(Value::Array(a)) = p.get("argv") {
            v.argv = a.iter().map(value_string).collect();
        }
        if let Some(Value::Array(t)) = p.get("title") {
            v.title = Some(t.iter().map(value_string).collect::<Vec<_>>().join(" "));
        }
    }
    if let Some(Value::Object(u)) = parse(line.user) {
        for (k, val) in &u {
            if let Some(key) = k.strip_suffix("_name") {
                if let Some(n) = val.as_str() {
                    v.id_names.retain(|(x, _)| x != k);
                    v.id_names.push((format!("{key}_name"), n.to_string()));
                }
            } else if let Some(id) = val.as_u64().and_then(|i| u32::try_from(i).ok()) {
                v.ids.retain(|(x, _)| x != k);
                v.ids.push((k.clone(), id));
            } else if val.as_str() == Some("unset") {
                v.ids.retain(|(x, _)| x != k);
                v.ids.push((k.clone(), UNSET));
            }
        }
    }
    if let Some(Value::Object(f)) = parse(line.file) {
        if let Some(Value::Array(paths)) = f.get("paths") {
            let paths: Vec<Map<String, Value>> = paths.iter().filter_map(|p| p.as_object().cloned()).collect();
            if !paths.is_empty() {
                v.paths = paths;
            }
        }
    }
    if let Some(Value::Array(n)) = parse(line.network) {
        v.network = n.into_iter().filter_map(|a| a.as_object().cloned()).collect();
    }
    if let Some(Value::Array(k)) = parse(line.keys) {
        v.keys = k.iter().map(value_string).collect();
    }
}

/// The name recorded for id field `key` (`uid` → the `uid_name` entry), without allocating.
fn id_name(names: &[(String, String)], key: &str) -> Option<String> {
    names.iter().find(|(k, _)| k.strip_suffix("_name") == Some(key)).map(|(_, n)| n.clone())
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
fn decode_hex_value(s: &str) -> String {
    match hex_decode(s) {
        Some(b) if s.len() >= 2 => String::from_utf8_lossy(&b).into_owned(),
        _ => s.to_string(),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) || !b.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)) {
        return None;
    }
    b.chunks(2).map(|p| std::str::from_utf8(p).ok().and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// SOCKADDR `saddr` → `{family, address, port}` / `{family, path}` (raw fallback; enrichment's
/// `network` member, when present, is used instead).
fn decode_sockaddr(saddr: &str) -> Option<Map<String, Value>> {
    let b = hex_decode(&saddr.to_ascii_uppercase())?;
    let family = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let mut m = Map::new();
    match family {
        2 if b.len() >= 8 => {
            m.insert("family".into(), json!("inet"));
            m.insert("port".into(), json!(u16::from_be_bytes([b[2], b[3]])));
            m.insert("address".into(), json!(std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string()));
        }
        10 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            m.insert("family".into(), json!("inet6"));
            m.insert("port".into(), json!(u16::from_be_bytes([b[2], b[3]])));
            m.insert("address".into(), json!(std::net::Ipv6Addr::from(a).to_string()));
        }
        1 => {
            let p = &b[2..];
            let path = if p.first() == Some(&0) {
                format!("@{}", String::from_utf8_lossy(p[1..].split(|c| *c == 0).next().unwrap_or_default()))
            } else {
                String::from_utf8_lossy(p.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
            };
            m.insert("family".into(), json!("unix"));
            m.insert("path".into(), json!(path));
        }
        16 => {
            m.insert("family".into(), json!("netlink"));
        }
        _ => return None,
    }
    Some(m)
}

/// The `key=value` pairs inside a user-space record's `msg='…'` (quotes removed).
fn inner_fields(msg: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = msg.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
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
            out.push((key, value.to_string()));
        }
        rest = next.trim_start();
    }
    out
}

fn nested<'m>(m: &'m mut Map<String, Value>, path: &[&str]) -> &'m mut Map<String, Value> {
    let mut cur = m;
    for p in path {
        let entry = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = match entry {
            Value::Object(o) => o,
            _ => unreachable!("made an object just above"),
        };
    }
    cur
}

fn value_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn rfc3339_ms(ms: u64) -> String {
    let id = crate::record::EventId { seconds: ms / 1000, millis: (ms % 1000) as u16, serial: 0 };
    let mut b = Vec::new();
    super::json::push_rfc3339(&mut b, &id);
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(native: &str) -> Value {
        let line = NativeLine::parse(native.as_bytes()).unwrap();
        let mut out = Vec::new();
        write(&line, 0, "h1", &mut Names::fixed(&[(0, "root"), (1000, "alice")]), &mut out);
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
    fn loss_notices_are_pipeline_errors() {
        let d = convert(r#"{"loss":{"kind":"kernel_lost","records":3,"kernel_total":7}}"#);
        assert_eq!(d["event"]["kind"], "pipeline_error");
        assert_eq!(d["event"]["action"], "kernel_lost");
        assert_eq!(d["auditrelay"]["loss"]["records"], 3);
    }
}
