//! Command line: what was typed. Turning it into built objects happens in main/daemon.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "auditrelay", version, about = "Linux audit daemon: kernel → reassembled JSON events → RELP/syslog")]
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
    },
    /// Print the kernel's audit status (enabled, pid, backlog, lost, ...).
    Status {
        /// One JSON object instead of `key=value` text.
        #[arg(long)]
        json: bool,
    },
}
