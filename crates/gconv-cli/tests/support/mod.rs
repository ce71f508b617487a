//! What the integration tests share: running the binary and building `.npy` files by hand.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs the `gconv` binary with `args`.
pub fn gconv<A: AsRef<OsStr>>(args: &[A]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gconv"))
        .args(args)
        .output()
        .expect("the gconv binary runs")
}

/// A `.npy` file built byte by byte as NumPy's format 1.0 describes it (not with the crate
/// the binary uses, so that a shared misunderstanding cannot hide): the header dictionary
/// for `descr`, `fortran_order` and a shape written as Python text, padded as NumPy pads it,
/// then `data`.
pub fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}
