//! The golden selection test: the kernel and rule every published layer and every edge shape
//! get, on every tier, at one and two threads, as checked in at `selection/forward.txt`. A
//! change of choice (a threshold moved, a rule added) fails here until the file is written
//! again, so that it shows up in review as a diff of that file.
//!
//! Regenerate with `GCONV_BLESS=1 cargo test -p gconv-kernels golden`.

use std::fmt::Write;
use std::path::PathBuf;

use gconv_shape::workload::{PUBLISHED, parse_layers};

use super::{Problem, forward};
use crate::Isa;

/// Shapes at the edges of the rules and tiles: widths of lanes ± 1, 1x1 planes, odd groups,
/// channel multipliers, large dilation, large windows on small planes, dense layers.
const EDGE_SHAPES: &str = include_str!("../../selection/edge-shapes.csv");

/// The checked-in table.
fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("selection/forward.txt")
}

/// The table as the rules make it now: per layer, tier and thread count, the kernel id and
/// the rule (or the error a plan would give).
fn table() -> String {
    let mut text = String::from(
        "# The forward kernel of every published layer and edge shape, per tier and thread \
         count:\n# layer tier threads kernel-id rule. Written by \
         `GCONV_BLESS=1 cargo test -p gconv-kernels golden`.\n",
    );
    let published = parse_layers(PUBLISHED).expect("the published list parses");
    let edges = parse_layers(EDGE_SHAPES).expect("the edge shapes parse");
    for layer in published.iter().chain(&edges) {
        for isa in Isa::ALL {
            for threads in [1, 2] {
                let problem = Problem {
                    geometry: &layer.geometry,
                    isa,
                    threads,
                };
                let chosen = match forward::select(problem) {
                    Ok(selection) => format!(
                        "{} {}",
                        selection.choice.kernel_id(&layer.geometry, isa),
                        selection.rule.name()
                    ),
                    Err(error) => format!("error: {error}"),
                };
                writeln!(text, "{} {} t{threads} {chosen}", layer.name, isa.name())
                    .expect("writing to a string");
            }
        }
    }
    text
}

#[test]
fn every_published_layer_and_edge_shape_gets_the_checked_in_kernel() {
    let now = table();
    let path = golden_path();
    if std::env::var_os("GCONV_BLESS").is_some() {
        std::fs::write(&path, &now).expect("writing the golden selection file");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let changed: Vec<String> = now
        .lines()
        .zip(checked_in.lines().chain(std::iter::repeat("(missing)")))
        .filter(|(now, before)| now != before)
        .map(|(now, before)| format!("  was: {before}\n  now: {now}"))
        .take(12)
        .collect();
    assert!(
        changed.is_empty() && now.lines().count() == checked_in.lines().count(),
        "the kernel selection changed ({} lines now, {} checked in); first differences:\n{}\n\
         If the change is meant, regenerate {} with `GCONV_BLESS=1 cargo test -p gconv-kernels \
         golden` and review its diff.",
        now.lines().count(),
        checked_in.lines().count(),
        changed.join("\n"),
        path.display()
    );
}
