//! Depthwise convolution with channels in vector lanes, for planes too small to fill vectors.
//!
//! The flat kernels vectorise along output positions: on a 7×7 or 14×14 plane most of a
//! vector is padding columns or tail, and every channel pays for its own packing and tiles.
//! Here a task takes `LANES` consecutive channels of a depthwise convolution (one filter per
//! channel), copies their zero-padded input into a `[row][column][lane]` block, and computes
//! every output position as one vector of `LANES` channels: `kH·kW` fused multiply-adds of
//! per-channel weight vectors, for any stride and dilation, with no lane wasted. Two output
//! rows that read the same input rows (with stride 1 and no dilation, neighbours) are computed
//! together, each input vector loaded once for both. The `[position][lane]` result is
//! transposed back to NCHW on its way to the output.
//!
//! On AVX-512 it runs with 16 lanes where 512-bit vectors run at full width and the block
//! stays in L1, else with the tier's 256-bit subset ([`tier_for`]): on a CPU that splits
//! 512-bit operations the wider vector does no more arithmetic per cycle, and its 16x16
//! transposes cost more shuffles per element than 8x8 ones (see `TUNING.md`,
//! `depthwise-lanes`).

use std::sync::Arc;

use gconv_shape::Geometry;

use super::super::{ForwardKernel, Parts};
use crate::epilogue::{Epilogue, Sink};
use crate::exec::workspace::{Output, Workspace};
use crate::pack::copy::copy;
use crate::select::Problem;
use crate::simd::{Element, MAX_LANES, Simd, WithSimd, dispatch, lanes_of};
use crate::weights::Order;
use crate::{CpuClass, Error, Isa};

/// Outputs along a row computed together where a row is alone: independent sums that keep
/// both FMA units busy through their latency.
const ROW_TILE: usize = 8;

/// The outputs along each of two paired rows computed together on `tier`: with 32 vector
/// registers 8 (16 sums, two weights and an input), with 16 registers 4.
fn paired_tile(tier: Isa) -> usize {
    match tier.registers() {
        32 => 8,
        _ => 4,
    }
}

/// Lanes from which a block's last, partial square of positions is transposed as a whole
/// square overlapping the one before: faster with 16 lanes, slower with 8 (`TUNING.md`,
/// `depthwise-lanes`).
const OVERLAP_MIN_LANES: usize = 16;

/// Input vectors a sliding row holds at most: [`ROW_TILE`] outputs of a 7-wide window.
const MAX_SLIDING_INPUTS: usize = ROW_TILE + 7 - 1;

/// The kernel width of `geometry` if its rows suit sliding tiles: taps of a row reading
/// consecutive input vectors (stride and dilation 1 along rows), a width they are built for.
fn sliding_width(geometry: &Geometry) -> Option<usize> {
    let kernel_w = geometry.kernel_size()[1];
    let consecutive = geometry.stride()[1] == 1 && geometry.dilation()[1] == 1;
    (consecutive && matches!(kernel_w, 3 | 5 | 7)).then_some(kernel_w)
}

/// Vector registers a sliding tile of `positions` outputs along each of `rows` rows uses for
/// a `kernel_w`-wide window: its sums, one kernel row's inputs and a weight per row.
const fn sliding_registers(positions: usize, kernel_w: usize, rows: usize) -> usize {
    rows * positions + positions + kernel_w - 1 + rows
}

/// The outputs of the kernel's largest register tile on `tier` for `geometry`: two rows'
/// worth where rows are paired, else a row's.
pub(crate) fn tile_positions(geometry: &Geometry, tier: Isa) -> usize {
    match Pairing::of(geometry) {
        Some(_) => 2 * paired_tile(tier),
        None => ROW_TILE,
    }
}

/// The 256-bit tier of a plan of tier `isa`: on AVX-512, its AVX2 subset (an AVX-512 tier
/// includes AVX2 and FMA, see `Isa::is_supported`).
pub(crate) fn narrow_tier(isa: Isa) -> Isa {
    match isa {
        Isa::X86_64V4 => Isa::X86_64V3,
        other => other,
    }
}

/// Bytes of a padded block of 16 channels in lanes up to which 512-bit lanes run it on a
/// full-width CPU: what stays in L1 beside the weights (`TUNING.md`, `depthwise-lanes`).
const WIDE_BLOCK_BUDGET: u128 = 32 * 1024;

