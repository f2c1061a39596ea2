//! Interpretation: what an event's raw records mean, added beside them (schema v2, docs/schema.md).
//!
//! ```text
//! Event (raw records) ──▶ Enricher::interpret ──▶ &Interpretation ──▶ format (JSON members)
//!                          syscall  arch/number → names, exit → errno name
//!                          process  pid, comm/exe/cwd (hex decoded), argv (execve), title (proctitle)
//!                          user     ids, "unset", names from the NameCache (never blocks)
//!                          file     PATH records, mode symbolic
//!                          network  SOCKADDR records
//!                          keys     rule keys split at 0x01
//! ```
//!
//! Why a separate pass that the writer reads: every output format (native JSON, ECS, …) needs the
//! same decoded facts; decoding once per event and handing a borrowed view to the writer keeps the
//! formats free of audit knowledge. The raw records are never changed.
//!
//! What a process's consecutive events repeat (the SYSCALL record's subject, CWD, PROCTITLE) is
//! decoded once and taken from `memo` while the bytes stay the same, and
//! [`Interpretation::process_run`] tells a writer when the whole `process` member is the last
//! event's; every lookup in a table or cache is still made for every event.
//!
//! Invariants: one [`Interpretation`] is reused for every event — its text lives in one byte buffer
//! and its lists keep their capacity — so steady-state enrichment allocates nothing per event
//! (names enter the cache once per id per TTL). Decoding never fails an event: what cannot be
//! decoded is left out of the interpretation and is still in the raw records. Nothing here blocks:
//! the only slow source (NSS) is behind [`user::NameCache`].

mod aarch64_table;
pub mod exe_hash;
pub mod execve;
pub mod file;
pub mod hex;
pub mod host;
pub mod keys;
mod memo;
pub mod network;
pub mod proc_lookup;
pub mod process;
pub mod proctitle;
pub mod syscall;
pub mod user;
mod worker;

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::reassemble::Event;
use crate::record::{FieldRef, MessageType, Quoting, Record};
use crate::units::{de_duration, de_size};
use network::SockAddr;
use process::ProcessTable;
use syscall::Arch;
use user::{CacheBounds, Id, IdKind, NameCache};

/// A span of [`Interpretation`]'s text buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Text {
    start: u32,
    end: u32,
}

impl Text {
    fn new(start: usize, end: usize) -> Text {
        // The buffer holds one event's decoded text: bounded by the event's size (< 4 GiB).
        Text { start: start as u32, end: end as u32 }
    }

    /// The bytes of this span in `text` (empty if out of range).
    pub fn get(self, text: &[u8]) -> &[u8] {
        text.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// `[enrich]`: interpretation on or off, and its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Add the schema v2 members (off: schema v1, raw records only).
    pub enabled: bool,
    /// The `host` member; default the kernel's hostname.
    pub host: Option<String>,
    /// Resolve user and group names (`uid_name`, …) through NSS, in the background.
    pub names: bool,
    /// Ids kept in the name cache (least recently used evicted).
    pub name_cache_size: usize,
    /// A cached name is looked up again after this long.
    #[serde(deserialize_with = "de_duration")]
    pub name_ttl: Duration,
    /// Lookups waiting for the resolver thread at most; more are dropped and asked again later.
    pub name_queue: usize,
    /// Decoded `process.argv` bytes per event at most (the raw EXECVE records keep everything).
    #[serde(deserialize_with = "de_size")]
    pub max_argv_bytes: u64,
    /// Processes kept in the process table (`process.parent`, `process.container_id`); 0: none.
    pub process_table_size: usize,
    /// Bytes of each process's arguments kept in the table (`process.parent.argv`).
    #[serde(deserialize_with = "de_size")]
    pub process_argv_bytes: u64,
    /// `process.exe_sha256`, computed on a background thread (`run` only).
    pub exe_hash: bool,
    /// Executables whose digests are kept.
    pub exe_hash_cache_size: usize,
    /// Requests waiting for the hasher thread at most.
    pub exe_hash_queue: usize,
    /// Bytes the hasher reads per second at most.
    #[serde(deserialize_with = "de_size")]
    pub exe_hash_bytes_per_second: u64,
    /// A known executable's metadata are checked again after this long.
    #[serde(deserialize_with = "de_duration")]
    pub exe_hash_recheck: Duration,
    /// Reads of /proc per second at most for processes the table never saw (`run` only); 0: none.
    pub proc_lookups_per_second: u32,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            enabled: true,
            host: None,
            names: true,
            name_cache_size: 4096,
            name_ttl: Duration::from_secs(600),
            name_queue: 256,
            max_argv_bytes: 64 << 10,
            process_table_size: 16_384,
            process_argv_bytes: 1 << 10,
            exe_hash: false,
            exe_hash_cache_size: 1024,
            exe_hash_queue: 64,
            exe_hash_bytes_per_second: 32 << 20,
            exe_hash_recheck: Duration::from_secs(300),
            proc_lookups_per_second: 200,
        }
    }
}

