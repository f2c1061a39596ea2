use std::process::ExitCode;

use clap::Parser;

use auditrelay::cli::{Cli, Command};
use auditrelay::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auditrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, .. } | Command::Replay { config, .. } => {
            let _config = Config::load(config.as_deref())?;
            anyhow::bail!("not wired yet")
        }
    }
}
