#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backstop::fuzzing::transcript_line(data));
