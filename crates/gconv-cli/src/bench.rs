//! `gconv bench`: time layers of a layer list, print medians and GFLOP/s, and write JSON lines
//! that join with the peers script's output.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::demo::describe;
use crate::implementations::{ExecutionOptions, KernelChoice, Prepared};
use crate::measure::{self, human};
use gconv::workload::{self, Layer};
use gconv_testkit::data;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Layer list (CSV: name,batch,in_channels,out_channels,height,width,kernel_h,kernel_w,
    /// stride,padding,dilation,groups). Default: the built-in published layers.
    #[arg(long, value_name = "FILE.csv")]
    layers: Option<PathBuf>,
    /// Only layers whose name contains this text.
    #[arg(long, value_name = "SUBSTRING")]
    filter: Option<String>,
    /// Implementation to time.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernel: KernelChoice,
    #[command(flatten)]
    execution: ExecutionOptions,
    /// Minimum time to spend timing each layer, in seconds (after one warm-up run).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    min_time: f64,
    /// Also write one JSON object per layer to this file (suite, layer, threads, peer "gconv",
    /// median_us, gflops, kernel, isa, flops, runs), the peers script's format.
    #[arg(long, value_name = "OUT.jsonl")]
    json: Option<PathBuf>,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let min_time = Duration::try_from_secs_f64(args.min_time)
        .ok()
        .context("--min-time must be a non-negative number of seconds")?;
    let (suite, text) = match &args.layers {
        Some(path) => (
            suite_name(path),
            fs::read_to_string(path)
                .with_context(|| format!("cannot read layer list {}", path.display()))?,
        ),
        None => ("published".to_string(), workload::PUBLISHED.to_string()),
    };
    let source = args
        .layers
        .as_ref()
        .map_or("the built-in layer list".to_string(), |path| {
            path.display().to_string()
        });
    let all = workload::parse_layers(&text).with_context(|| format!("in {source}"))?;
    let selected: Vec<&Layer> = all
        .iter()
        .filter(|layer| {
            args.filter
                .as_ref()
                .is_none_or(|f| layer.name.contains(f.as_str()))
        })
        .collect();
    anyhow::ensure!(
        !selected.is_empty(),
        "no layer of {source} matches the filter"
    );

    out!(
        "{:<30} {:<42} {:<38} {:>3} {:>10} {:>8}",
        "layer",
        "shape",
        "kernel",
        "T",
        "median",
        "GFLOP/s"
    );
    let mut records = Vec::new();
    for layer in selected {
        let record = bench_layer(&suite, layer, args, min_time)?;
        out!(
            "{:<30} {:<42} {:<38} {:>3} {:>10} {:>8.2}",
            layer.name,
            describe(layer),
            record["kernel"].as_str().unwrap_or(""),
            record["threads"],
            human(Duration::from_secs_f64(
                record["median_us"].as_f64().unwrap_or(0.0) / 1e6
            )),
            record["gflops"].as_f64().unwrap_or(0.0),
        );
        records.push(record);
    }
    if let Some(path) = &args.json {
        write_lines(path, &records)?;
    }
    Ok(())
}

fn bench_layer(
    suite: &str,
    layer: &Layer,
    args: &BenchArgs,
    min_time: Duration,
) -> Result<serde_json::Value> {
    let geometry = &layer.geometry;
    let input = data::uniform(geometry.input_len(), 1);
    let weight = data::uniform(geometry.weight_count(), 2);
    let prepared = Prepared::new(args.kernel, geometry, &weight, None, &args.execution)
        .with_context(|| format!("layer {}", layer.name))?;
    let mut output = vec![0.0; geometry.output_len()];
    prepared.run(&input, &mut output)?;
    let timings = measure::repeat(min_time, 3, || {
        // The first run above was checked; only the time counts here.
        let _ = prepared.run(&input, &mut output);
    });
    let (kernel, isa, threads) = match &prepared {
        Prepared::Fast(conv) => (
            conv.kernel_id(),
            conv.isa().name().to_string(),
            conv.threads(),
        ),
        other => (other.name(), "scalar".to_string(), 1),
    };
    Ok(json!({
        "suite": suite,
        "layer": layer.name,
        "threads": threads,
        "peer": "gconv",
        "median_us": timings.median().as_secs_f64() * 1e6,
        "gflops": timings.gflops(geometry.flops()),
        "kernel": kernel,
        "isa": isa,
        "flops": geometry.flops(),
        "runs": timings.runs.len(),
    }))
}

/// The suite name the peers script gives a layer file: its stem.
fn suite_name(path: &Path) -> String {
    path.file_stem().map_or("layers".to_string(), |stem| {
        stem.to_string_lossy().into_owned()
    })
}

/// Writes the records, one JSON object per line, replacing `path` only when complete.
fn write_lines(path: &Path, records: &[serde_json::Value]) -> Result<()> {
    let describe = || format!("cannot write {}", path.display());
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::NamedTempFile::new_in(directory).with_context(describe)?;
    for record in records {
        writeln!(temporary, "{record}").with_context(describe)?;
    }
    temporary
        .persist(path)
        .map_err(|error| error.error)
        .with_context(describe)?;
    Ok(())
}
