use thiserror::Error;

/// A broken rule of the convolution contract, with the values that broke it.
///
/// Messages follow PyTorch's wording where PyTorch has one (`in_channels (6) must be divisible
/// by groups (4)`), so that a user moving between the two recognises them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A size, count, stride or dilation that must be at least 1 was 0.
    #[error("{what} must be at least 1, got 0")]
    Zero {
        /// The parameter or dimension, in PyTorch's words (`stride height`, `input width`, …).
        what: &'static str,
    },
    /// `in_channels % groups != 0`.
    #[error("in_channels ({in_channels}) must be divisible by groups ({groups})")]
    InChannelsNotDivisible {
        /// The number of input channels.
        in_channels: usize,
        /// The number of groups.
        groups: usize,
    },
    /// `out_channels % groups != 0`.
    #[error("out_channels ({out_channels}) must be divisible by groups ({groups})")]
    OutChannelsNotDivisible {
        /// The number of output channels.
        out_channels: usize,
        /// The number of groups.
        groups: usize,
    },
    /// `padding = same` asked for a strided convolution, which PyTorch refuses because the
    /// output would not be the same size as the input.
    #[error(
        "padding 'same' is not supported for strided convolutions (stride is {stride_h}x{stride_w}, it must be 1x1)"
    )]
    SamePaddingWithStride {
        /// The vertical stride.
        stride_h: usize,
        /// The horizontal stride.
        stride_w: usize,
    },
    /// The input tensor does not have the four dimensions `[N, C, H, W]`.
    #[error("input must have 4 dimensions [N, C, H, W], got {} dimensions {actual:?}", actual.len())]
    InputRank {
        /// The shape that was given.
        actual: Vec<usize>,
    },
    /// The input's channel dimension is not `in_channels`. When its last dimension is
    /// `in_channels`, the message asks whether the array is channels-last.
    #[error(
        "input {input_shape:?} must have in_channels ({expected}) channels in dimension 1 of [N, C, H, W], but has {actual}{}",
        channels_last_hint(*input_shape, *expected)
    )]
    InputChannels {
        /// `in_channels` of the convolution.
        expected: usize,
        /// The input's dimension 1.
        actual: usize,
        /// The whole input shape.
        input_shape: [usize; 4],
    },
    /// The effective kernel `dilation * (kernel - 1) + 1` does not fit in the padded input.
    #[error(
        "effective kernel {axis} ({effective_kernel} = dilation {dilation} * (kernel {kernel} - 1) + 1) is larger than the padded input {axis} ({padded_input})"
    )]
    KernelLargerThanInput {
        /// `height` or `width`.
        axis: &'static str,
        /// The kernel size along that axis.
        kernel: usize,
        /// The dilation along that axis.
        dilation: usize,
        /// `dilation * (kernel - 1) + 1`.
        effective_kernel: usize,
        /// Input size plus padding on both sides.
        padded_input: usize,
    },
    /// The weight tensor's shape is not `[C_out, C_in/g, kH, kW]`.
    #[error(
        "weight must have shape {expected:?} = [out_channels, in_channels / groups, kernel_h, kernel_w], got {actual:?}"
    )]
    WeightShape {
        /// The shape the parameters imply.
        expected: [usize; 4],
        /// The shape that was given.
        actual: Vec<usize>,
    },
    /// A bias is missing from a convolution declared with one, or its shape is not
    /// `[C_out]`. (A bias given to a convolution declared without one is
    /// [`ShapeError::BiasNotDeclared`].)
    #[error("{}", bias_shape_message(expected, actual))]
    BiasShape {
        /// `[out_channels]` (`[]` would mean "no bias", which is never a mismatch of this kind).
        expected: Vec<usize>,
        /// The shape that was given (`[]` when no bias was given).
        actual: Vec<usize>,
    },
    /// A bias was given to parameters declared without one (`bias(false)`).
    #[error(
        "a bias of {given} elements was given, but the parameters say bias = false: pass no bias, or declare one with bias(true)"
    )]
    BiasNotDeclared {
        /// Elements of the bias that was given.
        given: usize,
    },
    /// A flat buffer's length disagrees with the shape it is supposed to hold.
    #[error("{what} buffer holds {actual} elements, but its shape {shape:?} needs {expected}")]
    BufferLength {
        /// `input`, `weight`, `bias`, `output` or `residual`.
        what: &'static str,
        /// The shape the buffer is supposed to hold.
        shape: Vec<usize>,
        /// The product of that shape.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// An n-dimensional array's shape disagrees with the shape the convolution needs (an
    /// output or residual array of the wrong shape).
    #[error("{what} array must have shape {expected:?} (NCHW), got {actual:?}")]
    ArrayShape {
        /// `output` or `residual`.
        what: &'static str,
        /// The shape the convolution needs.
        expected: Vec<usize>,
        /// The array's shape.
        actual: Vec<usize>,
    },
    /// A padding larger than its padding mode allows for the input's size (reflect: smaller
    /// than the side; circular: at most the side).
    #[error("{}", padding_mode_message(*mode, side, *padding, axis, *size))]
    PaddingModeTooLarge {
        /// The mode.
        mode: crate::PaddingMode,
        /// `top`, `bottom`, `left` or `right`.
        side: &'static str,
        /// That side's padding.
        padding: usize,
        /// `height` or `width`.
        axis: &'static str,
        /// The input's size on that axis.
        size: usize,
    },
    /// Uneven group sizes listing a different number of input and output groups.
    #[error(
        "the input group sizes list {input} groups but the output group sizes list {output}: each group needs both"
    )]
    GroupCounts {
        /// Groups listed for the input channels.
        input: usize,
        /// Groups listed for the output channels.
        output: usize,
    },
    /// A group of no channels in uneven group sizes.
    #[error("{side} group {group} of {sizes:?} has no channels: every group needs at least one")]
    EmptyGroup {
        /// `input` or `output`.
        side: &'static str,
        /// The empty group (from 0).
        group: usize,
        /// The list it is in.
        sizes: Vec<usize>,
    },
    /// Uneven group sizes that do not add up to the channel count.
    #[error("{side} group sizes {sizes:?} add up to {sum}, but {what} is {channels}")]
    GroupSizesSum {
        /// `input` or `output`.
        side: &'static str,
        /// The list.
        sizes: Vec<usize>,
        /// Its sum.
        sum: usize,
        /// `in_channels` or `out_channels`.
        what: &'static str,
        /// That channel count.
        channels: usize,
    },
    /// `groups` set to something other than 1 or the number of uneven group sizes.
    #[error(
        "groups ({groups}) must be 1 or the number of group sizes ({count}) when group sizes are given"
    )]
    GroupsWithSizes {
        /// The parameters' `groups`.
        groups: usize,
        /// Groups listed.
        count: usize,
    },
    /// A parameter of an activation is NaN.
    #[error(
        "the {parameter} of activation {activation} is NaN; it must be a number (infinities are allowed)"
    )]
    ActivationParameterNan {
        /// The activation's name (`clamp`, `leaky_relu`).
        activation: &'static str,
        /// Which parameter (`min`, `max`, `slope`).
        parameter: &'static str,
    },
    /// A size derived from the parameters does not fit in `usize` (or a FLOP count in `u64`).
    #[error("size arithmetic overflowed while computing {what}")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
}

