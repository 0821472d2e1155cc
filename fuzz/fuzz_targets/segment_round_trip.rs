#![no_main]
use libfuzzer_sys::fuzz_target;
fuzz_target!(|input: kbs_fuzz::RoundTripInput| kbs_fuzz::round_trip(input));
