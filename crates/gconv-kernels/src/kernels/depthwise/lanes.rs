//! Depthwise convolution with channels in vector lanes, for planes too small to fill vectors.
//!
//! The flat kernels vectorise along output positions: on a 7×7 or 14×14 plane most of a
//! vector is padding columns or tail, and every channel pays for its own packing and tiles.
//! Here a task takes `LANES` consecutive channels of a depthwise convolution (one filter per
//! channel), copies their zero-padded input into a `[row][column][lane]` block, and computes
//! every output position as one vector of `LANES` channels: `kH·kW` loads and fused
//! multiply-adds against per-channel weight vectors held in registers, for any stride and
//! dilation, with no lane wasted. The `[position][lane]` result is transposed back to NCHW
//! on its way to the output.
//!
//! On AVX-512 it runs with the tier's AVX2 subset ([`tier`]): its 16x16 transposes cost 64
//! shuffles on the one 512-bit shuffle port, twice an 8x8's per element (see `TUNING.md`,
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
use crate::{Error, Isa};

/// Output positions computed together: independent accumulators that keep both FMA units busy
/// through their latency.
pub(crate) const POSITIONS: usize = 8;

/// The tier the channels-in-lanes kernel runs on for a plan of tier `isa`: on AVX-512, its
/// AVX2 subset (an AVX-512 tier includes AVX2 and FMA, see `Isa::is_supported`).
pub(crate) fn tier(isa: Isa) -> Isa {
    match isa {
        Isa::X86_64V4 => Isa::X86_64V3,
        other => other,
    }
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
    /// The tier it runs on ([`tier`] of the plan's).
    isa: Isa,
    lanes: usize,
    padded: [usize; 2],
    /// `[channel block][tap][lane]`: register blocks of one vector ([`Order::Blocks`]).
    weights: Arc<[T]>,
    /// `[channel block][lane]`.
    bias: Arc<[T]>,
    /// Per tap, the offset of its input from a window's top-left corner in the padded block.
    tap_offsets: Vec<usize>,
    /// Per output position (row-major), the offset of its window's top-left corner in the
    /// padded block: positions are taken in groups across row ends, so a 7-wide row costs no
    /// short tail tiles.
    windows: Vec<usize>,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> LanesEngine<T, E> {
    /// The engine for the problem of `parts` (which [`suits`] it).
    pub fn new(parts: Parts<'_, T, E>) -> Result<Self, Error> {
        let Problem { geometry, isa, .. } = parts.problem;
        let isa = tier(isa);
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
        let tap_offsets = (0..kernel_h * kernel_w)
            .map(|tap| offset(tap / kernel_w * dilation_h, tap % kernel_w * dilation_w))
            .collect::<Option<Vec<usize>>>()
            .ok_or(too_large.clone())?;
        let [out_h, out_w] = geometry.output_size();
        let [stride_h, stride_w] = geometry.stride();
        let windows = (0..out_h)
            .flat_map(|oh| (0..out_w).map(move |ow| (oh, ow)))
            .map(|(oh, ow)| offset(oh * stride_h, ow * stride_w))
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
            tap_offsets,
            windows,
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
        padded.fill(T::ZERO);
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
    ///
    /// Loop order: output rows, then positions along the row in groups of [`POSITIONS`], then
    /// taps: each tap loads its weight vector once per group of positions and one input
    /// vector per position.
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
        let weights = &self.weights[block * taps * lanes..][..taps * lanes];
        let bias = simd.load_from(&self.bias[block * lanes..]);
        if taps <= RESIDENT_TAPS {
            // Up to 16 weight vectors stay in registers for the whole block (measured 7 %
            // faster on MobileNet's 3x3 layers than loading them per group of positions). A
            // plain loop, not `array::from_fn`: its closure may stay out of line, outside the
            // tier's `target_feature` context, where the intrinsics cannot inline.
            let mut resident = [simd.splat(T::ZERO); RESIDENT_TAPS];
            for (vector, tap_weights) in resident.iter_mut().zip(weights.chunks_exact(lanes)) {
                *vector = simd.load_from(tap_weights);
            }
            let window = Window {
                simd,
                padded,
                weights: &resident[..taps],
                tap_offsets: &self.tap_offsets,
                windows: &self.windows,
                bias,
            };
            window.plane(transposed);
        } else {
            let window = Window {
                simd,
                padded,
                weights: &InMemory(weights),
                tap_offsets: &self.tap_offsets,
                windows: &self.windows,
                bias,
            };
            window.plane(transposed);
        }
    }
}

/// `[position][lane]` sums of a block (`transposed`) back to its `LANES` NCHW planes in
/// `sink`, squares of `LANES` positions at a time, then the rest.
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
        let count = lanes.min(out_plane - position);
        let square = &transposed[position * lanes..][..count * lanes];
        sink.store_transposed(simd, square, count, position, out_plane);
    }
}