/// The message of [`ShapeError::PaddingModeTooLarge`], in the spirit of PyTorch's.
fn padding_mode_message(
    mode: crate::PaddingMode,
    side: &str,
    padding: usize,
    axis: &str,
    size: usize,
) -> String {
    match mode {
        crate::PaddingMode::Circular => format!(
            "padding_mode 'circular' wraps around the input at most once: padding {side} ({padding}) is larger than the input {axis} ({size})"
        ),
        _ => format!(
            "padding_mode '{mode}' needs each padding smaller than the input side it mirrors: padding {side} ({padding}) is not smaller than the input {axis} ({size})"
        ),
    }
}

/// The message of [`ShapeError::BiasShape`]: a missing bias said as such, not as shape `[]`.
fn bias_shape_message(expected: &[usize], actual: &[usize]) -> String {
    if actual.is_empty() {
        format!(
            "bias must have shape {expected:?}, but none was given (the parameters say bias = true: pass a bias, or declare none with bias(false))"
        )
    } else {
        format!("bias must have shape {expected:?}, got {actual:?}")
    }
}

/// For an input whose channel dimension is wrong: a question whether it is channels-last,
/// when its last dimension holds the expected channel count.
fn channels_last_hint(input_shape: [usize; 4], expected: usize) -> String {
    if input_shape[3] == expected && input_shape[1] != expected {
        let [n, h, w, c] = input_shape;
        format!(
            "; its last dimension has {expected}: is it channels-last (NHWC)? gconv takes NCHW, \
             here [{n}, {c}, {h}, {w}]"
        )
    } else {
        String::new()
    }
}
