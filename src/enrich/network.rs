//! SOCKADDR `saddr=` (the hex of the `struct sockaddr` a syscall passed) → family and address.
//!
//! Layouts (include/uapi/linux/{un,in,in6,netlink}.h); `sa_family` is host order (the capture's
//! machine: little-endian on every arch auditrelay supports), ports and IPv4/IPv6 addresses are
//! network order:
//! - `unix` (1): `sun_path` from byte 2, NUL-terminated; a path starting with NUL is an abstract
//!   socket, written `@name` (what `ss` and `ausearch` show), its name running to the end;
//! - `inet` (2): port at 2..4, address at 4..8;
//! - `inet6` (10): port at 2..4, flowinfo 4..8, address 8..24, scope id 24..28;
//! - `netlink` (16): pad 2..4, port id (`nl_pid`) 4..8, groups 8..12.
//!
//! Anything else, or a buffer too short for its family, keeps its raw hex (`raw`): nothing is
//! guessed.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::hex::decode_into;

/// One decoded address. Strings are appended to the caller's text buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockAddr {
    /// `unix`, `inet`, `inet6`, `netlink`, other families' names, or `None` (then `family_number`).
    pub family: Option<&'static str>,
    pub family_number: u16,
    /// `(start, end)` of the textual address (IPv4/IPv6) in the text buffer.
    pub address: Option<(usize, usize)>,
    pub port: Option<u16>,
    /// Unix socket path (abstract: `@name`).
    pub path: Option<(usize, usize)>,
    /// Netlink port id.
    pub pid: Option<u32>,
    /// The raw hex, kept for families not decoded (or a short buffer).
    pub raw: bool,
}

/// Family numbers → names (include/linux/socket.h AF_*), as auparse spells the common ones.
const FAMILIES: &[(u16, &str)] = &[
    (0, "unspec"),
    (1, "unix"),
    (2, "inet"),
    (3, "ax25"),
    (4, "ipx"),
    (5, "appletalk"),
    (9, "x25"),
    (10, "inet6"),
    (16, "netlink"),
    (17, "packet"),
    (29, "can"),
    (31, "bluetooth"),
    (38, "alg"),
    (40, "vsock"),
    (44, "xdp"),
];

