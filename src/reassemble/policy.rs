//! When does a record end its event? audit-userspace's `audit_is_last_record` rule
//! (common/common.c), minus PROCTITLE.
//!
//! auditd treats PROCTITLE as a last record; the kernel, however, always sends EOE after it for
//! syscall events, and a PROCTITLE-ends rule would split off that EOE as a late event. So here only
//! EOE and the types that are whole events by themselves end an event:
//! - 1005 USER and 1007..=1299 (user-space messages, daemon records) — note LOGIN (1006) is *not*
//!   standalone: the kernel follows it with SYSCALL, PROCTITLE and EOE;
//! - 1406..=1419 (NetLabel MAC_UNLBL_ALLOW ..= MAC_CALIPSO_DEL);
//! - 1700 and above (kernel anomalies such as ANOM_ABEND, integrity, KERNEL, and the user-space
//!   2100..=2999 ranges).
//!
//! Everything else waits for EOE, the event timeout or a bound.

use crate::record::MessageType;

/// True when a record of this type completes its event.
pub fn ends_event(kind: MessageType) -> bool {
    let t = kind.0;
    t == MessageType::EOE.0
        || t == MessageType::USER.0
        || (t > MessageType::LOGIN.0 && t < 1300)
        || (MessageType::MAC_UNLBL_ALLOW.0..=MessageType::MAC_CALIPSO_DEL.0).contains(&t)
        || t >= 1700
}

/// True for a type that ends its event ([`ends_event`]) yet may be the first of a kernel event
/// that goes on with SYSCALL … EOE: every such type except EOE and auditd's own DAEMON_* records
/// (1200..=1299, written by auditd, never by the kernel). A user-space message sent by a process
/// inside an audited syscall, ANOM_PROMISCUOUS from an audited ioctl, a NetLabel change over
/// netlink: the kernel stamps them with the syscall's serial and logs the syscall at its exit.
pub fn may_carry_syscall_context(kind: MessageType) -> bool {
    ends_event(kind) && kind != MessageType::EOE && kernel_serial(kind)
}

/// True when the record's serial comes from the kernel's counter. auditd writes its own DAEMON_*
/// records (1200..=1299) straight to the log with serials of its own; feeding those to gap
/// detection would report phantom gaps or restarts during replay.
pub fn kernel_serial(kind: MessageType) -> bool {
    !(1200..=1299).contains(&kind.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_audit_is_last_record_without_proctitle() {
        for t in [1320, 1005, 1100, 1112, 1123, 1130, 1299, 1406, 1419, 1701, 2000, 2100, 2999] {
            assert!(ends_event(MessageType(t)), "{t}");
        }
        for t in [1006, 1300, 1302, 1305, 1309, 1327, 1334, 1400, 1405, 1420, 1699] {
            assert!(!ends_event(MessageType(t)), "{t}");
        }
    }

    #[test]
    fn standalone_types_but_eoe_and_daemon_records_may_carry_syscall_context() {
        for t in [1005, 1100, 1112, 1130, 1406, 1700, 1701, 2000, 2100, 2500] {
            assert!(may_carry_syscall_context(MessageType(t)), "{t}");
        }
        for t in [1320, 1200, 1203, 1299, 1300, 1302, 1006] {
            assert!(!may_carry_syscall_context(MessageType(t)), "{t}");
        }
    }

    #[test]
    fn daemon_records_have_no_kernel_serial() {
        assert!(!kernel_serial(MessageType::DAEMON_START));
        assert!(!kernel_serial(MessageType(1299)));
        assert!(kernel_serial(MessageType::USER_LOGIN));
        assert!(kernel_serial(MessageType::SYSCALL));
    }
}