impl EnrichConfig {
    /// Reject bounds outside what makes sense; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(16..=1_000_000).contains(&self.name_cache_size) {
            return Err(format!("enrich.name_cache_size must be between 16 and 1000000, not {}", self.name_cache_size));
        }
        if self.name_ttl < Duration::from_secs(1) || self.name_ttl > Duration::from_secs(86_400) {
            return Err("enrich.name_ttl must be between 1s and 1d".into());
        }
        if !(1..=65_536).contains(&self.name_queue) {
            return Err(format!("enrich.name_queue must be between 1 and 65536, not {}", self.name_queue));
        }
        if !(1 << 10..=16 << 20).contains(&self.max_argv_bytes) {
            return Err("enrich.max_argv_bytes must be between 1KiB and 16MiB".into());
        }
        if self.process_table_size != 0 && !(16..=1_000_000).contains(&self.process_table_size) {
            return Err(format!(
                "enrich.process_table_size must be 0 (off) or between 16 and 1000000, not {}",
                self.process_table_size
            ));
        }
        if self.process_argv_bytes > 64 << 10 {
            return Err("enrich.process_argv_bytes must be at most 64KiB".into());
        }
        if !(16..=1_000_000).contains(&self.exe_hash_cache_size) {
            return Err(format!(
                "enrich.exe_hash_cache_size must be between 16 and 1000000, not {}",
                self.exe_hash_cache_size
            ));
        }
        if !(1..=65_536).contains(&self.exe_hash_queue) {
            return Err(format!("enrich.exe_hash_queue must be between 1 and 65536, not {}", self.exe_hash_queue));
        }
        if !(64 << 10..=1 << 30).contains(&self.exe_hash_bytes_per_second) {
            return Err("enrich.exe_hash_bytes_per_second must be between 64KiB and 1GiB".into());
        }
        if self.exe_hash_recheck < Duration::from_secs(1) || self.exe_hash_recheck > Duration::from_secs(86_400) {
            return Err("enrich.exe_hash_recheck must be between 1s and 1d".into());
        }
        if self.proc_lookups_per_second > 100_000 {
            return Err(format!(
                "enrich.proc_lookups_per_second must be between 0 (off) and 100000, not {}",
                self.proc_lookups_per_second
            ));
        }
        if let Some(host) = &self.host {
            if host.is_empty() || host.len() > 255 || host.chars().any(char::is_control) {
                return Err("enrich.host must be 1 to 255 characters without control characters".into());
            }
        }
        Ok(())
    }
}

/// The daemon's process table seeded from /proc, when enrichment and the table are on. Called at
/// start before capabilities are dropped (a process's `exe` link of another user needs
/// CAP_SYS_PTRACE); never by replay, whose output must not depend on the replaying host. Logs
/// what it read and how long it took.
pub fn seeded_process_table(config: &EnrichConfig) -> Option<ProcessTable> {
    if !config.enabled || config.process_table_size == 0 {
        return None;
    }
    let mut table = ProcessTable::new(config.process_table_size, config.process_argv_bytes as usize);
    let started = Instant::now();
    match process::seed_from_proc(&mut table, std::path::Path::new("/proc")) {
        Ok(r) => log::info!(
            "process table: {} processes read from /proc in {} ms ({} ended while read; {} kept, [enrich] process_table_size = {})",
            r.processes,
            started.elapsed().as_millis(),
            r.unreadable,
            table.len(),
            config.process_table_size
        ),
        Err(e) => log::warn!("process table: /proc not read ({e}); parents are learnt from events only"),
    }
    Some(table)
}

/// The daemon's /proc lookups for processes the table never saw, when the table is kept and
/// `[enrich] proc_lookups_per_second` is not 0 (never for replay: the replaying host's processes
/// are not the recorded machine's).
pub fn daemon_proc_lookups(config: &EnrichConfig) -> Option<proc_lookup::ProcLookups> {
    (config.enabled && config.process_table_size > 0 && config.proc_lookups_per_second > 0).then(|| {
        proc_lookup::ProcLookups::new(
            "/proc".into(),
            config.proc_lookups_per_second,
            config.process_argv_bytes as usize,
        )
    })
}

/// The daemon's executable hasher, when `[enrich] exe_hash` is on (never for replay: the replaying
/// host's files are not the recorded machine's).
pub fn daemon_exe_hashes(config: &EnrichConfig) -> Option<exe_hash::ExeHashes> {
    (config.enabled && config.exe_hash).then(|| {
        exe_hash::ExeHashes::new(exe_hash::HashBounds {
            cache_size: config.exe_hash_cache_size,
            queue: config.exe_hash_queue,
            bytes_per_second: config.exe_hash_bytes_per_second,
            recheck: config.exe_hash_recheck,
        })
    })
}

/// The `user` member's ids, in schema order. Index `i` of [`User::ids`] is `USER_IDS[i]`.
pub const USER_IDS: [&str; 9] = ["uid", "gid", "euid", "suid", "fsuid", "egid", "sgid", "fsgid", "auid"];
/// `<id>_name` member names, same order.
pub const USER_NAMES: [&str; 9] = [
    "uid_name",
    "gid_name",
    "euid_name",
    "suid_name",
    "fsuid_name",
    "egid_name",
    "sgid_name",
    "fsgid_name",
    "auid_name",
];
const USER_KINDS: [IdKind; 9] = [
    IdKind::User,
    IdKind::Group,
    IdKind::User,
    IdKind::User,
    IdKind::User,
    IdKind::Group,
    IdKind::Group,
    IdKind::Group,
    IdKind::User,
];

/// `syscall` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    pub arch: Option<Arch>,
    /// The raw `arch=` text (written when the arch has no name).
    pub arch_raw: Text,
    pub number: Option<u32>,
    pub name: Option<&'static str>,
    pub success: Option<bool>,
    pub exit: Option<i64>,
    pub exit_name: Option<&'static str>,
}

