//! The daemon's rules: loaded atomically at start (self-exclusion rule first), reloaded on SIGHUP
//! and every `refresh_interval` when a source is a URL, and put back as they were at exit.
//!
//! Reloading runs on its own thread with its own netlink socket: a URL fetch may take up to
//! `fetch_timeout`, and neither the reader nor the processing thread may wait on it. A failed
//! fetch or a set with errors keeps the current kernel rules; it is logged and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netlink::client::AuditClient;
use crate::rules::compile::{self, RuleSet};
use crate::rules::config::Rules;
use crate::rules::fetch::{is_url, Fetcher};
use crate::rules::parse::SystemHost;
use crate::rules::sync::{self, Permissions};

use super::signals;
use super::DaemonError;

pub struct RuleManager {
    client: AuditClient,
    rules: Rules,
    fetcher: Fetcher,
    perms: Permissions,
    pid: u32,
    /// The kernel's rules before we loaded ours, raw, in order.
    before: Vec<Vec<u8>>,
    restore: bool,
    pub reloads_failed: Arc<AtomicU64>,
}

impl RuleManager {
    /// Compile every source and load the set; any error leaves the kernel's rules untouched.
    pub fn start(rules: Rules, perms: Permissions, restore: bool) -> Result<RuleManager, DaemonError> {
        let fetcher = rules.fetcher();
        let set = compile_all(&rules, &fetcher).map_err(DaemonError::Rules)?;
        let mut client = AuditClient::open()?;
        let pid = std::process::id();
        let (before, stale) = sync::without_stale_self_exclusions(client.list_rules()?, sync::pid_is_running);
        for dead in stale {
            // The load below deletes it; leaving it out of `before` keeps the exit restore from re-adding it.
            eprintln!("auditrelay: removing the self-exclusion rule of pid {dead}, a daemon that is gone (killed without cleanup)");
        }
        let report = sync::load_for_daemon(&mut client, &set, pid, perms)
            .map_err(|e| DaemonError::Rules(vec![e.to_string()]))?;
        log_report("loaded", &rules, &report);
        Ok(RuleManager {
            client,
            rules,
            fetcher,
            perms,
            pid,
            before,
            restore,
            reloads_failed: Arc::new(AtomicU64::new(0)),
        })
    }

    fn has_url(&self) -> bool {
        self.rules.sources.iter().any(|s| is_url(s))
    }

    fn reload(&mut self, why: &str) {
        eprintln!("auditrelay: reloading rules ({why})");
        let result = compile_all(&self.rules, &self.fetcher).and_then(|set| {
            sync::load_for_daemon(&mut self.client, &set, self.pid, self.perms).map_err(|e| vec![e.to_string()])
        });
        match result {
            Ok(report) => log_report("reloaded", &self.rules, &report),
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("auditrelay: error: rules not reloaded, the current kernel rules stay:");
                for e in errors {
                    eprintln!("  {e}");
                }
            }
        }
    }

    /// Until `stop`: reload on SIGHUP, and every refresh interval when a source is a URL.
    pub fn watch(mut self, stop: Arc<AtomicBool>) {
        let mut next_refresh = Instant::now() + self.rules.refresh_interval;
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(100));
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
        let result = if self.restore {
            restore_exactly(&mut self.client, &self.before)
        } else {
            sync::remove_self_exclusion(&mut self.client, self.pid).map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            eprintln!("auditrelay: error: putting the kernel rules back at exit: {e}");
        }
    }
}

impl Drop for RuleManager {
    fn drop(&mut self) {
        self.finish();
    }
}

fn compile_all(rules: &Rules, fetcher: &Fetcher) -> Result<RuleSet, Vec<String>> {
    compile::compile_sources(&rules.sources, &rules.sha256, fetcher, &SystemHost)
        .map(|(set, _)| set)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
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

fn log_report(what: &str, rules: &Rules, report: &sync::LoadReport) {
    let sources =
        if rules.sources.is_empty() { "embedded default.rules".to_string() } else { rules.sources.join(", ") };
    let added = report.steps.iter().filter(|s| !matches!(s, sync::Step::Delete(_))).count();
    let deleted = report.steps.len() - added;
    eprintln!(
        "auditrelay: rules {what} from {sources}: {added} added, {deleted} deleted, {} unchanged",
        report.unchanged
    );
    for s in &report.skipped {
        eprintln!("auditrelay: warning: rules: skipped {s}");
    }
}
