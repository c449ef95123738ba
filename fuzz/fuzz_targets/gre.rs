//! libFuzzer entry of the `gre` target: [`yard_fuzz::gre::run`] on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yard_fuzz::gre::run(data));
