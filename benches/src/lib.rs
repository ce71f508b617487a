//! Support for the criterion suites in this directory: which layer list to run and the data
//! to run it on. `cargo bench -p gconv-benches` runs them; see `benches/README.md`.

use std::path::PathBuf;

use gconv::workload::{Layer, PUBLISHED, parse_layers};

/// The environment variable that points the suites at another layer list.
pub const LAYERS_VARIABLE: &str = "GCONV_LAYERS";

/// The layers to benchmark: the file named by `GCONV_LAYERS`, else the published layers.
/// A bad file is a panic with its path and line: a benchmark has no one to return it to.
pub fn layers() -> Vec<Layer> {
    match std::env::var_os(LAYERS_VARIABLE).map(PathBuf::from) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            parse_layers(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        }
        None => parse_layers(PUBLISHED).expect("the published layer list parses"),
    }
}

pub use gconv_testkit::data::uniform as data;