/// The tier the kernel runs `geometry` on for a plan of tier `isa` on a CPU of class `cpu`:
/// the plan's 512-bit vectors where they run at full width, the channels fill them and the
/// padded block stays in L1; otherwise the 256-bit subset.
pub(crate) fn tier_for(geometry: &Geometry, isa: Isa, cpu: CpuClass) -> Isa {
    let wide = isa == Isa::X86_64V4
        && cpu == CpuClass::Full512
        && suits(geometry, isa)
        && block_bytes(geometry, isa) <= WIDE_BLOCK_BUDGET;
    if wide { isa } else { narrow_tier(isa) }
}

/// Bytes of the problem's padded plane as a block of `f32` channels in the lanes of `tier`.
pub(crate) fn block_bytes(geometry: &Geometry, tier: Isa) -> u128 {
    let [height, width] = geometry.input_size();
    let padding = geometry.padding();
    // In u128: absurd padding can make these products exceed usize.
    let padded_h = height as u128 + padding.top as u128 + padding.bottom as u128;
    let padded_w = width as u128 + padding.left as u128 + padding.right as u128;
    padded_h * padded_w * tier.vector_bytes() as u128
}

/// Whether `geometry` suits this kernel on `tier`: depthwise with multiplier 1 and channels a
/// multiple of the lanes.
pub(crate) fn suits(geometry: &Geometry, tier: Isa) -> bool {
    geometry.in_channels_per_group() == 1
        && geometry.out_channels_per_group() == 1
        && geometry.in_channels().is_multiple_of(tier.lanes())
}