/// `LANES` planes of `image` positions each (`planes`, one after the other) to
/// `[position][lane]` in `target`: squares by shuffles, the last positions through
/// [`transpose_part`].
#[inline(always)]
fn transpose_planes<S: Simd>(simd: S, planes: &[S::Elem], image: usize, target: &mut [S::Elem]) {
    let lanes = S::LANES;
    assert_eq!(planes.len(), lanes * image);
    assert_eq!(target.len(), lanes * image);
    let whole_positions = image / lanes * lanes;
    for position in (0..whole_positions).step_by(lanes) {
        // SAFETY: source row `lane` is `planes[lane · image + position..][..LANES]`, inside
        // `planes`; the target square is `target[position · LANES..][..LANES²]`.
        unsafe {
            simd.transpose_square(
                planes[position..].as_ptr(),
                image,
                target[position * lanes..][..lanes * lanes].as_mut_ptr(),
                lanes,
            )
        };
    }
    let rest = image - whole_positions;
    if rest > 0 {
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

/// Taps whose weight vectors are kept in registers for a whole block.
const RESIDENT_TAPS: usize = 16;

/// Where a tile finds each tap's weight vector.
trait TapWeights<S: Simd> {
    fn weight(&self, simd: S, tap: usize) -> S::Vector;
}

/// Weight vectors loaded once per block (kept in registers).
impl<S: Simd> TapWeights<S> for [S::Vector] {
    #[inline(always)]
    fn weight(&self, _simd: S, tap: usize) -> S::Vector {
        self[tap]
    }
}

/// Weights `[tap][lane]` in memory, loaded per tap.
struct InMemory<'a, T>(&'a [T]);

impl<S: Simd> TapWeights<S> for InMemory<'_, S::Elem> {
    #[inline(always)]
    fn weight(&self, simd: S, tap: usize) -> S::Vector {
        simd.load_from(&self.0[tap * S::LANES..])
    }
}

/// What every tile of a block reads: the padded input, the taps' weights and input offsets.
struct Window<'a, S: Simd, W: TapWeights<S> + ?Sized> {
    simd: S,
    padded: &'a [S::Elem],
    weights: &'a W,
    tap_offsets: &'a [usize],
    /// Per output position, its window's offset in `padded`.
    windows: &'a [usize],
    bias: S::Vector,
}

impl<S: Simd, W: TapWeights<S> + ?Sized> Window<'_, S, W> {
    /// Every output position, row after row, in groups of [`POSITIONS`] that may span row
    /// ends, then 4, 2, 1, into `outputs` as `[position][lane]`.
    #[inline(always)]
    fn plane(&self, outputs: &mut [S::Elem]) {
        let positions = self.windows.len();
        let mut first = 0;
        while first + POSITIONS <= positions {
            self.positions::<POSITIONS>(first, outputs);
            first += POSITIONS;
        }
        macro_rules! tails {
            ($($size:literal),*) => {$(
                if positions - first >= $size {
                    self.positions::<$size>(first, outputs);
                    first += $size;
                }
            )*};
        }
        tails!(4, 2, 1);
    }

    /// Output positions `first..first + P`: `P` accumulators, one load and one fused
    /// multiply-add per tap each, written to `outputs` as `[position][lane]`.
    #[inline(always)]
    fn positions<const P: usize>(&self, first: usize, outputs: &mut [S::Elem]) {
        let (simd, lanes) = (self.simd, S::LANES);
        let base = self.padded.as_ptr();
        let windows: &[usize; P] = self.windows[first..first + P]
            .try_into()
            .expect("P positions");
        let mut acc = [self.bias; P];
        for (tap, &offset) in self.tap_offsets.iter().enumerate() {
            let weights = self.weights.weight(simd, tap);
            for (sum, &window) in acc.iter_mut().zip(windows) {
                debug_assert!(window + offset + lanes <= self.padded.len());
                // SAFETY: the window of each output lies inside the padded block:
                // (oh·sH + i·dH) < padded_h and (ow·sW + j·dW) < padded_w, so the LANES
                // elements at `window + offset` are inside `padded`.
                let x = unsafe { simd.load(base.add(window + offset)) };
                *sum = simd.mul_add(weights, x, *sum);
            }
        }
        for (p, &sum) in acc.iter().enumerate() {
            simd.store_into(&mut outputs[(first + p) * lanes..], sum);
        }
    }
}
