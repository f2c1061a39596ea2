//! The output formats over real data: tests/data/sample-audit.log (a real capture) and the
//! hand-made shapes in tests/data/replay-compat/ (ENRICHED, node=, legacy, CRLF, out of order).
//!
//! - golden files per format (tests/data/formats/), regenerated with
//!   `AUDITRELAY_REGENERATE_GOLDEN=1 cargo test --test formats` and reviewed by hand;
//! - audit.log in, `auditlog` out: the same lines byte for byte (RAW logs through `auditlog`,
//!   ENRICHED ones through `auditlog_enriched`), each event's lines in their order;
//! - `ausearch -if` reads the `auditlog` output (auditd's own tool is installed on the test VM;
//!   without it the test fails, it does not pass quietly);
//! - every record type of the corpus passes through every format with no raw field lost.
//!
//! Names come from a fixed table, not this machine's NSS, so the goldens do not depend on the host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use auditrelay::format::names::Names;
use auditrelay::format::native::NativeLine;
use auditrelay::format::{Formatter, JsonWriter, OutputFormat};
use auditrelay::reassemble::ReassembleConfig;
use auditrelay::replay::{replay_formatted, replay_with};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn data(rel: &str) -> PathBuf {
    Path::new(DATA).join(rel)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (test data is committed in tests/data/)", path.display()))
}

/// The users of the corpus (root, the capture's test users).
fn names() -> Names {
    Names::fixed(&[(0, "root"), (1000, "kit"), (4242, "auditor")])
}

/// Replay `input` into `format`; returns the output and the line numbers replay reported bad.
fn replay(input: &[u8], format: OutputFormat) -> (Vec<u8>, Vec<u64>) {
    let mut f = Formatter::with_names(format, names()).with_host(Some("corpus-host".into()));
    let mut out = Vec::new();
    let mut bad = Vec::new();
    replay_formatted(input, &ReassembleConfig::default(), &mut f, None, &mut out, |e| {
        let text = e.to_string();
        let n = text.strip_prefix("line ").and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok());
        bad.push(n.unwrap_or_else(|| panic!("bad line report without a number: {text}")));
    })
    .unwrap();
    assert_eq!(f.failed, 0, "every native line converts");
    (out, bad)
}

const GOLDEN_FORMATS: &[(OutputFormat, &str)] = &[
    (OutputFormat::GoAudit, "sample-audit.go-audit.jsonl"),
    (OutputFormat::Ecs, "sample-audit.ecs.jsonl"),
    (OutputFormat::Auditlog, "sample-audit.auditlog.log"),
    (OutputFormat::AuditlogEnriched, "sample-audit.auditlog_enriched.log"),
];

#[test]
fn each_format_matches_its_golden_file() {
    let input = read(&data("sample-audit.log"));
    for (format, file) in GOLDEN_FORMATS {
        let (out, bad) = replay(&input, *format);
        assert!(bad.is_empty());
        let path = data(&format!("formats/{file}"));
        if std::env::var_os("AUDITRELAY_REGENERATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out).unwrap();
        }
        let golden = read(&path);
        if out != golden {
            let line = out.split(|&b| b == b'\n').zip(golden.split(|&b| b == b'\n')).position(|(a, b)| a != b);
            panic!(
                "{} output differs from {} at line {:?}; if intended, rerun with AUDITRELAY_REGENERATE_GOLDEN=1",
                format.name(),
                path.display(),
                line.map(|i| i + 1)
            );
        }
    }
}

/// Native lines converted to ECS one by one (v2 lines, hand-made shapes), against their golden.
fn ecs_of_native_lines_matches(native: &str, golden: &str) {
    let input = read(&data(native));
    let mut f = Formatter::with_names(OutputFormat::Ecs, names()).with_host(Some("corpus-host".into()));
    let mut out = Vec::new();
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice(f.convert(line, 1_795_374_595_144).unwrap());
        out.push(b'\n');
    }
    let path = data(golden);
    if std::env::var_os("AUDITRELAY_REGENERATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let golden = read(&path);
    let line = out.split(|&b| b == b'\n').zip(golden.split(|&b| b == b'\n')).position(|(a, b)| a != b);
    assert!(out == golden, "ecs of {native} differs from {} at line {:?}", path.display(), line.map(|i| i + 1));
}

