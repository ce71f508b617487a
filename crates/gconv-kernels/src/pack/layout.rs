//! Where a group's input lives once packed, and where each flat output position goes.
//!
//! The kernels never test bounds. Before a group is convolved, its `C_in/g` input channels are
//! copied into a zero-padded, *phase-split* scratch layout: the padded channel is cut into
//! `sH · sW` planes, plane `(a, b)` holding the padded rows `a, a + sH, a + 2sH, …` and columns
//! `b, b + sW, …`. In that layout, for stride `s` and dilation `d`, kernel tap `(i, j)` of
//! output `(oh, ow)` reads plane `((i·dH) mod sH, (j·dW) mod sW)` at row `oh + ⌊i·dH/sH⌋`,
//! column `ow + ⌊j·dW/sW⌋`: a fixed shift. With every plane's rows `row_stride` elements apart,
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
    /// Per kernel column, when each copy of it is the input shifted by whole elements (per
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

/// The leading zeros and the pitch of a packed row for `packing` in `order` on vectors of
/// `lanes`: in row order with stride 1, the pitch is aligned to whole vectors (rows then cost
/// no arithmetic), the row's first input after `lead` zeros landing on a vector's start.
fn row_pitch(
    geometry: &Geometry,
    lanes: usize,
    packing: Packing,
    order: VectorOrder,
) -> (usize, usize) {
    let padding = geometry.padding();
    let padded_w = geometry.input_size()[1] + padding.left + padding.right;
    let stride_w = geometry.stride()[1];
    let lead = match (packing, order, stride_w) {
        (Packing::PhaseSplit, VectorOrder::Rows, 1) => (lanes - padding.left % lanes) % lanes,
        _ => 0,
    };
    let row_stride = match (packing, lead) {
        (Packing::PhaseSplit, 0) => padded_w.div_ceil(stride_w),
        (Packing::PhaseSplit, _) => (lead + padded_w).next_multiple_of(lanes),
        (Packing::Im2col | Packing::KernelColumns | Packing::InPlace, _) => {
            geometry.output_size()[1]
        }
    };
    (lead, row_stride)
}

