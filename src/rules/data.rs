//! `struct audit_rule_data` (linux/audit.h) as a typed value with symmetric encode/decode.
//!
//! We own this encoder instead of using netlink-packet-audit 0.7: that crate encodes `exe=` as a
//! numeric field (it is a string field: its bytes go in `buf`, `values[i]` is their length) and has
//! no `saddr_fam`. Layout (host endianness, as the kernel reads it):
//!
//! ```text
//! 0      flags      u32   filter list | AUDIT_FILTER_PREPEND
//! 4      action     u32   never / always
//! 8      field_count u32  ≤ 64
//! 12     mask[64]   u32   syscall bitmap (bit n of word n/32); top 16 bits of word 63 = classes
//! 268    fields[64] u32   field numbers
//! 524    values[64] u32   numbers, or string lengths for string fields
//! 780    fieldflags[64]   operators
//! 1036   buflen     u32   total length of the strings
//! 1040   buf[buflen]      strings of the string fields, in field order, no NULs
//! ```
//! Invariant: `RuleData::decode(&r.encode()) == r` for every `r` whose string fields carry text.

use std::fmt;

pub const MAX_FIELDS: usize = 64;
pub const BITMASK_WORDS: usize = 64;
pub const HEADER_LEN: usize = 1040;
/// Longest key auditctl and the kernel accept (AUDIT_MAX_KEY_LEN).
pub const MAX_KEY_LEN: usize = 256;
/// Separator between several keys in one key field (AUDIT_KEY_SEPARATOR).
pub const KEY_SEPARATOR: u8 = 0x01;

// Filter lists (flags & AUDIT_FILTER_MASK).
pub const FILTER_USER: u32 = 0;
pub const FILTER_TASK: u32 = 1;
pub const FILTER_ENTRY: u32 = 2;
pub const FILTER_EXIT: u32 = 4;
pub const FILTER_EXCLUDE: u32 = 5;
pub const FILTER_FS: u32 = 6;
pub const FILTER_URING_EXIT: u32 = 7;
pub const FILTER_MASK: u32 = 0x07;
pub const FILTER_PREPEND: u32 = 0x10;

// Actions.
pub const ACTION_NEVER: u32 = 0;
pub const ACTION_POSSIBLE: u32 = 1;
pub const ACTION_ALWAYS: u32 = 2;

// Operators (fieldflags).
pub const OP_BIT_MASK: u32 = 0x0800_0000;
pub const OP_LESS_THAN: u32 = 0x1000_0000;
pub const OP_GREATER_THAN: u32 = 0x2000_0000;
pub const OP_NOT_EQUAL: u32 = 0x3000_0000;
pub const OP_EQUAL: u32 = 0x4000_0000;
pub const OP_BIT_TEST: u32 = OP_BIT_MASK | OP_EQUAL;
pub const OP_LESS_THAN_OR_EQUAL: u32 = OP_LESS_THAN | OP_EQUAL;
pub const OP_GREATER_THAN_OR_EQUAL: u32 = OP_GREATER_THAN | OP_EQUAL;
pub const OPERATORS: u32 = OP_EQUAL | OP_NOT_EQUAL | OP_BIT_MASK;

