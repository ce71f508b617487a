//! Where a group's input lives once packed, and where each flat output position goes.
//!
//! The kernels never test bounds. Before a group is convolved, its `C_in/g` input channels are
//! copied into a zero-padded, *phase-split* scratch layout: the padded channel is cut into
//! `sH · sW` planes, plane `(a, b)` holding the padded rows `a, a + sH, a + 2sH, …` and columns
//! `b, b + sW, …`. In that layout, for stride `s` and dilation `d`, kernel tap `(i, j)` of
//! output `(oh, ow)` reads plane `((i·dH) mod sH, (j·dW) mod sW)` at row `oh + ⌊i·dH/sH⌋`,
//! column `ow + ⌊j·dW/sW⌋`: a fixed shift. With every plane's rows `row_stride` floats apart,
//! the output position `q = oh · row_stride + ow` reads `packed[tap_shift + q]` for every tap,
//! so a vector of consecutive `q` is a contiguous load for every tap, whatever the stride,
//! dilation or padding. Positions with `ow ≥ W_out` are computed and discarded (the few
//! columns the kernel's width adds to each row); stores map `q` back to `(oh, ow)`.
//!
//! Vectors of positions come in one of two orders. *Flat*: vector `v` is `q = v·lanes …`,
//! so a vector may span the end of one row and the start of the next, whose stores then go
//! through a short list of runs. *Rows*: every output row starts a new vector, so each vector
//! is stored whole or, at the row's end, as one masked tail; it computes up to `lanes − 1`
//! dead lanes per row instead of the kernel's extra columns. Rows win where `W_out` is close
//! to a multiple of the lane count and the reduction is short (depthwise), where stores weigh
//! most; either way a vector's first position is `starts[v]`.
//!
//! A 1×1 window with stride 1 and no padding needs none of this: the input already is that
//! layout, channels `H·W` apart, and such groups are read *in place*.
//!
//! When those discarded columns cost more than copying every tap's window, the group is
//! packed as *im2col* instead: one row of `⌈H_out·W_out / lanes⌉` vectors per tap, holding
//! exactly that tap's input for every output position (`row_stride = W_out`, nothing
//! discarded but the last vector's tail). The kernel cannot tell the two apart: it reads
//! `packed[tap_shift + q]` either way.

use gconv_shape::Geometry;

use crate::simd::Simd;

/// How a group's input is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Zero-padded planes dealt into stride phases; every tap is a shift of them.
    PhaseSplit,
    /// One row per tap holding its window for every output position.
    Im2col,
    /// None at all: a 1×1 window with stride 1 and no padding reads the input where it lies
    /// (channels `H·W` apart, rows `W` apart); only a band too close to the end of the input
    /// for its last vectors is copied.
    InPlace,
}

/// The order of vectors over a band's output positions (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorOrder {
    /// Vector `v` covers flat positions `v·lanes .. (v + 1)·lanes`.
    Flat,
    /// Each output row starts a new vector (phase-split packing only).
    Rows,
}

