//! The network-output blocks documented (commented out) in examples/auditrelay.toml parse into the
//! sinks' config types, so the documented keys are the real ones.

// Test code: a failed expectation is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use auditrelay::output::relp::RelpConfig;
use auditrelay::output::tcp::TcpConfig;
use auditrelay::output::udp::UdpConfig;
use auditrelay::output::unix::UnixConfig;

/// Each commented `# [[output]]` block, uncommented, without its `type` line, `[output.tls]` as `[tls]`.
fn blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/auditrelay.toml")).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        let Some(l) = line.strip_prefix("# ") else {
            if line.trim() == "#" {
                out.extend(cur.take());
            }
            continue;
        };
        if l.starts_with("[[output]]") {
            out.extend(cur.take());
            cur = Some((String::new(), String::new()));
            continue;
        }
        let Some((ty, body)) = cur.as_mut() else { continue };
        if l.starts_with("----") {
            out.extend(cur.take());
            continue;
        }
        let code = l.split(" #").next().unwrap_or("").trim_end();
        if let Some(t) = code.strip_prefix("type = ") {
            *ty = t.trim_matches('"').to_string();
        } else if code == "[output.tls]" {
            body.push_str("[tls]\n");
        } else {
            body.push_str(code);
            body.push('\n');
        }
    }
    out.extend(cur);
    out
}

#[test]
fn documented_blocks_parse() {
    let blocks = blocks();
    let types: Vec<&str> = blocks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["relp", "tcp", "udp", "unix"]);
    for (ty, body) in &blocks {
        let r = match ty.as_str() {
            "relp" => toml::from_str::<RelpConfig>(body).map(|_| ()),
            "tcp" => toml::from_str::<TcpConfig>(body).map(|_| ()),
            "udp" => toml::from_str::<UdpConfig>(body).map(|_| ()),
            "unix" => toml::from_str::<UnixConfig>(body).map(|_| ()),
            other => panic!("unknown type {other}"),
        };
        r.unwrap_or_else(|e| panic!("{ty} block does not parse: {e}\n{body}"));
    }
    let relp: RelpConfig = toml::from_str(&blocks[0].1).unwrap();
    assert_eq!(relp.window, 128);
    assert!(relp.tls.is_some());
}
