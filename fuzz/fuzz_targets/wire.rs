//! libFuzzer entry of the `wire` target: [`yard_fuzz::wire::run`] on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yard_fuzz::wire::run(data));
