//! Sources → a checked rule set: every line compiled, every error collected with its file:line,
//! and the kernel state the set describes worked out without touching the kernel.
//!
//! The desired state is what `auditctl -R` would leave in an empty kernel after running the lines
//! in order: `-a` appends and `-A` prepends within the rule's list, `-d`/`-W` delete, `-D [-k key]`
//! clears. Mistakes the kernel would refuse at load time are reported here already: adding a rule
//! twice (EEXIST) and deleting a rule that is not there (ENOENT). Control lines are collected
//! (the last of each kind wins, as for auditctl); `-i`/`-c` are recorded but never relax checking:
//! a set with any error is refused as a whole.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::rules::ast::{Action, Control, Line, List, Op, Rule, RuleOp};
use crate::rules::data::{self, RuleData};
use crate::rules::fetch::{self, FetchError, Fetched, Fetcher};
use crate::rules::lex::{self, Lexed};
use crate::rules::lookup::{self, Machine};
use crate::rules::parse::{self, Host};
use crate::rules::source::{self, SourceError, SourceLine};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{location}: {message}")]
    Line { location: String, message: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// One compiled rules-file line.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub source: SourceLine,
    pub line: Line,
}

/// Status settings from control lines (last one of each kind wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub backlog_limit: Option<u32>,
    pub failure: Option<u32>,
    pub enabled: Option<u32>,
    pub rate_limit: Option<u32>,
    pub backlog_wait_time: Option<u32>,
    pub loginuid_immutable: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub lines: Vec<Compiled>,
    /// Kernel rules this set leaves behind, in listing order (lists by number, then position).
    pub desired: Vec<RuleData>,
    pub settings: Settings,
    /// Rules naming syscalls newer than auditctl 3.0.9 (file:line, names).
    pub newer_syscalls: Vec<(String, Vec<String>)>,
    /// Control lines of URL sources left out under [`UrlControls::Ignore`] (`url:line: text`).
    pub ignored_url_controls: Vec<String>,
}

/// What the control lines of a URL source do (`[rules] apply_url_controls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlControls {
    /// Left out (and reported in [`RuleSet::ignored_url_controls`]): a URL only adds and deletes
    /// rules. `-i` and `-c` are kept; they change nothing.
    Ignore,
    /// Applied like the control lines of a local file.
    Apply,
}

/// Whether a line is a control line that changes the kernel (everything but `-i`/`-c`).
fn is_kernel_control(text: &str, host: &dyn Host) -> bool {
    let Lexed::Words(words) = lex::lex(text) else { return false };
    matches!(
        parse::parse_words(&words, host),
        Ok(Line::Control(c)) if !matches!(c, Control::IgnoreErrors | Control::ContinueOnError)
    )
}

fn key_of(r: &RuleData) -> Option<String> {
    r.fields.iter().find(|f| f.field == data::F_FILTERKEY).map(|f| f.text_lossy())
}

/// Apply the lines to an empty kernel, as auditctl would; errors where the kernel would refuse.
fn simulate(lines: &[Compiled], errors: &mut Vec<CompileError>) -> (Vec<RuleData>, Settings) {
    let mut lists: Vec<Vec<RuleData>> = vec![Vec::new(); 8];
    let mut settings = Settings::default();
    for c in lines {
        match &c.line {
            Line::Rule(r) => {
                let Rule { op, data: rule, .. } = r.as_ref();
                let norm = rule.kernel_normalise();
                let list = &mut lists[(rule.list() & data::FILTER_MASK) as usize];
                let pos = list.iter().position(|r| *r == norm);
                match (op, pos) {
                    (RuleOp::Append | RuleOp::Prepend, Some(_)) => errors.push(CompileError::Line {
                        location: c.source.location(),
                        message: format!(
                            "`{}`: rule already added earlier (the kernel refuses duplicates)",
                            c.source.text.trim()
                        ),
                    }),
                    (RuleOp::Append, None) => list.push(norm),
                    (RuleOp::Prepend, None) => list.insert(0, norm),
                    (RuleOp::Delete, Some(i)) => {
                        list.remove(i);
                    }
                    (RuleOp::Delete, None) => errors.push(CompileError::Line {
                        location: c.source.location(),
                        message: format!("`{}`: deletes a rule that is not loaded at this point", c.source.text.trim()),
                    }),
                }
            }
            Line::Control(ctl) => match ctl {
                Control::DeleteAll { key: None } => lists.iter_mut().for_each(Vec::clear),
                Control::DeleteAll { key: Some(k) } => {
                    for l in lists.iter_mut() {
                        l.retain(|r| !key_of(r).is_some_and(|rk| rk.contains(k.as_str())));
                    }
                }
                Control::BacklogLimit(n) => settings.backlog_limit = Some(*n),
                Control::Failure(n) => settings.failure = Some(*n),
                Control::Enabled(n) => settings.enabled = Some(*n),
                Control::RateLimit(n) => settings.rate_limit = Some(*n),
                Control::BacklogWaitTime(n) => settings.backlog_wait_time = Some(*n),
                Control::LoginuidImmutable => settings.loginuid_immutable = true,
                Control::IgnoreErrors | Control::ContinueOnError => {}
            },
        }
    }
    (lists.into_iter().flatten().collect(), settings)
}

