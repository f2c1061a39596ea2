//! `arch=c000003e syscall=59 success=no exit=-2` → `x86_64`, `execve`, `false`, `-2`, `ENOENT`.
//!
//! Why per-arch tables: a syscall number means nothing without its ABI. A 32-bit process on an
//! x86_64 kernel reports `arch=40000003` and i386 numbers (`syscall=11` is execve there, `59` is
//! not), so the name always comes from the table of the record's own `arch`. The x86_64 and i386
//! tables are the ones the rule compiler uses (src/rules/tables.rs, auditctl 3.0.9's plus the
//! kernel's newer syscalls); aarch64's is generated from `ausyscall aarch64 --dump`
//! (aarch64_table.rs; regenerate: see its header). Other arches get their name but no syscall
//! names: the number is still there.
//!
//! errno names come from libaudit's table (src/rules/tables.rs `ERRNOS`), the same `ausearch -i`
//! prints in `exit=ENOENT(No such file or directory)`.

use super::aarch64_table::SYSCALLS_AARCH64;
use crate::rules::tables;

/// `AUDIT_ARCH_*` values (include/uapi/linux/audit.h: EM_* | 64BIT | LE) and auparse's names.
const ARCHES: &[(u32, &str)] = &[
    (0xc000_003e, "x86_64"),
    (0x4000_0003, "i386"),
    (0xc000_00b7, "aarch64"),
    (0x4000_0028, "arm"),
    (0x0000_0028, "armeb"),
    (0x8000_0015, "ppc64"),
    (0xc000_0015, "ppc64le"),
    (0x0000_0014, "ppc"),
    (0x8000_0016, "s390x"),
    (0x0000_0016, "s390"),
    (0xc000_00f3, "riscv64"),
    (0x4000_00f3, "riscv32"),
    (0xc000_0102, "loongarch64"),
];

/// The architecture of an `arch=` value (hex, as the kernel writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch(pub u32);

impl Arch {
    /// Parse the kernel's bare hex `arch=` value.
    pub fn parse(text: &[u8]) -> Option<Arch> {
        // As `u32::from_str_radix(_, 16)` (an optional `+`, either case), without the UTF-8 check.
        let digits = text.strip_prefix(b"+").unwrap_or(text);
        if digits.is_empty() {
            return None;
        }
        let mut n: u32 = 0;
        for &c in digits {
            let d = (c as char).to_digit(16)?;
            n = n.checked_mul(16)?.checked_add(d)?;
        }
        Some(Arch(n))
    }

    /// auparse's name (`x86_64`), or `None` for an arch this build does not know.
    pub fn name(self) -> Option<&'static str> {
        ARCHES.iter().find(|(v, _)| *v == self.0).map(|(_, n)| *n)
    }

    /// The syscall's name in this arch's table.
    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        // By number, not by name: no table scan and string compare per event (callgrind).
        let (main, newer): (Table, Table) = match self.0 {
            0xc000_003e => (tables::SYSCALLS_X86_64, tables::SYSCALLS_X86_64_NEWER),
            0x4000_0003 => (tables::SYSCALLS_I386, tables::SYSCALLS_I386_NEWER),
            0xc000_00b7 => (SYSCALLS_AARCH64, &[]),
            _ => return None,
        };
        lookup(main, nr).or_else(|| lookup(newer, nr))
    }
}

type Table = &'static [(u32, &'static str)];

/// Binary search of a table sorted by number (checked by a test).
fn lookup(table: &[(u32, &'static str)], nr: u32) -> Option<&'static str> {
    table.binary_search_by_key(&nr, |(n, _)| *n).ok().map(|i| table[i].1)
}

/// The errno name of a negative `exit=` (`-2` → `ENOENT`); `None` for other values.
pub fn errno_name(exit: i64) -> Option<&'static str> {
    let errno = i32::try_from(exit.checked_neg()?).ok().filter(|e| *e > 0)?;
    tables::ERRNOS.iter().find(|(e, _)| *e == errno).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for table in [
            tables::SYSCALLS_X86_64,
            tables::SYSCALLS_X86_64_NEWER,
            tables::SYSCALLS_I386,
            tables::SYSCALLS_I386_NEWER,
            SYSCALLS_AARCH64,
        ] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn names_come_from_the_records_own_arch() {
        let x86_64 = Arch::parse(b"c000003e").unwrap();
        let i386 = Arch::parse(b"40000003").unwrap();
        let aarch64 = Arch::parse(b"C00000B7").unwrap();
        assert_eq!(x86_64.name(), Some("x86_64"));
        assert_eq!(x86_64.syscall_name(59), Some("execve"));
        assert_eq!(x86_64.syscall_name(470), Some("listns"));
        assert_eq!(i386.name(), Some("i386"));
        assert_eq!(i386.syscall_name(11), Some("execve"));
        assert_eq!(i386.syscall_name(59), Some("oldolduname"));
        assert_eq!(aarch64.name(), Some("aarch64"));
        assert_eq!(aarch64.syscall_name(221), Some("execve"));
        assert_eq!(aarch64.syscall_name(203), Some("connect"));
        assert_eq!(Arch::parse(b"c0000015").and_then(Arch::name), Some("ppc64le"));
        assert_eq!(Arch::parse(b"c0000015").unwrap().syscall_name(11), None);
        assert_eq!(Arch(7).name(), None);
        assert_eq!(Arch::parse(b"xyz"), None);
        assert_eq!(x86_64.syscall_name(100_000), None);
    }

    #[test]
    fn errno_names_only_for_negative_exits() {
        assert_eq!(errno_name(-2), Some("ENOENT"));
        assert_eq!(errno_name(-13), Some("EACCES"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(2), None);
        assert_eq!(errno_name(-100_000), None);
        assert_eq!(errno_name(i64::MIN), None);
    }
}
