//! The NETLINK_AUDIT socket: unicast (registered daemon) or multicast (read-only) mode, receive
//! buffer sizing, timeouts, and batched receive.
//!
//! Socket creation and binding go through netlink-sys; the batched receive is ours (`recvmmsg`
//! on the raw fd) because the reader must drain bursts with as few syscalls as possible and must
//! see `MSG_TRUNC` per datagram, which netlink-sys does not expose.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_AUDIT, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use super::NetlinkError;

/// `AUDIT_NLGRP_READLOG`: the multicast group that gets a copy of every record.
pub use netlink_packet_audit::constants::AUDIT_NLGRP_READLOG;

/// Largest record the kernel sends (`MAX_AUDIT_MESSAGE_LENGTH`) plus the header, rounded up.
pub const MAX_DATAGRAM: usize = 9216;

pub struct AuditSocket {
    socket: Socket,
    /// Connected to the kernel (port 0): the kernel then refuses every other sender's unicast to
    /// us (`netlink_getsockbyportid`: ECONNREFUSED), so a forgery never reaches the queue and
    /// the batched receive need not ask for each datagram's sender. (The per-datagram
    /// `move_addr_to_user` that saves was 3.6 % of the reader thread's samples under a storm; the
    /// count-only reader, which shares this code, measured no faster for it: kept for the
    /// kernel's own check.) A multicast socket is not connected: a process with CAP_NET_ADMIN can
    /// send to the group, so its receive names every sender and the reader drops the others.
    connected: bool,
}

/// How the receive buffer was sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcvBuf {
    /// SO_RCVBUFFORCE worked (CAP_NET_ADMIN): the requested size, beyond rmem_max.
    Forced(usize),
    /// Fell back to SO_RCVBUF: capped by net.core.rmem_max.
    Capped(usize),
}

impl AuditSocket {
    /// A socket bound, with no multicast groups, and connected to the kernel: for control
    /// requests and for receiving events after registering as the audit daemon.
    pub fn unicast() -> Result<AuditSocket, NetlinkError> {
        let mut socket = Socket::new(NETLINK_AUDIT).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(|source| NetlinkError::Io { op: "bind", source })?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(|source| NetlinkError::Io { op: "connect", source })?;
        Ok(AuditSocket { socket, connected: true })
    }

    /// A read-only socket in the AUDIT_NLGRP_READLOG group (needs CAP_AUDIT_READ). It is bound
    /// first, then joins: joining an unbound netlink socket is refused by some kernels.
    pub fn multicast() -> Result<AuditSocket, NetlinkError> {
        let mut socket = Socket::new(NETLINK_AUDIT).map_err(NetlinkError::Open)?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(|source| NetlinkError::Io { op: "bind", source })?;
        socket
            .add_membership(AUDIT_NLGRP_READLOG)
            .map_err(|source| NetlinkError::Io { op: "join AUDIT_NLGRP_READLOG", source })?;
        Ok(AuditSocket { socket, connected: false })
    }

    /// Size the receive buffer: SO_RCVBUFFORCE first (beyond rmem_max), SO_RCVBUF otherwise.
    pub fn set_receive_buffer(&self, bytes: usize) -> Result<RcvBuf, NetlinkError> {
        if setsockopt(&self.socket.as_fd(), sockopt::RcvBufForce, &bytes).is_ok() {
            return Ok(RcvBuf::Forced(bytes));
        }
        setsockopt(&self.socket.as_fd(), sockopt::RcvBuf, &bytes)
            .map_err(|e| NetlinkError::Io { op: "SO_RCVBUF", source: e.into() })?;
        let got = nix::sys::socket::getsockopt(&self.socket.as_fd(), sockopt::RcvBuf)
            .map_err(|e| NetlinkError::Io { op: "SO_RCVBUF", source: e.into() })?;
        Ok(RcvBuf::Capped(got))
    }

