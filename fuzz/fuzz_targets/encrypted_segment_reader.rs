#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|data: &[u8]| kbs_fuzz::read_encrypted_segment(data));