/// Compile already-read lines. `Err` carries every error, in source order.
pub fn compile_lines(lines: Vec<SourceLine>, host: &dyn Host) -> Result<RuleSet, Vec<CompileError>> {
    let mut errors = Vec::new();
    let mut compiled = Vec::new();
    for sl in lines {
        if sl.text.len() > lex::MAX_LINE {
            errors.push(CompileError::Line {
                location: sl.location(),
                message: format!("line longer than auditctl's {} bytes", lex::MAX_LINE),
            });
            continue;
        }
        let words = match lex::lex(&sl.text) {
            Lexed::Blank | Lexed::Comment => continue,
            Lexed::Words(w) => w,
        };
        match parse::parse_words(&words, host) {
            Ok(line) => compiled.push(Compiled { source: sl, line }),
            Err(e) => errors.push(CompileError::Line { location: sl.location(), message: e.to_string() }),
        }
    }
    let (desired, settings) = simulate(&compiled, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let newer_syscalls = compiled
        .iter()
        .filter_map(|c| match &c.line {
            Line::Rule(r) if !r.newer_syscalls.is_empty() => Some((c.source.location(), r.newer_syscalls.clone())),
            _ => None,
        })
        .collect();
    Ok(RuleSet { lines: compiled, desired, settings, newer_syscalls, ignored_url_controls: Vec::new() })
}

/// Compile several sources (files or rules.d directories), combined in order.
pub fn compile_paths(paths: &[&Path], host: &dyn Host) -> Result<RuleSet, Vec<CompileError>> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match source::read_path(p) {
            Ok(l) => lines.extend(l),
            Err(e) => errors.push(CompileError::Source(e)),
        }
    }
    match compile_lines(lines, host) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

/// Compile sources as configured: files, rules.d directories and http(s) URLs (fetched through
/// `fetcher`, checked against `pins`, their control lines per `url_controls`), combined in order.
/// No sources means the embedded rules/default.rules. Also returns how each URL was obtained.
pub fn compile_sources(
    sources: &[String],
    pins: &BTreeMap<String, String>,
    fetcher: &Fetcher,
    url_controls: UrlControls,
    host: &dyn Host,
) -> Result<(RuleSet, Vec<Fetched>), Vec<CompileError>> {
    compile_sources_with(sources, pins, &|url, pin| fetcher.fetch(url, pin), url_controls, host)
}

/// How a URL source is obtained: (url, pin) → the body.
pub type FetchFn<'a> = dyn Fn(&str, Option<&str>) -> Result<Fetched, FetchError> + 'a;

