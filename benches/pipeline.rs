//! `cargo bench --bench pipeline`: parse + reassemble + JSON over the real corpus, in records/s.
//!
//! No framework: each stage runs over the corpus repeatedly for about a second and prints its
//! throughput per CPU-second (the thread's CPU clock, robust on a shared machine) and per wall second; the figure for `pipeline` is the baseline for later performance work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "measure.rs"]
mod measure;

use auditrelay::enrich::{EnrichConfig, Enricher};
use auditrelay::format::JsonWriter;
use auditrelay::reassemble::{Output, ReassembleConfig, Reassembler};
use auditrelay::record::{parse_log_line, Record, RecordPool};
use auditrelay::replay::replay_with;

const AUDIT_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample-audit.log");
const BUDGET: Duration = Duration::from_millis(1500);

fn main() {
    // `cargo bench --bench pipeline -- storm`: the storm section alone; `storm-on` or
    // `storm-off`: one pass of one mode after a warm-up, for callgrind's counts.
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "storm" => storm(&ReassembleConfig::default(), None),
            "storm-on" => storm(&ReassembleConfig::default(), Some(true)),
            "storm-off" => storm(&ReassembleConfig::default(), Some(false)),
            _ => continue,
        }
        return;
    }
    let text = std::fs::read(AUDIT_LOG).unwrap_or_else(|e| panic!("{AUDIT_LOG}: {e}"));
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let records: Vec<Record> = lines.iter().map(|l| parse_log_line(l).unwrap()).collect();
    let cfg = ReassembleConfig::default();
    println!("corpus: {} records, {} bytes", records.len(), text.len());

    measure::measure("parse", "records", BUDGET, || {
        for l in &lines {
            black_box(parse_log_line(l).ok());
        }
        lines.len()
    });

    // The daemon's parse: netlink payloads (the text after `msg=`), into pooled buffers.
    let payloads: Vec<(u16, Vec<u8>)> = records
        .iter()
        .zip(&lines)
        .filter_map(|(r, l)| {
            let at = l.windows(4).position(|w| w == b"msg=")? + 4;
            Some((r.kind.0, l[at..].to_vec()))
        })
        .collect();
    let mut pool = RecordPool::default();
    measure::measure("parse (netlink, pooled)", "records", BUDGET, || {
        for (kind, p) in &payloads {
            if let Ok(r) = Record::try_from_netlink_pooled(*kind, p, &mut pool) {
                pool.put(black_box(r));
            }
        }
        payloads.len()
    });

    measure::measure("reassemble (pre-parsed)", "records", BUDGET, || {
        let now = Instant::now();
        let mut r = Reassembler::new(&cfg);
        let mut out = Vec::new();
        for rec in &records {
            r.push(rec.clone(), now, &mut out);
            out.clear();
        }
        r.flush(&mut out);
        black_box(&out);
        records.len()
    });

    let now = Instant::now();
    let mut r = Reassembler::new(&cfg);
    let mut outputs = Vec::new();
    for rec in &records {
        r.push(rec.clone(), now, &mut outputs);
    }
    r.flush(&mut outputs);
    let mut writer = JsonWriter::new(Some("0f6c6b0e-8e8a-4a47-9d0b-2f7d1f0e5a31".into()));
    measure::measure("json (pre-reassembled)", "records", BUDGET, || {
        let mut bytes = 0;
        for o in &outputs {
            bytes += writer.write(o).len();
        }
        black_box(bytes);
        records.len()
    });

    // The interpretation alone, and the v2 line it adds to (names warmed: steady state).
    let mut enricher = Enricher::from_config(&EnrichConfig::default()).unwrap();
    for o in &outputs {
        if let Output::Event(ev) = o {
            enricher.interpret(ev);
        }
    }
    if let Some(names) = enricher.names() {
        names.settle(Duration::from_secs(10));
    }
    measure::measure("interpret (pre-reassembled)", "records", BUDGET, || {
        for o in &outputs {
            if let Output::Event(ev) = o {
                black_box(enricher.interpret(ev));
            }
        }
        records.len()
    });
    let mut writer = JsonWriter::new(None).with_enricher(Some(enricher));
    measure::measure("json v2 (pre-reassembled)", "records", BUDGET, || {
        let mut bytes = 0;
        for o in &outputs {
            bytes += writer.write(o).len();
        }
        black_box(bytes);
        records.len()
    });

    storm(&cfg, None);

    let mut writer = JsonWriter::new(None);
    let rate = measure::measure("pipeline (replay)", "records", BUDGET, || {
        let mut sink = std::io::sink();
        let stats = replay_with(&text[..], &cfg, &mut writer, &mut sink, |e| panic!("{e}")).unwrap();
        stats.records as usize
    });
    println!("baseline: {rate:.0} records per CPU-second, parse + reassemble + JSON, one thread");

    // Enrichment's cost (issue 8 budget: on ≤ 1.3× off), the two measured back to back, twice
    // each in alternation so drift on a shared machine shows. Names come from the real NSS through
    // the cache, warmed first (steady state: every id cached).
    let mut on = JsonWriter::new(None).with_enricher(Enricher::from_config(&EnrichConfig::default()));
    let mut sink = std::io::sink();
    replay_with(&text[..], &cfg, &mut on, &mut sink, |e| panic!("{e}")).unwrap();
    if let Some(names) = on.enricher().and_then(|e| e.names()) {
        names.settle(Duration::from_secs(10));
    }
    // The same without the process table (issue 8's process context), to show its own cost.
    let no_table = EnrichConfig { process_table_size: 0, ..EnrichConfig::default() };
    let mut on_no_table = JsonWriter::new(None).with_enricher(Enricher::from_config(&no_table));
    replay_with(&text[..], &cfg, &mut on_no_table, &mut sink, |e| panic!("{e}")).unwrap();
    if let Some(names) = on_no_table.enricher().and_then(|e| e.names()) {
        names.settle(Duration::from_secs(10));
    }
    let mut off = JsonWriter::new(None);
    let mut ratios = Vec::new();
    let mut table_ratios = Vec::new();
    for round in 1..=2 {
        let off_rate = measure::measure(&format!("enrich off #{round}"), "records", BUDGET, || {
            let stats = replay_with(&text[..], &cfg, &mut off, &mut std::io::sink(), |e| panic!("{e}")).unwrap();
            stats.records as usize
        });
        let no_table_rate =
            measure::measure(&format!("enrich on, no process table #{round}"), "records", BUDGET, || {
                let stats =
                    replay_with(&text[..], &cfg, &mut on_no_table, &mut std::io::sink(), |e| panic!("{e}")).unwrap();
                stats.records as usize
            });
        let on_rate = measure::measure(&format!("enrich on #{round}"), "records", BUDGET, || {
            let stats = replay_with(&text[..], &cfg, &mut on, &mut std::io::sink(), |e| panic!("{e}")).unwrap();
            stats.records as usize
        });
        ratios.push(off_rate / on_rate);
        table_ratios.push(no_table_rate / on_rate);
    }
    println!(
        "process table CPU cost per record (on / on without the table): {:.3} and {:.3}",
        table_ratios[0], table_ratios[1]
    );
    println!("enrich on/off CPU cost per record: {:.3} and {:.3} (budget 1.3)", ratios[0], ratios[1]);
}

