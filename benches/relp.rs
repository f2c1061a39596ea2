//! `cargo bench --bench relp`: RELP framing, in frames/s: encoding `syslog` frames that carry one
//! real openat event (benches/data/openat-event.json) and decoding the receiver's `rsp` frames.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use auditrelay::output::relp::frame::{self, Decoder, Response};

#[path = "measure.rs"]
mod measure;

const EVENT: &[u8] = include_bytes!("data/openat-event.json");
const BUDGET: Duration = Duration::from_millis(1500);
const PER_PASS: u32 = 10_000;

fn main() {
    let body = EVENT.strip_suffix(b"\n").unwrap_or(EVENT);
    // What the RELP output sends: an RFC 5424 line whose MSG is the event.
    let mut message = b"<14>1 2026-12-01T09:44:42.188Z vm auditrelay 3019 AUDIT - ".to_vec();
    message.extend_from_slice(body);
    println!("syslog message: {} bytes", message.len());

    let mut out = Vec::new();
    measure::measure("encode syslog frames", "frames", BUDGET, || {
        out.clear();
        for txnr in 1..=PER_PASS {
            frame::encode(txnr, "syslog", &message, &mut out);
        }
        black_box(&out);
        PER_PASS as usize
    });

    let mut rsps = Vec::new();
    for txnr in 1..=PER_PASS {
        frame::encode(txnr, "rsp", b"200 OK", &mut rsps);
    }
    measure::measure("decode rsp frames", "frames", BUDGET, || {
        let mut decoder = Decoder::new(1 << 20);
        // As from the socket: in reads of at most 64 KiB.
        let mut n = 0;
        for chunk in rsps.chunks(64 << 10) {
            decoder.extend(chunk);
            while let Some(f) = decoder.decode().unwrap() {
                assert_eq!(Response::parse(&f.data).map(|r| r.code), Some(200));
                n += 1;
            }
        }
        n
    });
}
