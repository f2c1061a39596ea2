//! The daemon's rules: loaded atomically at start (self-exclusion rule first), reloaded on SIGHUP
//! and every `refresh_interval` when a source is a URL, and put back as they were at exit.
//!
//! Reloading runs on its own thread with its own netlink socket: a URL fetch may take up to
//! `fetch_timeout`, and neither the reader nor the processing thread may wait on it. A failed
//! fetch or a set with errors keeps the current kernel rules; it is logged and counted.
//!
//! Start fails safe: the host must never be left unaudited because a rule server is down or
//! serves garbage. The first set that compiles and loads wins, in this order:
//! 1. the configured sources (URLs fetched, or with [`RuleManager::start_offline`] taken from the
//!    cache only, the fetch following on the rules thread once the reader runs);
//! 2. the last good set (`<cache_dir>/last-good.rules`: the lines of the last configured set
//!    that loaded, written atomically after each such load);
//! 3. the embedded rules/default.rules.
//!
//! Each step down is logged with why. If none loads, the kernel keeps the rules it had and the
//! daemon runs (it still ships whatever those rules produce). With the rules locked (`-e 2`,
//! enabled=2) nothing can be loaded or removed until reboot: the daemon runs on the locked rules,
//! says so, and skips reloads.
//!
//! `[rules] manage = false` (co-existence with augenrules or configuration management): the
//! kernel's rules are left alone, no set is loaded at start or on SIGHUP and nothing is restored
//! at exit. Only the self-exclusion rule is added, with one prepend that touches no other rule,
//! and deleted alone at exit: without it a foreign rule that matches the daemon's own writes
//! (`-S write`, a watch on the spool) would audit every event shipped, without end. A rule manager
//! that runs `auditctl -D` removes it too: SIGHUP puts it back. Locked rules (`-e 2`): not added.
//!
//! `[kernel]` settings win over control lines: [`RuleManager`] re-applies them after every load
//! it makes (given with [`StartOptions::kernel`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netlink::client::AuditClient;
use crate::netlink::settings::{self, KernelConfig};
use crate::rules::compile::{self, RuleSet, UrlControls};
use crate::rules::config::{Rules, DEFAULT_RULES};
use crate::rules::data::RuleData;
use crate::rules::fetch::{self, is_url, Fetcher};
use crate::rules::parse::SystemHost;
use crate::rules::sync::{self, LoadReport, Permissions, SyncError};

use super::signals;

/// How often the rules thread looks for a SIGHUP (a reload reacts within this).
const SIGHUP_POLL: Duration = Duration::from_millis(250);
use super::DaemonError;

/// Name of the last good set under `[rules] cache_dir`.
pub const LAST_GOOD: &str = "last-good.rules";

/// How [`RuleManager::start_with`] starts.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub rules: Rules,
    pub perms: Permissions,
    /// `[kernel] restore_on_exit`: put the rules found at start back at exit.
    pub restore: bool,
    /// `[kernel]`, re-applied after every load (its `enabled` is left out: registration owns it).
    pub kernel: Option<KernelConfig>,
    /// Use only cached copies of URL sources now; [`RuleManager::watch`] fetches them at once.
    pub offline: bool,
}

/// Where the loaded set came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    Configured,
    LastGood,
    Embedded,
    /// Rules locked (enabled=2): the kernel's own rules stay.
    Locked,
    /// Nothing could be loaded: the kernel's rules stay.
    Unchanged,
    /// `[rules] manage = false`: the kernel's rules are someone else's; only the self-exclusion
    /// rule is ours (`true` while we hold it in the kernel).
    Unmanaged {
        self_excluded: bool,
    },
}

impl Loaded {
    /// The name `status` shows (`rules.source`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Loaded::Configured => "configured",
            Loaded::LastGood => "last_good",
            Loaded::Embedded => "embedded",
            Loaded::Locked => "locked",
            Loaded::Unchanged => "unchanged",
            Loaded::Unmanaged { .. } => "unmanaged",
        }
    }
}

