//! Fitting an oversized event into an output's `max_message_size` without crashing, wedging or
//! silently dropping it.
//!
//! Why: a receiver rejects or cuts messages above its own limit (rsyslog `maxMessageSize`, imrelp
//! `maxDataSize`), and an event that can never be delivered would block its sink forever. What makes
//! audit events huge is almost always EXECVE argv (a 100 kB command line is ordinary), so that is
//! what gets cut first.
//!
//! Steps, each taken only when the previous one was not enough:
//! 1. Cut the longest EXECVE argument values (`a0`, `a1`, … and split ones `a1[0]`, …, and schema
//!    v2's decoded `process.argv` elements, which repeat them) in the middle, water-level style (the longest are cut first, down to a common length), inserting a
//!    marker that states the original length. Head and tail survive because both matter for
//!    forensics (the program, and the file it was pointed at).
//! 2. Replace whole records, largest first, by a stub that keeps `type`/`type_id` and states how many
//!    bytes were removed.
//! 3. Replace the event by a stub that keeps its identity (`id`, `sequence`, `timestamp`, `time`,
//!    `node`) and says so.
//!
//! Invariants: the output is valid JSON whenever the input was; everything not cut is byte-for-byte
//! what came in (keys, order, repeated keys and number spellings are kept, because values travel as
//! raw JSON text); a cut event carries `"truncated":true`. An input that is not JSON (never produced
//! by our encoder) becomes a step-3 stub built from the delivery's id and time.

use std::fmt::Write as _;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Below this many bytes an argument is not worth cutting further; step 2 takes over.
const MIN_KEEP: usize = 64;
/// Upper bound of the marker's length (the number in it has at most 20 digits).
const MARKER_MAX: usize = 64;
/// Rounds of step 1 before giving up on it (each round asks for more than the last).
const ROUNDS: usize = 8;

/// What [`fit`] did, for logs and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    pub original_len: usize,
    pub final_len: usize,
    pub args_cut: usize,
    pub records_stubbed: usize,
    pub event_stubbed: bool,
}

#[derive(Debug)]
pub enum Fit<'a> {
    AsIs(&'a [u8]),
    Cut { body: Vec<u8>, report: CutReport },
}

/// JSON object entries in document order, repeated keys kept, values as raw text.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Entries<'a>, M::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, &'de RawValue>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn push_key(out: &mut String, k: &str) {
    // A String always serializes; the fallback only keeps this free of unwrap.
    out.push_str(&serde_json::to_string(k).unwrap_or_else(|_| String::from("\"\"")));
    out.push(':');
}

fn is_execve_arg(key: &str) -> bool {
    let Some(rest) = key.strip_prefix('a') else { return false };
    let (num, split) = match rest.find('[') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(num)
        && match split {
            None => true,
            Some(s) => s.len() > 2 && s.ends_with(']') && digits(&s[1..s.len() - 1]),
        }
}

struct Record<'a> {
    raw: &'a RawValue,
    /// Present for EXECVE records: the record's entries and which entry is `fields`.
    execve: Option<(Entries<'a>, usize, Entries<'a>)>,
    /// This record's arguments in [`Event::args`], which are in (record, field) order: rendering
    /// walks them with a cursor beside the fields instead of searching the whole list per field
    /// (that search made 200 k one-byte arguments quadratic).
    args: std::ops::Range<usize>,
}

/// A cuttable argument: an EXECVE record's `fields` entry, or, with `in_argv`, element `field`
/// of schema v2's decoded `process.argv`, which repeats those arguments (those come last).
struct Arg {
    /// Index of the field in its record's `fields` object (or in `process.argv`).
    field: usize,
    in_argv: bool,
    value: String,
}

struct Event<'a> {
    top: Entries<'a>,
    records_at: Option<usize>,
    records: Vec<Record<'a>>,
    args: Vec<Arg>,
    /// Schema v2's `process`: its index in `top`, its entries and the index of `argv` in them.
    process: Option<(usize, Entries<'a>, usize)>,
}

