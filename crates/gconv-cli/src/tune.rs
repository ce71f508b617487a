//! `gconv tune`: time every candidate kernel of each layer of a layer list, report how far
//! the selection table's choice is from the fastest, and keep the fastest as wisdom.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use gconv::gconv_kernels::{KernelPlan, Measurement};
use gconv::{Planning, Wisdom};
use gconv_testkit::data;
use serde_json::json;

use crate::bench::{load_layers, select_layers};
use crate::implementations::ExecutionOptions;

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Layer list (the CSV format of `gconv bench`). Default: the built-in published layers.
    #[arg(long, value_name = "FILE.csv")]
    layers: Option<PathBuf>,
    /// Only layers whose name contains this text.
    #[arg(long, value_name = "SUBSTRING")]
    filter: Option<String>,
    /// How long to time each layer's candidates, in milliseconds (every candidate runs at
    /// least once, at most 13 times: a warm-up, then three rounds of four runs back to back).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    budget_ms: u64,
    /// The table's choice counts as good where it is within this percentage of the fastest.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    tolerance: f64,
    /// Tier, CPU class and threads (their --planning is ignored: tune always measures; its
    /// --wisdom file gets what was measured, merged with what it held).
    #[command(flatten)]
    execution: ExecutionOptions,
    /// Also write one JSON object per layer to this file (layer, threads, cpu, table_kernel,
    /// fastest_kernel, table_ratio, candidates with their best times in microseconds).
    #[arg(long, value_name = "OUT.jsonl")]
    json: Option<PathBuf>,
}

pub fn tune(args: &TuneArgs) -> Result<()> {
    anyhow::ensure!(
        args.tolerance.is_finite() && args.tolerance >= 0.0,
        "--tolerance must be a non-negative percentage, got {}",
        args.tolerance
    );
    let (suite, layers) = load_layers(args.layers.as_deref())?;
    let selected = select_layers(&layers, args.filter.as_deref(), args.layers.as_deref())?;
    // Read the old wisdom first: a broken file is refused before minutes of timing.
    let mut collected = match &args.execution.wisdom {
        Some(path) if path.exists() => {
            Wisdom::read(path).context("cannot use the --wisdom file")?
        }
        _ => Wisdom::new(),
    };
    let budget = Duration::from_millis(args.budget_ms);
    let options = args
        .execution
        .options()
        .planning(Planning::Measure { budget });
    out!(
        "{:<30} {:<46} {:<46} {:>5} {:>6}",
        "layer",
        "table's choice",
        "fastest",
        "cands",
        "ratio"
    );
    let mut ratios = Vec::new();
    let mut records = Vec::new();
    for layer in &selected {
        let geometry = &layer.geometry;
        let weight = data::uniform(geometry.weight_count(), 2);
        // A fresh measurement for every layer, even one of a shape measured before.
        *Wisdom::global() = Wisdom::new();
        let plan = KernelPlan::new(geometry, &weight, None, options)
            .with_context(|| format!("layer {}", layer.name))?;
        collected.merge(&Wisdom::global());
        let measurement = plan
            .measurement()
            .context("a measured plan reports its measurement")?;
        let ratio = measurement.table_ratio().unwrap_or(1.0);
        let fastest = fastest(measurement).unwrap_or_else(|| plan.kernel_id());
        out!(
            "{:<30} {:<46} {:<46} {:>5} {:>6.3}",
            layer.name,
            measurement.table_kernel(),
            fastest,
            measurement.timings().len(),
            ratio
        );
        ratios.push((layer.name.clone(), ratio));
        let candidates: Vec<_> = measurement
            .timings()
            .iter()
            .map(|timing| {
                json!({
                    "kernel": timing.kernel,
                    "best_us": timing.best.map(|best| best.as_secs_f64() * 1e6),
                    "runs": timing.runs,
                })
            })
            .collect();
        records.push(json!({
            "suite": suite,
            "layer": layer.name,
            "threads": plan.threads(),
            "isa": plan.isa().name(),
            "cpu": plan.cpu_class().name(),
            "table_kernel": measurement.table_kernel(),
            "fastest_kernel": fastest,
            "chosen_kernel": plan.kernel_id(),
            "table_ratio": ratio,
            "candidates": candidates,
        }));
    }
    summarize(&ratios, args.tolerance)?;
    if let Some(path) = &args.json {
        let mut text = String::new();
        for record in &records {
            text += &record.to_string();
            text.push('\n');
        }
        gconv_cli::files::write_atomically(path, |out| out.write_all(text.as_bytes()))?;
    }
    if let Some(path) = &args.execution.wisdom {
        collected
            .write(path)
            .context("cannot write the --wisdom file")?;
    }
    Ok(())
}

/// The id of the candidate with the best time.
fn fastest(measurement: &Measurement) -> Option<String> {
    measurement
        .timings()
        .iter()
        .filter_map(|timing| timing.best.map(|best| (best, &timing.kernel)))
        .min_by_key(|(best, _)| *best)
        .map(|(_, kernel)| kernel.clone())
}

/// How many layers' table choices are within `tolerance` percent of the fastest, the worst,
/// and the geometric mean of the ratios.
fn summarize(ratios: &[(String, f64)], tolerance: f64) -> Result<()> {
    let within = ratios
        .iter()
        .filter(|(_, ratio)| *ratio <= 1.0 + tolerance / 100.0)
        .count();
    let geomean =
        (ratios.iter().map(|(_, ratio)| ratio.ln()).sum::<f64>() / ratios.len() as f64).exp();
    out!();
    out!(
        "the table's choice is within {tolerance}% of the fastest candidate on {within} of {} layers; geometric mean of table/fastest {geomean:.3}",
        ratios.len()
    );
    if let Some((name, worst)) = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        out!("worst: {name} at {worst:.3}");
    }
    Ok(())
}
