//! Grouped convolution as its historical description: `g` independent dense convolutions on
//! slices of the channels, outputs concatenated.
//!
//! Written independently of [`crate::direct`]: the input of each group is copied out and padded
//! explicitly (zeros, or for another padding mode the border cells copied one by one as
//! `F.pad` fills them), so the dense convolution has no bounds tests at all; the grouping lives
//! only in how the slices are cut and joined again.

use gconv_shape::{Conv2dParams, Geometry, Padding, PaddingMode, ShapeError};

/// Grouped convolution by splitting the input channels into `g` slices, convolving each with
/// its `C_out/g` filters by [`dense_conv2d`], and concatenating the outputs along the channels.
pub fn conv2d_split_concat(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, ShapeError> {
    geometry.check_buffer_lengths(
        input.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        geometry.output_len(),
    )?;
    let [batch, _, height, width] = geometry.input_shape();
    let [out_height, out_width] = geometry.output_size();
    let in_per_group = geometry.in_channels_per_group();
    let out_per_group = geometry.out_channels_per_group();
    let group_params = Conv2dParams::new(in_per_group, out_per_group, geometry.kernel_size())
        .stride(geometry.stride())
        .dilation(geometry.dilation())
        .padding(Padding::Explicit(geometry.padding()))
        .padding_mode(geometry.padding_mode())
        .bias(geometry.has_bias());
    let group_geometry = group_params.geometry([batch, in_per_group, height, width])?;
    let image = height * width;
    let out_image = out_height * out_width;
    let filter = geometry.reduction_len();

    let branch_outputs = (0..geometry.groups())
        .map(|group| {
            let channels = geometry.group_input_channels(group);
            let filters = geometry.group_output_channels(group);
            let group_input: Vec<f32> = (0..batch)
                .flat_map(|n| {
                    let sample = n * geometry.in_channels() * image;
                    &input[sample + channels.start * image..sample + channels.end * image]
                })
                .copied()
                .collect();
            let group_weight = &weight[filters.start * filter..filters.end * filter];
            let group_bias = bias.map(|bias| &bias[filters]);
            dense_conv2d(&group_geometry, &group_input, group_weight, group_bias)
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Concatenate along the channel dimension: for each sample, the groups' blocks in order.
    let mut output = Vec::with_capacity(geometry.output_len());
    for n in 0..batch {
        for branch in &branch_outputs {
            let block = out_per_group * out_image;
            output.extend_from_slice(&branch[n * block..(n + 1) * block]);
        }
    }
    Ok(output)
}

/// Ordinary (one group) convolution on an explicitly padded copy of the input.
///
/// Refuses a geometry with more than one group: a grouped convolution is
/// [`conv2d_split_concat`], or this function with [`block_diagonal_weight`].
pub fn dense_conv2d(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Result<Vec<f32>, ShapeError> {
    if geometry.groups() != 1 {
        return Err(ShapeError::WeightShape {
            expected: [
                geometry.out_channels(),
                geometry.in_channels(),
                geometry.kernel_size()[0],
                geometry.kernel_size()[1],
            ],
            actual: geometry.weight_shape().to_vec(),
        });
    }
    geometry.check_buffer_lengths(
        input.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        geometry.output_len(),
    )?;
    let [batch, channels, height, width] = geometry.input_shape();
    let [_, filters, out_height, out_width] = geometry.output_shape();
    let [kernel_h, kernel_w] = geometry.kernel_size();
    let [stride_h, stride_w] = geometry.stride();
    let [dilation_h, dilation_w] = geometry.dilation();
    let pad = geometry.padding();
    let padded_h = pad.top + height + pad.bottom;
    let padded_w = pad.left + width + pad.right;

    let mode = geometry.padding_mode();
    let mut padded = vec![0.0f32; batch * channels * padded_h * padded_w];
    for plane in 0..batch * channels {
        let padded_plane = &mut padded[plane * padded_h * padded_w..][..padded_h * padded_w];
        for row in 0..height {
            let from = (plane * height + row) * width;
            let to = (pad.top + row) * padded_w + pad.left;
            padded_plane[to..to + width].copy_from_slice(&input[from..from + width]);
            // Each input row's left and right padding, as F.pad fills the last axis first.
            let line = &mut padded_plane[(pad.top + row) * padded_w..][..padded_w];
            fill_padding(mode, [pad.left, width, pad.right], |from, to| {
                line[to] = line[from]
            });
        }
        // Then whole padded rows above and below, copied from the padded rows.
        fill_padding(mode, [pad.top, height, pad.bottom], |from, to| {
            padded_plane.copy_within(from * padded_w..(from + 1) * padded_w, to * padded_w)
        });
    }

    let mut output = Vec::with_capacity(geometry.output_len());
    for n in 0..batch {
        for f in 0..filters {
            for oh in 0..out_height {
                for ow in 0..out_width {
                    let mut sum = 0.0f64;
                    for c in 0..channels {
                        let plane = (n * channels + c) * padded_h;
                        for i in 0..kernel_h {
                            let row =
                                &padded[(plane + oh * stride_h + i * dilation_h) * padded_w..];
                            let taps = &weight[((f * channels + c) * kernel_h + i) * kernel_w..];
                            for j in 0..kernel_w {
                                let x = row[ow * stride_w + j * dilation_w];
                                sum += f64::from(x) * f64::from(taps[j]);
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        sum += f64::from(bias[f]);
                    }
                    output.push(sum as f32);
                }
            }
        }
    }
    Ok(output)
}

/// Fills the padding of a line of `before + len + after` cells (elements, or whole rows) whose
/// cells `before..before + len` hold the input, by `copy(from, to)` calls in an order where
/// every `from` is already filled, as `mode` says: mirrored about the edge cell (`reflect`),
/// the edge cell repeated (`replicate`) or the line wrapped around (`circular`); zeros (already
/// there) copy nothing.
fn fill_padding(
    mode: PaddingMode,
    [before, len, after]: [usize; 3],
    mut copy: impl FnMut(usize, usize),
) {
    let (first, last) = (before, before + len - 1);
    for k in 1..=before {
        match mode {
            PaddingMode::Zeros => return,
            PaddingMode::Reflect => copy(first + k, first - k),
            PaddingMode::Replicate => copy(first, first - k),
            PaddingMode::Circular => copy(last + 1 - k, first - k),
        }
    }
    for k in 1..=after {
        match mode {
            PaddingMode::Zeros => return,
            PaddingMode::Reflect => copy(last - k, last + k),
            PaddingMode::Replicate => copy(last, last + k),
            PaddingMode::Circular => copy(first + k - 1, last + k),
        }
    }
}

/// The dense weight `[C_out, C_in, kH, kW]` equivalent to a grouped weight
/// `[C_out, C_in/g, kH, kW]`: filter `co` of group `grp` keeps its taps on the channels of
/// `grp` and is zero on every other channel.
pub fn block_diagonal_weight(geometry: &Geometry, weight: &[f32]) -> Result<Vec<f32>, ShapeError> {
    if weight.len() != geometry.weight_count() {
        return Err(ShapeError::BufferLength {
            what: "weight",
            shape: geometry.weight_shape().to_vec(),
            expected: geometry.weight_count(),
            actual: weight.len(),
        });
    }
    let taps = geometry.kernel_size()[0] * geometry.kernel_size()[1];
    let in_channels = geometry.in_channels();
    let in_per_group = geometry.in_channels_per_group();
    let mut dense = vec![0.0f32; geometry.out_channels() * in_channels * taps];
    for co in 0..geometry.out_channels() {
        let group = co / geometry.out_channels_per_group();
        for c in 0..in_per_group {
            let from = (co * in_per_group + c) * taps;
            let to = (co * in_channels + group * in_per_group + c) * taps;
            dense[to..to + taps].copy_from_slice(&weight[from..from + taps]);
        }
    }
    Ok(dense)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_branches_are_concatenated_in_group_order() {
        // AlexNet-style: 2 groups of 1 channel, 1 filter each, 1x1, with bias.
        let geometry = Conv2dParams::new(2, 2, 1)
            .groups(2)
            .geometry([2, 2, 1, 1])
            .unwrap();
        // Samples: (1, 2) and (3, 4).
        let output = conv2d_split_concat(
            &geometry,
            &[1.0, 2.0, 3.0, 4.0],
            &[10.0, 100.0],
            Some(&[0.5, -0.5]),
        )
        .unwrap();
        assert_eq!(output, [10.5, 199.5, 30.5, 399.5]);
    }

    #[test]
    fn block_diagonal_weight_places_each_filter_on_its_groups_channels() {
        let geometry = Conv2dParams::new(4, 2, 1)
            .groups(2)
            .geometry([1, 4, 1, 1])
            .unwrap();
        let dense = block_diagonal_weight(&geometry, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(dense, [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0]);
    }

    #[test]
    fn dense_refuses_a_grouped_geometry() {
        let geometry = Conv2dParams::new(2, 2, 1)
            .groups(2)
            .geometry([1, 2, 1, 1])
            .unwrap();
        assert!(dense_conv2d(&geometry, &[0.0; 2], &[0.0; 2], Some(&[0.0; 2])).is_err());
    }
}
