//! Name ⇄ number lookups over the generated tables, and C number parsing as libaudit does it.
//!
//! Only x86_64 hosts are modelled (b64 = x86_64, b32 = i386), which is what auditctl on this
//! platform does with `b64`/`b32`; other architectures' `-F arch=` values are rejected with a clear
//! message instead of guessed.

use crate::rules::{tables, uringop_table};

type SyscallTable = &'static [(u32, &'static str)];

pub const ELF_X86_64: u32 = 0xc000_003e;
pub const ELF_I386: u32 = 0x4000_0003;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    I386,
}

impl Machine {
    pub fn from_elf(elf: u32) -> Option<Machine> {
        match elf {
            ELF_X86_64 => Some(Machine::X86_64),
            ELF_I386 => Some(Machine::I386),
            _ => None,
        }
    }
    pub fn elf(self) -> u32 {
        match self {
            Machine::X86_64 => ELF_X86_64,
            Machine::I386 => ELF_I386,
        }
    }
    /// What `auditctl -l` prints for `-F arch=`.
    pub fn list_name(self) -> &'static str {
        match self {
            Machine::X86_64 => "b64",
            Machine::I386 => "b32",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86_64",
            Machine::I386 => "i386",
        }
    }
    fn tables(self) -> (SyscallTable, SyscallTable) {
        match self {
            Machine::X86_64 => (tables::SYSCALLS_X86_64, tables::SYSCALLS_X86_64_NEWER),
            Machine::I386 => (tables::SYSCALLS_I386, tables::SYSCALLS_I386_NEWER),
        }
    }
}

/// How a syscall name resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallName {
    /// In auditctl 3.0.9's table.
    Known(u32),
    /// Only in the kernel's newer table: auditctl 3.0.9 rejects it, the kernel accepts it.
    NewerThanAuditctl(u32),
}

impl SyscallName {
    pub fn nr(self) -> u32 {
        match self {
            SyscallName::Known(n) | SyscallName::NewerThanAuditctl(n) => n,
        }
    }
}

pub fn syscall_by_name(machine: Machine, name: &str) -> Option<SyscallName> {
    let (old, newer) = machine.tables();
    if let Some((nr, _)) = old.iter().find(|(_, n)| *n == name) {
        return Some(SyscallName::Known(*nr));
    }
    newer.iter().find(|(_, n)| *n == name).map(|(nr, _)| SyscallName::NewerThanAuditctl(*nr))
}

/// Name as `auditctl -l` prints it: only auditctl 3.0.9's own table, so newer syscalls print as
/// numbers exactly as auditctl would print them.
pub fn syscall_list_name(machine: Machine, nr: u32) -> Option<&'static str> {
    machine.tables().0.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// Best name for humans and JSON (includes the kernel's newer syscalls).
pub fn syscall_any_name(machine: Machine, nr: u32) -> Option<&'static str> {
    let (old, newer) = machine.tables();
    old.iter().chain(newer.iter()).find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

pub fn field_by_name(name: &str) -> Option<u32> {
    tables::FIELD_NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn field_name(field: u32) -> Option<&'static str> {
    tables::FIELD_PRINT_NAMES.iter().find(|(v, _)| *v == field).map(|(_, n)| *n)
}

pub fn msg_type_by_name(name: &str) -> Option<u32> {
    tables::MSG_TYPES.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

pub fn msg_type_name(v: u32) -> Option<&'static str> {
    tables::MSG_TYPES.iter().find(|(t, _)| *t == v).map(|(_, n)| *n)
}

/// libaudit audit_name_to_errno: `EPERM` → 1, `-EPERM` → -1, unknown → None.
pub fn errno_by_name(name: &str) -> Option<i32> {
    let (neg, bare) = match name.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let v = tables::ERRNOS.iter().find(|(_, n)| *n == bare).map(|(v, _)| *v)?;
    Some(if neg { -v } else { v })
}

pub fn errno_name(v: i32) -> Option<&'static str> {
    tables::ERRNOS.iter().find(|(e, _)| *e == v).map(|(_, n)| *n)
}

pub fn file_type_by_name(name: &str) -> Option<u32> {
    tables::FILE_TYPES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn fs_type_by_name(name: &str) -> Option<u32> {
    tables::FS_TYPES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn fs_type_name(v: u32) -> Option<&'static str> {
    tables::FS_TYPES.iter().find(|(_, t)| *t == v).map(|(n, _)| *n)
}

/// The io_uring list: auditctl 3.1 and later name it (flagtab.h under WITH_IO_URING); 3.0.9's
/// table, which [`tables::LISTS`] is generated from, predates it.
const IO_URING_LIST: (&str, u32) = ("io_uring", crate::rules::data::FILTER_URING_EXIT);

pub fn list_by_name(name: &str) -> Option<u32> {
    tables::LISTS.iter().chain(std::iter::once(&IO_URING_LIST)).find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn list_name(list: u32) -> Option<&'static str> {
    tables::LISTS.iter().chain(std::iter::once(&IO_URING_LIST)).find(|(_, v)| *v == list).map(|(n, _)| *n)
}

/// io_uring operation name → IORING_OP_* number (upstream's audit_name_to_uringop).
pub fn uringop_by_name(name: &str) -> Option<u32> {
    uringop_table::URINGOPS.iter().find(|(_, n)| *n == name).map(|(nr, _)| *nr)
}

/// Name `auditctl -l` prints for an io_uring operation; None prints as the number.
pub fn uringop_name(nr: u32) -> Option<&'static str> {
    uringop_table::URINGOPS.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// `-F arch=` value → machine, as libaudit's audit_determine_machine on an x86_64 host.
pub fn arch_by_name(v: &str) -> Result<Machine, String> {
    let lower = v.to_ascii_lowercase();
    match lower.as_str() {
        "b64" | "x86_64" => return Ok(Machine::X86_64),
        "b32" | "i386" | "i486" | "i586" | "i686" => return Ok(Machine::I386),
        _ => {}
    }
    // libaudit falls back to reading the word as a hex ELF number ("c000003e").
    let (n, _) = strtoul(v, 16);
    Machine::from_elf(n as u32).ok_or_else(|| {
        format!("unknown or unsupported arch `{v}` (supported: b64, b32, x86_64, i386..i686, 0xc000003e, 0x40000003)")
    })
}

/// C strtoul/strtol with base 0 or 16 on the longest valid prefix: (value, consumed any digit).
/// Overflow saturates like C (ULONG_MAX); the caller truncates to u32 as the C assignment does.
pub fn strtoul(s: &str, base: u32) -> (u64, bool) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut radix = base;
    if (radix == 0 || radix == 16)
        && b.len() >= 2
        && b[0] == b'0'
        && (b[1] | 0x20) == b'x'
        && b.get(2).is_some_and(u8::is_ascii_hexdigit)
    {
        radix = 16;
        i = 2;
    } else if radix == 0 {
        radix = if b.first() == Some(&b'0') { 8 } else { 10 };
    }
    let mut v: u64 = 0;
    let mut any = false;
    while let Some(d) = b.get(i).and_then(|c| (*c as char).to_digit(radix)) {
        v = v.saturating_mul(radix as u64).saturating_add(d as u64);
        any = true;
        i += 1;
    }
    (v, any)
}

