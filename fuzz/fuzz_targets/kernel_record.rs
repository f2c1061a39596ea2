#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| auditrelay::fuzzing::kernel_record(data));
