//! Config for the netlink side: the socket and reader (`[netlink]`) and the kernel audit settings
//! auditrelay applies at start and restores at exit (`[kernel]`).

use serde::Deserialize;

use super::client::AuditClient;
use super::status::{mask, AuditStatus};
use super::NetlinkError;
use crate::units::{ByteSize, HumanDuration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetlinkConfig {
    /// Socket receive buffer; SO_RCVBUFFORCE is tried first so it may exceed net.core.rmem_max.
    pub receive_buffer: ByteSize,
    /// Datagrams taken per recvmmsg call.
    pub batch: usize,
    /// Bound of the reader → processing channel, in batches (each at most `hand_off_bytes`).
    pub channel_capacity: usize,
    /// Most record bytes the reader hands to processing at once.
    pub hand_off_bytes: ByteSize,
    /// Longest pause after a hand-off, so records gather (one wake-up per interval instead of one
    /// per record; adds at most this much latency). The reader pauses for as long as a hand-off's
    /// worth takes to arrive at the current pace, at most this long (`netlink::reader::pause`).
    /// 0 = hand on at once.
    pub gather: HumanDuration,
    /// How long the reader waits on a full channel before dropping (and counting) batches; after
    /// one such wait it drops at once until processing has room again.
    pub channel_full_timeout: HumanDuration,
    /// How often the kernel's `lost` counter is polled.
    pub lost_poll_interval: HumanDuration,
    /// How much the reader and the processing thread raise their CPU priority (nice −N), as
    /// auditd's `priority_boost`; 0..=20, default 0 (off): at 4 (auditd's default) the flat-out
    /// drain fell from 121-126 k to 105-113 k events/s on the 2-vCPU benchmark VM (the storm got
    /// less CPU) and the highest lossless rate did not move. See `output::priority`.
    pub priority_boost: i32,
}

impl Default for NetlinkConfig {
    fn default() -> Self {
        NetlinkConfig {
            // Kernel memory, used only while the reader is behind. The kernel charges each record
            // its whole buffer (~0.9 KiB for a 150-byte openat record) against twice this value:
            // 64 MiB hold ~140 k records, about 0.4 s of a 64 k events/s storm, where 8 MiB (0.06 s)
            // overflowed whenever the storm and our own threads left the reader short of CPU for a
            // moment (docs/performance.md, "Ninth round").
            receive_buffer: ByteSize(64 << 20),
            batch: 64,
            // 8 × 256 KiB bounds the records waiting for processing at 2 MiB of user memory (the
            // socket buffer in front of them holds far more, in kernel memory).
            channel_capacity: 8,
            hand_off_bytes: ByteSize(256 << 10),
            gather: HumanDuration(std::time::Duration::from_millis(50)),
            channel_full_timeout: HumanDuration(std::time::Duration::from_secs(2)),
            lost_poll_interval: HumanDuration(std::time::Duration::from_secs(5)),
            priority_boost: 0,
        }
    }
}

/// Kernel audit settings. `None` (the key not written in the config) leaves the kernel's value
/// alone, so a rule file's `-b`/`-f`/`-r`/`--backlog_wait_time` stays in force. The one exception
/// is registration: a daemon receives records only while auditing is enabled, so with `enabled`
/// absent and the kernel at `enabled=0`, registration sets it to 1 (see [`KernelConfig::enabled_for_registration`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// 0 or 1. (2, which locks the configuration until reboot, belongs to `[rules] immutable`.)
    pub enabled: Option<u32>,
    pub backlog_limit: Option<u32>,
    /// In jiffies, as auditctl --backlog_wait_time takes it.
    pub backlog_wait_time: Option<u32>,
    /// Records per second; 0 = no limit.
    pub rate_limit: Option<u32>,
    /// 0 silent, 1 printk, 2 panic (only with `allow_panic = true`).
    pub failure: Option<u32>,
    /// Explicit opt-in for `failure = 2` and for `-f 2` in rule files.
    pub allow_panic: bool,
    /// Put every setting we changed back as it was when we exit.
    pub restore_on_exit: bool,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            enabled: None,
            backlog_limit: None,
            backlog_wait_time: None,
            rate_limit: None,
            failure: None,
            allow_panic: false,
            restore_on_exit: true,
        }
    }
}

impl KernelConfig {
    /// Reasons this config must not be applied, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = self.enabled {
            if e > 1 {
                return Err(format!(
                    "kernel.enabled = {e}: only 0 or 1 (locking with 2 is `[rules] immutable = true`)"
                ));
            }
        }
        match self.failure {
            Some(f) if f > 2 => return Err(format!("kernel.failure = {f}: must be 0, 1 or 2")),
            Some(2) if !self.allow_panic => {
                return Err(
                    "kernel.failure = 2 panics the machine on audit failure: set kernel.allow_panic = true to mean it"
                        .into(),
                )
            }
            _ => {}
        }
        if self.backlog_limit == Some(0) {
            return Err("kernel.backlog_limit = 0: must be at least 1".into());
        }
        Ok(())
    }

    /// The `enabled` value registration must request given the kernel's `current` one, or `None`
    /// to send the pid alone: the configured value when written (and the kernel is not locked),
    /// else 1 only when auditing is off (a daemon of a disabled kernel receives no records); a
    /// kernel already enabled is left as it is. Locked (2): the kernel accepts only the pid.
    pub fn enabled_for_registration(&self, current: u32) -> Option<u32> {
        match (self.enabled, current) {
            (_, 2) => None,
            (Some(e), _) => Some(e),
            (None, 0) => Some(1),
            (None, _) => None,
        }
    }

    /// The status bits of the keys written in the config.
    pub fn written_mask(&self) -> u32 {
        [
            (mask::ENABLED, self.enabled),
            (mask::BACKLOG_LIMIT, self.backlog_limit),
            (mask::BACKLOG_WAIT_TIME, self.backlog_wait_time),
            (mask::RATE_LIMIT, self.rate_limit),
            (mask::FAILURE, self.failure),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .fold(0, |m, (bit, _)| m | bit)
    }

    /// The AUDIT_SET request for the settings that differ from `current`.
    pub fn changes(&self, current: &AuditStatus) -> AuditStatus {
        let mut want = AuditStatus::default();
        let mut set = |bit: u32, wanted: Option<u32>, now: u32, slot: &mut u32| {
            if let Some(v) = wanted {
                if v != now {
                    want.mask |= bit;
                    *slot = v;
                }
            }
        };
        let (mut e, mut b, mut w, mut r, mut f) = (0, 0, 0, 0, 0);
        set(mask::ENABLED, self.enabled, current.enabled, &mut e);
        set(mask::BACKLOG_LIMIT, self.backlog_limit, current.backlog_limit, &mut b);
        set(mask::BACKLOG_WAIT_TIME, self.backlog_wait_time, current.backlog_wait_time, &mut w);
        set(mask::RATE_LIMIT, self.rate_limit, current.rate_limit, &mut r);
        set(mask::FAILURE, self.failure, current.failure, &mut f);
        AuditStatus { enabled: e, backlog_limit: b, backlog_wait_time: w, rate_limit: r, failure: f, ..want }
    }
}