/// `process` member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub comm: Option<Text>,
    pub exe: Option<Text>,
    pub cwd: Option<Text>,
    /// Present when the event has EXECVE records.
    pub argv: Option<execve::Argv>,
    pub args: Vec<Text>,
    pub title: Vec<Text>,
    pub tty: Option<Text>,
    pub ses: Option<Id>,
    /// From the process table: the parent as known (`process.parent`).
    pub parent: Option<Parent>,
    /// `process.parent.argv`, when [`Parent::argv`] is set.
    pub parent_args: Vec<Text>,
    /// From the process table: the container the process runs in (64 hex digits).
    pub container_id: Option<Text>,
    /// SHA-256 of `exe` (`[enrich] exe_hash`, daemon only).
    pub exe_sha256: Option<[u8; 32]>,
}

/// `process.parent` member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parent {
    pub pid: u32,
    pub exe: Option<Text>,
    pub comm: Option<Text>,
    /// The arguments are in [`Process::parent_args`] (true when known).
    pub argv: bool,
    /// Arguments past `process_argv_bytes` were left out.
    pub argv_truncated: bool,
    /// The parent entry's [`process::Entry::version`]: the same (pid, version) has the same facts.
    pub version: u64,
}

impl Process {
    fn is_empty(&self) -> bool {
        self.pid.is_none()
            && self.ppid.is_none()
            && self.comm.is_none()
            && self.exe.is_none()
            && self.cwd.is_none()
            && self.argv.is_none()
            && self.title.is_empty()
            && self.tty.is_none()
            && self.ses.is_none()
            && self.parent.is_none()
            && self.container_id.is_none()
            && self.exe_sha256.is_none()
    }
}

/// `user` member: ids in [`USER_IDS`] order and their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub ids: [Option<Id>; 9],
    pub names: [Option<Text>; 9],
}

/// One entry of `file.paths`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathEntry {
    pub name: Option<Text>,
    pub nametype: Option<Text>,
    pub inode: Option<u64>,
    pub dev: Option<Text>,
    pub mode: Option<Text>,
    pub mode_symbolic: Option<[u8; 10]>,
    pub ouid: Option<Id>,
    pub ogid: Option<Id>,
    pub ouid_name: Option<Text>,
    pub ogid_name: Option<Text>,
}

/// One entry of `network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: SockAddr,
    pub address: Option<Text>,
    pub path: Option<Text>,
    /// The raw `saddr` hex, for families not decoded.
    pub raw: Option<Text>,
}

/// The decoded facts of one event; borrowed from the [`Enricher`] until the next event.
#[derive(Debug, Default)]
pub struct Interpretation {
    text: Vec<u8>,
    pub host: Option<Text>,
    pub syscall: Option<Syscall>,
    pub process: Process,
    pub user: User,
    pub paths: Vec<PathEntry>,
    pub network: Vec<Network>,
    pub keys: Vec<Text>,
    /// The same number in two consecutive interpretations when their `process` members are the
    /// same (see [`memo::Run`]): a writer may copy the member it wrote last.
    pub process_run: u64,
    host_len: usize,
}

impl Interpretation {
    /// The bytes of a span of this interpretation.
    pub fn text(&self, t: Text) -> &[u8] {
        t.get(&self.text)
    }

    pub fn has_process(&self) -> bool {
        !self.process.is_empty()
    }

    pub fn has_user(&self) -> bool {
        self.user.ids.iter().any(Option::is_some)
    }

    /// Back to what the event's records alone gave (`text_len`: the text's length then): what the
    /// tables added — the parent, the container, the exe's hash, the names — goes.
    fn keep_records_part(&mut self, text_len: usize) {
        self.text.truncate(text_len);
        self.process.parent = None;
        self.process.parent_args.clear();
        self.process.container_id = None;
        self.process.exe_sha256 = None;
        self.user.names = Default::default();
        for p in &mut self.paths {
            (p.ouid_name, p.ogid_name) = (None, None);
        }
    }

    fn clear(&mut self) {
        // The host name stays at the start of the buffer for the whole run.
        self.keep_records_part(self.host_len);
        self.syscall = None;
        self.process.pid = None;
        self.process.ppid = None;
        self.process.comm = None;
        self.process.exe = None;
        self.process.cwd = None;
        self.process.argv = None;
        self.process.args.clear();
        self.process.title.clear();
        self.process.tty = None;
        self.process.ses = None;
        self.user.ids = Default::default();
        self.paths.clear();
        self.network.clear();
        self.keys.clear();
    }

    /// Append `f`'s string (quoted as is, bare hex decoded).
    fn untrusted(&mut self, f: &FieldRef<'_>) -> Text {
        let start = self.text.len();
        hex::untrusted_into(f, &mut self.text);
        Text::new(start, self.text.len())
    }

    /// Append `f`'s value as written.
    fn raw(&mut self, value: &[u8]) -> Text {
        let start = self.text.len();
        self.text.extend_from_slice(value);
        Text::new(start, self.text.len())
    }

    /// A string field, unless it is `(null)` or `?`.
    fn string(&mut self, f: Option<FieldRef<'_>>) -> Option<Text> {
        let f = f.filter(|f| !f.is_null() && !f.is_unknown())?;
        Some(self.untrusted(&f))
    }
}