/// Schema v2 lines (the enriched corpus): ECS reads the interpretation members.
#[test]
fn ecs_of_v2_lines_matches_its_golden_file() {
    ecs_of_native_lines_matches("sample-audit.golden-v2.jsonl", "formats/sample-audit.v2.ecs.jsonl");
}

/// Shapes the capture lacks: escapes JSON spells two ways (\b, \f), Latin-1 values, repeated keys,
/// user-space messages, every sockaddr family, v2 members of unexpected types, notices.
#[test]
fn ecs_of_edge_case_lines_matches_its_golden_file() {
    ecs_of_native_lines_matches("formats/ecs-edge-cases.native.jsonl", "formats/ecs-edge-cases.ecs.jsonl");
}

/// `audit(…)` stamp of an audit.log line.
fn stamp(line: &[u8]) -> Vec<u8> {
    let s = memchr::memmem::find(line, b"msg=audit(").unwrap() + 10;
    let e = s + memchr::memchr(b')', &line[s..]).unwrap();
    line[s..e].to_vec()
}

fn is_our_notice(line: &[u8]) -> bool {
    line.starts_with(b"type=DAEMON_ERR ") && memchr::memmem::find(line, b" op=auditrelay_").is_some()
}

#[test]
fn audit_log_in_auditlog_out_gives_back_its_lines() {
    let mut files = vec![data("sample-audit.log")];
    let mut compat: Vec<PathBuf> =
        std::fs::read_dir(data("replay-compat")).unwrap().map(|e| e.unwrap().path()).collect();
    compat.sort();
    files.extend(compat);
    let mut checked = 0;
    for path in files {
        let input = read(&path);
        let lines: Vec<(u64, &[u8])> = input
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        // RAW events come back through `auditlog`, ENRICHED ones through `auditlog_enriched` (a
        // file may mix both: auditd's log_format changed while it ran).
        for format in [OutputFormat::Auditlog, OutputFormat::AuditlogEnriched] {
            let (out, bad) = replay(&input, format);
            let enriched_events: BTreeSet<Vec<u8>> =
                lines.iter().filter(|(n, l)| !bad.contains(n) && l.contains(&0x1d)).map(|(_, l)| stamp(l)).collect();
            let wanted = |l: &[u8]| enriched_events.contains(&stamp(l)) == (format == OutputFormat::AuditlogEnriched);
            let expected: Vec<&[u8]> =
                lines.iter().filter(|(n, l)| !bad.contains(n) && wanted(l)).map(|(_, l)| *l).collect();
            let got: Vec<&[u8]> =
                out.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !is_our_notice(l) && wanted(l)).collect();
            let sorted = |v: &[&[u8]]| {
                let mut v: Vec<String> = v.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
                v.sort();
                v
            };
            assert_eq!(
                sorted(&got),
                sorted(&expected),
                "{} through {}: the same lines, byte for byte",
                path.display(),
                format.name()
            );
            let by_stamp = |v: &[&[u8]]| {
                let mut m: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
                for l in v {
                    m.entry(stamp(l)).or_default().push(l.to_vec());
                }
                m
            };
            assert_eq!(by_stamp(&got), by_stamp(&expected), "{}: each event's lines in order", path.display());
            checked += expected.len();
        }
    }
    assert!(checked > 2800, "{checked} lines checked");
}