/// The flat-out openat storm's events (benches/storm.rs: one process, one failing `openat` after
/// another; the records as the kernel sends them, benches/data/openat-event.json) through the
/// processing thread's own path: netlink parse into pooled records, reassemble, JSON, buffers
/// given back. Enriched (the default) and not, in alternation: the gap between the two is what
/// enrichment costs the live storm per event (docs/performance.md, twelfth round).
fn storm(cfg: &ReassembleConfig, once: Option<bool>) {
    const EVENTS: u32 = 20_000;
    // This process stands for the storm, so that the process table, the parent lookup and the
    // exe hash find what they find live.
    let (pid, ppid) = (std::process::id(), std::os::unix::process::parent_id());
    let exe = std::env::current_exe().unwrap();
    let exe = exe.display();
    let mut payloads: Vec<(u16, Vec<u8>)> = Vec::with_capacity(EVENTS as usize * 5);
    for n in 0..EVENTS {
        let serial = 681_176 + n;
        let stamp = format!("audit(1796118282.{:03}:{serial}): ", (n / 100) % 1000);
        payloads.push((
            1300,
            format!(
                "{stamp}arch=c000003e syscall=257 success=no exit=-2 a0=ffffff9c a1=555755a00004 a2=0 a3=0 \
                 items=1 ppid={ppid} pid={pid} auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 \
                 fsgid=0 tty=(none) ses=4294967295 comm=\"pipeline\" exe=\"{exe}\" key=\"arbench\""
            )
            .into_bytes(),
        ));
        payloads.push((1307, format!("{stamp}cwd=\"/tmp/me\"").into_bytes()));
        payloads.push((
            1302,
            format!(
                "{stamp}item=0 name=\"/nonexistent/auditrelay-bench\" nametype=UNKNOWN cap_fp=0 cap_fi=0 \
                 cap_fe=0 cap_fver=0 cap_frootid=0"
            )
            .into_bytes(),
        ));
        payloads.push((1327, format!("{stamp}proctitle=2F746D702F6D652F73746F726D0032303030300034").into_bytes()));
        payloads.push((1320, stamp.into_bytes()));
    }
    let run = |writer: &mut JsonWriter| {
        let mut pool = RecordPool::default();
        let mut r = Reassembler::new(cfg);
        let mut out = Vec::new();
        let now = Instant::now();
        let mut bytes = 0;
        for (kind, p) in &payloads {
            if let Ok(rec) = Record::try_from_netlink_pooled(*kind, p, &mut pool) {
                r.push(rec, now, &mut out);
            }
            for o in out.drain(..) {
                bytes += writer.write(&o).len();
                if let Output::Event(mut e) = o {
                    for rec in e.records.drain(..) {
                        pool.put(rec);
                    }
                    r.recycle(e.records);
                }
            }
        }
        black_box(bytes);
        EVENTS as usize
    };
    let mut plain = JsonWriter::new(Some("f609d2a9-e845-4d0e-aad7-31b2fd5e51cd".into()));
    let mut enriched = JsonWriter::new(Some("f609d2a9-e845-4d0e-aad7-31b2fd5e51cd".into()))
        .with_enricher(Enricher::from_config(&EnrichConfig::default()));
    run(&mut enriched);
    if let Some(names) = enriched.enricher().and_then(|e| e.names()) {
        names.settle(Duration::from_secs(10));
    }
    if let Some(on) = once {
        let writer = if on { &mut enriched } else { &mut plain };
        run(writer);
        run(writer);
        return;
    }
    let mut ratios = Vec::new();
    for round in 1..=2 {
        let off = measure::measure(&format!("storm openat, enrich off #{round}"), "events", BUDGET, || run(&mut plain));
        let on =
            measure::measure(&format!("storm openat, enrich on #{round}"), "events", BUDGET, || run(&mut enriched));
        ratios.push(off / on);
    }
    println!("storm openat: enrich on/off CPU cost per event: {:.3} and {:.3}", ratios[0], ratios[1]);
}
