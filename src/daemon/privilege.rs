//! Least privilege: `run` starts as root with every capability and keeps only what the running
//! daemon uses.
//!
//! Kept: `CAP_AUDIT_CONTROL` (every audit netlink request but receiving needs it: registration,
//! `AUDIT_GET` for status and the `lost` poller, rule reloads, the restore and unregistration at
//! exit) and, with `--multicast` only, `CAP_AUDIT_READ`. Everything else goes from the
//! effective, permitted, inheritable and ambient sets, from the bounding set when we may change it
//! (`CAP_SETPCAP`; under the systemd unit its `CapabilityBoundingSet=` already did), and
//! `no_new_privs` is set so no exec could gain any back.
//!
//! When: in [`super::run`] right after the netlink socket got its receive buffer
//! (`SO_RCVBUFFORCE` is the one step that needs `CAP_NET_ADMIN`) and the main thread raised its
//! priority (`[netlink] priority_boost`, the one step that needs `CAP_SYS_NICE`), and before any
//! thread exists.
//! Capabilities are per thread (capset(2) changes the calling thread only, and no thread can change
//! another's), and a new thread copies its creator's: dropping before the output runtime, the
//! spool and sink threads, the reader, the poller and the rules thread start is the only way
//! every one of them runs with the reduced set. A thread started before `run` keeps what it had.
//!
//! What the rest of set-up then does as root without `CAP_DAC_OVERRIDE`/`CAP_DAC_READ_SEARCH`/
//! `CAP_FOWNER`: it reads and writes files by their owner bits, so root's own files work as
//! always (spool, cursors, rules cache, file outputs, TLS keys owned by root, config and rule
//! files owned by root, which [`crate::rules`] insists on anyway). What no longer works: a file or
//! directory root does not own and whose bits do not let root in (a rule file `0600` owned by
//! another user, a TLS key readable by its group only, a spool under another user's `0700`
//! directory); without `CAP_SYS_RESOURCE` the spool cannot use the filesystem's root-reserved
//! blocks; without `CAP_NET_BIND_SERVICE` nothing can listen below port 1024.

use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading the {set:?} capability set: {source}")]
    Read { set: CapSet, source: caps::errors::CapsError },
    #[error("dropping capabilities from the {set:?} set: {source}")]
    Drop { set: CapSet, source: caps::errors::CapsError },
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(#[source] nix::Error),
}

/// What the running daemon needs (module docs).
pub fn needed(multicast: bool) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    keep.insert(Capability::CAP_AUDIT_CONTROL);
    if multicast {
        keep.insert(Capability::CAP_AUDIT_READ);
    }
    keep
}

/// What [`drop_to`] left.
#[derive(Debug)]
pub struct Dropped {
    /// The effective and permitted sets now (what was asked for, as far as we had it).
    pub kept: CapsHashSet,
    /// The bounding set was reduced to `kept`; `false`: not allowed to (no `CAP_SETPCAP`).
    pub bounding_dropped: bool,
}

fn read(set: CapSet) -> Result<CapsHashSet, PrivilegeError> {
    caps::read(None, set).map_err(|source| PrivilegeError::Read { set, source })
}

/// Reduce this thread (and every thread it starts later) to `want` ∩ what it has now.
pub fn drop_to(want: &CapsHashSet) -> Result<Dropped, PrivilegeError> {
    let permitted = read(CapSet::Permitted)?;
    let kept: CapsHashSet = want.intersection(&permitted).copied().collect();
    let drop_err = |set| move |source| PrivilegeError::Drop { set, source };
    // The bounding set first: changing it needs CAP_SETPCAP in the effective set, gone below.
    let may_bound = read(CapSet::Effective)?.contains(&Capability::CAP_SETPCAP);
    if may_bound {
        for cap in read(CapSet::Bounding)?.difference(&kept) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(drop_err(CapSet::Bounding))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(drop_err(CapSet::Ambient))?;
    caps::clear(None, CapSet::Inheritable).map_err(drop_err(CapSet::Inheritable))?;
    // Effective before permitted: the kernel refuses an effective set wider than the permitted.
    caps::set(None, CapSet::Effective, &kept).map_err(drop_err(CapSet::Effective))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(drop_err(CapSet::Permitted))?;
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)?;
    Ok(Dropped { kept: read(CapSet::Effective)?, bounding_dropped: may_bound })
}

/// [`drop_to`] what [`needed`] names, saying what is kept. A failure is logged and the daemon runs
/// on: least privilege limits what a compromised daemon could do, while a daemon that refused to
/// start would leave the host unaudited.
pub fn drop_and_log(multicast: bool) {
    match drop_to(&needed(multicast)) {
        Ok(d) => log::info!(
            "capabilities: kept {}{}",
            names(&d.kept),
            if d.bounding_dropped {
                "; bounding set reduced to the same"
            } else {
                "; bounding set left (no CAP_SETPCAP)"
            }
        ),
        Err(e) => log::warn!("capabilities not dropped, running with what it was started with: {e}"),
    }
}

/// The names in `set`, sorted, for log lines.
pub fn names(set: &CapsHashSet) -> String {
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_alone_keeps_audit_read() {
        assert_eq!(names(&needed(false)), "CAP_AUDIT_CONTROL");
        assert_eq!(names(&needed(true)), "CAP_AUDIT_CONTROL CAP_AUDIT_READ");
        assert_eq!(names(&CapsHashSet::new()), "none");
    }

    /// In a thread of its own (capabilities are per thread, so the test process keeps its own):
    /// after the drop the thread holds exactly what it asked for that it had, and nothing returns.
    #[test]
    fn a_thread_keeps_only_what_it_asks_for() {
        let result = std::thread::spawn(|| {
            let before = read(CapSet::Permitted).unwrap();
            let dropped = drop_to(&needed(false)).unwrap();
            let expected: CapsHashSet = needed(false).intersection(&before).copied().collect();
            assert_eq!(dropped.kept, expected);
            assert_eq!(read(CapSet::Permitted).unwrap(), expected);
            assert!(read(CapSet::Inheritable).unwrap().is_empty());
            if dropped.bounding_dropped {
                assert_eq!(read(CapSet::Bounding).unwrap(), expected);
            }
            // A thread started afterwards inherits the reduced sets.
            let child = std::thread::spawn(|| read(CapSet::Effective).unwrap()).join().unwrap();
            assert_eq!(child, expected);
            assert!(caps::raise(None, CapSet::Effective, Capability::CAP_DAC_OVERRIDE).is_err(), "nothing comes back");
        })
        .join();
        assert!(result.is_ok(), "the dropping thread panicked (see above)");
    }
}
