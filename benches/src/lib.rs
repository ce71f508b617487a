//! Support for the criterion suites in this directory: which layer list to run and the data
//! to run it on. `cargo bench -p gconv-benches` runs them; see `benches/README.md`.

use std::path::PathBuf;

use gconv::workload::{Layer, parse_layers};

/// The environment variable that points the suites at another layer list.
pub const LAYERS_VARIABLE: &str = "GCONV_LAYERS";

/// The layer list the suites run by default: the published networks' grouped layers.
pub fn published_layers_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layers/published.csv")
}

/// The layers to benchmark, read from the file named by `GCONV_LAYERS`, else from
/// [`published_layers_path`]. A bad file is a panic with its path and line: a benchmark has no
/// one to return an error to.
pub fn layers() -> Vec<Layer> {
    let path = std::env::var_os(LAYERS_VARIABLE).map_or_else(published_layers_path, PathBuf::from);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read layer list {}: {error}", path.display()));
    parse_layers(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

pub use gconv_testkit::data::uniform as data;
