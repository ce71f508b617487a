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
//! The channel-vector body, whose tiles cost the same per position whether it is kept or
//! not, packs *per kernel column* instead: each channel is copied `kW` times, copy `j`
//! holding for every output column `ow` the input column that kernel column `j` reads
//! (`ow·sW + j·dW`, padded), over the padded rows dealt into `sH` row phases. Tap `(i, j)` is
//! then copy `j`, phase `(i·dH) mod sH`, shifted down `⌊i·dH/sH⌋` rows of `W_out`: with
//! `row_stride = W_out` no column is computed and discarded (ResNeXt's 7x7 planes computed
//! 9 columns per row for 7 outputs).
//!
//! When those discarded columns cost more than copying every tap's window, the group is
//! packed as *im2col* instead: one row of `⌈H_out·W_out / lanes⌉` vectors per tap, holding
//! exactly that tap's input for every output position (`row_stride = W_out`, nothing
//! discarded but the last vector's tail). The kernel cannot tell the two apart: it reads
//! `packed[tap_shift + q]` either way.

use std::ops::Range;

use gconv_shape::Geometry;

use crate::simd::{Simd, lanes_between};

/// How a group's input is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Zero-padded planes dealt into stride phases; every tap is a shift of them.
    PhaseSplit,
    /// One row per tap holding its window for every output position.
    Im2col,
    /// One copy of the padded rows per kernel column, holding exactly the columns it reads.
    KernelColumns,
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
    /// split), `kH·kW·vectors·lanes` (im2col), `kW · stride_h · plane_rows · W_out` (per
    /// kernel column), the input's own `H·W` (in place).
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
    /// Per kernel column, when each copy of it is the input shifted by whole floats (per
    /// kernel column, stride 1, `W_out = W`): for each vector of a run of whole input rows,
    /// the lanes whose column, shifted by `j·dW − pad_left`, stays on its row. Empty
    /// otherwise.
    pub column_masks: Vec<u32>,
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
            Packing::Im2col | Packing::KernelColumns | Packing::InPlace => VectorOrder::Flat,
        };
        // In row order, the row pitch costs no arithmetic: align it (see `lead`).
        let lead = match (packing, order, stride_w) {
            (Packing::PhaseSplit, VectorOrder::Rows, 1) => (lanes - padding.left % lanes) % lanes,
            _ => 0,
        };
        let row_stride = match (packing, lead) {
            (Packing::PhaseSplit, 0) => padded_w.div_ceil(stride_w),
            (Packing::PhaseSplit, _) => (lead + padded_w).next_multiple_of(lanes),
            (Packing::Im2col | Packing::KernelColumns | Packing::InPlace, _) => out_cols,
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
            Packing::KernelColumns => kernel_w
                .checked_mul(stride_h)?
                .checked_mul(plane_rows)?
                .checked_mul(out_cols)?,
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
                        Packing::KernelColumns => {
                            let (row_phase, row) =
                                ((i * dilation_h) % stride_h, (i * dilation_h) / stride_h);
                            ((j * stride_h + row_phase) * plane_rows + row) * out_cols
                        }
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

        // One phase and packed rows exactly as long as the input's: each copy is the band's
        // input rows, one flat run, shifted by j·dW − pad_left, its wrapped columns masked.
        let shifted_copies = packing == Packing::KernelColumns
            && stride_h == 1
            && stride_w == 1
            && out_cols == width
            && lanes <= 32;
        let column_masks = if shifted_copies {
            let vectors = (plane_rows.checked_mul(width)?).div_ceil(lanes);
            let mut masks = Vec::with_capacity(kernel_w.checked_mul(vectors)?);
            for j in 0..kernel_w {
                let shift = (j * dilation_w) as isize - padding.left as isize;
                for vector in 0..vectors {
                    let mask = (0..lanes)
                        .filter(|lane| {
                            let column = ((vector * lanes + lane) % width) as isize + shift;
                            (0..width as isize).contains(&column)
                        })
                        .fold(0u32, |mask, lane| mask | 1 << lane);
                    masks.push(mask);
                }
            }
            masks
        } else {
            Vec::new()
        };

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
            column_masks,
        })
    }

    /// The output runs of vector `index`.
    #[inline(always)]
    pub fn segments_of(&self, index: usize) -> &[Segment] {
        let (start, end) = (self.segment_starts[index], self.segment_starts[index + 1]);
        &self.segments[start as usize..end as usize]
    }

    /// The first output row of each band of `rows` (a block of at least `band_rows` output
    /// rows): `first, first + R, first + 2R, …`, the last one moved back to end with the block
    /// (recomputing a few rows of the band before, identically).
    pub fn band_starts(&self, rows: Range<usize>) -> impl Iterator<Item = usize> + use<> {
        let band = self.band_rows;
        assert!(
            rows.len() >= band && rows.end <= self.out_rows,
            "a block of rows {rows:?} shorter than a band of {band} or past the plane"
        );
        let last = rows.end - band;
        (0..rows.len().div_ceil(band)).map(move |index| (rows.start + index * band).min(last))
    }

    /// Copies the rows of a group's input channels (`channels`: each `height × width`,
    /// row-major, one after the other) that the band of output rows starting at `first_row`
    /// reads into their place in `packed` (`channel_len` floats per channel), with the zero
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
        channels: &[f32],
        packed: &mut [f32],
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
        match self.packing {
            Packing::PhaseSplit => self.pack_phase_split(simd, channels, packed, stack, first_row),
            Packing::KernelColumns => {
                self.pack_kernel_columns(simd, channels, packed, stack, first_row)
            }
            Packing::Im2col => {
                // Channel by channel: each fills its taps' rows one after the other, reading
                // its rows from L1 (all channels per tap scattered the writes: 7 % slower on
                // an 11-channel dilated group).
                let single = Stack { count: 1, ..stack };
                for (channel, target) in stack.pairs(channels, packed) {
                    self.pack_im2col(simd, channel, target, single, first_row);
                }
            }
            Packing::InPlace => unreachable!("in-place layouts are not packed"),
        }
    }

    /// Phase split: plane `(a, b)` holds padded rows `a, a + sH, …` of the band, columns
    /// `b, b + sW, …` (after `lead` zeros).
    #[inline(always)]
    fn pack_phase_split<S: Simd>(
        &self,
        simd: S,
        channels: &[f32],
        packed: &mut [f32],
        stack: Stack,
        first_row: usize,
    ) {
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
            for (channel, target) in stack.pairs(channels, packed) {
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
            self.pack_planes(simd, channels, packed, stack, plane, columns);
        }
    }

    /// Per kernel column: for each `j` and row phase, the band's padded rows of that phase,
    /// each holding input column `ow·sW + j·dW − pad_left` for every output column `ow`.
    #[inline(always)]
    fn pack_kernel_columns<S: Simd>(
        &self,
        simd: S,
        channels: &[f32],
        packed: &mut [f32],
        stack: Stack,
        first_row: usize,
    ) {
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
                self.pack_planes(simd, channels, packed, stack, plane, self.columns(shift));
                continue;
            }
            // One phase, rows as long as the input's: the band's input rows are one flat run,
            // copied shifted with the columns that wrap around a row's end masked off.
            let inside = self.input_rows(top, 1, self.plane_rows);
            let first_input_row = (top + inside.start).saturating_sub(self.pad_top);
            let masks = &self.column_masks[j * masks_per_copy..][..masks_per_copy];
            for (channel, target) in stack.pairs(channels, packed) {
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
    fn pack_im2col<S: Simd>(
        &self,
        simd: S,
        channels: &[f32],
        packed: &mut [f32],
        stack: Stack,
        first_row: usize,
    ) {
        let [kernel_h, kernel_w] = self.kernel;
        let [dilation_h, dilation_w] = self.dilation;
        let tap_len = self.vectors * self.lanes;
        let rows_len = self.band_rows * self.out_cols;
        for tap in 0..kernel_h * kernel_w {
            let (i, j) = (tap / kernel_w, tap % kernel_w);
            let offset = tap * tap_len;
            // The last vector's lanes past the band: read, computed and discarded.
            for target in stack.targets(packed) {
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
            self.pack_planes(simd, channels, packed, stack, plane, columns);
        }
    }

    /// Fills `plane` of every channel of the stack: its rows, of `row_len`, whose row `r` is
    /// padded row `top + r·step`, gather the input rows by `columns`; the padding rows are
    /// zero.
    #[inline(always)]
    fn pack_planes<S: Simd>(
        &self,
        simd: S,
        channels: &[f32],
        packed: &mut [f32],
        stack: Stack,
        plane: Plane,
        columns: Columns,
    ) {
        let inside = self.input_rows(plane.top, plane.step, plane.len / plane.row_len);
        for target in stack.targets(packed) {
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
            &mut packed[plane.offset + inside.start * plane.row_len..],
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
        plane: &'p mut [f32],
        row_len: usize,
        inside: &Range<usize>,
    ) -> &'p mut [f32] {
        let (above, rest) = plane.split_at_mut(inside.start * row_len);
        zero(simd, above);
        let (rows, below) = rest.split_at_mut(inside.len() * row_len);
        zero(simd, below);
        rows
    }
}

/// `value` as an `isize`, saturated: offsets from absurd padding (refused by the plan, but
/// only after its layouts are made) must not wrap.
fn signed(value: usize) -> isize {
    isize::try_from(value).unwrap_or(isize::MAX)
}

/// Which columns of which source rows [`gather_rows`] reads: row `r` is the `width` floats at
/// `r·pitch`, and target column `k` is its column `start + k·step`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns {
    pub start: isize,
    pub step: usize,
    pub width: usize,
    pub pitch: usize,
}

