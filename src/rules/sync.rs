//! Make the kernel's rule table equal to a compiled [`RuleSet`]: diff, apply, verify, roll back.
//!
//! Atomicity is built from the only operations the kernel offers (append, prepend, delete one
//! rule): everything is compiled first (a set with any error never reaches here), the plan is
//! computed against the rules the kernel lists now, and applied; the result is listed back and
//! must equal the desired set byte for byte. If the kernel refuses an operation midway, or the
//! listing differs, the table is driven back to the rules that were there before (same planner,
//! other direction) and the error is returned — the caller sees "changed nothing" or an error
//! that says the rollback failed too.
//!
//! Plan per filter list: keep the longest run of desired rules that already appears in the
//! kernel in the same relative order, delete every other current rule, prepend the desired rules
//! before that run and append the ones after it. Deleting first means a rule that only moves
//! cannot collide with itself (the kernel refuses duplicates with EEXIST). A rule with syscall
//! class bits the kernel expands from its own tables (`-S 2040`, see
//! [`RuleData::has_unmodelled_classes`]) never equals its listing, so it is deleted and added again
//! on every load; the verification matches it with [`RuleData::lists_as`].
//!
//! Status settings from control lines are applied after the rules verified: `-b`, `-r`,
//! `--backlog_wait_time`, `-e 0|1`, `-f 0|1` always; `-f 2` only with `allow_panic`; `-e 2` only with
//! `immutable`, and last of all, because it locks the table until reboot. `--loginuid-immutable`
//! is never applied (irreversible until reboot and not needed by auditrelay): reported as skipped.

use std::fmt::Write as _;

use crate::netlink::client::AuditClient;
use crate::netlink::status::{mask, AuditStatus};
use crate::netlink::NetlinkError;
use crate::rules::compile::{RuleSet, Settings};
use crate::rules::data::{self, DecodeError, RuleData};
use crate::rules::print;

/// The three rule operations of the kernel, so the planner can be tested without one.
pub trait RuleTable {
    fn list(&mut self) -> Result<Vec<Vec<u8>>, NetlinkError>;
    fn add(&mut self, rule: &[u8]) -> Result<(), NetlinkError>;
    fn delete(&mut self, rule: &[u8]) -> Result<(), NetlinkError>;
}