/// A depthwise convolution (one input channel and one filter per group, multiplier 1)
/// prepared for the channels-in-lanes kernel.
#[derive(Debug)]
pub(crate) struct LanesEngine<T, E> {
    geometry: Geometry,
    /// The tier it runs on ([`tier_for`] the plan's).
    isa: Isa,
    lanes: usize,
    padded: [usize; 2],
    /// `[channel block][tap][lane]`: register blocks of one vector ([`Order::Blocks`]).
    weights: Arc<[T]>,
    /// `[channel block][lane]`.
    bias: Arc<[T]>,
    /// Per kernel row, the offset of its input from a window's top-left corner in the padded
    /// block (`i·dH·padded_w·LANES`).
    row_offsets: Vec<usize>,
    /// Per kernel column, the offset of its input from a window's left edge (`j·dW·LANES`).
    column_offsets: Vec<usize>,
    /// Output rows `oh` and `oh + rows_apart` read the same input rows, the second's kernel
    /// row `i` being the first's `i + taps_apart` (`rows_apart·sH = taps_apart·dH`), when
    /// `taps_apart < kH`; `None` where no two rows share one.
    pairs: Option<Pairing>,
    /// Per output row, the offset of its first window's top-left corner in the padded block;
    /// the row's next windows follow `stride_w · LANES` elements apart.
    row_windows: Vec<usize>,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> LanesEngine<T, E> {
    /// The engine for the problem of `parts` (which [`suits`] it) on tier `isa`: the plan's
    /// or, on AVX-512, its 256-bit subset ([`tier_for`]).
    pub fn new(parts: Parts<'_, T, E>, isa: Isa) -> Result<Self, Error> {
        let Problem { geometry, .. } = parts.problem;
        let lanes = lanes_of::<T>(isa);
        let padding = geometry.padding();
        let [height, width] = geometry.input_size();
        let padded_w = width + padding.left + padding.right;
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let [dilation_h, dilation_w] = geometry.dilation();
        // Offset in the padded block of padded pixel (row, column), `None` past usize.
        let offset = |row: usize, column: usize| {
            row.checked_mul(padded_w)
                .and_then(|start| start.checked_add(column))
                .and_then(|pixel| pixel.checked_mul(lanes))
        };
        let too_large = Error::TooLarge {
            what: "the padded block of the channels-in-lanes kernel",
        };
        let row_offsets = (0..kernel_h)
            .map(|i| offset(i * dilation_h, 0))
            .collect::<Option<Vec<usize>>>()
            .ok_or(too_large.clone())?;
        let column_offsets = (0..kernel_w)
            .map(|j| offset(0, j * dilation_w))
            .collect::<Option<Vec<usize>>>()
            .ok_or(too_large.clone())?;
        // Whole taps' reach fits: the last tap is the furthest.
        offset((kernel_h - 1) * dilation_h, (kernel_w - 1) * dilation_w)
            .ok_or(too_large.clone())?;
        let [out_h, out_w] = geometry.output_size();
        let [stride_h, stride_w] = geometry.stride();
        // The last window of each row is the furthest: if it fits, every window does.
        let row_windows = (0..out_h)
            .map(|oh| {
                offset(oh * stride_h, (out_w - 1) * stride_w).and_then(|_| offset(oh * stride_h, 0))
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or(too_large)?;
        // Sums that Geometry checked: each padded extent fits in usize.
        Ok(LanesEngine {
            geometry: *geometry,
            isa,
            lanes,
            padded: [height + padding.top + padding.bottom, padded_w],
            weights: parts
                .weights
                .packed_in(Order::blocks(vec![lanes]), geometry),
            bias: parts.weights.bias_or_zeros(geometry),
            row_offsets,
            column_offsets,
            pairs: Pairing::of(geometry),
            row_windows,
            epilogue: parts.epilogue,
        })
    }
}

impl<T: Element, E: Epilogue<T>> ForwardKernel<T> for LanesEngine<T, E> {
    /// The padded input block, then the output block, which also stages the input of rows
    /// that are not whole vectors (saturating: an absurd size is refused by the plan, not
    /// wrapped).
    fn scratch_len(&self) -> usize {
        let [out_h, out_w] = self.geometry.output_size();
        let [height, width] = self.geometry.input_size();
        self.padded[0]
            .saturating_mul(self.padded[1])
            .saturating_add((out_h * out_w).max(height * width))
            .saturating_mul(self.lanes)
    }

    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool) {
        let image = self.geometry.input_size()[0] * self.geometry.input_size()[1];
        let block_input = self.lanes * image;
        let [out_h, out_w] = self.geometry.output_size();
        let block_output = self.lanes * out_h * out_w;
        let blocks_per_sample = self.geometry.out_channels() / self.lanes;
        // Channels are a multiple of the lanes, so blocks never straddle two samples.
        workspace.for_each_chunk(
            parallel,
            output,
            self.epilogue,
            block_output,
            |scratch, block, sink| {
                let args = BlockArgs {
                    engine: self,
                    input: &input[block * block_input..][..block_input],
                    block: block % blocks_per_sample,
                    sink,
                    scratch,
                };
                dispatch(self.isa, args);
            },
        );
    }
}

/// One task: `LANES` channels of one sample.
struct BlockArgs<'a, 's, T, E> {
    engine: &'a LanesEngine<T, E>,
    /// The block's input planes, `LANES × H × W`.
    input: &'a [T],
    /// Index of the channel block within the sample.
    block: usize,
    /// The block's output planes, `LANES × H_out × W_out`.
    sink: Sink<'s, T, E>,
    scratch: &'a mut [T],
}

impl<T: Element, E: Epilogue<T>> WithSimd<T> for BlockArgs<'_, '_, T, E> {
    /// Transposes the block's input into `[padded row][padded column][lane]` with zero
    /// borders, convolves every output position as one vector, and stores the result
    /// transposed back.
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let (engine, input, block, scratch) = (self.engine, self.input, self.block, self.scratch);
        let mut sink = self.sink;
        assert_eq!(S::LANES, engine.lanes);
        let [padded_h, padded_w] = engine.padded;
        let [height, width] = engine.geometry.input_size();
        let [out_h, out_w] = engine.geometry.output_size();
        let (padded, staging) = scratch.split_at_mut(padded_h * padded_w * S::LANES);
        let staging = &mut staging[..(height * width).max(out_h * out_w) * S::LANES];
        engine.pad_block(simd, input, padded, staging);
        let transposed = &mut staging[..out_h * out_w * S::LANES];
        engine.convolve_block(simd, padded, block, transposed);
        store_planes(simd, transposed, &mut sink);
    }
}

impl<T: Element, E: Epilogue<T>> LanesEngine<T, E> {
    /// The block's input planes to `[row][column][lane]` in `padded`, zeros around them. Rows
    /// of whole vectors go straight in, `LANES × LANES` squares by shuffles; other widths (7,
    /// 14, 28) are transposed as one flat run of positions into `staging`, then copied row by
    /// row, rather than an element at a time.
    #[inline(always)]
    fn pad_block<S: Simd<Elem = T>>(
        &self,
        simd: S,
        input: &[T],
        padded: &mut [T],
        staging: &mut [T],
    ) {
        let lanes = S::LANES;
        let [height, width] = self.geometry.input_size();
        let padding = self.geometry.padding();
        let padded_w = self.padded[1];
        let image = height * width;
        zero_border(simd, padded, [height, width], padding);
        assert_eq!(input.len(), lanes * image);
        if width.is_multiple_of(lanes) {
            for row in 0..height {
                let target_row = ((row + padding.top) * padded_w + padding.left) * lanes;
                for column in (0..width).step_by(lanes) {
                    let target = &mut padded[target_row + column * lanes..][..lanes * lanes];
                    let first = row * width + column;
                    // SAFETY: source row `lane` is `input[lane · image + first..][..LANES]`,
                    // inside `input` (column + LANES <= width); `target` holds LANES rows of
                    // LANES elements.
                    unsafe {
                        simd.transpose_square(
                            input[first..].as_ptr(),
                            image,
                            target.as_mut_ptr(),
                            lanes,
                        )
                    };
                }
            }
        } else {
            let staged = &mut staging[..image * lanes];
            transpose_planes(simd, input, image, staged);
            for (row, source) in staged.chunks_exact(width * lanes).enumerate() {
                let target_row = ((row + padding.top) * padded_w + padding.left) * lanes;
                copy(simd, source, &mut padded[target_row..][..width * lanes]);
            }
        }
    }

