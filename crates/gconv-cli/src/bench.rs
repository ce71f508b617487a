//! `gconv bench`: time layers of a layer list, print medians and GFLOP/s, and write JSON lines
//! that join with the peers script's output; put peers' results beside ours and draw both.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::demo::describe;
use crate::implementations::{ExecutionOptions, KernelChoice, Prepared};
use crate::measure::{self, human};
use crate::options::ActivationOption;
use crate::peers::Peers;
use crate::plot::{self, Series};
use gconv::PostOps;
use gconv::workload::{self, Layer};
use gconv::{CpuClass, Planning};
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
    #[command(flatten)]
    activation: ActivationOption,
    /// Add a residual of the output's shape to every output after the bias (before the
    /// activation), as `run --residual` does.
    #[arg(long)]
    residual: bool,
    /// Give every layer a bias (by default none; a bias costs the kernels nothing, the chain
    /// of each output starts from it).
    #[arg(long)]
    bias: bool,
    /// Channel multiplier K of the depthwise layers: each layer with groups = C_in is timed
    /// with C_out = K·C_in (MobileNet's depth multiplier, `Conv2d(C, K*C, groups=C)`); with
    /// K > 1 the other layers are left out.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    multiplier: u32,
    /// Minimum time to spend timing each layer, in seconds (after one warm-up run).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "SECONDS",
        default_value_t = 1.0
    )]
    min_time: f64,
    /// Also write one JSON object per layer to this file (suite, layer, threads, peer "gconv",
    /// median_us, gflops, kernel, isa, cpu (the CPU class kernels were chosen for), planning,
    /// bias, residual, activation, multiplier, flops, count, runs), the peers script's format.
    #[arg(long, value_name = "OUT.jsonl")]
    json: Option<PathBuf>,
    /// Peers' results (the JSON lines of shared/peers/bench_peers.py --json): adds the best
    /// peer and our ratio to it to the table, and the peers' bars to --plot.
    #[arg(long, value_name = "PEERS.jsonl")]
    peers: Option<PathBuf>,
    /// Draw GFLOP/s per layer as a bar chart into this SVG file (with --peers, the peers'
    /// bars beside ours).
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let min_time = Duration::try_from_secs_f64(args.min_time)
        .ok()
        .context("--min-time must be a non-negative number of seconds")?;
    let (suite, all) = load_layers(args.layers.as_deref())?;
    let selected = select_layers(&all, args.filter.as_deref(), args.layers.as_deref())?;
    let multiplied = multiply(&selected, args.multiplier as usize)?;
    let selected: Vec<&Layer> = match &multiplied {
        Some(layers) => layers.iter().collect(),
        None => selected,
    };

    // Read everything that can fail before spending minutes on timing.
    let peers = args.peers.as_deref().map(Peers::load).transpose()?;
    args.execution.load_wisdom()?;
    let progress = progress_bar(selected.len());
    let mut header = format!(
        "{:<30} {:<42} {:<42} {:>3} {:>10} {:>8}",
        "layer", "shape", "kernel", "T", "median", "GFLOP/s"
    );
    if peers.is_some() {
        header += &format!(" {:>18} {:>6}", "best peer", "ratio");
    }
    progress.suspend(|| -> Result<()> {
        out!("{header}");
        Ok(())
    })?;
    let mut records = Vec::new();
    for &layer in &selected {
        progress.set_message(layer.name.clone());
        let record = bench_layer(&suite, layer, args, min_time)?;
        let gflops = record["gflops"].as_f64().unwrap_or(0.0);
        let threads = record["threads"].as_u64().unwrap_or(1);
        let mut line = format!(
            "{:<30} {:<42} {:<42} {:>3} {:>10} {:>8.2}",
            layer.name,
            describe(layer),
            record["kernel"].as_str().unwrap_or(""),
            threads,
            human(Duration::from_secs_f64(
                record["median_us"].as_f64().unwrap_or(0.0) / 1e6
            )),
            gflops,
        );
        if let Some(peers) = &peers {
            match peers.best(&layer.name, threads) {
                Some((peer, best)) => {
                    line += &format!(
                        " {:>18} {:>6.2}",
                        format!("{best:.2} {peer}"),
                        gflops / best
                    )
                }
                None => line += &format!(" {:>18} {:>6}", "-", "-"),
            }
        }
        progress.suspend(|| -> Result<()> {
            out!("{line}");
            Ok(())
        })?;
        progress.inc(1);
        records.push(record);
    }
    progress.finish_and_clear();
    args.execution.save_wisdom()?;
    if selected.iter().any(|layer| layer.count > 1) {
        network_totals(&selected, &records, peers.as_ref())?;
    }
    if let Some(path) = &args.json {
        write_lines(path, &records)?;
    }
    if let Some(path) = &args.plot {
        draw(path, &suite, &records, peers.as_ref())?;
    }
    Ok(())
}