// Field numbers used by the compiler and the printer.
pub const F_PID: u32 = 0;
pub const F_UID: u32 = 1;
pub const F_EUID: u32 = 2;
pub const F_SUID: u32 = 3;
pub const F_FSUID: u32 = 4;
pub const F_GID: u32 = 5;
pub const F_EGID: u32 = 6;
pub const F_SGID: u32 = 7;
pub const F_FSGID: u32 = 8;
pub const F_LOGINUID: u32 = 9;
pub const F_ARCH: u32 = 11;
pub const F_MSGTYPE: u32 = 12;
pub const F_SUBJ_USER: u32 = 13;
pub const F_SUBJ_CLR: u32 = 17;
pub const F_PPID: u32 = 18;
pub const F_OBJ_USER: u32 = 19;
pub const F_OBJ_LEV_HIGH: u32 = 23;
pub const F_SESSIONID: u32 = 25;
pub const F_FSTYPE: u32 = 26;
pub const F_DEVMAJOR: u32 = 100;
pub const F_INODE: u32 = 102;
pub const F_EXIT: u32 = 103;
pub const F_SUCCESS: u32 = 104;
pub const F_WATCH: u32 = 105;
pub const F_PERM: u32 = 106;
pub const F_DIR: u32 = 107;
pub const F_FILETYPE: u32 = 108;
pub const F_OBJ_UID: u32 = 109;
pub const F_OBJ_GID: u32 = 110;
pub const F_FIELD_COMPARE: u32 = 111;
pub const F_EXE: u32 = 112;
pub const F_SADDR_FAM: u32 = 113;
pub const F_ARG0: u32 = 200;
pub const F_ARG3: u32 = 203;
pub const F_FILTERKEY: u32 = 210;

// Watch permissions.
pub const PERM_EXEC: u32 = 1;
pub const PERM_WRITE: u32 = 2;
pub const PERM_READ: u32 = 4;
pub const PERM_ATTR: u32 = 8;

/// Fields whose value lives in `buf` (kernel audit_krule_to_data / audit_data_to_entry).
pub fn is_string_field(field: u32) -> bool {
    matches!(field, F_SUBJ_USER..=F_SUBJ_CLR | F_OBJ_USER..=F_OBJ_LEV_HIGH | F_WATCH | F_DIR | F_FILTERKEY | F_EXE)
}

/// One `-F`/`-C` condition as the kernel sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FieldEntry {
    pub field: u32,
    pub op: u32,
    /// The number, or the string's length for string fields.
    pub value: u32,
    /// The string for string fields (`value == text.len()`).
    pub text: Option<Vec<u8>>,
}

impl FieldEntry {
    pub fn num(field: u32, op: u32, value: u32) -> Self {
        FieldEntry { field, op, value, text: None }
    }
    pub fn string(field: u32, op: u32, text: &[u8]) -> Self {
        // Lengths are bounded by the compiler (PATH_MAX / key length) long before u32.
        FieldEntry { field, op, value: text.len() as u32, text: Some(text.to_vec()) }
    }
    pub fn text_lossy(&self) -> String {
        String::from_utf8_lossy(self.text.as_deref().unwrap_or_default()).into_owned()
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RuleData {
    pub flags: u32,
    pub action: u32,
    pub mask: [u32; BITMASK_WORDS],
    pub fields: Vec<FieldEntry>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("audit_rule_data too short: {len} bytes, need at least {HEADER_LEN}")]
    TooShort { len: usize },
    #[error("audit_rule_data field_count {count} exceeds {MAX_FIELDS}")]
    TooManyFields { count: u32 },
    #[error("audit_rule_data buflen {buflen} but {available} bytes follow the header")]
    BufLen { buflen: u32, available: usize },
    #[error("audit_rule_data field {index}: string of {len} bytes overruns buf")]
    StringOverrun { index: usize, len: u32 },
}

fn rd(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

impl RuleData {
    pub fn new(flags: u32, action: u32) -> Self {
        RuleData { flags, action, mask: [0; BITMASK_WORDS], fields: Vec::new() }
    }

    pub fn list(&self) -> u32 {
        self.flags & FILTER_MASK
    }

    /// All 2048 bits set: auditctl's `-S all` (and what it sends for watches and rules without -S).
    pub fn mask_is_all(&self) -> bool {
        self.mask.iter().all(|w| *w == u32::MAX)
    }

    /// What `auditctl -l` calls "all": words 0..62 full (word 63 holds classes, see normalise).
    pub fn mask_lists_as_all(&self) -> bool {
        self.mask[..BITMASK_WORDS - 1].iter().all(|w| *w == u32::MAX)
    }

    pub fn set_all_syscalls(&mut self) {
        self.mask = [u32::MAX; BITMASK_WORDS];
    }

    /// Set one syscall bit; false when `nr` is beyond the 2048-bit mask.
    pub fn set_syscall(&mut self, nr: u32) -> bool {
        let word = (nr / 32) as usize;
        if word >= BITMASK_WORDS {
            return false;
        }
        self.mask[word] |= 1 << (nr % 32);
        true
    }

    pub fn syscalls(&self) -> impl Iterator<Item = u32> + '_ {
        (0..(BITMASK_WORDS as u32 * 32)).filter(|nr| self.mask[(nr / 32) as usize] & (1 << (nr % 32)) != 0)
    }

    pub fn buflen(&self) -> usize {
        self.fields.iter().filter_map(|f| f.text.as_ref()).map(Vec::len).sum()
    }

    /// The exact bytes auditctl sends (AUDIT_ADD_RULE / AUDIT_DEL_RULE payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.buflen());
        let count = self.fields.len().min(MAX_FIELDS);
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.action.to_ne_bytes());
        out.extend_from_slice(&(count as u32).to_ne_bytes());
        for w in &self.mask {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        let column = |out: &mut Vec<u8>, get: &dyn Fn(&FieldEntry) -> u32| {
            for i in 0..MAX_FIELDS {
                let v = self.fields.get(i).map(get).unwrap_or(0);
                out.extend_from_slice(&v.to_ne_bytes());
            }
        };
        column(&mut out, &|f| f.field);
        column(&mut out, &|f| f.value);
        column(&mut out, &|f| f.op);
        let buf: Vec<u8> = self.fields.iter().take(count).filter_map(|f| f.text.clone()).flatten().collect();
        out.extend_from_slice(&(buf.len() as u32).to_ne_bytes());
        out.extend_from_slice(&buf);
        out
    }