    /// Every output position of channel block `block` as one vector, into `transposed` as
    /// `[position][lane]`.
    #[inline(always)]
    fn convolve_block<S: Simd<Elem = T>>(
        &self,
        simd: S,
        padded: &[T],
        block: usize,
        transposed: &mut [T],
    ) {
        let lanes = S::LANES;
        let taps = self.geometry.reduction_len();
        let window = Window {
            simd,
            padded,
            weights: &self.weights[block * taps * lanes..][..taps * lanes],
            row_offsets: &self.row_offsets,
            column_offsets: &self.column_offsets,
            row_windows: &self.row_windows,
            step: self.geometry.stride()[1] * lanes,
            out_w: self.geometry.output_size()[1],
            paired_tile: paired_tile(self.isa),
            sliding_width: sliding_width(&self.geometry),
            registers: self.isa.registers(),
            bias: simd.load_from(&self.bias[block * lanes..]),
        };
        window.plane(self.pairs, transposed);
    }
}

/// Two output rows that read the same input rows: `oh` and `oh + rows_apart`, the second's
/// kernel row `i` reading the first's kernel row `i + taps_apart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pairing {
    rows_apart: usize,
    taps_apart: usize,
}

impl Pairing {
    /// Rows `m` apart share input rows when `m·sH` is a multiple of `dH`: the smallest such
    /// `m` is `dH / gcd(sH, dH)`, its shift `sH / gcd(sH, dH)` taps; they share some when the
    /// shift is shorter than the window.
    fn of(geometry: &Geometry) -> Option<Pairing> {
        let (stride, dilation) = (geometry.stride()[0], geometry.dilation()[0]);
        let divisor = gcd(stride, dilation);
        let pairing = Pairing {
            rows_apart: dilation / divisor,
            taps_apart: stride / divisor,
        };
        let [out_h, _] = geometry.output_size();
        (pairing.taps_apart < geometry.kernel_size()[0] && pairing.rows_apart < out_h)
            .then_some(pairing)
    }
}

/// Greatest common divisor (stride and dilation are at least 1).
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Zeros the padding around the `height × width` plane in the padded `[row][column][lane]`
/// block: the top and bottom rows (long runs, filled whole) and each row's two ends (a few
/// vectors each, stored as vectors: too short for a `memset` call to pay).
#[inline(always)]
fn zero_border<S: Simd>(
    simd: S,
    padded: &mut [S::Elem],
    [height, width]: [usize; 2],
    padding: gconv_shape::PaddingPerSide,
) {
    let lanes = S::LANES;
    let zero = simd.splat(S::Elem::ZERO);
    let zero_vectors = |run: &mut [S::Elem]| {
        for vector in run.chunks_exact_mut(lanes) {
            simd.store_into(vector, zero);
        }
    };
    let padded_w = (padding.left + width + padding.right) * lanes;
    let (top, rest) = padded.split_at_mut(padding.top * padded_w);
    top.fill(S::Elem::ZERO);
    let (interior, bottom) = rest.split_at_mut(height * padded_w);
    bottom[..padding.bottom * padded_w].fill(S::Elem::ZERO);
    for row in interior.chunks_exact_mut(padded_w) {
        let (left, rest) = row.split_at_mut(padding.left * lanes);
        zero_vectors(left);
        zero_vectors(&mut rest[width * lanes..]);
    }
}