/// With a multiplier `k > 1`, the depthwise layers of `layers` with `k` times their output
/// channels (the others left out); `None` for `k = 1`.
fn multiply(layers: &[&Layer], k: usize) -> Result<Option<Vec<Layer>>> {
    if k == 1 {
        return Ok(None);
    }
    let multiplied: Vec<Layer> = layers
        .iter()
        .filter(|layer| layer.geometry.in_channels_per_group() == 1)
        .map(|layer| {
            let params = layer.geometry.params();
            let out_channels = params
                .out_channels
                .checked_mul(k)
                .context("--multiplier makes more output channels than fit in usize")?;
            let geometry = gconv::Conv2dParams {
                out_channels,
                ..*params
            }
            .geometry(layer.geometry.input_shape())?;
            Ok(Layer {
                geometry,
                ..(*layer).clone()
            })
        })
        .collect::<Result<_>>()?;
    if multiplied.is_empty() {
        bail!(
            "--multiplier {k} applies to depthwise layers (groups = in_channels), and none was selected"
        );
    }
    Ok(Some(multiplied))
}

/// The suite name and layers of the list at `path`, or of the built-in published layers.
pub fn load_layers(path: Option<&Path>) -> Result<(String, Vec<Layer>)> {
    let (suite, text) = match path {
        Some(path) => (
            suite_name(path),
            fs::read_to_string(path)
                .with_context(|| format!("cannot read layer list {}", path.display()))?,
        ),
        None => ("published".to_string(), workload::PUBLISHED.to_string()),
    };
    let layers = workload::parse_layers(&text).with_context(|| format!("in {}", source(path)))?;
    Ok((suite, layers))
}

/// The layers whose name contains `filter` (all without one); an error if none does.
pub fn select_layers<'a>(
    layers: &'a [Layer],
    filter: Option<&str>,
    path: Option<&Path>,
) -> Result<Vec<&'a Layer>> {
    let selected: Vec<&Layer> = layers
        .iter()
        .filter(|layer| filter.is_none_or(|filter| layer.name.contains(filter)))
        .collect();
    anyhow::ensure!(
        !selected.is_empty(),
        "no layer of {} matches the filter",
        source(path)
    );
    Ok(selected)
}

/// How messages name a layer list.
fn source(path: Option<&Path>) -> String {
    path.map_or("the built-in layer list".to_string(), |path| {
        path.display().to_string()
    })
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
    let bias = args.bias.then(|| data::uniform(geometry.out_channels(), 3));
    let residual = args
        .residual
        .then(|| data::uniform(geometry.output_len(), 4));
    let post = PostOps {
        residual: args.residual,
        activation: args.activation.activation,
    };
    let geometry = &geometry
        .params()
        .bias(args.bias)
        .geometry(geometry.input_shape())?;
    let prepared = Prepared::new(
        args.kernel,
        geometry,
        &weight,
        bias.as_deref(),
        &args.execution,
        post,
    )
    .with_context(|| format!("layer {}", layer.name))?;
    let mut output = vec![0.0; geometry.output_len()];
    prepared.run(&input, residual.as_deref(), &mut output)?;
    let timings = measure::repeat(min_time, 3, || {
        // The first run above was checked; only the time counts here.
        let _ = prepared.run(&input, residual.as_deref(), &mut output);
    });
    let (kernel, isa, cpu, threads) = match &prepared {
        Prepared::Fast(conv) => (
            conv.kernel_id(),
            conv.isa().name().to_string(),
            conv.cpu_class().name(),
            conv.threads(),
        ),
        other => (
            other.name(),
            "scalar".to_string(),
            CpuClass::detect().name(),
            1,
        ),
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
        "cpu": cpu,
        "planning": planning_name(args.execution.planning()),
        "bias": args.bias,
        "residual": args.residual,
        "activation": args.activation.activation.to_string(),
        "multiplier": args.multiplier,
        "flops": geometry.flops(),
        "count": layer.count,
        "runs": timings.runs.len(),
    }))
}

