//! `[[filter]]`: drop events, or keep only some, before they reach the spool.
//!
//! Why before the spool and in the processing thread: a dropped event should cost neither disk nor
//! any output's conversion, and the decision needs the parsed records (quoting, hex), which only
//! exist there. Filters run on reassembled events, after every other stage has seen them: anything
//! that must learn from every event (a process table fed by execve/clone/exit) sits before
//! [`Filters::decide`] in the pipeline, so filtering never blinds it.
//!
//! Semantics, in config order:
//! - a filter *matches* an event when every criterion it sets matches (AND across keys); a
//!   criterion matches when any of its listed values does (OR within a key);
//! - `action = "drop"`: a matching event is dropped; `action = "keep"`: an event that does not
//!   match is dropped (keep-only);
//! - the first filter that drops an event counts it; later filters do not see it;
//! - loss notices and unparsed-record lines are never filtered (loss stays visible).
//!
//! Criteria and what they look at:
//! | key | matches when |
//! |---|---|
//! | `record_type` | any record's type is one of these names (`SYSCALL`, `USER_LOGIN`, `UNKNOWN[1999]`) or numbers |
//! | `syscall` | the SYSCALL record's syscall is one of these names, in the table of its `arch` (x86_64, i386) |
//! | `key` | any of the event's rule keys (`key=` of its records, several keys split at 0x01) is one of these |
//! | `uid`, `auid` | the first record that has the field has one of these ids (`"unset"` = 4294967295) |
//! | `exe`, `comm` | the SYSCALL (or first) record's value, hex decoded, matches one of these globs (`*` any run, `?` one byte) |
//! | `address`, `port` | one SOCKADDR of the event is inet/inet6 with an address in one of these CIDRs and/or a port in the list (both set: the same sockaddr must satisfy both) |
//!
//! Invariants: every drop is counted per filter ([`FilterStats`]); a config that names an unknown
//! record type or syscall, a bad CIDR, a glob-less empty pattern or a filter without criteria is
//! rejected at load with the filter's name and the key.

use std::net::IpAddr;

use serde::Deserialize;

use crate::reassemble::Event;
use crate::record::{FieldRef, MessageType, Quoting, Record};
use crate::rules::lookup::{self, Machine};

/// `action = …` of a `[[filter]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// Drop the events the filter matches.
    Drop,
    /// Keep only the events the filter matches.
    Keep,
}

impl FilterAction {
    pub fn name(self) -> &'static str {
        match self {
            FilterAction::Drop => "drop",
            FilterAction::Keep => "keep",
        }
    }
}

/// An id in `uid`/`auid`: a number, or `"unset"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdValue {
    Number(u32),
    Name(String),
}

/// One `[[filter]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Name in stats and errors; default `filter-<index>`.
    pub name: Option<String>,
    pub action: FilterAction,
    #[serde(default)]
    pub record_type: Vec<String>,
    #[serde(default)]
    pub syscall: Vec<String>,
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default)]
    pub uid: Vec<IdValue>,
    #[serde(default)]
    pub auid: Vec<IdValue>,
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
    #[serde(default)]
    pub address: Vec<String>,
    #[serde(default)]
    pub port: Vec<u16>,
}

/// A filter table that cannot be used; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[[filter]] {filter}: {key}: {message}")]
pub struct FilterError {
    pub filter: String,
    pub key: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One compiled filter.
#[derive(Debug, Clone)]
struct Filter {
    name: String,
    action: FilterAction,
    record_types: Vec<MessageType>,
    /// (machine, syscall number) pairs.
    syscalls: Vec<(Machine, u32)>,
    keys: Vec<Vec<u8>>,
    uids: Vec<u32>,
    auids: Vec<u32>,
    exe: Vec<Vec<u8>>,
    comm: Vec<Vec<u8>>,
    cidrs: Vec<Cidr>,
    ports: Vec<u16>,
}

/// Drop counts, for `status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Events the filters looked at.
    pub seen: u64,
    /// Events dropped by any filter.
    pub dropped: u64,
    /// Per filter, in config order.
    pub filters: Vec<FilterCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCount {
    pub name: String,
    pub action: &'static str,
    pub dropped: u64,
}

/// What [`Filters::decide`] says about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// Dropped by the filter at this index (config order).
    Drop(usize),
}

/// The compiled `[[filter]]` tables and their counters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    filters: Vec<Filter>,
    stats: FilterStats,
}

