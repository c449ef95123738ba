//! libFuzzer entry of the `pipeline` target: [`yard_fuzz::pipeline::run`] on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yard_fuzz::pipeline::run(data));