/// A group's channels as packing sees them: `count` of them, `source_pitch` floats apart in
/// the input and `target_pitch` apart in the packed buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack {
    pub count: usize,
    pub source_pitch: usize,
    pub target_pitch: usize,
}

impl Stack {
    /// Each channel's input and its packed target.
    fn pairs<'a>(
        self,
        channels: &'a [f32],
        packed: &'a mut [f32],
    ) -> impl Iterator<Item = (&'a [f32], &'a mut [f32])> {
        channels
            .chunks_exact(self.source_pitch)
            .zip(self.targets(packed))
    }

    /// Each channel's packed target.
    fn targets(self, packed: &mut [f32]) -> impl Iterator<Item = &mut [f32]> {
        packed.chunks_exact_mut(self.target_pitch).take(self.count)
    }
}

/// One packed plane of each channel: `len` floats from `offset` within the channel, rows of
/// `row_len`, row `r` holding padded row `top + r·step`.
#[derive(Debug, Clone, Copy)]
struct Plane {
    offset: usize,
    len: usize,
    row_len: usize,
    top: usize,
    step: usize,
}

/// `count` rows of `len` floats.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows {
    pub count: usize,
    pub len: usize,
}

/// For every channel `c` of `stack`, fills `rows` rows of its target at
/// `target[c·target_pitch..]`: `target[c·target_pitch + r·len + k] =
/// source[c·source_pitch + r·pitch + start + k·step]` where that column lies in `0..width`,
/// zero where it falls on the padding. Steps 1 and 2 go a vector of `k` at a time, every
/// channel and row, through loads under a mask that reads no padding address (step 2 keeps
/// the even lanes of two), the masks worked out once per vector of `k`; larger steps one float
/// at a time. (Packing rows one at a time, clipping each, cost a ResNeXt 14x14 stride-2 layer
/// a third of its time.)
#[inline(always)]
pub(crate) fn gather_rows<S: Simd>(
    simd: S,
    source: &[f32],
    columns: Columns,
    stack: Stack,
    target: &mut [f32],
    rows: Rows,
) {
    let lanes = S::LANES;
    let Columns {
        start,
        step,
        width,
        pitch,
    } = columns;
    let Stack {
        count,
        source_pitch,
        target_pitch,
    } = stack;
    let Rows {
        count: row_count,
        len: row_len,
    } = rows;
    if count == 0 || row_count == 0 || row_len == 0 {
        return;
    }
    assert!((count - 1) * target_pitch + row_count * row_len <= target.len());
    assert!((count - 1) * source_pitch + (row_count - 1) * pitch + width <= source.len());
    if step > 2 {
        for c in 0..count {
            for r in 0..row_count {
                let row = &source[c * source_pitch + r * pitch..][..width];
                let out = &mut target[c * target_pitch + r * row_len..][..row_len];
                for (k, slot) in out.iter_mut().enumerate() {
                    let column = start.saturating_add((k * step) as isize);
                    *slot = usize::try_from(column)
                        .ok()
                        .and_then(|column| row.get(column))
                        .copied()
                        .unwrap_or(0.0);
                }
            }
        }
        return;
    }
    // The lanes of the vector of columns from `column` that fall on a row.
    let on_row = |column: isize| {
        let first = column.saturating_neg().clamp(0, lanes as isize) as usize;
        let end = (width as isize)
            .saturating_sub(column)
            .clamp(first as isize, lanes as isize) as usize;
        lanes_between(first, end)
    };
    for first_k in (0..row_len).step_by(lanes) {
        let count_k = lanes.min(row_len - first_k);
        let column = start.saturating_add((first_k * step) as isize);
        let high_column = column.saturating_add(lanes as isize);
        let (low, high) = (on_row(column), on_row(high_column));
        for c in 0..count {
            let mut from = source
                .as_ptr()
                .wrapping_add(c * source_pitch)
                .wrapping_offset(column);
            let mut to = target[c * target_pitch + first_k..].as_mut_ptr();
            for _ in 0..row_count {
                // SAFETY: in row `r` of channel `c` (`from` = row start + `column`), a lane
                // set in `low` reads column `column + l`, inside `0..width` (see `on_row`),
                // so inside `source` (asserted above); `high` likewise from `high_column`.
                // The store covers `target[c·target_pitch + r·row_len + first_k..][..count_k]`,
                // inside `target` (asserted above).
                unsafe {
                    let values = if step == 1 {
                        simd.load_masked(from, low)
                    } else {
                        let high_from = from.wrapping_add(lanes);
                        simd.deinterleave(
                            simd.load_masked(from, low),
                            simd.load_masked(high_from, high),
                        )
                        .0
                    };
                    simd.store_first(to, values, count_k);
                }
                from = from.wrapping_add(pitch);
                to = to.wrapping_add(row_len);
            }
        }
    }
}

