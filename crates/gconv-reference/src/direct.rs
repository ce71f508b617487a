//! The definition of grouped 2-D convolution, as loops.
//!
//! For output element `(n, co, oh, ow)`, with `G_in = C_in / g`, `G_out = C_out / g` and the
//! group `grp = co / G_out` of the filter:
//!
//! ```text
//! y[n, co, oh, ow] = b[co] + Σ_{c < G_in} Σ_{i < kH} Σ_{j < kW}
//!                    x[n, grp·G_in + c, oh·sH − pad_top + i·dH, ow·sW − pad_left + j·dW] · w[co, c, i, j]
//! ```
//!
//! where `x` outside `0 ≤ row < H`, `0 ≤ col < W` is the padding: with the default padding
//! mode, zeros, and those taps contribute no term; with `reflect`, `replicate` or `circular`
//! the input pixel the mode copies there (see [`gconv_shape::PaddingMode`]). (A non-finite
//! *weight* on a tap that only ever meets zero padding therefore does not turn the output into
//! NaN; NaN and infinity in the *input* propagate as in any sum.)
//!
//! The sum runs in the order `c`, `i`, `j` in `f64` (each `f32` product is exact in `f64`), then
//! the bias is added and the result rounded once to `f32`.

use gconv_shape::{Geometry, PaddingMode, ShapeError};

