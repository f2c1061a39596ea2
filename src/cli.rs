//! Command line: what was typed. Turning it into built objects happens in main/daemon.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `--help` and the man page's DESCRIPTION: where things are, for an operator with the package.
const LONG_ABOUT: &str = "Linux audit daemon: kernel → reassembled JSON events → RELP/syslog.

auditrelay registers with the kernel as its audit daemon (in auditd's place), loads audit rules in \
auditctl syntax, reassembles each event's records into one JSON object and ships the events through \
a disk spool to RELP, TCP, UDP, unix-socket and file outputs. While it runs its rules replace the \
kernel's; at exit the kernel's rules and settings are put back.

Files: /etc/auditrelay/auditrelay.toml (config), /etc/auditrelay/rules.d/ (rules), \
/usr/share/auditrelay/rules/ (rule sets), /var/lib/auditrelay/spool/ (spool), \
/var/log/auditrelay/ (file outputs). Documentation: /usr/share/doc/auditrelay/ (configuration.md, \
troubleshooting.md, migration-auditd.md, migration-go-audit.md).";

#[derive(Debug, Parser)]
#[command(
    name = "auditrelay",
    version,
    about = "Linux audit daemon: kernel → reassembled JSON events → RELP/syslog",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: register with the kernel, load rules, emit events.
    Run {
        /// Config file (default: /etc/auditrelay/auditrelay.toml when it exists, else embedded defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Read-only: join the kernel's multicast log group instead of registering as the audit daemon.
        #[arg(long)]
        multicast: bool,
    },
    /// Replay audit.log text (stdin when no file) into the same JSON events.
    Replay {
        /// audit.log file; stdin when absent.
        file: Option<PathBuf>,
        /// Config file (reassembly bounds, outputs).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output format: the same conversion an `[[output]]` with this `format` does.
        #[arg(long, value_enum, default_value_t = crate::format::OutputFormat::Native)]
        format: crate::format::OutputFormat,
    },
    /// Audit rules in auditctl syntax: check, compile, load into the kernel, list, diff.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Print the kernel's audit status (enabled, pid, backlog, lost, ...) and the running daemon's
    /// figures (control socket); exit 1 with a one-line reason when an operator is needed.
    Status {
        /// One JSON object instead of `key=value` text.
        #[arg(long)]
        json: bool,
        /// Config file ([control] socket and output_down_threshold).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write the man pages or the shell completions into DIR (for packaging; see tests/package.sh).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        /// Directory to write into; created if missing.
        dir: PathBuf,
    },
}

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// auditrelay.1 and one page per subcommand (auditrelay-run.1, ...), roff.
    Man,
    /// Completions for bash (auditrelay.bash), zsh (_auditrelay) and fish (auditrelay.fish).
    Completions,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule files or rules.d directories; exit 1 listing every error as file:line: message.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the kernel rules the sources compile to.
    Compile {
        #[arg(long, value_enum, default_value_t = CompileFormat::Json)]
        format: CompileFormat,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Make the kernel's rules exactly these sources (atomic: nothing changes on any error).
    Load {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Apply a `-e 2` line (locks the rules until reboot).
        #[arg(long)]
        immutable: bool,
        /// Config file ([rules] immutable, [kernel] allow_panic).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the kernel's rules as `auditctl -l` does.
    List,
    /// Show what `load` would change.
    Diff {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompileFormat {
    /// One JSON object per kernel rule, one per line.
    Json,
    /// `auditctl -l` text of the resulting kernel rules.
    Text,
}
