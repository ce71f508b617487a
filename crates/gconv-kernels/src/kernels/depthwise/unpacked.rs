//! Depthwise convolution read straight from the input rows, for stride-1 and stride-2 planes
//! too large for the channels-in-lanes kernel.
//!
//! The flat kernels copy each channel into a zero-padded scratch plane, then compute vectors of
//! flat positions and map each back to its output row. With the nine multiply-adds per output
//! of a 3x3 depthwise layer, that copy and the per-vector store bookkeeping cost more than the
//! arithmetic (perf on MobileNetV2's 56x56 layer: a third of the time in the fused
//! multiply-adds). Here a task takes one output channel and walks its plane in blocks of 8
//! output rows, every tap loading its input vectors from the input rows themselves: vectors
//! whose windows lie inside the row with plain loads, the one or two at either end of the row
//! with masked loads that read zeros for the padding columns; window rows above or below the
//! input are skipped, as the reference skips them. Output rows are stored whole, the row's
//! last vector masked.
//!
//! With stride 2 a tap's inputs for a vector of outputs are every other column of two
//! vectors of the input row: two loads and a deinterleave, whose odd lanes are the next
//! tap's inputs when the window's columns are adjacent. Output rows share input rows too, a
//! row feeding the output rows whose windows it lies in — which with stride 2 are the ones
//! two input rows apart.

use std::marker::PhantomData;
use std::ops::Range;

use gconv_shape::Geometry;

use super::super::{ForwardKernel, Parts};
use super::Filters;
use crate::epilogue::{Epilogue, Sink};
use crate::exec::workspace::{Output, Workspace};
use crate::select::Problem;
use crate::simd::{Element, Simd, WithSimd, dispatch, lanes_between, lanes_of};
use crate::{Error, Isa};

/// Output rows computed together, one vector of columns each: independent accumulators that
/// keep both FMA units busy through their latency, each tap's weight broadcast and its column
/// mask worked out once for all of them.
pub(crate) const TILE_ROWS: usize = 8;

/// Whether `geometry` suits this kernel: depthwise, stride 1 or 2 on both axes.
pub(crate) fn suits(geometry: &Geometry) -> bool {
    geometry.in_channels_per_group() == 1 && matches!(geometry.stride(), [1, 1] | [2, 2])
}

/// Whether the rows of `geometry`'s whole windows share their input rows here, summing each
/// output's taps column by column (`Plane::sums_sharing_rows`) or by pairs of columns
/// (`Plane::sums_stride_two_sharing_rows`) rather than row by row as every other kernel
/// does: a chain of multiply-adds of its own, whose last bits differ. The window shapes of
/// the dispatch in `convolve_plane`.
pub(crate) fn sums_out_of_row_order(geometry: &Geometry) -> bool {
    let dilation_h = geometry.dilation()[0];
    match (geometry.stride(), geometry.kernel_size()) {
        ([1, 1], [3, 3]) => matches!(dilation_h, 1 | 2),
        ([1, 1], [5, 5] | [7, 7]) => dilation_h == 1,
        ([2, 2], [3 | 5, _]) => dilation_h == 1,
        _ => false,
    }
}

