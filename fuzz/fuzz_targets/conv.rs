//! Fuzz target `conv`: see `gconv_fuzz_targets::conv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gconv_fuzz_targets::conv(data));
