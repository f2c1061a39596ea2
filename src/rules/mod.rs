//! Audit rules: auditctl-compatible rule files compiled natively to the kernel's
//! `struct audit_rule_data`, and back to `auditctl -l` text.
//!
//! ```text
//! file/dir ──source──▶ lines ──lex──▶ words ──parse──▶ ast::Line ─┬─ Rule { op, data: RuleData } ──data::encode──▶ bytes
//!                                                                └─ Control (-D -b -f -e -r …)
//! kernel AUDIT_LIST_RULES bytes ──data::decode──▶ RuleData ──print──▶ `auditctl -l` text
//! ```
//! Invariants: a line is accepted exactly when auditctl 3.0.9 accepts it (except syscalls newer
//! than its table, which the kernel knows and we accept, and io_uring rules, which 3.0.9 predates
//! and we accept as auditctl 3.1+ does), and then `encode` produces the bytes
//! auditctl sends; `print(decode(kernel bytes))` is what `auditctl -l` prints. Both are tested
//! against goldens captured from the real auditctl and kernel (tests/data/rules/regenerate.py).
//! auditrelay never executes auditctl.

pub mod ast;
pub mod command;
pub mod compile;
pub mod config;
pub mod data;
pub mod fetch;
pub mod lex;
pub mod lookup;
pub mod parse;
pub mod print;
pub mod source;
pub mod sync;
#[rustfmt::skip]
pub mod tables;
pub mod uringop_table;
