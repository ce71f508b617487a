use std::ops::Range;

use crate::params::checked_product;
use crate::{Conv2dParams, PaddingMode, PaddingPerSide, ShapeError, ValidParams};

/// A convolution checked against the shape of its input: every size a kernel needs.
///
/// Creating a `Geometry` proves that the input, weight and output element counts (and the
/// padded input extent) fit in `usize` and that the FLOP count fits in `u64`, so indices below
/// those lengths can be computed without further overflow checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    params: ValidParams,
    batch: usize,
    input_size: [usize; 2],
    output_size: [usize; 2],
}

impl Geometry {
    pub(crate) fn new(params: ValidParams, input_shape: &[usize]) -> Result<Self, ShapeError> {
        let &[batch, channels, height, width] = input_shape else {
            return Err(ShapeError::InputRank {
                actual: input_shape.to_vec(),
            });
        };
        let input_shape = [batch, channels, height, width];
        for (value, what) in [
            (batch, "input batch"),
            (channels, "input channels"),
            (height, "input height"),
            (width, "input width"),
        ] {
            if value == 0 {
                return Err(ShapeError::Zero { what });
            }
        }
        if channels != params.in_channels() {
            return Err(ShapeError::InputChannels {
                expected: params.in_channels(),
                actual: channels,
                input_shape,
            });
        }
        let padding = params.padding();
        check_padding_mode(params.padding_mode(), padding, [height, width])?;
        let output_h = output_extent(
            "height",
            height,
            [padding.top, padding.bottom],
            params.kernel_size()[0],
            params.stride()[0],
            params.dilation()[0],
        )?;
        let output_w = output_extent(
            "width",
            width,
            [padding.left, padding.right],
            params.kernel_size()[1],
            params.stride()[1],
            params.dilation()[1],
        )?;
        let geometry = Self {
            params,
            batch,
            input_size: [height, width],
            output_size: [output_h, output_w],
        };
        checked_product(&geometry.input_shape(), "the number of input elements")?;
        checked_product(&geometry.output_shape(), "the number of output elements")?;
        geometry.checked_flops()?;
        Ok(geometry)
    }

    /// The validated parameters.
    pub fn valid_params(&self) -> &ValidParams {
        &self.params
    }

    /// The parameters as they were given.
    pub fn params(&self) -> &Conv2dParams {
        self.params.params()
    }

    /// `N`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// `C_in`.
    pub fn in_channels(&self) -> usize {
        self.params.in_channels()
    }

    /// `C_out`.
    pub fn out_channels(&self) -> usize {
        self.params.out_channels()
    }

    /// `g`.
    pub fn groups(&self) -> usize {
        self.params.groups()
    }

    /// `C_in / g`.
    pub fn in_channels_per_group(&self) -> usize {
        self.params.in_channels_per_group()
    }

    /// `C_out / g`.
    pub fn out_channels_per_group(&self) -> usize {
        self.params.out_channels_per_group()
    }

    /// `[kH, kW]`.
    pub fn kernel_size(&self) -> [usize; 2] {
        self.params.kernel_size()
    }

    /// `[sH, sW]`.
    pub fn stride(&self) -> [usize; 2] {
        self.params.stride()
    }

    /// `[dH, dW]`.
    pub fn dilation(&self) -> [usize; 2] {
        self.params.dilation()
    }

    /// Padded rows and columns on each side.
    pub fn padding(&self) -> PaddingPerSide {
        self.params.padding()
    }

    /// What the padding holds.
    pub fn padding_mode(&self) -> PaddingMode {
        self.params.padding_mode()
    }

    /// Whether the convolution has a bias.
    pub fn has_bias(&self) -> bool {
        self.params.has_bias()
    }

    /// `[H, W]` of the input.
    pub fn input_size(&self) -> [usize; 2] {
        self.input_size
    }

    /// `[H_out, W_out]`, where `H_out = (H + pad_top + pad_bottom - dH·(kH - 1) - 1) / sH + 1`
    /// (and likewise for the width).
    pub fn output_size(&self) -> [usize; 2] {
        self.output_size
    }

