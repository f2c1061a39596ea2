//! The `auditrelay rules …` subcommands as library functions: they write their report to the given
//! writers and return the process exit code, so main.rs only dispatches and tests can run them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::netlink::client::AuditClient;
use crate::rules::compile::{self, CompileError, RuleSet};
use crate::rules::config::Rules;
use crate::rules::fetch::Fetcher;
use crate::rules::parse::SystemHost;
use crate::rules::print;
use crate::rules::sync::{self, Permissions, Step, SyncError};

/// Exit code for "the rules have errors" (the kernel was not touched).
pub const EXIT_INVALID: u8 = 1;
/// Exit code for "the kernel refused or could not be asked" (rolled back where it applies).
pub const EXIT_KERNEL: u8 = 2;

/// Time limit for fetching a URL given on the command line.
const CLI_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Compile command-line sources (files, directories, URLs); URLs are fetched without caching
/// unless a fetcher with a cache is given.
fn compile_with(
    paths: &[PathBuf],
    pins: &BTreeMap<String, String>,
    fetcher: &Fetcher,
) -> Result<RuleSet, Vec<CompileError>> {
    let sources: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    // A URL named on the command line is the operator's choice, as with `auditctl -R`: its control
    // lines apply (a configured URL source of `run` ignores them unless apply_url_controls).
    compile::compile_sources(&sources, pins, fetcher, compile::UrlControls::Apply, &SystemHost).map(|(set, _)| set)
}

fn compile(paths: &[PathBuf]) -> Result<RuleSet, Vec<CompileError>> {
    compile_with(paths, &BTreeMap::new(), &Fetcher::new(CLI_FETCH_TIMEOUT, None))
}

fn report_errors(errors: &[CompileError], err: &mut dyn Write) -> std::io::Result<u8> {
    for e in errors {
        writeln!(err, "{e}")?;
    }
    writeln!(err, "{} error{}; nothing changed", errors.len(), if errors.len() == 1 { "" } else { "s" })?;
    Ok(EXIT_INVALID)
}

fn report_newer(set: &RuleSet, err: &mut dyn Write) -> std::io::Result<()> {
    for (loc, names) in &set.newer_syscalls {
        writeln!(err, "{loc}: note: {} unknown to auditctl 3.0.9, known to the kernel", names.join(", "))?;
    }
    Ok(())
}

/// `rules check PATH...`: 0 when every line compiles, 1 with every error as `file:line: message`.
pub fn check(paths: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    match compile(paths) {
        Ok(set) => {
            report_newer(&set, err)?;
            let rules = set.lines.len() - set.controls().count();
            writeln!(
                out,
                "ok: {rules} rule lines, {} control lines, {} kernel rules",
                set.controls().count(),
                set.desired.len()
            )?;
            Ok(0)
        }
        Err(errors) => report_errors(&errors, err),
    }
}

/// `rules compile --format json|text PATH...`.
pub fn compile_cmd(paths: &[PathBuf], json: bool, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    match compile(paths) {
        Ok(set) => {
            if json {
                for r in set.json_rules() {
                    let line = serde_json::to_string(&r).map_err(std::io::Error::other)?;
                    writeln!(out, "{line}")?;
                }
            } else {
                out.write_all(print::listing(&set.desired).as_bytes())?;
            }
            Ok(0)
        }
        Err(errors) => report_errors(&errors, err),
    }
}

fn kernel_failed(e: impl std::fmt::Display, err: &mut dyn Write) -> std::io::Result<u8> {
    writeln!(err, "{e}")?;
    Ok(EXIT_KERNEL)
}

/// `rules list`: the kernel's rules as `auditctl -l` prints them.
pub fn list(out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let rules = match AuditClient::open().map_err(SyncError::List).and_then(|mut c| sync::current_rules(&mut c)) {
        Ok(r) => r,
        Err(e) => return kernel_failed(e, err),
    };
    out.write_all(print::listing(&rules).as_bytes())?;
    Ok(0)
}

/// `rules diff PATH...`: what `rules load` would change.
pub fn diff(paths: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let set = match compile(paths) {
        Ok(set) => set,
        Err(errors) => return report_errors(&errors, err),
    };
    let current = match AuditClient::open().map_err(SyncError::List).and_then(|mut c| sync::current_rules(&mut c)) {
        Ok(r) => r,
        Err(e) => return kernel_failed(e, err),
    };
    let steps = sync::plan(&current, &set.desired);
    let unchanged = set.desired.len() - steps.iter().filter(|s| !matches!(s, Step::Delete(_))).count();
    out.write_all(sync::describe(&steps, unchanged).as_bytes())?;
    Ok(0)
}

/// `rules load PATH|URL...`: atomic sync of the kernel to the sources (URLs fetched with the
/// `[rules]` pins and cache).
pub fn load(
    paths: &[PathBuf],
    rules: &Rules,
    perms: Permissions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let set = match compile_with(paths, &rules.sha256, &rules.fetcher()) {
        Ok(set) => set,
        Err(errors) => return report_errors(&errors, err),
    };
    report_newer(&set, err)?;
    let mut client = match AuditClient::open() {
        Ok(c) => c,
        Err(e) => return kernel_failed(e, err),
    };
    match sync::load(&mut client, &set, perms) {
        Ok(report) => {
            out.write_all(sync::describe(&report.steps, report.unchanged).as_bytes())?;
            for s in &report.skipped {
                writeln!(out, "{s}")?;
            }
            if report.locked {
                writeln!(out, "rules locked until reboot (-e 2)")?;
            }
            Ok(0)
        }
        Err(e) => kernel_failed(e, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_file_line_and_exit_code() {
        let dir = std::env::temp_dir().join(format!("auditrelay-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.rules");
        std::fs::write(&bad, "-w /etc/hosts\n-a always,exit -S nosuch\n-a bogus\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(check(std::slice::from_ref(&bad), &mut out, &mut err).unwrap(), 1);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains(&format!("{}:2: `nosuch`", bad.display())), "{err}");
        assert!(err.contains(&format!("{}:3: ", bad.display())), "{err}");
        assert!(err.contains("2 errors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
