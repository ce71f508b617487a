//! The gradients of grouped convolution, as loops: what training needs from `y = conv(x, w) + b`
//! given the upstream gradient `gy = ∂L/∂y` (the output's shape).
//!
//! With the notation of [`crate::direct`] — group `g = co / G_out` of output channel `co`, and
//! `r(oh, i) = oh·sH − pad_top + i·dH`, `s(ow, j) = ow·sW − pad_left + j·dW` the input row and
//! column tap `(i, j)` of output `(oh, ow)` reads:
//!
//! ```text
//! grad_bias[co]         = Σ_{n, oh, ow} gy[n, co, oh, ow]
//!
//! grad_weight[co, c, i, j] = Σ_{n, oh, ow} gy[n, co, oh, ow] · x[n, g·G_in + c, r(oh, i), s(ow, j)]
//!
//! grad_input[n, ci, h, w]  = Σ_{m < G_out} Σ_{i, j} Σ_{oh: r(oh, i) = h} Σ_{ow: s(ow, j) = w}
//!                            gy[n, g·G_out + m, oh, ow] · w[g·G_out + m, ci − g·G_in, i, j]
//!                            (g = ci / G_in; r and s through the padding mode)
//! ```
//!
//! Taps that read zero padding contribute nothing, and zero padding receives no gradient; with
//! another padding mode a tap on the border reads an input pixel the mode copied there, and
//! its product goes to that pixel (so a reflected, replicated or wrapped border folds its
//! gradient back onto the interior). `grad_input` is a transposed convolution of `gy` with each
//! group's weights; a stride can leave input pixels that no window reads, whose gradient is
//! zero.
//!
//! Each sum runs in `f64` (its products are exact in `f64`; `grad_input` adds each product to
//! its pixel as the outputs are visited) and is rounded once to `f32`, as the forward
//! reference does.

use gconv_shape::{Geometry, ShapeError};

use crate::direct::tap_source;

