//! `gconv info`: the CPU's instruction-set tiers and, for a problem, the kernel that runs it.

use anyhow::Result;
use clap::Args;
use gconv::{Conv2d, Conv2dParams, CpuClass, Isa, UnevenConv2d, UnevenGeometry};

use crate::implementations::ExecutionOptions;
use crate::options::{
    ActivationOption, GeometryOptions, GroupSizeOptions, parse_pair, parse_shape4,
};
use gconv::PostOps;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Channels of the input (C_in); with --out-channels, --kernel and --input-shape, shows the
    /// kernel chosen for that problem.
    #[arg(long, allow_hyphen_values = true, value_name = "C_IN", requires_all = ["out_channels", "kernel", "input_shape"])]
    in_channels: Option<usize>,
    /// Channels of the output (C_out).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "C_OUT",
        requires = "in_channels"
    )]
    out_channels: Option<usize>,
    /// Kernel size: K for K x K, or KH,KW.
    #[arg(long, allow_hyphen_values = true, value_name = "K|KH,KW", value_parser = parse_pair, requires = "in_channels")]
    kernel: Option<[usize; 2]>,
    /// Input shape N,C,H,W.
    #[arg(long, allow_hyphen_values = true, value_name = "N,C,H,W", value_parser = parse_shape4, requires = "in_channels")]
    input_shape: Option<[usize; 4]>,
    #[command(flatten)]
    geometry: GeometryOptions,
    #[command(flatten)]
    group_sizes: GroupSizeOptions,
    #[command(flatten)]
    activation: ActivationOption,
    /// The problem adds a residual of the output's shape (as `run --residual` does).
    #[arg(long)]
    residual: bool,
    #[command(flatten)]
    execution: ExecutionOptions,
}

pub fn info(args: &InfoArgs) -> Result<()> {
    let available = Isa::available();
    out!("instruction sets (slowest first):");
    for isa in Isa::ALL {
        let state = if available.contains(&isa) {
            "available"
        } else {
            "not on this CPU"
        };
        out!(
            "  {:<9} {:<10} {:>2} lanes  {state}",
            isa.name(),
            isa.level(),
            isa.lanes()
        );
    }
    let forced = std::env::var("GCONV_ISA")
        .ok()
        .filter(|v| !v.trim().is_empty());
    out!(
        "default: {}{}",
        Isa::best().name(),
        forced.map_or(String::new(), |v| format!(" (GCONV_ISA={v} forces a tier)"))
    );
    let detected = CpuClass::detect();
    let forced = std::env::var("GCONV_CPU")
        .ok()
        .filter(|v| !v.trim().is_empty());
    out!(
        "class:   {} ({}){}",
        detected.name(),
        match detected {
            CpuClass::Full512 => "512-bit vectors at full width",
            CpuClass::Split512 => "512-bit vectors split into 256-bit halves",
            CpuClass::Narrow => "no AVX-512",
        },
        forced.map_or(String::new(), |v| format!(
            "; GCONV_CPU={v} chooses kernels as for another class"
        ))
    );
    out!(
        "cores:   {} (plans use all of them unless --threads says otherwise)",
        cores()
    );
    if let (Some(in_channels), Some(out_channels), Some(kernel), Some(input_shape)) = (
        args.in_channels,
        args.out_channels,
        args.kernel,
        args.input_shape,
    ) {
        let params = args
            .geometry
            .apply(Conv2dParams::new(in_channels, out_channels, kernel))
            .bias(false);
        args.execution.load_wisdom()?;
        let post = PostOps {
            residual: args.residual,
            activation: args.activation.activation,
        };
        let options = args.execution.options().post_ops(post);
        out!();
        match args.group_sizes.sizes() {
            None => {
                let geometry = params.geometry(input_shape)?;
                let weight = vec![0.0; geometry.weight_count()];
                let conv = Conv2d::from_geometry(&geometry, &weight, None, options)?;
                out!(
                    "problem: {input_shape:?} -> {:?}, weight {:?}",
                    geometry.output_shape(),
                    geometry.weight_shape()
                );
                describe(&conv, "")?;
            }
            Some(sizes) => {
                let geometry = UnevenGeometry::new(params, sizes, input_shape)?;
                let weight = vec![0.0; geometry.weight_count()];
                let conv = UnevenConv2d::from_geometry(&geometry, &weight, None, options)?;
                out!(
                    "problem: {input_shape:?} -> {:?}, uneven groups {}, flat weight of {} elements",
                    geometry.output_shape(),
                    geometry.sizes(),
                    geometry.weight_count()
                );
                let per_sample = match conv.runs().count() {
                    1 => "one run: the ordinary grouped convolution",
                    _ => {
                        "each run of equal groups is a grouped convolution of its own, one sample at a time"
                    }
                };
                out!("runs:    {per_sample}");
                for (run, conv) in conv.runs() {
                    let groups = match run.groups {
                        1 => format!("group {}", run.first_group),
                        count => format!("groups {:?} ({count} groups)", run.group_range()),
                    };
                    out!();
                    out!(
                        "{groups}: {}→{} channels each, input channels {:?}, output channels {:?}",
                        run.in_per_group,
                        run.out_per_group,
                        run.input_channels(),
                        run.output_channels()
                    );
                    describe(conv, "  ")?;
                }
            }
        }
        if !post.is_none() {
            out!(
                "post:    {post} after the bias, on each task's piece as it is written (the same kernel as without)"
            );
        }
        args.execution.save_wisdom()?;
    }
    Ok(())
}

/// The kernel of `conv`, the rule that chose it and why, and how it runs; each line after
/// `indent`.
fn describe(conv: &Conv2d, indent: &str) -> Result<()> {
    out!("{indent}family:  {}", conv.family());
    out!("{indent}kernel:  {}", conv.kernel_id());
    out!(
        "{indent}rule:    {} ({})",
        conv.rule().name(),
        conv.rule().reason()
    );
    if let Some(measurement) = conv.measurement() {
        out!(
            "{indent}planned: {measurement}; the table's choice: {}",
            measurement.table_kernel()
        );
        for timing in measurement.timings() {
            let best = timing.best.map_or("not run".to_string(), |best| {
                format!("{:.1} us", best.as_secs_f64() * 1e6)
            });
            out!(
                "{indent}         {:<48} {best:>12}  ({} runs)",
                timing.kernel,
                timing.runs
            );
        }
    }
    out!(
        "{indent}runs on: {} thread(s), {}, chosen for a {} CPU",
        conv.threads(),
        conv.isa().level(),
        conv.cpu_class().name()
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
