//! Uneven groups ([`gconv_shape::GroupSizes`]), as loops.
//!
//! Group `k` has `I_k` input and `O_k` output channels, starting at input channel
//! `a_k = Σ_{l<k} I_l` and output channel `o_k = Σ_{l<k} O_l`; its weight block
//! `w_k[O_k, I_k, kH, kW]` starts at `Σ_{l<k} O_l·I_l·kH·kW` of the flat weight. For output
//! channel `co = o_k + m` of group `k`:
//!
//! ```text
//! y[n, co, oh, ow] = b[co] + Σ_{c < I_k} Σ_{i < kH} Σ_{j < kW}
//!                    x[n, a_k + c, oh·sH − pad_top + i·dH, ow·sW − pad_left + j·dW] · w_k[m, c, i, j]
//! ```
//!
//! with the zero padding, order of summation and rounding of [`crate::direct`].

use gconv_shape::{ShapeError, UnevenGeometry};

use crate::direct::tap_source;

/// Convolution with uneven groups of an NCHW `input` with the flat `weight` (each group's
/// block in group order) and optional `bias` `[C_out]`. Returns the NCHW output.
pub fn conv2d_uneven(
    geometry: &UnevenGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, ShapeError> {
    let mut output = vec![0.0; geometry.output_len()];
    geometry.check_buffer_lengths(
        input.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        output.len(),
    )?;
    let spatial = geometry.spatial();
    let [batch, in_channels, height, width] = spatial.input_shape();
    let [_, out_channels, out_height, out_width] = spatial.output_shape();
    let [kernel_h, kernel_w] = spatial.kernel_size();
    let sizes = geometry.sizes();

    for n in 0..batch {
        let (mut first_input, mut first_output) = (0, 0);
        for group in 0..sizes.count() {
            let (group_inputs, group_outputs) = (sizes.input()[group], sizes.output()[group]);
            let block = &weight[geometry.weight_range(group)];
            for m in 0..group_outputs {
                let co = first_output + m;
                for oh in 0..out_height {
                    for ow in 0..out_width {
                        let mut sum = 0.0f64;
                        for c in 0..group_inputs {
                            let ci = first_input + c;
                            for i in 0..kernel_h {
                                for j in 0..kernel_w {
                                    let Some([row, col]) = tap_source(spatial, [oh, ow], [i, j])
                                    else {
                                        continue;
                                    };
                                    let x = input
                                        [((n * in_channels + ci) * height + row) * width + col];
                                    let w = block
                                        [((m * group_inputs + c) * kernel_h + i) * kernel_w + j];
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
            first_input += group_inputs;
            first_output += group_outputs;
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d;
    use gconv_shape::{Conv2dParams, GroupSizes, Padding};

    /// Groups of 2 and 1 input channels, 1 and 2 outputs, 1x1 kernel, by hand.
    #[test]
    fn a_one_by_one_layer_by_hand() {
        let sizes = GroupSizes::new([2, 1], [1, 2]);
        let geometry =
            UnevenGeometry::new(Conv2dParams::new(3, 3, 1), sizes, [1, 3, 1, 2]).unwrap();
        // Channels: x0 = [1, 2], x1 = [3, 4], x2 = [5, 6].
        let input = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // Group 0: y0 = 10·x0 + 100·x1. Group 1: y1 = 2·x2, y2 = −1·x2.
        let weight = [10.0, 100.0, 2.0, -1.0];
        let bias = [0.5, 0.0, 1.0];
        let output = conv2d_uneven(&geometry, &input, &weight, Some(&bias)).unwrap();
        assert_eq!(output, [310.5, 420.5, 10.0, 12.0, -4.0, -5.0]);
    }

    /// Equal sizes are the ordinary grouped convolution, to the bit.
    #[test]
    fn equal_sizes_are_the_grouped_convolution() {
        let params = Conv2dParams::new(6, 4, 3)
            .groups(2)
            .stride(2)
            .padding(Padding::uniform(1));
        let grouped = params.geometry([2, 6, 5, 7]).unwrap();
        let uneven =
            UnevenGeometry::new(params, GroupSizes::even(6, 4, 2).unwrap(), [2, 6, 5, 7]).unwrap();
        let input: Vec<f32> = (0..grouped.input_len())
            .map(|i| (i % 13) as f32 * 0.37 - 2.0)
            .collect();
        let weight: Vec<f32> = (0..grouped.weight_count())
            .map(|i| (i % 5) as f32 * 0.61 - 1.0)
            .collect();
        let bias = [0.25, -0.5, 1.5, 3.0];
        assert_eq!(
            conv2d_uneven(&uneven, &input, &weight, Some(&bias)).unwrap(),
            conv2d(&grouped, &input, &weight, Some(&bias)).unwrap()
        );
    }

    /// Each group of uneven sizes is the dense convolution of its channels with its block.
    #[test]
    fn each_group_is_a_dense_convolution_of_its_channels() {
        let params = Conv2dParams::new(5, 4, [2, 3])
            .dilation([2, 1])
            .padding(Padding::per_side(1, 0, 2, 1))
            .bias(false);
        let sizes = GroupSizes::new([1, 4], [3, 1]);
        let uneven = UnevenGeometry::new(params, sizes.clone(), [1, 5, 6, 4]).unwrap();
        let input: Vec<f32> = (0..uneven.input_len())
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let weight: Vec<f32> = (0..uneven.weight_count())
            .map(|i| (i % 9) as f32 - 4.0)
            .collect();
        let output = conv2d_uneven(&uneven, &input, &weight, None).unwrap();
        let plane = 6 * 4;
        let out_plane = uneven.output_shape()[2] * uneven.output_shape()[3];
        let (mut first_input, mut first_output) = (0, 0);
        for group in 0..2 {
            let (inputs, outputs) = (sizes.input()[group], sizes.output()[group]);
            let dense = Conv2dParams {
                in_channels: inputs,
                out_channels: outputs,
                ..params
            }
            .geometry([1, inputs, 6, 4])
            .unwrap();
            let expected = conv2d(
                &dense,
                &input[first_input * plane..][..inputs * plane],
                &weight[uneven.weight_range(group)],
                None,
            )
            .unwrap();
            assert_eq!(
                &output[first_output * out_plane..][..outputs * out_plane],
                expected.as_slice()
            );
            first_input += inputs;
            first_output += outputs;
        }
    }
}