pub struct RuleManager {
    client: AuditClient,
    rules: Rules,
    fetcher: Fetcher,
    perms: Permissions,
    pid: u32,
    exe: Vec<u8>,
    kernel: Option<KernelConfig>,
    /// The kernel's rules before we loaded ours, raw, in order.
    before: Vec<Vec<u8>>,
    restore: bool,
    /// URL sources have not been fetched yet (offline start).
    fetch_pending: bool,
    pub loaded: Loaded,
    pub reloads_failed: Arc<AtomicU64>,
    /// Control lines of URL sources ignored (`[rules] apply_url_controls = false`), over all loads.
    pub url_controls_ignored: Arc<AtomicU64>,
}

/// One set to try at start: where it comes from, and the set or why it is not usable.
struct Candidate {
    what: Loaded,
    name: String,
    set: Result<RuleSet, Vec<String>>,
}

/// Try each candidate in order until one loads. `Err(SyncError::Locked)` from `load` stops the
/// search: nothing can be loaded until reboot. Logs every step down. Returns where the loaded set
/// came from, with the set and its report.
fn choose(
    candidates: impl IntoIterator<Item = Candidate>,
    mut load: impl FnMut(&RuleSet) -> Result<LoadReport, SyncError>,
) -> (Loaded, Option<(RuleSet, LoadReport)>) {
    for c in candidates {
        let set = match c.set {
            Ok(set) => set,
            Err(errors) => {
                log::error!("rules from {} not usable:\n  {}", c.name, errors.join("\n  "));
                continue;
            }
        };
        match load(&set) {
            Ok(report) => return (c.what, Some((set, report))),
            Err(SyncError::Locked) => {
                log::warn!(
                    "the kernel's audit rules are locked (enabled=2, `-e 2`) until reboot: \
                     running on the locked rules; no self-exclusion rule, rule reloads skipped"
                );
                return (Loaded::Locked, None);
            }
            Err(e) => log::error!("rules from {} not loaded: {e}", c.name),
        }
    }
    log::error!("no rule set could be loaded; running on the rules the kernel has");
    (Loaded::Unchanged, None)
}

/// A set is worth falling back to only if it holds rules: an empty file is what a crash leaves.
fn non_empty(set: RuleSet, name: &str) -> Result<RuleSet, Vec<String>> {
    if set.desired.is_empty() {
        Err(vec![format!("{name}: no rules in it")])
    } else {
        Ok(set)
    }
}

fn last_good_path(rules: &Rules) -> PathBuf {
    rules.cache_dir.join(LAST_GOOD)
}

/// The last good set, compiled, if there is a usable one.
fn last_good(path: &Path) -> Result<RuleSet, Vec<String>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let set = compile::compile_text(&name, &text, &SystemHost)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    non_empty(set, &name)
}

/// Keep the lines of a configured set that loaded, for the next start to fall back to.
fn save_last_good(rules: &Rules, set: &RuleSet) {
    let mut text = String::new();
    for c in &set.lines {
        text.push_str(&c.source.text);
        text.push('\n');
    }
    let path = last_good_path(rules);
    let saved = std::fs::create_dir_all(&rules.cache_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| fetch::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string()));
    if let Err(e) = saved {
        log::warn!("cannot keep the last good rules in {}: {e}", path.display());
    }
}

impl RuleManager {
    /// Load rules without the network (local sources, cached copies of URLs), failing safe; the
    /// URLs are fetched by [`Self::watch`] as soon as its thread runs.
    // daemon/mod.rs calls it before the reader starts, and starts `watch` after.
    pub fn start_offline(
        rules: Rules,
        perms: Permissions,
        restore: bool,
        kernel: KernelConfig,
    ) -> Result<RuleManager, DaemonError> {
        Self::start_with(StartOptions { rules, perms, restore, kernel: Some(kernel), offline: true })
    }

