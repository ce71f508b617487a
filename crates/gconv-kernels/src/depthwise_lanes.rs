//! Depthwise convolution with channels in vector lanes, for planes too small to fill vectors.
//!
//! The flat kernels vectorise along output positions: on a 7×7 or 14×14 plane most of a
//! vector is padding columns or tail, and every channel pays for its own packing and tiles.
//! Here a task takes `LANES` consecutive channels of a depthwise convolution (one filter per
//! channel), copies their zero-padded input into a `[row][column][lane]` block, and computes
//! every output position as one vector of `LANES` channels: `kH·kW` loads and fused
//! multiply-adds against per-channel weight vectors held in registers, for any stride and
//! dilation, with no lane wasted. The `[position][lane]` result is copied back to NCHW.

use gconv_shape::Geometry;

use crate::engine::Workspace;
use crate::simd::{Kernel, Simd, dispatch};
use crate::{Isa, KernelError};

/// Output positions computed together: independent accumulators that keep both FMA units busy
/// through their latency.
pub(crate) const POSITIONS: usize = 8;

/// A depthwise convolution (one input channel and one filter per group) prepared for the
/// channels-in-lanes kernel.
#[derive(Debug)]
pub(crate) struct LanesEngine {
    pub geometry: Geometry,
    pub isa: Isa,
    lanes: usize,
    padded: [usize; 2],
    /// `[channel block][tap][lane]`.
    weights: Vec<f32>,
    /// `[channel block][lane]`.
    bias: Vec<f32>,
    /// Per tap, the offset of its input from a window's top-left corner in the padded block.
    tap_offsets: Vec<usize>,
}

impl LanesEngine {
    /// Whether `geometry` suits this kernel on `isa`: depthwise with multiplier 1 and
    /// channels a multiple of the lanes.
    pub fn suits(geometry: &Geometry, isa: Isa) -> bool {
        geometry.in_channels_per_group() == 1
            && geometry.out_channels_per_group() == 1
            && geometry.in_channels().is_multiple_of(isa.lanes())
    }

    pub fn new(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        isa: Isa,
    ) -> Result<LanesEngine, KernelError> {
        geometry.check_buffer_lengths(
            geometry.input_len(),
            weight.len(),
            bias.map(<[f32]>::len),
            geometry.output_len(),
        )?;
        let lanes = isa.lanes();
        let taps = geometry.reduction_len();
        let channels = geometry.out_channels();
        let mut packed_weights = Vec::with_capacity(channels * taps);
        let mut packed_bias = Vec::with_capacity(channels);
        for block in (0..channels).step_by(lanes) {
            for tap in 0..taps {
                packed_weights.extend((block..block + lanes).map(|c| weight[c * taps + tap]));
            }
            packed_bias.extend((block..block + lanes).map(|c| bias.map_or(0.0, |b| b[c])));
        }
        let padding = geometry.padding();
        let [height, width] = geometry.input_size();
        let padded_w = width + padding.left + padding.right;
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let [dilation_h, dilation_w] = geometry.dilation();
        let tap_offsets = (0..kernel_h * kernel_w)
            .map(|tap| {
                let (i, j) = (tap / kernel_w, tap % kernel_w);
                (i * dilation_h)
                    .checked_mul(padded_w)
                    .and_then(|row| row.checked_add(j * dilation_w))
                    .and_then(|offset| offset.checked_mul(lanes))
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or(KernelError::TooLarge {
                what: "the padded block of the channels-in-lanes kernel",
            })?;
        // Sums that Geometry checked: each padded extent fits in usize.
        Ok(LanesEngine {
            geometry: *geometry,
            isa,
            lanes,
            padded: [
                height + padding.top + padding.bottom,
                width + padding.left + padding.right,
            ],
            weights: packed_weights,
            bias: packed_bias,
            tap_offsets,
        })
    }

    /// Floats of scratch a worker needs: the padded input block, then the output block
    /// (saturating: an absurd size is refused by the plan, not wrapped).
    pub fn scratch_len(&self) -> usize {
        let [out_h, out_w] = self.geometry.output_size();
        self.padded[0]
            .saturating_mul(self.padded[1])
            .saturating_add(out_h * out_w)
            .saturating_mul(self.lanes)
    }

    pub fn run(&self, input: &[f32], output: &mut [f32], workspace: &Workspace, parallel: bool) {
        let image = self.geometry.input_size()[0] * self.geometry.input_size()[1];
        let block_input = self.lanes * image;
        let [out_h, out_w] = self.geometry.output_size();
        let block_output = self.lanes * out_h * out_w;
        let blocks_per_sample = self.geometry.out_channels() / self.lanes;
        // Channels are a multiple of the lanes, so blocks never straddle two samples.
        workspace.for_each_chunk(parallel, output, block_output, |scratch, block, output| {
            let input = &input[block * block_input..][..block_input];
            self.run_block(input, block % blocks_per_sample, output, scratch);
        });
    }

    fn run_block(&self, input: &[f32], block: usize, output: &mut [f32], scratch: &mut [f32]) {
        let args = BlockArgs {
            engine: self,
            input,
            block,
            output,
            scratch,
        };
        dispatch(self.isa, args);
    }
}

/// One task: `LANES` channels of one sample.
struct BlockArgs<'a> {
    engine: &'a LanesEngine,
    /// The block's input planes, `LANES × H × W`.
    input: &'a [f32],
    /// Index of the channel block within the sample.
    block: usize,
    /// The block's output planes, `LANES × H_out × W_out`.
    output: &'a mut [f32],
    scratch: &'a mut [f32],
}

impl Kernel for BlockArgs<'_> {
    #[inline(always)]
    fn run<S: Simd>(self, simd: S) {
        convolve_block(simd, self)
    }
}