#[test]
fn ausearch_reads_the_auditlog_output() {
    let input = read(&data("sample-audit.log"));
    let (out, _) = replay(&input, OutputFormat::Auditlog);
    let dir = std::env::temp_dir().join(format!("auditrelay-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.log");
    std::fs::write(&file, &out).unwrap();
    let run =
        |args: &[&str]| {
            let o =
                std::process::Command::new("ausearch").args(args).arg("-if").arg(&file).output().unwrap_or_else(|e| {
                    panic!("ausearch (Debian package auditd) must be installed to run this test: {e}")
                });
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
    // `--raw` prints every record it read; it must have read all of them.
    let raw = run(&["--raw"]);
    assert_eq!(raw.lines().count(), input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());
    // A search by key and one by event id find what the capture has.
    let by_key = run(&["-k", "ids", "--raw"]);
    let expected_key = String::from_utf8_lossy(&input).lines().filter(|l| l.contains("key=\"ids\"")).count();
    assert!(expected_key > 0 && by_key.lines().filter(|l| l.contains("key=\"ids\"")).count() == expected_key);
    let interpreted = run(&["-a", "31357", "-i"]);
    assert!(interpreted.contains("syscall=execve"), "{interpreted}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every string in a JSON value, recursively.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn every_record_type_passes_every_format_with_no_raw_field_lost() {
    let input = read(&data("sample-audit.log"));
    let mut native = Vec::new();
    let mut writer = JsonWriter::new(None).with_record_text(true);
    replay_with(&input[..], &ReassembleConfig::default(), &mut writer, &mut native, |e| panic!("{e}")).unwrap();
    let mut types_seen: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let formats = [
        OutputFormat::Native,
        OutputFormat::GoAudit,
        OutputFormat::Ecs,
        OutputFormat::Auditlog,
        OutputFormat::AuditlogEnriched,
    ];
    let mut formatters: Vec<Formatter> = formats.iter().map(|f| Formatter::with_names(*f, names())).collect();
    for line in native.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let event = NativeLine::parse(line).unwrap();
        for f in &mut formatters {
            let format = f.format();
            let out = f.convert(line, 0).unwrap().to_vec();
            // Where the format puts the record text: JSON strings, or the lines themselves.
            let texts: Vec<String> = match format {
                OutputFormat::Auditlog | OutputFormat::AuditlogEnriched => {
                    String::from_utf8(out).unwrap().lines().map(str::to_string).collect()
                }
                _ => {
                    let mut s = Vec::new();
                    strings(&serde_json::from_slice(&out).unwrap(), &mut s);
                    s
                }
            };
            for r in &event.records {
                // go-audit, like go-audit itself, has no message for EOE (which has no fields).
                if format == OutputFormat::GoAudit && r.type_id == Some(1320) {
                    assert!(r.fields.0.is_empty());
                    continue;
                }
                for (key, values) in &r.fields.0 {
                    for v in values.iter() {
                        let needle = if key.as_str() == "_words" {
                            v.as_str().to_string()
                        } else {
                            format!("{}={}", key.as_str(), v.as_str())
                        };
                        let quoted = format!("{}=\"{}\"", key.as_str(), v.as_str());
                        let single = format!("{}='{}'", key.as_str(), v.as_str());
                        assert!(
                            texts.iter().any(|t| t.contains(&needle) || t.contains(&quoted) || t.contains(&single)),
                            "{}: {} field {needle} of event {:?} lost",
                            format.name(),
                            r.type_name.as_str(),
                            event.sequence
                        );
                    }
                }
                types_seen.entry(format.name()).or_default().insert(r.type_name.as_str().to_string());
            }
        }
    }
    let corpus_types: BTreeSet<String> = String::from_utf8_lossy(&input)
        .lines()
        .map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("type=")).unwrap().to_string())
        .collect();
    for f in formats {
        let mut expected = corpus_types.clone();
        if f == OutputFormat::GoAudit {
            expected.remove("EOE");
        }
        assert_eq!(types_seen[f.name()], expected, "{}", f.name());
    }
    assert!(corpus_types.len() >= 30, "{corpus_types:?}");
}

/// Whether `mapping` (an index template's `properties` object) maps the member at `path` of a
/// document: every object level is mapped, and a `flattened` field covers what is below it.
fn mapped(mapping: &serde_json::Value, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else { return true };
    let Some(field) = mapping.get(*first) else { return false };
    if field["type"] == "flattened" || rest.is_empty() {
        return true;
    }
    mapped(&field["properties"], rest)
}