/// Per-event interpretation with its reused buffers and the name cache.
#[derive(Debug)]
pub struct Enricher {
    interpretation: Interpretation,
    names: Option<NameCache>,
    max_argv_bytes: usize,
    scratch: Vec<u8>,
    processes: Option<ProcessTable>,
    lookups: Option<proc_lookup::ProcLookups>,
    hashes: Option<exe_hash::ExeHashes>,
    subject_memo: memo::Subject,
    title_memo: memo::Title,
    cwd_memo: memo::Value,
    run: memo::Run,
    /// Counts interpretations (and observations), so that a caller can tell whether the last one
    /// was of the event it means (see [`Enricher::interpret_repeat`]).
    generation: u64,
    /// What the last interpretation's records alone gave, for a repeat of them.
    records_part: Option<RecordsPart>,
    /// Interpretations that kept the last one's records part (tests check the path is taken).
    #[cfg(test)]
    pub(crate) repeated: u64,
}

/// The part of an interpretation that its event's records alone decide: the text up to where the
/// tables' answers began, and how the records stood to the memos.
#[derive(Debug, Clone, Copy)]
struct RecordsPart {
    text_len: usize,
    subject: memo::Seen,
    cwd: memo::Seen,
    title: memo::Seen,
    execve: bool,
}

impl RecordsPart {
    /// The same records again: what they decoded to is what the memos hold now.
    fn again(self) -> RecordsPart {
        let again = |s: memo::Seen| if s == memo::Seen::Stored { memo::Seen::Repeated } else { s };
        RecordsPart { subject: again(self.subject), cwd: again(self.cwd), title: again(self.title), ..self }
    }
}

impl Enricher {
    /// From validated config, with names resolved through NSS; `None` when enrichment is off.
    pub fn from_config(config: &EnrichConfig) -> Option<Enricher> {
        if !config.enabled {
            return None;
        }
        let names = config.names.then(|| {
            let bounds = CacheBounds { size: config.name_cache_size, ttl: config.name_ttl, queue: config.name_queue };
            NameCache::new(bounds, Box::new(user::nss))
        });
        let processes = (config.process_table_size > 0)
            .then(|| ProcessTable::new(config.process_table_size, config.process_argv_bytes as usize));
        let enricher =
            Enricher::new(host::resolve(config.host.as_deref()).as_deref(), names, config.max_argv_bytes as usize);
        Some(enricher.with_processes(processes))
    }

    /// With a fixed `host` (or none) and an optional name cache.
    pub fn new(host: Option<&str>, names: Option<NameCache>, max_argv_bytes: usize) -> Enricher {
        let mut interpretation = Interpretation::default();
        if let Some(host) = host {
            interpretation.host = Some(interpretation.raw(host.as_bytes()));
            interpretation.host_len = interpretation.text.len();
        }
        Enricher {
            interpretation,
            names,
            max_argv_bytes,
            scratch: Vec::new(),
            processes: None,
            lookups: None,
            hashes: None,
            subject_memo: memo::Subject::default(),
            title_memo: memo::Title::default(),
            cwd_memo: memo::Value::default(),
            run: memo::Run::default(),
            generation: 0,
            records_part: None,
            #[cfg(test)]
            repeated: 0,
        }
    }

    /// With a process table (`process.parent`, `process.container_id`), or without.
    pub fn with_processes(mut self, processes: Option<ProcessTable>) -> Enricher {
        self.processes = processes;
        self
    }

    /// With /proc lookups for processes the table never saw, or without (used only with a table).
    pub fn with_proc_lookups(mut self, lookups: Option<proc_lookup::ProcLookups>) -> Enricher {
        self.lookups = lookups;
        self
    }

    /// The /proc lookups, if made.
    pub fn proc_lookups(&mut self) -> Option<&mut proc_lookup::ProcLookups> {
        self.lookups.as_mut()
    }

    /// With executable hashes (`process.exe_sha256`), or without.
    pub fn with_exe_hashes(mut self, hashes: Option<exe_hash::ExeHashes>) -> Enricher {
        self.hashes = hashes;
        self
    }

    /// The executable hashes, if computed.
    pub fn exe_hashes(&mut self) -> Option<&mut exe_hash::ExeHashes> {
        self.hashes.as_mut()
    }

    /// The process table, if kept.
    pub fn processes(&mut self) -> Option<&mut ProcessTable> {
        self.processes.as_mut()
    }

    /// Use `table` (seeded by [`seeded_process_table`]) as the process table, when kept.
    pub fn set_processes(&mut self, table: ProcessTable) {
        if self.processes.is_some() {
            self.processes = Some(table);
            self.run.interrupt();
        }
    }

    /// Learn from an event that is not written (dropped by a filter): the process table must see
    /// every execve, clone and exit, or later events get wrong or no parents.
    pub fn observe(&mut self, event: &Event) {
        if self.processes.is_none() {
            return;
        }
        self.run.interrupt();
        self.generation = self.generation.wrapping_add(1);
        self.records_part = None;
        let i = &mut self.interpretation;
        i.clear();
        let Some(r) = event.records.iter().find(|r| r.kind == MessageType::SYSCALL) else { return };
        let execve = event.records.iter().any(|r| r.kind == MessageType::EXECVE);
        subject(i, &mut self.subject_memo, r, true, !execve);
        let is_exec = process::Change::of(i.syscall.and_then(|s| s.name)) == process::Change::Exec;
        if is_exec && execve {
            let execs = event.records.iter().filter(|r| r.kind == MessageType::EXECVE);
            i.process.argv = Some(execve::reassemble(execs, &mut i.text, &mut i.process.args, self.max_argv_bytes));
        }
        if let Some(table) = &mut self.processes {
            processes(i, table, None, event, Some(r), false);
        }
    }