    /// Parse a kernel AUDIT_LIST_RULES payload (or our own encoding).
    pub fn decode(b: &[u8]) -> Result<RuleData, DecodeError> {
        if b.len() < HEADER_LEN {
            return Err(DecodeError::TooShort { len: b.len() });
        }
        let count = rd(b, 8);
        if count as usize > MAX_FIELDS {
            return Err(DecodeError::TooManyFields { count });
        }
        let buflen = rd(b, 1036);
        let available = b.len() - HEADER_LEN;
        if buflen as usize > available {
            return Err(DecodeError::BufLen { buflen, available });
        }
        let buf = &b[HEADER_LEN..HEADER_LEN + buflen as usize];
        let mut mask = [0u32; BITMASK_WORDS];
        for (i, w) in mask.iter_mut().enumerate() {
            *w = rd(b, 12 + 4 * i);
        }
        let mut fields = Vec::with_capacity(count as usize);
        let mut off = 0usize;
        for i in 0..count as usize {
            let field = rd(b, 268 + 4 * i);
            let value = rd(b, 524 + 4 * i);
            let op = rd(b, 780 + 4 * i);
            let text = if is_string_field(field) {
                let end = off + value as usize;
                if end > buf.len() {
                    return Err(DecodeError::StringOverrun { index: i, len: value });
                }
                let t = buf[off..end].to_vec();
                off = end;
                Some(t)
            } else {
                None
            };
            fields.push(FieldEntry { field, op, value, text });
        }
        Ok(RuleData { flags: rd(b, 0), action: rd(b, 4), mask, fields })
    }

