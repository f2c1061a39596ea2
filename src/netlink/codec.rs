//! Netlink framing for NETLINK_AUDIT.
//!
//! We parse the 16-byte `nlmsghdr` ourselves instead of using netlink-packet-audit's codec: that
//! crate (0.7) decodes event payloads as UTF-8 and drops the message when that fails, and it trusts
//! `nlmsg_len`, which for event records sent to the registered daemon is the *payload* length
//! (the kernel's `audit_log_end` → `kauditd_send_queue` path never adds the header size). The
//! multicast copy has the corrected length; acks and replies use normal lengths.

/// `NLMSG_ERROR`: ack (errno 0) or refusal (negative errno).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a multi-part dump.
pub const NLMSG_DONE: u16 = 3;

// The message-type numbers are right in netlink-packet-audit (they are linux/audit.h's), so we
// take them from there. AUDIT_REPLACE is sent by the kernel to the old daemon when the daemon pid
// changes; it is not an event.
pub use netlink_packet_audit::constants::{
    AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES, AUDIT_REPLACE, AUDIT_SET,
};

/// First record type that is an audit event rather than a command or reply.
pub const AUDIT_FIRST_EVENT: u16 = netlink_packet_audit::constants::AUDIT_FIRST_USER_MSG;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;

/// Size of `struct nlmsghdr`.
pub const HEADER_LEN: usize = 16;

/// A parsed `struct nlmsghdr` (native endian, as the kernel writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl Header {
    /// Parse the header at the start of `buf`; `None` if fewer than 16 bytes.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let b = buf.get(..HEADER_LEN)?;
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Header {
            len: u32_at(0),
            kind: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32_at(8),
            pid: u32_at(12),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_ne_bytes());
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&self.pid.to_ne_bytes());
    }
}

/// Is this message type an audit event record (as opposed to a command, reply or netlink control)?
pub fn is_event_type(kind: u16) -> bool {
    kind >= AUDIT_FIRST_EVENT
}

/// The payload of a datagram that carries one audit event record.
///
/// The kernel sends one record per datagram, so the record is everything after the header whatever
/// `nlmsg_len` says (payload length for unicast, header + payload for multicast). Trailing NULs are
/// trimmed: some records are NUL-terminated, most are not.
pub fn event_payload(datagram: &[u8]) -> &[u8] {
    let mut payload = datagram.get(HEADER_LEN..).unwrap_or(&[]);
    while let [rest @ .., 0] = payload {
        payload = rest;
    }
    payload
}

/// Build a request message: header (length counted correctly) + payload.
pub fn request(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 3);
    let len = (HEADER_LEN + payload.len()) as u32;
    Header { len, kind, flags: NLM_F_REQUEST | flags, seq, pid: 0 }.emit(&mut out);
    out.extend_from_slice(payload);
    // Netlink messages are 4-byte aligned on the wire.
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// Iterate the messages of a reply datagram (acks, dumps), which use normal lengths.
///
/// Stops at the first header whose length is impossible instead of looping or reading past the end.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { buf: datagram }
}

pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = (Header, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = Header::parse(self.buf)?;
        let len = header.len as usize;
        if len < HEADER_LEN || len > self.buf.len() {
            // A record with the unicast length quirk, or garbage: hand out the rest as one message.
            let payload = &self.buf[HEADER_LEN..];
            self.buf = &[];
            return Some((header, payload));
        }
        let payload = &self.buf[HEADER_LEN..len];
        let aligned = (len + 3) & !3;
        self.buf = self.buf.get(aligned..).unwrap_or(&[]);
        Some((header, payload))
    }
}

/// The errno carried by an `NLMSG_ERROR` payload (0 = ack), and the sequence it answers.
pub fn error_code(payload: &[u8]) -> Option<(i32, u32)> {
    let errno = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    let orig = Header::parse(payload.get(4..)?)?;
    Some((errno, orig.seq))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A datagram with the given `nlmsg_len` (which the kernel sets inconsistently) and payload.
    pub(crate) fn datagram(len: u32, kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        Header { len, kind, flags: 0, seq: 0, pid: 0 }.emit(&mut d);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn unicast_length_quirk_keeps_whole_payload() {
        let body = b"audit(1795374595.144:31353): op=set audit_enabled=1 old=1 res=1";
        // Unicast: nlmsg_len counts only the payload.
        let d = datagram(body.len() as u32, 1305, body);
        assert_eq!(event_payload(&d), body);
        // Multicast: nlmsg_len is right; same payload.
        let d = datagram((body.len() + 16) as u32, 1305, body);
        assert_eq!(event_payload(&d), body);
    }

    #[test]
    fn trailing_nuls_are_trimmed() {
        let d = datagram(20, 1320, b"audit(1.000:1): \0\0\0");
        assert_eq!(event_payload(&d), b"audit(1.000:1): ");
    }

    #[test]
    fn empty_and_short_datagrams() {
        assert_eq!(event_payload(&[1, 2, 3]), b"");
        assert!(Header::parse(&[0; 15]).is_none());
        assert_eq!(messages(&[0; 8]).count(), 0);
    }

    #[test]
    fn request_round_trips_and_aligns() {
        let r = request(AUDIT_GET, NLM_F_ACK, 7, &[1, 2, 3]);
        assert_eq!(r.len(), 20);
        let (h, payload) = messages(&r).next().expect("one message");
        assert_eq!(h.len, 19);
        assert_eq!(h.kind, AUDIT_GET);
        assert_eq!(h.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(h.seq, 7);
        assert_eq!(payload, &[1, 2, 3]);
    }

    #[test]
    fn multi_message_dump_and_bad_length() {
        let mut d = request(AUDIT_LIST_RULES, 0, 1, &[9; 5]);
        d.extend(request(NLMSG_DONE, 0, 1, &[]));
        let kinds: Vec<u16> = messages(&d).map(|(h, _)| h.kind).collect();
        assert_eq!(kinds, vec![AUDIT_LIST_RULES, NLMSG_DONE]);
        // A length beyond the buffer yields the rest once, then stops.
        let bad = datagram(1000, 1300, b"abc");
        let all: Vec<_> = messages(&bad).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, b"abc");
    }

    #[test]
    fn error_code_reads_errno_and_seq() {
        let mut p = (-17i32).to_ne_bytes().to_vec();
        Header { len: 16, kind: AUDIT_SET, flags: 5, seq: 42, pid: 0 }.emit(&mut p);
        assert_eq!(error_code(&p), Some((-17, 42)));
        assert_eq!(error_code(&[0, 0]), None);
    }
}