/// A depthwise convolution (one input channel per group, any channel multiplier) with stride
/// 1 or 2, prepared for the unpacked kernel.
#[derive(Debug)]
pub(crate) struct UnpackedEngine<T, E> {
    geometry: Geometry,
    isa: Isa,
    filters: Filters<T>,
    /// Vectors of `LANES` output columns per output row, the last one possibly partial.
    vectors: usize,
    /// The output rows in runs whose window rows, clipped to the input, are the same: the
    /// interior rows one run, the padding rows above and below a few runs of their own.
    row_runs: Vec<RowRun>,
    /// The vectors of columns whose every tap reads whole vectors inside the input row: no
    /// masks to work out.
    interior_vectors: Range<usize>,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> UnpackedEngine<T, E> {
    /// The engine for the problem of `parts` (which [`suits`] it).
    pub fn new(parts: Parts<'_, T, E>) -> Result<Self, Error> {
        let Problem { geometry, isa, .. } = parts.problem;
        let [height, _] = geometry.input_size();
        let [out_h, out_w] = geometry.output_size();
        let [kernel_h, _] = geometry.kernel_size();
        let (pad_top, dilation_h) = (geometry.padding().top, geometry.dilation()[0]);
        let stride = geometry.stride()[0];
        // Window rows i of output row oh with input row oh·s + i·dH − pad_top in 0..H.
        let window = |oh: usize| {
            let top = oh * stride;
            let first = pad_top.saturating_sub(top).div_ceil(dilation_h);
            let end = (height + pad_top)
                .saturating_sub(top)
                .div_ceil(dilation_h)
                .min(kernel_h);
            first.min(end)..end
        };
        let mut row_runs: Vec<RowRun> = Vec::new();
        for oh in 0..out_h {
            match row_runs.last_mut() {
                Some(run) if run.window == window(oh) => run.rows.end = oh + 1,
                _ => row_runs.push(RowRun {
                    rows: oh..oh + 1,
                    window: window(oh),
                }),
            }
        }
        // Vector v covers output columns v·L .. v·L + L; tap column j reads input columns
        // s·v·L + j·dW − pad_left + 0..s·L (every s-th of them): inside the row for every j
        // when the first tap starts at or after column 0 and the last ends by column W.
        let lanes = lanes_of::<T>(isa);
        let [_, width] = geometry.input_size();
        let reach_w = (geometry.kernel_size()[1] - 1) * geometry.dilation()[1];
        let left = geometry.padding().left;
        let inside = |v: usize| {
            v * stride * lanes >= left && (v + 1) * stride * lanes + reach_w <= width + left
        };
        let vectors = out_w.div_ceil(lanes);
        let first_inside = (0..vectors).find(|&v| inside(v)).unwrap_or(vectors);
        let end_inside = (first_inside..vectors)
            .find(|&v| !inside(v))
            .unwrap_or(vectors);
        Ok(UnpackedEngine {
            geometry: *geometry,
            isa,
            filters: Filters::new(geometry, parts.weights),
            vectors,
            row_runs,
            interior_vectors: first_inside..end_inside,
            epilogue: parts.epilogue,
        })
    }

    /// Loop order: runs of output rows with the same clipped window rows (the interior one
    /// run, the padding rows above and below a few short ones), each in blocks of
    /// [`TILE_ROWS`] rows (then 4, 2, 1); within a block, the vectors of columns along the
    /// rows (see [`RowBlock`]); per tile, the window rows, then the taps along them, each
    /// loading one input vector per output row — or, where the window is whole and its rows
    /// few, each input row once for every output row that reads it. A tap whose columns reach
    /// past either end of the input row loads through a mask, zeros for the padding columns.
    ///
    /// Each block runs as a dispatched function of its own, one per block height and tile
    /// family: compiled as one body, the families' hoisted addresses and weights outnumbered
    /// the registers, and adding a family slowed the others by 10–25 %.
    fn convolve_plane(&self, data: PlaneData<'_, T>, output: &mut Sink<'_, T, E>) {
        let [out_h, out_w] = self.geometry.output_size();
        assert_eq!(data.input.len(), data.width * self.geometry.input_size()[0]);
        assert_eq!(output.len(), out_h * out_w);
        assert_eq!(data.weights.len(), data.kernel_h * data.kernel_w);
        let stride_two = self.geometry.stride() == [2, 2];
        for run in &self.row_runs {
            let whole = run.window == (0..data.kernel_h);
            let mut first_row = run.rows.start;
            macro_rules! blocks {
                ($($rows:literal),*) => {$(
                    while run.rows.end - first_row >= $rows {
                        let block = RowBlock::<$rows, T, E> {
                            data,
                            first_row,
                            window: run.window.clone(),
                            vectors: self.vectors,
                            interior: self.interior_vectors.clone(),
                            output: output.reborrow(),
                        };
                        // Window rows share their input rows where the window is whole: 3x3
                        // with vertical dilation 1 or 2, 5x5 and 7x7 without, the width known
                        // to the compiler so the tap columns unroll; with stride 2, 3xN and
                        // 5xN without. (Dilations 3 and 4 and, while every family shared one
                        // function, stride-2 5xN windows measured slower shared: see
                        // TUNING.md, `depthwise-unpacked-stride-1`.)
                        let isa = self.isa;
                        let window = [data.kernel_h, data.kernel_w];
                        match (stride_two, whole, window, data.dilation[0]) {
                            (false, true, [3, 3], 1) => dispatch(isa, block.of::<SharedRows<3, 3, 1>>()),
                            (false, true, [3, 3], 2) => dispatch(isa, block.of::<SharedRows<3, 3, 2>>()),
                            (false, true, [5, 5], 1) => dispatch(isa, block.of::<SharedRows<5, 5, 1>>()),
                            (false, true, [7, 7], 1) => dispatch(isa, block.of::<SharedRows<7, 7, 1>>()),
                            (false, ..) => dispatch(isa, block.of::<TapByTap<1>>()),
                            (true, true, [3, _], 1) => dispatch(isa, block.of::<StrideTwoSharedRows<3>>()),
                            (true, true, [5, _], 1) => dispatch(isa, block.of::<StrideTwoSharedRows<5>>()),
                            (true, ..) => dispatch(isa, block.of::<TapByTap<2>>()),
                        }
                        first_row += $rows;
                    }
                )*};
            }
            blocks!(8, 4, 2, 1);
        }
    }
}

impl<T: Element, E: Epilogue<T>> ForwardKernel<T> for UnpackedEngine<T, E> {
    /// None: the input is read where it lies.
    fn scratch_len(&self) -> usize {
        0
    }

    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool) {
        let geometry = &self.geometry;
        let [height, width] = geometry.input_size();
        let image = height * width;
        let [out_h, out_w] = geometry.output_size();
        let out_plane = out_h * out_w;
        let out_channels = geometry.out_channels();
        let multiplier = geometry.out_channels_per_group();
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let padding = geometry.padding();
        workspace.for_each_chunk(
            parallel,
            output,
            self.epilogue,
            out_plane,
            |_, index, mut sink| {
                let (sample, channel) = (index / out_channels, index % out_channels);
                let input_channel = sample * geometry.in_channels() + channel / multiplier;
                let data = PlaneData {
                    input: &input[input_channel * image..][..image],
                    weights: self.filters.weights(channel),
                    bias: self.filters.bias(channel),
                    width,
                    kernel_h,
                    kernel_w,
                    dilation: geometry.dilation(),
                    pad_top: padding.top,
                    pad_left: padding.left,
                    out_w,
                };
                self.convolve_plane(data, &mut sink);
            },
        );
    }
}

