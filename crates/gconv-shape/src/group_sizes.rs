//! Uneven groups: a grouped convolution whose groups need not have equal channel counts.
//!
//! PyTorch's `groups = g` cuts both channel axes into `g` equal parts. [`GroupSizes`] lists
//! the parts instead: group `k` convolves input channels `input[..k].sum() ..` (`input[k]` of
//! them) with its `output[k]` filters, and writes output channels `output[..k].sum() ..`.
//! Equal lists are ordinary grouped convolution.
//!
//! The weight is one flat buffer: the concatenation, in group order, of each group's
//! `[output[k], input[k], kH, kW]` block (so a run of equal groups is laid out exactly as the
//! grouped weight of that run). The bias, if any, is `[C_out]` as usual.
//!
//! ```
//! use gconv_shape::{Conv2dParams, GroupSizes, UnevenGeometry};
//!
//! // Five input channels in groups of 3 and 2, eight outputs in two groups of 4.
//! let sizes = GroupSizes::new([3, 2], [4, 4]);
//! let geometry = UnevenGeometry::new(Conv2dParams::new(5, 8, 3), sizes, [1, 5, 6, 6])?;
//! assert_eq!(geometry.weight_count(), 4 * 3 * 9 + 4 * 2 * 9);
//! assert_eq!(geometry.weight_range(1), 108..180);
//! assert_eq!(geometry.output_shape(), [1, 8, 4, 4]);
//!
//! // Sizes must add up to the channel counts; the error names the values.
//! let wrong = UnevenGeometry::new(Conv2dParams::new(6, 8, 3), GroupSizes::new([3, 2], [4, 4]), [1, 6, 6, 6]);
//! assert_eq!(
//!     wrong.unwrap_err().to_string(),
//!     "input group sizes [3, 2] add up to 5, but in_channels is 6"
//! );
//! # Ok::<(), gconv_shape::ShapeError>(())
//! ```

use std::ops::Range;

use crate::{Conv2dParams, Geometry, ShapeError};

/// The channel count of each group, for the input and the output channels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupSizes {
    input: Vec<usize>,
    output: Vec<usize>,
}

/// A maximal run of consecutive groups with the same sizes: together they are one ordinary
/// grouped convolution of `groups` groups, which is how they are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupRun {
    /// The run's first group.
    pub first_group: usize,
    /// Groups in the run.
    pub groups: usize,
    /// Input channels of each of its groups.
    pub in_per_group: usize,
    /// Output channels of each of its groups.
    pub out_per_group: usize,
    /// The run's first input channel.
    pub first_input_channel: usize,
    /// The run's first output channel.
    pub first_output_channel: usize,
}

impl GroupRun {
    /// The run's input channels.
    pub fn input_channels(&self) -> Range<usize> {
        self.first_input_channel..self.first_input_channel + self.groups * self.in_per_group
    }

    /// The run's output channels.
    pub fn output_channels(&self) -> Range<usize> {
        self.first_output_channel..self.first_output_channel + self.groups * self.out_per_group
    }

    /// The run's groups.
    pub fn group_range(&self) -> Range<usize> {
        self.first_group..self.first_group + self.groups
    }
}

impl GroupSizes {
    /// The sizes of each group's input and output channels, in channel order; nothing is
    /// checked until [`GroupSizes::validate`].
    pub fn new(input: impl Into<Vec<usize>>, output: impl Into<Vec<usize>>) -> GroupSizes {
        GroupSizes {
            input: input.into(),
            output: output.into(),
        }
    }

    /// `groups` equal groups, as PyTorch's `groups` makes them (`groups` must divide both
    /// channel counts).
    pub fn even(
        in_channels: usize,
        out_channels: usize,
        groups: usize,
    ) -> Result<GroupSizes, ShapeError> {
        Conv2dParams::new(in_channels, out_channels, 1)
            .groups(groups)
            .validate()?;
        Ok(GroupSizes::new(
            vec![in_channels / groups; groups],
            vec![out_channels / groups; groups],
        ))
    }

    /// Input channels of each group.
    pub fn input(&self) -> &[usize] {
        &self.input
    }