impl Layout {
    /// The layout for `geometry` with vectors of `lanes` elements in `order` (flat for
    /// im2col), in bands of `band_rows` output rows (clamped to `1..=H_out`). `None` when an
    /// output plane is too large for 32-bit offsets (more than 4·10⁹ elements per channel),
    /// or when `packing` is in place and the window is not 1×1 with stride 1 and no padding.
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
        let (lead, row_stride) = row_pitch(geometry, lanes, packing, order);
        let flat_len = band_rows.checked_mul(row_stride)?;
        let out_plane = out_rows.checked_mul(out_cols)?;
        if u32::try_from(out_plane).is_err() || u32::try_from(flat_len).is_err() {
            return None;
        }
        let vectors = match order {
            VectorOrder::Flat => flat_len.div_ceil(lanes),
            VectorOrder::Rows => band_rows.checked_mul(out_cols.div_ceil(lanes))?,
        };
        let mut layout = Layout {
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
            channel_len: 0,
            packed_len: 0,
            tap_shifts: Vec::new(),
            out_rows,
            out_cols,
            band_rows,
            order,
            vectors,
            starts: Vec::new(),
            lanes,
            whole_targets: Vec::new(),
            segment_starts: Vec::new(),
            segments: Vec::new(),
            column_masks: Vec::new(),
        };
        let channels = geometry.in_channels_per_group();
        layout.channel_len = layout.channel_len()?;
        layout.tap_shifts = layout.tap_shifts(channels)?;
        layout.place_vectors()?;
        layout.packed_len = layout.packed_len(channels)?;
        layout.column_masks = layout.column_masks()?;
        Some(layout)
    }

    /// Elements of one channel's packed input for a band; `None` past `usize`.
    fn channel_len(&self) -> Option<usize> {
        let [kernel_h, kernel_w] = self.kernel;
        let (stride_h, stride_w) = (self.stride_h, self.stride_w);
        match self.packing {
            Packing::PhaseSplit => stride_h
                .checked_mul(stride_w)?
                .checked_mul(self.plane_rows)?
                .checked_mul(self.row_stride),
            Packing::Im2col => (kernel_h * kernel_w)
                .checked_mul(self.vectors)?
                .checked_mul(self.lanes),
            Packing::KernelColumns => kernel_w
                .checked_mul(stride_h)?
                .checked_mul(self.plane_rows)?
                .checked_mul(self.out_cols),
            Packing::InPlace => self.height.checked_mul(self.width),
        }
    }

    /// For each tap in `(c, i, j)` order over `channels`, the offset of its first input in
    /// the packed buffer; `None` past `usize`.
    fn tap_shifts(&self, channels: usize) -> Option<Vec<usize>> {
        let [kernel_h, kernel_w] = self.kernel;
        let [dilation_h, dilation_w] = self.dilation;
        let (stride_h, stride_w) = (self.stride_h, self.stride_w);
        let plane_len = self.plane_rows * self.row_stride;
        let mut tap_shifts = Vec::with_capacity(channels * kernel_h * kernel_w);
        for c in 0..channels {
            for i in 0..kernel_h {
                for j in 0..kernel_w {
                    let (row_phase, row) =
                        ((i * dilation_h) % stride_h, (i * dilation_h) / stride_h);
                    let within_channel = match self.packing {
                        Packing::PhaseSplit => {
                            let (col_phase, col) =
                                ((j * dilation_w) % stride_w, (j * dilation_w) / stride_w);
                            let plane = row_phase * stride_w + col_phase;
                            plane * plane_len + row * self.row_stride + self.lead + col
                        }
                        Packing::Im2col => (i * kernel_w + j) * self.vectors * self.lanes,
                        Packing::KernelColumns => {
                            ((j * stride_h + row_phase) * self.plane_rows + row) * self.out_cols
                        }
                        Packing::InPlace => 0,
                    };
                    tap_shifts.push(
                        c.checked_mul(self.channel_len)?
                            .checked_add(within_channel)?,
                    );
                }
            }
        }
        Some(tap_shifts)
    }

    /// `(row, column)` of vector `vector`'s first lane within the band: flat positions are
    /// rows of `row_stride`.
    fn first_position(&self, vector: usize) -> (usize, usize) {
        let lanes = self.lanes;
        match self.order {
            VectorOrder::Flat => (
                vector * lanes / self.row_stride,
                vector * lanes % self.row_stride,
            ),
            VectorOrder::Rows => {
                let per_row = self.out_cols.div_ceil(lanes);
                (vector / per_row, vector % per_row * lanes)
            }
        }
    }

    /// Fills in where each vector starts and where its lanes go: `starts`, the runs of lanes
    /// that land on consecutive outputs of one row (`segments`, per vector from
    /// `segment_starts`), and `whole_targets`. `None` if there are more runs than `u32` counts.
    fn place_vectors(&mut self) -> Option<()> {
        let (lanes, row_stride, out_cols) = (self.lanes, self.row_stride, self.out_cols);
        self.starts = (0..self.vectors)
            .map(|vector| {
                let (row, col) = self.first_position(vector);
                (row * row_stride + col) as u32
            })
            .collect();
        let mut segment_starts = Vec::with_capacity(self.vectors + 1);
        let mut segments: Vec<Segment> = Vec::new();
        for vector in 0..self.vectors {
            segment_starts.push(u32::try_from(segments.len()).ok()?);
            let mut open: Option<Segment> = None;
            let (first_row, first_col) = self.first_position(vector);
            for lane in 0..lanes {
                let q = first_row * row_stride + first_col + lane;
                let (oh, ow) = match self.order {
                    VectorOrder::Flat => (q / row_stride, q % row_stride),
                    // A row's last vector ends with dead lanes, not the next row's positions.
                    VectorOrder::Rows => (first_row, first_col + lane),
                };
                let target =
                    (oh < self.band_rows && ow < out_cols).then(|| (oh * out_cols + ow) as u32);
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
        self.segment_starts = segment_starts;
        self.segments = segments;
        self.whole_targets = (0..self.vectors)
            .map(|vector| match self.segments_of(vector) {
                [only] if usize::from(only.end - only.first) == lanes => only.target,
                _ => MIXED,
            })
            .collect();
        Some(())
    }

    /// Elements of the packed buffer for `channels`, including the slack that the last
    /// vectors read: every vector's load of every tap stays inside (`shift + start + lanes`;
    /// in place, that is all a band reads of the input).
    fn packed_len(&self, channels: usize) -> Option<usize> {
        let max_shift = self.tap_shifts.iter().copied().max().unwrap_or(0);
        let max_start = self.starts.iter().map(|&start| start as usize).max();
        let reach = max_shift
            .checked_add(max_start.unwrap_or(0))?
            .checked_add(self.lanes)?;
        match self.packing {
            Packing::InPlace => Some(reach),
            _ => Some(channels.checked_mul(self.channel_len)?.max(reach)),
        }
    }

    /// The lanes each shifted copy keeps (see `column_masks`), where the per-kernel-column
    /// packing has one phase and rows exactly as long as the input's: each copy is the band's
    /// input rows, one flat run, shifted by `j·dW − pad_left`, its wrapped columns masked.
    fn column_masks(&self) -> Option<Vec<u32>> {
        let (lanes, width) = (self.lanes, self.width);
        let shifted_copies = self.packing == Packing::KernelColumns
            && self.stride_h == 1
            && self.stride_w == 1
            && self.out_cols == width
            && lanes <= 32;
        if !shifted_copies {
            return Some(Vec::new());
        }
        let vectors = (self.plane_rows.checked_mul(width)?).div_ceil(lanes);
        let mut masks = Vec::with_capacity(self.kernel[1].checked_mul(vectors)?);
        for j in 0..self.kernel[1] {
            let shift = (j * self.dilation[1]) as isize - self.pad_left as isize;
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
        Some(masks)
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
}

/// `value` as an `isize`, saturated: offsets from absurd padding (refused by the plan, but
/// only after its layouts are made) must not wrap.
pub(super) fn signed(value: usize) -> isize {
    isize::try_from(value).unwrap_or(isize::MAX)
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
                layout.pack_channels(crate::simd::portable::F32, &input, &mut packed, first_row);
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