    /// What the kernel lists after accepting this rule: AUDIT_FILTER_PREPEND is consumed when the
    /// rule is inserted, and the top 16 bits of mask word 63 (syscall classes, bits 2032–2047) are
    /// expanded into the class's syscalls and then cleared (kernel/auditfilter.c
    /// audit_to_entry_common). When words 0..62 are full (`-S all`) the expansion adds nothing and
    /// clearing is exact. Otherwise ([`Self::has_unmodelled_classes`], e.g. `-S 2040`) the class
    /// tables are the running kernel's, not ours: the class bits are kept, because this is also
    /// the form [`crate::rules::sync`] sends, and auditctl sends the bit (the kernel then expands
    /// it); the listing is matched with [`Self::lists_as`].
    pub fn kernel_normalise(&self) -> RuleData {
        let mut r = self.clone();
        r.flags &= !FILTER_PREPEND;
        if !r.has_unmodelled_classes() {
            r.mask[BITMASK_WORDS - 1] &= 0x0000_ffff;
        }
        r
    }

    /// Class bits (2032–2047) set on a rule whose words 0..62 are not all set: the kernel turns
    /// them into syscalls from its own class tables, so its listing cannot be computed here.
    pub fn has_unmodelled_classes(&self) -> bool {
        self.mask[BITMASK_WORDS - 1] & 0xffff_0000 != 0 && !self.mask_lists_as_all()
    }

    /// Whether `listed` (from AUDIT_LIST_RULES) is how the kernel lists this rule: equal to
    /// [`Self::kernel_normalise`], or, for a rule with unmodelled class bits, the same rule but for
    /// a mask that holds every non-class syscall of ours, no class bit, and some class syscalls.
    pub fn lists_as(&self, listed: &RuleData) -> bool {
        let ours = self.kernel_normalise();
        if ours == *listed {
            return true;
        }
        if !ours.has_unmodelled_classes() {
            return false;
        }
        let mut plain = ours.clone();
        plain.mask[BITMASK_WORDS - 1] &= 0x0000_ffff;
        let superset = plain.mask.iter().zip(listed.mask.iter()).all(|(o, l)| o & l == *o);
        let same_rest = RuleData { mask: listed.mask, ..plain };
        superset && listed.mask[BITMASK_WORDS - 1] & 0xffff_0000 == 0 && same_rest == *listed
    }

    /// Same rule for the kernel's duplicate check (AUDIT_DEL_RULE matches on this).
    pub fn same_rule(&self, other: &RuleData) -> bool {
        self.kernel_normalise() == other.kernel_normalise()
    }
}