/// `[position][lane]` sums of a block (`transposed`) back to its `LANES` NCHW planes in
/// `sink`, squares of `LANES` positions at a time. With [`OVERLAP_MIN_LANES`] and a plane of
/// at least `LANES` positions the last square ends at the plane's end, overlapping the one
/// before (its positions stored twice, the same values), rather than a partial square's
/// detour through the stack.
#[inline(always)]
fn store_planes<S: Simd, E: Epilogue<S::Elem>>(
    simd: S,
    transposed: &[S::Elem],
    sink: &mut Sink<'_, S::Elem, E>,
) {
    let lanes = S::LANES;
    let out_plane = transposed.len() / lanes;
    assert_eq!(sink.len(), lanes * out_plane);
    for position in (0..out_plane).step_by(lanes) {
        let (start, count) = match out_plane - position {
            left if left >= lanes => (position, lanes),
            _ if out_plane >= lanes && lanes >= OVERLAP_MIN_LANES => (out_plane - lanes, lanes),
            left => (position, left),
        };
        let square = &transposed[start * lanes..][..count * lanes];
        sink.store_transposed(simd, square, count, start, out_plane);
    }
}

/// `LANES` planes of `image` positions each (`planes`, one after the other) to
/// `[position][lane]` in `target`: squares by shuffles, the last one overlapping the one
/// before where [`OVERLAP_MIN_LANES`] allows and there are at least `LANES` positions, else
/// through [`transpose_part`].
#[inline(always)]
fn transpose_planes<S: Simd>(simd: S, planes: &[S::Elem], image: usize, target: &mut [S::Elem]) {
    let lanes = S::LANES;
    assert_eq!(planes.len(), lanes * image);
    assert_eq!(target.len(), lanes * image);
    let whole_positions = image / lanes * lanes;
    for position in (0..whole_positions).step_by(lanes) {
        transpose_square_at(simd, planes, image, target, position);
    }
    let rest = image - whole_positions;
    if rest > 0 && image >= lanes && lanes >= OVERLAP_MIN_LANES {
        // The last square ends at the planes' end, overlapping the one before (which wrote
        // the same values there).
        transpose_square_at(simd, planes, image, target, image - lanes);
    } else if rest > 0 {
        // SAFETY: source row `lane` holds `rest` elements at `planes[lane · image +
        // whole_positions..]`; the target is the last `rest · LANES` elements of `target`.
        unsafe {
            transpose_part(
                simd,
                planes[whole_positions..].as_ptr(),
                image,
                [lanes, rest],
                target[whole_positions * lanes..].as_mut_ptr(),
                lanes,
            )
        };
    }
}

/// The square of positions `position..position + LANES` of [`transpose_planes`].
#[inline(always)]
fn transpose_square_at<S: Simd>(
    simd: S,
    planes: &[S::Elem],
    image: usize,
    target: &mut [S::Elem],
    position: usize,
) {
    let lanes = S::LANES;
    assert!(position + lanes <= image);
    // SAFETY: source row `lane` is `planes[lane · image + position..][..LANES]`, inside
    // `planes` (`LANES × image` elements, asserted by the caller); the target square is
    // `target[position · LANES..][..LANES²]`, bounds-checked here.
    unsafe {
        simd.transpose_square(
            planes[position..].as_ptr(),
            image,
            target[position * lanes..][..lanes * lanes].as_mut_ptr(),
            lanes,
        )
    };
}