/// `target[t] = source[t + shift]` for the lanes of `masks` (one mask per vector of
/// `target`, the columns that stay on their row), zero for the others: a copy of whole rows
/// shifted by a few columns, the columns it wraps around the rows' ends masked off.
#[inline(always)]
fn shifted_copy<S: Simd>(simd: S, source: &[f32], shift: isize, masks: &[u32], target: &mut [f32]) {
    let lanes = S::LANES;
    assert_eq!(source.len(), target.len());
    assert!(masks.len() * lanes >= target.len());
    for ((index, chunk), &mask) in target.chunks_mut(lanes).enumerate().zip(masks) {
        let count = chunk.len();
        // Lanes past the end of the source would read the rows that follow.
        let mask = mask & (u32::MAX >> (32 - count));
        let base = source
            .as_ptr()
            .wrapping_add(index * lanes)
            .wrapping_offset(shift);
        // SAFETY: a set lane `l` reads `source[index·lanes + l + shift]`: `l < count`, so
        // `index·lanes + l` is a column of a row of `source`, and the mask keeps only lanes
        // whose column shifted by `shift` stays on that row, inside `source`. The store covers
        // `chunk`, `count` floats.
        unsafe {
            simd.store_first(chunk.as_mut_ptr(), simd.load_masked(base, mask), count);
        }
    }
}

