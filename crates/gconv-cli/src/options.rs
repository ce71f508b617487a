//! Parsing of the convolution options shared by `shape`, `run` and friends:
//! `--stride S|SH,SW`, `--padding P|PH,PW|T,B,L,R|same|valid`, `--dilation D|DH,DW`,
//! `--kernel-size K|KH,KW`, `--input-shape N,C,H,W`.

use clap::Args;
use gconv_shape::{Activation, Conv2dParams, GroupSizes, Padding, PaddingMode};

/// A comma-separated list of 1..=4 non-negative integers, with messages that say which
/// element is wrong.
fn parse_list(text: &str, what: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<usize>().map_err(|error| {
                format!(
                    "{what}: '{part}' is not a non-negative integer that fits in usize ({error})"
                )
            })
        })
        .collect()
}

/// `S` or `SH,SW`.
pub fn parse_pair(text: &str) -> Result<[usize; 2], String> {
    match parse_list(text, "expected S or SH,SW")?[..] {
        [both] => Ok([both, both]),
        [height, width] => Ok([height, width]),
        _ => Err(format!("expected S or SH,SW, got '{text}'")),
    }
}

/// `P`, `PH,PW`, `T,B,L,R`, `same` or `valid`.
pub fn parse_padding(text: &str) -> Result<Padding, String> {
    match text.trim() {
        "same" => return Ok(Padding::Same),
        "valid" => return Ok(Padding::Valid),
        _ => {}
    }
    let what = "expected P, PH,PW, T,B,L,R, same or valid";
    match parse_list(text, what)?[..] {
        [all] => Ok(Padding::uniform(all)),
        [vertical, horizontal] => Ok(Padding::symmetric(vertical, horizontal)),
        [top, bottom, left, right] => Ok(Padding::per_side(top, bottom, left, right)),
        _ => Err(format!("{what}, got '{text}'")),
    }
}

/// `N,C,H,W`.
pub fn parse_shape4(text: &str) -> Result<[usize; 4], String> {
    match parse_list(text, "expected N,C,H,W")?[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(format!("expected four sizes N,C,H,W, got '{text}'")),
    }
}

/// `identity`, `relu`, `relu6`, `clamp:MIN,MAX` or `leaky_relu:SLOPE`.
pub fn parse_activation(text: &str) -> Result<Activation, String> {
    let activation = text
        .parse::<Activation>()
        .map_err(|error| error.to_string())?;
    activation.validate().map_err(|error| error.to_string())?;
    Ok(activation)
}

/// The activation applied to every output, shared by the commands that run or describe a
/// convolution.
#[derive(Debug, Clone, Args)]
pub struct ActivationOption {
    /// Applied to every output element last, after the bias and the residual, on each piece of
    /// the output as it is computed: identity (none), relu, relu6, clamp:MIN,MAX (bounds may be inf or
    /// -inf) or leaky_relu:SLOPE. NaN stays NaN through each, as in PyTorch.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "identity|relu|relu6|clamp:MIN,MAX|leaky_relu:SLOPE",
        default_value = "identity",
        value_parser = parse_activation
    )]
    pub activation: Activation,
}

/// A list of group sizes as given (checked against the channel counts later, with the
/// values named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeList(pub Vec<usize>);

/// `3,2,2`: one size per group.
pub fn parse_sizes(text: &str) -> Result<SizeList, String> {
    parse_list(text, "expected a comma-separated list of channel counts").map(SizeList)
}

/// Uneven groups (beyond PyTorch), shared by `run` and `info`.
#[derive(Debug, Clone, Args)]
pub struct GroupSizeOptions {
    /// Uneven groups: the input channels of each group, in channel order (e.g. 3,2), adding
    /// up to C_in; with --out-group-sizes, in place of --groups. The weight is then 1-D: each
    /// group's [C_out_g, C_in_g, kH, kW] block, concatenated in group order.
    #[arg(long, value_name = "I1,I2,...", value_parser = parse_sizes, requires = "out_group_sizes")]
    pub in_group_sizes: Option<SizeList>,
    /// Uneven groups: the output channels of each group (e.g. 4,4), adding up to C_out.
    #[arg(long, value_name = "O1,O2,...", value_parser = parse_sizes, requires = "in_group_sizes")]
    pub out_group_sizes: Option<SizeList>,
}

