//! The binary's edge: parse the command line, load config, run; errors become exit codes here only.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use auditrelay::cli::{Cli, Command, CompileFormat, Generated, RulesCommand};
use auditrelay::config::Config;
use auditrelay::netlink::client::AuditClient;
use auditrelay::netlink::NetlinkError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auditrelay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `run` installs the daemon's logger from its config; the other commands log library
    // warnings to stderr.
    if !matches!(cli.command, Command::Run { .. }) {
        auditrelay::logging::install_cli();
    }
    match cli.command {
        Command::Run { config, multicast } => {
            let config = Config::load(config.as_deref())?;
            auditrelay::daemon::run(&config, multicast)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { file, config, format } => {
            let config = Config::load(config.as_deref())?;
            if !config.output.is_empty() {
                eprintln!("auditrelay: replay: note: replay writes JSON lines to stdout; the config's [[output]] tables are used by `run` only");
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let enricher = auditrelay::enrich::Enricher::from_config(&config.enrich);
            let stats = match &file {
                Some(path) => {
                    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                    auditrelay::replay::replay_as(
                        BufReader::with_capacity(1 << 16, f),
                        &config.reassemble,
                        format,
                        enricher,
                        &mut out,
                    )
                }
                None => auditrelay::replay::replay_as(
                    std::io::stdin().lock(),
                    &config.reassemble,
                    format,
                    enricher,
                    &mut out,
                ),
            }
            .with_context(|| {
                format!("replaying {}", file.as_ref().map_or("stdin".into(), |p| p.display().to_string()))
            })?;
            out.flush().context("writing events to stdout")?;
            eprintln!("auditrelay: replay: {stats}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules { command } => rules(command),
        Command::Generate { what, dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let written = generate(what, &dir).with_context(|| format!("writing into {}", dir.display()))?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, config } => {
            // The kernel first: as a plain user this fails with the privilege hint, nothing else.
            let s = AuditClient::open().and_then(|mut c| c.status()).map_err(with_privilege_hint)?;
            let config = Config::load(config.as_deref())?;
            let fields = [
                ("enabled", s.enabled),
                ("failure", s.failure),
                ("pid", s.pid),
                ("rate_limit", s.rate_limit),
                ("backlog_limit", s.backlog_limit),
                ("lost", s.lost),
                ("backlog", s.backlog),
                ("feature_bitmap", s.feature_bitmap),
                ("backlog_wait_time", s.backlog_wait_time),
                ("backlog_wait_time_actual", s.backlog_wait_time_actual),
            ];
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            let code = auditrelay::telemetry::status::print(&config.control, json, &fields, &mut out, &mut err)
                .context("writing the status")?;
            Ok(ExitCode::from(code))
        }
    }
}

/// The man pages or shell completions, generated from the same clap definition the binary parses,
/// so they cannot fall behind it. Returns the files written.
fn generate(what: Generated, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    use clap::CommandFactory;
    let command = Cli::command();
    match what {
        Generated::Man => {
            clap_mangen::generate_to(command, dir)?;
            let mut pages: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "1"))
                .collect();
            pages.sort();
            Ok(pages)
        }
        Generated::Completions => {
            use clap_complete::Shell;
            [Shell::Bash, Shell::Zsh, Shell::Fish]
                .into_iter()
                .map(|shell| clap_complete::generate_to(shell, &mut command.clone(), "auditrelay", dir))
                .collect()
        }
    }
}

/// A refusal the operator can fix gets one line saying how; the kernel's words stay after it.
fn with_privilege_hint(e: NetlinkError) -> anyhow::Error {
    let hint = match e.errno() {
        // audit_netlink_ok(): AUDIT_GET and every change need CAP_AUDIT_CONTROL.
        Some(libc::EPERM) | Some(libc::EACCES) => {
            Some("reading the kernel's audit status needs root (CAP_AUDIT_CONTROL): run it with sudo")
        }
        // The kernel answers audit requests from the initial user namespace only.
        Some(libc::ECONNREFUSED) => Some(
            "the kernel answers audit requests only outside user namespaces: run it on the host, not in a container",
        ),
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::Error::new(e).context(hint),
        None => e.into(),
    }
}

fn rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    use auditrelay::rules::command;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let code = match command {
        RulesCommand::Check { paths } => command::check(&paths, &mut out, &mut err)?,
        RulesCommand::Compile { format, paths } => {
            command::compile_cmd(&paths, format == CompileFormat::Json, &mut out, &mut err)?
        }
        RulesCommand::List => command::list(&mut out, &mut err)?,
        RulesCommand::Diff { paths } => command::diff(&paths, &mut out, &mut err)?,
        RulesCommand::Load { paths, immutable, config } => {
            let config = Config::load(config.as_deref())?;
            let rules = config.rules.validate()?;
            let perms = auditrelay::rules::sync::Permissions {
                immutable: immutable || rules.immutable,
                allow_panic: config.kernel.allow_panic,
            };
            command::load(&paths, &rules, perms, &mut out, &mut err)?
        }
    };
    Ok(ExitCode::from(code))
}