    /// Only a netlink failure is an error: rule problems fall back (module docs).
    pub fn start_with(opts: StartOptions) -> Result<RuleManager, DaemonError> {
        let StartOptions { rules, perms, restore, kernel, offline } = opts;
        let fetcher = rules.fetcher();
        let mut client = AuditClient::open()?;
        let pid = std::process::id();
        let exe = sync::own_exe().unwrap_or_else(|e| {
            log::warn!("cannot read /proc/self/exe ({e}): self-exclusion rule without exe");
            Vec::new()
        });
        let (before, stale) =
            sync::without_stale_self_exclusions(client.list_rules()?, |p, e| sync::self_exclusion_is_live(p, e, &exe));
        for dead in stale {
            // The load below deletes it; leaving it out of `before` keeps the exit restore from re-adding it.
            log::info!(
                "removing the self-exclusion rule of pid {dead}, a daemon that is gone (killed without cleanup)"
            );
        }
        if !rules.manage {
            return Self::start_unmanaged(StartOptions { rules, perms, restore, kernel, offline }, client, pid, exe);
        }
        let has_url = rules.sources.iter().any(|s| is_url(s));
        let url_controls_ignored = Arc::new(AtomicU64::new(0));
        let mut candidates = Vec::new();
        let configured = if offline {
            compile_all(&rules, &|url, pin| fetcher.cached_copy(url, pin))
        } else {
            compile_all(&rules, &|url, pin| fetcher.fetch(url, pin))
        };
        let configured_name =
            if rules.sources.is_empty() { "embedded default.rules".into() } else { rules.sources.join(", ") };
        candidates.push(Candidate { what: Loaded::Configured, name: configured_name, set: configured });
        if !rules.sources.is_empty() {
            let path = last_good_path(&rules);
            candidates.push(Candidate {
                what: Loaded::LastGood,
                name: path.display().to_string(),
                set: last_good(&path),
            });
            let embedded = compile::compile_text("(embedded) rules/default.rules", DEFAULT_RULES, &SystemHost)
                .map_err(|errors| errors.iter().map(|e| e.to_string()).collect());
            candidates.push(Candidate { what: Loaded::Embedded, name: "embedded default.rules".into(), set: embedded });
        }
        let (loaded, result) = choose(candidates, |set| sync::load_for_daemon(&mut client, set, pid, &exe, perms));
        let mut manager = RuleManager {
            client,
            rules,
            fetcher,
            perms,
            pid,
            exe,
            kernel,
            before,
            restore,
            fetch_pending: offline && has_url,
            loaded,
            reloads_failed: Arc::new(AtomicU64::new(0)),
            url_controls_ignored,
        };
        if let Some((set, report)) = result {
            manager.loaded_set(&set, &report, "loaded");
        }
        let source = manager.loaded.as_str();
        crate::telemetry::note_rules(|r| r.source = source.into());
        Ok(manager)
    }

    /// `[rules] manage = false` (module docs): the self-exclusion rule alone, then `[kernel]`.
    fn start_unmanaged(
        opts: StartOptions,
        client: AuditClient,
        pid: u32,
        exe: Vec<u8>,
    ) -> Result<RuleManager, DaemonError> {
        let StartOptions { rules, perms, restore, kernel, .. } = opts;
        let fetcher = rules.fetcher();
        let mut m = RuleManager {
            client,
            rules,
            fetcher,
            perms,
            pid,
            exe,
            kernel,
            before: Vec::new(),
            restore,
            fetch_pending: false,
            loaded: Loaded::Unmanaged { self_excluded: false },
            reloads_failed: Arc::new(AtomicU64::new(0)),
            url_controls_ignored: Arc::new(AtomicU64::new(0)),
        };
        log::info!(
            "[rules] manage = false: the kernel's rules are left as they are (no load, no reload, no restore at exit)"
        );
        // Self-exclusion rules of dead auditrelay daemons are ours to remove (one delete each);
        // every other rule stays.
        for raw in m.client.list_rules()? {
            let Some((dead, their_exe)) = RuleData::decode(&raw).ok().as_ref().and_then(sync::self_exclusion_of) else {
                continue;
            };
            if sync::self_exclusion_is_live(dead, &their_exe, &m.exe) {
                continue;
            }
            match m.client.delete_rule(&raw) {
                Ok(()) => log::info!("removed the self-exclusion rule of pid {dead}, a daemon that is gone"),
                Err(e) => {
                    log::warn!("cannot remove the stale self-exclusion rule of pid {dead}: {e}")
                }
            }
        }
        m.ensure_self_exclusion();
        m.reapply_kernel();
        Ok(m)
    }

