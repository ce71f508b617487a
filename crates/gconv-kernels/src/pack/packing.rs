//! Filling a [`Layout`] from a group's input: the rows a band of output rows reads, in their
//! places, with the zero padding around them.

use std::ops::Range;

use super::copy::{Columns, Rows, Stack, copy, gather_rows, shifted_copy, zero};
use super::layout::{Layout, Packing, signed};
use crate::simd::Simd;

impl Layout {
    /// Copies the rows of a group's input channels (`channels`: each `height × width`,
    /// row-major, one after the other) that the band of output rows starting at `first_row`
    /// reads into their place in `packed` (`channel_len` elements per channel), with the zero
    /// padding around them.
    ///
    /// Plane by plane (copy by copy, tap by tap), all channels at once: which of a plane's
    /// rows and columns fall on the input is worked out once, not per channel. (Per channel,
    /// that bookkeeping cost ResNeXt's 14x14 stride-2 layer a fifth of its time: each of its
    /// four 8x8 planes per channel holds little to copy.)
    #[inline(always)]
    pub fn pack_channels<S: Simd>(
        &self,
        simd: S,
        channels: &[S::Elem],
        packed: &mut [S::Elem],
        first_row: usize,
    ) {
        let image = self.height * self.width;
        let count = channels.len() / image.max(1);
        debug_assert_eq!(channels.len(), count * image);
        assert!(packed.len() >= count * self.channel_len);
        let stack = Stack {
            count,
            source_pitch: image,
            target_pitch: self.channel_len,
        };
        let mut job = Job {
            simd,
            channels,
            packed,
            stack,
        };
        match self.packing {
            Packing::PhaseSplit => self.pack_phase_split(&mut job, first_row),
            Packing::KernelColumns => self.pack_kernel_columns(&mut job, first_row),
            Packing::Im2col => {
                // Channel by channel: each fills its taps' rows one after the other, reading
                // its rows from L1 (all channels per tap scattered the writes: 7 % slower on
                // an 11-channel dilated group).
                let stack = Stack { count: 1, ..stack };
                for (channels, packed) in job.stack.pairs(channels, job.packed) {
                    let mut single = Job {
                        simd,
                        channels,
                        packed,
                        stack,
                    };
                    self.pack_im2col(&mut single, first_row);
                }
            }
            Packing::InPlace => unreachable!("in-place layouts are not packed"),
        }
    }

    /// Phase split: plane `(a, b)` holds padded rows `a, a + sH, …` of the band, columns
    /// `b, b + sW, …` (after `lead` zeros).
    #[inline(always)]
    fn pack_phase_split<S: Simd>(&self, job: &mut Job<'_, S>, first_row: usize) {
        let (simd, channels, stack) = (job.simd, job.channels, job.stack);
        let first_padded_row = first_row * self.stride_h;
        if self.stride_h == 1
            && self.stride_w == 1
            && self.lead == 0
            && self.row_stride == self.width
        {
            // No column padding and one phase: the packed rows are the input's, back to back.
            // One copy for all of them (a copy per row cost a third of a 7x7 1x1 layer).
            let inside = self.input_rows(first_padded_row, 1, self.plane_rows);
            let first_input_row = (first_padded_row + inside.start).saturating_sub(self.pad_top);
            for (channel, target) in stack.pairs(channels, job.packed) {
                let rows = self.zero_outside(simd, target, self.width, &inside);
                if !rows.is_empty() {
                    copy(
                        simd,
                        &channel[first_input_row * self.width..][..rows.len()],
                        rows,
                    );
                }
            }
            return;
        }
        let plane_len = self.plane_rows * self.row_stride;
        for plane_index in 0..self.stride_h * self.stride_w {
            let (row_phase, col_phase) = (plane_index / self.stride_w, plane_index % self.stride_w);
            let columns =
                self.columns(signed(col_phase).saturating_sub(signed(self.lead + self.pad_left)));
            let plane = Plane {
                offset: plane_index * plane_len,
                len: plane_len,
                row_len: self.row_stride,
                top: first_padded_row + row_phase,
                step: self.stride_h,
            };
            self.pack_planes(job, plane, columns);
        }
    }

    /// Per kernel column: for each `j` and row phase, the band's padded rows of that phase,
    /// each holding input column `ow·sW + j·dW − pad_left` for every output column `ow`.
    #[inline(always)]
    fn pack_kernel_columns<S: Simd>(&self, job: &mut Job<'_, S>, first_row: usize) {
        let (simd, channels, stack) = (job.simd, job.channels, job.stack);
        let (stride_h, row_len) = (self.stride_h, self.row_stride);
        let phase_len = self.plane_rows * row_len;
        let masks_per_copy = self.column_masks.len() / self.kernel[1];
        for copy_index in 0..self.kernel[1] * stride_h {
            let (j, row_phase) = (copy_index / stride_h, copy_index % stride_h);
            let top = first_row * stride_h + row_phase;
            let shift = signed(j * self.dilation[1]).saturating_sub(signed(self.pad_left));
            let offset = copy_index * phase_len;
            if self.column_masks.is_empty() {
                let plane = Plane {
                    offset,
                    len: phase_len,
                    row_len,
                    top,
                    step: stride_h,
                };
                self.pack_planes(job, plane, self.columns(shift));
                continue;
            }
            // One phase, rows as long as the input's: the band's input rows are one flat run,
            // copied shifted with the columns that wrap around a row's end masked off.
            let inside = self.input_rows(top, 1, self.plane_rows);
            let first_input_row = (top + inside.start).saturating_sub(self.pad_top);
            let masks = &self.column_masks[j * masks_per_copy..][..masks_per_copy];
            for (channel, target) in stack.pairs(channels, job.packed) {
                let phase = &mut target[offset..][..phase_len];
                let rows = self.zero_outside(simd, phase, row_len, &inside);
                if !rows.is_empty() {
                    let source = &channel[first_input_row * self.width..][..rows.len()];
                    shifted_copy(simd, source, shift, masks, rows);
                }
            }
        }
    }