/// The packed layout of one group's input, and the map from flat positions to the output.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub packing: Packing,
    /// Kernel size and dilation, for im2col packing.
    pub kernel: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding above and left, in padded coordinates.
    pub pad_top: usize,
    pub pad_left: usize,
    /// Input rows and columns.
    pub height: usize,
    pub width: usize,
    /// Stride per axis: the number of row and column phases.
    pub stride_h: usize,
    pub stride_w: usize,
    /// Rows of each phase plane.
    pub plane_rows: usize,
    /// Floats between consecutive rows of a phase plane (the flat row pitch `q` uses).
    pub row_stride: usize,
    /// Floats of each packed row before its first padded column: in row order with stride 1
    /// they put the first input column, and every row, on a vector boundary, so that packing
    /// stores whole aligned vectors. Zero otherwise.
    pub lead: usize,
    /// Floats per input channel: `stride_h · stride_w · plane_rows · row_stride` (phase
    /// split), `kH·kW·vectors·lanes` (im2col), the input's own `H·W` (in place).
    pub channel_len: usize,
    /// Floats of the packed buffer, including the slack that the last vectors read.
    pub packed_len: usize,
    /// For each tap in `(c, i, j)` order, the offset of its first input in the packed buffer.
    pub tap_shifts: Vec<usize>,
    /// Output rows and columns of the whole plane.
    pub out_rows: usize,
    pub out_cols: usize,
    /// Output rows computed from one packing: the plane is done in bands of `band_rows` rows
    /// (the last band overlapping the one before), so that a band's packed input stays in L1.
    pub band_rows: usize,
    /// How vectors are laid over the positions.
    pub order: VectorOrder,
    /// Vectors of `lanes` positions that cover every output of a band:
    /// `⌈band_rows·row_stride / lanes⌉` in flat order, `band_rows·⌈W_out / lanes⌉` in rows.
    pub vectors: usize,
    /// Per vector: the flat position `q` of its first lane.
    pub starts: Vec<u32>,
    /// Lanes per vector of the tier this layout was made for.
    pub lanes: usize,
    /// Per vector: the output offset of its first lane when all its lanes land on consecutive
    /// outputs of one row (the common case, stored with one plain store), else [`MIXED`].
    pub whole_targets: Vec<u32>,
    /// Where each vector's lanes go: vector `v` owns
    /// `segments[segment_starts[v]..segment_starts[v + 1]]`.
    pub segment_starts: Vec<u32>,
    /// Runs of lanes that land on consecutive outputs of one row.
    pub segments: Vec<Segment>,
}

/// A vector whose lanes do not all land on consecutive outputs of one row.
pub(crate) const MIXED: u32 = u32::MAX;

/// Lanes `first..end` of a vector go to the output plane at `target .. target + end - first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub first: u8,
    pub end: u8,
    pub target: u32,
}

