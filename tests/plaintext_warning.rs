//! A network output without TLS is named in a warning when `run` starts (issue 10, Security):
//! `output::exposure::check`, which `run` calls before opening the spool, logs one WARN record per
//! plaintext output through the `log` facade. This test binary is its own process, so the capturing
//! logger below is the only one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use auditrelay::config::Config;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        RECORDS.lock().unwrap().push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

#[test]
fn each_plaintext_network_output_is_named_in_a_warning() {
    log::set_logger(&LOGGER).expect("the only logger of this test process");
    log::set_max_level(log::LevelFilter::Trace);
    let text = "[[output]]\ntype = \"relp\"\nname = \"central\"\naddress = \"logs.example.org:2514\"\n\
                [[output]]\ntype = \"tcp\"\nname = \"siem\"\naddress = \"siem.example.org:6514\"\n[output.tls]\nca_file = \"/etc/ssl/ca.pem\"\n\
                [[output]]\ntype = \"udp\"\nname = \"legacy\"\naddress = \"127.0.0.1:514\"\n\
                [[output]]\ntype = \"stdout\"\n";
    let config = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
    auditrelay::output::exposure::check(&config.output).unwrap();
    let warnings: Vec<String> =
        RECORDS.lock().unwrap().iter().filter(|(l, _)| *l == log::Level::Warn).map(|(_, m)| m.clone()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("central")
            && warnings[0].contains("logs.example.org:2514")
            && warnings[0].contains("without TLS")
    );
    assert!(warnings[1].contains("legacy") && warnings[1].contains("udp"));
    assert!(!warnings.iter().any(|w| w.contains("siem")), "the TLS output is not named");
}