    /// Output channels of each group.
    pub fn output(&self) -> &[usize] {
        &self.output
    }

    /// The number of groups.
    pub fn count(&self) -> usize {
        self.input.len()
    }

    /// Checks the lists against the channel counts, one rule at a time: at least one group,
    /// as many input sizes as output sizes, no group without channels, and each list adding
    /// up to its channel count.
    pub fn validate(&self, in_channels: usize, out_channels: usize) -> Result<(), ShapeError> {
        if self.input.is_empty() && self.output.is_empty() {
            return Err(ShapeError::Zero {
                what: "the number of group sizes",
            });
        }
        if self.input.len() != self.output.len() {
            return Err(ShapeError::GroupCounts {
                input: self.input.len(),
                output: self.output.len(),
            });
        }
        for (side, sizes, channels, what) in [
            ("input", &self.input, in_channels, "in_channels"),
            ("output", &self.output, out_channels, "out_channels"),
        ] {
            if let Some(group) = sizes.iter().position(|&size| size == 0) {
                return Err(ShapeError::EmptyGroup {
                    side,
                    group,
                    sizes: sizes.clone(),
                });
            }
            let sum = sizes
                .iter()
                .try_fold(0usize, |sum, &size| sum.checked_add(size));
            let sum = sum.ok_or(ShapeError::Overflow {
                what: "the sum of the group sizes",
            })?;
            if sum != channels {
                return Err(ShapeError::GroupSizesSum {
                    side,
                    sizes: sizes.clone(),
                    sum,
                    what,
                    channels,
                });
            }
        }
        Ok(())
    }

    /// Whether every group has the same sizes (ordinary grouped convolution).
    pub fn is_even(&self) -> bool {
        self.runs().len() == 1
    }

    /// The maximal runs of consecutive groups with equal sizes, in group order.
    pub fn runs(&self) -> Vec<GroupRun> {
        let mut runs: Vec<GroupRun> = Vec::new();
        let (mut first_input_channel, mut first_output_channel) = (0, 0);
        for (group, (&in_per_group, &out_per_group)) in
            self.input.iter().zip(&self.output).enumerate()
        {
            match runs.last_mut() {
                Some(run)
                    if run.in_per_group == in_per_group && run.out_per_group == out_per_group =>
                {
                    run.groups += 1;
                }
                _ => runs.push(GroupRun {
                    first_group: group,
                    groups: 1,
                    in_per_group,
                    out_per_group,
                    first_input_channel,
                    first_output_channel,
                }),
            }
            first_input_channel += in_per_group;
            first_output_channel += out_per_group;
        }
        runs
    }
}

impl std::fmt::Display for GroupSizes {
    /// `in [3, 2] out [4, 4]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "in {:?} out {:?}", self.input, self.output)
    }
}

/// The validated shapes of a convolution with uneven groups on one input shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnevenGeometry {
    /// The parameters with one group: the spatial shapes and the channel counts.
    spatial: Geometry,
    sizes: GroupSizes,
    /// Where each group's weight block starts in the flat weight, and past the last, its end.
    weight_starts: Vec<usize>,
}

impl UnevenGeometry {
    /// Validates `params` with `sizes` in place of `params.groups` (which must be 1 or the
    /// number of groups) against `input_shape`, and the weight's size.
    pub fn new(
        params: Conv2dParams,
        sizes: GroupSizes,
        input_shape: [usize; 4],
    ) -> Result<UnevenGeometry, ShapeError> {
        if params.groups != 1 && params.groups != sizes.count() {
            return Err(ShapeError::GroupsWithSizes {
                groups: params.groups,
                count: sizes.count(),
            });
        }
        sizes.validate(params.in_channels, params.out_channels)?;
        let spatial = params.groups(1).geometry(input_shape)?;
        let [kernel_h, kernel_w] = params.kernel_size;
        let overflow = ShapeError::Overflow {
            what: "the weight's size",
        };
        let mut weight_starts = vec![0];
        let mut end = 0usize;
        for (&input, &output) in sizes.input.iter().zip(&sizes.output) {
            let block = [input, kernel_h, kernel_w]
                .into_iter()
                .try_fold(output, usize::checked_mul)
                .ok_or(overflow.clone())?;
            end = end.checked_add(block).ok_or(overflow.clone())?;
            weight_starts.push(end);
        }
        Ok(UnevenGeometry {
            spatial,
            sizes,
            weight_starts,
        })
    }