    /// `[N, C_in, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        let [height, width] = self.input_size;
        [self.batch, self.in_channels(), height, width]
    }

    /// `[N, C_out, H_out, W_out]`.
    pub fn output_shape(&self) -> [usize; 4] {
        let [height, width] = self.output_size;
        [self.batch, self.out_channels(), height, width]
    }

    /// `[C_out, C_in / g, kH, kW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        self.params.weight_shape()
    }

    /// `[C_out]` with a bias, `[]` without.
    pub fn bias_shape(&self) -> Vec<usize> {
        self.params.bias_shape()
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.input_shape().iter().product()
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// Elements of the weight, `C_out · C_in/g · kH · kW`.
    pub fn weight_count(&self) -> usize {
        self.params.weight_count()
    }

    /// `C_out` with a bias, 0 without.
    pub fn bias_count(&self) -> usize {
        self.params.bias_count()
    }

    /// Weights plus bias.
    pub fn parameter_count(&self) -> Result<usize, ShapeError> {
        self.params.parameter_count()
    }

    /// `K = C_in/g · kH · kW`, the number of products summed into each output element.
    pub fn reduction_len(&self) -> usize {
        // A factor of the weight count, which `validate` checked.
        self.in_channels_per_group() * self.kernel_size()[0] * self.kernel_size()[1]
    }

    /// Floating-point operations of one forward pass, counting a multiply-add as two:
    /// `2 · N · C_out · H_out · W_out · C_in/g · kH · kW`. The bias is not counted.
    pub fn flops(&self) -> u64 {
        self.checked_flops().expect("checked in Geometry::new")
    }

    fn checked_flops(&self) -> Result<u64, ShapeError> {
        let factors = [
            2,
            self.output_len(),
            self.in_channels_per_group(),
            self.kernel_size()[0],
            self.kernel_size()[1],
        ];
        factors
            .iter()
            .try_fold(1u64, |product, &factor| {
                product.checked_mul(u64::try_from(factor).ok()?)
            })
            .ok_or(ShapeError::Overflow {
                what: "the number of floating-point operations",
            })
    }

    /// The input channels read by group `group` (`group < g`).
    pub fn group_input_channels(&self, group: usize) -> Range<usize> {
        let width = self.in_channels_per_group();
        group * width..(group + 1) * width
    }

    /// The output channels written by group `group` (`group < g`).
    pub fn group_output_channels(&self, group: usize) -> Range<usize> {
        let width = self.out_channels_per_group();
        group * width..(group + 1) * width
    }

    /// The output rows whose windows lie entirely inside the input (never touch padding).
    /// Empty when every window touches padding.
    pub fn interior_rows(&self) -> Range<usize> {
        interior(
            self.output_size[0],
            self.input_size[0],
            self.padding().top,
            self.kernel_size()[0],
            self.stride()[0],
            self.dilation()[0],
        )
    }

    /// The output columns whose windows lie entirely inside the input (never touch padding).
    /// Empty when every window touches padding.
    pub fn interior_cols(&self) -> Range<usize> {
        interior(
            self.output_size[1],
            self.input_size[1],
            self.padding().left,
            self.kernel_size()[1],
            self.stride()[1],
            self.dilation()[1],
        )
    }

    /// Checks that a weight tensor has shape `[C_out, C_in/g, kH, kW]`.
    pub fn check_weight_shape(&self, shape: &[usize]) -> Result<(), ShapeError> {
        if shape == self.weight_shape() {
            Ok(())
        } else {
            Err(ShapeError::WeightShape {
                expected: self.weight_shape(),
                actual: shape.to_vec(),
            })
        }
    }

    /// Checks a bias tensor's shape (`None` meaning no bias was given) against the
    /// convolution's `bias` setting.
    pub fn check_bias_shape(&self, shape: Option<&[usize]>) -> Result<(), ShapeError> {
        if let (Some(shape), false) = (shape, self.has_bias()) {
            return Err(ShapeError::BiasNotDeclared {
                given: shape.iter().product(),
            });
        }
        let actual = shape.map(<[usize]>::to_vec).unwrap_or_default();
        if actual == self.bias_shape() {
            Ok(())
        } else {
            Err(ShapeError::BiasShape {
                expected: self.bias_shape(),
                actual,
            })
        }
    }

    /// Checks the lengths of flat weight and bias buffers (`bias` is `None` when there is
    /// none), as [`Geometry::check_buffer_lengths`] does.
    pub fn check_parameter_lengths(
        &self,
        weight: usize,
        bias: Option<usize>,
    ) -> Result<(), ShapeError> {
        self.check_buffer_lengths(self.input_len(), weight, bias, self.output_len())
    }

    /// Checks the lengths of flat NCHW buffers for input, weight, bias (`None` when there is
    /// none) and output against the shapes.
    pub fn check_buffer_lengths(
        &self,
        input: usize,
        weight: usize,
        bias: Option<usize>,
        output: usize,
    ) -> Result<(), ShapeError> {
        let mismatch = |what, shape: &[usize], expected, actual| ShapeError::BufferLength {
            what,
            shape: shape.to_vec(),
            expected,
            actual,
        };
        if input != self.input_len() {
            return Err(mismatch(
                "input",
                &self.input_shape(),
                self.input_len(),
                input,
            ));
        }
        if weight != self.weight_count() {
            return Err(mismatch(
                "weight",
                &self.weight_shape(),
                self.weight_count(),
                weight,
            ));
        }
        match (bias, self.has_bias()) {
            (Some(len), true) if len != self.out_channels() => {
                return Err(mismatch(
                    "bias",
                    &[self.out_channels()],
                    self.out_channels(),
                    len,
                ));
            }
            (Some(_), true) | (None, false) => {}
            (Some(given), false) => return Err(ShapeError::BiasNotDeclared { given }),
            (None, true) => {
                return Err(ShapeError::BiasShape {
                    expected: self.bias_shape(),
                    actual: Vec::new(),
                });
            }
        }
        if output != self.output_len() {
            return Err(mismatch(
                "output",
                &self.output_shape(),
                self.output_len(),
                output,
            ));
        }
        Ok(())
    }

    /// Checks the length of a flat NCHW residual, which has the output's shape.
    pub fn check_residual_length(&self, residual: usize) -> Result<(), ShapeError> {
        if residual != self.output_len() {
            return Err(ShapeError::BufferLength {
                what: "residual",
                shape: self.output_shape().to_vec(),
                expected: self.output_len(),
                actual: residual,
            });
        }
        Ok(())
    }
}