    /// Unmanaged: add the self-exclusion rule unless it is there (a foreign `auditctl -D` removes it).
    fn ensure_self_exclusion(&mut self) {
        if !matches!(self.loaded, Loaded::Unmanaged { .. }) {
            return;
        }
        if self.client.status().map(|s| s.enabled == 2).unwrap_or(false) {
            log::warn!("the kernel's audit rules are locked (enabled=2): no self-exclusion rule can be added; rules matching the daemon's own syscalls will audit it");
            return;
        }
        match sync::add_self_exclusion(&mut self.client, self.pid, &self.exe) {
            Ok(()) => self.loaded = Loaded::Unmanaged { self_excluded: true },
            Err(e) => log::warn!("cannot add the self-exclusion rule (the daemon's own syscalls may be audited): {e}"),
        }
    }

    fn has_url(&self) -> bool {
        self.rules.sources.iter().any(|s| is_url(s))
    }

    /// After a load: log, count ignored URL control lines, keep a configured set as last good,
    /// re-apply `[kernel]`.
    fn loaded_set(&mut self, set: &RuleSet, report: &LoadReport, what: &str) {
        let from = match self.loaded {
            Loaded::Configured if self.rules.sources.is_empty() => "embedded default.rules".to_string(),
            Loaded::Configured => self.rules.sources.join(", "),
            Loaded::LastGood => format!("the last good set ({})", last_good_path(&self.rules).display()),
            Loaded::Embedded => "embedded default.rules (fallback)".to_string(),
            Loaded::Locked | Loaded::Unchanged | Loaded::Unmanaged { .. } => String::new(),
        };
        log_report(what, &from, report);
        let (loaded, source) = (set.desired.len() as u64, self.loaded.as_str());
        crate::telemetry::note_rules(|r| {
            r.loaded = loaded;
            r.source = source.into();
        });
        if !set.ignored_url_controls.is_empty() {
            self.url_controls_ignored.fetch_add(set.ignored_url_controls.len() as u64, Ordering::Relaxed);
            for l in &set.ignored_url_controls {
                log::warn!("rules: ignored control line from a URL ([rules] apply_url_controls = false): {l}");
            }
        }
        if self.loaded == Loaded::Configured && !self.rules.sources.is_empty() {
            save_last_good(&self.rules, set);
        }
        self.reapply_kernel();
    }

    /// `[kernel]` wins over the control lines of the set just loaded.
    fn reapply_kernel(&mut self) {
        let Some(kernel) = &self.kernel else { return };
        let k = KernelConfig { enabled: None, ..kernel.clone() };
        let result = self.client.status().and_then(|now| settings::apply(&mut self.client, &k, &now));
        if let Err(e) = result {
            log::error!("re-applying [kernel] settings after loading rules: {e}");
        }
    }