/// Transposes the block's input into `[padded row][padded column][lane]` with zero borders,
/// convolves every output position as one vector, and transposes the result back.
///
/// Loop order: output rows, then positions along the row in groups of [`POSITIONS`], then
/// taps: each tap loads its weight vector once per group of positions and one input vector
/// per position.
#[inline(always)]
fn convolve_block<S: Simd>(simd: S, args: BlockArgs<'_>) {
    let BlockArgs {
        engine,
        input,
        block,
        output,
        scratch,
    } = args;
    let geometry = &engine.geometry;
    let lanes = S::LANES;
    assert_eq!(lanes, engine.lanes);
    let [height, width] = geometry.input_size();
    let [out_h, out_w] = geometry.output_size();
    let [stride_h, stride_w] = geometry.stride();
    let padding = geometry.padding();
    let [padded_h, padded_w] = engine.padded;
    let taps = geometry.reduction_len();
    let (padded, transposed) = scratch.split_at_mut(padded_h * padded_w * lanes);
    let transposed = &mut transposed[..out_h * out_w * lanes];

    // Input planes to [row][column][lane], zeros around them: LANES × LANES squares by
    // shuffles, the columns left over one float at a time.
    padded.fill(0.0);
    let image = height * width;
    assert_eq!(input.len(), lanes * image);
    let whole_columns = width / lanes * lanes;
    for row in 0..height {
        let target_row = ((row + padding.top) * padded_w + padding.left) * lanes;
        for column in (0..whole_columns).step_by(lanes) {
            let target = &mut padded[target_row + column * lanes..][..lanes * lanes];
            let first = row * width + column;
            // SAFETY: source row `lane` is `input[lane · image + first..][..LANES]`, inside
            // `input` (column + LANES <= width); `target` holds LANES rows of LANES floats.
            unsafe {
                simd.transpose_square(input[first..].as_ptr(), image, target.as_mut_ptr(), lanes)
            };
        }
        for column in whole_columns..width {
            for lane in 0..lanes {
                padded[target_row + column * lanes + lane] =
                    input[lane * image + row * width + column];
            }
        }
    }

    let weights = &engine.weights[block * taps * lanes..][..taps * lanes];
    // SAFETY: `bias` holds LANES floats per block.
    let bias = unsafe { simd.load(engine.bias[block * lanes..][..lanes].as_ptr()) };
    let transposed = &mut transposed[..out_h * out_w * lanes];
    if taps <= RESIDENT_TAPS {
        // Up to 16 weight vectors stay in registers for the whole block (measured 7 % faster
        // on MobileNet's 3x3 layers than loading them per group of positions). A plain loop,
        // not `array::from_fn`: its closure may stay out of line, outside the tier's
        // `target_feature` context, where the intrinsics cannot inline.
        let mut resident = [simd.splat(0.0); RESIDENT_TAPS];
        for (vector, tap_weights) in resident.iter_mut().zip(weights.chunks_exact(lanes)) {
            // SAFETY: `tap_weights` holds LANES floats.
            *vector = unsafe { simd.load(tap_weights.as_ptr()) };
        }
        let window = Window {
            simd,
            padded,
            weights: &resident[..taps],
            tap_offsets: &engine.tap_offsets,
            bias,
            stride: [stride_h, stride_w],
            padded_w,
        };
        window.rows(out_h, out_w, transposed);
    } else {
        let window = Window {
            simd,
            padded,
            weights: &InMemory(weights),
            tap_offsets: &engine.tap_offsets,
            bias,
            stride: [stride_h, stride_w],
            padded_w,
        };
        window.rows(out_h, out_w, transposed);
    }

    // [position][lane] back to the NCHW planes, squares by shuffles, then the rest.
    let out_plane = out_h * out_w;
    assert_eq!(output.len(), lanes * out_plane);
    let whole_positions = out_plane / lanes * lanes;
    for position in (0..whole_positions).step_by(lanes) {
        let source = &transposed[position * lanes..][..lanes * lanes];
        let target = &mut output[position..];
        // SAFETY: `source` holds LANES rows of LANES floats; target row `lane` is
        // `output[lane · out_plane + position..][..LANES]`, inside `output`.
        unsafe { simd.transpose_square(source.as_ptr(), lanes, target.as_mut_ptr(), out_plane) };
    }
    let rest = out_plane - whole_positions;
    if rest > 0 {
        // The last positions through a square padded with zero rows, stored lane-masked.
        let mut square = [0.0f32; 256];
        let mut planes = [0.0f32; 256];
        square[..rest * lanes].copy_from_slice(&transposed[whole_positions * lanes..]);
        // SAFETY: both squares hold LANES rows of LANES floats and do not overlap.
        unsafe { simd.transpose_square(square.as_ptr(), lanes, planes.as_mut_ptr(), lanes) };
        for lane in 0..lanes {
            let target = &mut output[lane * out_plane + whole_positions..][..rest];
            // SAFETY: row `lane` of `planes` holds LANES floats; lanes `0..rest` land on
            // `target`, a slice of `rest` floats.
            unsafe {
                let values = simd.load(planes.as_ptr().add(lane * lanes));
                simd.store_lanes(target.as_mut_ptr(), values, 0, rest);
            }
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
struct InMemory<'a>(&'a [f32]);

impl<S: Simd> TapWeights<S> for InMemory<'_> {
    #[inline(always)]
    fn weight(&self, simd: S, tap: usize) -> S::Vector {
        let tap_weights = &self.0[tap * S::LANES..][..S::LANES];
        // SAFETY: `tap_weights` holds LANES floats.
        unsafe { simd.load(tap_weights.as_ptr()) }
    }
}

/// What every tile of a block reads: the padded input, the taps' weights and input offsets.
struct Window<'a, S: Simd, W: TapWeights<S> + ?Sized> {
    simd: S,
    padded: &'a [f32],
    weights: &'a W,
    tap_offsets: &'a [usize],
    bias: S::Vector,
    stride: [usize; 2],
    padded_w: usize,
}