    /// Bound blocking receives so a receiving thread can notice shutdown.
    pub fn set_receive_timeout(&self, timeout: Duration) -> Result<(), NetlinkError> {
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs() as nix::sys::time::time_t,
            timeout.subsec_micros() as nix::sys::time::suseconds_t,
        );
        setsockopt(&self.socket.as_fd(), sockopt::ReceiveTimeout, &tv)
            .map_err(|e| NetlinkError::Io { op: "SO_RCVTIMEO", source: e.into() })
    }

    pub fn send(&self, message: &[u8]) -> Result<(), NetlinkError> {
        let kernel = SocketAddr::new(0, 0);
        self.socket.send_to(message, &kernel, 0).map(|_| ()).map_err(|source| NetlinkError::Io { op: "send", source })
    }

    /// Receive one datagram into `buf` (cleared first). `Ok(false)` on timeout, and for a
    /// datagram that did not come from the kernel: any local process can send to our port, and a
    /// forged ack could make a refused rule look loaded; libaudit drops those too. Logged.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<bool, NetlinkError> {
        buf.clear();
        buf.reserve(MAX_DATAGRAM);
        match self.socket.recv_from(buf, 0) {
            Ok((_, from)) if from.port_number() != 0 => {
                log::warn!("dropped a netlink message from port {} (not the kernel)", from.port_number());
                buf.clear();
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(source) => Err(NetlinkError::Io { op: "recv", source }),
        }
    }
}

impl AsFd for AuditSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for AuditSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// Result of one batched receive.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// `n` datagrams were received into the first `n` slots.
    Received(usize),
    /// The receive timed out with nothing to read.
    Idle,
    /// The socket buffer overflowed: the kernel dropped datagrams (ENOBUFS).
    Overrun,
}

/// How a batched receive waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block (up to the socket timeout) for the first datagram, then take what else is queued.
    ForOne,
    /// Take only what is queued now.
    No,
}

/// Fixed slots for `recvmmsg`: one allocation at start, reused for every batch.
pub struct BatchBuffers {
    data: Vec<u8>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    /// Sender port id of each datagram: 0 is the kernel.
    senders: Vec<u32>,
    slots: usize,
}

impl BatchBuffers {
    pub fn new(slots: usize) -> BatchBuffers {
        let slots = slots.max(1);
        BatchBuffers {
            data: vec![0; slots * MAX_DATAGRAM],
            lens: vec![0; slots],
            truncated: vec![false; slots],
            senders: vec![0; slots],
            slots,
        }
    }

    /// The netlink port id that sent datagram `i` of the last batch (0 = the kernel). Any local
    /// process may send to our port; libaudit drops what the kernel did not send, and so do we.
    pub fn sender(&self, i: usize) -> u32 {
        self.senders.get(i).copied().unwrap_or(u32::MAX)
    }