impl Filters {
    /// Compile and check the tables (the config's load-time validation calls this).
    pub fn compile(configs: &[FilterConfig]) -> Result<Filters, FilterError> {
        let mut filters = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let name = c.name.clone().unwrap_or_else(|| format!("filter-{i}"));
            let err = |key: &'static str, message: String| FilterError { filter: name.clone(), key, message };
            if filters.iter().any(|f: &Filter| f.name == name) {
                return Err(err("name", "two filters have this name".into()));
            }
            let mut record_types = Vec::new();
            for t in &c.record_type {
                let kind = t
                    .parse::<u16>()
                    .ok()
                    .map(MessageType)
                    .or_else(|| MessageType::from_name(t.as_bytes()))
                    .ok_or_else(|| err("record_type", format!("{t:?} is not a record type name or number")))?;
                record_types.push(kind);
            }
            let mut syscalls = Vec::new();
            for s in &c.syscall {
                let mut any = false;
                for m in [Machine::X86_64, Machine::I386] {
                    if let Some(nr) = lookup::syscall_by_name(m, s) {
                        syscalls.push((m, nr.nr()));
                        any = true;
                    }
                }
                if !any {
                    return Err(err("syscall", format!("{s:?} is not a syscall name on x86_64 or i386")));
                }
            }
            let ids = |key: &'static str, values: &[IdValue]| -> Result<Vec<u32>, FilterError> {
                values
                    .iter()
                    .map(|v| match v {
                        IdValue::Number(n) => Ok(*n),
                        IdValue::Name(s) if s == "unset" => Ok(u32::MAX),
                        IdValue::Name(s) => {
                            Err(err(key, format!("{s:?}: give a number or \"unset\" (names are not resolved here)")))
                        }
                    })
                    .collect()
            };
            let globs = |key: &'static str, values: &[String]| -> Result<Vec<Vec<u8>>, FilterError> {
                values
                    .iter()
                    .map(|g| {
                        if g.is_empty() {
                            Err(err(key, "an empty pattern matches nothing; use \"*\" for anything".into()))
                        } else {
                            Ok(g.as_bytes().to_vec())
                        }
                    })
                    .collect()
            };
            let mut cidrs = Vec::new();
            for a in &c.address {
                cidrs.push(
                    Cidr::parse(a).ok_or_else(|| {
                        err("address", format!("{a:?} is not an address or CIDR (10.0.0.0/8, ::1/128)"))
                    })?,
                );
            }
            let f = Filter {
                name: name.clone(),
                action: c.action,
                record_types,
                syscalls,
                keys: c.key.iter().map(|k| k.as_bytes().to_vec()).collect(),
                uids: ids("uid", &c.uid)?,
                auids: ids("auid", &c.auid)?,
                exe: globs("exe", &c.exe)?,
                comm: globs("comm", &c.comm)?,
                cidrs,
                ports: c.port.clone(),
            };
            if f.is_empty() {
                return Err(err(
                    "action",
                    "a filter needs at least one of record_type, syscall, key, uid, auid, exe, comm, address, port"
                        .into(),
                ));
            }
            filters.push(f);
        }
        let stats = FilterStats {
            filters: filters
                .iter()
                .map(|f| FilterCount { name: f.name.clone(), action: f.action.name(), dropped: 0 })
                .collect(),
            ..FilterStats::default()
        };
        Ok(Filters { filters, stats })
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Keep or drop `event`, counting the drop against the filter that made it.
    pub fn decide(&mut self, event: &Event) -> Decision {
        if self.filters.is_empty() {
            return Decision::Keep;
        }
        self.stats.seen += 1;
        let facts = Facts::of(event);
        for (i, f) in self.filters.iter().enumerate() {
            let matched = f.matches(&facts);
            let drop = match f.action {
                FilterAction::Drop => matched,
                FilterAction::Keep => !matched,
            };
            if drop {
                self.stats.dropped += 1;
                self.stats.filters[i].dropped += 1;
                return Decision::Drop(i);
            }
        }
        Decision::Keep
    }

    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.record_types.is_empty()
            && self.syscalls.is_empty()
            && self.keys.is_empty()
            && self.uids.is_empty()
            && self.auids.is_empty()
            && self.exe.is_empty()
            && self.comm.is_empty()
            && self.cidrs.is_empty()
            && self.ports.is_empty()
    }

    fn matches(&self, e: &Facts<'_>) -> bool {
        (self.record_types.is_empty() || e.records.iter().any(|r| self.record_types.contains(&r.kind)))
            && (self.syscalls.is_empty() || e.syscall.is_some_and(|s| self.syscalls.contains(&s)))
            && (self.keys.is_empty() || e.keys.iter().any(|k| self.keys.contains(k)))
            && (self.uids.is_empty() || e.uid.is_some_and(|u| self.uids.contains(&u)))
            && (self.auids.is_empty() || e.auid.is_some_and(|u| self.auids.contains(&u)))
            && (self.exe.is_empty() || e.exe.as_deref().is_some_and(|x| self.exe.iter().any(|g| glob(g, x))))
            && (self.comm.is_empty() || e.comm.as_deref().is_some_and(|x| self.comm.iter().any(|g| glob(g, x))))
            && (self.cidrs.is_empty() && self.ports.is_empty()
                || e.sockaddrs.iter().any(|(ip, port)| {
                    (self.cidrs.is_empty() || self.cidrs.iter().any(|c| c.contains(*ip)))
                        && (self.ports.is_empty() || self.ports.contains(port))
                }))
    }
}

