use std::process::ExitCode;

use clap::Parser;

use auditrelay::cli::{Cli, Command, CompileFormat, RulesCommand};
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
        Command::Rules { command } => rules(command),
    }
}

fn rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    use auditrelay::rules::command;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let code = match command {
        RulesCommand::Check { paths } => command::check(&paths, &mut out, &mut err)?,
        RulesCommand::Compile { format, paths } => command::compile_cmd(&paths, format == CompileFormat::Json, &mut out, &mut err)?,
        RulesCommand::Load { .. } | RulesCommand::List | RulesCommand::Diff { .. } => {
            anyhow::bail!("rules load/list/diff need the netlink client (not merged yet)")
        }
    };
    Ok(ExitCode::from(code))
}