/// [`compile_sources`] with URL sources obtained through `fetch` (e.g. only from the cache).
pub fn compile_sources_with(
    sources: &[String],
    pins: &BTreeMap<String, String>,
    fetch: &FetchFn<'_>,
    url_controls: UrlControls,
    host: &dyn Host,
) -> Result<(RuleSet, Vec<Fetched>), Vec<CompileError>> {
    if sources.is_empty() {
        return compile_text("(embedded) rules/default.rules", crate::rules::config::DEFAULT_RULES, host)
            .map(|s| (s, Vec::new()));
    }
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut fetched = Vec::new();
    let mut ignored = Vec::new();
    for src in sources {
        if fetch::is_url(src) {
            match fetch(src, pins.get(src).map(String::as_str)) {
                Ok(f) => {
                    match source::lines_of(Path::new(src), f.text.as_bytes()) {
                        Ok(l) => {
                            for line in l {
                                if url_controls == UrlControls::Ignore && is_kernel_control(&line.text, host) {
                                    ignored.push(format!("{}: `{}`", line.location(), line.text.trim()));
                                } else {
                                    lines.push(line);
                                }
                            }
                        }
                        Err(e) => errors.push(CompileError::Source(e)),
                    }
                    fetched.push(f);
                }
                Err(e) => errors.push(CompileError::Fetch(e)),
            }
        } else {
            match source::read_path(Path::new(src)) {
                Ok(l) => lines.extend(l),
                Err(e) => errors.push(CompileError::Source(e)),
            }
        }
    }
    match compile_lines(lines, host) {
        Ok(set) if errors.is_empty() => Ok((RuleSet { ignored_url_controls: ignored, ..set }, fetched)),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

/// Compile text that was not read from disk (embedded defaults, fetched sets).
pub fn compile_text(name: &str, text: &str, host: &dyn Host) -> Result<RuleSet, Vec<CompileError>> {
    let lines = source::lines_of(Path::new(name), text.as_bytes()).map_err(|e| vec![CompileError::Source(e)])?;
    compile_lines(lines, host)
}

#[derive(Debug, Serialize)]
pub struct JsonField {
    pub name: String,
    pub op: String,
    pub value: serde_json::Value,
}

/// One kernel rule as `rules compile --format json` prints it.
#[derive(Debug, Serialize)]
pub struct JsonRule {
    pub source: String,
    pub op: &'static str,
    pub list: String,
    pub action: String,
    /// `"all"` or the syscall names (numbers where no name is known).
    pub syscalls: serde_json::Value,
    pub fields: Vec<JsonField>,
    /// The exact `audit_rule_data` bytes sent to the kernel, hex.
    pub hex: String,
}

fn json_fields(r: &RuleData) -> Vec<JsonField> {
    r.fields
        .iter()
        .map(|f| {
            let name = if f.field == data::F_FIELD_COMPARE {
                "field_compare".to_string()
            } else {
                lookup::field_name(f.field).map(str::to_string).unwrap_or_else(|| format!("f{}", f.field))
            };
            let value = if f.field == data::F_FILTERKEY {
                serde_json::Value::from(
                    f.text_lossy().split(data::KEY_SEPARATOR as char).map(str::to_string).collect::<Vec<_>>(),
                )
            } else if f.text.is_some() {
                serde_json::Value::from(f.text_lossy())
            } else if f.field == data::F_ARCH {
                serde_json::Value::from(
                    Machine::from_elf(f.value)
                        .map(|m| m.list_name().to_string())
                        .unwrap_or_else(|| format!("{:#x}", f.value)),
                )
            } else if f.field == data::F_FIELD_COMPARE {
                let pair = parse::compare_pairs().iter().find(|(c, _, _)| *c == f.value).map(|(_, a, b)| {
                    format!("{}:{}", lookup::field_name(*a).unwrap_or("?"), lookup::field_name(*b).unwrap_or("?"))
                });
                serde_json::Value::from(pair.unwrap_or_else(|| f.value.to_string()))
            } else {
                serde_json::Value::from(f.value as i32)
            };
            JsonField { name, op: Op::from_raw(f.op).to_string(), value }
        })
        .collect()
}

fn json_syscalls(r: &RuleData) -> serde_json::Value {
    if r.list() == data::FILTER_TASK && r.mask.iter().all(|w| *w == 0) {
        return serde_json::Value::Array(Vec::new());
    }
    if r.mask_is_all() {
        return serde_json::Value::from("all");
    }
    let machine = r
        .fields
        .iter()
        .rev()
        .find(|f| f.field == data::F_ARCH)
        .and_then(|f| Machine::from_elf(f.value))
        .unwrap_or(Machine::X86_64);
    let uring = r.list() == data::FILTER_URING_EXIT;
    serde_json::Value::from(
        r.syscalls()
            .map(|nr| {
                let name = if uring { lookup::uringop_name(nr) } else { lookup::syscall_any_name(machine, nr) };
                name.map(str::to_string).unwrap_or_else(|| nr.to_string())
            })
            .collect::<Vec<_>>(),
    )
}

impl RuleSet {
    /// One JSON object per kernel rule line (adds, prepends and deletes, in source order).
    pub fn json_rules(&self) -> Vec<JsonRule> {
        self.lines
            .iter()
            .filter_map(|c| match &c.line {
                Line::Rule(r) => Some(JsonRule {
                    source: c.source.location(),
                    op: match r.op {
                        RuleOp::Append => "append",
                        RuleOp::Prepend => "prepend",
                        RuleOp::Delete => "delete",
                    },
                    list: List::from_flags(r.data.flags).to_string(),
                    action: Action::from_raw(r.data.action).to_string(),
                    syscalls: json_syscalls(&r.data),
                    fields: json_fields(&r.data),
                    hex: data::hex(&r.data.encode()),
                }),
                Line::Control(_) => None,
            })
            .collect()
    }

    pub fn controls(&self) -> impl Iterator<Item = (&SourceLine, &Control)> {
        self.lines.iter().filter_map(|c| match &c.line {
            Line::Control(ctl) => Some((&c.source, ctl)),
            Line::Rule(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHost;
    impl Host for NoHost {
        fn is_dir(&self, path: &str) -> bool {
            path == "/etc"
        }
        fn uid_by_name(&self, _: &str) -> Option<u32> {
            None
        }
        fn gid_by_name(&self, _: &str) -> Option<u32> {
            None
        }
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text =
            "-w /etc/hosts -p wa\n-a always,exit -S nosuch\n# fine\n-a always,exit -F uid=nobody-xyz -S openat\n";
        let errs = compile_text("x.rules", text, &NoHost).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("x.rules:2: `nosuch`"), "{}", msgs[0]);
        assert!(msgs[1].starts_with("x.rules:4: `-F uid=nobody-xyz`"), "{}", msgs[1]);
    }

    #[test]
    fn desired_state_follows_auditctl_order() {
        let text = "-D\n-b 8192\n-a always,exit -F arch=b64 -S openat -k a\n-A always,exit -F arch=b64 -S execve -k b\n-w /etc/hosts -k c\n-a never,exclude -F msgtype=CWD\n-W /etc/hosts -k c\n-e 1\n";
        let set = compile_text("x.rules", text, &NoHost).unwrap();
        let listing = crate::rules::print::listing(&set.desired);
        assert_eq!(
            listing,
            "-a always,exit -F arch=b64 -S execve -F key=b\n-a always,exit -F arch=b64 -S openat -F key=a\n-a never,exclude -F msgtype=CWD\n"
        );
        assert_eq!(set.settings.backlog_limit, Some(8192));
        assert_eq!(set.settings.enabled, Some(1));
    }

    #[test]
    fn duplicates_and_missing_deletes_are_errors() {
        let errs =
            compile_text("x.rules", "-w /etc/hosts\n-w /etc/hosts\n-d always,exit -S openat\n", &NoHost).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(msgs[0].starts_with("x.rules:2:") && msgs[0].contains("already"), "{msgs:?}");
        assert!(msgs[1].starts_with("x.rules:3:") && msgs[1].contains("not loaded"), "{msgs:?}");
    }

    #[test]
    fn delete_all_with_key() {
        let set = compile_text("x.rules", "-w /etc/a -k keep\n-w /etc/b -k drop\n-D -k drop\n", &NoHost).unwrap();
        assert_eq!(crate::rules::print::listing(&set.desired), "-w /etc/a -p rwxa -k keep\n");
    }

    #[test]
    fn configured_sources() {
        let fetcher = Fetcher::new(std::time::Duration::from_secs(1), None);
        let (set, fetched) = compile_sources(&[], &BTreeMap::new(), &fetcher, UrlControls::Ignore, &NoHost).unwrap();
        assert!(set.desired.len() >= 10);
        assert!(fetched.is_empty());
        // Nothing listens on port 9 of localhost: the error names the URL.
        let url = "http://127.0.0.1:9/x.rules".to_string();
        let errs =
            compile_sources(std::slice::from_ref(&url), &BTreeMap::new(), &fetcher, UrlControls::Ignore, &NoHost)
                .unwrap_err();
        assert!(errs[0].to_string().starts_with(&url), "{}", errs[0]);
    }

    /// Regression: control lines from a URL were applied, so whoever controls the rule server (or
    /// the path to it) could switch auditing off with `-e 0`.
    #[test]
    fn url_control_lines_are_ignored_unless_applied() {
        let body =
            "-D\n-e 0\n-b 1\n-f 0\n-r 5\n--backlog_wait_time 0\n--loginuid-immutable\n-i\n-w /etc/hosts -p wa -k web\n";
        let fetch = |url: &str, _: Option<&str>| {
            Ok(Fetched { url: url.into(), text: body.into(), sha256: String::new(), origin: fetch::Origin::Fresh })
        };
        let dir = std::env::temp_dir().join(format!("auditrelay-urlctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let local = dir.join("local.rules");
        std::fs::write(&local, "-b 8192\n-w /etc/passwd -p wa -k local\n").unwrap();
        let sources = vec![local.display().to_string(), "https://rules.example.org/web.rules".to_string()];
        let pins = BTreeMap::new();
        let (set, _) = compile_sources_with(&sources, &pins, &fetch, UrlControls::Ignore, &NoHost).unwrap();
        assert_eq!(set.settings, Settings { backlog_limit: Some(8192), ..Settings::default() });
        assert_eq!(set.desired.len(), 2, "the URL's -D does not delete the local rule");
        assert_eq!(set.ignored_url_controls.len(), 7, "{:?}", set.ignored_url_controls);
        assert!(set.ignored_url_controls[1].ends_with(":2: `-e 0`"), "{:?}", set.ignored_url_controls);
        let (set, _) = compile_sources_with(&sources, &pins, &fetch, UrlControls::Apply, &NoHost).unwrap();
        assert_eq!(set.settings.enabled, Some(0));
        assert_eq!(set.desired.len(), 1);
        assert!(set.ignored_url_controls.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_shape() {
        let set = compile_text(
            "x.rules",
            "-a always,exit -F arch=b64 -S execve,fchmodat2 -F exe!=/bin/sh -C uid!=auid -k k1 -k k2\n",
            &NoHost,
        )
        .unwrap();
        let j = serde_json::to_value(set.json_rules()).unwrap();
        assert_eq!(j[0]["source"], "x.rules:1");
        assert_eq!(j[0]["list"], "exit");
        assert_eq!(j[0]["syscalls"], serde_json::json!(["execve", "fchmodat2"]));
        assert_eq!(j[0]["fields"][0], serde_json::json!({"name": "arch", "op": "=", "value": "b64"}));
        assert_eq!(j[0]["fields"][1], serde_json::json!({"name": "exe", "op": "!=", "value": "/bin/sh"}));
        assert_eq!(j[0]["fields"][2], serde_json::json!({"name": "field_compare", "op": "!=", "value": "uid:auid"}));
        assert_eq!(j[0]["fields"][3], serde_json::json!({"name": "key", "op": "=", "value": ["k1", "k2"]}));
        assert_eq!(set.newer_syscalls, vec![("x.rules:1".to_string(), vec!["fchmodat2".to_string()])]);
        let hex = j[0]["hex"].as_str().unwrap();
        assert_eq!(
            RuleData::decode(&data::unhex(hex).unwrap()).unwrap(),
            match &set.lines[0].line {
                Line::Rule(r) => r.data.clone(),
                Line::Control(_) => unreachable!(),
            }
        );
    }
}