fn parse(body: &[u8]) -> Option<Event<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let top: Entries = serde_json::from_str(text).ok()?;
    let records_at = top.0.iter().position(|(k, _)| k == "records");
    let mut records = Vec::new();
    let mut args = Vec::new();
    if let Some(i) = records_at {
        let list: Vec<&RawValue> = serde_json::from_str(top.0[i].1.get()).ok()?;
        for raw in list {
            let mut execve = None;
            let first_arg = args.len();
            if let Ok(entries) = serde_json::from_str::<Entries>(raw.get()) {
                let is_execve = entries
                    .0
                    .iter()
                    .any(|(k, v)| k == "type" && serde_json::from_str::<&str>(v.get()).ok() == Some("EXECVE"));
                let fields_at = entries.0.iter().position(|(k, _)| k == "fields");
                if let (true, Some(fi)) = (is_execve, fields_at) {
                    if let Ok(fields) = serde_json::from_str::<Entries>(entries.0[fi].1.get()) {
                        for (fidx, (k, v)) in fields.0.iter().enumerate() {
                            if is_execve_arg(k) {
                                if let Ok(value) = serde_json::from_str::<String>(v.get()) {
                                    args.push(Arg { field: fidx, in_argv: false, value });
                                }
                            }
                        }
                        execve = Some((entries, fi, fields));
                    }
                }
            }
            records.push(Record { raw, execve, args: first_arg..args.len() });
        }
    }
    let mut process = None;
    if let Some(pi) = top.0.iter().position(|(k, _)| k == "process") {
        if let Ok(entries) = serde_json::from_str::<Entries>(top.0[pi].1.get()) {
            if let Some(ai) = entries.0.iter().position(|(k, _)| k == "argv") {
                if let Ok(argv) = serde_json::from_str::<Vec<String>>(entries.0[ai].1.get()) {
                    for (n, value) in argv.into_iter().enumerate() {
                        args.push(Arg { field: n, in_argv: true, value });
                    }
                    process = Some((pi, entries, ai));
                }
            }
        }
    }
    Some(Event { top, records_at, records, args, process })
}

/// `process` with its `argv` elements cut to `level`; returns how many were cut.
fn render_process(
    out: &mut String,
    ev: &Event,
    entries: &Entries,
    argv_at: usize,
    level: usize,
    cost: &mut Cost,
) -> usize {
    let mut cuts = 0;
    out.push('{');
    for (ei, (k, v)) in entries.0.iter().enumerate() {
        if ei > 0 {
            out.push(',');
        }
        push_key(out, k);
        cost.steps += 1;
        if ei != argv_at {
            out.push_str(v.get());
            continue;
        }
        out.push('[');
        for (n, a) in ev.args.iter().filter(|a| a.in_argv).enumerate() {
            if n > 0 {
                out.push(',');
            }
            cost.steps += 1;
            if a.value.len() > level + MARKER_MAX {
                cuts += 1;
                out.push_str(&serde_json::to_string(&cut_middle(&a.value, level)).unwrap_or_default());
            } else {
                out.push_str(&serde_json::to_string(&a.value).unwrap_or_default());
            }
        }
        out.push(']');
    }
    out.push('}');
    cuts
}

/// Cut `s` to about `keep` bytes: head, marker, tail, on char boundaries.
fn cut_middle(s: &str, keep: usize) -> String {
    let head_want = keep / 2;
    let tail_want = keep - head_want;
    let mut head_end = head_want.min(s.len());
    while !s.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = s.len().saturating_sub(tail_want).max(head_end);
    while !s.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let mut out = String::with_capacity(keep + MARKER_MAX);
    out.push_str(&s[..head_end]);
    let _ = write!(out, "...[auditrelay: cut, original length {} bytes]...", s.len());
    out.push_str(&s[tail_start..]);
    out
}