impl Layout {
    /// The layout for `geometry` with vectors of `lanes` floats in `order` (flat for im2col),
    /// in bands of `band_rows` output rows (clamped to `1..=H_out`). `None` when an output
    /// plane is too large for 32-bit offsets (more than 4·10⁹ elements per channel).
    pub fn new(
        geometry: &Geometry,
        lanes: usize,
        packing: Packing,
        band_rows: usize,
        order: VectorOrder,
    ) -> Option<Layout> {
        let [height, width] = geometry.input_size();
        let [out_rows, out_cols] = geometry.output_size();
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let [stride_h, stride_w] = geometry.stride();
        let [dilation_h, dilation_w] = geometry.dilation();
        let padding = geometry.padding();
        let padded_w = width + padding.left + padding.right;
        let band_rows = band_rows.clamp(1, out_rows);
        // Padded rows a band reads: its first window's top to its last window's bottom.
        let band_padded_rows = (band_rows - 1) * stride_h + (kernel_h - 1) * dilation_h + 1;
        let plane_rows = band_padded_rows.div_ceil(stride_h);
        let in_place = geometry.kernel_size() == [1, 1]
            && geometry.stride() == [1, 1]
            && padding == Default::default();
        if packing == Packing::InPlace && !in_place {
            return None;
        }
        let order = match packing {
            Packing::PhaseSplit => order,
            Packing::Im2col | Packing::InPlace => VectorOrder::Flat,
        };
        // In row order, the row pitch costs no arithmetic: align it (see `lead`).
        let lead = match (packing, order, stride_w) {
            (Packing::PhaseSplit, VectorOrder::Rows, 1) => (lanes - padding.left % lanes) % lanes,
            _ => 0,
        };
        let row_stride = match (packing, lead) {
            (Packing::PhaseSplit, 0) => padded_w.div_ceil(stride_w),
            (Packing::PhaseSplit, _) => (lead + padded_w).next_multiple_of(lanes),
            (Packing::Im2col | Packing::InPlace, _) => out_cols,
        };
        let flat_len = band_rows.checked_mul(row_stride)?;
        let vectors_per_row = out_cols.div_ceil(lanes);
        let vectors = match order {
            VectorOrder::Flat => flat_len.div_ceil(lanes),
            VectorOrder::Rows => band_rows.checked_mul(vectors_per_row)?,
        };
        // (row, column) of each vector's first lane within the band: flat positions are
        // rows of `row_stride`.
        let first_position = |vector: usize| match order {
            VectorOrder::Flat => (vector * lanes / row_stride, vector * lanes % row_stride),
            VectorOrder::Rows => (vector / vectors_per_row, vector % vectors_per_row * lanes),
        };
        let taps_per_channel = kernel_h * kernel_w;
        let channel_len = match packing {
            Packing::PhaseSplit => stride_h
                .checked_mul(stride_w)?
                .checked_mul(plane_rows)?
                .checked_mul(row_stride)?,
            Packing::Im2col => taps_per_channel.checked_mul(vectors)?.checked_mul(lanes)?,
            Packing::InPlace => height.checked_mul(width)?,
        };
        let channels = geometry.in_channels_per_group();

        let mut tap_shifts = Vec::with_capacity(geometry.reduction_len());
        for c in 0..channels {
            for i in 0..kernel_h {
                for j in 0..kernel_w {
                    let within_channel = match packing {
                        Packing::PhaseSplit => {
                            let (row_phase, row) =
                                ((i * dilation_h) % stride_h, (i * dilation_h) / stride_h);
                            let (col_phase, col) =
                                ((j * dilation_w) % stride_w, (j * dilation_w) / stride_w);
                            let plane = row_phase * stride_w + col_phase;
                            plane * plane_rows * row_stride + row * row_stride + lead + col
                        }
                        Packing::Im2col => (i * kernel_w + j) * vectors * lanes,
                        Packing::InPlace => 0,
                    };
                    tap_shifts.push(c.checked_mul(channel_len)?.checked_add(within_channel)?);
                }
            }
        }

        let out_plane = out_rows.checked_mul(out_cols)?;
        if u32::try_from(out_plane).is_err() || u32::try_from(flat_len).is_err() {
            return None;
        }
        let starts: Vec<u32> = (0..vectors)
            .map(|vector| {
                let (row, col) = first_position(vector);
                (row * row_stride + col) as u32
            })
            .collect();
        let max_shift = tap_shifts.iter().copied().max().unwrap_or(0);
        let max_start = starts
            .iter()
            .map(|&start| start as usize)
            .max()
            .unwrap_or(0);
        // Every vector's load of every tap stays inside: `shift + start + lanes`. (In place,
        // that is all a band reads of the input.)
        let reach = max_shift.checked_add(max_start)?.checked_add(lanes)?;
        let packed_len = match packing {
            Packing::InPlace => reach,
            _ => channels.checked_mul(channel_len)?.max(reach),
        };

        let mut segment_starts = Vec::with_capacity(vectors + 1);
        let mut segments: Vec<Segment> = Vec::new();
        for vector in 0..vectors {
            segment_starts.push(u32::try_from(segments.len()).ok()?);
            let mut open: Option<Segment> = None;
            let (first_row, first_col) = first_position(vector);
            for lane in 0..lanes {
                let q = first_row * row_stride + first_col + lane;
                let (oh, ow) = match order {
                    VectorOrder::Flat => (q / row_stride, q % row_stride),
                    // A row's last vector ends with dead lanes, not the next row's positions.
                    VectorOrder::Rows => (first_row, first_col + lane),
                };
                let target = (oh < band_rows && ow < out_cols).then(|| (oh * out_cols + ow) as u32);
                match (open.as_mut(), target) {
                    (Some(run), Some(target))
                        if run.target + u32::from(run.end - run.first) == target =>
                    {
                        run.end += 1;
                    }
                    (_, target) => {
                        segments.extend(open.take());
                        open = target.map(|target| Segment {
                            first: lane as u8,
                            end: lane as u8 + 1,
                            target,
                        });
                    }
                }
            }
            segments.extend(open);
        }
        segment_starts.push(u32::try_from(segments.len()).ok()?);
        let whole_targets = (0..vectors)
            .map(|vector| {
                match segments[segment_starts[vector] as usize..segment_starts[vector + 1] as usize]
                {
                    [only] if usize::from(only.end - only.first) == lanes => only.target,
                    _ => MIXED,
                }
            })
            .collect();

        Some(Layout {
            packing,
            kernel: [kernel_h, kernel_w],
            dilation: [dilation_h, dilation_w],
            pad_top: padding.top,
            pad_left: padding.left,
            height,
            width,
            stride_h,
            stride_w,
            plane_rows,
            row_stride,
            lead,
            channel_len,
            packed_len,
            tap_shifts,
            out_rows,
            out_cols,
            band_rows,
            order,
            vectors,
            starts,
            lanes,
            whole_targets,
            segment_starts,
            segments,
        })
    }