/// The request that undoes `applied`, given the status from before it was applied.
pub fn restore_of(applied: &AuditStatus, before: &AuditStatus) -> AuditStatus {
    AuditStatus {
        mask: applied.mask
            & (mask::ENABLED | mask::BACKLOG_LIMIT | mask::BACKLOG_WAIT_TIME | mask::RATE_LIMIT | mask::FAILURE),
        enabled: before.enabled,
        backlog_limit: before.backlog_limit,
        backlog_wait_time: before.backlog_wait_time,
        rate_limit: before.rate_limit,
        failure: before.failure,
        ..Default::default()
    }
}

/// Apply `config` against the kernel; returns what was changed (for [`restore_of`]).
pub fn apply(
    client: &mut AuditClient,
    config: &KernelConfig,
    before: &AuditStatus,
) -> Result<AuditStatus, NetlinkError> {
    let change = config.changes(before);
    if change.mask != 0 {
        client.set_status(&change)?;
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_defaults() -> AuditStatus {
        AuditStatus { enabled: 0, failure: 1, backlog_limit: 64, backlog_wait_time: 15000, ..Default::default() }
    }

    #[test]
    fn only_differences_are_requested() {
        let c = KernelConfig { enabled: Some(1), backlog_limit: Some(8192), ..Default::default() };
        let change = c.changes(&kernel_defaults());
        assert_eq!(change.mask, mask::ENABLED | mask::BACKLOG_LIMIT);
        assert_eq!((change.enabled, change.backlog_limit), (1, 8192));
        let same = AuditStatus { enabled: 1, backlog_limit: 8192, ..kernel_defaults() };
        assert_eq!(c.changes(&same).mask, 0);
    }

    /// Regression (issue 9): `enabled = 1` and `backlog_limit = 8192` were applied when the config
    /// left them out, after the rules, so a rule file's `-b 32768` was put back to 8192.
    #[test]
    fn keys_left_out_are_not_applied() {
        let c: KernelConfig = toml::from_str("").unwrap();
        assert_eq!(c.changes(&kernel_defaults()).mask, 0);
        let after_rules = AuditStatus { backlog_limit: 32768, ..kernel_defaults() };
        assert_eq!(c.changes(&after_rules).mask, 0);
        let c: KernelConfig = toml::from_str("backlog_limit = 8192\n").unwrap();
        assert_eq!(c.changes(&after_rules).mask, mask::BACKLOG_LIMIT);
        assert_eq!(c.written_mask(), mask::BACKLOG_LIMIT);
        assert_eq!(KernelConfig::default().written_mask(), 0);
    }

    #[test]
    fn registration_enables_only_a_disabled_kernel() {
        let absent = KernelConfig::default();
        assert_eq!(absent.enabled_for_registration(0), Some(1), "a disabled kernel sends no records");
        assert_eq!(absent.enabled_for_registration(1), None);
        assert_eq!(absent.enabled_for_registration(2), None, "locked: pid alone");
        let off = KernelConfig { enabled: Some(0), ..Default::default() };
        assert_eq!(off.enabled_for_registration(1), Some(0));
        assert_eq!(off.enabled_for_registration(2), None);
    }

    #[test]
    fn restore_puts_back_what_was_changed() {
        let before = kernel_defaults();
        let c =
            KernelConfig { enabled: Some(1), backlog_limit: Some(8192), rate_limit: Some(100), ..Default::default() };
        let change = c.changes(&before);
        let undo = restore_of(&change, &before);
        assert_eq!(undo.mask, mask::ENABLED | mask::BACKLOG_LIMIT | mask::RATE_LIMIT);
        assert_eq!((undo.enabled, undo.backlog_limit, undo.rate_limit), (0, 64, 0));
    }

    #[test]
    fn panic_and_lock_need_opt_in() {
        let panic = KernelConfig { failure: Some(2), ..Default::default() };
        assert!(panic.validate().unwrap_err().contains("allow_panic"));
        assert!(KernelConfig { allow_panic: true, ..panic }.validate().is_ok());
        assert!(KernelConfig { enabled: Some(2), ..Default::default() }.validate().unwrap_err().contains("immutable"));
        assert!(KernelConfig { backlog_limit: Some(0), ..Default::default() }.validate().is_err());
    }
}
