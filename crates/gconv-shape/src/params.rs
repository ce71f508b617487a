use crate::{Geometry, Padding, PaddingMode, PaddingPerSide, ShapeError};

/// The hyper-parameters of `torch.nn.Conv2d`, by PyTorch's names.
///
/// Build with [`Conv2dParams::new`] and the chainable setters; nothing is checked until
/// [`validate`](Self::validate) or [`geometry`](Self::geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// `C_in`, channels of the input.
    pub in_channels: usize,
    /// `C_out`, channels of the output (and filters of the weight).
    pub out_channels: usize,
    /// `[kH, kW]`.
    pub kernel_size: [usize; 2],
    /// `[sH, sW]`, default `[1, 1]`.
    pub stride: [usize; 2],
    /// Padding, default none.
    pub padding: Padding,
    /// What the padding holds, default zeros ([`PaddingMode`]).
    pub padding_mode: PaddingMode,
    /// `[dH, dW]`, the spacing between kernel taps, default `[1, 1]`.
    pub dilation: [usize; 2],
    /// `g`, which must divide both channel counts; default 1.
    pub groups: usize,
    /// Whether the convolution adds a learned bias per output channel; default `true`, as in
    /// PyTorch.
    pub bias: bool,
}

/// A spatial hyper-parameter given once for both axes (`3`) or per axis (`[3, 1]`, `(3, 1)`),
/// height first: what [`Conv2dParams::new`], [`Conv2dParams::stride`] and
/// [`Conv2dParams::dilation`] accept, as PyTorch accepts an int or a pair.
///
/// ```
/// use gconv_shape::Conv2dParams;
///
/// let square = Conv2dParams::new(8, 8, 3);
/// let tall = Conv2dParams::new(8, 8, [3, 1]).stride((2, 1));
/// assert_eq!(square.kernel_size, [3, 3]);
/// assert_eq!((tall.kernel_size, tall.stride), ([3, 1], [2, 1]));
/// ```
pub trait Spatial {
    /// `[height, width]`.
    fn per_axis(self) -> [usize; 2];
}

/// One value for both axes: `3` is `[3, 3]`.
impl Spatial for usize {
    fn per_axis(self) -> [usize; 2] {
        [self, self]
    }
}

/// `[height, width]`.
impl Spatial for [usize; 2] {
    fn per_axis(self) -> [usize; 2] {
        self
    }
}

/// `(height, width)`, as PyTorch's tuples.
impl Spatial for (usize, usize) {
    fn per_axis(self) -> [usize; 2] {
        [self.0, self.1]
    }
}

impl Conv2dParams {
    /// `Conv2d(in_channels, out_channels, kernel_size)` with PyTorch's defaults: stride 1, no
    /// padding, dilation 1, one group, with bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Spatial) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: kernel_size.per_axis(),
            stride: [1, 1],
            padding: Padding::Valid,
            padding_mode: PaddingMode::Zeros,
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl Spatial) -> Self {
        self.stride = stride.per_axis();
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets what the padding holds (PyTorch's `padding_mode`).
    pub fn padding_mode(mut self, mode: PaddingMode) -> Self {
        self.padding_mode = mode;
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl Spatial) -> Self {
        self.dilation = dilation.per_axis();
        self
    }

    /// Sets the number of groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets whether there is a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Checks every rule that does not depend on the input: sizes at least 1, `groups` dividing
    /// both channel counts, `same` padding only with stride 1, a weight size that fits in
    /// `usize`.
    pub fn validate(&self) -> Result<ValidParams, ShapeError> {
        let nonzero = [
            (self.in_channels, "in_channels"),
            (self.out_channels, "out_channels"),
            (self.groups, "groups"),
            (self.kernel_size[0], "kernel height"),
            (self.kernel_size[1], "kernel width"),
            (self.stride[0], "stride height"),
            (self.stride[1], "stride width"),
            (self.dilation[0], "dilation height"),
            (self.dilation[1], "dilation width"),
        ];
        if let Some(&(_, what)) = nonzero.iter().find(|(value, _)| *value == 0) {
            return Err(ShapeError::Zero { what });
        }
        if !self.in_channels.is_multiple_of(self.groups) {
            return Err(ShapeError::InChannelsNotDivisible {
                in_channels: self.in_channels,
                groups: self.groups,
            });
        }
        if !self.out_channels.is_multiple_of(self.groups) {
            return Err(ShapeError::OutChannelsNotDivisible {
                out_channels: self.out_channels,
                groups: self.groups,
            });
        }
        if self.padding == Padding::Same && self.stride != [1, 1] {
            return Err(ShapeError::SamePaddingWithStride {
                stride_h: self.stride[0],
                stride_w: self.stride[1],
            });
        }
        let padding = self.padding.resolve(self.kernel_size, self.dilation)?;
        let valid = ValidParams {
            params: *self,
            padding,
        };
        checked_product(&valid.weight_shape(), "the number of weights")?;
        Ok(valid)
    }

    /// Validates the parameters, then checks them against an input of shape `[N, C, H, W]`.
    pub fn geometry(&self, input_shape: impl AsRef<[usize]>) -> Result<Geometry, ShapeError> {
        self.validate()?.geometry(input_shape)
    }
}

/// [`Conv2dParams`] that passed [`Conv2dParams::validate`], with padding resolved per side.
///
/// Everything here is independent of the input's size: weight shape and parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidParams {
    params: Conv2dParams,
    padding: PaddingPerSide,
}