    /// Forget what the memos hold, so that the next event is decoded from its records alone (tests
    /// compare that with the memos' answers).
    #[cfg(test)]
    pub(crate) fn forget_memos(&mut self) {
        (self.subject_memo, self.title_memo, self.cwd_memo) = Default::default();
        self.records_part = None;
        self.run.interrupt();
    }

    /// The name cache, if names are resolved.
    pub fn names(&mut self) -> Option<&mut NameCache> {
        self.names.as_mut()
    }

    /// [`Enricher::names`] to read (its counters, for status and metrics).
    pub fn name_cache(&self) -> Option<&NameCache> {
        self.names.as_ref()
    }

    /// Interpret `event`. The result is valid until the next call.
    pub fn interpret(&mut self, event: &Event) -> &Interpretation {
        self.interpret_after(event, None)
    }

    /// The number of the last interpretation (or observation); see [`Enricher::interpret_repeat`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// [`Enricher::interpret`] of an event whose records are, in order and byte for byte after
    /// their stamps, those of the event interpreted as `generation` (the JSON writer's record
    /// memo knows this without another comparison). When nothing was interpreted since, what the
    /// records alone decide is kept and only the tables are asked again: the process table (fed
    /// as always), the exe hashes and the names, which change under a process's feet.
    ///
    /// Why: in a storm every event is the last one again, and decoding its records was half of
    /// what interpretation cost (docs/performance.md, thirteenth round).
    pub(crate) fn interpret_repeat(&mut self, event: &Event, generation: u64) -> &Interpretation {
        self.interpret_after(event, Some(generation))
    }

    fn interpret_after(&mut self, event: &Event, repeats: Option<u64>) -> &Interpretation {
        let now = Instant::now();
        if let Some(names) = &mut self.names {
            names.drain(now);
        }
        let repeat = self.records_part.filter(|_| repeats == Some(self.generation));
        self.generation = self.generation.wrapping_add(1);
        let records = &event.records[..];
        // Process and user facts: the SYSCALL record's, else the first record that has a pid
        // (user-space messages: USER_LOGIN, USER_CMD, … carry pid, uid, auid, ses).
        let syscall = records.iter().find(|r| r.kind == MessageType::SYSCALL);
        let part = match repeat {
            Some(part) => {
                #[cfg(test)]
                {
                    self.repeated += 1;
                }
                self.interpretation.keep_records_part(part.text_len);
                part.again()
            }
            None => self.interpret_records(event, syscall),
        };
        self.records_part = Some(part);
        let i = &mut self.interpretation;
        let mut seen = memo::RunKey {
            subject: part.subject,
            cwd: part.cwd,
            title: part.title,
            argv: part.execve,
            parent: None,
            container: None,
            exe_sha256: None,
        };
        if let Some(table) = &mut self.processes {
            let mut lookups = self.lookups.as_mut();
            if let Some(l) = &mut lookups {
                l.drain(table);
            }
            processes(i, table, lookups, event, syscall, true);
        }
        if let (Some(hashes), Some(exe)) = (&mut self.hashes, i.process.exe) {
            hashes.drain(now);
            // A container's exe path names a file in its own mount namespace, not ours.
            if i.process.container_id.is_none() {
                i.process.exe_sha256 = hashes.lookup(exe.get(&i.text), now);
            }
        }
        if let Some(names) = &mut self.names {
            fill_names(i, names, now);
        }
        seen.parent = i.process.parent.map(|p| (p.pid, p.version));
        seen.container = i.process.container_id.map(|t| t.get(&i.text));
        seen.exe_sha256 = i.process.exe_sha256;
        i.process_run = self.run.next(seen);
        &self.interpretation
    }

    /// The interpretation's part that `event`'s records alone decide (`syscall`: its SYSCALL
    /// record), through the memos.
    fn interpret_records(&mut self, event: &Event, syscall: Option<&Record>) -> RecordsPart {
        let i = &mut self.interpretation;
        i.clear();
        let records = &event.records[..];
        let mut seen = RecordsPart {
            text_len: 0,
            subject: memo::Seen::Absent,
            cwd: memo::Seen::Absent,
            title: memo::Seen::Absent,
            execve: false,
        };
        // An exec's process is a new program whose next event repeats little of this one (an
        // exec storm: a new process every event), so its records are not kept.
        let execve = records.iter().any(|r| r.kind == MessageType::EXECVE);
        let keep = !execve;
        if let Some(r) = syscall.or_else(|| records.iter().find(|r| r.get(b"pid").is_some())) {
            seen.subject = subject(i, &mut self.subject_memo, r, syscall.is_some(), keep);
        }
        for r in records {
            match r.kind {
                MessageType::CWD if i.process.cwd.is_none() => {
                    if let Some(f) = r.get(b"cwd").filter(|f| !f.is_null() && !f.is_unknown()) {
                        let start = i.text.len();
                        seen.cwd = self.cwd_memo.decode_into(&f, &mut i.text, keep);
                        i.process.cwd = Some(Text::new(start, i.text.len()));
                    }
                }
                MessageType::PROCTITLE if i.process.title.is_empty() => {
                    if let Some(f) = r.get(b"proctitle") {
                        seen.title = self.title_memo.split_into(&f, &mut i.text, &mut i.process.title, keep);
                    }
                }
                MessageType::PATH => path_entry(i, r),
                MessageType::SOCKADDR => {
                    if let Some(f) = r.get(b"saddr") {
                        network_entry(i, &f, &mut self.scratch);
                    }
                }
                _ => {}
            }
        }
        if execve {
            let execs = records.iter().filter(|r| r.kind == MessageType::EXECVE);
            let argv = execve::reassemble(execs, &mut i.text, &mut i.process.args, self.max_argv_bytes);
            if argv.incomplete {
                log::debug!(
                    "event {}: argv incomplete (argc {:?}, {} arguments)",
                    event.id,
                    argv.argc,
                    i.process.args.len()
                );
            }
            i.process.argv = Some(argv);
        }
        seen.execve = execve;
        seen.text_len = i.text.len();
        seen
    }
}

