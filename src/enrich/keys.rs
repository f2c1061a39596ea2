//! Rule keys: `key="exec"`, `key=(null)` (no key), or, when a rule has several keys, the keys
//! joined by 0x01 (`AUDIT_KEY_SEPARATOR`) and therefore hex-encoded (`key=6578656301726F6F74`).

use super::hex::untrusted_into;
use super::Text;
use crate::record::{FieldRef, Quoting};

/// The kernel's separator between several keys of one rule.
const SEPARATOR: u8 = 0x01;

/// Append each key of `field` to `text` and its span to `keys`; nothing for `(null)`.
pub fn split_into(field: &FieldRef<'_>, text: &mut Vec<u8>, keys: &mut Vec<Text>) {
    if field.is_null() {
        return;
    }
    let start = text.len();
    untrusted_into(field, text);
    let end = text.len();
    if field.quoting != Quoting::Bare {
        // Quoted means printable (see super::hex): no separator, one key.
        keys.push(Text::new(start, end));
        return;
    }
    let mut from = start;
    for sep in memchr::memchr_iter(SEPARATOR, &text[start..end]) {
        keys.push(Text::new(from, start + sep));
        from = start + sep + 1;
    }
    keys.push(Text::new(from, end));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &str, quoting: Quoting) -> Vec<String> {
        let (mut text, mut keys) = (Vec::new(), Vec::new());
        split_into(&FieldRef { key: b"key", value: value.as_bytes(), quoting }, &mut text, &mut keys);
        keys.iter().map(|t| String::from_utf8_lossy(t.get(&text)).into_owned()).collect()
    }

    #[test]
    fn one_several_or_no_key() {
        assert_eq!(keys("exec", Quoting::Double), ["exec"]);
        assert_eq!(keys("6578656301726F6F74", Quoting::Bare), ["exec", "root"]);
        assert!(keys("(null)", Quoting::Bare).is_empty());
        // A key with a space is hex-encoded too, and is one key.
        assert_eq!(keys("612062", Quoting::Bare), ["a b"]);
    }
}