/// Transposes the `rows × columns` block at `source` (rows `source_stride` elements apart)
/// into the `columns × rows` block at `target` (rows `target_stride` apart), both sides at
/// most `LANES`, through zero-padded squares on the stack. Whole vectors in and out of the
/// squares, so no load waits on a narrower store.
///
/// # Safety
///
/// `rows, columns <= LANES`; the `columns` elements of each source row must be readable and the
/// `rows` elements of each target row writable.
#[inline(always)]
unsafe fn transpose_part<S: Simd>(
    simd: S,
    source: *const S::Elem,
    source_stride: usize,
    [rows, columns]: [usize; 2],
    target: *mut S::Elem,
    target_stride: usize,
) {
    let lanes = S::LANES;
    debug_assert!(rows <= lanes && columns <= lanes);
    let mut square = [S::Elem::ZERO; MAX_LANES * MAX_LANES];
    let mut transposed = [S::Elem::ZERO; MAX_LANES * MAX_LANES];
    // SAFETY: the caller's promises for `source` and `target`; the squares hold LANES rows of
    // LANES elements (LANES <= 16).
    unsafe {
        for row in 0..rows {
            let values = simd.load_first(source.add(row * source_stride), columns);
            simd.store(square.as_mut_ptr().add(row * lanes), values);
        }
        simd.transpose_square(square.as_ptr(), lanes, transposed.as_mut_ptr(), lanes);
        for column in 0..columns {
            let values = simd.load(transposed.as_ptr().add(column * lanes));
            simd.store_lanes(target.add(column * target_stride), values, 0, rows);
        }
    }
}

/// What every tile of a block reads: the padded input, the taps' weights and input offsets.
struct Window<'a, S: Simd> {
    simd: S,
    padded: &'a [S::Elem],
    /// `[tap][lane]`.
    weights: &'a [S::Elem],
    row_offsets: &'a [usize],
    column_offsets: &'a [usize],
    /// Per output row, its first window's offset in `padded`.
    row_windows: &'a [usize],
    /// Elements between the windows of neighbouring outputs of a row: `stride_w · LANES`.
    step: usize,
    /// Outputs per row.
    out_w: usize,
    /// Outputs per tile along each of two paired rows: [`paired_tile`] of the tier.
    paired_tile: usize,
    /// The kernel's width where a row's taps read consecutive input vectors (stride and
    /// dilation 1 along rows) and it is one the sliding tiles are built for (3, 5, 7).
    sliding_width: Option<usize>,
    /// Vector registers of the tier: the sliding tiles run only where theirs fit.
    registers: usize,
    bias: S::Vector,
}