/// The gradient of the input, `[N, C_in, H, W]`, from `grad_output` `[N, C_out, H_out, W_out]`
/// and `weight` `[C_out, C_in/g, kH, kW]`.
pub fn conv2d_grad_input(
    geometry: &Geometry,
    grad_output: &[f32],
    weight: &[f32],
) -> Result<Vec<f32>, ShapeError> {
    check_grad_output(geometry, grad_output)?;
    check_length("weight", &geometry.weight_shape(), weight.len())?;
    let [batch, in_channels, height, width] = geometry.input_shape();
    let [_, out_channels, out_height, out_width] = geometry.output_shape();
    let [kernel_h, kernel_w] = geometry.kernel_size();
    let in_per_group = geometry.in_channels_per_group();
    let out_per_group = geometry.out_channels_per_group();

    // Every product gy·w goes to the input pixel its tap read (the one the padding mode
    // copied, on a border), summed in f64 and rounded once at the end.
    let mut sums = vec![0.0f64; geometry.input_len()];
    for n in 0..batch {
        for co in 0..out_channels {
            let group = co / out_per_group;
            for oh in 0..out_height {
                for ow in 0..out_width {
                    let gy =
                        grad_output[((n * out_channels + co) * out_height + oh) * out_width + ow];
                    for c in 0..in_per_group {
                        let ci = group * in_per_group + c;
                        for i in 0..kernel_h {
                            for j in 0..kernel_w {
                                let Some([row, col]) = tap_source(geometry, [oh, ow], [i, j])
                                else {
                                    continue;
                                };
                                let weight =
                                    weight[((co * in_per_group + c) * kernel_h + i) * kernel_w + j];
                                sums[((n * in_channels + ci) * height + row) * width + col] +=
                                    f64::from(gy) * f64::from(weight);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(sums.into_iter().map(|sum| sum as f32).collect())
}

/// The gradient of the weight, `[C_out, C_in/g, kH, kW]`, from `input` `[N, C_in, H, W]` and
/// `grad_output` `[N, C_out, H_out, W_out]`.
pub fn conv2d_grad_weight(
    geometry: &Geometry,
    input: &[f32],
    grad_output: &[f32],
) -> Result<Vec<f32>, ShapeError> {
    check_grad_output(geometry, grad_output)?;
    check_length("input", &geometry.input_shape(), input.len())?;
    let [batch, in_channels, height, width] = geometry.input_shape();
    let [_, out_channels, out_height, out_width] = geometry.output_shape();
    let [kernel_h, kernel_w] = geometry.kernel_size();
    let in_per_group = geometry.in_channels_per_group();
    let out_per_group = geometry.out_channels_per_group();

    let mut grad_weight = vec![0.0; geometry.weight_count()];
    for co in 0..out_channels {
        let group = co / out_per_group;
        for c in 0..in_per_group {
            let ci = group * in_per_group + c;
            for i in 0..kernel_h {
                for j in 0..kernel_w {
                    let mut sum = 0.0f64;
                    for n in 0..batch {
                        for oh in 0..out_height {
                            for ow in 0..out_width {
                                let Some([row, col]) = tap_source(geometry, [oh, ow], [i, j])
                                else {
                                    continue;
                                };
                                let gy = grad_output
                                    [((n * out_channels + co) * out_height + oh) * out_width + ow];
                                let x =
                                    input[((n * in_channels + ci) * height + row) * width + col];
                                sum += f64::from(gy) * f64::from(x);
                            }
                        }
                    }
                    grad_weight[((co * in_per_group + c) * kernel_h + i) * kernel_w + j] =
                        sum as f32;
                }
            }
        }
    }
    Ok(grad_weight)
}

/// The gradient of the bias, `[C_out]`, from `grad_output` `[N, C_out, H_out, W_out]` (whether
/// or not the geometry declares a bias: it is the same sum).
pub fn conv2d_grad_bias(geometry: &Geometry, grad_output: &[f32]) -> Result<Vec<f32>, ShapeError> {
    check_grad_output(geometry, grad_output)?;
    let [batch, out_channels, out_height, out_width] = geometry.output_shape();
    let plane = out_height * out_width;
    let grad_bias = (0..out_channels)
        .map(|co| {
            let sum: f64 = (0..batch)
                .flat_map(|n| &grad_output[(n * out_channels + co) * plane..][..plane])
                .map(|&gy| f64::from(gy))
                .sum();
            sum as f32
        })
        .collect();
    Ok(grad_bias)
}

fn check_grad_output(geometry: &Geometry, grad_output: &[f32]) -> Result<(), ShapeError> {
    check_length("grad_output", &geometry.output_shape(), grad_output.len())
}

/// That a buffer of `actual` elements holds `shape` (whose product Geometry checked fits).
fn check_length(what: &'static str, shape: &[usize], actual: usize) -> Result<(), ShapeError> {
    let expected = shape.iter().product();
    if actual == expected {
        return Ok(());
    }
    Err(ShapeError::BufferLength {
        what,
        shape: shape.to_vec(),
        expected,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d;
    use gconv_shape::{Conv2dParams, Padding, PaddingMode};

    /// One channel, a 2x2 kernel on a 3x3 input, stride 1, no padding: 2x2 outputs.
    ///
    /// ```text
    /// x = 1 2 3    w = 1 10    gy = 1 2
    ///     4 5 6        100 1000     3 4
    ///     7 8 9
    /// ```
    #[test]
    fn gradients_of_a_2x2_kernel_by_hand() {
        let geometry = Conv2dParams::new(1, 1, 2).geometry([1, 1, 3, 3]).unwrap();
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = [1.0, 10.0, 100.0, 1000.0];
        let gy = [1.0, 2.0, 3.0, 4.0];
        // grad_bias = 1 + 2 + 3 + 4.
        assert_eq!(conv2d_grad_bias(&geometry, &gy).unwrap(), [10.0]);
        // grad_weight[i, j] = Σ gy[oh, ow] · x[oh + i, ow + j]:
        //   (0,0): 1·1 + 2·2 + 3·4 + 4·5 = 37     (0,1): 1·2 + 2·3 + 3·5 + 4·6 = 47
        //   (1,0): 1·4 + 2·5 + 3·7 + 4·8 = 67     (1,1): 1·5 + 2·6 + 3·8 + 4·9 = 77
        assert_eq!(
            conv2d_grad_weight(&geometry, &x, &gy).unwrap(),
            [37.0, 47.0, 67.0, 77.0]
        );
        // grad_input[h, w] = Σ over the outputs reading (h, w) of gy · the tap that reads it:
        //   (0,0): gy00·w00 = 1               (0,1): gy00·w01 + gy01·w00 = 10 + 2 = 12
        //   (0,2): gy01·w01 = 20              (1,0): gy00·w10 + gy10·w00 = 100 + 3 = 103
        //   (1,1): 1·1000 + 2·100 + 3·10 + 4·1 = 1234
        //   (1,2): gy01·w11 + gy11·w01 = 2000 + 40 = 2040
        //   (2,0): gy10·w10 = 300             (2,1): gy10·w11 + gy11·w10 = 3000 + 400 = 3400
        //   (2,2): gy11·w11 = 4000
        assert_eq!(
            conv2d_grad_input(&geometry, &gy, &w).unwrap(),
            [
                1.0, 12.0, 20.0, 103.0, 1234.0, 2040.0, 300.0, 3400.0, 4000.0
            ]
        );
    }

    /// Stride 2 on a 4-wide row with a 1-wide kernel leaves columns 1 and 3 unread: they get
    /// no gradient; padding gets none either.
    #[test]
    fn unread_pixels_and_padding_get_no_gradient() {
        let geometry = Conv2dParams::new(1, 1, [1, 3])
            .stride([1, 2])
            .padding(Padding::per_side(0, 0, 1, 0))
            .geometry([1, 1, 1, 4])
            .unwrap();
        // Outputs: ow = 0 reads columns -1, 0, 1; ow = 1 reads 1, 2, 3.
        assert_eq!(geometry.output_size(), [1, 2]);
        let gy = [1.0, 10.0];
        let w = [2.0, 3.0, 5.0];
        // Column 0: gy0·w1 = 3. Column 1: gy0·w2 + gy1·w0 = 5 + 20 = 25. Column 2: gy1·w1 = 30.
        // Column 3: gy1·w2 = 50.
        assert_eq!(
            conv2d_grad_input(&geometry, &gy, &w).unwrap(),
            [3.0, 25.0, 30.0, 50.0]
        );
        let geometry = Conv2dParams::new(1, 1, [1, 1])
            .stride([1, 2])
            .geometry([1, 1, 1, 4])
            .unwrap();
        assert_eq!(
            conv2d_grad_input(&geometry, &[1.0, 10.0], &[2.0]).unwrap(),
            [2.0, 0.0, 20.0, 0.0]
        );
    }

    /// On integer data every f32 sum is exact, and the loss `L = Σ gy·y` is linear in `x` and
    /// in `w`: moving one input (or weight) by 1 moves `L` by exactly its gradient. Checked
    /// for every element of a grouped, strided, dilated, padded problem with a bias, in every
    /// padding mode (a border pixel's gradient gathers what its copies in the padding got).
    #[test]
    fn gradients_are_the_exact_differences_of_the_forward_reference() {
        for mode in PaddingMode::ALL {
            check_exact_differences(mode);
        }
    }

    fn check_exact_differences(mode: PaddingMode) {
        let geometry = Conv2dParams::new(4, 6, [3, 2])
            .groups(2)
            .stride([2, 1])
            .dilation([1, 2])
            .padding(Padding::per_side(1, 2, 2, 0))
            .padding_mode(mode)
            .geometry([2, 4, 5, 6])
            .unwrap();
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|k| ((k * 5 + seed * 3) % 7) as f32 - 3.0)
                .collect()
        };
        let x = values(geometry.input_len(), 1);
        let w = values(geometry.weight_count(), 2);
        let b = values(6, 3);
        let gy = values(geometry.output_len(), 4);
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let y = conv2d(&geometry, x, w, Some(b)).unwrap();
            y.iter()
                .zip(&gy)
                .map(|(&y, &g)| f64::from(y) * f64::from(g))
                .sum()
        };
        let base = loss(&x, &w, &b);
        let moved = |values: &[f32], k: usize| {
            let mut values = values.to_vec();
            values[k] += 1.0;
            values
        };
        let grad_input = conv2d_grad_input(&geometry, &gy, &w).unwrap();
        for (k, &gradient) in grad_input.iter().enumerate() {
            assert_eq!(
                loss(&moved(&x, k), &w, &b) - base,
                f64::from(gradient),
                "{mode}: input {k}"
            );
        }
        let grad_weight = conv2d_grad_weight(&geometry, &x, &gy).unwrap();
        for (k, &gradient) in grad_weight.iter().enumerate() {
            assert_eq!(
                loss(&x, &moved(&w, k), &b) - base,
                f64::from(gradient),
                "{mode}: weight {k}"
            );
        }
        let grad_bias = conv2d_grad_bias(&geometry, &gy).unwrap();
        for (k, &gradient) in grad_bias.iter().enumerate() {
            assert_eq!(
                loss(&x, &w, &moved(&b, k)) - base,
                f64::from(gradient),
                "{mode}: bias {k}"
            );
        }
        assert!(grad_input.iter().any(|&g| g != 0.0) && grad_weight.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn buffers_of_the_wrong_length_are_named() {
        let geometry = Conv2dParams::new(2, 2, 3)
            .groups(2)
            .geometry([1, 2, 4, 4])
            .unwrap();
        let error = conv2d_grad_input(&geometry, &[0.0; 7], &[0.0; 18]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "grad_output buffer holds 7 elements, but its shape [1, 2, 2, 2] needs 8"
        );
        let error = conv2d_grad_input(&geometry, &[0.0; 8], &[0.0; 17]).unwrap_err();
        assert!(
            error.to_string().starts_with("weight buffer holds 17"),
            "{error}"
        );
        let error = conv2d_grad_weight(&geometry, &[0.0; 31], &[0.0; 8]).unwrap_err();
        assert!(
            error.to_string().starts_with("input buffer holds 31"),
            "{error}"
        );
        assert!(conv2d_grad_bias(&geometry, &[0.0; 9]).is_err());
    }
}
