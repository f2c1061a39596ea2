use std::process::ExitCode;

use clap::Parser;

use auditrelay::cli::{Cli, Command};
use auditrelay::config::Config;
use auditrelay::netlink::client::AuditClient;

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
        Command::Status { json } => {
            let s = AuditClient::open()?.status()?;
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
            if json {
                let map: serde_json::Map<String, serde_json::Value> = fields.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
                println!("{}", serde_json::Value::Object(map));
            } else {
                for (k, v) in fields {
                    println!("{k} {v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
