//! The bodies of gconv's fuzz targets.
//!
//! Each target takes the fuzzer's bytes, decodes a case from them, runs it and checks the
//! result against an independent oracle; it panics only on a defect of gconv. The cargo-fuzz
//! binaries in `fuzz/` are one line each around these functions, and `tests/corpus.rs`
//! replays every checked-in corpus file through them under plain `cargo test`, so that CI
//! guards what fuzzing found.
//!
//! * [`shape()`] — parameters and shapes into validation, against `u128` arithmetic and
//!   window-by-window enumeration;
//! * [`conv()`] — small problems, with a residual and an activation when the bytes go on,
//!   through every tier and 1–3 threads, against the reference;
//! * [`npy()`] — bytes into the `.npy` reader.
//!
//! ```
//! // Any bytes are a case; these decode to a valid 1x1 problem and pass.
//! gconv_fuzz_targets::conv(&[0; 32]);
//! gconv_fuzz_targets::shape(b"any bytes at all");
//! gconv_fuzz_targets::npy(b"\x93NUMPY");
//! ```

mod conv;
mod npy;
mod shape;

pub use conv::conv;
pub use npy::npy;
pub use shape::shape;

/// A fuzz target: the fuzzer's bytes in, a panic out only on a defect.
pub type Target = fn(&[u8]);

/// The targets by name, as the corpus directories under `fuzz/corpus/` are named.
pub const TARGETS: [(&str, Target); 3] = [("shape", shape), ("conv", conv), ("npy", npy)];