impl ValidParams {
    /// The parameters as they were given.
    pub fn params(&self) -> &Conv2dParams {
        &self.params
    }

    /// `C_in`.
    pub fn in_channels(&self) -> usize {
        self.params.in_channels
    }

    /// `C_out`.
    pub fn out_channels(&self) -> usize {
        self.params.out_channels
    }

    /// `g`.
    pub fn groups(&self) -> usize {
        self.params.groups
    }

    /// `C_in / g`, the input channels each filter sees.
    pub fn in_channels_per_group(&self) -> usize {
        self.params.in_channels / self.params.groups
    }

    /// `C_out / g`, the filters of each group (the channel multiplier of a depthwise convolution).
    pub fn out_channels_per_group(&self) -> usize {
        self.params.out_channels / self.params.groups
    }

    /// `[kH, kW]`.
    pub fn kernel_size(&self) -> [usize; 2] {
        self.params.kernel_size
    }

    /// `[sH, sW]`.
    pub fn stride(&self) -> [usize; 2] {
        self.params.stride
    }

    /// `[dH, dW]`.
    pub fn dilation(&self) -> [usize; 2] {
        self.params.dilation
    }

    /// Padded rows and columns on each side, with `same` and `valid` resolved.
    pub fn padding(&self) -> PaddingPerSide {
        self.padding
    }

    /// What the padding holds.
    pub fn padding_mode(&self) -> PaddingMode {
        self.params.padding_mode
    }

    /// Whether the convolution has a bias.
    pub fn has_bias(&self) -> bool {
        self.params.bias
    }

    /// `[C_out, C_in / g, kH, kW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        let [kernel_h, kernel_w] = self.params.kernel_size;
        [
            self.params.out_channels,
            self.in_channels_per_group(),
            kernel_h,
            kernel_w,
        ]
    }

    /// `[C_out]` with a bias, `[]` without.
    pub fn bias_shape(&self) -> Vec<usize> {
        if self.params.bias {
            vec![self.params.out_channels]
        } else {
            Vec::new()
        }
    }

    /// `C_out · C_in/g · kH · kW`: grouping divides the weights by `g`.
    pub fn weight_count(&self) -> usize {
        // Checked in `validate`.
        self.weight_shape().iter().product()
    }

    /// `C_out` with a bias, 0 without: grouping does not reduce it.
    pub fn bias_count(&self) -> usize {
        if self.params.bias {
            self.params.out_channels
        } else {
            0
        }
    }

    /// Weights plus bias, as `sum(p.numel() for p in conv.parameters())` counts them.
    pub fn parameter_count(&self) -> Result<usize, ShapeError> {
        self.weight_count()
            .checked_add(self.bias_count())
            .ok_or(ShapeError::Overflow {
                what: "the number of parameters",
            })
    }

    /// Checks the parameters against an input of shape `[N, C, H, W]`.
    pub fn geometry(&self, input_shape: impl AsRef<[usize]>) -> Result<Geometry, ShapeError> {
        Geometry::new(*self, input_shape.as_ref())
    }
}

