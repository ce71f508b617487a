//! Fuzz target `npy`: see `gconv_fuzz_targets::npy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gconv_fuzz_targets::npy(data));