impl RuleTable for AuditClient {
    fn list(&mut self) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.list_rules()
    }
    fn add(&mut self, rule: &[u8]) -> Result<(), NetlinkError> {
        self.add_rule(rule)
    }
    fn delete(&mut self, rule: &[u8]) -> Result<(), NetlinkError> {
        self.delete_rule(rule)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("listing the kernel's rules: {0}")]
    List(#[source] NetlinkError),
    #[error("kernel rule {index} cannot be decoded: {source}")]
    Decode { index: usize, source: DecodeError },
    #[error("the audit rules are locked until reboot (enabled=2); nothing changed")]
    Locked,
    #[error("kernel refused {what} `{rule}`: {source}; rolled back to the previous rules")]
    Refused { what: &'static str, rule: String, source: NetlinkError },
    #[error("the kernel lists other rules than were loaded; rolled back to the previous rules:\n--- expected\n{expected}--- listed\n{listed}")]
    Verify { expected: String, listed: String },
    #[error("{first}; and rolling back failed too: {rollback}")]
    RollbackFailed { first: Box<SyncError>, rollback: Box<SyncError> },
    #[error("setting audit status: {0}")]
    Status(#[source] NetlinkError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Delete(RuleData),
    Prepend(RuleData),
    Append(RuleData),
}

/// Rules the kernel lists now, decoded.
pub fn current_rules(table: &mut dyn RuleTable) -> Result<Vec<RuleData>, SyncError> {
    table
        .list()
        .map_err(SyncError::List)?
        .iter()
        .enumerate()
        .map(|(index, b)| RuleData::decode(b).map_err(|source| SyncError::Decode { index, source }))
        .collect()
}

fn by_list(rules: &[RuleData]) -> Vec<Vec<RuleData>> {
    let mut lists = vec![Vec::new(); 8];
    for r in rules {
        lists[(r.list() & data::FILTER_MASK) as usize].push(r.kernel_normalise());
    }
    lists
}

/// Length of the longest prefix of `want` that is a subsequence of `have`.
fn subsequence_prefix(want: &[RuleData], have: &[RuleData]) -> usize {
    let mut n = 0;
    for h in have {
        if n < want.len() && want[n] == *h {
            n += 1;
        }
    }
    n
}

/// Steps that turn `current` into `desired` (both in kernel listing order).
pub fn plan(current: &[RuleData], desired: &[RuleData]) -> Vec<Step> {
    let (cur, want) = (by_list(current), by_list(desired));
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for (have, want) in cur.iter().zip(want.iter()) {
        // Best run want[start..start+len] kept in place.
        let (mut start, mut len) = (0, 0);
        for s in 0..want.len() {
            let l = subsequence_prefix(&want[s..], have);
            if l > len {
                (start, len) = (s, l);
            }
        }
        let kept = &want[start..start + len];
        let mut k = 0;
        for h in have {
            if k < kept.len() && kept[k] == *h {
                k += 1;
            } else {
                deletes.push(Step::Delete(h.clone()));
            }
        }
        for r in want[..start].iter().rev() {
            adds.push(Step::Prepend(r.clone()));
        }
        for r in &want[start + len..] {
            adds.push(Step::Append(r.clone()));
        }
    }
    deletes.extend(adds);
    deletes
}

fn apply_steps(table: &mut dyn RuleTable, steps: &[Step]) -> Result<(), SyncError> {
    for s in steps {
        let (what, rule, res) = match s {
            Step::Delete(r) => ("deleting", r, table.delete(&r.encode())),
            Step::Append(r) => ("adding", r, table.add(&r.encode())),
            Step::Prepend(r) => {
                let mut p = r.clone();
                p.flags |= data::FILTER_PREPEND;
                ("prepending", r, table.add(&p.encode()))
            }
        };
        res.map_err(|source| SyncError::Refused { what, rule: rule.to_string(), source })?;
    }
    Ok(())
}

/// Drive the table to `desired`, verify, and on any failure drive it back to `before`.
pub fn sync_rules(
    table: &mut dyn RuleTable,
    before: &[RuleData],
    desired: &[RuleData],
) -> Result<Vec<Step>, SyncError> {
    let steps = plan(before, desired);
    let outcome = apply_steps(table, &steps).and_then(|()| {
        let listed = current_rules(table)?;
        let want: Vec<RuleData> = by_list(desired).into_iter().flatten().collect();
        if listed.len() == want.len() && want.iter().zip(listed.iter()).all(|(w, l)| w.lists_as(l)) {
            Ok(())
        } else {
            Err(SyncError::Verify { expected: print::listing(&want), listed: print::listing(&listed) })
        }
    });
    match outcome {
        Ok(()) => Ok(steps),
        Err(first) => {
            let back = current_rules(table).and_then(|now| apply_steps(table, &plan(&now, before)));
            match back {
                Ok(()) => Err(first),
                Err(rollback) => {
                    Err(SyncError::RollbackFailed { first: Box::new(first), rollback: Box::new(rollback) })
                }
            }
        }
    }
}

/// Who may apply the two dangerous control lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `-e 2` (`[rules] immutable` or `rules load --immutable`).
    pub immutable: bool,
    /// `-f 2` (`[kernel] allow_panic`).
    pub allow_panic: bool,
}

/// Status changes the set asks for: (to apply now, `-e 2` to apply last, skipped with reasons).
pub fn status_changes(settings: &Settings, perms: Permissions) -> (AuditStatus, Option<AuditStatus>, Vec<String>) {
    let mut s = AuditStatus::default();
    let mut skipped = Vec::new();
    let mut lock = None;
    if let Some(n) = settings.backlog_limit {
        s.mask |= mask::BACKLOG_LIMIT;
        s.backlog_limit = n;
    }
    if let Some(n) = settings.rate_limit {
        s.mask |= mask::RATE_LIMIT;
        s.rate_limit = n;
    }
    if let Some(n) = settings.backlog_wait_time {
        s.mask |= mask::BACKLOG_WAIT_TIME;
        s.backlog_wait_time = n;
    }
    match settings.failure {
        Some(2) if !perms.allow_panic => {
            skipped.push("-f 2 (panic on audit failure): skipped, needs [kernel] allow_panic = true".to_string())
        }
        Some(n) => {
            s.mask |= mask::FAILURE;
            s.failure = n;
        }
        None => {}
    }
    match settings.enabled {
        Some(2) if perms.immutable => {
            lock = Some(AuditStatus { mask: mask::ENABLED, enabled: 2, ..Default::default() })
        }
        Some(2) => skipped
            .push("-e 2 (lock rules until reboot): skipped, needs [rules] immutable = true or --immutable".to_string()),
        Some(n) => {
            s.mask |= mask::ENABLED;
            s.enabled = n;
        }
        None => {}
    }
    if settings.loginuid_immutable {
        skipped.push(
            "--loginuid-immutable: skipped, auditrelay does not lock loginuid (irreversible until reboot)".to_string(),
        );
    }
    (s, lock, skipped)
}

/// Human-readable plan, one line per step.
pub fn describe(steps: &[Step], unchanged: usize) -> String {
    let mut out = String::new();
    for s in steps {
        let _ = match s {
            Step::Delete(r) => writeln!(out, "- {r}"),
            Step::Append(r) => writeln!(out, "+ {r}"),
            Step::Prepend(r) => writeln!(out, "+ {r}  (at the head of its list)"),
        };
    }
    let _ = writeln!(
        out,
        "{} to delete, {} to add, {unchanged} unchanged",
        steps.iter().filter(|s| matches!(s, Step::Delete(_))).count(),
        steps.iter().filter(|s| !matches!(s, Step::Delete(_))).count()
    );
    out
}

/// Result of a load, for the caller to print.
#[derive(Debug)]
pub struct LoadReport {
    pub steps: Vec<Step>,
    pub unchanged: usize,
    pub status_applied: AuditStatus,
    pub locked: bool,
    pub skipped: Vec<String>,
}

/// `rules load`: rules first (atomic), then status settings, then `-e 2` if allowed.
pub fn load(client: &mut AuditClient, set: &RuleSet, perms: Permissions) -> Result<LoadReport, SyncError> {
    load_with(client, set, &[], perms)
}

/// auditrelay's own `-A never,exit -S all -F pid=<pid> -F exe=<exe>`: the first exit rule, so no
/// rule ever audits the daemon's own syscalls (writing events would otherwise create events,
/// without end). The exe ties it to the daemon's binary: a rule left behind by a daemon killed
/// with -9 cannot hide an unrelated process that later gets the same pid (the kernel compares the
/// task's executable with the file at `exe`). `exe` empty gives the pid-only form older versions
/// loaded (recognised as stale, never loaded).
pub fn self_exclusion(pid: u32, exe: &[u8]) -> RuleData {
    let mut r = RuleData::new(data::FILTER_EXIT, data::ACTION_NEVER);
    r.set_all_syscalls();
    r.fields.push(data::FieldEntry::num(data::F_PID, data::OP_EQUAL, pid));
    if !exe.is_empty() {
        r.fields.push(data::FieldEntry::string(data::F_EXE, data::OP_EQUAL, exe));
    }
    r.kernel_normalise()
}

/// This process's executable as the kernel names it (`/proc/self/exe`), for [`self_exclusion`].
pub fn own_exe() -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let bytes = exe.as_os_str().as_bytes();
    // Replaced on disk (package upgrade) since we started: the kernel's exe match follows the path.
    Ok(bytes.strip_suffix(b" (deleted)").unwrap_or(bytes).to_vec())
}