/// Output rows `rows` all read window rows `window` (clipped to the input).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowRun {
    rows: Range<usize>,
    window: Range<usize>,
}

/// One task's plane: the input plane it reads, its weights, the window geometry.
struct PlaneData<'a, T> {
    input: &'a [T],
    /// The channel's `kH·kW` weights.
    weights: &'a [T],
    bias: T,
    width: usize,
    kernel_h: usize,
    kernel_w: usize,
    dilation: [usize; 2],
    pad_top: usize,
    pad_left: usize,
    out_w: usize,
}

impl<T: Copy> Clone for PlaneData<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Copy> Copy for PlaneData<'_, T> {}

/// A block of `R` output rows of one plane, over window rows `window` (clipped to the input).
struct RowBlock<'a, const R: usize, T, E> {
    data: PlaneData<'a, T>,
    first_row: usize,
    window: Range<usize>,
    /// Vectors of columns per output row, and those whose taps all lie inside the row.
    vectors: usize,
    interior: Range<usize>,
    /// The plane's output.
    output: Sink<'a, T, E>,
}

impl<'a, const R: usize, T, E> RowBlock<'a, R, T, E> {
    /// This block, its tiles computed by family `F`.
    fn of<F: TileFamily>(self) -> FamilyBlock<'a, R, T, E, F> {
        FamilyBlock {
            block: self,
            family: PhantomData,
        }
    }
}

/// A [`RowBlock`] whose tiles family `F` computes: every vector of columns, those in
/// `interior` without masks, the others with.
struct FamilyBlock<'a, const R: usize, T, E, F> {
    block: RowBlock<'a, R, T, E>,
    family: PhantomData<F>,
}