    /// Im2col: for each tap `(i, j)`, its input at every output position, row after row.
    #[inline(always)]
    fn pack_im2col<S: Simd>(&self, job: &mut Job<'_, S>, first_row: usize) {
        let (simd, stack) = (job.simd, job.stack);
        let [kernel_h, kernel_w] = self.kernel;
        let [dilation_h, dilation_w] = self.dilation;
        let tap_len = self.vectors * self.lanes;
        let rows_len = self.band_rows * self.out_cols;
        for tap in 0..kernel_h * kernel_w {
            let (i, j) = (tap / kernel_w, tap % kernel_w);
            let offset = tap * tap_len;
            // The last vector's lanes past the band: read, computed and discarded.
            for target in stack.targets(job.packed) {
                zero(simd, &mut target[offset + rows_len..offset + tap_len]);
            }
            let columns =
                self.columns(signed(j * dilation_w).saturating_sub(signed(self.pad_left)));
            let plane = Plane {
                offset,
                len: rows_len,
                row_len: self.out_cols,
                top: first_row * self.stride_h + i * dilation_h,
                step: self.stride_h,
            };
            self.pack_planes(job, plane, columns);
        }
    }

    /// Fills `plane` of every channel of the stack: its rows, of `row_len`, whose row `r` is
    /// padded row `top + r·step`, gather the input rows by `columns`; the padding rows are
    /// zero.
    #[inline(always)]
    fn pack_planes<S: Simd>(&self, job: &mut Job<'_, S>, plane: Plane, columns: Columns) {
        let (simd, channels, stack) = (job.simd, job.channels, job.stack);
        let inside = self.input_rows(plane.top, plane.step, plane.len / plane.row_len);
        for target in stack.targets(job.packed) {
            let rows = &mut target[plane.offset..][..plane.len];
            self.zero_outside(simd, rows, plane.row_len, &inside);
        }
        if inside.is_empty() {
            return;
        }
        let first_input_row = plane.top + inside.start * plane.step - self.pad_top;
        gather_rows(
            simd,
            &channels[first_input_row * self.width..],
            columns,
            stack,
            &mut job.packed[plane.offset + inside.start * plane.row_len..],
            Rows {
                count: inside.len(),
                len: plane.row_len,
            },
        );
    }

    /// The input columns a packed row gathers from one row of each row phase: input column
    /// `start + k·sW` for its column `k`, source rows `sH` input rows apart.
    #[inline(always)]
    fn columns(&self, start: isize) -> Columns {
        Columns {
            start,
            step: self.stride_w,
            width: self.width,
            pitch: self.stride_h * self.width,
        }
    }

    /// The rows `r < rows` whose padded row `top + r·step` is an input row.
    #[inline(always)]
    fn input_rows(&self, top: usize, step: usize, rows: usize) -> Range<usize> {
        let start = self.pad_top.saturating_sub(top).div_ceil(step).min(rows);
        let end = (self.height + self.pad_top)
            .saturating_sub(top)
            .div_ceil(step)
            .clamp(start, rows);
        start..end
    }

    /// Zeroes the rows of `plane` (rows of `row_len`) outside `inside` and returns those inside.
    #[inline(always)]
    fn zero_outside<'p, S: Simd>(
        &self,
        simd: S,
        plane: &'p mut [S::Elem],
        row_len: usize,
        inside: &Range<usize>,
    ) -> &'p mut [S::Elem] {
        let (above, rest) = plane.split_at_mut(inside.start * row_len);
        zero(simd, above);
        let (rows, below) = rest.split_at_mut(inside.len() * row_len);
        zero(simd, below);
        rows
    }
}

/// What a pack reads and fills: a stack of a group's input channels and their places in
/// `packed`.
struct Job<'a, S: Simd> {
    simd: S,
    channels: &'a [S::Elem],
    packed: &'a mut [S::Elem],
    stack: Stack,
}

/// One packed plane of each channel: `len` elements from `offset` within the channel, rows of
/// `row_len`, row `r` holding padded row `top + r·step`.
#[derive(Debug, Clone, Copy)]
struct Plane {
    offset: usize,
    len: usize,
    row_len: usize,
    top: usize,
    step: usize,
}