/// strtol(s, NULL, 0) truncated to u32 as libaudit stores it (`-1` → 0xffffffff).
pub fn strtol_u32(s: &str) -> u32 {
    match s.strip_prefix('-') {
        Some(rest) => {
            let (v, _) = strtoul(rest, 0);
            let v = v.min(i64::MAX as u64 + 1) as i128;
            (-v).max(i64::MIN as i128) as i64 as u32
        }
        None => {
            let (v, _) = strtoul(s, 0);
            v.min(i64::MAX as u64) as u32
        }
    }
}

/// strtoul(s, NULL, 0) truncated to u32.
pub fn strtoul_u32(s: &str) -> u32 {
    strtoul(s, 0).0 as u32
}

pub fn starts_with_digit(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// `-N…`: libaudit's test for a negative number.
pub fn is_negative_number(s: &str) -> bool {
    s.len() >= 2 && s.starts_with('-') && s.as_bytes()[1].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_resolve_per_arch() {
        assert_eq!(syscall_by_name(Machine::X86_64, "execve"), Some(SyscallName::Known(59)));
        assert_eq!(syscall_by_name(Machine::I386, "execve"), Some(SyscallName::Known(11)));
        assert_eq!(syscall_by_name(Machine::I386, "socketcall"), Some(SyscallName::Known(102)));
        assert_eq!(syscall_by_name(Machine::X86_64, "socketcall"), None);
        assert_eq!(syscall_by_name(Machine::X86_64, "fchmodat2"), Some(SyscallName::NewerThanAuditctl(452)));
        assert_eq!(syscall_list_name(Machine::X86_64, 452), None);
        assert_eq!(syscall_any_name(Machine::X86_64, 452), Some("fchmodat2"));
    }

    #[test]
    fn uringops_resolve_both_ways() {
        assert_eq!(uringop_by_name("openat"), Some(18));
        assert_eq!(uringop_by_name("connect"), Some(16));
        assert_eq!(uringop_by_name("listen"), Some(57));
        // A syscall name that is no audited io_uring operation.
        assert_eq!(uringop_by_name("execve"), None);
        assert_eq!(uringop_name(19), Some("close"));
        // IORING_OP_READ (22) is audit_skip in the kernel: upstream has no name for it.
        assert_eq!(uringop_name(22), None);
        let mut seen = std::collections::BTreeSet::new();
        for (nr, name) in uringop_table::URINGOPS {
            assert!(seen.insert(*nr), "{name}: duplicate number");
            assert_eq!(uringop_by_name(name), Some(*nr));
        }
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(strtoul("0x10", 0), (16, true));
        assert_eq!(strtoul("0100", 0), (64, true));
        assert_eq!(strtoul("12abc", 0), (12, true));
        assert_eq!(strtoul("abc", 0), (0, false));
        assert_eq!(strtoul("c000003e", 16), (0xc000003e, true));
        assert_eq!(strtol_u32("-1"), u32::MAX);
        assert_eq!(strtol_u32("-13"), (-13i32) as u32);
        assert_eq!(strtol_u32("99999999999999999999"), u32::MAX);
        assert_eq!(strtoul_u32("4294967296"), 0);
    }

    #[test]
    fn names() {
        assert_eq!(errno_by_name("-EACCES"), Some(-13));
        assert_eq!(errno_by_name("EPERM"), Some(1));
        assert_eq!(errno_by_name("EBOGUS"), None);
        assert_eq!(msg_type_by_name("AVC"), Some(1400));
        assert_eq!(field_by_name("loginuid"), Some(9));
        assert_eq!(field_name(9), Some("auid"));
        assert_eq!(arch_by_name("B64"), Ok(Machine::X86_64));
        assert_eq!(arch_by_name("c000003e"), Ok(Machine::X86_64));
        assert!(arch_by_name("aarch64").is_err());
        assert_eq!(file_type_by_name("file"), Some(0o100000));
        assert_eq!(list_by_name("exclude"), Some(5));
        assert_eq!(list_by_name("entry"), None);
        assert_eq!(list_by_name("io_uring"), Some(7));
        assert_eq!(list_name(7), Some("io_uring"));
        assert_eq!(list_by_name("uring"), None);
    }
}