/// Feed the process table with a SYSCALL event's facts (`syscall`: its SYSCALL record) and, when
/// `lookup`, fill `process.parent` and `process.container_id` from it (see [`process`]). A
/// user-space event (no SYSCALL record) only looks up: its pid is the sender's, the rest of its
/// facts are the message's. With `lookups`, a process the table did not know (the event's, or
/// its parent) is read from /proc for later events (see [`proc_lookup`]).
fn processes(
    i: &mut Interpretation,
    table: &mut ProcessTable,
    mut lookups: Option<&mut proc_lookup::ProcLookups>,
    event: &Event,
    syscall: Option<&Record>,
    lookup: bool,
) {
    let Some(pid) = i.process.pid else { return };
    let Some(r) = syscall else {
        if lookup {
            if let Some(l) = &mut lookups {
                if !table.knows(pid) {
                    l.ask(pid, event.id.unix_millis());
                }
            }
            fill_process_context(i, table, lookups, event, pid);
        }
        return;
    };
    let syscall = i.syscall.unwrap_or(Syscall {
        arch: None,
        arch_raw: Text::default(),
        number: None,
        name: None,
        success: None,
        exit: None,
        exit_name: None,
    });
    let change = process::Change::of(syscall.name);
    let clone_flags = match syscall.name {
        Some("clone") => r.get(b"a0").and_then(|f| u64::from_str_radix(std::str::from_utf8(f.value).ok()?, 16).ok()),
        _ => None,
    };
    let text = &i.text[..];
    let facts = process::Facts {
        pid,
        ppid: i.process.ppid,
        comm: i.process.comm.map(|t| t.get(text)),
        exe: i.process.exe.map(|t| t.get(text)),
        syscall: syscall.name,
        success: syscall.success,
        exit: syscall.exit,
        clone_flags,
        time_ms: event.id.unix_millis(),
    };
    let args = i.process.args.iter().map(|t| t.get(text));
    let new = table.learn(&facts, change, args);
    if lookup {
        if let Some(l) = &mut lookups {
            // A new process whose parent is known took the parent's container id; otherwise
            // only /proc can tell it (an exec tells the program and its arguments, not that).
            if new && !facts.ppid.is_some_and(|p| table.knows(p)) {
                l.ask(pid, facts.time_ms);
            }
        }
        fill_process_context(i, table, lookups, event, pid);
    }
    if change == process::Change::Exit {
        table.exited(pid);
    }
}

/// `process.parent` and `process.container_id` of `pid` from the table; an unknown parent is
/// asked of `lookups` for later events.
fn fill_process_context(
    i: &mut Interpretation,
    table: &mut ProcessTable,
    lookups: Option<&mut proc_lookup::ProcLookups>,
    event: &Event,
    pid: u32,
) {
    let (container, parent) = table.context(pid, i.process.ppid);
    if let Some(id) = container {
        i.process.container_id = Some(i.raw(&id));
    }
    let Some((ppid, e)) = parent else {
        if let (Some(l), Some(ppid)) = (lookups, i.process.ppid) {
            if !table.knows(ppid) {
                l.ask(ppid, event.id.unix_millis());
            }
        }
        return;
    };
    let t = &mut i.text;
    let mut span = |v: &[u8]| {
        let start = t.len();
        t.extend_from_slice(v);
        Text::new(start, t.len())
    };
    let exe = (!e.exe.is_empty()).then(|| span(&e.exe));
    let comm = (!e.comm.is_empty()).then(|| span(&e.comm));
    for a in e.args() {
        let a = span(a);
        i.process.parent_args.push(a);
    }
    let (argv, argv_truncated, version) = (e.argv_known, e.argv_truncated, e.version);
    i.process.parent = Some(Parent { pid: ppid, exe, comm, argv, argv_truncated, version });
}

