//! What one rules-file line means: a kernel rule to add/delete, or a control line.
//!
//! A rule is carried as the exact [`RuleData`] auditctl would send, plus the operation; typed views
//! ([`List`], [`Action`], [`Op`]) keep unknown kernel values as `Unknown(n)` so decode never fails
//! on a value from a newer kernel.

use std::fmt;

use crate::rules::data::{self, RuleData};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleOp {
    /// `-a` (or `-w`): append to the list.
    Append,
    /// `-A`: insert at the head of the list.
    Prepend,
    /// `-d` / `-W`: delete the matching rule.
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub op: RuleOp,
    pub data: RuleData,
    /// Syscall names that only the kernel's newer table knows (auditctl 3.0.9 rejects them).
    pub newer_syscalls: Vec<String>,
}

/// Status settings and loader directives; none of them is a kernel rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `-D [-k key]`: delete all rules (with that key).
    DeleteAll { key: Option<String> },
    /// `-b N`
    BacklogLimit(u32),
    /// `-f 0|1|2`
    Failure(u32),
    /// `-e 0|1|2`
    Enabled(u32),
    /// `-r N`
    RateLimit(u32),
    /// `--backlog_wait_time N`
    BacklogWaitTime(u32),
    /// `--loginuid-immutable`
    LoginuidImmutable,
    /// `-i`: ignore errors in the rest of the file.
    IgnoreErrors,
    /// `-c`: continue after errors, fail at the end.
    ContinueOnError,
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::DeleteAll { key: None } => write!(f, "-D"),
            Control::DeleteAll { key: Some(k) } => write!(f, "-D -k {k}"),
            Control::BacklogLimit(n) => write!(f, "-b {n}"),
            Control::Failure(n) => write!(f, "-f {n}"),
            Control::Enabled(n) => write!(f, "-e {n}"),
            Control::RateLimit(n) => write!(f, "-r {n}"),
            Control::BacklogWaitTime(n) => write!(f, "--backlog_wait_time {n}"),
            Control::LoginuidImmutable => write!(f, "--loginuid-immutable"),
            Control::IgnoreErrors => write!(f, "-i"),
            Control::ContinueOnError => write!(f, "-c"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Rule(Box<Rule>),
    Control(Control),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    User,
    Task,
    Entry,
    Exit,
    Exclude,
    Filesystem,
    IoUring,
    Unknown(u32),
}