impl<S: Simd> Window<'_, S> {
    /// Every output row into `outputs` as `[position][lane]`: rows two at a time where a
    /// pairing lets them share their input loads (rows `oh` and `oh + m` of each run of `2m`
    /// rows), the rest alone.
    ///
    /// Register tile: `P` outputs along a row, [`ROW_TILE`] for a row alone and
    /// [`paired_tile`] for each of two paired rows; the row's last outputs one tile of the
    /// rest. Loop order within a tile: kernel rows, kernel columns, then the tile's outputs,
    /// each a multiply-add whose input is loaded once for both rows. A tile keeps to its rows,
    /// so its windows are one base address and constant steps. Where a row's taps read
    /// consecutive vectors and the registers allow, a *sliding* tile loads each kernel row's
    /// `P + kW − 1` inputs once and takes every tap's products from registers (a load per
    /// `kW` outputs' worth of taps rather than one per multiply-add); the order of each
    /// output's sum is the same.
    #[inline(always)]
    fn plane(&self, pairing: Option<Pairing>, outputs: &mut [S::Elem]) {
        let out_h = self.row_windows.len();
        let Some(Pairing {
            rows_apart,
            taps_apart,
        }) = pairing
        else {
            for row in 0..out_h {
                self.row(row, None, outputs);
            }
            return;
        };
        for run in (0..out_h).step_by(2 * rows_apart) {
            for first in run..(run + rows_apart).min(out_h) {
                let second = first + rows_apart;
                let pair = (second < out_h).then_some((second, taps_apart));
                self.row(first, pair, outputs);
            }
        }
    }

    /// Output row `first`, and with it `(second, taps_apart)` if paired, in tiles of `P`.
    #[inline(always)]
    fn row(&self, first: usize, pair: Option<(usize, usize)>, outputs: &mut [S::Elem]) {
        match (pair, self.paired_tile) {
            (None, _) => self.row_in_tiles::<ROW_TILE>(first, None, outputs),
            (Some(_), 8) => self.row_in_tiles::<8>(first, pair, outputs),
            (Some(_), _) => self.row_in_tiles::<4>(first, pair, outputs),
        }
    }

    #[inline(always)]
    fn row_in_tiles<const P: usize>(
        &self,
        first: usize,
        pair: Option<(usize, usize)>,
        outputs: &mut [S::Elem],
    ) {
        let mut column = 0;
        while self.out_w - column >= P {
            self.tile::<P>(first, pair, column, outputs);
            column += P;
        }
        macro_rules! rest {
            ($($size:literal),*) => {
                match self.out_w - column {
                    $($size if $size < P => self.tile::<$size>(first, pair, column, outputs),)*
                    _ => {}
                }
            };
        }
        rest!(1, 2, 3, 4, 5, 6, 7);
    }

    /// Outputs `column..column + P` of row `first`, and of row `second` if paired: on a
    /// sliding tile where the window's rows suit one and its registers fit the tier's.
    #[inline(always)]
    fn tile<const P: usize>(
        &self,
        first: usize,
        pair: Option<(usize, usize)>,
        column: usize,
        outputs: &mut [S::Elem],
    ) {
        let rows = if pair.is_some() { 2 } else { 1 };
        let fits = |kernel_w: usize| sliding_registers(P, kernel_w, rows) <= self.registers;
        match self.sliding_width {
            Some(3) if fits(3) => self.tile_with::<P, 3>(first, pair, column, outputs),
            Some(5) if fits(5) => self.tile_with::<P, 5>(first, pair, column, outputs),
            Some(7) if fits(7) => self.tile_with::<P, 7>(first, pair, column, outputs),
            _ => self.tile_with::<P, 0>(first, pair, column, outputs),
        }
    }

    /// [`Window::tile`] with sliding rows of `KW` taps, or (`KW` = 0) loads per tap.
    #[inline(always)]
    fn tile_with<const P: usize, const KW: usize>(
        &self,
        first: usize,
        pair: Option<(usize, usize)>,
        column: usize,
        outputs: &mut [S::Elem],
    ) {
        let kernel_h = self.row_offsets.len();
        let origin = |row: usize| {
            // Every window of the tile lies inside the padded block, so these pointers and
            // those derived from them below stay inside it.
            self.padded
                .as_ptr()
                .wrapping_add(self.row_windows[row] + column * self.step)
        };
        let mut sums = [self.bias; P];
        match pair {
            None => {
                self.add_rows::<P, KW>(origin(first), 0..kernel_h, 0, &mut sums);
            }
            Some((second, taps_apart)) => {
                let mut second_sums = [self.bias; P];
                // Kernel rows only the first row reads, those both read, those only the second.
                self.add_rows::<P, KW>(origin(first), 0..taps_apart, 0, &mut sums);
                self.add_shared_rows::<P, KW>(
                    origin(first),
                    taps_apart..kernel_h,
                    taps_apart,
                    [&mut sums, &mut second_sums],
                );
                self.add_rows::<P, KW>(
                    origin(second),
                    kernel_h - taps_apart..kernel_h,
                    0,
                    &mut second_sums,
                );
                self.store(second, column, &second_sums, outputs);
            }
        }
        self.store(first, column, &sums, outputs);
    }

    /// Kernel rows `rows` (input rows read from `origin`) added to `sums` with the weights of
    /// kernel rows `rows − taps_back`: a sliding row of `KW` taps, or (`KW` = 0) a load per
    /// tap and output.
    #[inline(always)]
    fn add_rows<const P: usize, const KW: usize>(
        &self,
        origin: *const S::Elem,
        rows: std::ops::Range<usize>,
        taps_back: usize,
        sums: &mut [S::Vector; P],
    ) {
        let (simd, lanes) = (self.simd, S::LANES);
        let kernel_w = self.column_offsets.len();
        if KW > 0 {
            debug_assert_eq!(kernel_w, KW);
            for i in rows {
                let inputs = self.sliding_inputs::<P, KW>(origin.wrapping_add(self.row_offsets[i]));
                let row_weights = &self.weights[(i - taps_back) * KW * lanes..][..KW * lanes];
                for j in 0..KW {
                    let weights = simd.load_from(&row_weights[j * lanes..]);
                    for (p, sum) in sums.iter_mut().enumerate() {
                        *sum = simd.mul_add(weights, inputs[p + j], *sum);
                    }
                }
            }
            return;
        }
        for i in rows {
            let row_origin = origin.wrapping_add(self.row_offsets[i]);
            let row_weights =
                &self.weights[(i - taps_back) * kernel_w * lanes..][..kernel_w * lanes];
            for (&column_offset, weights) in self
                .column_offsets
                .iter()
                .zip(row_weights.chunks_exact(lanes))
            {
                let weights = simd.load_from(weights);
                let tap_origin = row_origin.wrapping_add(column_offset);
                for (p, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: output (oh, ow) reads padded pixel (oh·sH + i·dH, ow·sW + j·dW),
                    // inside the padded block (its extents are the outputs' reach), so the
                    // LANES elements at its window's offset plus the tap's are in `padded`.
                    let x = unsafe { simd.load(tap_origin.wrapping_add(p * self.step)) };
                    *sum = simd.mul_add(weights, x, *sum);
                }
            }
        }
    }

    /// Kernel rows `rows` of the first row of a pair (read from its `origin`), which are the
    /// second's kernel rows `rows − taps_apart`: each input loaded once for both.
    #[inline(always)]
    fn add_shared_rows<const P: usize, const KW: usize>(
        &self,
        origin: *const S::Elem,
        rows: std::ops::Range<usize>,
        taps_apart: usize,
        [first, second]: [&mut [S::Vector; P]; 2],
    ) {
        let (simd, lanes) = (self.simd, S::LANES);
        let kernel_w = self.column_offsets.len();
        if KW > 0 {
            debug_assert_eq!(kernel_w, KW);
            for i in rows {
                let inputs = self.sliding_inputs::<P, KW>(origin.wrapping_add(self.row_offsets[i]));
                let first_weights = &self.weights[i * KW * lanes..][..KW * lanes];
                let second_weights = &self.weights[(i - taps_apart) * KW * lanes..][..KW * lanes];
                for j in 0..KW {
                    let first_weight = simd.load_from(&first_weights[j * lanes..]);
                    let second_weight = simd.load_from(&second_weights[j * lanes..]);
                    for (p, (first_sum, second_sum)) in
                        first.iter_mut().zip(second.iter_mut()).enumerate()
                    {
                        *first_sum = simd.mul_add(first_weight, inputs[p + j], *first_sum);
                        *second_sum = simd.mul_add(second_weight, inputs[p + j], *second_sum);
                    }
                }
            }
            return;
        }
        for i in rows {
            let row_origin = origin.wrapping_add(self.row_offsets[i]);
            let first_weights = &self.weights[i * kernel_w * lanes..][..kernel_w * lanes];
            let second_weights =
                &self.weights[(i - taps_apart) * kernel_w * lanes..][..kernel_w * lanes];
            for (j, &column_offset) in self.column_offsets.iter().enumerate() {
                let first_weight = simd.load_from(&first_weights[j * lanes..]);
                let second_weight = simd.load_from(&second_weights[j * lanes..]);
                let tap_origin = row_origin.wrapping_add(column_offset);
                for (p, (first_sum, second_sum)) in
                    first.iter_mut().zip(second.iter_mut()).enumerate()
                {
                    // SAFETY: as in `add_rows`: this is the first row's window plus its tap
                    // (the second row's window plus its tap `i − taps_apart` is the same
                    // input), inside `padded`.
                    let x = unsafe { simd.load(tap_origin.wrapping_add(p * self.step)) };
                    *first_sum = simd.mul_add(first_weight, x, *first_sum);
                    *second_sum = simd.mul_add(second_weight, x, *second_sum);
                }
            }
        }
    }

    /// The `P + KW − 1` consecutive input vectors a sliding row of a tile reads from
    /// `row_origin` (its first window's kernel row); the rest of the array unused.
    #[inline(always)]
    fn sliding_inputs<const P: usize, const KW: usize>(
        &self,
        row_origin: *const S::Elem,
    ) -> [S::Vector; MAX_SLIDING_INPUTS] {
        let simd = self.simd;
        let mut inputs = [simd.splat(S::Elem::ZERO); MAX_SLIDING_INPUTS];
        for (k, input) in inputs.iter_mut().take(P + KW - 1).enumerate() {
            // SAFETY: with consecutive taps (stride and dilation 1 along rows), output `p` of
            // the tile reads input vectors `p..p + KW` from its row's origin: vector `k` is
            // one that output `min(k, P − 1)` reads, inside `padded` as in `add_rows`.
            *input = unsafe { simd.load(row_origin.wrapping_add(k * S::LANES)) };
        }
        inputs
    }

    /// A tile's sums to `outputs` as `[position][lane]`.
    #[inline(always)]
    fn store<const P: usize>(
        &self,
        row: usize,
        column: usize,
        sums: &[S::Vector; P],
        outputs: &mut [S::Elem],
    ) {
        let first = row * self.out_w + column;
        for (p, &sum) in sums.iter().enumerate() {
            self.simd
                .store_into(&mut outputs[(first + p) * S::LANES..], sum);
        }
    }
}