    fn reload(&mut self, why: &str) {
        if let Loaded::Unmanaged { .. } = self.loaded {
            log::info!("rules not reloaded ({why}): [rules] manage = false; only the self-exclusion rule is checked");
            self.ensure_self_exclusion();
            return;
        }
        if self.loaded == Loaded::Locked {
            log::info!("rules not reloaded ({why}): the kernel's rules are locked (enabled=2) until reboot");
            return;
        }
        log::info!("reloading rules ({why})");
        crate::telemetry::note_rules(|r| r.reloads += 1);
        let fetcher = &self.fetcher;
        let result = compile_all(&self.rules, &|url, pin| fetcher.fetch(url, pin)).and_then(|set| {
            sync::load_for_daemon(&mut self.client, &set, self.pid, &self.exe, self.perms)
                .map(|report| (set, report))
                .map_err(|e| vec![e.to_string()])
        });
        match result {
            Ok((set, report)) => {
                self.loaded = Loaded::Configured;
                self.loaded_set(&set, &report, "reloaded");
                let message = format!("{why}: {} rules loaded", set.desired.len());
                self.note_reload(true, message);
            }
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.note_reload(false, format!("{why}: {}", errors.join("; ")));
                log::error!("rules not reloaded, the current kernel rules stay:\n  {}", errors.join("\n  "));
            }
        }
    }

    /// The reload's outcome and the fetch counters, for `status` and metrics.
    fn note_reload(&self, ok: bool, message: String) {
        let s = &self.fetcher.stats;
        let (fetches, failures) = (s.fetched.load(Ordering::Relaxed), s.failed.load(Ordering::Relaxed));
        crate::telemetry::note_rules(|r| {
            if !ok {
                r.reloads_failed += 1;
            }
            r.last_reload = Some(crate::telemetry::ReloadResult { unix_ms: crate::telemetry::unix_ms(), ok, message });
            r.fetches = fetches;
            r.fetch_failures = failures;
        });
    }

    /// Until `stop` (set, then this thread unparked): fetch URL sources at once after an offline start, then reload on SIGHUP and
    /// every refresh interval when a source is a URL.
    pub fn watch(mut self, stop: Arc<AtomicBool>) {
        if self.fetch_pending {
            self.fetch_pending = false;
            self.reload("first fetch of the URL sources");
        }
        let mut next_refresh = Instant::now() + self.rules.refresh_interval;
        while !stop.load(Ordering::Acquire) {
            // SIGHUP only sets a flag (all a signal handler may do), so it is looked for at this
            // pace; the stop unparks at once.
            std::thread::park_timeout(SIGHUP_POLL);
            if signals::take_reload() {
                self.reload("SIGHUP");
                next_refresh = Instant::now() + self.rules.refresh_interval;
            } else if self.has_url() && Instant::now() >= next_refresh {
                self.reload("refresh_interval");
                next_refresh = Instant::now() + self.rules.refresh_interval;
            }
        }
    }

    fn finish(&mut self) {
        let result = match self.loaded {
            // Nothing of ours is in the kernel.
            Loaded::Locked | Loaded::Unchanged | Loaded::Unmanaged { self_excluded: false } => Ok(()),
            Loaded::Unmanaged { self_excluded: true } => {
                match sync::remove_self_exclusion(&mut self.client, self.pid, &self.exe) {
                    // Someone else's `auditctl -D` took it already.
                    Err(SyncError::Refused { source, .. }) if source.errno() == Some(libc::ENOENT) => Ok(()),
                    other => other.map_err(|e| e.to_string()),
                }
            }
            _ if self.restore => restore_exactly(&mut self.client, &self.before),
            _ => sync::remove_self_exclusion(&mut self.client, self.pid, &self.exe).map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            log::error!("putting the kernel rules back at exit: {e}");
        }
    }
}