/// `run`: the self-exclusion rule first, then the rule set, atomically as [`load`].
pub fn load_for_daemon(
    client: &mut AuditClient,
    set: &RuleSet,
    pid: u32,
    exe: &[u8],
    perms: Permissions,
) -> Result<LoadReport, SyncError> {
    load_with(client, set, &[self_exclusion(pid, exe)], perms)
}

/// The pid and exe of a rule that is exactly a [`self_exclusion`] rule, in the current form or in
/// the pid-only form of older versions (exe empty); `None` for any other rule.
pub fn self_exclusion_of(rule: &RuleData) -> Option<(u32, Vec<u8>)> {
    let (pid, exe) = match rule.fields.as_slice() {
        [p] => (p, None),
        [p, e] if e.field == data::F_EXE && e.op == data::OP_EQUAL => (p, e.text.clone()),
        _ => return None,
    };
    let is_pid = pid.field == data::F_PID && pid.op == data::OP_EQUAL && pid.text.is_none() && pid.value != 0;
    let exe = exe.unwrap_or_default();
    (is_pid && rule.same_rule(&self_exclusion(pid.value, &exe))).then_some((pid.value, exe))
}

/// The pid of a [`self_exclusion_of`] rule.
pub fn self_exclusion_pid(rule: &RuleData) -> Option<u32> {
    self_exclusion_of(rule).map(|(pid, _)| pid)
}

