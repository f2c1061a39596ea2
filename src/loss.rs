//! In-band loss notices: every way the pipeline knows it lost audit data becomes a line in the
//! output stream, next to the events, so a consumer sees loss where it happened instead of only in
//! a log file on the host.
//!
//! Who raises what:
//! - [`LossNotice::SerialGap`]: the reassembler, when a serial stays missing after the reorder
//!   window (socket-level loss: ENOBUFS, or records dropped after serials were assigned);
//! - [`LossNotice::KernelLost`]: the netlink status poller, when the kernel's `lost` counter grows
//!   (backlog overflow consumes no serial, so this is its only witness; counts records);
//! - [`LossNotice::SocketOverrun`]: the netlink reader on ENOBUFS;
//! - [`LossNotice::ChannelFull`]: the netlink reader when the bounded hand-off channel was full;
//! - [`LossNotice::Truncated`]: the netlink reader for datagrams cut by MSG_TRUNC.
//!
//! Invariant: counts are never estimated from untrusted arithmetic (a duplicate or wrapped serial
//! must not become "billions lost"); a notice states only what was observed.

/// One observed loss. Serialized by the formatters as its own line (see docs/schema.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossNotice {
    /// Serials `first..=last` (wrapping: `last` may be below `first`) never arrived.
    SerialGap { first: u32, last: u32, count: u64 },
    /// The kernel's `lost` counter grew by `records`; `kernel_total` is its new value.
    KernelLost { records: u64, kernel_total: u32 },
    /// Datagrams dropped because the hand-off channel to the parser was full.
    ChannelFull { datagrams: u64 },
    /// recv() reported ENOBUFS `count` times: the socket buffer overflowed, records were lost.
    SocketOverrun { count: u64 },
    /// Datagrams truncated by the kernel (MSG_TRUNC); their records are incomplete or lost.
    Truncated { datagrams: u64 },
}

impl LossNotice {
    /// The `"kind"` of the JSON line's `"loss"` object: a stable snake_case name per kind.
    pub fn kind(&self) -> &'static str {
        match self {
            LossNotice::SerialGap { .. } => "serial_gap",
            LossNotice::KernelLost { .. } => "kernel_lost",
            LossNotice::ChannelFull { .. } => "channel_full",
            LossNotice::SocketOverrun { .. } => "socket_overrun",
            LossNotice::Truncated { .. } => "truncated",
        }
    }

    /// The numeric members of the `"loss"` object after `"kind"`, in order.
    pub fn members(&self) -> Vec<(&'static str, u64)> {
        match *self {
            LossNotice::SerialGap { first, last, count } => {
                vec![("first", u64::from(first)), ("last", u64::from(last)), ("count", count)]
            }
            LossNotice::KernelLost { records, kernel_total } => {
                vec![("records", records), ("kernel_total", u64::from(kernel_total))]
            }
            LossNotice::ChannelFull { datagrams } => vec![("datagrams", datagrams)],
            LossNotice::SocketOverrun { count } => vec![("count", count)],
            LossNotice::Truncated { datagrams } => vec![("datagrams", datagrams)],
        }
    }
}

impl std::fmt::Display for LossNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossNotice::SerialGap { first, last, count } => {
                write!(f, "{count} audit serial(s) missing: {first}..={last}")
            }
            LossNotice::KernelLost { records, kernel_total } => {
                write!(f, "kernel dropped {records} record(s) (lost counter now {kernel_total})")
            }
            LossNotice::ChannelFull { datagrams } => write!(f, "{datagrams} datagram(s) dropped: parser channel full"),
            LossNotice::SocketOverrun { count } => write!(f, "netlink socket overran {count} time(s) (ENOBUFS)"),
            LossNotice::Truncated { datagrams } => write!(f, "{datagrams} datagram(s) truncated (MSG_TRUNC)"),
        }
    }
}