/// The product of `dims`, or [`ShapeError::Overflow`] naming `what`.
pub(crate) fn checked_product(dims: &[usize], what: &'static str) -> Result<usize, ShapeError> {
    dims.iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim))
        .ok_or(ShapeError::Overflow { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed table: `Conv2d(C_in, C_out, 1, groups=g)` weight shapes.
    #[test]
    fn seed_examples_give_pytorchs_weight_shapes() {
        let cases = [
            (6, 6, 1, [6, 6, 1, 1]),
            (6, 3, 1, [3, 6, 1, 1]),
            (6, 6, 2, [6, 3, 1, 1]),
            (6, 6, 3, [6, 2, 1, 1]),
        ];
        for (in_channels, out_channels, groups, weight_shape) in cases {
            let valid = Conv2dParams::new(in_channels, out_channels, 1)
                .groups(groups)
                .validate()
                .unwrap();
            assert_eq!(valid.weight_shape(), weight_shape, "groups={groups}");
        }
    }

    #[test]
    fn groups_that_do_not_divide_in_channels_are_refused_in_pytorchs_words() {
        let error = Conv2dParams::new(6, 6, 1).groups(4).validate().unwrap_err();
        assert_eq!(
            error,
            ShapeError::InChannelsNotDivisible {
                in_channels: 6,
                groups: 4
            }
        );
        assert!(error.to_string().contains("must be divisible by groups"));
    }

    #[test]
    fn groups_that_do_not_divide_out_channels_are_refused() {
        let error = Conv2dParams::new(6, 9, 1).groups(6).validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "out_channels (9) must be divisible by groups (6)"
        );
    }

    #[test]
    fn parameter_count_divides_weights_but_not_bias_by_groups() {
        // 3x3, 64 -> 128 channels: 64*128*9 = 73728 dense weights.
        for groups in [1, 2, 4, 8, 16, 32, 64] {
            let valid = Conv2dParams::new(64, 128, 3)
                .groups(groups)
                .validate()
                .unwrap();
            assert_eq!(valid.weight_count(), 73728 / groups);
            assert_eq!(valid.bias_count(), 128);
            assert_eq!(valid.parameter_count().unwrap(), 73728 / groups + 128);
            let without_bias = Conv2dParams::new(64, 128, 3)
                .groups(groups)
                .bias(false)
                .validate()
                .unwrap();
            assert_eq!(without_bias.parameter_count().unwrap(), 73728 / groups);
        }
    }

    #[test]
    fn every_zero_parameter_is_named() {
        let base = Conv2dParams::new(4, 4, 3);
        let cases = [
            (
                Conv2dParams {
                    in_channels: 0,
                    ..base
                },
                "in_channels",
            ),
            (
                Conv2dParams {
                    out_channels: 0,
                    ..base
                },
                "out_channels",
            ),
            (base.groups(0), "groups"),
            (base.stride([1, 0]), "stride width"),
            (base.dilation([0, 1]), "dilation height"),
            (Conv2dParams::new(4, 4, [0, 3]), "kernel height"),
        ];
        for (params, what) in cases {
            assert_eq!(params.validate(), Err(ShapeError::Zero { what }));
        }
    }

    #[test]
    fn same_padding_with_stride_is_refused() {
        let error = Conv2dParams::new(4, 4, 3)
            .padding(Padding::Same)
            .stride([1, 2])
            .validate()
            .unwrap_err();
        assert_eq!(
            error,
            ShapeError::SamePaddingWithStride {
                stride_h: 1,
                stride_w: 2
            }
        );
    }

    #[test]
    fn a_weight_count_beyond_usize_is_an_overflow_error() {
        let error = Conv2dParams::new(usize::MAX, usize::MAX, 3)
            .validate()
            .unwrap_err();
        assert!(matches!(error, ShapeError::Overflow { .. }), "{error}");
    }
}