/// Work done by [`fit`], counted so tests can bound it (a timer would be flaky under load).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cost {
    /// Whole-event renders.
    renders: u64,
    /// Entries (keys with values) written or measured, arguments examined by [`level_for`].
    steps: u64,
}

/// Render the event with argument `level` applied (None = no cuts) and some records stubbed.
fn render(ev: &Event, level: Option<usize>, stubbed: &[bool], cut_count: &mut usize, cost: &mut Cost) -> String {
    cost.renders += 1;
    let mut out = String::new();
    *cut_count = 0;
    out.push('{');
    let mut first = true;
    let mut has_truncated = false;
    for (ti, (k, v)) in ev.top.0.iter().enumerate() {
        if !first {
            out.push(',');
        }
        first = false;
        push_key(&mut out, k);
        cost.steps += 1;
        has_truncated |= k == "truncated";
        if let (Some((pi, entries, argv_at)), Some(level)) = (&ev.process, level) {
            if *pi == ti {
                *cut_count += render_process(&mut out, ev, entries, *argv_at, level, cost);
                continue;
            }
        }
        if Some(ti) != ev.records_at {
            out.push_str(if k == "truncated" { "true" } else { v.get() });
            continue;
        }
        out.push('[');
        for (ri, rec) in ev.records.iter().enumerate() {
            if ri > 0 {
                out.push(',');
            }
            if stubbed.get(ri).copied().unwrap_or(false) {
                render_stub_record(&mut out, rec);
                cost.steps += 1;
            } else {
                *cut_count += render_record(&mut out, ev, rec, level, cost);
            }
        }
        out.push(']');
    }
    if !has_truncated {
        if !first {
            out.push(',');
        }
        out.push_str("\"truncated\":true");
    }
    out.push('}');
    out
}

/// Append one record, its long arguments cut to `level`; returns how many were cut.
fn render_record(out: &mut String, ev: &Event, rec: &Record, level: Option<usize>, cost: &mut Cost) -> usize {
    let (Some((entries, fi, fields)), Some(level)) = (&rec.execve, level) else {
        out.push_str(rec.raw.get());
        cost.steps += 1;
        return 0;
    };
    let mut cuts = 0;
    let args = &ev.args[rec.args.clone()];
    let mut next = 0;
    out.push('{');
    let mut first_entry = true;
    for (ei, (ek, ev_raw)) in entries.0.iter().enumerate() {
        // The record's exact text (for go-audit/auditlog outputs) would keep what was cut;
        // without it those formats rebuild the text from the cut fields.
        if ek == "text" || ek == "text_non_utf8" {
            continue;
        }
        if !first_entry {
            out.push(',');
        }
        first_entry = false;
        push_key(out, ek);
        cost.steps += 1;
        if ei != *fi {
            out.push_str(ev_raw.get());
            continue;
        }
        out.push('{');
        for (fidx, (fk, fv)) in fields.0.iter().enumerate() {
            if fidx > 0 {
                out.push(',');
            }
            push_key(out, fk);
            cost.steps += 1;
            let arg = args.get(next).filter(|a| a.field == fidx);
            if arg.is_some() {
                next += 1;
            }
            match arg {
                Some(a) if a.value.len() > level + MARKER_MAX => {
                    cuts += 1;
                    let cut = cut_middle(&a.value, level);
                    out.push_str(&serde_json::to_string(&cut).unwrap_or_default());
                }
                _ => out.push_str(fv.get()),
            }
        }
        out.push('}');
    }
    out.push('}');
    cuts
}

fn render_stub_record(out: &mut String, rec: &Record) {
    let entries = serde_json::from_str::<Entries>(rec.raw.get()).ok();
    out.push('{');
    if let Some(entries) = &entries {
        for (k, v) in entries.0.iter().filter(|(k, _)| k == "type" || k == "type_id") {
            push_key(out, k);
            out.push_str(v.get());
            out.push(',');
        }
    }
    let _ = write!(
        out,
        "\"fields\":{{}},\"stub\":\"auditrelay: record of {} bytes removed to fit max_message_size\"}}",
        rec.raw.get().len()
    );
}