/// Grouped convolution of an NCHW `input` with `weight` `[C_out, C_in/g, kH, kW]` and
/// optional `bias` `[C_out]` (required when the geometry has a bias, refused when not).
/// Returns the NCHW output.
pub fn conv2d(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, ShapeError> {
    let mut output = vec![0.0; geometry.output_len()];
    conv2d_into(geometry, input, weight, bias, &mut output)?;
    Ok(output)
}

/// [`conv2d`] into a caller-provided NCHW `output` of `geometry.output_len()` elements.
pub fn conv2d_into(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), ShapeError> {
    geometry.check_buffer_lengths(
        input.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        output.len(),
    )?;
    let [batch, in_channels, height, width] = geometry.input_shape();
    let [_, out_channels, out_height, out_width] = geometry.output_shape();
    let [kernel_h, kernel_w] = geometry.kernel_size();
    let in_per_group = geometry.in_channels_per_group();
    let out_per_group = geometry.out_channels_per_group();

    for n in 0..batch {
        for co in 0..out_channels {
            let group = co / out_per_group;
            for oh in 0..out_height {
                for ow in 0..out_width {
                    let mut sum = 0.0f64;
                    for c in 0..in_per_group {
                        let ci = group * in_per_group + c;
                        for i in 0..kernel_h {
                            for j in 0..kernel_w {
                                let Some([row, col]) = tap_source(geometry, [oh, ow], [i, j])
                                else {
                                    continue;
                                };
                                let x =
                                    input[((n * in_channels + ci) * height + row) * width + col];
                                let w =
                                    weight[((co * in_per_group + c) * kernel_h + i) * kernel_w + j];
                                sum += f64::from(x) * f64::from(w);
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        sum += f64::from(bias[co]);
                    }
                    output[((n * out_channels + co) * out_height + oh) * out_width + ow] =
                        sum as f32;
                }
            }
        }
    }
    Ok(())
}

/// The input pixel `[row, col]` that tap `(i, j)` of output `(oh, ow)` reads: padded position
/// `(oh·sH + i·dH, ow·sW + j·dW)`, which is input position
/// `(oh·sH − pad_top + i·dH, ow·sW − pad_left + j·dW)` where that lies in the input, and
/// elsewhere what the padding mode puts there: `None` for zeros, else the input pixel it
/// copies (see [`source_index`]).
pub(crate) fn tap_source(
    geometry: &Geometry,
    [oh, ow]: [usize; 2],
    [i, j]: [usize; 2],
) -> Option<[usize; 2]> {
    let [stride_h, stride_w] = geometry.stride();
    let [dilation_h, dilation_w] = geometry.dilation();
    let [height, width] = geometry.input_size();
    let padding = geometry.padding();
    let mode = geometry.padding_mode();
    // Padded coordinates fit in usize (Geometry checked the padded size), so in i128.
    let row = (oh * stride_h + i * dilation_h) as i128 - padding.top as i128;
    let col = (ow * stride_w + j * dilation_w) as i128 - padding.left as i128;
    Some([
        source_index(mode, row, height)?,
        source_index(mode, col, width)?,
    ])
}

/// The input index along an axis of `size` elements that position `position` (relative to
/// the first input element) holds under `mode`; `None` where it is zero padding. Positions
/// are at most one padding (which Geometry keeps within the mode's limit) outside the input.
pub(crate) fn source_index(mode: PaddingMode, position: i128, size: usize) -> Option<usize> {
    let size = size as i128;
    let index = if (0..size).contains(&position) {
        position
    } else {
        match mode {
            PaddingMode::Zeros => return None,
            PaddingMode::Reflect if position < 0 => -position,
            PaddingMode::Reflect => 2 * (size - 1) - position,
            PaddingMode::Replicate => position.clamp(0, size - 1),
            PaddingMode::Circular => position.rem_euclid(size),
        }
    };
    usize::try_from(index).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::{Conv2dParams, Padding};

    #[test]
    fn a_2x2_kernel_of_ones_sums_each_window() {
        // 1 2 3
        // 4 5 6      windows of 2x2: 1+2+4+5 = 12, 2+3+5+6 = 16,
        // 7 8 9                      4+5+7+8 = 24, 5+6+8+9 = 28.
        let geometry = Conv2dParams::new(1, 1, 2)
            .bias(false)
            .geometry([1, 1, 3, 3])
            .unwrap();
        let input: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let output = conv2d(&geometry, &input, &[1.0; 4], None).unwrap();
        assert_eq!(output, [12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn padding_stride_and_bias_by_hand() {
        // Input 1 2 / 3 4 padded by 1 on each side (4x4), 3x3 kernel with a 1 at the centre
        // and a 10 at the top-left tap, stride 2, bias 0.5: (4 - 3) / 2 + 1 = 1 output.
        // Its window covers rows and columns -1..=1: the centre tap meets x[0,0] = 1, the
        // top-left tap meets padding, so the output is 1 + 0.5.
        let geometry = Conv2dParams::new(1, 1, 3)
            .stride(2)
            .padding(Padding::uniform(1))
            .geometry([1, 1, 2, 2])
            .unwrap();
        assert_eq!(geometry.output_size(), [1, 1]);
        let weight = [10.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let output = conv2d(&geometry, &[1.0, 2.0, 3.0, 4.0], &weight, Some(&[0.5])).unwrap();
        assert_eq!(output, [1.5]);

        // Same, padding only at the bottom/right: window rows 0..3, cols 0..3.
        // Top-left tap x[0,0]·10 = 10, centre x[1,1]·1 = 4, bias 0.5 -> 14.5.
        let geometry = Conv2dParams::new(1, 1, 3)
            .padding(Padding::per_side(0, 1, 0, 1))
            .geometry([1, 1, 2, 2])
            .unwrap();
        let output = conv2d(&geometry, &[1.0, 2.0, 3.0, 4.0], &weight, Some(&[0.5])).unwrap();
        assert_eq!(output, [14.5]);
    }

    #[test]
    fn each_group_sees_only_its_own_channels() {
        // 4 input channels in 2 groups, each a constant image: 1, 2, 3, 4.
        // 2 filters per group, 1x1, weights [w0, w1] over the group's 2 channels.
        // Group 0 (channels 1, 2): filter (1, 1) -> 3, filter (1, -1) -> -1.
        // Group 1 (channels 3, 4): filter (2, 0) -> 6, filter (0, 3) -> 12.
        let geometry = Conv2dParams::new(4, 4, 1)
            .groups(2)
            .bias(false)
            .geometry([1, 4, 1, 2])
            .unwrap();
        let input = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let weight = [1.0, 1.0, 1.0, -1.0, 2.0, 0.0, 0.0, 3.0];
        let output = conv2d(&geometry, &input, &weight, None).unwrap();
        assert_eq!(output, [3.0, 3.0, -1.0, -1.0, 6.0, 6.0, 12.0, 12.0]);
    }

    #[test]
    fn dilation_spreads_the_taps() {
        // 1x5 input 1..5, kernel 1x2 of ones with dilation 3: x[j] + x[j+3] for j = 0, 1.
        let geometry = Conv2dParams::new(1, 1, [1, 2])
            .dilation([1, 3])
            .bias(false)
            .geometry([1, 1, 1, 5])
            .unwrap();
        let output = conv2d(&geometry, &[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 1.0], None).unwrap();
        assert_eq!(output, [5.0, 7.0]);
    }

    #[test]
    fn nan_and_infinity_in_the_input_propagate() {
        let geometry = Conv2dParams::new(1, 1, [1, 2])
            .bias(false)
            .geometry([1, 1, 1, 4])
            .unwrap();
        let input = [f32::NAN, 1.0, f32::INFINITY, 1.0];
        let output = conv2d(&geometry, &input, &[1.0, 1.0], None).unwrap();
        assert!(output[0].is_nan());
        assert_eq!(output[1], f32::INFINITY);
        assert_eq!(output[2], f32::INFINITY);
    }

    #[test]
    fn wrong_buffer_lengths_are_errors_not_panics() {
        let geometry = Conv2dParams::new(1, 1, 1).geometry([1, 1, 2, 2]).unwrap();
        assert!(conv2d(&geometry, &[1.0; 3], &[1.0], Some(&[0.0])).is_err());
        assert!(conv2d(&geometry, &[1.0; 4], &[1.0], None).is_err());
        let mut output = [0.0; 3];
        assert!(conv2d_into(&geometry, &[1.0; 4], &[1.0], Some(&[0.0]), &mut output).is_err());
    }

    /// A 1x1 kernel of weight 1 copies the padded input: the padding of each mode, by hand.
    ///
    /// ```text
    /// x = 1 2 3
    ///     4 5 6
    /// ```
    #[test]
    fn each_padding_mode_by_hand() {
        let cases = [
            (
                PaddingMode::Zeros,
                [
                    [0, 0, 0, 0, 0],
                    [0, 1, 2, 3, 0],
                    [0, 4, 5, 6, 0],
                    [0, 0, 0, 0, 0],
                ],
            ),
            (
                PaddingMode::Reflect,
                [
                    [5, 4, 5, 6, 5],
                    [2, 1, 2, 3, 2],
                    [5, 4, 5, 6, 5],
                    [2, 1, 2, 3, 2],
                ],
            ),
            (
                PaddingMode::Replicate,
                [
                    [1, 1, 2, 3, 3],
                    [1, 1, 2, 3, 3],
                    [4, 4, 5, 6, 6],
                    [4, 4, 5, 6, 6],
                ],
            ),
            (
                PaddingMode::Circular,
                [
                    [6, 4, 5, 6, 4],
                    [3, 1, 2, 3, 1],
                    [6, 4, 5, 6, 4],
                    [3, 1, 2, 3, 1],
                ],
            ),
        ];
        let input = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        for (mode, expected) in cases {
            let geometry = Conv2dParams::new(1, 1, 1)
                .padding(Padding::uniform(1))
                .padding_mode(mode)
                .bias(false)
                .geometry([1, 1, 2, 3])
                .unwrap();
            let expected: Vec<f32> = expected.iter().flatten().map(|&v| v as f32).collect();
            assert_eq!(
                conv2d(&geometry, &input, &[1.0], None).unwrap(),
                expected,
                "{mode}"
            );
            let split = crate::conv2d_split_concat(&geometry, &input, &[1.0], None).unwrap();
            assert_eq!(split, expected, "{mode}, split-concat");
        }
    }

    /// Padding as large as each mode allows on a 2x3 input: reflect up to 1 row and 2
    /// columns, circular a whole side (the input again), replicate anything; past that, an
    /// error naming the side.
    #[test]
    fn padding_up_to_each_modes_limit() {
        let params = |mode, padding| {
            Conv2dParams::new(1, 1, 1)
                .padding(padding)
                .padding_mode(mode)
                .bias(false)
        };
        let input = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // Reflect 0 rows above, 1 below, 2 columns left: row 2 mirrors row 0; columns −2, −1
        // mirror columns 2, 1.
        let geometry = params(PaddingMode::Reflect, Padding::per_side(0, 1, 2, 0))
            .geometry([1, 1, 2, 3])
            .unwrap();
        let output = conv2d(&geometry, &input, &[1.0], None).unwrap();
        assert_eq!(
            output,
            [
                3.0, 2.0, 1.0, 2.0, 3.0, 6.0, 5.0, 4.0, 5.0, 6.0, 3.0, 2.0, 1.0, 2.0, 3.0
            ]
        );
        // Circular padding of 3 columns on the right: the row again.
        let geometry = params(PaddingMode::Circular, Padding::per_side(0, 0, 0, 3))
            .geometry([1, 1, 2, 3])
            .unwrap();
        let output = conv2d(&geometry, &input, &[1.0], None).unwrap();
        assert_eq!(
            output,
            [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
        );
        // Replicate 4 rows above a 2-row input.
        let geometry = params(PaddingMode::Replicate, Padding::per_side(4, 0, 0, 0))
            .geometry([1, 1, 2, 3])
            .unwrap();
        let output = conv2d(&geometry, &input, &[1.0], None).unwrap();
        assert_eq!(&output[..12], [1.0, 2.0, 3.0].repeat(4));

        let error = params(PaddingMode::Reflect, Padding::per_side(2, 0, 0, 0))
            .geometry([1, 1, 2, 3])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "padding_mode 'reflect' needs each padding smaller than the input side it mirrors: \
             padding top (2) is not smaller than the input height (2)"
        );
        let error = params(PaddingMode::Circular, Padding::per_side(0, 0, 1, 4))
            .geometry([1, 1, 2, 3])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "padding_mode 'circular' wraps around the input at most once: \
             padding right (4) is larger than the input width (3)"
        );
    }
}
