//! auditd's own audit.log text, so `ausearch`, `aureport` and anything else that reads audit.log
//! read auditrelay's output: one `[node=N ]type=NAME msg=audit(S.MMM:SERIAL): TEXT` line per
//! record, the records of one event in a row.
//!
//! - `auditlog` writes auditd's RAW format: the record's text as the kernel (or the replayed log)
//!   had it, up to any ENRICHED part;
//! - `auditlog_enriched` writes auditd's ENRICHED format: the text, 0x1d, and the interpreted
//!   fields. A replayed ENRICHED log keeps its own interpreted part byte for byte; for a record
//!   without one (from the kernel), the part is made here like auditd makes it for the fields it
//!   interprets by number: `ARCH` and `SYSCALL` names on SYSCALL records, and the user/group name
//!   of every `*uid`/`*gid` field (`AUID="alice"`, `"unset"` for 4294967295, `"unknown(N)"` when
//!   NSS has no name). Other interpretations auditd adds (`SADDR={…}`, …) are not made up here.
//!
//! The text is taken from the native line's `"text"` members (exact); a native line written
//! without them (none of the outputs needed them at the time) is rebuilt from `fields`
//! ([`super::native::rebuild_text`]).
//!
//! Lines that are not events have no audit.log form of their own, and must not vanish: a loss
//! notice becomes `type=DAEMON_ERR msg=audit(S.MMM:0): op=auditrelay_loss kind=… <members> res=failed`
//! (auditd logs its own trouble as `DAEMON_*` records), an unparsed kernel record
//! `… op=auditrelay_unparsed type_id=N payload=HEX res=failed`, both stamped with the spool time.

use super::ecs;
use super::names::{Names, UNSET};
use super::native::{NativeLine, NativeRecord};

/// Append `line` as audit.log lines (joined by `\n`, no final newline).
pub fn write(line: &NativeLine<'_>, time_ms: u64, enriched: bool, names: &mut Names, out: &mut Vec<u8>) {
    if !line.is_event() {
        return notice(line, time_ms, out);
    }
    let stamp_time = line.timestamp.as_ref().map_or("0.000", |t| t.as_str());
    let serial = line.sequence.unwrap_or(0);
    let arch = ecs::raw_arch(line);
    // An event read from an ENRICHED log keeps exactly what auditd interpreted; only an event
    // without any interpreted part (from the kernel) gets one made here.
    let make_interpreted = enriched && !line.records.iter().any(|r| r.has_interpreted());
    for (i, record) in line.records.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        if let Some(node) = &line.node {
            out.extend_from_slice(b"node=");
            out.extend_from_slice(&super::native::original_bytes(node.as_str(), line.node_non_utf8));
            out.push(b' ');
        }
        out.extend_from_slice(b"type=");
        out.extend_from_slice(record.type_name.as_str().as_bytes());
        out.extend_from_slice(b" msg=audit(");
        out.extend_from_slice(stamp_time.as_bytes());
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(serial).as_bytes());
        out.push(b')');
        record.after_stamp(out, enriched);
        if make_interpreted {
            interpret(record, arch, names, out);
        }
    }
}

