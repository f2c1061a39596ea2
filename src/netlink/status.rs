//! `struct audit_status`, owned here because netlink-packet-audit 0.7 knows only 40 of its 44 bytes
//! (it lacks `backlog_wait_time_actual`) and its `is_set_status()` test is wrong.
//!
//! ```text
//! u32 mask, enabled, failure, pid, rate_limit, backlog_limit, lost, backlog,
//!     feature_bitmap (was: version), backlog_wait_time, backlog_wait_time_actual
//! ```
//! Older kernels send a shorter struct; missing trailing fields read as 0. The kernel copies at
//! most its own size from an AUDIT_SET request, so sending all 44 bytes is safe everywhere.

pub const STATUS_LEN: usize = 44;

/// Bits of `mask` in an AUDIT_SET request: which fields to change.
pub mod mask {
    pub const ENABLED: u32 = 0x01;
    pub const FAILURE: u32 = 0x02;
    pub const PID: u32 = 0x04;
    pub const RATE_LIMIT: u32 = 0x08;
    pub const BACKLOG_LIMIT: u32 = 0x10;
    pub const BACKLOG_WAIT_TIME: u32 = 0x20;
    pub const LOST: u32 = 0x40;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStatus {
    pub mask: u32,
    pub enabled: u32,
    pub failure: u32,
    pub pid: u32,
    pub rate_limit: u32,
    pub backlog_limit: u32,
    pub lost: u32,
    pub backlog: u32,
    pub feature_bitmap: u32,
    pub backlog_wait_time: u32,
    pub backlog_wait_time_actual: u32,
}

impl AuditStatus {
    /// Decode a reply payload; `None` if it is too short to hold even the classic 32-byte struct.
    pub fn parse(buf: &[u8]) -> Option<AuditStatus> {
        if buf.len() < 32 {
            return None;
        }
        let word = |i: usize| -> u32 {
            buf.get(i * 4..i * 4 + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes).unwrap_or(0)
        };
        Some(AuditStatus {
            mask: word(0),
            enabled: word(1),
            failure: word(2),
            pid: word(3),
            rate_limit: word(4),
            backlog_limit: word(5),
            lost: word(6),
            backlog: word(7),
            feature_bitmap: word(8),
            backlog_wait_time: word(9),
            backlog_wait_time_actual: word(10),
        })
    }

    pub fn emit(&self) -> [u8; STATUS_LEN] {
        let words = [
            self.mask,
            self.enabled,
            self.failure,
            self.pid,
            self.rate_limit,
            self.backlog_limit,
            self.lost,
            self.backlog,
            self.feature_bitmap,
            self.backlog_wait_time,
            self.backlog_wait_time_actual,
        ];
        let mut out = [0u8; STATUS_LEN];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_44_bytes() {
        let s = AuditStatus {
            mask: 1,
            enabled: 1,
            failure: 1,
            pid: 795,
            rate_limit: 0,
            backlog_limit: 8192,
            lost: 3,
            backlog: 2,
            feature_bitmap: 0x7f,
            backlog_wait_time: 15000,
            backlog_wait_time_actual: 9,
        };
        assert_eq!(AuditStatus::parse(&s.emit()), Some(s));
    }

    #[test]
    fn short_struct_from_older_kernels() {
        let s = AuditStatus { enabled: 1, backlog_limit: 64, ..Default::default() };
        let bytes = s.emit();
        assert_eq!(AuditStatus::parse(&bytes[..32]), Some(s));
        assert_eq!(AuditStatus::parse(&bytes[..31]), None);
    }
}
