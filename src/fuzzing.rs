//! Harnesses for the parsers that take input someone else shapes: one function per target, each
//! taking arbitrary bytes and panicking only on a real bug (a panic, or a broken invariant that
//! is asserted here). Two drivers call them: the cargo-fuzz targets in fuzz/ (libFuzzer, needs
//! `RUSTC_BOOTSTRAP=1` on stable) and the proptest properties in tests/fuzz_props.rs, which CI runs
//! on every build. Keeping the harness here means both drivers check the same invariants.
//!
//! Each harness bounds its own work (input size, records read), so a slow input is a finding of
//! the code under test, not of the harness.

use std::path::Path;
use std::time::Duration;

use crate::output::relp::frame::{self, Decoder, Response};
use crate::record::Record;
use crate::rules::ast::Line;
use crate::rules::data::RuleData;
use crate::rules::lex::{self, Lexed};
use crate::rules::parse::{self, Host};
use crate::rules::{compile, print};

/// Largest input a harness looks at (libFuzzer's default `-max_len` is 4096).
pub const MAX_INPUT: usize = 1 << 16;

/// Kernel record parser: first two bytes are the netlink message type, the rest the payload.
/// A parsed record's fields, body and audit.log rendering must be readable, and the log line it
/// renders must parse again to the same fields.
pub fn kernel_record(data: &[u8]) {
    let Some((kind, payload)) = data.split_first_chunk::<2>() else { return };
    let kind = u16::from_le_bytes(*kind);
    let payload = &payload[..payload.len().min(MAX_INPUT)];
    match Record::try_from_netlink(kind, payload.to_vec()) {
        Ok(r) => {
            let fields: Vec<_> = r.fields().map(|f| (f.key.to_vec(), f.value.to_vec())).collect();
            let _ = r.interpreted().count();
            let _ = r.get(b"type");
            let mut line = Vec::new();
            r.write_log_line(&mut line);
            // A kernel payload holding a newline is not one log line; nor is one whose body the
            // log-line reader would take for the ENRICHED separator; nor one ending in CR, which
            // the log-line reader strips as a line ending (CRLF logs, issue 11).
            if !line.contains(&b'\n') && !line.contains(&0x1d) && line.last() != Some(&b'\r') {
                if let Ok(again) = Record::from_log_line(line.clone()) {
                    let refields: Vec<_> = again.fields().map(|f| (f.key.to_vec(), f.value.to_vec())).collect();
                    assert_eq!(fields, refields, "fields change through the audit.log rendering {line:?}");
                }
            }
        }
        Err((_, back)) => {
            // The payload is handed back for the daemon to keep (trailing NULs removed).
            assert!(back.len() <= payload.len());
        }
    }
}

/// audit.log line parser (RAW and ENRICHED, with or without `node=`).
pub fn log_line(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    if let Ok(r) = Record::from_log_line(data.to_vec()) {
        let _ = r.fields().map(|f| f.key.len() + f.value.len()).sum::<usize>();
        let _ = r.interpreted().count();
        let _ = r.has_duplicate_keys();
        let mut out = Vec::new();
        r.write_log_line(&mut out);
        assert!(!out.is_empty());
    }
}

/// A machine with nothing on it: no directories, users or groups (auditctl consults only these).
struct BareHost;

impl Host for BareHost {
    fn is_dir(&self, path: &str) -> bool {
        path == "/" || path == "/etc" || path == "/tmp"
    }
    fn uid_by_name(&self, name: &str) -> Option<u32> {
        (name == "root").then_some(0)
    }
    fn gid_by_name(&self, name: &str) -> Option<u32> {
        (name == "root").then_some(0)
    }
}

/// Bytes a printed value can hold and still come back as the same word: auditctl's listing does
/// not quote, so a space (word separator), a leading `#` or a non-ASCII byte cannot round-trip;
/// nor can a two-character operator (`!=`, `>=`, `<=`, `&=`) inside a value printed as
/// `-F name=value`, which libaudit's audit_rule_fieldpair_data (and our parser, as it) splits at
/// that operator first (finding 7: `-w /etc/pam>=1000 -F auid!=unset` lists as
/// `-F path=/etc/pam>=1000`, field `path=/etc/pam`).
fn survives_printing(r: &RuleData) -> bool {
    r.fields.iter().filter_map(|f| f.text.as_deref()).all(|t| {
        !t.is_empty()
            && t.iter().all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
            && t[0] != b'#'
            && !t.windows(2).any(|w| matches!(w, b"!=" | b">=" | b"<=" | b"&="))
    })
}

