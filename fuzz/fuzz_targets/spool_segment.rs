#![no_main]
// One spool directory per fuzzing process, reused for every input (the harness empties it).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("auditrelay-fuzz-spool-{}", std::process::id()));
    auditrelay::fuzzing::spool_segment(data, &dir)
});
