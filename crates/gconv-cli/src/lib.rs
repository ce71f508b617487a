//! The parts of the `gconv` command that other code needs too: the `.npy` reader and writer,
//! which the fuzz targets (`fuzz/`) drive with arbitrary bytes, and the all-or-nothing file
//! writes every command's output goes through.
//!
//! ```
//! let error = gconv_cli::npy::parse(b"not a .npy file").unwrap_err();
//! assert!(format!("{error:#}").contains("magic"));
//! ```

pub mod files;
pub mod npy;