impl<const R: usize, T: Element, E: Epilogue<T>, F: TileFamily> WithSimd<T>
    for FamilyBlock<'_, R, T, E, F>
{
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let (first_row, window, interior) =
            (self.block.first_row, self.block.window, self.block.interior);
        let (vectors, mut output) = (self.block.vectors, self.block.output);
        let plane = Plane {
            simd,
            data: self.block.data,
        };
        let output = &mut output;
        for vector in 0..interior.start {
            F::tile::<S, E, R, true>(&plane, first_row, &window, vector, output);
        }
        for vector in interior.clone() {
            F::tile::<S, E, R, false>(&plane, first_row, &window, vector, output);
        }
        for vector in interior.end..vectors {
            F::tile::<S, E, R, true>(&plane, first_row, &window, vector, output);
        }
    }
}

/// How a tile of `R` output rows by one vector of columns is computed: one of the tile
/// functions of [`Plane`].
trait TileFamily {
    fn tile<S: Simd, E: Epilogue<S::Elem>, const R: usize, const EDGE: bool>(
        plane: &Plane<'_, S>,
        first_row: usize,
        window: &Range<usize>,
        vector: usize,
        output: &mut Sink<'_, S::Elem, E>,
    );
}

/// Any window at stride `STRIDE`, each tap loading its inputs ([`Plane::sums`]).
struct TapByTap<const STRIDE: usize>;

/// Stride 1, a whole window of `KH` rows `DH` apart and `KW` columns sharing its input rows
/// ([`Plane::sums_sharing_rows`]).
struct SharedRows<const KH: usize, const KW: usize, const DH: usize>;

/// Stride 2, a whole window of `KH` adjacent rows sharing its input rows
/// ([`Plane::sums_stride_two_sharing_rows`]).
struct StrideTwoSharedRows<const KH: usize>;

/// Implements [`TileFamily`] for each family as one call of its [`Plane`] method (the closure-
/// like arms name the arguments; `E`, `R` and `EDGE` are the tile's generic parameters).
macro_rules! tile_families {
    ($(
        impl [$($generics:tt)*] for $family:ty =>
            |$plane:ident, $first_row:ident, $window:ident, $vector:ident, $output:ident| $call:expr;
    )+) => {$(
        impl<$($generics)*> TileFamily for $family {
            #[inline(always)]
            fn tile<S: Simd, E: Epilogue<S::Elem>, const R: usize, const EDGE: bool>(
                $plane: &Plane<'_, S>,
                $first_row: usize,
                $window: &Range<usize>,
                $vector: usize,
                $output: &mut Sink<'_, S::Elem, E>,
            ) {
                let sums = $call;
                $plane.store_rows(&sums, $first_row, $vector, $output);
            }
        }
    )+};
}

tile_families! {
    impl [const STRIDE: usize] for TapByTap<STRIDE> => |plane, first_row, window, vector, output|
        plane.sums::<STRIDE, R, EDGE>(first_row, window.clone(), vector);
    impl [const KH: usize, const KW: usize, const DH: usize] for SharedRows<KH, KW, DH> =>
        |plane, first_row, _window, vector, output|
        plane.sums_sharing_rows::<R, KH, KW, DH, EDGE>(first_row, vector);
    impl [const KH: usize] for StrideTwoSharedRows<KH> =>
        |plane, first_row, _window, vector, output|
        plane.sums_stride_two_sharing_rows::<R, KH, EDGE>(first_row, vector);
}

/// What every tile of a plane reads, with the instructions to read it.
struct Plane<'a, S: Simd> {
    simd: S,
    data: PlaneData<'a, S::Elem>,
}

/// What a stride-2 tap loads for a vector of outputs: the lanes of its pair of input vectors
/// that fall on the row (see [`Plane::pair_columns`]).
type PairColumns = [u32; 2];