/// Output positions along one axis, from the input extent and the padding on both sides.
fn output_extent(
    axis: &'static str,
    input: usize,
    [before, after]: [usize; 2],
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Result<usize, ShapeError> {
    let effective_kernel = effective_kernel(kernel, dilation).ok_or(ShapeError::Overflow {
        what: "the effective kernel size",
    })?;
    let padded_input = input
        .checked_add(before)
        .and_then(|sum| sum.checked_add(after))
        .ok_or(ShapeError::Overflow {
            what: "the padded input size",
        })?;
    if effective_kernel > padded_input {
        return Err(ShapeError::KernelLargerThanInput {
            axis,
            kernel,
            dilation,
            effective_kernel,
            padded_input,
        });
    }
    Ok((padded_input - effective_kernel) / stride + 1)
}

/// `dilation · (kernel − 1) + 1`, the extent a kernel covers.
fn effective_kernel(kernel: usize, dilation: usize) -> Option<usize> {
    (kernel - 1).checked_mul(dilation)?.checked_add(1)
}

/// The output positions `o` along one axis whose window `o·stride − before + tap·dilation`,
/// `tap < kernel`, stays within `0..input`.
fn interior(
    output: usize,
    input: usize,
    before: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Range<usize> {
    // Window start o·stride − before ≥ 0.
    let first = before.div_ceil(stride).min(output);
    // Window end o·stride − before + (kernel − 1)·dilation ≤ input − 1. Both sums fit: the
    // padded input and the effective kernel were checked in `Geometry::new`.
    let span = (kernel - 1) * dilation;
    let end = match (input - 1 + before).checked_sub(span) {
        Some(last_start) => (last_start / stride + 1).min(output),
        None => 0,
    };
    first..end.max(first)
}

/// Refuses a side's padding larger than `mode` allows for the input's size on that axis, as
/// PyTorch's `F.pad` does.
fn check_padding_mode(
    mode: PaddingMode,
    padding: PaddingPerSide,
    [height, width]: [usize; 2],
) -> Result<(), ShapeError> {
    let sides = [
        ("top", padding.top, "height", height),
        ("bottom", padding.bottom, "height", height),
        ("left", padding.left, "width", width),
        ("right", padding.right, "width", width),
    ];
    for (side, padding, axis, size) in sides {
        if mode
            .max_padding(size)
            .is_some_and(|largest| padding > largest)
        {
            return Err(ShapeError::PaddingModeTooLarge {
                mode,
                side,
                padding,
                axis,
                size,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Padding;
    use proptest::prelude::*;

    #[test]
    fn output_size_follows_pytorchs_formula() {
        // AlexNet conv2: 27x27, k5, p2 -> 27x27.
        let geometry = Conv2dParams::new(96, 256, 5)
            .groups(2)
            .padding(Padding::uniform(2))
            .geometry([1, 96, 27, 27])
            .unwrap();
        assert_eq!(geometry.output_shape(), [1, 256, 27, 27]);
        // ResNeXt stride-2 3x3: 56 -> 28.
        let geometry = Conv2dParams::new(256, 256, 3)
            .groups(32)
            .stride(2)
            .padding(Padding::uniform(1))
            .geometry([1, 256, 56, 56])
            .unwrap();
        assert_eq!(geometry.output_size(), [28, 28]);
        // (7 + 0 - 2*(3-1) - 1)/2 + 1 = 2 for dilation 2, stride 2, no padding.
        let geometry = Conv2dParams::new(1, 1, 3)
            .stride(2)
            .dilation(2)
            .geometry([1, 1, 7, 7])
            .unwrap();
        assert_eq!(geometry.output_size(), [2, 2]);
    }

    #[test]
    fn flops_count_two_per_multiply_add() {
        let geometry = Conv2dParams::new(6, 6, 1)
            .groups(2)
            .geometry([1, 6, 8, 8])
            .unwrap();
        // 2 · 1 · 6 · 8 · 8 · 3 · 1 · 1.
        assert_eq!(geometry.flops(), 2304);
        assert_eq!(geometry.reduction_len(), 3);
    }

    #[test]
    fn group_channel_ranges_tile_the_channels() {
        let geometry = Conv2dParams::new(6, 9, 3)
            .groups(3)
            .geometry([2, 6, 5, 5])
            .unwrap();
        assert_eq!(geometry.group_input_channels(0), 0..2);
        assert_eq!(geometry.group_input_channels(2), 4..6);
        assert_eq!(geometry.group_output_channels(1), 3..6);
    }

    #[test]
    fn a_kernel_larger_than_the_padded_input_is_refused_with_its_sizes() {
        let error = Conv2dParams::new(1, 1, 3)
            .dilation(2)
            .padding(Padding::uniform(0))
            .geometry([1, 1, 4, 9])
            .unwrap_err();
        assert_eq!(
            error,
            ShapeError::KernelLargerThanInput {
                axis: "height",
                kernel: 3,
                dilation: 2,
                effective_kernel: 5,
                padded_input: 4
            }
        );
        assert_eq!(
            error.to_string(),
            "effective kernel height (5 = dilation 2 * (kernel 3 - 1) + 1) is larger than the padded input height (4)"
        );
    }

    #[test]
    fn input_shape_errors_name_the_shape() {
        let params = Conv2dParams::new(6, 6, 1).groups(2);
        assert_eq!(
            params.geometry([1, 6, 8]),
            Err(ShapeError::InputRank {
                actual: vec![1, 6, 8]
            })
        );
        assert_eq!(
            params.geometry([1, 5, 8, 8]),
            Err(ShapeError::InputChannels {
                expected: 6,
                actual: 5,
                input_shape: [1, 5, 8, 8]
            })
        );
        assert_eq!(
            params.geometry([0, 6, 8, 8]),
            Err(ShapeError::Zero {
                what: "input batch"
            })
        );
    }

    #[test]
    fn sizes_beyond_usize_are_overflow_errors() {
        let params = Conv2dParams::new(1, 1, 1);
        let error = params.geometry([usize::MAX, 1, 2, 1]).unwrap_err();
        assert!(matches!(error, ShapeError::Overflow { .. }), "{error}");
        let error = Conv2dParams::new(1, 1, 1)
            .padding(Padding::uniform(usize::MAX))
            .geometry([1, 1, 1, 1])
            .unwrap_err();
        assert!(matches!(error, ShapeError::Overflow { .. }), "{error}");
        let error = Conv2dParams::new(1, 1, 3)
            .dilation(usize::MAX)
            .geometry([1, 1, 9, 9])
            .unwrap_err();
        assert!(matches!(error, ShapeError::Overflow { .. }), "{error}");
    }

    #[test]
    fn weight_and_bias_shapes_are_checked() {
        let params = Conv2dParams::new(6, 6, 3).groups(3);
        let geometry = params.geometry([1, 6, 5, 5]).unwrap();
        assert!(geometry.check_weight_shape(&[6, 2, 3, 3]).is_ok());
        let error = geometry.check_weight_shape(&[6, 6, 3, 3]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "weight must have shape [6, 2, 3, 3] = [out_channels, in_channels / groups, kernel_h, kernel_w], got [6, 6, 3, 3]"
        );
        assert!(geometry.check_bias_shape(Some(&[6])).is_ok());
        assert_eq!(
            geometry.check_bias_shape(None).unwrap_err().to_string(),
            "bias must have shape [6], but none was given (the parameters say bias = true: pass \
             a bias, or declare none with bias(false))"
        );
        assert_eq!(
            geometry
                .check_bias_shape(Some(&[3]))
                .unwrap_err()
                .to_string(),
            "bias must have shape [6], got [3]"
        );
        let without = params.bias(false).geometry([1, 6, 5, 5]).unwrap();
        assert!(without.check_bias_shape(None).is_ok());
        assert_eq!(
            without.check_bias_shape(Some(&[6])),
            Err(ShapeError::BiasNotDeclared { given: 6 })
        );
    }

    #[test]
    fn buffer_lengths_are_checked_against_the_shapes() {
        let geometry = Conv2dParams::new(2, 2, 1)
            .bias(false)
            .geometry([1, 2, 3, 3])
            .unwrap();
        assert!(geometry.check_buffer_lengths(18, 4, None, 18).is_ok());
        assert!(matches!(
            geometry.check_buffer_lengths(17, 4, None, 18),
            Err(ShapeError::BufferLength { what: "input", .. })
        ));
        assert!(matches!(
            geometry.check_buffer_lengths(18, 4, None, 19),
            Err(ShapeError::BufferLength { what: "output", .. })
        ));
        assert_eq!(
            geometry.check_buffer_lengths(18, 4, Some(2), 18),
            Err(ShapeError::BiasNotDeclared { given: 2 })
        );
        assert!(geometry.check_parameter_lengths(4, None).is_ok());
        assert!(matches!(
            geometry.check_parameter_lengths(5, None),
            Err(ShapeError::BufferLength { what: "weight", .. })
        ));
        let with_bias = Conv2dParams::new(2, 2, 1).geometry([1, 2, 3, 3]).unwrap();
        assert!(matches!(
            with_bias.check_buffer_lengths(18, 4, None, 18),
            Err(ShapeError::BiasShape { expected, actual }) if expected == [2] && actual.is_empty()
        ));
    }

    /// Arbitrary small convolution parameters along one axis: input, kernel, stride, dilation,
    /// padding before and after.
    fn axis() -> impl Strategy<Value = (usize, usize, usize, usize, usize, usize)> {
        (
            1usize..20,
            1usize..6,
            1usize..4,
            1usize..4,
            0usize..5,
            0usize..5,
        )
    }

    proptest! {
        /// The output-size formula and the interior range agree with enumerating every window
        /// position of the padded input by brute force.
        #[test]
        fn output_size_and_interior_match_brute_force_window_enumeration(
            (height, kernel_h, stride_h, dilation_h, top, bottom) in axis(),
            (width, kernel_w, stride_w, dilation_w, left, right) in axis(),
        ) {
            let result = Conv2dParams::new(1, 1, [kernel_h, kernel_w])
                .stride([stride_h, stride_w])
                .dilation([dilation_h, dilation_w])
                .padding(Padding::per_side(top, bottom, left, right))
                .geometry([1, 1, height, width]);
            for (input, kernel, stride, dilation, before, after, axis) in [
                (height, kernel_h, stride_h, dilation_h, top, bottom, 0),
                (width, kernel_w, stride_w, dilation_w, left, right, 1),
            ] {
                // Every start in the padded coordinates whose last tap is still inside.
                let padded = (input + before + after) as isize;
                let last_tap = ((kernel - 1) * dilation) as isize;
                let starts: Vec<isize> = (0..)
                    .map(|o| o * stride as isize)
                    .take_while(|start| start + last_tap < padded)
                    .collect();
                let inside: Vec<usize> = starts
                    .iter()
                    .enumerate()
                    .filter(|&(_, start)| {
                        let first = start - before as isize;
                        first >= 0 && first + last_tap < input as isize
                    })
                    .map(|(o, _)| o)
                    .collect();
                match &result {
                    Ok(geometry) => {
                        prop_assert_eq!(geometry.output_size()[axis], starts.len());
                        let interior = if axis == 0 {
                            geometry.interior_rows()
                        } else {
                            geometry.interior_cols()
                        };
                        prop_assert_eq!(interior.collect::<Vec<_>>(), inside);
                    }
                    Err(ShapeError::KernelLargerThanInput { .. }) => {
                        let other_axis_empty = {
                            let (i2, k2, d2, b2, a2) = if axis == 0 {
                                (width, kernel_w, dilation_w, left, right)
                            } else {
                                (height, kernel_h, dilation_h, top, bottom)
                            };
                            (k2 - 1) * d2 + 1 > i2 + b2 + a2
                        };
                        prop_assert!(starts.is_empty() || other_axis_empty);
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
            }
        }
    }
}