/// What the criteria look at, taken from an event once for all filters.
struct Facts<'a> {
    records: &'a [Record],
    syscall: Option<(Machine, u32)>,
    keys: Vec<Vec<u8>>,
    uid: Option<u32>,
    auid: Option<u32>,
    exe: Option<Vec<u8>>,
    comm: Option<Vec<u8>>,
    sockaddrs: Vec<(IpAddr, u16)>,
}

const SYSCALL: MessageType = MessageType(1300);
const SOCKADDR: MessageType = MessageType(1306);

impl<'a> Facts<'a> {
    fn of(event: &'a Event) -> Facts<'a> {
        let records = &event.records[..];
        let primary = records.iter().find(|r| r.kind == SYSCALL);
        let syscall = primary.and_then(|r| {
            let arch = u32::from_str_radix(std::str::from_utf8(r.get(b"arch")?.value).ok()?, 16).ok()?;
            let nr = std::str::from_utf8(r.get(b"syscall")?.value).ok()?.parse().ok()?;
            Some((Machine::from_elf(arch)?, nr))
        });
        let mut keys = Vec::new();
        for r in records {
            for f in r.fields().filter(|f| f.key == b"key" && !f.is_null()) {
                keys.extend(decoded(&f).split(|b| *b == 1).map(<[u8]>::to_vec));
            }
        }
        let id = |key: &[u8]| {
            records.iter().find_map(|r| r.get(key)).and_then(|f| std::str::from_utf8(f.value).ok()?.parse::<u32>().ok())
        };
        let text = |key: &[u8]| {
            primary.or(records.first()).and_then(|r| r.get(key)).filter(|f| !f.is_null()).map(|f| decoded(&f))
        };
        let sockaddrs = records
            .iter()
            .filter(|r| r.kind == SOCKADDR)
            .filter_map(|r| r.get(b"saddr"))
            .filter_map(|f| inet_sockaddr(&decoded(&f)))
            .collect();
        Facts {
            records,
            syscall,
            keys,
            uid: id(b"uid"),
            auid: id(b"auid"),
            exe: text(b"exe"),
            comm: text(b"comm"),
            sockaddrs,
        }
    }
}

/// A field's bytes: a bare value that is kernel hex (even count of uppercase hex digits) decoded,
/// a quoted one as written.
fn decoded(f: &FieldRef<'_>) -> Vec<u8> {
    let v = f.value;
    let hex = f.quoting == Quoting::Bare
        && !v.is_empty()
        && v.len().is_multiple_of(2)
        && v.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
    if !hex {
        return v.to_vec();
    }
    v.chunks(2)
        .map(|p| {
            let d = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'A' + 10 };
            d(p[0]) << 4 | d(p[1])
        })
        .collect()
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes → (address, port).
fn inet_sockaddr(b: &[u8]) -> Option<(IpAddr, u16)> {
    let family = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        2 => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some((IpAddr::from(a), port))
        }
        10 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some((IpAddr::from(a), port))
        }
        _ => None,
    }
}