/// Zeroes `target` a vector at a time: rows of padding are too short for a call to `memset`.
#[inline(always)]
pub(crate) fn zero<S: Simd>(simd: S, target: &mut [f32]) {
    let zeros = simd.splat(0.0);
    let mut chunks = target.chunks_exact_mut(S::LANES);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds LANES floats.
        unsafe { simd.store(chunk.as_mut_ptr(), zeros) };
    }
    let rest = chunks.into_remainder();
    // SAFETY: `rest` holds fewer than LANES floats; no lane beyond it is stored.
    unsafe { simd.store_lanes(rest.as_mut_ptr(), zeros, 0, rest.len()) };
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
            (Packing::KernelColumns, VectorOrder::Flat),
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
            // Outputs as wide as the input: per kernel column, shifted copies of whole rows.
            ([1, 1], [1, 1], Padding::per_side(1, 2, 1, 0)),
            ([1, 1], [2, 2], Padding::per_side(0, 1, 2, 0)),
        ] {
            let geometry = Conv2dParams::new(2, 2, [3, 2])
                .stride(stride)
                .dilation(dilation)
                .padding(padding)
                .geometry([1, 2, 9, 11])
                .unwrap();
            let layout = Layout::new(&geometry, 8, packing, band_rows, order).unwrap();
            assert_eq!(layout.order, order);
            let same_width = stride == [1, 1] && geometry.output_size()[1] == 11;
            assert_eq!(
                !layout.column_masks.is_empty(),
                packing == Packing::KernelColumns && same_width,
                "shifted copies exactly where each copy is the input shifted"
            );
            // Input value = 1000·c + 100... unique per element, never zero.
            let input: Vec<f32> = (0..2 * 9 * 11).map(|v| v as f32 + 1.0).collect();
            let [out_rows, out_cols] = geometry.output_size();
            let mut covered = vec![false; out_rows * out_cols];
            for first_row in layout.band_starts(0..out_rows) {
                let mut packed = vec![f32::NAN; layout.packed_len];
                layout.pack_channels(
                    crate::simd::portable::Portable,
                    &input,
                    &mut packed,
                    first_row,
                );
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