/// Fields `auditctl -l` does not print back as written, kept as auditctl does it (the listing
/// must match `auditctl -l`): `filetype` lists as the number (`filetype=32768`) and only names
/// parse (libaudit audit_name_to_ftype; found by the rules_text fuzz target); `path!=`, `dir!=`
/// and `exe!=` list as `=` on the exit list (found by real_data_passes_every_harness).
/// Nor does an io_uring rule without `-S`. Not listed at all: a rule with two path/dir fields, which auditctl accepts and the kernel
/// refuses (EINVAL; found by the rules_text fuzz target, checked against auditctl and the kernel).
fn prints_irreversibly(r: &RuleData) -> bool {
    use crate::rules::data::{FILTER_EXIT, FILTER_MASK, F_DIR, F_EXE, F_FILETYPE, F_WATCH, OP_EQUAL};
    let paths = r.fields.iter().filter(|f| matches!(f.field, F_WATCH | F_DIR)).count();
    // An io_uring rule without -S has the full mask and lists as `-S all` (upstream auditctl 3.1),
    // while an explicit `-S all` there means the uringop table's operations (fuzz finding 3).
    let uring_full = r.list() & FILTER_MASK == crate::rules::data::FILTER_URING_EXIT && r.mask_lists_as_all();
    // `auditctl -l` prints arch fields first, then -S, then the rest: an arch field after another
    // field comes back in another place, another rule byte for byte (finding 8).
    let arch_late = r
        .fields
        .iter()
        .skip_while(|f| f.field == crate::rules::data::F_ARCH)
        .any(|f| f.field == crate::rules::data::F_ARCH);
    // String fields: auditctl 3.0.9 accepts any operator, the kernel refuses all but = and !=
    // (EINVAL: never listed), and lists `key!=k` as `key=k` (finding 9, checked with auditctl).
    let string_op = r.fields.iter().any(|f| {
        f.text.is_some()
            && (!matches!(f.op, OP_EQUAL | crate::rules::data::OP_NOT_EQUAL)
                || (f.field == crate::rules::data::F_FILTERKEY && f.op != OP_EQUAL))
    });
    // auditctl checks `-S` against the list only when the list is already known: `-S openat -a
    // never,filesystem` keeps the syscall in the mask, and `auditctl -l` prints no syscalls for
    // the user, task, exclude and filesystem lists, so the listing names the rule without it
    // (finding 11).
    let syscalls_unlisted = matches!(
        r.list() & FILTER_MASK,
        crate::rules::data::FILTER_USER
            | crate::rules::data::FILTER_TASK
            | crate::rules::data::FILTER_EXCLUDE
            | crate::rules::data::FILTER_FS
    ) && !r.mask_lists_as_all();
    // `-w PATH` adds its perm field at once (libaudit's audit_add_watch_dir); a later `-F perm=`
    // adds a second, listed as ` -p rwxa -p w`, and `-p` given twice keeps only the last (finding 12).
    let perms = r.fields.iter().filter(|f| f.field == crate::rules::data::F_PERM).count();
    paths > 1
        || perms > 1
        || syscalls_unlisted
        || uring_full
        || arch_late
        || string_op
        || r.fields.iter().any(|f| {
            f.field == F_FILETYPE
                || (matches!(f.field, F_WATCH | F_DIR | F_EXE)
                    && f.op != OP_EQUAL
                    && r.list() & FILTER_MASK == FILTER_EXIT)
        })
}

/// A rule `auditctl -l` prints as a watch (`-w PATH -p PERMS`, exit list, all syscalls, only
/// path, perm and key fields) comes back from that line as another rule when: the perm field
/// comes before the path, or there is no path (auditctl prints fields in order, ` -p x-w /usr/bin/gem`
/// or ` -p wa`: no rule line; finding 6); `-w` trims trailing slashes that `-F dir=/etc/x/` kept; whether
/// `-w` makes a dir or a watch field depends on the host (BareHost knows only /, /etc, /tmp).
/// auditctl 3.0.9 lists these the same way (tests/data/rules/goldens.jsonl: `-F dir=/etc/selinux/`
/// lists as `-w /etc/selinux/`); found by the rules_text fuzz target (finding 5).
fn watch_form_irreversible(r: &RuleData, printed: &str) -> bool {
    use crate::rules::data::{FILTER_EXIT, FILTER_MASK, F_DIR, F_WATCH};
    if printed.starts_with(" -p") {
        return true;
    }
    if !printed.starts_with("-w ") {
        return false;
    }
    let Some(path) = r.fields.iter().find(|f| matches!(f.field, F_WATCH | F_DIR)) else { return true };
    let text = path.text_lossy();
    // A relative path (finding 10): `-w` needs a leading '/', and the kernel refuses such a watch
    // (audit_to_watch: EINVAL), so it is never listed.
    r.list() & FILTER_MASK != FILTER_EXIT
        || !text.starts_with('/')
        || (text.len() > 2 && text.ends_with('/'))
        || (path.field == F_DIR) != BareHost.is_dir(&text)
}