    /// The output runs of vector `index`.
    #[inline(always)]
    pub fn segments_of(&self, index: usize) -> &[Segment] {
        let (start, end) = (self.segment_starts[index], self.segment_starts[index + 1]);
        &self.segments[start as usize..end as usize]
    }

    /// The first output row of each band: `0, R, 2R, …`, the last one moved back to end at
    /// `H_out` (recomputing a few rows of the band before, identically).
    pub fn band_starts(&self) -> impl Iterator<Item = usize> + use<> {
        let (rows, band) = (self.out_rows, self.band_rows);
        (0..rows.div_ceil(band)).map(move |index| (index * band).min(rows - band))
    }

    /// Copies the rows of one input channel (`height × width`, row-major) that the band of
    /// output rows starting at `first_row` reads into their place in `packed`
    /// (`channel_len` floats): zero padding around them, rows and columns dealt into phases.
    #[inline(always)]
    pub fn pack_channel<S: Simd>(
        &self,
        simd: S,
        channel: &[f32],
        packed: &mut [f32],
        first_row: usize,
    ) {
        debug_assert_eq!(channel.len(), self.height * self.width);
        debug_assert_eq!(packed.len(), self.channel_len);
        match self.packing {
            Packing::Im2col => return self.pack_channel_im2col(simd, channel, packed, first_row),
            Packing::InPlace => unreachable!("in-place layouts are not packed"),
            Packing::PhaseSplit => {}
        }
        let first_padded_row = first_row * self.stride_h;
        if self.stride_h == 1
            && self.stride_w == 1
            && self.lead == 0
            && self.row_stride == self.width
        {
            // No column padding and one phase: the packed rows are the input's, back to back.
            // One copy for all of them (a copy per row cost a third of a 7x7 1x1 layer).
            let rows = first_padded_row.saturating_sub(self.pad_top)
                ..(first_padded_row + self.plane_rows)
                    .saturating_sub(self.pad_top)
                    .min(self.height);
            let above = (self.pad_top.saturating_sub(first_padded_row)).min(self.plane_rows);
            let (zeros_above, rest) = packed.split_at_mut(above * self.width);
            zeros_above.fill(0.0);
            let copied = rows.len().min(self.plane_rows - above) * self.width;
            let (target, zeros_below) = rest.split_at_mut(copied);
            copy(simd, &channel[rows.start * self.width..][..copied], target);
            zeros_below.fill(0.0);
            return;
        }
        let plane_len = self.plane_rows * self.row_stride;
        for band_row in 0..self.plane_rows * self.stride_h {
            // The band starts on a multiple of the stride, so phases are relative to it.
            let (row_phase, plane_row) = (band_row % self.stride_h, band_row / self.stride_h);
            let source = (first_padded_row + band_row)
                .checked_sub(self.pad_top)
                .filter(|&row| row < self.height)
                .map(|row| &channel[row * self.width..(row + 1) * self.width]);
            // The row's `stride_w` column phases, one per plane of this row phase.
            let planes =
                &mut packed[row_phase * self.stride_w * plane_len..][..self.stride_w * plane_len];
            let mut targets = planes
                .chunks_exact_mut(plane_len)
                .map(|plane| &mut plane[plane_row * self.row_stride..][..self.row_stride]);
            match (source, self.stride_w) {
                (None, _) => targets.for_each(|target| target.fill(0.0)),
                (Some(row), 1) => {
                    let target = targets.next().expect("one column phase");
                    let (lead, target) = target.split_at_mut(self.lead);
                    lead.fill(0.0);
                    let left = self.pad_left.min(target.len());
                    let copied = row.len().min(target.len() - left);
                    target[..left].fill(0.0);
                    copy(simd, &row[..copied], &mut target[left..left + copied]);
                    target[left + copied..].fill(0.0);
                }
                (Some(row), 2) => {
                    let even = targets.next().expect("two column phases");
                    let odd = targets.next().expect("two column phases");
                    self.deal_row_in_two(simd, row, even, odd);
                }
                (Some(row), _) => {
                    for (col_phase, target) in targets.enumerate() {
                        self.deal_row(row, col_phase, target);
                    }
                }
            }
        }
    }

