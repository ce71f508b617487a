//! Fuzz target `shape`: see `gconv_fuzz_targets::shape`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gconv_fuzz_targets::shape(data));