/// Rule parser: every line, then the whole text as a set. For each rule that compiles:
/// binary → decode is exact, and its `auditctl -l` text parses back to the same kernel rule.
pub fn rules_text(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines().take(256) {
        let Lexed::Words(words) = lex::lex(line) else { continue };
        let Ok(Line::Rule(rule)) = parse::parse_words(&words, &BareHost) else { continue };
        let bytes = rule.data.encode();
        let decoded = RuleData::decode(&bytes);
        assert_eq!(decoded.as_ref().ok(), Some(&rule.data), "encode → decode changes `{line}`");
        let listed = rule.data.kernel_normalise();
        let printed = print::rule_text(&listed);
        if !survives_printing(&listed) || prints_irreversibly(&listed) || watch_form_irreversible(&listed, &printed) {
            continue;
        }
        let Lexed::Words(words) = lex::lex(printed.trim_end()) else {
            panic!("`{line}` prints as `{printed}`, which is no rule line")
        };
        match parse::parse_words(&words, &BareHost) {
            Ok(Line::Rule(again)) => assert!(
                rule.data.lists_as(&again.data.kernel_normalise()),
                "`{line}` prints as `{}`, which is another rule",
                printed.trim_end()
            ),
            other => panic!("`{line}` prints as `{}`, which does not parse: {other:?}", printed.trim_end()),
        }
    }
    let _ = compile::compile_text("fuzz.rules", text, &BareHost);
}