/// `table`, `wisdom` or `measure:MS`, as --planning takes it.
pub fn planning_name(planning: Planning) -> String {
    match planning {
        Planning::Table => "table".to_string(),
        Planning::Wisdom => "wisdom".to_string(),
        Planning::Measure { budget } => format!("measure:{}", budget.as_millis()),
    }
}

/// For a list of whole networks (layers with counts): per network, the sum of each layer's
/// median times its count, ours and every peer's that measured all of its layers, and the
/// share of our time in dense (`groups = 1`) layers.
fn network_totals(
    layers: &[&Layer],
    records: &[serde_json::Value],
    peers: Option<&Peers>,
) -> Result<()> {
    let mut networks: Vec<&str> = Vec::new();
    for layer in layers {
        if !networks.contains(&layer.network()) {
            networks.push(layer.network());
        }
    }
    out!();
    out!(
        "network totals (each layer's median times its count, summed; ratio: the peer's total over ours):"
    );
    for network in networks {
        let members: Vec<(&Layer, &serde_json::Value)> = layers
            .iter()
            .zip(records)
            .filter(|(layer, _)| layer.network() == network)
            .map(|(layer, record)| (*layer, record))
            .collect();
        let threads = members
            .first()
            .and_then(|(_, record)| record["threads"].as_u64())
            .unwrap_or(1);
        let time = |(layer, record): &(&Layer, &serde_json::Value)| {
            record["median_us"].as_f64().unwrap_or(0.0) * layer.count as f64
        };
        let ours: f64 = members.iter().map(time).sum();
        let dense: f64 = members
            .iter()
            .filter(|(layer, _)| layer.geometry.groups() == 1)
            .map(time)
            .sum();
        let mut line = format!(
            "  {network:<24} T={threads}  gconv {:>10}  ({:.0} % in groups = 1)",
            human(Duration::from_secs_f64(ours / 1e6)),
            100.0 * dense / ours.max(f64::MIN_POSITIVE)
        );
        for peer in peers.iter().flat_map(|peers| peers.names.iter()) {
            if peer.starts_with("gconv") {
                continue;
            }
            let total: Option<f64> = members
                .iter()
                .map(|(layer, _)| {
                    let gflops = peers?.gflops(&layer.name, threads, peer)?;
                    Some(layer.geometry.flops() as f64 / gflops / 1e3 * layer.count as f64)
                })
                .sum();
            if let Some(total) = total {
                line += &format!(
                    "  {peer} {} ({:.2}x)",
                    human(Duration::from_secs_f64(total / 1e6)),
                    total / ours
                );
            }
        }
        out!("{line}");
    }
    Ok(())
}

/// A bar on stderr that counts layers; drawn only when stderr is a terminal.
fn progress_bar(layers: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(layers as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} layers, {elapsed} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Draws our GFLOP/s per layer and, when given, every peer's at the same thread count.
fn draw(
    path: &Path,
    suite: &str,
    records: &[serde_json::Value],
    peers: Option<&Peers>,
) -> Result<()> {
    let layers: Vec<String> = records
        .iter()
        .map(|record| record["layer"].as_str().unwrap_or("").to_string())
        .collect();
    let threads: Vec<u64> = records
        .iter()
        .map(|record| record["threads"].as_u64().unwrap_or(1))
        .collect();
    let mut series = vec![Series {
        name: "gconv".to_string(),
        gflops: records
            .iter()
            .map(|record| record["gflops"].as_f64())
            .collect(),
    }];
    for peer in peers.map_or(&[][..], |peers| &peers.names) {
        series.push(Series {
            name: peer.clone(),
            gflops: layers
                .iter()
                .zip(&threads)
                .map(|(layer, &threads)| peers?.gflops(layer, threads, peer))
                .collect(),
        });
    }
    let mut counts = threads.clone();
    counts.sort_unstable();
    counts.dedup();
    let plural = if counts == [1] { "" } else { "s" };
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    let title = format!(
        "{suite}: GFLOP/s per layer, {} thread{plural}",
        counts.join(" and ")
    );
    plot::bar_chart(path, &title, &layers, &series)
}

/// The suite name the peers script gives a layer file: its stem.
fn suite_name(path: &Path) -> String {
    path.file_stem().map_or("layers".to_string(), |stem| {
        stem.to_string_lossy().into_owned()
    })
}

/// Writes the records, one JSON object per line, replacing `path` only when complete.
fn write_lines(path: &Path, records: &[serde_json::Value]) -> Result<()> {
    gconv_cli::files::write_atomically(path, |out| {
        records
            .iter()
            .try_for_each(|record| writeln!(out, "{record}"))
    })
}