impl GroupSizeOptions {
    /// The group sizes, if given.
    pub fn sizes(&self) -> Option<GroupSizes> {
        match (&self.in_group_sizes, &self.out_group_sizes) {
            (Some(input), Some(output)) => Some(GroupSizes::new(input.0.clone(), output.0.clone())),
            _ => None,
        }
    }
}

/// The hyper-parameters that `run` cannot read off the tensors, shared by every command that
/// describes a convolution.
#[derive(Debug, Clone, Args)]
pub struct GeometryOptions {
    /// Number of groups; must divide both C_in and C_out.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "G",
        default_value_t = 1
    )]
    pub groups: usize,
    /// Stride: S for both axes, or SH,SW.
    #[arg(long, allow_hyphen_values = true, value_name = "S|SH,SW", default_value = "1", value_parser = parse_pair)]
    pub stride: [usize; 2],
    /// Zero padding: P on every side, PH,PW (rows above and below, columns left and right),
    /// T,B,L,R per side, `same` (output as large as the input; stride 1 only; an odd total goes
    /// to the bottom/right) or `valid` (none).
    #[arg(long, allow_hyphen_values = true, value_name = "P|PH,PW|T,B,L,R|same|valid", default_value = "0", value_parser = parse_padding)]
    pub padding: Padding,
    /// What the padding holds, PyTorch's padding_mode: zeros, reflect (mirrored about the
    /// edge; each padding smaller than its side), replicate (the edge repeated) or circular
    /// (wrapped around; each padding at most its side). Modes other than zeros run on the
    /// reference only, for now (--kernel reference).
    #[arg(long, value_name = "zeros|reflect|replicate|circular", default_value = "zeros", value_parser = parse_padding_mode)]
    pub padding_mode: PaddingMode,
    /// Dilation (spacing between kernel taps): D for both axes, or DH,DW.
    #[arg(long, allow_hyphen_values = true, value_name = "D|DH,DW", default_value = "1", value_parser = parse_pair)]
    pub dilation: [usize; 2],
}

/// `zeros`, `reflect`, `replicate` or `circular`.
pub fn parse_padding_mode(text: &str) -> Result<PaddingMode, String> {
    text.parse::<PaddingMode>()
        .map_err(|error| error.to_string())
}

impl GeometryOptions {
    /// Applies these options to `params`.
    pub fn apply(&self, params: Conv2dParams) -> Conv2dParams {
        params
            .groups(self.groups)
            .stride(self.stride)
            .padding(self.padding)
            .padding_mode(self.padding_mode)
            .dilation(self.dilation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_one_or_two_values() {
        assert_eq!(parse_pair("2"), Ok([2, 2]));
        assert_eq!(parse_pair("2,1"), Ok([2, 1]));
        assert!(parse_pair("1,2,3").is_err());
        assert!(parse_pair("-1").unwrap_err().contains("'-1'"));
        assert!(parse_pair("99999999999999999999999").is_err());
    }

    #[test]
    fn padding_takes_every_form() {
        assert_eq!(parse_padding("same"), Ok(Padding::Same));
        assert_eq!(parse_padding("valid"), Ok(Padding::Valid));
        assert_eq!(parse_padding("1"), Ok(Padding::uniform(1)));
        assert_eq!(parse_padding("1,2"), Ok(Padding::symmetric(1, 2)));
        assert_eq!(parse_padding("0,1,2,3"), Ok(Padding::per_side(0, 1, 2, 3)));
        assert!(parse_padding("1,2,3").is_err());
        assert!(parse_padding("full").is_err());
    }

    #[test]
    fn activations_take_pytorch_names_and_refuse_nan() {
        assert_eq!(parse_activation("relu6"), Ok(Activation::Relu6));
        assert_eq!(
            parse_activation("clamp:-inf,1.5"),
            Ok(Activation::Clamp {
                min: f64::NEG_INFINITY,
                max: 1.5
            })
        );
        let nan = parse_activation("leaky_relu:nan").unwrap_err();
        assert!(nan.contains("NaN"), "{nan}");
        assert!(parse_activation("gelu").unwrap_err().contains("gelu"));
    }

    #[test]
    fn shapes_need_four_sizes() {
        assert_eq!(parse_shape4("1,6,8,8"), Ok([1, 6, 8, 8]));
        assert!(parse_shape4("6,8,8").is_err());
    }
}