/// Decode `saddr` hex. `bytes` is scratch space (cleared); strings go to `text`.
pub fn decode(saddr: &[u8], bytes: &mut Vec<u8>, text: &mut Vec<u8>) -> SockAddr {
    bytes.clear();
    let mut out = SockAddr { raw: true, ..SockAddr::default() };
    if !decode_into(saddr, bytes) || bytes.len() < 2 {
        return out;
    }
    let b = &bytes[..];
    out.family_number = u16::from_le_bytes([b[0], b[1]]);
    out.family = FAMILIES.iter().find(|(n, _)| *n == out.family_number).map(|(_, s)| *s);
    let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    match out.family_number {
        // An unnamed socket (autobind, socketpair): the family alone, nothing to decode.
        1 if b.len() > 2 => {
            let path = &b[2..];
            let start = text.len();
            if let Some(abstract_name) = path.strip_prefix(b"\0") {
                text.push(b'@');
                text.extend_from_slice(abstract_name);
            } else {
                let end = memchr::memchr(0, path).unwrap_or(path.len());
                text.extend_from_slice(&path[..end]);
            }
            out.path = Some((start, text.len()));
            out.raw = false;
        }
        2 if b.len() >= 8 => {
            out.port = Some(be16(2));
            let start = text.len();
            let _ = write!(text, "{}", Ipv4Addr::new(b[4], b[5], b[6], b[7]));
            out.address = Some((start, text.len()));
            out.raw = false;
        }
        10 if b.len() >= 24 => {
            out.port = Some(be16(2));
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[8..24]);
            let start = text.len();
            let _ = write!(text, "{}", Ipv6Addr::from(octets));
            out.address = Some((start, text.len()));
            out.raw = false;
        }
        16 if b.len() >= 12 => {
            out.pid = Some(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
            out.raw = false;
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn dec(saddr: &str) -> (SockAddr, String) {
        let (mut scratch, mut text) = (Vec::new(), Vec::new());
        let a = decode(saddr.as_bytes(), &mut scratch, &mut text);
        (a, String::from_utf8_lossy(&text).into_owned())
    }

    #[test]
    fn inet_inet6_unix_netlink_from_the_corpus() {
        let (a, text) = dec("020000357F0000350000000000000000");
        assert_eq!((a.family, a.port, a.raw), (Some("inet"), Some(53), false));
        assert_eq!(&text[a.address.unwrap().0..a.address.unwrap().1], "127.0.0.53");
        let (a, text) = dec("0A000050000000000000000000000000000000000000000100000000");
        assert_eq!((a.family, a.port), (Some("inet6"), Some(80)));
        assert_eq!(&text[a.address.unwrap().0..], "::1");
        let (a, text) = dec("01002F7661722F72756E2F6E7363642F736F636B657400");
        assert_eq!((a.family, a.raw), (Some("unix"), false));
        assert_eq!(text, "/var/run/nscd/socket");
        let (a, text) = dec("0100006162");
        assert_eq!(text, "@ab");
        assert!(a.path.is_some());
        let (a, _) = dec("100000000D0000000000000000");
        assert_eq!((a.family, a.pid), (Some("netlink"), Some(13)));
    }

    #[test]
    fn other_families_and_short_buffers_keep_the_raw_hex() {
        let (a, _) = dec("0100");
        assert_eq!((a.family, a.raw, a.path), (Some("unix"), true, None));
        let (a, _) = dec("11000300");
        assert_eq!((a.family, a.raw), (Some("packet"), true));
        let (a, _) = dec("0200");
        assert_eq!((a.family, a.raw, a.port), (Some("inet"), true, None));
        let (a, _) = dec("FFFF00");
        assert_eq!((a.family, a.family_number, a.raw), (None, 0xffff, true));
        let (a, _) = dec("nothex");
        assert!(a.raw && a.family.is_none());
    }

    proptest! {
        /// Any IPv4/IPv6 address and port round-trip through the kernel's layout.
        #[test]
        fn inet_round_trips(ip in any::<[u8; 4]>(), port in any::<u16>()) {
            let mut b = vec![2, 0];
            b.extend_from_slice(&port.to_be_bytes());
            b.extend_from_slice(&ip);
            b.extend_from_slice(&[0; 8]);
            let (a, text) = dec(&hex(&b));
            prop_assert_eq!(a.port, Some(port));
            prop_assert_eq!(text.parse::<Ipv4Addr>().ok(), Some(Ipv4Addr::from(ip)));
        }

        #[test]
        fn inet6_round_trips(ip in any::<[u8; 16]>(), port in any::<u16>()) {
            let mut b = vec![10, 0];
            b.extend_from_slice(&port.to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&ip);
            b.extend_from_slice(&[0; 4]);
            let (a, text) = dec(&hex(&b));
            prop_assert_eq!(a.port, Some(port));
            prop_assert_eq!(text.parse::<Ipv6Addr>().ok(), Some(Ipv6Addr::from(ip)));
        }

        #[test]
        fn unix_paths_round_trip(path in "[a-zA-Z0-9/._-]{1,100}", abstract_ in any::<bool>()) {
            let mut b = vec![1, 0];
            if abstract_ { b.push(0); }
            b.extend_from_slice(path.as_bytes());
            if !abstract_ { b.push(0); }
            let (_, text) = dec(&hex(&b));
            prop_assert_eq!(text, if abstract_ { format!("@{path}") } else { path });
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn arbitrary_sockaddrs_never_panic(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = dec(&hex(&b));
        }
    }
}
