//! go-audit's JSON object (slackhq/go-audit `AuditMessageGroup`), so its users switch without
//! touching their pipeline:
//!
//! ```json
//! {"sequence":31353,"timestamp":"1795374595.144","messages":[{"type":1300,"data":"arch=c000003e syscall=44 …"}],"uid_map":{"0":"root","4294967295":"UNKNOWN_USER"}}
//! ```
//! What go-audit does, and so this does (parser.go, marshaller.go, writer.go):
//! - members in this order; `data` is the record text after `audit(…): ` (RAW part only);
//! - the `EOE` record is not a message (go-audit completes the group on it and discards it);
//! - `uid_map` maps every value that follows a `uid=` in the data (so `auid=`, `euid=`, `ouid=`, …
//!   too) of every message except `EXECVE`, `CWD` and `SOCKADDR`, to the user's name or
//!   `UNKNOWN_USER`; keys sorted (Go's map order);
//! - strings escaped as Go's `encoding/json` does by default: `<` `>` `&` as `\u003c` `\u003e`
//!   `\u0026`, U+2028/U+2029 escaped, and each byte that is not valid UTF-8 replaced by U+FFFD
//!   (go-audit loses those bytes; the native format keeps them).
//!
//! What differs, on purpose: go-audit drops records outside `events.min`..`events.max` (default
//! 1300–1399); auditrelay keeps every record (choose what to drop with `[[filter]]`). Loss notices
//! and unparsed-record lines, which go-audit has no object for, are passed on as native lines
//! (`{"loss":…}`, `{"unparsed":…}`) so the loss stays visible.

use std::collections::BTreeMap;

use super::names::Names;
use super::native::NativeLine;

const EOE: u16 = 1320;
const EXECVE: u16 = 1309;
const CWD: u16 = 1307;
const SOCKADDR: u16 = 1306;

