//! Numeric `-S` over auditctl's whole range, against goldens captured from the real auditctl 3.0.9
//! and the real kernel (tests/data/rules/regenerate_syscalls.py). Pure: runs without root.
//!
//! For every spelling 0..2047 (and hex, octal, overflowing and trailing-garbage ones) of
//! `-a always,exit -F arch=b64 -S <n>`: we accept it exactly when auditctl does; we set exactly
//! bit n (auditctl's `audit_rule_syscall_data`), and the kernel's listing of auditctl's rule is
//! our rule as the kernel lists it. Bits 2032–2047 are the kernel's syscall classes: the kernel
//! clears the bit and adds the class's syscalls (kernel/auditfilter.c), so there the golden's
//! mask is the kernel's expansion, and what must equal is everything but the mask, plus the bit.
//! tests/rules_kernel.rs loads our rule for every n into the real kernel and compares listings.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use auditrelay::rules::ast::Line;
use auditrelay::rules::data::{hex, RuleData};
use auditrelay::rules::parse::{parse_words, SystemHost};
use auditrelay::rules::print;
use sha2::{Digest, Sha256};

const GOLDENS: &str = include_str!("data/rules/numeric-syscalls.jsonl");

/// Bits at and above this are the kernel's syscall classes (AUDIT_SYSCALL_CLASSES = 16).
const FIRST_CLASS_BIT: u32 = 2048 - 16;

fn with_mask(rule: &RuleData, bits: &[u32]) -> RuleData {
    let mut r = rule.kernel_normalise();
    r.mask = [0; 64];
    for b in bits {
        assert!(r.set_syscall(*b));
    }
    r
}

#[test]
fn numeric_syscalls_match_auditctl_over_the_whole_range() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for l in GOLDENS.lines() {
        let g: serde_json::Value = serde_json::from_str(l).unwrap();
        let s = g["s"].as_str().unwrap();
        let words: Vec<String> =
            ["-a", "always,exit", "-F", "arch=b64", "-S", s].iter().map(|w| w.to_string()).collect();
        let parsed = parse_words(&words, &SystemHost);
        checked += 1;
        match (g["result"].as_str().unwrap(), parsed) {
            ("accepted", Ok(Line::Rule(rule))) => {
                let listed_bits: Vec<u32> =
                    g["mask"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                let ours: Vec<u32> = rule.data.syscalls().collect();
                // What auditctl sends: one bit, strtol(s, NULL, 0) truncated to int.
                let sent = match s {
                    "0x7ff" | "0x7FF" | "03777" => Some(2047),
                    // Decimal only: a leading 0 is octal for strtol.
                    _ if s.starts_with('0') && s != "0" => None,
                    _ => s.parse::<u32>().ok().filter(|n| *n < 2048),
                };
                let class = sent.is_some_and(|n| n >= FIRST_CLASS_BIT);
                if let Some(n) = sent {
                    if ours != [n] {
                        failures.push(format!("-S {s}: we set {ours:?}, auditctl sets [{n}]"));
                        continue;
                    }
                }
                if class && rule.data.kernel_normalise().syscalls().ne(ours.iter().copied()) {
                    failures.push(format!("-S {s}: the class bit is lost before it is sent"));
                }
                if !class && ours != listed_bits {
                    failures.push(format!("-S {s}: we set {ours:?}, the kernel listed auditctl's {listed_bits:?}"));
                    continue;
                }
                // Everything but the mask is the same bytes, and with the kernel's mask it prints as auditctl -l.
                let as_listed = with_mask(&rule.data, &listed_bits);
                let sha = hex(Sha256::digest(as_listed.encode()).as_slice());
                if sha != g["sha256"].as_str().unwrap() {
                    failures.push(format!("-S {s}: our rule as the kernel lists it differs from auditctl's"));
                }
                let text = print::listing(std::slice::from_ref(&as_listed));
                if text != g["listing"].as_str().unwrap() {
                    failures.push(format!("-S {s}: we print {text:?}, auditctl -l printed {:?}", g["listing"]));
                }
                if !class && as_listed != rule.data.kernel_normalise() {
                    failures.push(format!("-S {s}: kernel_normalise is not what the kernel lists"));
                }
            }
            ("accepted", other) => failures.push(format!("-S {s}: auditctl accepts it, we: {other:?}")),
            (_, Err(_)) => {}
            (r, Ok(line)) => failures.push(format!("-S {s}: auditctl says {r}, we accept {line:?}")),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 2048 + 20, "only {checked} spellings checked");
}
