//! libFuzzer entry of the `gateway` target: [`yard_fuzz::gateway::run`] on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yard_fuzz::gateway::run(data));