/// Whether `pid` is a running process (a zombie is not: it runs nothing and never will again).
pub fn pid_is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) S ...`: comm may contain spaces and parentheses, the state follows the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// Whether a self-exclusion rule for (`pid`, `exe`) belongs to a daemon that still runs: `pid`
/// runs and runs `exe` (for the pid-only form, `our_exe`: a pid-only rule of a live auditrelay).
pub fn self_exclusion_is_live(pid: u32, exe: &[u8], our_exe: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if !pid_is_running(pid) {
        return false;
    }
    let Ok(running) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return false };
    let running = running.as_os_str().as_bytes();
    let running = running.strip_suffix(b" (deleted)").unwrap_or(running);
    running == if exe.is_empty() { our_exe } else { exe }
}

/// Self-exclusion rules left behind by a daemon that died without removing its own (kill -9):
/// `live(pid, exe)` says no. Such a rule is not merely useless: in the pid-only form of older
/// versions, once the pid is reused, it silently exempts an unrelated process from every exit
/// rule. Loading the daemon's set deletes it (it is not in the desired set); this is for the rules
/// the daemon restores at exit, which must not bring it back. Returns `rules` without those, and
/// the stale pids.
pub fn without_stale_self_exclusions(
    rules: Vec<Vec<u8>>,
    live: impl Fn(u32, &[u8]) -> bool,
) -> (Vec<Vec<u8>>, Vec<u32>) {
    let mut stale = Vec::new();
    let kept = rules
        .into_iter()
        .filter(|raw| match RuleData::decode(raw).ok().as_ref().and_then(self_exclusion_of) {
            Some((pid, exe)) if !live(pid, &exe) => {
                stale.push(pid);
                false
            }
            _ => true,
        })
        .collect();
    (kept, stale)
}

/// `[rules] manage = false`: put the self-exclusion rule at the head of the exit list with one
/// prepend, touching no other rule. Already listed: nothing to do (the kernel does not refuse a
/// duplicate of a rule with an `exe` field, so the listing is checked first).
pub fn add_self_exclusion(table: &mut dyn RuleTable, pid: u32, exe: &[u8]) -> Result<(), SyncError> {
    let rule = self_exclusion(pid, exe);
    if current_rules(table)?.iter().any(|r| r.same_rule(&rule)) {
        return Ok(());
    }
    let mut head = rule.clone();
    head.flags |= data::FILTER_PREPEND;
    match table.add(&head.encode()) {
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        other => other.map_err(|source| SyncError::Refused { what: "prepending", rule: rule.to_string(), source }),
    }
}

/// At daemon exit: remove the self-exclusion rule (the rest of the set stays loaded).
pub fn remove_self_exclusion(table: &mut dyn RuleTable, pid: u32, exe: &[u8]) -> Result<(), SyncError> {
    let rule = self_exclusion(pid, exe);
    table.delete(&rule.encode()).map_err(|source| SyncError::Refused {
        what: "deleting",
        rule: rule.to_string(),
        source,
    })
}

fn load_with(
    client: &mut AuditClient,
    set: &RuleSet,
    first: &[RuleData],
    perms: Permissions,
) -> Result<LoadReport, SyncError> {
    let status = client.status().map_err(SyncError::Status)?;
    if status.enabled == 2 {
        return Err(SyncError::Locked);
    }
    let before = current_rules(client)?;
    let desired: Vec<RuleData> = first.iter().chain(set.desired.iter()).cloned().collect();
    let steps = sync_rules(client, &before, &desired)?;
    let unchanged = desired.len() - steps.iter().filter(|s| !matches!(s, Step::Delete(_))).count();
    let (change, lock, skipped) = status_changes(&set.settings, perms);
    if change.mask != 0 {
        client.set_status(&change).map_err(SyncError::Status)?;
    }
    if let Some(lock) = lock {
        client.set_status(&lock).map_err(SyncError::Status)?;
    }
    Ok(LoadReport { steps, unchanged, status_applied: change, locked: lock.is_some(), skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::data::{FieldEntry, FILTER_EXCLUDE, FILTER_EXIT, F_FILTERKEY, OP_EQUAL};

    /// The kernel's rule table as far as rules go: per-list order, EEXIST, ENOENT, listing
    /// normalisation, and a rule text it refuses (to test rollback).
    #[derive(Default)]
    struct FakeKernel {
        lists: Vec<Vec<RuleData>>,
        refuse_key: Option<String>,
        ops: usize,
    }

    fn refused(request: &'static str, errno: i32) -> NetlinkError {
        NetlinkError::Refused { request, errno }
    }

    impl RuleTable for FakeKernel {
        fn list(&mut self) -> Result<Vec<Vec<u8>>, NetlinkError> {
            Ok(self.lists.iter().flatten().map(RuleData::encode).collect())
        }
        fn add(&mut self, rule: &[u8]) -> Result<(), NetlinkError> {
            self.ops += 1;
            if self.lists.is_empty() {
                self.lists = vec![Vec::new(); 8];
            }
            let r = RuleData::decode(rule).map_err(|_| refused("AUDIT_ADD_RULE", libc::EINVAL))?;
            if self.refuse_key.as_deref().is_some_and(|k| r.fields.iter().any(|f| f.text_lossy() == k)) {
                return Err(refused("AUDIT_ADD_RULE", libc::ENOENT));
            }
            let n = r.kernel_normalise();
            let l = &mut self.lists[r.list() as usize];
            if l.contains(&n) {
                return Err(refused("AUDIT_ADD_RULE", libc::EEXIST));
            }
            if r.flags & data::FILTER_PREPEND != 0 {
                l.insert(0, n);
            } else {
                l.push(n);
            }
            Ok(())
        }
        fn delete(&mut self, rule: &[u8]) -> Result<(), NetlinkError> {
            self.ops += 1;
            let r = RuleData::decode(rule).map_err(|_| refused("AUDIT_DEL_RULE", libc::EINVAL))?.kernel_normalise();
            let l = self.lists.get_mut(r.list() as usize).ok_or(refused("AUDIT_DEL_RULE", libc::ENOENT))?;
            let i = l.iter().position(|x| *x == r).ok_or(refused("AUDIT_DEL_RULE", libc::ENOENT))?;
            l.remove(i);
            Ok(())
        }
    }

    fn rule(list: u32, key: &str) -> RuleData {
        let mut r = RuleData::new(list, data::ACTION_ALWAYS);
        r.set_all_syscalls();
        r.fields.push(FieldEntry::string(F_FILTERKEY, OP_EQUAL, key.as_bytes()));
        r.kernel_normalise()
    }

    fn keys(k: &mut FakeKernel) -> Vec<String> {
        current_rules(k).unwrap().iter().map(|r| r.fields[0].text_lossy()).collect()
    }

    fn kernel_with(rules: &[RuleData]) -> FakeKernel {
        let mut k = FakeKernel::default();
        apply_steps(&mut k, &plan(&[], rules)).unwrap();
        k.ops = 0;
        k
    }

    #[test]
    fn reaches_the_desired_order_with_few_operations() {
        let (a, b, c, d, e) = (
            rule(FILTER_EXIT, "a"),
            rule(FILTER_EXIT, "b"),
            rule(FILTER_EXIT, "c"),
            rule(FILTER_EXIT, "d"),
            rule(FILTER_EXCLUDE, "e"),
        );
        let mut k = kernel_with(&[a.clone(), b.clone(), c.clone(), e.clone()]);
        let before = current_rules(&mut k).unwrap();
        let desired = vec![d.clone(), b.clone(), c.clone(), a.clone(), e.clone()];
        let steps = sync_rules(&mut k, &before, &desired).unwrap();
        assert_eq!(keys(&mut k), ["d", "b", "c", "a", "e"]);
        // b,c stay; a is deleted and re-appended; d is prepended; e untouched.
        assert_eq!(steps, vec![Step::Delete(a.clone()), Step::Prepend(d), Step::Append(a)]);
        // Nothing to do the second time.
        let now = current_rules(&mut k).unwrap();
        assert!(plan(&now, &now).is_empty());
    }

    #[test]
    fn refusal_midway_rolls_back_to_the_previous_rules() {
        let (a, b, bad, c) =
            (rule(FILTER_EXIT, "a"), rule(FILTER_EXIT, "b"), rule(FILTER_EXIT, "bad"), rule(FILTER_EXIT, "c"));
        let mut k = kernel_with(&[a.clone(), b.clone()]);
        k.refuse_key = Some("bad".into());
        let before = current_rules(&mut k).unwrap();
        let err = sync_rules(&mut k, &before, &[c, bad, b]).unwrap_err();
        assert!(matches!(err, SyncError::Refused { what: "prepending", .. }), "{err}");
        assert!(err.to_string().contains("rolled back"));
        assert_eq!(keys(&mut k), ["a", "b"]);
    }

    #[test]
    fn self_exclusion_goes_first_and_comes_out_again() {
        let a = rule(FILTER_EXIT, "a");
        let mut k = kernel_with(std::slice::from_ref(&a));
        let before = current_rules(&mut k).unwrap();
        sync_rules(&mut k, &before, &[self_exclusion(42, b"/usr/bin/auditrelay"), a.clone()]).unwrap();
        let now = current_rules(&mut k).unwrap();
        assert_eq!(now[0], self_exclusion(42, b"/usr/bin/auditrelay"));
        assert_eq!(now[0].to_string(), "-a never,exit -S all -F pid=42 -F exe=/usr/bin/auditrelay");
        remove_self_exclusion(&mut k, 42, b"/usr/bin/auditrelay").unwrap();
        assert_eq!(current_rules(&mut k).unwrap(), vec![a]);
        assert!(remove_self_exclusion(&mut k, 42, b"/usr/bin/auditrelay").is_err());
    }

    /// Regression: after `kill -9` of a daemon, the next one kept the dead pid's self-exclusion rule
    /// in the rules it restores at exit, so `-a never,exit -S all -F pid=<dead>` outlived both.
    /// Also: a pid-only rule (older versions) whose pid now runs something else is stale.
    #[test]
    fn unmanaged_self_exclusion_touches_no_other_rule() {
        let (a, b) = (rule(FILTER_EXIT, "a"), rule(FILTER_EXIT, "b"));
        let mut k = kernel_with(&[a.clone(), b.clone()]);
        add_self_exclusion(&mut k, 42, b"/usr/bin/auditrelay").unwrap();
        assert_eq!(k.ops, 1, "one prepend, nothing deleted or re-added");
        let me = self_exclusion(42, b"/usr/bin/auditrelay");
        assert_eq!(current_rules(&mut k).unwrap(), vec![me.clone(), a.clone(), b.clone()]);
        add_self_exclusion(&mut k, 42, b"/usr/bin/auditrelay").unwrap();
        assert_eq!(k.ops, 1, "already there: not added again");
        remove_self_exclusion(&mut k, 42, b"/usr/bin/auditrelay").unwrap();
        assert_eq!(current_rules(&mut k).unwrap(), vec![a, b]);
    }

    #[test]
    fn stale_self_exclusion_of_a_dead_daemon_is_not_kept() {
        let exe: &[u8] = b"/usr/bin/auditrelay";
        let a = rule(FILTER_EXIT, "a");
        let mut not_quite = self_exclusion(7, exe);
        not_quite.fields.push(FieldEntry::string(F_FILTERKEY, OP_EQUAL, b"k"));
        let before = vec![
            self_exclusion(7, exe).encode(),
            self_exclusion(42, exe).encode(),
            a.encode(),
            not_quite.encode(),
            self_exclusion(43, b"").encode(),
            self_exclusion(44, b"").encode(),
        ];
        // 42 runs our exe; 43 runs our exe too (pid-only form of an older live daemon); 44 runs bash.
        let live = |pid: u32, e: &[u8]| match pid {
            42 => e == exe,
            43 => e.is_empty(),
            _ => false,
        };
        let (kept, stale) = without_stale_self_exclusions(before.clone(), live);
        assert_eq!(stale, vec![7, 44]);
        assert_eq!(kept, before[1..5].to_vec(), "a live daemon's rule, other rules and look-alikes stay");
        assert_eq!(self_exclusion_of(&self_exclusion(42, exe)), Some((42, exe.to_vec())));
        assert_eq!(self_exclusion_pid(&self_exclusion(43, b"")), Some(43));
        assert_eq!(self_exclusion_pid(&a), None);
        assert_eq!(self_exclusion_pid(&not_quite), None);
        // Loading a daemon's set over them deletes the stale rule as well.
        let mut k = kernel_with(&[self_exclusion(7, exe), a.clone()]);
        let now = current_rules(&mut k).unwrap();
        sync_rules(&mut k, &now, &[self_exclusion(42, exe), a.clone()]).unwrap();
        assert_eq!(current_rules(&mut k).unwrap(), vec![self_exclusion(42, exe), a]);
    }

    #[test]
    fn live_self_exclusion_needs_the_pid_running_the_exe() {
        let me = std::process::id();
        let exe = own_exe().unwrap();
        assert!(self_exclusion_is_live(me, &exe, b"/nonexistent"));
        assert!(self_exclusion_is_live(me, b"", &exe), "pid-only form: our exe");
        assert!(!self_exclusion_is_live(me, b"/usr/bin/true", &exe), "same pid, another program");
        assert!(!self_exclusion_is_live(1 << 23, &exe, &exe), "no such pid");
    }

    #[test]
    fn running_pids_are_told_from_gone_ones() {
        assert!(pid_is_running(std::process::id()));
        // Past the kernel's pid_max (at most 2^22).
        assert!(!pid_is_running(1 << 23));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped yet: a zombie counts as gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_is_running(pid) {
            assert!(std::time::Instant::now() < deadline, "child {pid} still running");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(!pid_is_running(pid));
    }

    #[test]
    fn dangerous_controls_need_opt_in() {
        let settings = Settings {
            enabled: Some(2),
            failure: Some(2),
            backlog_limit: Some(8192),
            loginuid_immutable: true,
            ..Settings::default()
        };
        let (now, lock, skipped) = status_changes(&settings, Permissions::default());
        assert_eq!(now.mask, mask::BACKLOG_LIMIT);
        assert!(lock.is_none());
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        let (now, lock, skipped) = status_changes(&settings, Permissions { immutable: true, allow_panic: true });
        assert_eq!(now.mask, mask::BACKLOG_LIMIT | mask::FAILURE);
        assert_eq!(now.failure, 2);
        assert_eq!(lock.map(|l| l.enabled), Some(2));
        assert_eq!(skipped.len(), 1);
    }
}
