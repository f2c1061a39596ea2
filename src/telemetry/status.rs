//! `auditrelay status`: the kernel's audit status (as `auditctl -s` shows it) and, when the daemon
//! runs, its own figures read over the control socket; the exit code says whether an operator is
//! needed.
//!
//! Exit codes: 0 all well (or the daemon is not running: said so, kernel part shown); 1 something
//! needs an operator ([`Snapshot::attention`]: an output down longer than
//! `[control] output_down_threshold`, loss since start) or the daemon's figures could not be read;
//! the reason is one line on stderr.
//!
//! `--json` prints one object: the kernel's fields at the top level (as before the daemon's part
//! existed), `daemon` (the [`Snapshot`], or null when not running), `daemon_error` and `attention`
//! (strings or null).

use std::io::Write;

use super::control::{self, ControlConfig, ControlError};
use super::Snapshot;

/// What the daemon part came to.
enum Daemon {
    Running(Box<Snapshot>),
    NotRunning(String),
    Unreadable(String),
}

/// Print the status to `out`, the operator's reason (if any) to `err`; returns the exit code.
pub fn print(
    config: &ControlConfig,
    json: bool,
    kernel: &[(&str, u32)],
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<u8> {
    let daemon = if !config.enabled() {
        Daemon::NotRunning("no control socket configured ([control] socket = \"\")".into())
    } else {
        match control::query(&config.socket) {
            Ok(s) => Daemon::Running(Box::new(s)),
            Err(e @ ControlError::NotRunning { .. }) => Daemon::NotRunning(e.to_string()),
            Err(e) => Daemon::Unreadable(e.to_string()),
        }
    };
    let attention = match &daemon {
        Daemon::Running(s) => s.attention(config.output_down_threshold.0),
        _ => None,
    };
    if json {
        let mut map: serde_json::Map<String, serde_json::Value> =
            kernel.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
        let (value, error) = match &daemon {
            Daemon::Running(s) => (serde_json::to_value(s.as_ref()).unwrap_or_default(), None),
            Daemon::NotRunning(why) => (serde_json::Value::Null, Some(why.clone())),
            Daemon::Unreadable(why) => (serde_json::Value::Null, Some(why.clone())),
        };
        map.insert("daemon".into(), value);
        map.insert("daemon_error".into(), error.into());
        map.insert("attention".into(), attention.clone().into());
        writeln!(out, "{}", serde_json::Value::Object(map))?;
    } else {
        for (k, v) in kernel {
            writeln!(out, "{k} {v}")?;
        }
        match &daemon {
            Daemon::Running(s) => write_text(out, s)?,
            Daemon::NotRunning(why) => writeln!(out, "daemon not running: {why}")?,
            Daemon::Unreadable(why) => writeln!(out, "daemon figures unavailable: {why}")?,
        }
    }
    match (&daemon, attention) {
        (Daemon::Unreadable(why), _) => {
            writeln!(err, "auditrelay: status: cannot read the daemon's figures: {why}")?;
            Ok(1)
        }
        (_, Some(why)) => {
            writeln!(err, "auditrelay: status: needs attention: {why}")?;
            Ok(1)
        }
        _ => Ok(0),
    }
}

/// Figures older than this are flagged: the processing thread that publishes them every second
/// is busy or blocked (e.g. on a full spool under `on_full = "block"`).
const STALE_MS: u64 = 5_000;

fn write_text(out: &mut impl Write, s: &Snapshot) -> std::io::Result<()> {
    writeln!(out, "daemon pid {} ({}), up {}s", s.pid, s.mode, s.uptime_secs)?;
    let age = super::unix_ms().saturating_sub(s.taken_unix_ms);
    if age > STALE_MS {
        writeln!(out, "figures {}s old: the processing thread is busy or blocked", age / 1000)?;
    }
    let lines: [(&str, u64); 24] = [
        ("records_in", s.records_in),
        ("events_in", s.events_in),
        ("events_out", s.events_out),
        ("events_incomplete", s.events_incomplete),
        ("events_late", s.events_late),
        ("unparsable_records", s.unparsable_records),
        ("serial_gaps", s.serial_gaps),
        ("missing_serials", s.missing_serials),
        ("kernel_lost", s.kernel_lost),
        ("enobufs", s.enobufs),
        ("truncated_datagrams", s.truncated_datagrams),
        ("channel_drops", s.channel_drops),
        ("filter_drops", s.filter_drops),
        ("spool_refused", s.spool_refused),
        ("spool_write_errors", s.spool_write_errors),
        ("events_cut_to_fit", s.events_cut_to_fit),
        ("process_table_entries", s.process_table_entries),
        ("process_table_evictions", s.process_table_evictions),
        ("process_table_seeded", s.process_table_seeded),
        ("process_table_looked_up", s.process_table_looked_up),
        ("process_table_looked_up_stale", s.process_table_looked_up_stale),
        ("spool_dropped_oldest", s.spool.dropped_oldest),
        ("spool_dropped_newest", s.spool.dropped_newest),
        ("spool_dropped_oversize", s.spool.dropped_oversize),
    ];
    for (k, v) in lines {
        writeln!(out, "{k} {v}")?;
    }
    if s.spool.enabled {
        let age = s.spool.oldest_unacked_age_secs.map_or("-".to_string(), |a| format!("{a}s"));
        writeln!(
            out,
            "spool {} of {} bytes, {} segments, {} events unacked, oldest unacked {age}",
            s.spool.bytes, s.spool.max_bytes, s.spool.segments, s.spool.events
        )?;
        match s.spool.full_in_secs {
            Some(secs) => writeln!(
                out,
                "spool full in ~{} min at the recent growth of {} bytes/s",
                secs.div_ceil(60),
                s.spool.growth_bytes_per_s
            )?,
            None => writeln!(out, "spool not growing")?,
        }
        if s.spool.raw_bytes_written > 0 {
            writeln!(
                out,
                "spool compression {:.3} (disk / JSON bytes written since start)",
                s.spool.disk_bytes_written as f64 / s.spool.raw_bytes_written as f64
            )?;
        }
    } else {
        writeln!(out, "spool none (events go to stdout)")?;
    }
    let n = &s.names;
    if n.enabled {
        writeln!(
            out,
            "names {} cached: hits {}, misses {}, lookups queued {}, dropped {} (queue full), evictions {}",
            n.entries, n.hits, n.misses, n.queued, n.dropped, n.evictions
        )?;
    } else {
        writeln!(out, "names off")?;
    }
    for o in &s.outputs {
        let state = o.down_secs.map_or("up".to_string(), |d| format!("down {d}s"));
        writeln!(
            out,
            "output {} ({}) {state}: sent {}, acked {}, pending {}, errors {}, reconnects {}, restarts {}, last error: {}",
            o.name,
            o.kind,
            o.sent,
            o.acked,
            o.pending,
            o.errors,
            o.reconnects,
            o.restarts,
            o.last_error.as_deref().unwrap_or("-")
        )?;
    }
    let r = &s.rules;
    let last = r
        .last_reload
        .as_ref()
        .map_or("none".to_string(), |l| format!("{} ({})", if l.ok { "ok" } else { "failed" }, l.message));
    writeln!(
        out,
        "rules {} loaded ({}), reloads {} ({} failed), last reload {last}",
        r.loaded,
        if r.source.is_empty() { "-" } else { &r.source },
        r.reloads,
        r.reloads_failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn no_daemon_says_so_and_shows_the_kernel_part() {
        let cfg = ControlConfig {
            socket: PathBuf::from(format!("/tmp/auditrelay-nothing-here-{}.sock", std::process::id())),
            ..ControlConfig::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(print(&cfg, false, &[("enabled", 1), ("pid", 0)], &mut out, &mut err).unwrap(), 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("enabled 1\npid 0\ndaemon not running: "), "{text}");
        assert!(err.is_empty());
        let mut out = Vec::new();
        assert_eq!(print(&cfg, true, &[("enabled", 1)], &mut out, &mut err).unwrap(), 0);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["enabled"].as_u64(), v["daemon"].is_null()), (Some(1), true), "{v}");
        assert!(v["daemon_error"].as_str().unwrap().contains("not running"), "{v}");
    }

    #[test]
    fn text_lists_every_output_and_the_rules() {
        let mut s = Snapshot { pid: 7, mode: "registered".into(), ..Snapshot::default() };
        s.outputs.push(super::super::OutputFigures {
            name: "relp".into(),
            kind: "relp".into(),
            down_secs: Some(12),
            last_error: Some("connection refused".into()),
            ..Default::default()
        });
        let mut out = Vec::new();
        write_text(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("output relp (relp) down 12s: sent 0,"), "{text}");
        assert!(text.contains("last error: connection refused"), "{text}");
        assert!(text.contains("filter_drops 0\n"), "{text}");
        assert!(text.ends_with("last reload none\n"), "{text}");
        assert!(text.contains("\nnames off\n"), "{text}");
    }

    #[test]
    fn text_shows_the_name_cache() {
        let names = super::super::NameFigures {
            enabled: true,
            hits: 40,
            misses: 3,
            queued: 3,
            dropped: 1,
            evictions: 2,
            entries: 5,
        };
        let s = Snapshot { names, ..Snapshot::default() };
        let mut out = Vec::new();
        write_text(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "\nnames 5 cached: hits 40, misses 3, lookups queued 3, dropped 1 (queue full), evictions 2\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["names"]["dropped"], 1, "{json}");
        let old: Snapshot = serde_json::from_str(r#"{"version":1,"pid":1,"mode":"registered","started_unix_ms":0,"taken_unix_ms":0,"uptime_secs":0,"records_in":0,"datagrams_in":0,"bytes_in":0,"events_in":0,"events_out":0,"events_incomplete":0,"events_late":0,"unparsable_records":0,"serial_gaps":0,"missing_serials":0,"kernel_lost":0,"enobufs":0,"truncated_datagrams":0,"channel_drops":0,"filter_drops":0,"spool_refused":0,"spool_write_errors":0,"events_cut_to_fit":0,"spool":{"enabled":false,"bytes":0,"segments":0,"events":0,"oldest_unacked_age_secs":null,"appended":0,"dropped_oldest":0,"dropped_newest":0,"dropped_oversize":0,"corrupt_skipped":0,"last_pos":0},"outputs":[],"rules":{"loaded":0,"source":"","reloads":0,"reloads_failed":0,"last_reload":null,"fetches":0,"fetch_failures":0}}"#).unwrap();
        assert!(!old.names.enabled, "a daemon without name figures reads as names off");
    }
}