    /// Stride 2: padded columns `0, 2, 4, …` of `row` into `even` and `1, 3, 5, …` into `odd`,
    /// `LANES` of each per [`Simd::deinterleave`] of two masked loads: the lanes that fall on
    /// the padding are never read and come out zero, so no column takes a scalar path. (The
    /// row's ends assembled in a stack buffer and reloaded stalled every short row on store
    /// forwarding; a scalar loop over the padding columns cost a ResNeXt 14x14 stride-2 layer
    /// a sixth of its time.)
    #[inline(always)]
    fn deal_row_in_two<S: Simd>(&self, simd: S, row: &[f32], even: &mut [f32], odd: &mut [f32]) {
        let lanes = S::LANES;
        let (pad, width) = (self.pad_left, row.len());
        let phase_len = even.len().min(odd.len());
        // Lanes `first..end` of the vector of padded columns from `padded` fall on the row:
        // padded column c is input column c − pad.
        let inside = |padded: usize| {
            (
                pad.saturating_sub(padded).min(lanes),
                (width + pad).saturating_sub(padded).min(lanes),
            )
        };
        let load = |padded: usize| {
            let (first, end) = inside(padded);
            let base = row.as_ptr().wrapping_add(padded).wrapping_sub(pad);
            // SAFETY: lanes `first..end` read input columns `padded − pad + first ..
            // padded − pad + end`, inside `row` (see `inside`); whole, all LANES are.
            unsafe {
                if first == 0 && end == lanes {
                    simd.load(base)
                } else if first < end {
                    simd.load_lanes(base, first, end)
                } else {
                    simd.splat(0.0)
                }
            }
        };
        let mut k = 0;
        while k < phase_len {
            // Phase index k holds padded columns 2k (even) and 2k + 1 (odd).
            let (evens, odds) = simd.deinterleave(load(2 * k), load(2 * k + lanes));
            let count = lanes.min(phase_len - k);
            let (even_target, odd_target) = (&mut even[k..k + count], &mut odd[k..k + count]);
            // SAFETY: lanes `0..count` land on `even[k..k + count]` and `odd[k..k + count]`.
            unsafe {
                if count == lanes {
                    simd.store(even_target.as_mut_ptr(), evens);
                    simd.store(odd_target.as_mut_ptr(), odds);
                } else {
                    simd.store_lanes(even_target.as_mut_ptr(), evens, 0, count);
                    simd.store_lanes(odd_target.as_mut_ptr(), odds, 0, count);
                }
            }
            k += lanes;
        }
    }

    /// Im2col: for each tap `(i, j)`, its input at every output position, row after row.
    #[inline(always)]
    fn pack_channel_im2col<S: Simd>(
        &self,
        simd: S,
        channel: &[f32],
        packed: &mut [f32],
        first_row: usize,
    ) {
        let [kernel_h, kernel_w] = self.kernel;
        let [dilation_h, dilation_w] = self.dilation;
        let tap_len = self.vectors * self.lanes;
        for (tap, target) in packed
            .chunks_exact_mut(tap_len)
            .take(kernel_h * kernel_w)
            .enumerate()
        {
            let (i, j) = (tap / kernel_w, tap % kernel_w);
            // Output columns whose input column ow·sW + j·dW − pad lies in 0..width.
            let reach = j * dilation_w;
            let first = self
                .pad_left
                .saturating_sub(reach)
                .div_ceil(self.stride_w)
                .min(self.out_cols);
            let end = (self.width + self.pad_left)
                .checked_sub(reach)
                .map_or(0, |limit| limit.div_ceil(self.stride_w))
                .clamp(first, self.out_cols);
            let rows = target.chunks_exact_mut(self.out_cols).take(self.band_rows);
            for (band_row, out_row) in rows.enumerate() {
                let oh = first_row + band_row;
                let source = (oh * self.stride_h + i * dilation_h)
                    .checked_sub(self.pad_top)
                    .filter(|&row| row < self.height)
                    .map(|row| &channel[row * self.width..(row + 1) * self.width]);
                let Some(row) = source else {
                    out_row.fill(0.0);
                    continue;
                };
                out_row[..first].fill(0.0);
                out_row[end..].fill(0.0);
                if first < end {
                    let start = first * self.stride_w + reach - self.pad_left;
                    if self.stride_w == 1 {
                        copy(
                            simd,
                            &row[start..start + end - first],
                            &mut out_row[first..end],
                        );
                    } else {
                        for (k, slot) in out_row[first..end].iter_mut().enumerate() {
                            *slot = row[start + k * self.stride_w];
                        }
                    }
                }
            }
        }
    }

