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

use std::sync::OnceLock;

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
        static X86_64: OnceLock<Dense> = OnceLock::new();
        static I386: OnceLock<Dense> = OnceLock::new();
        static AARCH64: OnceLock<Dense> = OnceLock::new();
        let dense = match self.0 {
            0xc000_003e => {
                X86_64.get_or_init(|| Dense::of_tables(tables::SYSCALLS_X86_64, tables::SYSCALLS_X86_64_NEWER))
            }
            0x4000_0003 => I386.get_or_init(|| Dense::of_tables(tables::SYSCALLS_I386, tables::SYSCALLS_I386_NEWER)),
            0xc000_00b7 => AARCH64.get_or_init(|| Dense::of_tables(SYSCALLS_AARCH64, &[])),
            _ => return None,
        };
        dense.get(nr)
    }
}

type Table = &'static [(u32, &'static str)];

/// Names indexed by number, built once from tables whose numbers are small (syscalls < 500,
/// errnos < 140): a binary search over a few hundred 24-byte entries, one unpredictable branch
/// and cache line a step, was an eighth of the per-event SYSCALL pass (`subject`) on the real
/// corpus, and the errno table was scanned linearly for every failed call.
struct Dense(Vec<Option<&'static str>>);

impl Dense {
    /// Numbers at or above this are not indexed (none of the tables has one; a test checks).
    const LIMIT: u32 = 4096;

    /// `main`'s names, then `newer`'s for numbers `main` lacks.
    fn of_tables(main: Table, newer: Table) -> Dense {
        Dense::of(main.iter().chain(newer).copied())
    }

    /// An earlier entry's name wins over a later one's for the same number.
    fn of(entries: impl Iterator<Item = (u32, &'static str)> + Clone) -> Dense {
        let len = entries.clone().map(|(n, _)| n).filter(|&n| n < Self::LIMIT).max().map_or(0, |n| n as usize + 1);
        let mut names = vec![None; len];
        for (n, name) in entries {
            if let Some(slot @ None) = names.get_mut(n as usize) {
                *slot = Some(name);
            }
        }
        Dense(names)
    }

    fn get(&self, n: u32) -> Option<&'static str> {
        self.0.get(n as usize).copied().flatten()
    }
}

/// The errno name of a negative `exit=` (`-2` → `ENOENT`); `None` for other values.
pub fn errno_name(exit: i64) -> Option<&'static str> {
    static ERRNOS: OnceLock<Dense> = OnceLock::new();
    let errno = u32::try_from(exit.checked_neg()?).ok().filter(|e| *e > 0)?;
    ERRNOS
        .get_or_init(|| Dense::of(tables::ERRNOS.iter().filter_map(|&(e, name)| Some((u32::try_from(e).ok()?, name)))))
        .get(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexed names are the tables' own: every number of every table (the main table's
    /// name first), every errno, and nothing past them.
    #[test]
    fn indexed_names_agree_with_the_tables() {
        let x86_64 = Arch(0xc000_003e);
        let i386 = Arch(0x4000_0003);
        let aarch64 = Arch(0xc000_00b7);
        for (arch, main, newer) in [
            (x86_64, tables::SYSCALLS_X86_64, tables::SYSCALLS_X86_64_NEWER),
            (i386, tables::SYSCALLS_I386, tables::SYSCALLS_I386_NEWER),
            (aarch64, SYSCALLS_AARCH64, &[][..]),
        ] {
            for nr in 0..Dense::LIMIT + 10 {
                let want = main.iter().chain(newer).find(|(n, _)| *n == nr).map(|(_, name)| *name);
                assert_eq!(arch.syscall_name(nr), want, "{arch:?} {nr}");
            }
            assert!(main.iter().chain(newer).all(|(n, _)| *n < Dense::LIMIT));
        }
        for e in -5..200i64 {
            let want = tables::ERRNOS.iter().find(|(n, _)| i64::from(*n) == e).map(|(_, name)| *name);
            assert_eq!(errno_name(-e), want.filter(|_| e > 0), "errno {e}");
        }
        assert_eq!(errno_name(i64::MIN), None);
    }

    #[test]
    fn tables_are_sorted_by_number() {
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
