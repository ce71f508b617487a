//! `gconv demo`: the library shown to a person, on built-in data.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use gconv_shape::Conv2dParams;
use gconv_testkit::{Problem, check_against_reference};

use crate::implementations;
use crate::measure::{self, human};
use crate::shape::pytorch_repr;
use gconv::workload::{self, Layer};
use gconv_testkit::data;

/// Layers of `benches/layers/published.csv` that show each family once and run quickly.
const DEMO_LAYERS: [&str; 7] = [
    "seed.g2_1x1",
    "alexnet.conv5",
    "resnext50.layer3",
    "mobilenetv2.dw144_56_s2",
    "shufflenet_g3.s3_reduce",
    "deeplab.dw576_d2",
    "resnext50.layer4_down",
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Minimum time to spend timing each implementation on each layer, in seconds.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "SECONDS",
        default_value_t = 0.2
    )]
    min_time: f64,
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    let min_time = Duration::try_from_secs_f64(args.min_time)
        .ok()
        .context("--min-time must be a non-negative number of seconds")?;
    print_seed_table()?;
    out!();
    run_layers(min_time)
}

/// The seed examples: `Conv2d(6, C_out, 1, groups=g)`.
fn print_seed_table() -> Result<()> {
    out!("Grouped convolution splits C_in input channels into g groups; each group's C_out/g");
    out!("filters see only that group's C_in/g channels. The weight is [C_out, C_in/g, kH, kW].");
    out!();
    out!("{:<60} {:<14} parameters", "module", "weight");
    for (out_channels, groups) in [(6, 1), (3, 1), (6, 2), (6, 3), (6, 4)] {
        let params = Conv2dParams::new(6, out_channels, 1).groups(groups);
        let repr = pytorch_repr(&params);
        match params.validate() {
            Ok(valid) => out!(
                "{repr:<60} {:<14} {} = {} weights + {} bias",
                format!("{:?}", valid.weight_shape()),
                valid.parameter_count().unwrap_or(usize::MAX),
                valid.weight_count(),
                valid.bias_count()
            ),
            Err(error) => out!("{repr:<60} error: {error}"),
        }
    }
    Ok(())
}

fn run_layers(min_time: Duration) -> Result<()> {
    let layers = workload::parse_layers(workload::PUBLISHED).context("the built-in layer list")?;
    out!("Layers of published networks (benches/layers/published.csv), every implementation");
    out!("checked against the reference; times are medians.");
    out!();
    out!(
        "{:<24} {:<42} {:<44} {:>10} {:>8}  check",
        "layer",
        "shape",
        "implementation",
        "median",
        "GFLOP/s"
    );
    for name in DEMO_LAYERS {
        let layer = layers
            .iter()
            .find(|layer| layer.name == name)
            .with_context(|| format!("layer {name} is missing from the built-in list"))?;
        run_layer(layer, min_time)?;
    }
    Ok(())
}

fn run_layer(layer: &Layer, min_time: Duration) -> Result<()> {
    let geometry = &layer.geometry;
    let problem = Problem {
        geometry: *geometry,
        input: data::uniform(geometry.input_len(), 1),
        weight: data::uniform(geometry.weight_count(), 2),
        bias: geometry
            .has_bias()
            .then(|| data::uniform(geometry.out_channels(), 3)),
    };
    let bias = problem.bias.as_deref();
    let mut output = vec![0.0; geometry.output_len()];
    for implementation in implementations::all(geometry, &problem.weight, bias)? {
        implementation.run(&problem.input, None, &mut output)?;
        let verdict = match check_against_reference(&problem, &output) {
            Ok(()) => "matches the reference".to_string(),
            Err(diff) => format!(
                "MISMATCH: {}",
                diff.to_string().lines().next().unwrap_or("")
            ),
        };
        let timings = measure::repeat(min_time, 1, || {
            // Checked by the run above; only the time counts here.
            let _ = implementation.run(&problem.input, None, &mut output);
        });
        out!(
            "{:<24} {:<42} {:<44} {:>10} {:>8.2}  {verdict}",
            layer.name,
            describe(layer),
            implementation.name(),
            human(timings.median()),
            timings.gflops(geometry.flops()),
        );
    }
    Ok(())
}

/// `N1 C96->256 27x27 k5x5 s1 p2 d1 g2`, the peers script's short form.
pub fn describe(layer: &Layer) -> String {
    let g = &layer.geometry;
    let [batch, in_channels, height, width] = g.input_shape();
    let [kernel_h, kernel_w] = g.kernel_size();
    format!(
        "N{batch} C{in_channels}->{} {height}x{width} k{kernel_h}x{kernel_w} s{} p{} d{} g{}",
        g.out_channels(),
        g.stride()[0],
        g.padding(),
        g.dilation()[0],
        g.groups()
    )
}