fn event_stub(ev: Option<&Event>, original_len: usize, id: &str, time_ms: u64) -> String {
    let mut out = String::from("{");
    let mut has_id = false;
    if let Some(ev) = ev {
        for (k, v) in &ev.top.0 {
            if matches!(k.as_str(), "id" | "sequence" | "timestamp" | "time" | "node") {
                has_id |= k == "id";
                push_key(&mut out, k);
                out.push_str(v.get());
                out.push(',');
            }
        }
    }
    if !has_id {
        push_key(&mut out, "id");
        out.push_str(&serde_json::to_string(id).unwrap_or_default());
        let _ = write!(out, ",\"time_ms\":{time_ms},");
    }
    let _ = write!(
        out,
        "\"records\":[],\"truncated\":true,\"stub\":\"auditrelay: event of {original_len} bytes exceeded max_message_size; records removed\"}}"
    );
    out
}

/// Smallest argument length that, applied to all longer arguments, frees at least `demand` bytes.
fn level_for(args: &[Arg], demand: usize, cost: &mut Cost) -> Option<usize> {
    let mut freed = |level: usize| -> usize {
        cost.steps += args.len() as u64;
        args.iter().filter(|a| a.value.len() > level + MARKER_MAX).map(|a| a.value.len() - level - MARKER_MAX).sum()
    };
    let longest = args.iter().map(|a| a.value.len()).max()?;
    if freed(MIN_KEEP) < demand {
        return if longest > MIN_KEEP + MARKER_MAX { Some(MIN_KEEP) } else { None };
    }
    // freed() is non-increasing in level: find the largest level that still frees enough.
    let (mut lo, mut hi) = (MIN_KEEP, longest);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if freed(mid) >= demand {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Make `body` at most `budget` bytes, or as small as it can be made (see the module doc).
///
/// Linear in the size of the event: a bounded number of whole renders (at most `ROUNDS` + 2),
/// arguments and records visited a bounded number of times each. CPU-heavy for a multi-megabyte
/// event all the same: call it from a thread that holds up nobody else (the processing thread,
/// an output's own thread), never on a shared async runtime's few workers.
pub fn fit<'a>(body: &'a [u8], budget: usize, id: &str, time_ms: u64) -> Fit<'a> {
    fit_counted(body, budget, id, time_ms, &mut Cost::default())
}