    /// Any stride: padded columns `col_phase, col_phase + sW, …` of `row` into `target`.
    fn deal_row(&self, row: &[f32], col_phase: usize, target: &mut [f32]) {
        for (k, slot) in target.iter_mut().enumerate() {
            let padded_col = k * self.stride_w + col_phase;
            *slot = padded_col
                .checked_sub(self.pad_left)
                .and_then(|col| row.get(col))
                .copied()
                .unwrap_or(0.0);
        }
    }
}

/// `target.copy_from_slice(source)` in whole vectors and one masked vector: rows are too
/// short for a call to `memmove` to pay for itself (measured 12–14 % of a layer).
#[inline(always)]
pub(crate) fn copy<S: Simd>(simd: S, source: &[f32], target: &mut [f32]) {
    assert_eq!(source.len(), target.len());
    let mut sources = source.chunks_exact(S::LANES);
    let mut targets = target.chunks_exact_mut(S::LANES);
    for (from, to) in (&mut sources).zip(&mut targets) {
        // SAFETY: both chunks hold exactly LANES floats.
        unsafe { simd.store(to.as_mut_ptr(), simd.load(from.as_ptr())) };
    }
    let (source, target) = (sources.remainder(), targets.into_remainder());
    if !source.is_empty() {
        // SAFETY: both hold `source.len() < LANES` floats, the masked load and store touch
        // no others.
        unsafe {
            let values = simd.load_first(source.as_ptr(), source.len());
            simd.store_lanes(target.as_mut_ptr(), values, 0, source.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::{Conv2dParams, Padding};

    /// Reads tap `t` of flat position `q` through the layout, the way the kernels do.
    fn read(layout: &Layout, packed: &[f32], tap: usize, q: usize) -> f32 {
        packed[layout.tap_shifts[tap] + q]
    }

    #[test]
    fn every_tap_of_every_output_reads_the_right_input_or_zero() {
        for (packing, order) in [
            (Packing::PhaseSplit, VectorOrder::Flat),
            (Packing::PhaseSplit, VectorOrder::Rows),
            (Packing::Im2col, VectorOrder::Flat),
        ] {
            for band_rows in [1, 2, 3, usize::MAX] {
                check_every_tap(packing, order, band_rows);
            }
        }
    }

    fn check_every_tap(packing: Packing, order: VectorOrder, band_rows: usize) {
        for (stride, dilation, padding) in [
            ([1, 1], [1, 1], Padding::uniform(1)),
            ([2, 2], [1, 1], Padding::uniform(1)),
            ([2, 3], [2, 1], Padding::per_side(0, 2, 3, 1)),
            ([3, 1], [3, 2], Padding::Valid),
            // Two column phases with more padding on the left than one pair of columns, and
            // with none.
            ([1, 2], [1, 2], Padding::per_side(1, 0, 3, 2)),
            ([2, 2], [1, 1], Padding::Valid),
            // One phase and no column padding: rows packed back to back with one copy.
            ([1, 1], [2, 1], Padding::per_side(3, 1, 0, 0)),
            ([1, 1], [1, 1], Padding::Valid),
        ] {
            let geometry = Conv2dParams::new(2, 2, [3, 2])
                .stride(stride)
                .dilation(dilation)
                .padding(padding)
                .geometry([1, 2, 9, 11])
                .unwrap();
            let layout = Layout::new(&geometry, 8, packing, band_rows, order).unwrap();
            assert_eq!(layout.order, order);
            // Input value = 1000·c + 100... unique per element, never zero.
            let input: Vec<f32> = (0..2 * 9 * 11).map(|v| v as f32 + 1.0).collect();
            let [out_rows, out_cols] = geometry.output_size();
            let mut covered = vec![false; out_rows * out_cols];
            for first_row in layout.band_starts() {
                let mut packed = vec![f32::NAN; layout.packed_len];
                for c in 0..2 {
                    layout.pack_channel(
                        crate::simd::portable::Portable,
                        &input[c * 99..(c + 1) * 99],
                        &mut packed[c * layout.channel_len..(c + 1) * layout.channel_len],
                        first_row,
                    );
                }
                for band_row in 0..layout.band_rows {
                    let oh = first_row + band_row;
                    for ow in 0..out_cols {
                        let (vector, lane) = match order {
                            VectorOrder::Flat => {
                                let q = band_row * layout.row_stride + ow;
                                (q / layout.lanes, q % layout.lanes)
                            }
                            VectorOrder::Rows => {
                                let per_row = out_cols.div_ceil(layout.lanes);
                                (band_row * per_row + ow / layout.lanes, ow % layout.lanes)
                            }
                        };
                        let q = layout.starts[vector] as usize + lane;
                        let segment = layout
                            .segments_of(vector)
                            .iter()
                            .find(|s| (s.first as usize..s.end as usize).contains(&lane))
                            .expect("every output lane is stored");
                        let target = segment.target as usize + lane - segment.first as usize;
                        assert_eq!(target, band_row * out_cols + ow);
                        covered[oh * out_cols + ow] = true;
                        for c in 0..2 {
                            for i in 0..3 {
                                for j in 0..2 {
                                    let row = (oh * stride[0] + i * dilation[0]) as isize
                                        - geometry.padding().top as isize;
                                    let col = (ow * stride[1] + j * dilation[1]) as isize
                                        - geometry.padding().left as isize;
                                    let inside = (0..9).contains(&row) && (0..11).contains(&col);
                                    let expected = if inside {
                                        input[c * 99 + row as usize * 11 + col as usize]
                                    } else {
                                        0.0
                                    };
                                    let tap = (c * 3 + i) * 2 + j;
                                    assert_eq!(read(&layout, &packed, tap, q), expected);
                                }
                            }
                        }
                    }
                }
            }
            assert!(
                covered.iter().all(|&c| c),
                "the bands cover every output row"
            );
            // The last vector of the last tap stays inside the buffer.
            let last = layout.tap_shifts.iter().max().unwrap()
                + *layout.starts.iter().max().unwrap() as usize
                + layout.lanes;
            assert!(last <= layout.packed_len);
        }
    }

    #[test]
    fn segments_split_vectors_at_row_ends_and_skip_padding_columns() {
        // 5x5 output, no padding: row_stride = 7 with a 3-wide kernel, 4 lanes.
        let geometry = Conv2dParams::new(1, 1, 3).geometry([1, 1, 7, 7]).unwrap();
        let layout = Layout::new(
            &geometry,
            4,
            Packing::PhaseSplit,
            usize::MAX,
            VectorOrder::Flat,
        )
        .unwrap();
        assert_eq!(layout.row_stride, 7);
        let runs = |v| -> Vec<(u8, u8, u32)> {
            layout
                .segments_of(v)
                .iter()
                .map(|s| (s.first, s.end, s.target))
                .collect()
        };
        assert_eq!(runs(0), [(0, 4, 0)], "positions 0..4: row 0, columns 0..4");
        assert_eq!(
            runs(1),
            [(0, 1, 4), (3, 4, 5)],
            "column 4 of row 0, then row 1 column 0"
        );
        let stored: usize = (0..layout.vectors)
            .flat_map(|v| layout.segments_of(v).to_vec())
            .map(|s| (s.end - s.first) as usize)
            .sum();
        assert_eq!(stored, 25, "every output exactly once");
    }
}