/// Append `line` as go-audit's object (no newline); `native` is the line's own text, passed on
/// for lines that are not events. `text` is scratch space, reused across events.
pub fn write(line: &NativeLine<'_>, native: &[u8], names: &mut Names, out: &mut Vec<u8>, text: &mut Vec<u8>) {
    if !line.is_event() {
        out.extend_from_slice(native);
        return;
    }
    let v2_names = super::ecs::v2_user_names(line);
    let mut uid_map: BTreeMap<String, String> = BTreeMap::new();
    out.extend_from_slice(b"{\"sequence\":");
    out.extend_from_slice(itoa::Buffer::new().format(line.sequence.unwrap_or(0)).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    push_go_string(out, line.timestamp.as_ref().map_or("", |t| t.as_str()).as_bytes());
    out.extend_from_slice(b",\"messages\":[");
    let mut first = true;
    for record in &line.records {
        let kind = record.type_id.unwrap_or(0);
        if kind == EOE {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        text.clear();
        record.record_text(text, false);
        out.extend_from_slice(b"{\"type\":");
        out.extend_from_slice(itoa::Buffer::new().format(kind).as_bytes());
        out.extend_from_slice(b",\"data\":");
        push_go_string(out, text);
        out.push(b'}');
        if !matches!(kind, EXECVE | CWD | SOCKADDR) {
            map_uids(text, &mut uid_map, &v2_names, names);
        }
    }
    out.extend_from_slice(b"],\"uid_map\":{");
    for (i, (uid, name)) in uid_map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_go_string(out, uid.as_bytes());
        out.push(b':');
        push_go_string(out, name.as_bytes());
    }
    out.extend_from_slice(b"}}");
}

/// go-audit's `mapUids`: each `uid=` occurrence, the value up to the next space (a value at the
/// end of the data only if at most 5 bytes long, as go-audit's bound check has it).
fn map_uids(data: &[u8], map: &mut BTreeMap<String, String>, v2: &[(u32, String)], names: &mut Names) {
    let mut rest = data;
    while let Some(at) = memchr::memmem::find(rest, b"uid=") {
        let start = at + 4;
        let end = match memchr::memchr(b' ', &rest[start..]) {
            Some(e) => e,
            None => {
                let e = rest.len() - start;
                if e > 5 {
                    break;
                }
                e
            }
        };
        let uid = String::from_utf8_lossy(&rest[start..start + end]).into_owned();
        if let std::collections::btree_map::Entry::Vacant(e) = map.entry(uid) {
            let name = username(e.key(), v2, names);
            e.insert(name);
        }
        let next = start + end + 1;
        if next >= rest.len() {
            break;
        }
        rest = &rest[next..];
    }
}

/// Go's `user.LookupId` then `UNKNOWN_USER`: only a decimal id that names a user has a name.
fn username(uid: &str, v2: &[(u32, String)], names: &mut Names) -> String {
    let Some(id) = uid.parse::<u32>().ok().filter(|_| uid.bytes().all(|b| b.is_ascii_digit())) else {
        return "UNKNOWN_USER".to_string();
    };
    if let Some((_, n)) = v2.iter().find(|(i, _)| *i == id) {
        return n.clone();
    }
    names.user(id).unwrap_or("UNKNOWN_USER").to_string()
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping on (its default).
pub fn push_go_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut i = 0;
    let mut run = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            let esc: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                0x08 => Some(b"\\b"),
                0x0c => Some(b"\\f"),
                b'<' | b'>' | b'&' => None,
                0x00..=0x1f => None,
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[run..i]);
            match esc {
                Some(e) => out.extend_from_slice(e),
                None => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xF) as usize]);
                }
            }
            i += 1;
            run = i;
            continue;
        }
        // Multi-byte: valid sequences pass (U+2028/9 escaped), each invalid byte is U+FFFD.
        let width = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        let valid = width > 0 && bytes.get(i..i + width).is_some_and(|s| std::str::from_utf8(s).is_ok());
        if valid {
            let s = &bytes[i..i + width];
            if s == "\u{2028}".as_bytes() || s == "\u{2029}".as_bytes() {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(if s[2] == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += width;
                run = i;
            } else {
                i += width;
            }
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(b"\\ufffd");
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(native: &str) -> String {
        let line = NativeLine::parse(native.as_bytes()).unwrap();
        let mut out = Vec::new();
        write(&line, native.as_bytes(), &mut Names::fixed(&[(0, "root"), (1000, "alice")]), &mut out, &mut Vec::new());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_object_go_audit_writes() {
        let native = r#"{"sequence":7,"timestamp":"1795374595.144","time":"x","records":[{"type":"SYSCALL","type_id":1300,"fields":{},"text":": arch=c000003e syscall=59 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 comm=\"a<b\" key=(null)"},{"type":"EXECVE","type_id":1309,"fields":{},"text":": argc=1 a0=\"uid=5\""},{"type":"PATH","type_id":1302,"fields":{},"text":": item=0 name=\"/x\" ouid=4294967295 ogid=0"},{"type":"EOE","type_id":1320,"fields":{},"text":": "}]}"#;
        assert_eq!(
            convert(native),
            r#"{"sequence":7,"timestamp":"1795374595.144","messages":[{"type":1300,"data":"arch=c000003e syscall=59 ppid=1 pid=2 auid=1000 uid=0 gid=0 euid=0 comm=\"a\u003cb\" key=(null)"},{"type":1309,"data":"argc=1 a0=\"uid=5\""},{"type":1302,"data":"item=0 name=\"/x\" ouid=4294967295 ogid=0"}],"uid_map":{"0":"root","1000":"alice","4294967295":"UNKNOWN_USER"}}"#
        );
    }

    #[test]
    fn loss_lines_pass_unchanged() {
        let native = r#"{"loss":{"kind":"serial_gap","first":1,"last":2,"count":2}}"#;
        assert_eq!(convert(native), native);
    }

    #[test]
    fn go_string_escapes() {
        let mut out = Vec::new();
        push_go_string(&mut out, b"a&\x01\xff\xe2\x80\xa8\xc3\xa9\"");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\u0026\u0001\ufffd\u2028é\"""#);
    }
}