impl<S: Simd> Plane<'_, S> {
    /// As [`Plane::sums`] for `KH` window rows `DH` apart, all inside the input: the
    /// `R + (KH − 1)·DH` input rows are each loaded once per tap column and feed every output
    /// row that reads them (3x3: `3R` multiply-adds for `R + 2` loads without dilation,
    /// against one load each in `sums`).
    #[inline(always)]
    fn sums_sharing_rows<
        const R: usize,
        const KH: usize,
        const KW: usize,
        const DH: usize,
        const EDGE: bool,
    >(
        &self,
        first_row: usize,
        vector: usize,
    ) -> [S::Vector; R] {
        let (simd, lanes) = (self.simd, S::LANES);
        let mut acc = [simd.splat(self.data.bias); R];
        // Input row of output row `first_row + r`, window row i: this plus r + i·DH.
        let top = first_row - self.data.pad_top;
        assert!(top + R + (KH - 1) * DH <= self.data.input.len() / self.data.width);
        assert_eq!(self.data.weights.len(), KH * KW);
        for j in 0..KW {
            let offset = vector * lanes + j * self.data.dilation[1];
            let Some(columns) = self.tap_columns::<1, EDGE>(offset) else {
                continue;
            };
            let mut weights = [simd.splat(S::Elem::ZERO); KH];
            for (i, weight) in weights.iter_mut().enumerate() {
                *weight = simd.splat(self.data.weights[i * KW + j]);
            }
            // Input rows in order; row k feeds output row k − i·DH through window row i. (The
            // sum of each output is still bias, then the taps in (i, j) order per column j,
            // rows i ascending: the chain differs from `sums`' (j-major here), which is why
            // a plan runs one of the two for all its rows of a kind.)
            for k in 0..R + (KH - 1) * DH {
                // SAFETY: input row `top + k` is inside the plane (asserted).
                let x = unsafe { self.load_tap::<1, EDGE>(top + k, offset, columns) };
                for (i, &weight) in weights.iter().enumerate() {
                    if k >= i * DH && k - i * DH < R {
                        acc[k - i * DH] = simd.mul_add(weight, x, acc[k - i * DH]);
                    }
                }
            }
        }
        acc
    }

    /// Vector `vector` of columns of output rows `first_row .. first_row + R` at `STRIDE`,
    /// over window rows `rows` (inside the input for every one of the `R` output rows), each
    /// tap loading its inputs per output row; without `EDGE`, every tap's columns lie inside
    /// the input row.
    #[inline(always)]
    fn sums<const STRIDE: usize, const R: usize, const EDGE: bool>(
        &self,
        first_row: usize,
        rows: Range<usize>,
        vector: usize,
    ) -> [S::Vector; R] {
        let (simd, lanes, stride) = (self.simd, S::LANES, STRIDE);
        let mut acc = [simd.splat(self.data.bias); R];
        for i in rows {
            // Input row of output row `first_row + r`: this plus stride·r.
            let top = stride * first_row + i * self.data.dilation[0] - self.data.pad_top;
            assert!(top + stride * (R - 1) < self.data.input.len() / self.data.width);
            for j in 0..self.data.kernel_w {
                let offset = stride * vector * lanes + j * self.data.dilation[1];
                let Some(columns) = self.tap_columns::<STRIDE, EDGE>(offset) else {
                    continue;
                };
                let weight = simd.splat(self.data.weights[i * self.data.kernel_w + j]);
                for (r, sum) in acc.iter_mut().enumerate() {
                    // SAFETY: input row `top + stride·r` is inside the plane (asserted).
                    let x =
                        unsafe { self.load_tap::<STRIDE, EDGE>(top + stride * r, offset, columns) };
                    *sum = simd.mul_add(weight, x, *sum);
                }
            }
        }
        acc
    }

    /// Stride 2, a `KH`xN window without vertical dilation, all of it inside the input:
    /// output row `r` of the block reads input rows `2r .. 2r + KH` (from the block's first),
    /// so the `2(R − 1) + KH` rows are each loaded once per tap column — or per pair of
    /// adjacent columns, whose inputs are the even and the odd lanes of the same two vectors —
    /// and most feed two output rows or more.
    #[inline(always)]
    fn sums_stride_two_sharing_rows<const R: usize, const KH: usize, const EDGE: bool>(
        &self,
        first_row: usize,
        vector: usize,
    ) -> [S::Vector; R] {
        // Input row of output row `first_row + r`, window row i: this plus 2r + i.
        let top = 2 * first_row - self.data.pad_top;
        assert!(top + 2 * (R - 1) + KH <= self.data.input.len() / self.data.width);
        let (simd, lanes) = (self.simd, S::LANES);
        let mut acc = [simd.splat(self.data.bias); R];
        // Tap columns in pairs (j, j + 1) where they are adjacent (no horizontal dilation),
        // else one at a time.
        let step = if self.data.dilation[1] == 1 { 2 } else { 1 };
        for j in (0..self.data.kernel_w).step_by(step) {
            let offset = 2 * vector * lanes + j * self.data.dilation[1];
            let Some(columns) = self.pair_columns::<EDGE>(offset) else {
                continue;
            };
            // (Not `[0, 1, 2].map(..)`: `array::map` is not inlined, and outside this
            // function's target features it spilled every accumulator around a call.)
            let weights = |j: usize| {
                let mut column = [simd.splat(S::Elem::ZERO); KH];
                for (i, weight) in column.iter_mut().enumerate() {
                    *weight = simd.splat(self.data.weights[i * self.data.kernel_w + j]);
                }
                column
            };
            if step == 2 && j + 1 < self.data.kernel_w {
                let (even, odd) = (weights(j), weights(j + 1));
                // SAFETY: input rows `top .. top + 2(R − 1) + KH` are inside the plane
                // (asserted), and `columns` is what `pair_columns` returned for `offset`.
                unsafe {
                    self.rows_stride_two::<R, KH, true, EDGE>(
                        &mut acc, top, offset, columns, even, odd,
                    )
                };
            } else {
                let even = weights(j);
                // SAFETY: as above.
                unsafe {
                    self.rows_stride_two::<R, KH, false, EDGE>(
                        &mut acc, top, offset, columns, even, even,
                    )
                };
            }
        }
        acc
    }

    /// One tap column (or, `PAIRED`, two adjacent ones) of a stride-2 block of `R` output rows
    /// with a window of `KH` rows: output row `r` takes input rows `top + 2r ..` `+ KH`, all
    /// but the first two carried to the next output row. Each output's chain: its taps row by
    /// row, the pair's two columns in order within a row.
    ///
    /// # Safety
    ///
    /// Input rows `top .. top + 2(R − 1) + KH` must be rows of the plane, and `columns` what
    /// `pair_columns` returned for `offset`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn rows_stride_two<
        const R: usize,
        const KH: usize,
        const PAIRED: bool,
        const EDGE: bool,
    >(
        &self,
        acc: &mut [S::Vector; R],
        top: usize,
        offset: usize,
        columns: PairColumns,
        even_weights: [S::Vector; KH],
        odd_weights: [S::Vector; KH],
    ) {
        let simd = self.simd;
        // SAFETY: forwarded from the caller.
        let load = |k: usize| unsafe { self.load_pair::<EDGE>(top + k, offset, columns) };
        let zero = simd.splat(S::Elem::ZERO);
        let mut window = [(zero, zero); KH];
        for (k, rows) in window.iter_mut().enumerate() {
            *rows = load(k);
        }
        for (r, sum) in acc.iter_mut().enumerate() {
            if r > 0 {
                for i in 0..KH - 2 {
                    window[i] = window[i + 2];
                }
                window[KH - 2] = load(2 * r + KH - 2);
                window[KH - 1] = load(2 * r + KH - 1);
            }
            for (i, &(even, odd)) in window.iter().enumerate() {
                *sum = simd.mul_add(even_weights[i], even, *sum);
                if PAIRED {
                    *sum = simd.mul_add(odd_weights[i], odd, *sum);
                }
            }
        }
    }

    /// The lanes of the two vectors of input columns from `offset − pad_left` that fall
    /// inside the row, as masks (see [`Plane::columns`]), or `None` if none do; without
    /// `EDGE`, all of them.
    #[inline(always)]
    fn pair_columns<const EDGE: bool>(&self, offset: usize) -> Option<PairColumns> {
        let lanes = S::LANES;
        let mask = |offset: usize| match self.columns::<EDGE>(offset) {
            Some((first, end)) => lanes_between(first, end),
            None => 0,
        };
        let pair = [mask(offset), mask(offset + lanes)];
        (pair != [0, 0]).then_some(pair)
    }

    /// Input row `row`'s columns `offset − pad_left ..` in steps of two (the even lanes of
    /// two vectors) and those after each (the odd lanes), lanes outside `columns` zero;
    /// without `EDGE`, every lane inside.
    ///
    /// # Safety
    ///
    /// `row` must be a row of the input plane, and `columns` what `pair_columns` returned for
    /// `offset`.
    #[inline(always)]
    unsafe fn load_pair<const EDGE: bool>(
        &self,
        row: usize,
        offset: usize,
        [low, high]: PairColumns,
    ) -> (S::Vector, S::Vector) {
        let base = self.column_address(row, offset);
        // SAFETY: the lanes set in `low` and `high` read the row's columns inside 0..W (the
        // caller's promise); without `EDGE` all 2·LANES of them are.
        unsafe { self.simd.load_deinterleaved::<EDGE>(base, [low, high]) }
    }

    /// The lanes of the vector of input columns from `offset − pad_left` that fall inside the
    /// row (`first..end`), or `None` if none do; without `EDGE`, all of them.
    #[inline(always)]
    fn columns<const EDGE: bool>(&self, offset: usize) -> Option<(usize, usize)> {
        let lanes = S::LANES;
        if !EDGE {
            return Some((0, lanes));
        }
        let first = self.data.pad_left.saturating_sub(offset).min(lanes);
        let end = (self.data.width + self.data.pad_left)
            .saturating_sub(offset)
            .min(lanes);
        (first < end).then_some((first, end))
    }

    /// The lanes inside the row of a tap at `STRIDE` whose first input column is
    /// `offset − pad_left`: at stride 1, of its vector (the second mask unused); at stride 2,
    /// of its pair of vectors. `None` if none are; without `EDGE`, all of them.
    #[inline(always)]
    fn tap_columns<const STRIDE: usize, const EDGE: bool>(
        &self,
        offset: usize,
    ) -> Option<PairColumns> {
        if STRIDE == 2 {
            return self.pair_columns::<EDGE>(offset);
        }
        let (first, end) = self.columns::<EDGE>(offset)?;
        Some([lanes_between(first, end), 0])
    }

    /// A tap's inputs at `STRIDE` from input row `row`, lanes outside `columns` zero: at
    /// stride 1 the vector of columns `offset − pad_left ..`, at stride 2 the even lanes of
    /// its pair ([`Plane::load_pair`]).
    ///
    /// # Safety
    ///
    /// `row` must be a row of the input plane, and `columns` what `tap_columns` returned for
    /// `offset`.
    #[inline(always)]
    unsafe fn load_tap<const STRIDE: usize, const EDGE: bool>(
        &self,
        row: usize,
        offset: usize,
        columns: PairColumns,
    ) -> S::Vector {
        if STRIDE == 2 {
            // SAFETY: forwarded from the caller.
            return unsafe { self.load_pair::<EDGE>(row, offset, columns).0 };
        }
        let (base, mask) = (self.column_address(row, offset), columns[0]);
        // SAFETY: the lanes set in `mask` read the row's columns inside 0..W (the caller's
        // promise); all LANES when whole.
        unsafe {
            if !EDGE || mask == lanes_between(0, S::LANES) {
                self.simd.load(base)
            } else {
                self.simd.load_masked(base, mask)
            }
        }
    }

    /// Where input column `offset − pad_left` of row `row` would lie (outside the row in the
    /// padding: never dereferenced there, the masks leave those lanes out).
    #[inline(always)]
    fn column_address(&self, row: usize, offset: usize) -> *const S::Elem {
        self.data
            .input
            .as_ptr()
            .wrapping_add(row * self.data.width + offset)
            .wrapping_sub(self.data.pad_left)
    }

    /// Stores `R` vectors as vector `vector` of output rows `first_row ..`, the last vector
    /// of a row masked to its end.
    #[inline(always)]
    fn store_rows<E: Epilogue<S::Elem>, const R: usize>(
        &self,
        acc: &[S::Vector; R],
        first_row: usize,
        vector: usize,
        output: &mut Sink<'_, S::Elem, E>,
    ) {
        let (lanes, out_w) = (S::LANES, self.data.out_w);
        let first_output = vector * lanes;
        let count = (out_w - first_output).min(lanes);
        let at = first_row * out_w + first_output;
        output.store_rows(self.simd, at, out_w, acc, count);
    }
}
