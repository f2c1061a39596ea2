//! Reading a native JSON line back (docs/schema.md): the input of every derived format.
//!
//! Why read JSON back instead of formatting from the [`Event`](crate::reassemble::Event): the spool
//! stores one body per event, the native line, and each output derives its own format from it when
//! it ships (in its pump thread, off the processing thread and off the async runtime). So a format
//! can be added or changed per output without touching what is spooled.
//!
//! The parse borrows from the line wherever the JSON has no escapes ([`Str`]); members this module
//! does not know (a newer schema's) are skipped. Schema v2's interpretation members are kept as
//! [`RawValue`]s and parsed only by the format that reads them (ECS), so go-audit and audit.log
//! conversion never pay for them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A JSON string, borrowed from the line when it had no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One value of a record field: a string, or an array for a repeated key and for `_words`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue<'a> {
    One(Str<'a>),
    Many(Vec<Str<'a>>),
}

impl<'a> FieldValue<'a> {
    /// The values in order (one for [`FieldValue::One`]).
    pub fn iter(&self) -> impl Iterator<Item = &Str<'a>> {
        let (one, many) = match self {
            FieldValue::One(s) => (Some(s), &[][..]),
            FieldValue::Many(v) => (None, &v[..]),
        };
        one.into_iter().chain(many.iter())
    }

    /// The first value.
    pub fn first(&self) -> Option<&str> {
        self.iter().next().map(Str::as_str)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FieldValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::One(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::One(Str(Cow::Owned(v.to_string()))))
            }
            fn visit_string<E>(self, v: String) -> Result<FieldValue<'de>, E> {
                Ok(FieldValue::One(Str(Cow::Owned(v))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue<'de>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(s) = seq.next_element::<Str<'de>>()? {
                    v.push(s);
                }
                Ok(FieldValue::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A record's `fields` (or `interpreted`) object, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields<'a>(pub Vec<(Str<'a>, FieldValue<'a>)>);

impl<'a> Fields<'a> {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.as_str() == key).and_then(|(_, v)| v.first())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of record fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(entry) = map.next_entry::<Str<'de>, FieldValue<'de>>()? {
                    v.push(entry);
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object's members in document order (serde_json's own map sorts them).
#[derive(Debug, Default)]
pub struct Members(pub Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One record object.
#[derive(Debug, Deserialize)]
pub struct NativeRecord<'a> {
    #[serde(rename = "type", borrow)]
    pub type_name: Str<'a>,
    /// Absent for a replayed type name this build does not know.
    pub type_id: Option<u16>,
    #[serde(borrow, default)]
    pub fields: Fields<'a>,
    #[serde(borrow, default)]
    pub non_utf8: Vec<Str<'a>>,
    #[serde(borrow, default)]
    pub interpreted: Option<Fields<'a>>,
    /// The record's text after `audit(…): `, exactly as received (only when an output's format
    /// needs it: see [`super::OutputFormat::needs_record_text`]).
    #[serde(borrow, default)]
    pub text: Option<Str<'a>>,
    #[serde(default)]
    pub text_non_utf8: bool,
}

/// One native line: an event, a loss notice or an unparsed kernel record.
#[derive(Debug, Deserialize)]
pub struct NativeLine<'a> {
    #[serde(borrow, default)]
    pub id: Option<Str<'a>>,
    pub sequence: Option<u64>,
    #[serde(borrow, default)]
    pub timestamp: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub time: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub node: Option<Str<'a>>,
    #[serde(default)]
    pub node_non_utf8: bool,
    #[serde(borrow, default)]
    pub records: Vec<NativeRecord<'a>>,
    #[serde(default)]
    pub incomplete: bool,
    #[serde(default)]
    pub late: bool,
    #[serde(default)]
    pub truncated: bool,
    // Schema v2 interpretation (src/enrich): parsed on demand by the formats that read it.
    #[serde(borrow, default)]
    pub host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub syscall: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub process: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub file: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub network: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub keys: Option<&'a RawValue>,
    // Non-event lines.
    #[serde(borrow, default)]
    pub loss: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub unparsed: Option<&'a RawValue>,
}

impl<'a> NativeLine<'a> {
    pub fn parse(line: &'a [u8]) -> Result<NativeLine<'a>, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// True for an event line (not a loss notice, not an unparsed record).
    pub fn is_event(&self) -> bool {
        self.loss.is_none() && self.unparsed.is_none() && self.sequence.is_some()
    }
}

/// The original bytes of a value the native writer wrote as Latin-1 (each char ≤ U+00FF is one
/// byte); `latin1 == false` gives the UTF-8 bytes unchanged.
pub fn original_bytes<'s>(value: &'s str, latin1: bool) -> Cow<'s, [u8]> {
    if !latin1 || value.is_ascii() {
        return Cow::Borrowed(value.as_bytes());
    }
    Cow::Owned(value.chars().map(|c| u32::from(c).min(0xFF) as u8).collect())
}

impl NativeRecord<'_> {
    /// Whether the values of `key` in `fields` are Latin-1 (listed in `non_utf8`).
    pub fn is_latin1(&self, key: &str) -> bool {
        self.non_utf8.iter().any(|k| k.as_str() == key)
    }

    /// The record's bytes after the `audit(…)` stamp (normally `": "` and the body), raw fields
    /// only or with auditd's ENRICHED part: the `text` member when the line has it (exact),
    /// otherwise `": "` and the body rebuilt from `fields` (see [`rebuild_text`]).
    pub fn after_stamp(&self, out: &mut Vec<u8>, with_interpreted: bool) {
        match &self.text {
            Some(text) => {
                let bytes = original_bytes(text.as_str(), self.text_non_utf8);
                let end =
                    if with_interpreted { bytes.len() } else { memchr::memchr(0x1d, &bytes).unwrap_or(bytes.len()) };
                out.extend_from_slice(&bytes[..end]);
            }
            None => {
                out.extend_from_slice(b": ");
                rebuild_text(self, out);
                if with_interpreted {
                    if let Some(interpreted) = &self.interpreted {
                        out.push(0x1d);
                        let start = out.len();
                        push_fields(interpreted, &[], self.type_id, out, true);
                        // push_fields starts every field with a space; auditd's part does not.
                        if out.get(start) == Some(&b' ') {
                            out.remove(start);
                        }
                    }
                }
            }
        }
    }

    /// The record text after the `audit(…): ` header (what go-audit calls `data`): as
    /// [`NativeRecord::after_stamp`] without the `:` and one space that end the header.
    pub fn record_text(&self, out: &mut Vec<u8>, with_interpreted: bool) {
        let start = out.len();
        self.after_stamp(out, with_interpreted);
        let mut skip = 0;
        if out.get(start) == Some(&b':') {
            skip += 1;
        }
        if out.get(start + skip) == Some(&b' ') {
            skip += 1;
        }
        out.drain(start..start + skip);
    }

    /// Whether the record carries auditd's ENRICHED part.
    pub fn has_interpreted(&self) -> bool {
        match &self.text {
            Some(t) => t.as_str().contains('\u{1d}'),
            None => self.interpreted.is_some(),
        }
    }
}

/// Rebuild a record's text from its `fields` object (a native line written without `text`):
/// `key=value` joined by single spaces, arrays expanded in place, `_words` as bare words, and a
/// value double-quoted where the kernel quotes it: string fields ([`kernel_quotes`]) whose value is
/// not the kernel's hex encoding or `(null)`, and `msg` single-quoted on user-space records.
pub fn rebuild_text(record: &NativeRecord<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    push_fields(&record.fields, &record.non_utf8, record.type_id, out, false);
    if out.get(start) == Some(&b' ') {
        out.remove(start);
    }
}

fn push_fields(
    fields: &Fields<'_>,
    latin1_keys: &[Str<'_>],
    type_id: Option<u16>,
    out: &mut Vec<u8>,
    interpreted: bool,
) {
    for (key, value) in &fields.0 {
        let latin1 = latin1_keys.iter().any(|k| k.as_str() == key.as_str());
        for v in value.iter() {
            out.push(b' ');
            let bytes = original_bytes(v.as_str(), latin1);
            if key.as_str() == "_words" {
                out.extend_from_slice(&bytes);
                continue;
            }
            out.extend_from_slice(key.as_str().as_bytes());
            out.push(b'=');
            let quote = if interpreted {
                // auditd quotes interpreted names (`AUID="alice"`), not numbers or braces.
                (key.as_str().ends_with("UID") || key.as_str().ends_with("GID")).then_some(b'"')
            } else if key.as_str() == "msg" {
                Some(b'\'')
            } else if kernel_quotes(type_id, key.as_str(), &bytes) {
                Some(b'"')
            } else {
                None
            };
            match quote {
                Some(q) => {
                    out.push(q);
                    out.extend_from_slice(&bytes);
                    out.push(q);
                }
                None => out.extend_from_slice(&bytes),
            }
        }
    }
}

/// Whether the kernel writes `key`'s value in double quotes: the fields it logs with
/// `audit_log_untrustedstring` (quoted when printable, hex otherwise) or always quoted.
fn kernel_quotes(type_id: Option<u16>, key: &str, value: &[u8]) -> bool {
    // EXECVE (1309) arguments are untrusted strings; `a0`… elsewhere (SYSCALL) are hex numbers.
    let execve_arg =
        type_id == Some(1309) && key.len() > 1 && key.starts_with('a') && key[1..].bytes().all(|b| b.is_ascii_digit());
    let string_field = matches!(
        key,
        "comm"
            | "exe"
            | "cwd"
            | "name"
            | "key"
            | "path"
            | "dev"
            | "old"
            | "new"
            | "op"
            | "cmd"
            | "acct"
            | "ocomm"
            | "proctitle"
            | "list"
            | "root_dir"
            | "subj"
    ) || execve_arg;
    if !string_field || value == b"(null)" || value == b"?" || value == b"(none)" {
        return false;
    }
    // Hex as the kernel writes it: an even number of uppercase hex digits.
    let hex = value.len().is_multiple_of(2) && value.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
    !hex && !matches!(key, "subj" | "op" | "list" | "proctitle")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_order_repeats_and_borrow() {
        let line = br#"{"sequence":6,"timestamp":"1.000","records":[{"type":"SYSCALL","type_id":1300,"fields":{"b":"2","a":["1","3"],"_words":["x"]}}],"host":"h"}"#;
        let l = NativeLine::parse(line).unwrap();
        let f = &l.records[0].fields;
        let keys: Vec<&str> = f.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "_words"]);
        assert!(matches!(&f.0[0].1, FieldValue::One(Str(Cow::Borrowed("2")))));
        assert_eq!(f.0[1].1.iter().map(Str::as_str).collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(l.host.map(|h| h.get()), Some("\"h\""));
        assert!(l.is_event());
    }

    #[test]
    fn latin1_values_give_their_bytes_back() {
        assert_eq!(&*original_bytes("caf\u{e9}", true), b"caf\xe9");
        assert_eq!(&*original_bytes("caf\u{e9}", false), "café".as_bytes());
    }

    #[test]
    fn rebuilt_text_follows_kernel_quoting() {
        let line = br#"{"sequence":1,"records":[{"type":"SYSCALL","type_id":1300,"fields":{"arch":"c000003e","syscall":"59","comm":"dd","exe":"/usr/bin/dd","name":"2F746D70","key":"(null)"}}]}"#;
        let l = NativeLine::parse(line).unwrap();
        let mut out = Vec::new();
        l.records[0].record_text(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"arch=c000003e syscall=59 comm="dd" exe="/usr/bin/dd" name=2F746D70 key=(null)"#
        );
    }
}