impl fmt::Display for RuleData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::rules::print::rule_text(self).trim_end())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuleData {
        let mut r = RuleData::new(FILTER_EXIT | FILTER_PREPEND, ACTION_ALWAYS);
        r.set_syscall(59);
        r.set_syscall(322);
        r.fields.push(FieldEntry::num(F_ARCH, OP_EQUAL, 0xc000_003e));
        r.fields.push(FieldEntry::string(F_EXE, OP_NOT_EQUAL, b"/usr/bin/bash"));
        r.fields.push(FieldEntry::num(F_SADDR_FAM, OP_EQUAL, 2));
        r.fields.push(FieldEntry::string(F_FILTERKEY, OP_EQUAL, b"a\x01b"));
        r
    }

    /// Regression (numeric -S 2038–2047 loaded as a rule without syscalls): the class bit is
    /// what auditctl sends, so it must survive normalisation, and the kernel's expansion of it
    /// must verify as the same rule.
    #[test]
    fn class_bits_are_sent_and_their_expansion_matches() {
        let mut r = RuleData::new(FILTER_EXIT, ACTION_ALWAYS);
        r.set_syscall(2039);
        assert!(r.has_unmodelled_classes());
        assert_eq!(r.kernel_normalise().syscalls().collect::<Vec<_>>(), [2039]);
        let mut listed = RuleData::new(FILTER_EXIT, ACTION_ALWAYS);
        for nr in [62, 200, 234] {
            listed.set_syscall(nr);
        }
        assert!(r.lists_as(&listed));
        listed.fields.push(FieldEntry::num(F_ARCH, OP_EQUAL, 0xc000_003e));
        assert!(!r.lists_as(&listed), "other fields are another rule");
        let mut plus = r.clone();
        plus.set_syscall(59);
        let mut no_59 = RuleData::new(FILTER_EXIT, ACTION_ALWAYS);
        no_59.set_syscall(62);
        assert!(!plus.lists_as(&no_59), "our non-class syscalls must all be listed");
        // `-S all` sets every class bit too; the expansion adds nothing, so clearing is exact.
        let mut all = RuleData::new(FILTER_EXIT, ACTION_ALWAYS);
        all.set_all_syscalls();
        assert!(!all.has_unmodelled_classes());
        assert_eq!(all.kernel_normalise().mask[BITMASK_WORDS - 1], 0x0000_ffff);
    }

    #[test]
    fn encode_layout_and_roundtrip() {
        let r = sample();
        let b = r.encode();
        assert_eq!(b.len(), HEADER_LEN + 13 + 3);
        assert_eq!(rd(&b, 0), FILTER_EXIT | FILTER_PREPEND);
        assert_eq!(rd(&b, 8), 4);
        assert_eq!(rd(&b, 12 + 4), 1 << (59 - 32));
        // exe is a string field: its value is the length, its bytes are in buf.
        assert_eq!(rd(&b, 268 + 4), F_EXE);
        assert_eq!(rd(&b, 524 + 4), 13);
        assert_eq!(rd(&b, 780 + 4), OP_NOT_EQUAL);
        assert_eq!(rd(&b, 1036), 16);
        assert_eq!(&b[HEADER_LEN..], b"/usr/bin/basha\x01b");
        assert_eq!(RuleData::decode(&b), Ok(r));
    }

    #[test]
    fn decode_rejects_bad_lengths() {
        let b = sample().encode();
        assert_eq!(RuleData::decode(&b[..100]), Err(DecodeError::TooShort { len: 100 }));
        assert!(matches!(RuleData::decode(&b[..HEADER_LEN + 3]), Err(DecodeError::BufLen { .. })));
        let mut bad = b.clone();
        bad[8..12].copy_from_slice(&65u32.to_ne_bytes());
        assert_eq!(RuleData::decode(&bad), Err(DecodeError::TooManyFields { count: 65 }));
        let mut overrun = b;
        overrun[524 + 4..528 + 4].copy_from_slice(&200u32.to_ne_bytes());
        assert!(matches!(RuleData::decode(&overrun), Err(DecodeError::StringOverrun { index: 1, .. })));
    }

    #[test]
    fn normalise_clears_prepend_and_class_bits() {
        let mut r = sample();
        r.set_all_syscalls();
        let n = r.kernel_normalise();
        assert_eq!(n.flags, FILTER_EXIT);
        assert_eq!(n.mask[63], 0x0000_ffff);
        assert!(n.mask_lists_as_all());
        assert!(!n.mask_is_all());
    }

    #[test]
    fn hex_roundtrip() {
        let b = sample().encode();
        assert_eq!(unhex(&hex(&b)), Some(b));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = FieldEntry> {
        prop_oneof![
            (0u32..300, any::<u32>(), any::<u32>())
                .prop_filter("numeric field", |(f, _, _)| !is_string_field(*f))
                .prop_map(|(f, op, v)| FieldEntry::num(f, op, v)),
            (
                prop::sample::select(vec![F_SUBJ_USER, F_OBJ_USER, F_WATCH, F_DIR, F_FILTERKEY, F_EXE]),
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(f, op, t): (u32, u32, Vec<u8>)| FieldEntry::string(f, op, &t)),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(flags in any::<u32>(), action in any::<u32>(), mask in prop::array::uniform32(any::<u32>()), fields in prop::collection::vec(field(), 0..=MAX_FIELDS)) {
            let mut r = RuleData::new(flags, action);
            r.mask[..32].copy_from_slice(&mask);
            r.mask[32..].copy_from_slice(&mask);
            r.fields = fields;
            prop_assert_eq!(RuleData::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let _ = RuleData::decode(&bytes);
        }
    }
}