/// auditd's ENRICHED part for a record that has none.
fn interpret(record: &NativeRecord<'_>, arch: Option<u32>, names: &mut Names, out: &mut Vec<u8>) {
    let mut parts: Vec<u8> = Vec::new();
    if record.type_id == Some(1300) {
        if let Some(a) = record.fields.get("arch") {
            parts.extend_from_slice(b" ARCH=");
            let elf = u32::from_str_radix(a, 16).ok();
            parts.extend_from_slice(elf.and_then(ecs::arch_name).unwrap_or(a).as_bytes());
        }
        if let Some(s) = record.fields.get("syscall") {
            parts.extend_from_slice(b" SYSCALL=");
            let name = s.parse::<u32>().ok().and_then(|nr| ecs::syscall_name(arch, nr));
            parts.extend_from_slice(name.unwrap_or(s).as_bytes());
        }
    }
    for (key, value) in &record.fields.0 {
        let key = key.as_str();
        let group = key.ends_with("gid");
        if !(group || key.ends_with("uid")) {
            continue;
        }
        let Some(id) = value.first().and_then(|v| v.parse::<u32>().ok()) else { continue };
        parts.push(b' ');
        parts.extend_from_slice(key.to_ascii_uppercase().as_bytes());
        parts.extend_from_slice(b"=\"");
        let name = if id == UNSET {
            Some("unset")
        } else if group {
            names.group(id)
        } else {
            names.user(id)
        };
        match name {
            Some(n) => parts.extend_from_slice(n.as_bytes()),
            None => {
                parts.extend_from_slice(b"unknown(");
                parts.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
                parts.push(b')');
            }
        }
        parts.push(b'"');
    }
    if let Some(rest) = parts.strip_prefix(b" ") {
        out.push(0x1d);
        out.extend_from_slice(rest);
    }
}

/// A loss notice or unparsed record as a `DAEMON_ERR` line (see the module docs).
fn notice(line: &NativeLine<'_>, time_ms: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"type=DAEMON_ERR msg=audit(");
    out.extend_from_slice(itoa::Buffer::new().format(time_ms / 1000).as_bytes());
    out.extend_from_slice(format!(".{:03}:0): ", time_ms % 1000).as_bytes());
    let (op, raw) = match (line.loss, line.unparsed) {
        (Some(l), _) => ("auditrelay_loss", l),
        (None, Some(u)) => ("auditrelay_unparsed", u),
        (None, None) => {
            out.extend_from_slice(b"op=auditrelay_unknown_line res=failed");
            return;
        }
    };
    out.extend_from_slice(b"op=");
    out.extend_from_slice(op.as_bytes());
    if let Ok(members) = serde_json::from_str::<super::native::Members>(raw.get()) {
        for (k, v) in members.0 {
            // `error` is free text with spaces; the payload says what went wrong well enough.
            if k == "error" {
                continue;
            }
            let key = if k == "payload_hex" { "payload".to_string() } else { k };
            let value = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.push(b' ');
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.replace(' ', "_").as_bytes());
        }
    }
    out.extend_from_slice(b" res=failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(native: &str, enriched: bool) -> String {
        let line = NativeLine::parse(native.as_bytes()).unwrap();
        let mut out = Vec::new();
        write(&line, 1_700_000_000_123, enriched, &mut Names::fixed(&[(0, "root"), (1000, "alice")]), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_become_lines_with_their_exact_text() {
        let native = r#"{"sequence":5,"timestamp":"1.002","node":"web","records":[{"type":"SYSCALL","type_id":1300,"fields":{"arch":"c000003e","syscall":"42","auid":"1000","uid":"0","gid":"7"},"text":": arch=c000003e syscall=42  auid=1000 uid=0 gid=7"},{"type":"EOE","type_id":1320,"fields":{},"text":":"}]}"#;
        assert_eq!(
            convert(native, false),
            "node=web type=SYSCALL msg=audit(1.002:5): arch=c000003e syscall=42  auid=1000 uid=0 gid=7\nnode=web type=EOE msg=audit(1.002:5):"
        );
        assert_eq!(
            convert(native, true).lines().next().unwrap(),
            "node=web type=SYSCALL msg=audit(1.002:5): arch=c000003e syscall=42  auid=1000 uid=0 gid=7\u{1d}ARCH=x86_64 SYSCALL=connect AUID=\"alice\" UID=\"root\" GID=\"unknown(7)\""
        );
    }

    #[test]
    fn loss_notices_become_daemon_err_lines() {
        let native = r#"{"loss":{"kind":"serial_gap","first":3,"last":4,"count":2}}"#;
        assert_eq!(
            convert(native, false),
            "type=DAEMON_ERR msg=audit(1700000000.123:0): op=auditrelay_loss kind=serial_gap first=3 last=4 count=2 res=failed"
        );
    }
}