    /// The shapes with one group: input and output shapes, sizes, stride, padding, dilation.
    pub fn spatial(&self) -> &Geometry {
        &self.spatial
    }

    /// The group sizes.
    pub fn sizes(&self) -> &GroupSizes {
        &self.sizes
    }

    /// `[N, C_in, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        self.spatial.input_shape()
    }

    /// `[N, C_out, H_out, W_out]`.
    pub fn output_shape(&self) -> [usize; 4] {
        self.spatial.output_shape()
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.spatial.input_len()
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.spatial.output_len()
    }

    /// Elements of the flat weight: `Σ_k output[k]·input[k]·kH·kW`.
    pub fn weight_count(&self) -> usize {
        self.weight_starts[self.sizes.count()]
    }

    /// Where group `group`'s `[output[k], input[k], kH, kW]` block lies in the flat weight.
    pub fn weight_range(&self, group: usize) -> Range<usize> {
        self.weight_starts[group]..self.weight_starts[group + 1]
    }

    /// Where a run's blocks lie in the flat weight: together, the grouped weight of the run.
    pub fn run_weight_range(&self, run: &GroupRun) -> Range<usize> {
        self.weight_starts[run.first_group]..self.weight_starts[run.first_group + run.groups]
    }

    /// The ordinary grouped convolution that computes `run`'s channels of each sample, on
    /// inputs of `batch` samples: `run.groups` groups of its sizes.
    pub fn run_geometry(&self, run: &GroupRun, batch: usize) -> Result<Geometry, ShapeError> {
        let params = self.spatial.params();
        let [_, _, height, width] = self.input_shape();
        Conv2dParams {
            in_channels: run.groups * run.in_per_group,
            out_channels: run.groups * run.out_per_group,
            groups: run.groups,
            ..*params
        }
        .geometry([batch, run.groups * run.in_per_group, height, width])
    }

    /// Multiply-adds times two: `2·N·H_out·W_out·kH·kW·Σ_k output[k]·input[k]`.
    pub fn flops(&self) -> u64 {
        let [batch, _, out_h, out_w] = self.output_shape();
        let per_position = self.weight_count() as u128;
        let flops = 2 * batch as u128 * out_h as u128 * out_w as u128 * per_position;
        u64::try_from(flops).unwrap_or(u64::MAX)
    }

    /// Checks the lengths of flat buffers against the shapes (the weight is 1-D, of
    /// [`UnevenGeometry::weight_count`] elements).
    pub fn check_buffer_lengths(
        &self,
        input: usize,
        weight: usize,
        bias: Option<usize>,
        output: usize,
    ) -> Result<(), ShapeError> {
        let weight_count = self.weight_count();
        if weight != weight_count {
            return Err(ShapeError::BufferLength {
                what: "weight",
                shape: vec![weight_count],
                expected: weight_count,
                actual: weight,
            });
        }
        // The spatial geometry checks input, bias and output; its weight is not this one.
        self.spatial
            .check_buffer_lengths(input, self.spatial.weight_count(), bias, output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Conv2dParams {
        Conv2dParams::new(7, 9, 3)
    }

    #[test]
    fn runs_merge_consecutive_equal_groups_only() {
        let sizes = GroupSizes::new([2, 2, 3, 2, 2], [3, 3, 3, 3, 3]);
        let runs = sizes.runs();
        let summary: Vec<_> = runs
            .iter()
            .map(|run| {
                (
                    run.group_range(),
                    run.input_channels(),
                    run.output_channels(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [(0..2, 0..4, 0..6), (2..3, 4..7, 6..9), (3..5, 7..11, 9..15)]
        );
        assert!(!sizes.is_even());
        assert!(GroupSizes::even(8, 12, 4).unwrap().is_even());
        assert_eq!(GroupSizes::even(8, 12, 4).unwrap().runs().len(), 1);
    }

    #[test]
    fn weight_blocks_follow_each_other_in_group_order() {
        let sizes = GroupSizes::new([3, 1, 3], [4, 2, 3]);
        let geometry = UnevenGeometry::new(params(), sizes, [2, 7, 5, 5]).unwrap();
        // Blocks of 4·3·9 = 108, 2·1·9 = 18, 3·3·9 = 81.
        assert_eq!(geometry.weight_range(0), 0..108);
        assert_eq!(geometry.weight_range(1), 108..126);
        assert_eq!(geometry.weight_range(2), 126..207);
        assert_eq!(geometry.weight_count(), 207);
        // 2 · N (2) · H_out·W_out (3x3) · the multiply-adds of one position over all channels.
        assert_eq!(geometry.flops(), 2 * 2 * 3 * 3 * 207);
        let run = geometry.sizes().runs()[1];
        let grouped = geometry.run_geometry(&run, 1).unwrap();
        assert_eq!(
            grouped.weight_count(),
            geometry.run_weight_range(&run).len()
        );
        assert_eq!(grouped.input_shape(), [1, 1, 5, 5]);
        assert_eq!(grouped.output_shape(), [1, 2, 3, 3]);
    }

    /// Each rule of the lists, with its message naming the values.
    #[test]
    fn each_broken_rule_is_its_own_error() {
        let check = |sizes: GroupSizes, groups: usize, expected: &str| {
            let error =
                UnevenGeometry::new(params().groups(groups), sizes, [1, 7, 5, 5]).unwrap_err();
            assert_eq!(error.to_string(), expected);
        };
        check(
            GroupSizes::new([], []),
            1,
            "the number of group sizes must be at least 1, got 0",
        );
        check(
            GroupSizes::new([3, 4], [9]),
            1,
            "the input group sizes list 2 groups but the output group sizes list 1: \
             each group needs both",
        );
        check(
            GroupSizes::new([7, 0], [4, 5]),
            1,
            "input group 1 of [7, 0] has no channels: every group needs at least one",
        );
        check(
            GroupSizes::new([3, 4], [9, 0]),
            1,
            "output group 1 of [9, 0] has no channels: every group needs at least one",
        );
        check(
            GroupSizes::new([3, 3], [4, 5]),
            1,
            "input group sizes [3, 3] add up to 6, but in_channels is 7",
        );
        check(
            GroupSizes::new([3, 4], [4, 4]),
            1,
            "output group sizes [4, 4] add up to 8, but out_channels is 9",
        );
        check(
            GroupSizes::new([3, 4], [4, 5]),
            3,
            "groups (3) must be 1 or the number of group sizes (2) when group sizes are given",
        );
        check(
            GroupSizes::new([usize::MAX, 2], [4, 5]),
            1,
            "size arithmetic overflowed while computing the sum of the group sizes",
        );
        // The count of groups may also be given as `groups`.
        UnevenGeometry::new(
            params().groups(2),
            GroupSizes::new([3, 4], [4, 5]),
            [1, 7, 5, 5],
        )
        .unwrap();
    }

    #[test]
    fn buffer_lengths_use_the_flat_weight() {
        let sizes = GroupSizes::new([3, 4], [4, 5]);
        let geometry = UnevenGeometry::new(params(), sizes, [1, 7, 5, 5]).unwrap();
        let weight = 4 * 3 * 9 + 5 * 4 * 9;
        geometry
            .check_buffer_lengths(7 * 25, weight, Some(9), 9 * 9)
            .unwrap();
        let error = geometry
            .check_buffer_lengths(7 * 25, 9 * 7 * 9, Some(9), 9 * 9)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("weight buffer holds 567 elements, but its shape [{weight}] needs {weight}")
        );
        assert!(
            geometry
                .check_buffer_lengths(7 * 25, weight, Some(8), 81)
                .is_err()
        );
        assert!(
            geometry
                .check_buffer_lengths(7 * 24, weight, Some(9), 81)
                .is_err()
        );
    }
}
