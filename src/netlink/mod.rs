//! The kernel side: the NETLINK_AUDIT socket, its framing quirks, and the control requests.
//!
//! - [`codec`]: the 16-byte `nlmsghdr` and message types, parsed by us because the kernel's
//!   unicast event records carry a length that does not count the header.
//! - [`status`]: `struct audit_status` (44 bytes on current kernels).
//! - [`socket`]: opening, binding (unicast daemon or multicast reader), buffers, batched receive.
//! - [`client`]: request/ack exchanges: status, daemon registration, rules.
//! - [`reader`]: the receive-only thread that hands datagrams on and never waits downstream.

pub mod client;
pub mod codec;
pub mod reader;
pub mod settings;
pub mod socket;
pub mod status;

use std::io;

/// Errors talking to the kernel audit subsystem.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open the audit netlink socket: {0}")]
    Open(#[source] io::Error),
    #[error("netlink {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel answered a request with a negative errno.
    #[error("kernel refused {request}: {}", io::Error::from_raw_os_error(*errno))]
    Refused { request: &'static str, errno: i32 },
    #[error("no answer from the kernel to {request} within {timeout_ms} ms")]
    Timeout { request: &'static str, timeout_ms: u64 },
    #[error("malformed netlink reply to {request}: {detail}")]
    Malformed { request: &'static str, detail: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
