//! Record types: the kernel's numeric `nlmsg_type` and the name auditd prints for it.
//!
//! Unknown numbers are kept as they are and print as `UNKNOWN[1334]`, exactly as auditd writes them,
//! so a newer kernel's record types pass through and `from_name` reads auditd's spelling back.
//! Invariant: `MessageType::from_name(t.name().as_bytes()) == Some(t)` for every `t`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::hash::FastHash;

/// A kernel audit message type (`nlmsg_type`), e.g. 1300 = SYSCALL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageType(pub u16);

macro_rules! message_types {
    ($($num:literal => $name:ident,)*) => {
        #[allow(non_upper_case_globals)]
        impl MessageType {
            $(pub const $name: MessageType = MessageType($num);)*

            /// The auditd name, or `None` for a number auditd does not know either.
            pub fn known_name(self) -> Option<&'static str> {
                match self.0 {
                    $($num => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Every (name, number), for the name index.
            const TABLE: &'static [(&'static str, u16)] = &[$((stringify!($name), $num),)*];
        }
    };
}

include!("message_type_table.rs");

impl MessageType {
    /// The type of an audit.log record whose name is not in the table (see `Record::type_id`).
    /// Netlink reserves message types below 16 (`NLMSG_MIN_TYPE`) for its own control messages,
    /// so no audit record carries 0.
    pub const NONE: MessageType = MessageType(0);

    /// auditd's name: `SYSCALL`, or `UNKNOWN[1334]` for a number without one.
    pub fn name(self) -> Cow<'static, str> {
        match self.known_name() {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("UNKNOWN[{}]", self.0)),
        }
    }

    /// Read a name as auditd writes it in `type=NAME`, including `UNKNOWN[n]`.
    pub fn from_name(name: &[u8]) -> Option<MessageType> {
        if let Some(number) = name.strip_prefix(b"UNKNOWN[").and_then(|rest| rest.strip_suffix(b"]")) {
            if number.is_empty() || !number.iter().all(u8::is_ascii_digit) {
                return None;
            }
            return std::str::from_utf8(number).ok()?.parse().ok().map(MessageType);
        }
        // A `match` on ~220 strings compiles to a chain of comparisons; replay parses a name per
        // line, so look names up in a map built once. Keyed by bytes: every name is ASCII, so a
        // name that is not UTF-8 simply is not found, without validating each line's name first.
        static INDEX: OnceLock<HashMap<&'static [u8], u16, FastHash>> = OnceLock::new();
        let index = INDEX.get_or_init(|| Self::TABLE.iter().map(|&(name, number)| (name.as_bytes(), number)).collect());
        index.get(name).copied().map(MessageType)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_name() {
            Some(name) => f.write_str(name),
            None => write!(f, "UNKNOWN[{}]", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_have_auditd_names() {
        assert_eq!(MessageType(1300).name(), "SYSCALL");
        assert_eq!(MessageType(1320).name(), "EOE");
        assert_eq!(MessageType(1327).name(), "PROCTITLE");
        assert_eq!(MessageType(1006).name(), "LOGIN");
        assert_eq!(MessageType(2100).name(), "ANOM_LOGIN_FAILURES");
        assert_eq!(MessageType::EOE, MessageType(1320));
    }

    #[test]
    fn unknown_types_print_like_auditd() {
        assert_eq!(MessageType(1999).name(), "UNKNOWN[1999]");
        assert_eq!(MessageType(1999).to_string(), "UNKNOWN[1999]");
        assert_eq!(MessageType::from_name(b"UNKNOWN[1999]"), Some(MessageType(1999)));
    }

    #[test]
    fn every_number_round_trips_through_its_name() {
        for n in 0..=u16::MAX {
            let t = MessageType(n);
            assert_eq!(MessageType::from_name(t.name().as_bytes()), Some(t), "{n}");
        }
    }

    #[test]
    fn rejects_names_nobody_writes() {
        assert_eq!(MessageType::from_name(b"SYSCALLS"), None);
        assert_eq!(MessageType::from_name(b"UNKNOWN[]"), None);
        assert_eq!(MessageType::from_name(b"UNKNOWN[+5]"), None);
        assert_eq!(MessageType::from_name(b"UNKNOWN[70000]"), None);
        assert_eq!(MessageType::from_name(b"syscall"), None);
    }
}
