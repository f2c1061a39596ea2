//! Request/ack exchanges with the kernel: status, daemon registration, rules.
//!
//! Synchronous on purpose: the control plane runs at start, on reload and at exit, and a blocking
//! socket with a receive timeout is the simplest thing that cannot lose an answer. Replies are
//! matched by sequence number. The kernel sends some replies (AUDIT_GET, rule dumps) from a
//! worker thread, so the ack can arrive before or after the data; we wait for both.
//!
//! When this client's socket is the registered daemon socket, event records can arrive between
//! replies; they are kept, in order, and handed back by [`AuditClient::into_parts`].

use std::time::{Duration, Instant};

use super::codec::{
    self, AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_GET, AUDIT_LIST_RULES, AUDIT_SET, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
};
use super::socket::AuditSocket;
use super::status::{mask, AuditStatus};
use super::NetlinkError;

/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AuditClient {
    socket: AuditSocket,
    seq: u32,
    /// Event datagrams received while waiting for replies (daemon socket only).
    early_events: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Just the ack.
    Ack,
    /// One reply message plus the ack.
    Reply,
    /// A dump ended by NLMSG_DONE, plus the ack.
    Dump,
}

impl AuditClient {
    /// A control client on a fresh socket.
    pub fn open() -> Result<AuditClient, NetlinkError> {
        AuditClient::with_socket(AuditSocket::unicast()?)
    }

    /// A client on an existing socket (the one that will receive events after registering).
    pub fn with_socket(socket: AuditSocket) -> Result<AuditClient, NetlinkError> {
        socket.set_receive_timeout(Duration::from_millis(250))?;
        Ok(AuditClient { socket, seq: 0, early_events: Vec::new() })
    }

    /// The socket back, with any event datagrams that arrived during requests (in arrival order).
    pub fn into_parts(self) -> (AuditSocket, Vec<Vec<u8>>) {
        (self.socket, self.early_events)
    }

    pub fn status(&mut self) -> Result<AuditStatus, NetlinkError> {
        let replies = self.request("AUDIT_GET", AUDIT_GET, &[], Expect::Reply)?;
        let payload = replies
            .first()
            .ok_or(NetlinkError::Malformed { request: "AUDIT_GET", detail: "no status in reply".into() })?;
        AuditStatus::parse(payload).ok_or_else(|| NetlinkError::Malformed {
            request: "AUDIT_GET",
            detail: format!("status reply of {} bytes", payload.len()),
        })
    }

    /// AUDIT_SET: change the fields named in `status.mask`.
    pub fn set_status(&mut self, status: &AuditStatus) -> Result<(), NetlinkError> {
        self.request("AUDIT_SET", AUDIT_SET, &status.emit(), Expect::Ack).map(|_| ())
    }

    /// Make `pid` the audit daemon (0 unregisters). EEXIST means another live daemon holds it.
    pub fn set_pid(&mut self, pid: u32) -> Result<(), NetlinkError> {
        self.set_status(&AuditStatus { mask: mask::PID, pid, ..Default::default() })
    }

    pub fn add_rule(&mut self, rule_data: &[u8]) -> Result<(), NetlinkError> {
        self.request("AUDIT_ADD_RULE", AUDIT_ADD_RULE, rule_data, Expect::Ack).map(|_| ())
    }

    pub fn delete_rule(&mut self, rule_data: &[u8]) -> Result<(), NetlinkError> {
        self.request("AUDIT_DEL_RULE", AUDIT_DEL_RULE, rule_data, Expect::Ack).map(|_| ())
    }

    /// The kernel's rules, as raw `struct audit_rule_data` payloads in kernel order.
    pub fn list_rules(&mut self) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.request("AUDIT_LIST_RULES", AUDIT_LIST_RULES, &[], Expect::Dump)
    }

    fn request(
        &mut self,
        name: &'static str,
        kind: u16,
        payload: &[u8],
        expect: Expect,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        self.socket.send(&codec::request(kind, NLM_F_ACK, seq, payload))?;

        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut replies = Vec::new();
        let mut acked = false;
        let mut done = expect == Expect::Ack;
        let mut buf = Vec::new();
        while !(acked && done) {
            if Instant::now() >= deadline {
                return Err(NetlinkError::Timeout { request: name, timeout_ms: REQUEST_TIMEOUT.as_millis() as u64 });
            }
            if !self.socket.recv(&mut buf)? {
                continue;
            }
            if let Some(h) = codec::Header::parse(&buf) {
                if codec::is_event_type(h.kind) {
                    self.early_events.push(buf.clone());
                    continue;
                }
            }
            for (header, body) in codec::messages(&buf) {
                if header.seq != seq {
                    continue;
                }
                match header.kind {
                    NLMSG_ERROR => match codec::error_code(body) {
                        Some((0, _)) => acked = true,
                        Some((errno, _)) => return Err(NetlinkError::Refused { request: name, errno: -errno }),
                        None => {
                            return Err(NetlinkError::Malformed { request: name, detail: "short NLMSG_ERROR".into() })
                        }
                    },
                    NLMSG_DONE => done = true,
                    k if k == kind => {
                        replies.push(body.to_vec());
                        if expect == Expect::Reply {
                            done = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(replies)
    }
}