/// `*` matches any run of bytes (also none), `?` exactly one byte, anything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(lines: &[&str]) -> Event {
        Event::from_log_lines(lines)
    }

    fn filters(toml_text: &str) -> Result<Filters, FilterError> {
        #[derive(Deserialize)]
        struct C {
            filter: Vec<FilterConfig>,
        }
        let c: C = toml::from_str(toml_text).unwrap();
        Filters::compile(&c.filter)
    }

    const CONNECT: &[&str] = &[
        "type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=42 success=yes exit=0 ppid=1 pid=9 auid=1000 uid=0 comm=\"curl\" exe=\"/usr/bin/curl\" key=6E657401657874",
        "type=SOCKADDR msg=audit(1.000:1): saddr=02000539010203040000000000000000",
        "type=EOE msg=audit(1.000:1): ",
    ];
    const LOGIN: &[&str] =
        &["type=USER_LOGIN msg=audit(2.000:2): pid=5 uid=0 auid=4294967295 ses=1 msg='op=login res=success'"];

    #[test]
    fn each_criterion_matches_what_it_says() {
        let connect = event(CONNECT);
        let login = event(LOGIN);
        let cases: &[(&str, bool, bool)] = &[
            ("record_type = [\"SOCKADDR\"]", true, false),
            ("record_type = [\"1112\"]", false, true),
            ("syscall = [\"connect\"]", true, false),
            ("syscall = [\"execve\", \"bind\"]", false, false),
            ("key = [\"ext\"]", true, false),
            ("uid = [0]", true, true),
            ("auid = [\"unset\"]", false, true),
            ("exe = [\"/usr/bin/c*\"]", true, false),
            ("comm = [\"c?rl\"]", true, false),
            ("exe = [\"/usr/sbin/*\"]", false, false),
            ("address = [\"1.2.0.0/16\"]", true, false),
            ("address = [\"1.2.0.0/16\"]\nport = [80]", false, false),
            ("port = [1337]\nuid = [0]", true, false),
            ("address = [\"::1\"]", false, false),
        ];
        for (criteria, on_connect, on_login) in cases {
            let mut f = filters(&format!("[[filter]]\naction = \"drop\"\n{criteria}\n")).unwrap();
            assert_eq!(f.decide(&connect) == Decision::Drop(0), *on_connect, "{criteria} on connect");
            assert_eq!(f.decide(&login) == Decision::Drop(0), *on_login, "{criteria} on login");
        }
    }

    #[test]
    fn keep_only_and_first_drop_counts() {
        let mut f = filters(
            "[[filter]]\nname = \"no-root-logins\"\naction = \"drop\"\nrecord_type = [\"USER_LOGIN\"]\n\n[[filter]]\naction = \"keep\"\nkey = [\"net\"]\n",
        )
        .unwrap();
        assert_eq!(f.decide(&event(LOGIN)), Decision::Drop(0));
        assert_eq!(f.decide(&event(CONNECT)), Decision::Keep);
        assert_eq!(
            f.decide(&event(&["type=SYSCALL msg=audit(3.000:3): arch=c000003e syscall=59 key=(null)"])),
            Decision::Drop(1)
        );
        let s = f.stats();
        assert_eq!((s.seen, s.dropped), (3, 2));
        assert_eq!(s.filters[0], FilterCount { name: "no-root-logins".into(), action: "drop", dropped: 1 });
        assert_eq!(s.filters[1], FilterCount { name: "filter-1".into(), action: "keep", dropped: 1 });
    }

    #[test]
    fn bad_tables_are_rejected_with_the_filter_and_key() {
        let cases = [
            ("syscall = [\"exceve\"]", "[[filter]] filter-0: syscall: \"exceve\" is not a syscall name"),
            ("record_type = [\"SYSCAL\"]", "[[filter]] filter-0: record_type:"),
            ("address = [\"10.0.0.0/33\"]", "[[filter]] filter-0: address:"),
            ("uid = [\"root\"]", "[[filter]] filter-0: uid:"),
            ("exe = [\"\"]", "[[filter]] filter-0: exe:"),
            ("", "[[filter]] filter-0: action: a filter needs at least one"),
        ];
        for (criteria, expected) in cases {
            let e = filters(&format!("[[filter]]\naction = \"drop\"\n{criteria}\n")).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{criteria}: {e}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"/usr/*/python3*", b"/usr/local/bin/python3.11"));
        assert!(!glob(b"/usr/*/python3", b"/usr/local/bin/python3.11"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a?c", b"ac"));
    }

    #[test]
    fn ipv6_cidrs() {
        let c = Cidr::parse("fe80::/10").unwrap();
        assert!(c.contains("fe80::1".parse().unwrap()));
        assert!(!c.contains("fec0::1".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