impl List {
    pub fn from_flags(flags: u32) -> List {
        match flags & data::FILTER_MASK {
            data::FILTER_USER => List::User,
            data::FILTER_TASK => List::Task,
            data::FILTER_ENTRY => List::Entry,
            data::FILTER_EXIT => List::Exit,
            data::FILTER_EXCLUDE => List::Exclude,
            data::FILTER_FS => List::Filesystem,
            data::FILTER_URING_EXIT => List::IoUring,
            n => List::Unknown(n),
        }
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            List::User => f.write_str("user"),
            List::Task => f.write_str("task"),
            List::Entry => f.write_str("entry"),
            List::Exit => f.write_str("exit"),
            List::Exclude => f.write_str("exclude"),
            List::Filesystem => f.write_str("filesystem"),
            List::IoUring => f.write_str("io_uring"),
            List::Unknown(n) => write!(f, "unknown-list({n})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Never,
    Possible,
    Always,
    Unknown(u32),
}

impl Action {
    pub fn from_raw(v: u32) -> Action {
        match v {
            data::ACTION_NEVER => Action::Never,
            data::ACTION_POSSIBLE => Action::Possible,
            data::ACTION_ALWAYS => Action::Always,
            n => Action::Unknown(n),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Never => f.write_str("never"),
            Action::Possible => f.write_str("possible"),
            Action::Always => f.write_str("always"),
            Action::Unknown(n) => write!(f, "unknown-action({n})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    LessThan,
    GreaterThan,
    LessOrEqual,
    GreaterOrEqual,
    BitMask,
    BitTest,
    Unknown(u32),
}

impl Op {
    pub fn from_raw(v: u32) -> Op {
        match v & data::OPERATORS {
            data::OP_EQUAL => Op::Equal,
            data::OP_NOT_EQUAL => Op::NotEqual,
            data::OP_LESS_THAN => Op::LessThan,
            data::OP_GREATER_THAN => Op::GreaterThan,
            data::OP_LESS_THAN_OR_EQUAL => Op::LessOrEqual,
            data::OP_GREATER_THAN_OR_EQUAL => Op::GreaterOrEqual,
            data::OP_BIT_MASK => Op::BitMask,
            data::OP_BIT_TEST => Op::BitTest,
            n => Op::Unknown(n),
        }
    }

    pub fn raw(self) -> u32 {
        match self {
            Op::Equal => data::OP_EQUAL,
            Op::NotEqual => data::OP_NOT_EQUAL,
            Op::LessThan => data::OP_LESS_THAN,
            Op::GreaterThan => data::OP_GREATER_THAN,
            Op::LessOrEqual => data::OP_LESS_THAN_OR_EQUAL,
            Op::GreaterOrEqual => data::OP_GREATER_THAN_OR_EQUAL,
            Op::BitMask => data::OP_BIT_MASK,
            Op::BitTest => data::OP_BIT_TEST,
            Op::Unknown(n) => n,
        }
    }

    /// Split `name<op>value` the way libaudit does: the first of `!=`, `>=`, `<=`, `&=`, `=`, `>`,
    /// `<`, `&` (in that order of preference) that occurs anywhere in the word.
    pub fn split(pair: &str) -> Option<(&str, Op, &str)> {
        const OPS: [(&str, Op); 8] = [
            ("!=", Op::NotEqual),
            (">=", Op::GreaterOrEqual),
            ("<=", Op::LessOrEqual),
            ("&=", Op::BitTest),
            ("=", Op::Equal),
            (">", Op::GreaterThan),
            ("<", Op::LessThan),
            ("&", Op::BitMask),
        ];
        OPS.iter().find_map(|(sym, op)| pair.find(sym).map(|i| (&pair[..i], *op, &pair[i + sym.len()..])))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The symbols libaudit's audit_operator_to_symbol prints.
        f.write_str(match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::LessThan => "<",
            Op::GreaterThan => ">",
            Op::LessOrEqual => "<=",
            Op::GreaterOrEqual => ">=",
            Op::BitMask => "&",
            Op::BitTest => "&=",
            Op::Unknown(_) => "?",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_split_prefers_two_char_ops_anywhere() {
        assert_eq!(Op::split("auid!=-1"), Some(("auid", Op::NotEqual, "-1")));
        assert_eq!(Op::split("a1&=0x3"), Some(("a1", Op::BitTest, "0x3")));
        assert_eq!(Op::split("a1&0100"), Some(("a1", Op::BitMask, "0100")));
        // `>=` anywhere wins over an earlier `=`, as strstr order makes it in libaudit.
        assert_eq!(Op::split("key=a>=b"), Some(("key=a", Op::GreaterOrEqual, "b")));
        assert_eq!(Op::split("uid"), None);
        for op in [
            Op::Equal,
            Op::NotEqual,
            Op::LessThan,
            Op::GreaterThan,
            Op::LessOrEqual,
            Op::GreaterOrEqual,
            Op::BitMask,
            Op::BitTest,
        ] {
            assert_eq!(Op::from_raw(op.raw()), op);
        }
    }

    #[test]
    fn unknown_values_roundtrip() {
        assert_eq!(List::from_flags(3), List::Unknown(3));
        assert_eq!(Action::from_raw(9), Action::Unknown(9));
        assert_eq!(List::from_flags(data::FILTER_EXIT | data::FILTER_PREPEND), List::Exit);
    }
}