    /// Datagram `i` of the last batch, and whether the kernel had to cut it (MSG_TRUNC).
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        let start = i * MAX_DATAGRAM;
        let len = self.lens.get(i).copied().unwrap_or(0).min(MAX_DATAGRAM);
        (&self.data[start..start + len], self.truncated.get(i).copied().unwrap_or(false))
    }

    /// Receive up to `slots` datagrams: with [`Wait::ForOne`] blocks (up to the socket timeout)
    /// for the first, then takes whatever else is already queued (`MSG_WAITFORONE`); with
    /// [`Wait::No`] only what is queued (`MSG_DONTWAIT`).
    pub fn receive(&mut self, socket: &AuditSocket, wait: Wait) -> Result<Batch, NetlinkError> {
        // SAFETY: sockaddr_nl is plain old data; zero is a valid value for every field.
        let mut addrs: Vec<libc::sockaddr_nl> = (0..self.slots).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut iovecs: Vec<libc::iovec> = self
            .data
            .chunks_exact_mut(MAX_DATAGRAM)
            .map(|chunk| libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM })
            .collect();
        // SAFETY: mmsghdr is plain old data; zero is a valid value for every field.
        let mut headers: Vec<libc::mmsghdr> = (0..self.slots).map(|_| unsafe { std::mem::zeroed() }).collect();
        for ((h, iov), addr) in headers.iter_mut().zip(iovecs.iter_mut()).zip(addrs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            // A connected socket hears only the kernel (see `AuditSocket::connected`): no name.
            if !socket.connected {
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_nl).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            }
        }
        let flags = match wait {
            Wait::ForOne => libc::MSG_WAITFORONE,
            Wait::No => libc::MSG_DONTWAIT,
        };
        // SAFETY: every mmsghdr points at one iovec that points into self.data and at one
        // sockaddr_nl in `addrs` or at none, all alive and exclusively borrowed for the duration
        // of the call; vlen equals the number of headers.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                self.slots as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Batch::Idle),
                Some(libc::ENOBUFS) => Ok(Batch::Overrun),
                _ => Err(NetlinkError::Io { op: "recvmmsg", source: err }),
            };
        }
        let n = n as usize;
        for (i, h) in headers.iter().take(n).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // Zero (the kernel) where no name was asked for: the socket is connected to it.
            self.senders[i] = addrs[i].nl_pid;
        }
        Ok(Batch::Received(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review of issue 10): messages were accepted from any sender. A local process
    /// (with CAP_NET_ADMIN) can send to our port; only what the kernel (port 0) sent may count,
    /// on both receive paths. The unicast socket is connected to the kernel, which then refuses
    /// the forgery itself.
    #[test]
    fn datagrams_from_other_processes_are_refused() {
        let victim = AuditSocket::unicast().unwrap();
        victim.set_receive_timeout(Duration::from_millis(200)).unwrap();
        let mut addr = SocketAddr::new(0, 0);
        victim.socket.get_address(&mut addr).unwrap();
        let forger = AuditSocket::unicast().unwrap();
        // A forged "ack" (NLMSG_ERROR, errno 0) as a local process would send it.
        let ack = super::super::codec::request(2, 0, 1, &[0u8; 20]);
        let sent = forger.socket.send_to(&ack, &SocketAddr::new(addr.port_number(), 0), 0);
        assert_eq!(
            sent.map_err(|e| e.raw_os_error()),
            Err(Some(libc::ECONNREFUSED)),
            "the kernel must refuse a unicast to a socket connected to it"
        );
        let mut buf = Vec::new();
        assert!(!victim.recv(&mut buf).unwrap(), "a forged message was accepted");
        let _ = forger.socket.send_to(&ack, &SocketAddr::new(addr.port_number(), 0), 0);
        let mut batch = BatchBuffers::new(4);
        assert_eq!(batch.receive(&victim, Wait::ForOne).unwrap(), Batch::Idle, "a forged datagram arrived");
    }

    /// The multicast socket is not connected (anyone with CAP_NET_ADMIN can send to the group):
    /// its batched receive still names every datagram's sender, so the reader can drop forgeries.
    #[test]
    fn multicast_receive_names_the_sender() {
        let victim = AuditSocket::multicast().unwrap();
        victim.set_receive_timeout(Duration::from_millis(200)).unwrap();
        let forger = AuditSocket::unicast().unwrap();
        let mut forger_addr = SocketAddr::new(0, 0);
        forger.socket.get_address(&mut forger_addr).unwrap();
        // NLMSG_NOOP: every other listener on the group (journald, say) and the kernel, which
        // gets the message too, pass over it; a forged record would land in their logs.
        let forged = super::super::codec::request(libc::NLMSG_NOOP as u16, 0, 7, b"auditrelay test: forged");
        forger.socket.send_to(&forged, &SocketAddr::new(0, 1 << (AUDIT_NLGRP_READLOG - 1)), 0).unwrap();
        let mut batch = BatchBuffers::new(64);
        // The group also carries whatever the machine audits meanwhile: look for ours.
        for _ in 0..20 {
            let Batch::Received(n) = batch.receive(&victim, Wait::ForOne).unwrap() else { continue };
            if let Some(i) = (0..n).find(|&i| batch.get(i).0 == forged.as_slice()) {
                assert_eq!(batch.sender(i), forger_addr.port_number(), "the forger's port is named");
                return;
            }
        }
        panic!("the datagram sent to the group never arrived");
    }
}