fn fit_counted<'a>(body: &'a [u8], budget: usize, id: &str, time_ms: u64, cost: &mut Cost) -> Fit<'a> {
    if body.len() <= budget {
        return Fit::AsIs(body);
    }
    let original_len = body.len();
    let mut report = CutReport { original_len, ..CutReport::default() };
    let Some(ev) = parse(body) else {
        report.event_stubbed = true;
        let out = event_stub(None, original_len, id, time_ms).into_bytes();
        report.final_len = out.len();
        return Fit::Cut { body: out, report };
    };
    let mut stubbed = vec![false; ev.records.len()];
    let mut cuts = 0;
    let mut level = None;
    let mut out = render(&ev, None, &stubbed, &mut cuts, cost);
    let mut demand = out.len().saturating_sub(budget);
    for _ in 0..ROUNDS {
        if out.len() <= budget {
            break;
        }
        match level_for(&ev.args, demand, cost) {
            Some(l) if level != Some(l) => level = Some(l),
            _ => break,
        }
        out = render(&ev, level, &stubbed, &mut cuts, cost);
        demand += out.len().saturating_sub(budget);
    }
    report.args_cut = cuts;
    if out.len() > budget {
        // What stubbing each record saves, measured once per record (re-rendering the whole
        // event per stubbed record was quadratic in the number of records).
        let mut scratch = String::new();
        let saving: Vec<usize> = ev
            .records
            .iter()
            .map(|rec| {
                scratch.clear();
                render_record(&mut scratch, &ev, rec, level, cost);
                let full = scratch.len();
                scratch.clear();
                render_stub_record(&mut scratch, rec);
                cost.steps += 1;
                full.saturating_sub(scratch.len())
            })
            .collect();
        let mut order: Vec<usize> = (0..ev.records.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ev.records[i].raw.get().len()));
        let mut len = out.len();
        for i in order {
            stubbed[i] = true;
            report.records_stubbed += 1;
            len = len.saturating_sub(saving[i]);
            if len <= budget {
                break;
            }
        }
        out = render(&ev, level, &stubbed, &mut cuts, cost);
        report.args_cut = cuts;
    }
    if out.len() > budget {
        report.event_stubbed = true;
        out = event_stub(Some(&ev), original_len, id, time_ms);
    }
    report.final_len = out.len();
    Fit::Cut { body: out.into_bytes(), report }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn event_with_args(args: &[String]) -> String {
        let fields: Vec<String> = std::iter::once(format!("\"argc\":\"{}\"", args.len()))
            .chain(args.iter().enumerate().map(|(i, a)| format!("\"a{i}\":{}", serde_json::to_string(a).unwrap())))
            .collect();
        format!(
            "{{\"sequence\":7,\"timestamp\":\"1795373270.780\",\"records\":[\
             {{\"type\":\"SYSCALL\",\"type_id\":1300,\"fields\":{{\"syscall\":\"59\",\"key\":\"x\",\"key\":\"y\"}}}},\
             {{\"type\":\"EXECVE\",\"type_id\":1309,\"fields\":{{{}}}}},\
             {{\"type\":\"EOE\",\"type_id\":1320,\"fields\":{{}}}}]}}",
            fields.join(",")
        )
    }

    fn cut(body: &str, budget: usize) -> (String, CutReport) {
        match fit(body.as_bytes(), budget, "ID", 5) {
            Fit::AsIs(b) => (String::from_utf8(b.to_vec()).unwrap(), CutReport::default()),
            Fit::Cut { body, report } => (String::from_utf8(body).unwrap(), report),
        }
    }

    #[test]
    fn small_event_untouched() {
        let body = event_with_args(&["ls".into()]);
        assert!(matches!(fit(body.as_bytes(), 10_000, "ID", 0), Fit::AsIs(_)));
    }

    #[test]
    fn longest_argument_cut_in_the_middle_with_marker() {
        let long = format!("HEAD{}TAIL", "x".repeat(20_000));
        let body = event_with_args(&["/bin/echo".into(), long.clone(), "short".into()]);
        let (out, report) = cut(&body, 4096);
        assert!(out.len() <= 4096, "{}", out.len());
        assert_eq!(report.args_cut, 1);
        assert_eq!(report.records_stubbed, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["truncated"], true);
        let a1 = v["records"][1]["fields"]["a1"].as_str().unwrap();
        assert!(a1.starts_with("HEAD") && a1.ends_with("TAIL"), "{a1}");
        assert!(a1.contains(&format!("original length {} bytes", long.len())));
        assert_eq!(v["records"][1]["fields"]["a0"], "/bin/echo");
        assert_eq!(v["records"][1]["fields"]["a2"], "short");
    }

    /// A cut EXECVE record loses its exact `text` (which still holds what was cut), so go-audit and
    /// audit.log outputs rebuild it from the cut fields instead of shipping the oversized original.
    #[test]
    fn a_cut_execve_record_drops_its_text() {
        let long = "y".repeat(20_000);
        let body = event_with_args(&["/bin/echo".into(), long.clone()]).replace(
            "{\"type\":\"EXECVE\",\"type_id\":1309,",
            &format!("{{\"type\":\"EXECVE\",\"type_id\":1309,\"text\":\": argc=2 a0=\\\"/bin/echo\\\" a1={long}\","),
        );
        let (out, report) = cut(&body, 4096);
        assert_eq!(report.args_cut, 1);
        assert!(out.len() <= 4096, "{}", out.len());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["records"][1].get("text").is_none(), "{out}");
        assert_eq!(v["records"][1]["fields"]["a0"], "/bin/echo");
    }

    #[test]
    fn repeated_keys_and_order_survive_a_cut() {
        let body = event_with_args(&["x".repeat(10_000)]);
        let (out, _) = cut(&body, 2048);
        assert!(out.contains("{\"syscall\":\"59\",\"key\":\"x\",\"key\":\"y\"}"), "{out}");
        assert!(out.starts_with("{\"sequence\":7,\"timestamp\":\"1795373270.780\",\"records\":["));
    }

    #[test]
    fn several_long_arguments_cut_to_a_common_level() {
        let args: Vec<String> =
            (0..5).map(|i| char::from(b'a' + i).to_string().repeat(3000 + usize::from(i) * 1000)).collect();
        let body = event_with_args(&args);
        let (out, report) = cut(&body, 8000);
        assert!(out.len() <= 8000);
        assert!(report.args_cut >= 2);
        let v: Value = serde_json::from_str(&out).unwrap();
        // The shortest argument is cut least or not at all.
        let len = |k: &str| v["records"][1]["fields"][k].as_str().unwrap().len();
        assert!(len("a0") >= len("a4") - MARKER_MAX);
    }

    #[test]
    fn split_arguments_are_cut_too() {
        let body = format!(
            "{{\"records\":[{{\"type\":\"EXECVE\",\"fields\":{{\"a0\":\"x\",\"a1_len\":\"20000\",\"a1[0]\":\"{}\",\"a1[1]\":\"{}\"}}}}]}}",
            "y".repeat(10_000),
            "z".repeat(10_000)
        );
        let (out, report) = cut(&body, 4096);
        assert!(out.len() <= 4096);
        assert_eq!(report.args_cut, 2);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["records"][0]["fields"]["a1_len"], "20000");
    }

    #[test]
    fn huge_non_execve_record_is_stubbed() {
        let body = format!(
            "{{\"sequence\":1,\"records\":[{{\"type\":\"PATH\",\"type_id\":1302,\"fields\":{{\"name\":\"{}\"}}}},{{\"type\":\"EOE\",\"type_id\":1320,\"fields\":{{}}}}]}}",
            "p".repeat(50_000)
        );
        let (out, report) = cut(&body, 2048);
        assert!(out.len() <= 2048);
        assert_eq!(report.records_stubbed, 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["records"][0]["type"], "PATH");
        assert!(v["records"][0]["stub"].as_str().unwrap().contains("50"));
        assert_eq!(v["records"][1]["type"], "EOE");
        assert_eq!(v["truncated"], true);
    }

    #[test]
    fn last_resort_stub_keeps_identity() {
        let records: Vec<String> =
            (0..2000).map(|i| format!("{{\"type\":\"PATH\",\"fields\":{{\"item\":\"{i}\"}}}}")).collect();
        let body =
            format!("{{\"sequence\":99,\"time\":\"2026-11-22T18:47:50.780Z\",\"records\":[{}]}}", records.join(","));
        let (out, report) = cut(&body, 1024);
        assert!(report.event_stubbed);
        assert!(out.len() <= 1024);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sequence"], 99);
        assert_eq!(v["time"], "2026-11-22T18:47:50.780Z");
        assert_eq!(v["truncated"], true);
        assert!(v["stub"].as_str().unwrap().contains(&body.len().to_string()));
    }

    #[test]
    fn not_json_becomes_stub_with_delivery_identity() {
        let body = "not json ".repeat(1000);
        let (out, report) = cut(&body, 1024);
        assert!(report.event_stubbed);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "ID");
        assert_eq!(v["time_ms"], 5);
    }

    #[test]
    fn multibyte_arguments_cut_on_char_boundaries() {
        let body = event_with_args(&["é€𝄞".repeat(3000)]);
        let (out, _) = cut(&body, 2048);
        assert!(out.len() <= 2048);
        serde_json::from_str::<Value>(&out).unwrap();
    }

    #[test]
    fn arg_key_recognition() {
        for k in ["a0", "a12", "a1[0]", "a3[17]"] {
            assert!(is_execve_arg(k), "{k}");
        }
        for k in ["a", "argc", "a1_len", "a1[]", "a1[x]", "arch", "a1[0"] {
            assert!(!is_execve_arg(k), "{k}");
        }
    }

    fn cost_of(body: &str, budget: usize) -> (Cost, CutReport) {
        let mut cost = Cost::default();
        match fit_counted(body.as_bytes(), budget, "ID", 5, &mut cost) {
            Fit::Cut { body, report } => {
                assert!(body.len() <= budget, "{}", body.len());
                serde_json::from_slice::<Value>(&body).unwrap();
                (cost, report)
            }
            Fit::AsIs(_) => panic!("not cut"),
        }
    }

    /// Regression (issue 10): once an argument is long enough to be cut, every render searched
    /// the whole argument list for each field, so 200 k one-byte arguments beside one long one
    /// took 200 k × 200 k comparisons per render. Checked by counted work, not by a timer: a
    /// bounded number of renders, work per render proportional to the entries, and twice the
    /// arguments is twice the work.
    #[test]
    fn two_hundred_thousand_one_byte_arguments_take_linear_work() {
        let work = |n: usize| {
            let mut args = vec!["x".to_string(); n];
            args.push("y".repeat(300_000));
            let body = event_with_args(&args);
            let (cost, report) = cost_of(&body, 64 * 1024);
            assert_eq!(report.records_stubbed, 1, "the EXECVE record is stubbed");
            assert!(cost.renders <= ROUNDS as u64 + 2, "{cost:?}");
            assert!(cost.steps <= (ROUNDS as u64 + 4) * 2 * n as u64, "{n} arguments: {cost:?}");
            cost.steps
        };
        let (small, large) = (work(200_000), work(400_000));
        assert!(large <= small * 21 / 10, "twice the arguments: {small} -> {large} steps");
        // For the report: the old per-field search was about n² comparisons per render.
        eprintln!("fit: 200k args {small} steps, 400k args {large} steps (old search: 4e10 and 1.6e11 per render)");
    }

    /// Stubbing records one at a time re-rendered the whole event per record: quadratic in the
    /// number of records. Now each record is measured once and the event rendered once more.
    #[test]
    fn many_records_stubbed_with_a_bounded_number_of_renders() {
        let records: Vec<String> = (0..20_000)
            .map(|i| format!("{{\"type\":\"PATH\",\"fields\":{{\"name\":\"{}\"}}}}", "p".repeat(i % 7 * 40)))
            .collect();
        let body = format!("{{\"sequence\":3,\"records\":[{}]}}", records.join(","));
        let (cost, report) = cost_of(&body, body.len() * 2 / 3);
        assert!(report.records_stubbed > 1000, "{report:?}");
        assert!(!report.event_stubbed);
        assert!(cost.renders <= 3, "{cost:?}");
        assert!(cost.steps <= 5 * 20_000, "{cost:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn output_is_valid_json_within_budget(
            args in proptest::collection::vec(".{0,3000}", 1..6),
            budget in 1024usize..20_000,
        ) {
            let body = event_with_args(&args);
            let (out, report) = cut(&body, budget);
            let v: Value = serde_json::from_str(&out).unwrap();
            prop_assert!(out.len() <= budget.max(body.len().min(budget)) || report.event_stubbed);
            prop_assert!(out.len() <= budget);
            if body.len() > budget {
                prop_assert_eq!(&v["truncated"], &Value::Bool(true));
            } else {
                prop_assert_eq!(out, body);
            }
        }
    }
}