/// RELP frame decoder: the bytes fed in pieces (sizes from the input itself); every decoded
/// frame encodes back to bytes that decode to the same frame; `rsp` data parses or is refused.
pub fn relp_frames(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let Some((&split, rest)) = data.split_first() else { return };
    let mut dec = Decoder::new(4096);
    let step = usize::from(split).max(1);
    'feed: for chunk in rest.chunks(step) {
        dec.extend(chunk);
        loop {
            match dec.decode() {
                Ok(Some(f)) => {
                    let _ = Response::parse(&f.data);
                    let mut enc = Vec::new();
                    frame::encode(f.txnr, f.command.as_str(), &f.data, &mut enc);
                    let mut again = Decoder::new(4096);
                    again.extend(&enc);
                    assert_eq!(again.decode().ok().flatten().as_ref(), Some(&f), "frame does not round-trip");
                    assert_eq!(again.pending(), 0);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
}

/// Spool recovery: the bytes as the only segment file of a spool; opening it and reading every
/// record must neither panic nor hang, and a record returned as valid is one that was written.
/// Appending after recovery must work and be read back.
/// The bytes are a v2 segment (compressed frames; the `ARSPOOL2` magic is prepended when missing so
/// that arbitrary bytes reach the frame parser); [`spool_segment_v1`] is the same for v1 segments.
pub fn spool_segment(data: &[u8], dir: &Path) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let mut seg = Vec::with_capacity(data.len() + 8);
    if !data.starts_with(&crate::spool::segment::MAGIC) {
        seg.extend_from_slice(&crate::spool::segment::MAGIC);
    }
    seg.extend_from_slice(data);
    spool_segment_at(&seg, dir, crate::spool::segment::path(dir, 1));
}

/// [`spool_segment`] for a v1 segment (uncompressed records, read after an upgrade).
pub fn spool_segment_v1(data: &[u8], dir: &Path) {
    spool_segment_at(&data[..data.len().min(MAX_INPUT)], dir, crate::spool::segment::path_v1(dir, 1));
}

fn spool_segment_at(data: &[u8], dir: &Path, seg: std::path::PathBuf) {
    use crate::spool::{OnFull, Spool, SpoolConfig};
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if std::fs::write(&seg, data).is_err() {
        return;
    }
    let cfg = SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 16,
        max_record_bytes: 4096,
        on_full: OnFull::DropOldest,
        fsync_interval: Duration::from_secs(3600),
        fsync_every: 0,
        cursor_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(1),
        ..SpoolConfig::default()
    };
    let outputs = ["fuzz".to_string()];
    let Ok(spool) = Spool::open(&cfg, &outputs) else { return };
    let mut reader = spool.reader(0);
    let mut last = 0;
    // Bounded by what the file can hold: a v1 record takes at least 8 bytes; a v2 frame at least
    // 32 and decompresses to at most max_raw / 14 records.
    let bound = (data.len() / 8 + 4) * (crate::spool::frame::max_raw(cfg.max_record_bytes) as usize / 14);
    for _ in 0..=bound {
        match reader.next(Duration::ZERO) {
            Ok(Some(r)) => {
                assert!(r.pos > last, "positions go backwards: {} after {last}", r.pos);
                last = r.pos;
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    if let Ok(appended) = spool.append(1, "fuzz-id", b"{\"after\":\"recovery\"}") {
        let mut found = false;
        for _ in 0..=bound + 2 {
            match reader.next(Duration::ZERO) {
                Ok(Some(r)) if r.id == "fuzz-id" => {
                    found = true;
                    assert_eq!(r.body, b"{\"after\":\"recovery\"}");
                    break;
                }
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
        }
        assert!(found, "the record appended after recovery ({appended:?}) is not read back");
    }
    drop(reader);
    drop(spool);
    let _ = std::fs::remove_dir_all(dir);
}

/// Config loader: arbitrary TOML text; an accepted config also passes its own validation.
pub fn config_text(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = crate::config::Config::parse(text, Path::new("fuzz.toml")) {
        assert_eq!(c.validate(), Ok(()));
        let _ = c.rules.validate();
    }
}

/// EXECVE argv reassembly and the whole interpretation: the input is audit.log lines of one event
/// (`\n`-separated; ones that do not parse are skipped). Argv must stay within its byte bound,
/// agree with `argc` whenever it is not flagged, and the schema v2 line must be valid JSON whose
/// records are the schema v1 line's.
pub fn execve_argv(data: &[u8]) {
    use crate::enrich::{execve, Enricher};
    use crate::format::JsonWriter;
    use crate::reassemble::{Completion, Event, Output};
    const MAX_ARGV: usize = 4096;
    let data = &data[..data.len().min(MAX_INPUT)];
    let records: Vec<Record> =
        data.split(|&b| b == b'\n').take(64).filter_map(|l| Record::from_log_line(l.to_vec()).ok()).collect();
    let (mut text, mut args) = (Vec::new(), Vec::new());
    let argv = execve::reassemble(records.iter(), &mut text, &mut args, MAX_ARGV);
    assert!(text.len() <= MAX_ARGV, "argv exceeds its bound: {} bytes", text.len());
    if !argv.incomplete && !argv.truncated {
        assert_eq!(argv.argc.map(|n| n as usize), Some(args.len()), "argc disagrees and nothing is flagged");
    }
    let Some(first) = records.first() else { return };
    let event =
        Event { id: first.id, node: None, records, incomplete: false, late: false, completion: Completion::EndOfEvent };
    let out = Output::Event(event);
    let v1: serde_json::Value = match serde_json::from_slice(JsonWriter::new(None).write(&out)) {
        Ok(v) => v,
        Err(e) => panic!("schema v1 line is not JSON: {e}"),
    };
    let mut writer = JsonWriter::new(None).with_enricher(Some(Enricher::new(Some("h"), None, MAX_ARGV)));
    let v2: serde_json::Value = match serde_json::from_slice(writer.write(&out)) {
        Ok(v) => v,
        Err(e) => panic!("schema v2 line is not JSON: {e}"),
    };
    assert_eq!(v1["records"], v2["records"], "interpretation changed the raw records");
}

/// SOCKADDR decoding: the input is the `struct sockaddr` bytes (hex-encoded here as the kernel
/// does), then also taken as the `saddr=` text itself. Decoded inet/inet6 addresses must parse
/// back to the bytes they came from; a unix path is never longer than its buffer.
pub fn sockaddr(data: &[u8]) {
    use crate::enrich::network::decode;
    let data = &data[..data.len().min(MAX_INPUT)];
    let hex: Vec<u8> = data.iter().flat_map(|b| format!("{b:02X}").into_bytes()).collect();
    let (mut scratch, mut text) = (Vec::new(), Vec::new());
    let a = decode(&hex, &mut scratch, &mut text);
    let get = |span: Option<(usize, usize)>| span.map(|(s, e)| &text[s..e]);
    if let Some(address) = get(a.address) {
        let address = std::str::from_utf8(address).unwrap_or_default();
        match a.family {
            Some("inet") => assert_eq!(
                address.parse::<std::net::Ipv4Addr>().ok().map(|ip| ip.octets().to_vec()),
                data.get(4..8).map(<[u8]>::to_vec)
            ),
            Some("inet6") => assert_eq!(
                address.parse::<std::net::Ipv6Addr>().ok().map(|ip| ip.octets().to_vec()),
                data.get(8..24).map(<[u8]>::to_vec)
            ),
            other => panic!("an address for family {other:?}"),
        }
        assert_eq!(a.port.map(u16::to_be_bytes).map(|p| p.to_vec()), data.get(2..4).map(<[u8]>::to_vec));
    }
    if let Some(path) = get(a.path) {
        assert!(path.len() <= data.len().saturating_sub(1), "unix path longer than its buffer");
    }
    assert!(
        a.raw || a.address.is_some() || a.path.is_some() || a.pid.is_some(),
        "decoded to nothing without the raw hex"
    );
    text.clear();
    let _ = decode(data, &mut scratch, &mut text);
}
