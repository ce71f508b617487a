//! `gconv shape`: the arithmetic of a convolution, without data.

use anyhow::Result;
use clap::Args;
use gconv_shape::{Conv2dParams, Geometry, Padding, PaddingMode, PaddingPerSide, ValidParams};
use serde_json::json;

use crate::options::{GeometryOptions, parse_pair, parse_shape4};

#[derive(Debug, Args)]
pub struct ShapeArgs {
    /// Channels of the input (C_in).
    #[arg(long, allow_hyphen_values = true, value_name = "C_IN")]
    in_channels: usize,
    /// Channels of the output (C_out).
    #[arg(long, allow_hyphen_values = true, value_name = "C_OUT")]
    out_channels: usize,
    /// Kernel size: K for K x K, or KH,KW.
    #[arg(long, allow_hyphen_values = true, value_name = "K|KH,KW", value_parser = parse_pair)]
    kernel: [usize; 2],
    /// Input shape N,C,H,W: adds the output shape and FLOPs.
    #[arg(long, allow_hyphen_values = true, value_name = "N,C,H,W", value_parser = parse_shape4)]
    input_shape: Option<[usize; 4]>,
    #[command(flatten)]
    geometry: GeometryOptions,
    /// The convolution has no bias (PyTorch's bias=False).
    #[arg(long)]
    no_bias: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn shape(args: &ShapeArgs) -> Result<()> {
    let params = args.geometry.apply(
        Conv2dParams::new(args.in_channels, args.out_channels, args.kernel).bias(!args.no_bias),
    );
    let valid = params.validate()?;
    let geometry = args
        .input_shape
        .map(|input_shape| valid.geometry(input_shape))
        .transpose()?;
    if args.json {
        out!("{}", to_json(&valid, geometry.as_ref())?);
    } else {
        out!("{}", to_table(&valid, geometry.as_ref())?.trim_end());
    }
    Ok(())
}

/// PyTorch's own `repr` of the module (defaults left out as PyTorch leaves them out), so the
/// line can be compared with a Python session.
pub fn pytorch_repr(params: &Conv2dParams) -> String {
    let [kernel_h, kernel_w] = params.kernel_size;
    let [stride_h, stride_w] = params.stride;
    let [dilation_h, dilation_w] = params.dilation;
    let mut text = format!(
        "Conv2d({}, {}, kernel_size=({kernel_h}, {kernel_w}), stride=({stride_h}, {stride_w})",
        params.in_channels, params.out_channels
    );
    match params.padding {
        Padding::Valid => {}
        Padding::Same => text += ", padding=same",
        Padding::Explicit(sides) if sides == PaddingPerSide::default() => {}
        Padding::Explicit(sides) if sides.top == sides.bottom && sides.left == sides.right => {
            text += &format!(", padding=({}, {})", sides.top, sides.left);
        }
        // PyTorch has no per-side padding in Conv2d; F.pad's order (left, right, top, bottom).
        Padding::Explicit(sides) => {
            text += &format!(
                ", padding=({}, {}, {}, {})",
                sides.left, sides.right, sides.top, sides.bottom
            );
        }
    }
    if params.dilation != [1, 1] {
        text += &format!(", dilation=({dilation_h}, {dilation_w})");
    }
    if params.groups != 1 {
        text += &format!(", groups={}", params.groups);
    }
    if !params.bias {
        text += ", bias=False";
    }
    if params.padding_mode != PaddingMode::Zeros {
        text += &format!(", padding_mode={}", params.padding_mode);
    }
    text + ")"
}

fn to_table(valid: &ValidParams, geometry: Option<&Geometry>) -> Result<String> {
    let mut table = format!("{}\n", pytorch_repr(valid.params()));
    let row = |label: &str, value: String| format!("  {label:<22}{value}\n");
    table += &row(
        "channels per group",
        format!(
            "{} in, {} out",
            valid.in_channels_per_group(),
            valid.out_channels_per_group()
        ),
    );
    table += &row("weight shape", format!("{:?}", valid.weight_shape()));
    table += &row(
        "parameters",
        format!(
            "{} ({} weights + {} bias)",
            valid.parameter_count()?,
            valid.weight_count(),
            valid.bias_count()
        ),
    );
    let padding = valid.padding();
    table += &row(
        "padding (t, b, l, r)",
        format!(
            "{}, {}, {}, {} ({})",
            padding.top,
            padding.bottom,
            padding.left,
            padding.right,
            valid.padding_mode()
        ),
    );
    if let Some(geometry) = geometry {
        table += &row("input shape", format!("{:?}", geometry.input_shape()));
        table += &row("output shape", format!("{:?}", geometry.output_shape()));
        table += &row("FLOPs", geometry.flops().to_string());
    }
    Ok(table)
}

fn to_json(valid: &ValidParams, geometry: Option<&Geometry>) -> Result<serde_json::Value> {
    let padding = valid.padding();
    let mut object = json!({
        "in_channels": valid.in_channels(),
        "out_channels": valid.out_channels(),
        "kernel_size": valid.kernel_size(),
        "stride": valid.stride(),
        "dilation": valid.dilation(),
        "groups": valid.groups(),
        "bias": valid.has_bias(),
        "padding": {
            "top": padding.top, "bottom": padding.bottom,
            "left": padding.left, "right": padding.right,
        },
        "padding_mode": valid.padding_mode().name(),
        "in_channels_per_group": valid.in_channels_per_group(),
        "out_channels_per_group": valid.out_channels_per_group(),
        "weight_shape": valid.weight_shape(),
        "weight_count": valid.weight_count(),
        "bias_count": valid.bias_count(),
        "parameter_count": valid.parameter_count()?,
    });
    if let Some(geometry) = geometry {
        object["input_shape"] = json!(geometry.input_shape());
        object["output_shape"] = json!(geometry.output_shape());
        object["flops"] = json!(geometry.flops());
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_pytorchs() {
        let params = Conv2dParams::new(6, 6, 1).groups(2);
        assert_eq!(
            pytorch_repr(&params),
            "Conv2d(6, 6, kernel_size=(1, 1), stride=(1, 1), groups=2)"
        );
        let params = Conv2dParams::new(4, 8, 3)
            .padding(Padding::uniform(1))
            .dilation(2);
        assert_eq!(
            pytorch_repr(&params),
            "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2))"
        );
        let params = Conv2dParams::new(4, 8, [3, 1])
            .padding(Padding::Same)
            .bias(false);
        assert_eq!(
            pytorch_repr(&params),
            "Conv2d(4, 8, kernel_size=(3, 1), stride=(1, 1), padding=same, bias=False)"
        );
    }

    #[test]
    fn json_carries_the_derived_sizes() {
        let valid = Conv2dParams::new(6, 6, 1).groups(3).validate().unwrap();
        let geometry = valid.geometry([1, 6, 8, 8]).unwrap();
        let object = to_json(&valid, Some(&geometry)).unwrap();
        assert_eq!(object["weight_shape"], json!([6, 2, 1, 1]));
        assert_eq!(object["parameter_count"], json!(18));
        assert_eq!(object["flops"], json!(2 * 6 * 64 * 2));
    }
}
