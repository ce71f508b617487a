//! `gconv run`: convolve `.npy` tensors.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use gconv_shape::{Conv2dParams, Geometry, ShapeError};

use crate::implementations::{ExecutionOptions, KernelChoice, Prepared};
use crate::npy;
use crate::options::{ActivationOption, GeometryOptions, GroupSizeOptions, parse_pair};
use crate::uneven;
use gconv::PostOps;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input tensor [N, C_in, H, W], float32 .npy in C order.
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Weight tensor [C_out, C_in/groups, kH, kW], float32 .npy in C order (1-D with
    /// --in-group-sizes: each group's block, concatenated in group order).
    #[arg(long, value_name = "W.npy")]
    weight: PathBuf,
    /// Bias [C_out], float32 .npy; without it the convolution has no bias.
    #[arg(long, value_name = "B.npy")]
    bias: Option<PathBuf>,
    #[command(flatten)]
    geometry: GeometryOptions,
    #[command(flatten)]
    group_sizes: GroupSizeOptions,
    /// Kernel size K or KH,KW, for a 1-D weight (--in-group-sizes) whose kernel is not square
    /// (a square one is read off the weight's length).
    #[arg(long, allow_hyphen_values = true, value_name = "K|KH,KW", value_parser = parse_pair, requires = "in_group_sizes")]
    kernel_size: Option<[usize; 2]>,
    /// Residual [N, C_out, H_out, W_out] (the output's shape), float32 .npy: added to the
    /// convolution after the bias and before the activation, y = act(conv(x) + b + R), as in
    /// a ResNet or MobileNetV2 block; applied to each piece of the output as it is computed.
    #[arg(long, value_name = "R.npy")]
    residual: Option<PathBuf>,
    #[command(flatten)]
    activation: ActivationOption,
    /// Implementation: `auto` picks the fastest for the problem, `reference` runs the scalar
    /// specification.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernel: KernelChoice,
    #[command(flatten)]
    execution: ExecutionOptions,
    /// Where to write the output [N, C_out, H_out, W_out] as float32 .npy. Written to a
    /// temporary file and renamed, so an existing file is only replaced on success.
    #[arg(long, value_name = "Y.npy")]
    output: PathBuf,
    /// Print nothing on success (by default one line on stderr: the output's shape, the
    /// kernel and the time).
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: &RunArgs) -> Result<()> {
    refuse_overwriting_an_operand(args)?;
    let input = npy::read(&args.input)?;
    let weight = npy::read(&args.weight)?;
    let bias = args.bias.as_deref().map(npy::read).transpose()?;
    let residual = args.residual.as_deref().map(npy::read).transpose()?;

    let post = PostOps {
        residual: residual.is_some(),
        activation: args.activation.activation,
    };
    let bias_data = bias.as_ref().map(|b| b.data.as_slice());
    let residual_data = residual.as_ref().map(|r| r.data.as_slice());
    args.execution.load_wisdom()?;
    // Either kind of grouping gives the output's shape and what runs.
    let (output_shape, prepared) = match args.group_sizes.sizes() {
        None => {
            let geometry = geometry_of(args, &input.shape, &weight.shape, bias.as_ref())
                .context("the tensors do not make a valid convolution")?;
            let prepared = Prepared::new(
                args.kernel,
                &geometry,
                &weight.data,
                bias_data,
                &args.execution,
                post,
            )?;
            (geometry.output_shape(), prepared)
        }
        Some(sizes) => {
            let geometry = uneven::geometry_of(
                sizes,
                &args.geometry,
                args.kernel_size,
                &input.shape,
                &weight.shape,
                bias.as_ref().map(|b| b.shape.as_slice()),
            )
            .context("the tensors and group sizes do not make a valid convolution")?;
            let prepared = Prepared::uneven(
                args.kernel,
                &geometry,
                &weight.data,
                bias_data,
                &args.execution,
                post,
            )?;
            (geometry.output_shape(), prepared)
        }
    };
    check_residual_shape(args, residual.as_ref(), output_shape)?;
    let mut output = allocate(output_shape)?;
    let start = Instant::now();
    prepared.run(&input.data, residual_data, &mut output)?;
    let elapsed = start.elapsed();
    npy::write_atomically(&args.output, &output_shape, &output)?;
    args.execution.save_wisdom()?;
    if !args.quiet {
        let then = match post.is_none() {
            true => String::new(),
            false => format!(", then {post}"),
        };
        eprintln!(
            "gconv: wrote {} {:?} ({}{then}, {:.3} ms)",
            args.output.display(),
            output_shape,
            prepared.name(),
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The zeroed output buffer, or an error when the machine cannot hold it (absurd padding
/// makes valid geometries with outputs of terabytes).
fn allocate(shape: [usize; 4]) -> Result<Vec<f32>> {
    // The product fits: a validated geometry's output length is this product.
    let len = shape.iter().product();
    let mut output = Vec::new();
    output.try_reserve_exact(len).map_err(|_| {
        anyhow::anyhow!(
            "the output {:?} needs {} bytes, more memory than can be allocated",
            shape,
            len as u128 * 4
        )
    })?;
    output.resize(len, 0.0);
    Ok(output)
}

/// The convolution the tensors' shapes and the flags describe: `C_in/g`, `C_out` and the
/// kernel from the weight, `g` from the flags, then the input checked against them (so that
/// an input with the wrong channels, a channels-last one say, is named as such rather than
/// blamed on the groups), everything checked.
fn geometry_of(
    args: &RunArgs,
    input_shape: &[usize],
    weight_shape: &[usize],
    bias: Option<&npy::Array>,
) -> Result<Geometry> {
    // The rank first: a 3-D input's second dimension is not a channel count to complain about.
    if input_shape.len() != 4 {
        let rank = ShapeError::InputRank {
            actual: input_shape.to_vec(),
        };
        return Err(rank.into());
    }
    let &[out_channels, in_per_group, kernel_h, kernel_w] = weight_shape else {
        bail!(
            "weight must have 4 dimensions [out_channels, in_channels / groups, kernel_h, kernel_w], got {weight_shape:?}"
        );
    };
    let groups = args.geometry.groups;
    // (Zero groups: the parameters' own check says so, not a zero channel count.)
    let Some(in_channels) = in_per_group.checked_mul(groups.max(1)) else {
        bail!(
            "weight {weight_shape:?} with {groups} groups means in_channels = {in_per_group} * {groups}, more than fits in usize"
        );
    };
    let params = args.geometry.apply(
        Conv2dParams::new(in_channels, out_channels, [kernel_h, kernel_w]).bias(bias.is_some()),
    );
    let geometry = params.geometry(input_shape).map_err(|error| match error {
        ShapeError::InputChannels { .. } => anyhow::Error::new(error).context(format!(
            "weight {weight_shape:?} with --groups {groups} expects in_channels = {in_channels}"
        )),
        other => other.into(),
    })?;
    geometry.check_weight_shape(weight_shape)?;
    geometry.check_bias_shape(bias.map(|b| b.shape.as_slice()))?;
    Ok(geometry)
}

/// The residual must have the output's shape exactly (not merely as many elements: a
/// transposed or channels-last tensor would be added in the wrong places).
fn check_residual_shape(
    args: &RunArgs,
    residual: Option<&npy::Array>,
    output_shape: [usize; 4],
) -> Result<()> {
    let (Some(path), Some(residual)) = (&args.residual, residual) else {
        return Ok(());
    };
    let shape = &residual.shape;
    if *shape != output_shape {
        bail!(
            "--residual {} has shape {shape:?}; it must have the output's shape {output_shape:?} [N, C_out, H_out, W_out]",
            path.display()
        );
    }
    Ok(())
}

/// An output path that names one of the inputs would destroy it; refuse before reading.
fn refuse_overwriting_an_operand(args: &RunArgs) -> Result<()> {
    let Ok(output) = args.output.canonicalize() else {
        // It does not exist yet (or cannot be resolved): nothing to destroy.
        return Ok(());
    };
    let operands: [(&str, Option<&Path>); 4] = [
        ("--input", Some(&args.input)),
        ("--weight", Some(&args.weight)),
        ("--bias", args.bias.as_deref()),
        ("--residual", args.residual.as_deref()),
    ];
    for (flag, path) in operands {
        if let Some(path) = path
            && path.canonicalize().is_ok_and(|operand| operand == output)
        {
            bail!(
                "--output {} is the same file as {flag}; choose another output path",
                args.output.display()
            );
        }
    }
    Ok(())
}