/// The SYSCALL record's (or a user-space record's) facts, in one pass over its fields: the first
/// occurrence of a key counts, as with [`Record::get`].
///
/// A SYSCALL record is a prefix that changes with every call (`arch syscall success exit a0…a3
/// items`) and a tail from `ppid=` on that a process repeats until it changes (see [`memo`]). When
/// the tail's facts depend on its bytes alone — no tail key came before it, no prefix key comes in
/// it — they are kept (when `keep`), and a record with the same tail takes them without reading it.
fn subject(i: &mut Interpretation, memo: &mut memo::Subject, r: &Record, is_syscall: bool, keep: bool) -> memo::Seen {
    let (mut arch_field, mut number, mut exit, mut success, mut key) = (None, None, None, None, None);
    let mut tty = None;
    // The tail's first field and its text's start, while its facts are its bytes' alone.
    let mut tail: Option<(usize, usize)> = None;
    let mut separable = is_syscall;
    let mut restored = false;
    for (n, f) in r.fields().enumerate() {
        if f.quoting == Quoting::Word {
            continue;
        }
        let slot = match key8(f.key) {
            K_ARCH => {
                separable &= tail.is_none();
                arch_field = arch_field.or(Some(f));
                continue;
            }
            K_SYSCALL => {
                separable &= tail.is_none();
                number = number.or_else(|| parse_u64(f.value).and_then(|n| u32::try_from(n).ok()));
                continue;
            }
            K_EXIT => {
                separable &= tail.is_none();
                exit = exit.or_else(|| parse_i64(f.value));
                continue;
            }
            K_SUCCESS => {
                separable &= tail.is_none();
                success = success.or(match f.value {
                    b"yes" => Some(true),
                    b"no" => Some(false),
                    _ => None,
                });
                continue;
            }
            K_KEY => {
                key = key.or(Some(f));
                continue;
            }
            K_PID => {
                let pid = &mut i.process.pid;
                *pid = pid.or_else(|| parse_u64(f.value).and_then(|n| u32::try_from(n).ok()));
                continue;
            }
            K_PPID => {
                if separable && tail.is_none() {
                    if untouched(i, key, tty) {
                        let rest = r.text_from_field(n);
                        if memo.matches(rest, i.text.len()) {
                            restore(i, memo);
                            restored = true;
                            break;
                        }
                        tail = Some((n, i.text.len()));
                    } else {
                        separable = false;
                    }
                }
                let ppid = &mut i.process.ppid;
                *ppid = ppid.or_else(|| parse_u64(f.value).and_then(|n| u32::try_from(n).ok()));
                continue;
            }
            K_COMM if i.process.comm.is_none() => {
                i.process.comm = i.string(Some(f));
                continue;
            }
            K_EXE if i.process.exe.is_none() => {
                i.process.exe = i.string(Some(f));
                continue;
            }
            K_TTY => {
                tty = tty.or(Some(f));
                continue;
            }
            K_SES => {
                i.process.ses = i.process.ses.or_else(|| Id::parse(f.value));
                continue;
            }
            K_UID => 0,
            K_GID => 1,
            K_EUID => 2,
            K_SUID => 3,
            K_FSUID => 4,
            K_EGID => 5,
            K_SGID => 6,
            K_FSGID => 7,
            K_AUID => 8,
            _ => continue,
        };
        if i.user.ids[slot].is_none() {
            i.user.ids[slot] = Id::parse(f.value);
        }
    }
    let mut seen = memo::Seen::Repeated;
    if !restored {
        i.process.tty = tty.filter(|f| !f.is_null()).map(|f| i.raw(f.value));
        if is_syscall {
            if let Some(f) = key {
                keys::split_into(&f, &mut i.text, &mut i.keys);
            }
        }
        seen = memo::Seen::Unkept;
        if let (true, Some((n, text_start))) = (separable && keep, tail) {
            memo.store(r.text_from_field(n), &i.text, text_start, facts(i), &i.keys);
            seen = memo::Seen::Stored;
        }
    }
    if !is_syscall {
        return seen;
    }
    let arch = arch_field.and_then(|f| Arch::parse(f.value));
    // The raw text is only written for an arch without a name.
    let arch_raw = match arch_field {
        Some(f) if arch.and_then(Arch::name).is_none() => i.raw(f.value),
        _ => Text::default(),
    };
    let failed = success == Some(false) || (success.is_none() && exit.is_some_and(|e| e < 0));
    i.syscall = Some(Syscall {
        arch,
        arch_raw,
        number,
        name: arch.zip(number).and_then(|(a, n)| a.syscall_name(n)),
        success,
        exit,
        exit_name: exit.filter(|_| failed).and_then(syscall::errno_name),
    });
    seen
}

/// No fact of a SYSCALL record's tail has been found yet (before its `ppid=`).
fn untouched(i: &Interpretation, key: Option<FieldRef<'_>>, tty: Option<FieldRef<'_>>) -> bool {
    let p = &i.process;
    key.is_none()
        && tty.is_none()
        && p.pid.is_none()
        && p.ppid.is_none()
        && p.comm.is_none()
        && p.exe.is_none()
        && p.ses.is_none()
        && i.user.ids.iter().all(Option::is_none)
        && i.keys.is_empty()
}

fn facts(i: &Interpretation) -> memo::SubjectFacts {
    let p = &i.process;
    memo::SubjectFacts { pid: p.pid, ppid: p.ppid, comm: p.comm, exe: p.exe, tty: p.tty, ses: p.ses, ids: i.user.ids }
}

fn restore(i: &mut Interpretation, memo: &memo::Subject) {
    memo.restore_text(&mut i.text);
    let (f, p) = (&memo.facts, &mut i.process);
    (p.pid, p.ppid, p.comm, p.exe, p.tty, p.ses) = (f.pid, f.ppid, f.comm, f.exe, f.tty, f.ses);
    i.user.ids = f.ids;
    i.keys.extend_from_slice(&memo.keys);
}

/// A key of up to eight bytes as one integer (zero-padded), so matching a record's keys is integer
/// comparison rather than a `memcmp` call per candidate; longer keys map to 0, which no constant
/// below has. Two overlapping loads (the bytes they share are the same bytes, so OR-ing them is
/// the zero-padded word) instead of a loop per byte: [`key8_const`] is the reference.
#[inline]
fn key8(key: &[u8]) -> u64 {
    let n = key.len();
    if n == 0 || n > 8 {
        return 0;
    }
    if let (Some(lo), Some(hi)) = (key.first_chunk::<4>(), key.last_chunk::<4>()) {
        return u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << ((n - 4) * 8);
    }
    // One to three bytes: first, middle and last (repeats overlap the same way).
    let (first, mid, last) = (u64::from(key[0]), u64::from(key[n / 2]), u64::from(key[n - 1]));
    first | mid << (n / 2 * 8) | last << ((n - 1) * 8)
}