impl Drop for RuleManager {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Local rule sources (files, rules.d directories and the files in them) that someone other than
/// root could change, each with why ([`crate::file_trust`]): such a set is not loaded.
fn untrusted_sources(rules: &Rules) -> Vec<String> {
    let mut refused = Vec::new();
    for source in rules.sources.iter().filter(|s| !is_url(s)) {
        let path = Path::new(source);
        if !path.exists() {
            continue; // compiling it says "cannot read", which is the real problem
        }
        let mut paths = vec![path.to_path_buf()];
        if path.is_dir() {
            paths.extend(crate::rules::source::rules_files(path).unwrap_or_default());
        }
        refused.extend(
            paths
                .iter()
                .filter_map(|p| crate::file_trust::check_trusted_as_root(p).err())
                .map(|e| format!("rule source {e}")),
        );
    }
    refused
}

fn compile_all(rules: &Rules, fetch: &compile::FetchFn<'_>) -> Result<RuleSet, Vec<String>> {
    let refused = untrusted_sources(rules);
    if !refused.is_empty() {
        return Err(refused);
    }
    let controls = if rules.apply_url_controls { UrlControls::Apply } else { UrlControls::Ignore };
    let (set, fetched) = compile::compile_sources_with(&rules.sources, &rules.sha256, fetch, controls, &SystemHost)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    for f in fetched {
        if let fetch::Origin::Cache { reason } = f.origin {
            log::warn!("rules: using the cached copy of {} ({reason})", f.url);
        }
    }
    Ok(set)
}

/// Delete whatever is loaded now and add `before` back in order (skipped when already equal).
fn restore_exactly(client: &mut AuditClient, before: &[Vec<u8>]) -> Result<(), String> {
    let now = client.list_rules().map_err(|e| e.to_string())?;
    if now == before {
        return Ok(());
    }
    for rule in &now {
        client.delete_rule(rule).map_err(|e| format!("deleting a rule: {e}"))?;
    }
    for rule in before {
        client.add_rule(rule).map_err(|e| format!("re-adding a rule that was loaded before start: {e}"))?;
    }
    Ok(())
}

fn log_report(what: &str, from: &str, report: &sync::LoadReport) {
    let added = report.steps.iter().filter(|s| !matches!(s, sync::Step::Delete(_))).count();
    let deleted = report.steps.len() - added;
    log::info!("rules {what} from {from}: {added} added, {deleted} deleted, {} unchanged", report.unchanged);
    for s in &report.skipped {
        log::warn!("rules: skipped {s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::status::AuditStatus;

    fn set(text: &str) -> Result<RuleSet, Vec<String>> {
        compile::compile_text("t.rules", text, &SystemHost).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    fn report() -> LoadReport {
        LoadReport {
            steps: Vec::new(),
            unchanged: 1,
            status_applied: AuditStatus::default(),
            locked: false,
            skipped: Vec::new(),
        }
    }

    fn candidates(configured: Result<RuleSet, Vec<String>>, last: Result<RuleSet, Vec<String>>) -> Vec<Candidate> {
        vec![
            Candidate { what: Loaded::Configured, name: "https://rules/x".into(), set: configured },
            Candidate { what: Loaded::LastGood, name: "last-good.rules".into(), set: last },
            Candidate { what: Loaded::Embedded, name: "embedded".into(), set: set(DEFAULT_RULES) },
        ]
    }

    /// Regression: an unreachable URL without cache, a pin mismatch or a remote syntax error made
    /// `run` exit, leaving the host unaudited.
    #[test]
    fn boot_falls_back_to_the_last_good_set_then_the_embedded_rules() {
        let good = "-w /etc/hosts -p wa -k last-good\n";
        let (loaded, got) = choose(candidates(Err(vec!["unreachable".into()]), set(good)), |_| Ok(report()));
        assert_eq!(loaded, Loaded::LastGood);
        assert_eq!(got.unwrap().0.desired.len(), 1);

        let (loaded, got) =
            choose(candidates(set("-a always,exit -S nonsense\n"), Err(vec!["no file".into()])), |_| Ok(report()));
        assert_eq!(loaded, Loaded::Embedded);
        assert!(got.unwrap().0.desired.len() >= 10);

        // The kernel refusing the configured set (e.g. a watch whose parent is missing) falls back too.
        let mut calls = 0;
        let (loaded, _) = choose(candidates(set("-w /etc/passwd -k c\n"), set(good)), |_| {
            calls += 1;
            if calls == 1 {
                Err(SyncError::Status(crate::netlink::NetlinkError::Refused { request: "AUDIT_ADD_RULE", errno: 2 }))
            } else {
                Ok(report())
            }
        });
        assert_eq!(loaded, Loaded::LastGood);

        // Nothing loads: the daemon still runs, on the kernel's rules.
        let (loaded, got) = choose(candidates(Err(vec![]), Err(vec![])), |_| {
            Err(SyncError::Verify { expected: String::new(), listed: String::new() })
        });
        assert_eq!(loaded, Loaded::Unchanged);
        assert!(got.is_none());
    }

    /// Regression: with `-e 2` locked rules a restarted daemon could not start (rule sync refused).
    #[test]
    fn locked_rules_are_run_on_not_fought() {
        let mut calls = 0;
        let (loaded, got) = choose(candidates(set("-w /etc/passwd -k c\n"), set("-w /etc/hosts -k h\n")), |_| {
            calls += 1;
            Err(SyncError::Locked)
        });
        assert_eq!(loaded, Loaded::Locked);
        assert!(got.is_none());
        assert_eq!(calls, 1, "no fallback is tried against locked rules");
    }

    #[test]
    fn last_good_must_hold_rules() {
        let dir = std::env::temp_dir().join(format!("auditrelay-lastgood-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LAST_GOOD);
        std::fs::write(&path, "").unwrap();
        assert!(last_good(&path).is_err(), "an empty file (crash) is no last good set");
        std::fs::write(&path, "-b 320\n").unwrap();
        assert!(last_good(&path).is_err(), "control lines alone are no rules");
        let rules = Rules {
            sources: vec!["https://rules.example.org/a.rules".into()],
            refresh_interval: Duration::from_secs(60),
            sha256: Default::default(),
            immutable: false,
            cache_dir: dir.clone(),
            fetch_timeout: Duration::from_secs(1),
            apply_url_controls: false,
            manage: true,
        };
        let s = set("-b 320\n-w /etc/hosts -p wa -k h\n").unwrap();
        save_last_good(&rules, &s);
        assert_eq!(last_good(&path).unwrap().desired, s.desired);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
