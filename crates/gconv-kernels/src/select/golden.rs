//! The golden selection test: the kernel and rule every published layer and every edge shape
//! get, on every tier (AVX-512 for both classes of CPU that have it), at one and two threads,
//! as checked in at `selection/forward.txt`. A
//! change of choice (a threshold moved, a rule added) fails here until the file is written
//! again, so that it shows up in review as a diff of that file.
//!
//! Regenerate with `GCONV_BLESS=1 cargo test -p gconv-kernels golden`.

use std::fmt::Write;
use std::path::PathBuf;

use gconv_shape::workload::{PUBLISHED, parse_layers};

use super::{Problem, forward};
use crate::{CpuClass, Isa};

/// Shapes at the edges of the rules and tiles: widths of lanes ± 1, 1x1 planes, odd groups,
/// channel multipliers, large dilation, large windows on small planes, dense layers.
const EDGE_SHAPES: &str = include_str!("../../selection/edge-shapes.csv");

/// The checked-in table.
fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("selection/forward.txt")
}

/// The tiers and CPU classes of the table: below AVX-512 the rules do not read the class
/// (checked by `below_avx512_the_class_changes_no_choice`); AVX-512 for each class that has
/// it.
const TIERS: [(Isa, CpuClass); 4] = [
    (Isa::Portable, CpuClass::Narrow),
    (Isa::X86_64V3, CpuClass::Narrow),
    (Isa::X86_64V4, CpuClass::Full512),
    (Isa::X86_64V4, CpuClass::Split512),
];

/// Every published layer and edge shape.
fn layers() -> Vec<gconv_shape::workload::Layer> {
    let published = parse_layers(PUBLISHED).expect("the published list parses");
    let edges = parse_layers(EDGE_SHAPES).expect("the edge shapes parse");
    published.into_iter().chain(edges).collect()
}

/// The kernel id and rule chosen for `layer` (or the error a plan would give).
fn chosen(layer: &gconv_shape::workload::Layer, isa: Isa, cpu: CpuClass, threads: usize) -> String {
    let problem = Problem {
        geometry: &layer.geometry,
        isa,
        cpu,
        threads,
    };
    match forward::select(problem) {
        Ok(selection) => format!(
            "{} {}",
            selection.choice.kernel_id(&layer.geometry, isa),
            selection.rule.name()
        ),
        Err(error) => format!("error: {error}"),
    }
}

/// The table as the rules make it now: per layer, tier (and class) and thread count, the
/// kernel id and the rule.
fn table() -> String {
    let mut text = String::from(
        "# The forward kernel of every published layer and edge shape, per tier (on AVX-512 per \
         CPU class) and thread\n# count: layer tier threads kernel-id rule. Written by \
         `GCONV_BLESS=1 cargo test -p gconv-kernels golden`.\n",
    );
    for layer in layers() {
        for (isa, cpu) in TIERS {
            let tier = match isa {
                Isa::X86_64V4 => format!("{}/{}", isa.name(), cpu.name()),
                _ => isa.name().to_string(),
            };
            for threads in [1, 2] {
                let chosen = chosen(&layer, isa, cpu, threads);
                writeln!(text, "{} {tier} t{threads} {chosen}", layer.name)
                    .expect("writing to a string");
            }
        }
    }
    text
}

#[test]
fn below_avx512_the_class_changes_no_choice() {
    for layer in layers() {
        for isa in [Isa::Portable, Isa::X86_64V3] {
            let narrow = chosen(&layer, isa, CpuClass::Narrow, 1);
            for cpu in CpuClass::ALL {
                assert_eq!(
                    chosen(&layer, isa, cpu, 1),
                    narrow,
                    "{} on {isa}",
                    layer.name
                );
            }
        }
    }
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