/// [`key8`] for the constants below.
const fn key8_const(key: &[u8]) -> u64 {
    if key.is_empty() || key.len() > 8 {
        return 0;
    }
    let mut w = [0u8; 8];
    let mut n = 0;
    while n < key.len() {
        w[n] = key[n];
        n += 1;
    }
    u64::from_le_bytes(w)
}

const K_ARCH: u64 = key8_const(b"arch");
const K_SYSCALL: u64 = key8_const(b"syscall");
const K_EXIT: u64 = key8_const(b"exit");
const K_SUCCESS: u64 = key8_const(b"success");
const K_KEY: u64 = key8_const(b"key");
const K_PID: u64 = key8_const(b"pid");
const K_PPID: u64 = key8_const(b"ppid");
const K_COMM: u64 = key8_const(b"comm");
const K_EXE: u64 = key8_const(b"exe");
const K_TTY: u64 = key8_const(b"tty");
const K_SES: u64 = key8_const(b"ses");
const K_UID: u64 = key8_const(b"uid");
const K_GID: u64 = key8_const(b"gid");
const K_EUID: u64 = key8_const(b"euid");
const K_SUID: u64 = key8_const(b"suid");
const K_FSUID: u64 = key8_const(b"fsuid");
const K_EGID: u64 = key8_const(b"egid");
const K_SGID: u64 = key8_const(b"sgid");
const K_FSGID: u64 = key8_const(b"fsgid");
const K_AUID: u64 = key8_const(b"auid");
const K_NAME: u64 = key8_const(b"name");
const K_NAMETYPE: u64 = key8_const(b"nametype");
const K_INODE: u64 = key8_const(b"inode");
const K_DEV: u64 = key8_const(b"dev");
const K_MODE: u64 = key8_const(b"mode");
const K_OUID: u64 = key8_const(b"ouid");
const K_OGID: u64 = key8_const(b"ogid");

/// A decimal number as the kernel writes it (no sign, no spaces), without going through `str`.
pub(crate) fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in text {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// [`parse_u64`] with an optional leading `-` (`exit=-2`).
fn parse_i64(text: &[u8]) -> Option<i64> {
    match text.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits).and_then(|n| 0i64.checked_sub_unsigned(n)),
        None => parse_u64(text).and_then(|n| i64::try_from(n).ok()),
    }
}

/// One PATH record, in one pass over its fields (first occurrence of a key counts).
fn path_entry(i: &mut Interpretation, r: &Record) {
    let mut p = PathEntry::default();
    for f in r.fields() {
        if f.quoting == Quoting::Word {
            continue;
        }
        match key8(f.key) {
            K_NAME if p.name.is_none() => p.name = i.string(Some(f)),
            K_NAMETYPE if p.nametype.is_none() => p.nametype = Some(i.raw(f.value)),
            K_INODE if p.inode.is_none() => p.inode = parse_u64(f.value),
            K_DEV if p.dev.is_none() => p.dev = Some(i.raw(f.value)),
            K_MODE if p.mode.is_none() => {
                p.mode = Some(i.raw(f.value));
                p.mode_symbolic = file::parse_mode(f.value).map(file::mode_symbolic);
            }
            K_OUID if p.ouid.is_none() => p.ouid = Id::parse(f.value),
            K_OGID if p.ogid.is_none() => p.ogid = Id::parse(f.value),
            _ => {}
        }
    }
    i.paths.push(p);
}

fn network_entry(i: &mut Interpretation, f: &FieldRef<'_>, scratch: &mut Vec<u8>) {
    let addr = network::decode(f.value, scratch, &mut i.text);
    let span = |r: Option<(usize, usize)>| r.map(|(s, e)| Text::new(s, e));
    let raw = if addr.raw { Some(i.raw(f.value)) } else { None };
    i.network.push(Network { addr, address: span(addr.address), path: span(addr.path), raw });
}

/// Names for the event's ids. Most ids of one event are the same (all 0, or one user's), so
/// each distinct (kind, id) is looked up and copied once and its span shared.
fn fill_names(i: &mut Interpretation, names: &mut NameCache, now: Instant) {
    let mut seen: [(IdKind, u32, Option<Text>); 8] = [(IdKind::User, 0, None); 8];
    let mut seen_len = 0;
    let mut name_of = |i: &mut Interpretation, kind: IdKind, id: u32| -> Option<Text> {
        if let Some((_, _, t)) = seen[..seen_len].iter().find(|(k, n, _)| *k == kind && *n == id) {
            return *t;
        }
        let text = names.lookup(kind, id, now).map(|name| {
            let start = i.text.len();
            i.text.extend_from_slice(name.as_bytes());
            Text::new(start, i.text.len())
        });
        if seen_len < seen.len() {
            seen[seen_len] = (kind, id, text);
            seen_len += 1;
        }
        text
    };
    for (slot, kind) in USER_KINDS.iter().enumerate() {
        if let Some(id) = i.user.ids[slot].and_then(Id::get) {
            i.user.names[slot] = name_of(i, *kind, id);
        }
    }
    for p in 0..i.paths.len() {
        if let Some(id) = i.paths[p].ouid.and_then(Id::get) {
            i.paths[p].ouid_name = name_of(i, IdKind::User, id);
        }
        if let Some(id) = i.paths[p].ogid.and_then(Id::get) {
            i.paths[p].ogid_name = name_of(i, IdKind::Group, id);
        }
    }
}

#[cfg(test)]
mod tests;
