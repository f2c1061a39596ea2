// Transcribed by hand from linux-audit/audit-userspace lib/uringop_table.h: the 25 entries of
// commit 8e0b82d41daa6c4a549d7e553a1bc1f053853560 plus the four that upstream appended after it
// (fixed_fd_install, ftruncate, bind, listen — the version threathunters-io/laurel vendors as
// src/tbl/uringop_table.h). Numbers are IORING_OP_* from the kernel's include/uapi/linux/io_uring.h.
// libaudit 3.0.9 (Debian's auditctl) has no such table: it cannot express io_uring rules at all.
//! io_uring operations auditctl (3.1 and later) names in `-S` on the io_uring list.
//!
//! Upstream lists only the operations the kernel audits: io_uring/opdef.c marks the rest
//! `audit_skip`, so a rule naming them could never match. Other numbers are still accepted as
//! numbers, as upstream accepts them (`audit_rule_io_uringbyname_data` falls back to strtol).

/// (IORING_OP_* number, name) in upstream's order.
pub const URINGOPS: &[(u32, &str)] = &[
    (9, "sendmsg"),
    (10, "recvmsg"),
    (13, "accept"),
    (16, "connect"),
    (17, "fallocate"),
    (18, "openat"),
    (19, "close"),
    (28, "openat2"),
    (34, "shutdown"),
    (35, "renameat"),
    (36, "unlinkat"),
    (37, "mkdirat"),
    (38, "symlinkat"),
    (39, "linkat"),
    (40, "msg_ring"),
    (41, "fsetxattr"),
    (42, "setxattr"),
    (43, "fgetxattr"),
    (44, "getxattr"),
    (46, "uring_cmd"),
    (48, "sendmsg_zc"),
    (50, "waitid"),
    (51, "futex_wait"),
    (52, "futex_wake"),
    (53, "futex_waitv"),
    (54, "fixed_fd_install"),
    (55, "ftruncate"),
    (56, "bind"),
    (57, "listen"),
];