impl<S: Simd, W: TapWeights<S> + ?Sized> Window<'_, S, W> {
    /// Every output row, in groups of [`POSITIONS`] positions and then 4, 2, 1, into
    /// `outputs` as `[position][lane]`.
    #[inline(always)]
    fn rows(&self, out_h: usize, out_w: usize, outputs: &mut [f32]) {
        let lanes = S::LANES;
        for oh in 0..out_h {
            let row_start = oh * self.stride[0] * self.padded_w;
            let row = &mut outputs[oh * out_w * lanes..][..out_w * lanes];
            let mut ow = 0;
            while ow + POSITIONS <= out_w {
                self.positions::<POSITIONS>(row_start, ow, row);
                ow += POSITIONS;
            }
            macro_rules! tails {
                ($($size:literal),*) => {$(
                    if out_w - ow >= $size {
                        self.positions::<$size>(row_start, ow, row);
                        ow += $size;
                    }
                )*};
            }
            tails!(4, 2, 1);
        }
    }

    /// `P` consecutive output positions of one row, starting at column `column`, whose
    /// windows start at padded position `row_start`: `P` accumulators, one load and one
    /// fused multiply-add per tap each, written to `outputs` as `[position][lane]`.
    #[inline(always)]
    fn positions<const P: usize>(&self, row_start: usize, column: usize, outputs: &mut [f32]) {
        let (simd, lanes) = (self.simd, S::LANES);
        let base = self.padded.as_ptr();
        let mut acc = [self.bias; P];
        for (tap, &offset) in self.tap_offsets.iter().enumerate() {
            let weights = self.weights.weight(simd, tap);
            for (p, sum) in acc.iter_mut().enumerate() {
                let window = (row_start + (column + p) * self.stride[1]) * lanes;
                debug_assert!(window + offset + lanes <= self.padded.len());
                // SAFETY: the window of each output lies inside the padded block:
                // (oh·sH + i·dH) < padded_h and ((ow + p)·sW + j·dW) < padded_w, so the LANES
                // floats at `window + offset` are inside `padded`.
                let x = unsafe { simd.load(base.add(window + offset)) };
                *sum = simd.mul_add(weights, x, *sum);
            }
        }
        for (p, &sum) in acc.iter().enumerate() {
            let target = &mut outputs[(column + p) * lanes..][..lanes];
            // SAFETY: `target` holds LANES floats.
            unsafe { simd.store(target.as_mut_ptr(), sum) };
        }
    }
}
