//! `cargo bench --bench formats`: what each output format costs per event, over the real corpus.
//!
//! The spool holds native JSON lines; each output converts them in its pump thread. Measured here
//! per format: converting every corpus event's native line (as the pipeline spools it when some
//! output needs the record text), against two references from the same run: the native output
//! itself (a passthrough: the line as spooled) and the processing thread's own cost of writing the
//! native line (`JsonWriter`). Also the price of carrying `"text"` in the native line (writer cost
//! and spool bytes), paid only when a go-audit or auditlog output is configured. ECS is also
//! measured on schema v2 lines (enrichment on, the default), whose interpretation members it reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "measure.rs"]
mod measure;

use auditrelay::enrich::Enricher;
use auditrelay::format::names::Names;
use auditrelay::format::{Formatter, JsonWriter, OutputFormat};
use auditrelay::reassemble::{ReassembleConfig, Reassembler};
use auditrelay::record::parse_log_line;

const AUDIT_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log");
const BUDGET: Duration = Duration::from_millis(1500);

fn main() {
    let text = std::fs::read(AUDIT_LOG).unwrap_or_else(|e| panic!("{AUDIT_LOG}: {e}"));
    let now = Instant::now();
    let mut r = Reassembler::new(&ReassembleConfig::default());
    let mut outputs = Vec::new();
    for l in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        r.push(parse_log_line(l).unwrap(), now, &mut outputs);
    }
    r.flush(&mut outputs);
    let events = outputs.len();

    let mut plain = JsonWriter::new(Some("0f6c6b0e-8e8a-4a47-9d0b-2f7d1f0e5a31".into()));
    let mut with_text = JsonWriter::new(Some("0f6c6b0e-8e8a-4a47-9d0b-2f7d1f0e5a31".into())).with_record_text(true);
    let plain_bytes: usize = outputs.iter().map(|o| plain.write(o).len()).sum();
    let lines: Vec<Vec<u8>> =
        outputs.iter().map(|o| with_text.write(o).strip_suffix(b"\n").unwrap().to_vec()).collect();
    let text_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    // Schema v2 (names left out: no NSS in a bench), as the daemon spools them by default.
    let mut enriched = JsonWriter::new(Some("0f6c6b0e-8e8a-4a47-9d0b-2f7d1f0e5a31".into()))
        .with_enricher(Some(Enricher::new(Some("bench"), None, 64 << 10)));
    let v2_lines: Vec<Vec<u8>> =
        outputs.iter().map(|o| enriched.write(o).strip_suffix(b"\n").unwrap().to_vec()).collect();
    println!(
        "corpus: {events} events; native line {plain_bytes} bytes, with \"text\" {text_bytes} bytes ({:.2}x)",
        text_bytes as f64 / plain_bytes as f64
    );

    let encode = measure::measure("native encode (JsonWriter)", "events", BUDGET, || {
        let mut n = 0;
        for o in &outputs {
            n += plain.write(o).len();
        }
        black_box(n);
        events
    });
    let encode_text = measure::measure("native encode with \"text\"", "events", BUDGET, || {
        let mut n = 0;
        for o in &outputs {
            n += with_text.write(o).len();
        }
        black_box(n);
        events
    });
    println!("ratio: encode with text / without = {:.2} (time per event)", encode / encode_text);

    let names = || Names::fixed(&[(0, "root"), (1000, "kit"), (4242, "auditor")]);
    let mut rates = Vec::new();
    for format in [
        OutputFormat::Native,
        OutputFormat::GoAudit,
        OutputFormat::Auditlog,
        OutputFormat::AuditlogEnriched,
        OutputFormat::Ecs,
    ] {
        let mut f = Formatter::with_names(format, names()).with_host(Some("bench".into()));
        let rate = measure::measure(&format!("convert to {}", format.name()), "events", BUDGET, || {
            let mut n = 0;
            for l in &lines {
                n += f.convert(l, 0).unwrap().len();
            }
            black_box(n);
            events
        });
        rates.push((format.name().to_string(), rate));
    }
    let mut f = Formatter::with_names(OutputFormat::Ecs, names()).with_host(Some("bench".into()));
    let rate = measure::measure("convert to ecs (v2 lines)", "events", BUDGET, || {
        let mut n = 0;
        for l in &v2_lines {
            n += f.convert(l, 0).unwrap().len();
        }
        black_box(n);
        events
    });
    rates.push(("ecs (v2 lines)".to_string(), rate));
    for (format, rate) in &rates {
        println!(
            "ratio: {} conversion / native encode = {:.2} (time per event; native passthrough = 0)",
            format,
            encode / rate
        );
    }
}