fn leaf_paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                prefix.push(k.clone());
                leaf_paths(x, prefix, out);
                prefix.pop();
            }
        }
        serde_json::Value::Array(a) if a.iter().any(serde_json::Value::is_object) => {
            a.iter().for_each(|x| leaf_paths(x, prefix, out));
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

#[test]
fn the_shipped_ecs_index_template_maps_every_member_we_write() {
    let template: serde_json::Value = serde_json::from_slice(&read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rsyslog/elasticsearch-ecs-index-template.json"),
    ))
    .unwrap();
    let mappings = &template["template"]["mappings"];
    assert_eq!(mappings["dynamic"], "strict", "an unmapped member must be an indexing error, not a guess");
    let input = read(&data("sample-audit.log"));
    let (mut out, _) = replay(&input, OutputFormat::Ecs);
    // Loss notices too (not in this capture).
    let mut f = Formatter::with_names(OutputFormat::Ecs, names());
    out.extend_from_slice(f.convert(br#"{"loss":{"kind":"serial_gap","first":1,"last":2,"count":2}}"#, 0).unwrap());
    out.push(b'\n');
    // What only the daemon's process table knows (replay has no /proc): the parent and container.
    let exec = br#"{"sequence":9,"timestamp":"1.000","time":"1970-01-01T00:00:01.000Z","process":{"pid":77,"ppid":1,"comm":"curl","exe":"/usr/bin/curl","parent":{"pid":1,"exe":"/usr/bin/bash","comm":"bash","argv":["bash"]},"container_id":"4f1b1a1f2b2e3c3d4e4f5a5b6c6d7e7f8091a2b3c4d5e6f708192a3b4c5d6e7f"},"records":[{"type":"SYSCALL","type_id":1300,"fields":{"arch":"c000003e","syscall":"59","success":"yes","exit":"0","ppid":"1","pid":"77","comm":"curl","exe":"/usr/bin/curl"}},{"type":"EOE","type_id":1320,"fields":{}}]}"#;
    out.extend_from_slice(f.convert(exec, 0).unwrap());
    out.push(b'\n');
    let mut paths = BTreeSet::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        leaf_paths(&serde_json::from_slice(line).unwrap(), &mut Vec::new(), &mut paths);
    }
    for p in &paths {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        assert!(mapped(&mappings["properties"], &p), "{} is not in the ECS index template", p.join("."));
    }
    assert!(paths.len() > 40, "{}", paths.len());
}

#[test]
fn replay_format_on_the_command_line_is_the_same_conversion() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["replay", "--format", "auditlog"])
        .arg(data("sample-audit.log"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let input = read(&data("sample-audit.log"));
    let mut expected: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    got.sort();
    expected.sort();
    assert!(got == expected, "replay --format auditlog gives back the capture's lines");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["replay", "--format", "xml"])
        .arg(data("sample-audit.log"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("go-audit"), "the error lists the formats");
}

/// A v2 member of any JSON type (a newer or hand-edited line) still gives one valid ECS document:
/// every member of a sample of the enriched corpus replaced by odd shapes, and notices of any type.
#[test]
fn ecs_of_v2_members_of_any_type_is_valid_json() {
    let v2 = read(&data("sample-audit.golden-v2.jsonl"));
    let mut f = Formatter::with_names(OutputFormat::Ecs, names());
    let odd = [
        "null",
        "1",
        "-1",
        "1.5e300",
        "\"s\"",
        "[]",
        "{}",
        "[1,{\"a\":[null]},\"x\"]",
        "{\"paths\":[{},{\"name\":{\"x\":1},\"mode\":[1]},3]}",
        "{\"uid\":\"unset\",\"gid\":-5,\"x_name\":7,\"_name\":\"a\"}",
        "[{\"address\":[1],\"port\":{\"a\":1},\"path\":null}]",
        "{\"pid\":1e3,\"argv\":[{}],\"title\":[[],null]}",
    ];
    let mut converted = 0;
    for line in v2.split(|b| *b == b'\n').filter(|l| !l.is_empty()).step_by(7) {
        let mut v: serde_json::Value = serde_json::from_slice(line).unwrap();
        for member in ["host", "syscall", "process", "user", "file", "network", "keys"] {
            let kept = v[member].take();
            for shape in odd {
                v[member] = serde_json::from_str(shape).unwrap();
                let out = f.convert(v.to_string().as_bytes(), 0).unwrap().to_vec();
                serde_json::from_slice::<serde_json::Value>(&out)
                    .unwrap_or_else(|e| panic!("{member} = {shape}: {e}: {}", String::from_utf8_lossy(&out)));
                converted += 1;
            }
            v[member] = kept;
        }
    }
    for shape in odd {
        for kind in ["loss", "unparsed"] {
            let out = f.convert(format!("{{\"{kind}\":{shape}}}").as_bytes(), 0).unwrap().to_vec();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }
    assert!(converted > 1000, "{converted}");
}
