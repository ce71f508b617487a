//! [`KernelPlan`]: a convolution validated, assigned a kernel and tier, its weights packed —
//! once — then run any number of times without allocating.

use std::fmt;
use std::num::NonZeroUsize;

use gconv_shape::Geometry;

use crate::depthwise_lanes::{LanesEngine, POSITIONS};
use crate::depthwise_shifted::{ShiftedEngine, TILE_VECTORS};
use crate::depthwise_streamed::StreamedEngine;
use crate::depthwise_unpacked::{TILE_ROWS, UnpackedEngine};
use crate::engine::{Body, Engine};
use crate::layout::{Packing, VectorOrder};
use crate::workspace::Workspace;
use crate::{Family, Isa, KernelError};

/// How many threads a plan runs on.
///
/// Plans of the same thread count share their helper threads, and their runs take turns: to
/// run several convolutions at once from threads of your own, give each plan
/// `Threads::Count(1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// As many threads as rayon's current pool has (by default one per core).
    #[default]
    All,
    /// Exactly this many: 1 runs on the calling thread alone; `n` on the calling thread and
    /// `n − 1` helper threads, shared by every plan of `n` threads in the process.
    Count(NonZeroUsize),
}

/// Choices a plan is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Force an instruction-set tier; `None` takes `GCONV_ISA` if set, else the best the CPU
    /// has. A tier the CPU lacks is an error, never a silent fallback.
    pub isa: Option<Isa>,
    /// Threads to run on.
    pub threads: Threads,
}

/// Scratch a plan may always allocate per thread, in floats (64 MiB), whatever the data size.
const SCRATCH_FLOATS: usize = 16 << 20;

/// Below this many FLOPs a plan runs on the calling thread whatever its thread count: the
/// seed layer (2.3 kFLOP) took 23 µs on two threads against 0.4 µs on one.
const PARALLEL_MIN_FLOPS: u64 = 200_000;

/// Which kernel a plan runs: the one the cost rules choose, or (in tests) a forced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Chosen,
    #[cfg_attr(not(test), allow(dead_code))]
    Body(Body),
    #[cfg_attr(not(test), allow(dead_code))]
    Lanes,
    #[cfg_attr(not(test), allow(dead_code))]
    Unpacked,
    #[cfg_attr(not(test), allow(dead_code))]
    Shifted,
    #[cfg_attr(not(test), allow(dead_code))]
    Streamed,
    /// Phase-split packing with its vectors in this order.
    #[cfg_attr(not(test), allow(dead_code))]
    PhaseSplit(VectorOrder),
}

/// The kernel a plan runs. (One per plan: the variants' sizes do not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Kernel {
    /// The flat kernels of every family (see `crate::engine`).
    Grouped(Engine),
    /// Depthwise on small planes, channels in lanes (see `crate::depthwise_lanes`).
    DepthwiseLanes(LanesEngine),
    /// Depthwise with stride 1 on larger planes, read from the input rows (see
    /// `crate::depthwise_unpacked`).
    DepthwiseUnpacked(UnpackedEngine),
    /// Depthwise with stride 1 on small planes of the input's size, every tap a shifted
    /// read of the input plane (see `crate::depthwise_shifted`).
    DepthwiseShifted(ShiftedEngine),
    /// Depthwise 3x3 with stride 2, each vector of output columns streamed down its plane
    /// (see `crate::depthwise_streamed`).
    DepthwiseStreamed(StreamedEngine),
}

/// A grouped convolution ready to run: geometry, packed weights, kernel, tier and threads.
pub struct KernelPlan {
    kernel: Kernel,
    /// The tier the plan was made for (a kernel may use a subset of it: see `lanes_isa`).
    isa: Isa,
    threads: usize,
    /// Problems below this many FLOPs run on the calling thread ([`PARALLEL_MIN_FLOPS`];
    /// the tests lower it to split even tiny problems).
    parallel_min_flops: u64,
    /// Scratch, and the team of threads the plan runs on.
    workspace: Workspace,
}

impl KernelPlan {
    /// Validates `weight` (`[C_out, C_in/g, kH, kW]`, flat) and `bias` (`[C_out]` exactly when
    /// the geometry has a bias) against `geometry`, picks the tier and packs the weights.
    pub fn new(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: PlanOptions,
    ) -> Result<KernelPlan, KernelError> {
        Self::with_path(geometry, weight, bias, options, Path::Chosen)
    }

    /// [`KernelPlan::new`] with the kernel path forced, for the tests of each path.
    fn with_path(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: PlanOptions,
        path: Path,
    ) -> Result<KernelPlan, KernelError> {
        // The engines below take the weights and bias as checked here.
        geometry.check_buffer_lengths(
            geometry.input_len(),
            weight.len(),
            bias.map(<[f32]>::len),
            geometry.output_len(),
        )?;
        let isa = match options.isa {
            Some(isa) => Isa::require(isa)?,
            None => Isa::from_env()?.unwrap_or_else(Isa::best),
        };
        let threads = match options.threads {
            Threads::All => rayon::current_num_threads(),
            Threads::Count(count) => count.get(),
        };
        let lanes_isa = lanes_isa(isa);
        let streamed = match path {
            Path::Chosen => prefers_streamed(geometry, isa),
            Path::Streamed => true,
            _ => false,
        };
        let shifted = match path {
            Path::Chosen => !streamed && prefers_shifted(geometry, isa),
            Path::Shifted => true,
            _ => false,
        };
        let chosen_elsewhere = shifted || streamed;
        let unpacked = match path {
            Path::Chosen => !chosen_elsewhere && prefers_unpacked(geometry, isa, lanes_isa),
            Path::Unpacked => true,
            _ => false,
        };
        let lanes = match path {
            Path::Chosen => {
                !chosen_elsewhere && !unpacked && prefers_lanes(geometry, isa, lanes_isa)
            }
            Path::Lanes => LanesEngine::suits(geometry, lanes_isa),
            _ => false,
        };
        let (body, order) = match path {
            Path::Body(body) => (Some(body), None),
            Path::PhaseSplit(order) => (Some(Body::Positions(Packing::PhaseSplit)), Some(order)),
            _ => (None, None),
        };
        let kernel = if streamed {
            Kernel::DepthwiseStreamed(StreamedEngine::new(geometry, weight, bias, isa)?)
        } else if shifted {
            Kernel::DepthwiseShifted(ShiftedEngine::new(geometry, weight, bias, isa)?)
        } else if lanes {
            Kernel::DepthwiseLanes(LanesEngine::new(geometry, weight, bias, lanes_isa)?)
        } else if unpacked {
            Kernel::DepthwiseUnpacked(UnpackedEngine::new(geometry, weight, bias, isa)?)
        } else {
            Kernel::Grouped(Engine::new(
                geometry, weight, bias, isa, threads, body, order,
            )?)
        };
        let scratch = match &kernel {
            Kernel::Grouped(engine) => engine.scratch_len(),
            Kernel::DepthwiseLanes(engine) => engine.scratch_len(),
            Kernel::DepthwiseUnpacked(engine) => engine.scratch_len(),
            Kernel::DepthwiseShifted(engine) => engine.scratch_len(),
            Kernel::DepthwiseStreamed(engine) => engine.scratch_len(),
        };
        // Scratch beyond the data itself only comes from absurd padding or dilation (a
        // packed band is normally a few kilobytes): refuse it rather than allocate it.
        let data = geometry.input_len().saturating_add(geometry.output_len());
        if scratch > SCRATCH_FLOATS.max(data.saturating_mul(2)) {
            return Err(KernelError::TooLarge {
                what: "the packed input scratch (padding or dilation far beyond the input)",
            });
        }
        let workspace = Workspace::new(threads, scratch)?;
        Ok(KernelPlan {
            kernel,
            isa,
            threads,
            parallel_min_flops: PARALLEL_MIN_FLOPS,
            workspace,
        })
    }

    /// Convolves NCHW `input` into NCHW `output`; both lengths are checked.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), KernelError> {
        let geometry = self.geometry();
        let bias_len = geometry.has_bias().then(|| geometry.out_channels());
        geometry.check_buffer_lengths(
            input.len(),
            geometry.weight_count(),
            bias_len,
            output.len(),
        )?;
        // Sharing the work costs a few microseconds: not worth it for a few hundred kFLOP.
        let parallel = self.threads > 1 && geometry.flops() >= self.parallel_min_flops;
        match &self.kernel {
            Kernel::Grouped(engine) => engine.run(input, output, &self.workspace, parallel),
            Kernel::DepthwiseLanes(engine) => engine.run(input, output, &self.workspace, parallel),
            Kernel::DepthwiseUnpacked(engine) => {
                engine.run(input, output, &self.workspace, parallel)
            }
            Kernel::DepthwiseShifted(engine) => {
                engine.run(input, output, &self.workspace, parallel)
            }
            Kernel::DepthwiseStreamed(engine) => {
                engine.run(input, output, &self.workspace, parallel)
            }
        }
        Ok(())
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        match &self.kernel {
            Kernel::Grouped(engine) => &engine.geometry,
            Kernel::DepthwiseLanes(engine) => &engine.geometry,
            Kernel::DepthwiseUnpacked(engine) => &engine.geometry,
            Kernel::DepthwiseShifted(engine) => &engine.geometry,
            Kernel::DepthwiseStreamed(engine) => &engine.geometry,
        }
    }

    /// The instruction-set tier the plan runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The kernel family.
    pub fn family(&self) -> Family {
        Family::of(self.geometry())
    }

    /// Threads the plan runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// What runs and how it is tiled, e.g. `dwconv-3x3s2d1-direct-1c128w-x86_64_v4`: family,
    /// kernel size, stride, dilation, input packing (`direct`: padded stride phases, every tap
    /// a shifted view; `columns`: one copy per kernel column, every tap a shifted view of one;
    /// `im2col`: one copied window per tap), the largest register tile (output channels ×
    /// output positions) and the tier.
    pub fn kernel_id(&self) -> String {
        let geometry = self.geometry();
        let axis = |[height, width]: [usize; 2]| {
            if height == width {
                height.to_string()
            } else {
                format!("{height}x{width}")
            }
        };
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let (packing, channels, positions) = match &self.kernel {
            Kernel::Grouped(engine) if matches!(engine.body, Body::Channels(_)) => {
                let channels = 2 * engine.isa.lanes();
                let packing = match engine.layout.packing {
                    Packing::KernelColumns => "columns",
                    Packing::InPlace => "inplace",
                    _ => "direct",
                };
                (packing, channels, engine.tile.channel_tile_positions)
            }
            Kernel::Grouped(engine) => {
                let channels = engine.blocks.first().map_or(1, |block| block.channels);
                let positions = engine.tile.vectors_for(channels) * engine.isa.lanes();
                let packing = match (engine.layout.packing, engine.layout.order) {
                    (Packing::PhaseSplit, VectorOrder::Flat) => "direct",
                    (Packing::PhaseSplit, VectorOrder::Rows) => "rows",
                    (Packing::Im2col, _) => "im2col",
                    (Packing::KernelColumns, _) => "columns",
                    (Packing::InPlace, _) => "inplace",
                };
                (packing, channels, positions)
            }
            Kernel::DepthwiseLanes(engine) => ("lanes", engine.isa.lanes(), POSITIONS),
            Kernel::DepthwiseUnpacked(engine) => ("unpacked", 1, TILE_ROWS * engine.isa.lanes()),
            Kernel::DepthwiseShifted(engine) => ("shifted", 1, TILE_VECTORS * engine.isa.lanes()),
            Kernel::DepthwiseStreamed(engine) => ("streamed", 1, engine.isa.lanes()),
        };
        format!(
            "{}-{kernel_h}x{kernel_w}s{}d{}-{packing}-{channels}c{positions}w-{}",
            self.family(),
            axis(geometry.stride()),
            axis(geometry.dilation()),
            self.isa().level()
        )
    }
}

/// The instructions the channels-in-lanes kernel uses on tier `isa`: on AVX-512, its AVX2
/// subset. Its 16x16 transposes cost 64 shuffles on the one 512-bit shuffle port, twice an
/// 8x8's per float: 256-bit lanes measured faster on every layer it runs (MobileNetV2's
/// 56x56 stride 2 +36 %, DeepLab's dilated 32x32 +19 %).
fn lanes_isa(isa: Isa) -> Isa {
    if isa == Isa::X86_64V4 && Isa::X86_64V3.is_supported() {
        Isa::X86_64V3
    } else {
        isa
    }
}

/// Whether the unpacked depthwise kernel should run `geometry`: stride 1, at most 9 taps or
/// a 5xN or 7xN window whose input rows it shares (past that the flat kernel's packing is
/// small against its arithmetic), or stride 2 with a 3xN window (5xN too on AVX-512), on
/// planes whose padded block of channels in lanes (on `lanes_isa`) would not fit
/// [`UNPACKED_MIN_BLOCK`] (stride 2 on tiers below AVX-512 and with 5xN windows: four times
/// that). 3x3, 5x5 and 7x7 windows without dilation go to the streamed kernel first, where it
/// takes them.
///
/// Measured (AVX-512 tier, one thread, GFLOP/s): 3x3 on 28x28 31 against 28 (lanes), 30x30
/// 34 against 28 (lanes), DeepLab's dilated 32x32 32 against 24 (lanes), 40x40 32 against 31
/// (flat), 56x56 34–40 against 30–33 (flat), 112x112 43 against 38 (rows); 24x24 24–28
/// against 32 (lanes); 5x5 and 7x7 with shared rows, median of three alternating runs: 5x5
/// on 28x28 50–52 against 39–40 (lanes), on 56x56 68 against 48 (flat), 7x7 on 56x56 71–72
/// against 54–55 (flat), but 7x7 on 28x28 44 against 47 (rows), its six padding rows a fifth
/// of the plane.
fn prefers_unpacked(geometry: &Geometry, isa: Isa, lanes_isa: Isa) -> bool {
    let [height, width] = geometry.input_size();
    let padding = geometry.padding();
    let padded = (height + padding.top + padding.bottom) as u128
        * (width + padding.left + padding.right) as u128;
    // 5xN and 7xN windows without vertical dilation share their input rows too; they pay
    // where the padding rows, done one at a time, are at most a sixth of the plane.
    let [kernel_h, _] = geometry.kernel_size();
    let [out_h, _] = geometry.output_size();
    let tall_shared =
        matches!(kernel_h, 5 | 7) && geometry.dilation()[0] == 1 && 6 * (kernel_h - 1) <= out_h;
    if geometry.stride() == [2, 2] {
        // Stride 2 shares input rows for 3xN windows without vertical dilation, and on
        // AVX-512 for 5xN too. Its deinterleaves cost AVX2 more (8-lane vectors, two shuffles
        // each): there 3xN starts at 56x56 (28x28: 10 against 13 GFLOP/s for the
        // channels-in-lanes kernel) and 5xN stays with the other kernels (EfficientNet's 5x5
        // on 56x56: 19 against 28). Measured, AVX-512, one thread: MobileNetV2's 112x112,
        // 56x56 and 28x28 stride-2 layers +20 to +30 % against the flat and channels-in-lanes
        // kernels; 5x5 on 56x56 35 against 28 (lanes), 112x112 36 against 32 (flat), 5x3 on
        // 56x56 30 against 21, but 32x32 31 against 33 and 28x28 even: 5xN from the AVX2
        // threshold on.
        let dilated = geometry.dilation()[0] != 1;
        let shared = !dilated && (kernel_h == 3 || (kernel_h == 5 && isa == Isa::X86_64V4));
        let min_block = match (isa, kernel_h) {
            (Isa::X86_64V4, 3) => UNPACKED_MIN_BLOCK,
            _ => 4 * UNPACKED_MIN_BLOCK,
        };
        return UnpackedEngine::suits(geometry)
            && shared
            && padded * lanes_isa.lanes() as u128 * 4 > min_block as u128;
    }
    UnpackedEngine::suits(geometry)
        && (geometry.reduction_len() <= 9 || tall_shared)
        && padded * lanes_isa.lanes() as u128 * 4 > UNPACKED_MIN_BLOCK as u128
}

/// Whether the shifted-plane depthwise kernel should run `geometry` on `isa`: stride 1,
/// output the input's size, planes of at most [`SHIFTED_MAX_PLANE`] positions, AVX-512 only
/// (3x3, 5x5 and 7x7 windows without dilation go to the streamed kernel first, faster on
/// every one: see [`prefers_streamed`]; the shifted kernel keeps dilated and other windows).
///
/// Measured (AVX-512, one thread, median of three alternating runs, GFLOP/s, against the
/// kernel chosen before it): 3x3 on 14x14 48–50 against 34 (lanes), 7x7 30 → 33 (lanes),
/// 10x10 33 → 42, 20x20 34 → 55, 28x28 52 → 56 (unpacked), DeepLab's dilated 32x32 51 → 54
/// and 45 → 56, 5x5 on 14x14 46 → 57, 7x7 on 14x14 55 → 62; 3x3 on 32x32 60 against 58 and
/// 40x40 even, so larger planes stay on the unpacked kernel. On AVX2 every one of these ran
/// slower than before (0.5–0.8x): without mask registers each masked multiply-add is a
/// blend, and its mask is rebuilt from bits.
fn prefers_shifted(geometry: &Geometry, isa: Isa) -> bool {
    let [height, width] = geometry.input_size();
    isa == Isa::X86_64V4
        && ShiftedEngine::suits(geometry)
        && (height as u128 * width as u128) <= SHIFTED_MAX_PLANE as u128
}

/// Whether the streamed depthwise kernel should run `geometry` on `isa`: 3x3 with stride 2
/// on every tier; 5x5 with stride 2 on AVX-512 where the output rows are wider than half a
/// vector; 3x3, 5x5 and 7x7 with stride 1 on AVX-512 and, below it, on rows that waste at
/// most a fifth of their lanes and whose band's rolling sums, `(K − 1)` per vector, number
/// at most twelve (sixteen registers hold them beside the taps).
///
/// Measured (one thread, median of three, GFLOP/s, against the kernel chosen before it).
/// Stride 2, AVX-512: MobileNetV2's 112x112 21 → 27 (unpacked), 56x56 24 → 48, 28x28 20 →
/// 48, 14x14 20 → 23 (lanes), MobileNet's 56x56 26 → 52 and 28x28 21 → 48, 57x57 28 → 60,
/// 225x225 21 → 22, 33x33 with a multiplier of 2 15 → 36, a batch of four 56x56 planes 18
/// → 26; AVX2: 112x112 17 → 19 (unpacked), 56x56 14 → 27, 28x28 15 → 26 (lanes), 14x14 20
/// → 24 (lanes), 225x225 even. Stride 1, AVX-512, 3x3: 112x112 53 → 60 (unpacked), 56x56 51
/// → 69, the batch of eight 56x56 planes 46 → 63, 57x57 61 → 106, 225x225 45 → 54, 28x28 55
/// → 81 (shifted), 14x14 48 → 66, 32x32 52 → 90, 20x20 51 → 59, 10x10 45 → 51, 7x7 even;
/// 5x5: 56x56 73 → 113 (unpacked), 28x28 57 → 101 (shifted), 14x14 56 → 103, 7x7 43 → 52,
/// 33x33 without padding 87 → 105 (unpacked); 7x7: 56x56 79 → 102 (unpacked), 28x28 60 → 98,
/// 14x14 57 → 98 (shifted), 7x7 even. AVX2, 3x3: 8 to 48 columns 1.15–1.6x (lanes,
/// unpacked) where the rows fill their vectors, but 10 and 12 columns 0.84 and 1.0 (two
/// vectors for 10 or 12 outputs), 56x56 0.89, 112x112 0.76 and 225x225 0.71 against the
/// unpacked kernel's taller tiles; 5x5 and 7x7 on 7x7 and 14x14 planes 1.07–1.32x, but 5x5
/// on a 33x33 plane 0.80 (four vectors of sums spilled). Stride 2, 5x5, AVX-512: 112x112
/// 35 → 46 (unpacked), 56x56 34 → 40, 28x28 27 → 65 (lanes), 33x33 without padding 24 → 62,
/// but 14x14 (seven output columns) 34 → 31; AVX2 0.14–1.0x.
fn prefers_streamed(geometry: &Geometry, isa: Isa) -> bool {
    let [_, out_w] = geometry.output_size();
    let [side, _] = geometry.kernel_size();
    let lanes = isa.lanes();
    let vectors = out_w.div_ceil(lanes);
    let narrow = 2 * out_w <= lanes;
    StreamedEngine::suits(geometry)
        && match (geometry.stride(), side) {
            ([2, 2], 3) => true,
            ([2, 2], _) => isa == Isa::X86_64V4 && !narrow,
            _ => {
                isa == Isa::X86_64V4
                    || (vectors * (side - 1) <= 12 && 5 * out_w >= 4 * lanes * vectors)
            }
        }
}

/// Positions of the largest plane the shifted-plane kernel runs.
const SHIFTED_MAX_PLANE: usize = 32 * 32;

/// Bytes of a padded block of channels in lanes from which the unpacked kernel beats the
/// channels-in-lanes one on 3x3 layers: between 26x26 and 30x30 padded pixels of 8 lanes.
const UNPACKED_MIN_BLOCK: usize = 24 * 1024;

/// Whether the channels-in-lanes depthwise kernel (on `lanes_isa`) should run `geometry`
/// rather than the flat kernel (on `isa`): where its padded block of channels fits in L1,
/// where the flat kernel would spend more than a tenth of its lanes on padding columns and
/// tails (a quarter past 16 taps), or where its packing would be strided, as long as the
/// block fits in L2.
///
/// Measured on 3x3, 5x5 and 7x7 depthwise layers of 7 to 112 pixels (AVX-512 tier, one
/// thread, lanes against flat): planes up to 30x30 +5 to +120 % (7x7 +120 %, 14x14 and
/// 20x20 +70 %, 24x24 +50 %, 28x28 and 30x30 +5 to +10 %, 5x5 on 28x28 −5 %), 56x56
/// stride 2 +5 %, 14x14 stride 2 +100 %; 40x40 and larger stride-1 planes −10 to −30 %,
/// which the rule leaves to the flat kernel.
fn prefers_lanes(geometry: &Geometry, isa: Isa, lanes_isa: Isa) -> bool {
    if !LanesEngine::suits(geometry, lanes_isa) {
        return false;
    }

    let [out_h, out_w] = geometry.output_size();
    let [height, width] = geometry.input_size();
    let padding = geometry.padding();
    let padded_h = height + padding.top + padding.bottom;
    let padded_w = width + padding.left + padding.right;
    // In u128: absurd padding can make these products exceed usize.
    let block_bytes = padded_h as u128 * padded_w as u128 * lanes_isa.lanes() as u128 * 4;
    let flat_lanes = isa.lanes() as u128;
    let row_stride = padded_w.div_ceil(geometry.stride()[1]) as u128;
    let flat_positions = (out_h as u128 * row_stride).div_ceil(flat_lanes) * flat_lanes;
    let out_plane = out_h as u128 * out_w as u128;
    // Past 16 taps the weights no longer stay in registers: a quarter of the lanes must be
    // wasted before lanes pay on planes beyond L1.
    let wasteful = if geometry.reduction_len() <= 16 {
        10 * out_plane < 9 * flat_positions
    } else {
        4 * out_plane < 3 * flat_positions
    };
    // Strided flat packing costs a shuffle per input vector and leaves each tap fewer outputs
    // per vector.
    let strided = geometry.stride() != [1, 1];
    let in_l1 = block_bytes <= LANES_L1_BUDGET as u128;
    (in_l1 || wasteful || strided) && block_bytes <= LANES_BLOCK_BUDGET as u128
}

/// Bytes of a padded input block below which the channels-in-lanes kernel wins whatever the
/// flat kernel wastes: its block stays in L1 (32x32 padded pixels of 8 lanes).
const LANES_L1_BUDGET: usize = 32 * 1024;

/// Bytes the channels-in-lanes kernel's padded input block may take: what stays in L2.
const LANES_BLOCK_BUDGET: usize = 256 * 1024;

impl fmt::Debug for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPlan")
            .field("kernel", &self.kernel_id())
            .field("threads", &self.threads)
            .field("output_shape", &self.geometry().output_shape())
            .finish()
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} thread(s)", self.kernel_id(), self.threads)
    }
}

/// The geometry a plan was made for (for callers that only keep the plan).
impl AsRef<Geometry> for KernelPlan {
    fn as_ref(&self) -> &Geometry {
        self.geometry()
    }
}

#[cfg(test)]
mod tests {
    //! Every kernel path forced on problems that suit it, on every tier this CPU has and on
    //! one and two threads, against the reference. (The crate `gconv` tests what the plans
    //! choose by themselves.)

    use super::*;
    use gconv_shape::{Conv2dParams, Padding};
    use gconv_testkit::strategy::{self, Limits};
    use gconv_testkit::{Problem, check_against_reference};
    use proptest::prelude::*;
    use std::num::NonZeroUsize;

    fn check_path(problem: &Problem, path: Path) -> Result<(), TestCaseError> {
        check_path_on(problem, path, Isa::available())
    }

    /// [`check_path`] on the channel-vector body, on the tiers it fits.
    fn check_channel_path(problem: &Problem, packing: Packing) -> Result<(), TestCaseError> {
        let body = Body::Channels(packing);
        let isas = Isa::available()
            .into_iter()
            .filter(|&isa| body_fits(body, &problem.geometry, isa));
        check_path_on(problem, Path::Body(body), isas)
    }

    /// Whether a forced `body` can run `geometry` on `isa`: the channel-vector body's blocks
    /// are whole vectors of a group's output channels.
    fn body_fits(body: Body, geometry: &Geometry, isa: Isa) -> bool {
        !matches!(body, Body::Channels(_))
            || geometry
                .out_channels_per_group()
                .is_multiple_of(isa.lanes())
    }

    /// A plan of `problem` forced onto `path` and `isa` with `threads`, split across them
    /// however small the problem.
    fn forced_plan(problem: &Problem, path: Path, isa: Isa, threads: usize) -> KernelPlan {
        let options = PlanOptions {
            isa: Some(isa),
            threads: Threads::Count(NonZeroUsize::new(threads).unwrap()),
        };
        let mut plan = KernelPlan::with_path(
            &problem.geometry,
            &problem.weight,
            problem.bias.as_deref(),
            options,
            path,
        )
        .unwrap();
        plan.parallel_min_flops = 0;
        plan
    }

    /// `plan` run on `problem`'s input, into an output that starts as NaN.
    fn forced_output(plan: &KernelPlan, problem: &Problem) -> Vec<f32> {
        let mut output = vec![f32::NAN; problem.geometry.output_len()];
        plan.run(&problem.input, &mut output).unwrap();
        output
    }

    fn check_path_on(
        problem: &Problem,
        path: Path,
        isas: impl IntoIterator<Item = Isa>,
    ) -> Result<(), TestCaseError> {
        for isa in isas {
            for threads in [1, 2] {
                let plan = forced_plan(problem, path, isa, threads);
                let output = forced_output(&plan, problem);
                check_against_reference(problem, &output).map_err(|diff| {
                    TestCaseError::fail(format!("{} ({threads} threads): {diff}", plan.kernel_id()))
                })?;
            }
        }
        Ok(())
    }

    /// Depthwise problems whose channels fill whole vectors of every tier (16 lanes).
    fn lane_problems() -> impl Strategy<Value = Problem> {
        // Kernels up to 7x7 (49 taps): ConvNeXt's depthwise size.
        (
            1usize..3,
            1usize..8,
            1usize..8,
            1usize..3,
            1usize..3,
            0usize..4,
            1usize..12,
            1usize..12,
            1usize..3,
        )
            .prop_filter_map(
                "window larger than input",
                |(blocks, kh, kw, stride, dilation, pad, h, w, batch)| {
                    let channels = 16 * blocks;
                    Conv2dParams::new(channels, channels, [kh, kw])
                        .groups(channels)
                        .stride(stride)
                        .dilation(dilation)
                        .padding(Padding::uniform(pad))
                        .geometry([batch, channels, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Stride-1 depthwise problems with channel multipliers, asymmetric kernels and padding,
    /// dilation, and rows around one and two vectors of every tier (8 and 16 lanes); half
    /// the windows square, most of those 3x3 (their shared-row tiles are specialised).
    fn unpacked_problems() -> impl Strategy<Value = Problem> {
        let square = prop_oneof![Just(3usize), 1usize..8].prop_map(|side| (side, side));
        let window = (
            prop_oneof![square, (1usize..8, 1usize..6)],
            1usize..4,
            1usize..4,
        )
            .prop_map(|((kh, kw), dh, dw)| (kh, kw, dh, dw));
        let size = (1usize..4, 1usize..4, 1usize..20, 1usize..40, 1usize..3);
        depthwise_problems(1, window, size)
    }

    /// Stride-1 depthwise problems whose output is the input's size (the padding of each axis
    /// adds up to the window's reach, split unevenly too), with channel multipliers,
    /// dilation, planes around one and two vectors of every tier and batches, so that the
    /// input's first and last planes (masked loads) and the planes between (whole loads)
    /// all occur.
    fn same_size_problems() -> impl Strategy<Value = Problem> {
        let window = (1usize..8, 1usize..8, 1usize..3, 1usize..3);
        let split = (0.0f64..1.0, 0.0f64..1.0);
        let size = (1usize..4, 1usize..3, 1usize..20, 1usize..40, 1usize..4);
        (window, split, size, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                |((kh, kw, dilation_h, dilation_w), (above, before), size, bias)| {
                    let (reach_h, reach_w) = ((kh - 1) * dilation_h, (kw - 1) * dilation_w);
                    let top = (above * (reach_h + 1) as f64) as usize;
                    let left = (before * (reach_w + 1) as f64) as usize;
                    let padding = Padding::per_side(top, reach_h - top, left, reach_w - left);
                    depthwise_geometry(1, (kh, kw, dilation_h, dilation_w), padding, size, bias)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Stride-2 depthwise problems for the unpacked kernel: windows of three and five rows
    /// (shared input rows) and others, planes tall enough for blocks of every row count and wide
    /// enough that a row holds pairs of vectors inside and at both ends (32 input columns
    /// per vector pair on AVX-512).
    fn stride_two_unpacked_problems() -> impl Strategy<Value = Problem> {
        let window = (
            prop_oneof![Just(3usize), Just(5usize), 1usize..6],
            1usize..6,
            1usize..3,
            1usize..3,
        );
        let size = (1usize..3, 1usize..3, 1usize..40, 1usize..72, 1usize..3);
        depthwise_problems(2, window, size)
    }

    /// Depthwise problems of `stride` for the streamed kernel (3x3, 5x5 and 7x7 windows with
    /// stride 1, 3x3 and 5x5 with stride 2): padding of up to three on
    /// each side (the first and last output rows reading padding rows, the first and last
    /// vectors of columns padding columns), planes of odd and even sizes, short (no row pair
    /// inside) and tall, rows around one and two vectors of every tier (32 input columns per
    /// vector on AVX-512 with stride 2, 16 with stride 1) and rows of more vectors than a
    /// band holds (four), channel multipliers and batches.
    fn streamed_problems(stride: usize) -> impl Strategy<Value = Problem> {
        let width = prop_oneof![3 => 1usize..72, 1 => 60usize..170];
        let size = (1usize..4, 1usize..3, 1usize..24, width, 1usize..3);
        let side = if stride == 1 {
            prop_oneof![Just(3usize), Just(5), Just(7)].boxed()
        } else {
            prop_oneof![Just(3usize), Just(5)].boxed()
        };
        depthwise_problems(stride, side.prop_map(|side| (side, side, 1, 1)), size)
    }

    /// Depthwise problems of `stride` with windows `(kH, kW, dH, dW)` and sizes `(channels,
    /// multiplier, H, W, batch)` drawn from the given strategies, asymmetric padding of up to
    /// three on each side, with and without bias.
    fn depthwise_problems(
        stride: usize,
        window: impl Strategy<Value = (usize, usize, usize, usize)>,
        size: impl Strategy<Value = (usize, usize, usize, usize, usize)>,
    ) -> impl Strategy<Value = Problem> {
        let padding = (0usize..4, 0usize..4, 0usize..4, 0usize..4);
        (window, padding, size, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                move |(window, (top, bottom, left, right), size, bias)| {
                    let padding = Padding::per_side(top, bottom, left, right);
                    depthwise_geometry(stride, window, padding, size, bias)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// A depthwise geometry of `stride`, window `(kH, kW, dH, dW)`, `padding` and sizes
    /// `(channels, multiplier, H, W, batch)`, if valid.
    fn depthwise_geometry(
        stride: usize,
        (kh, kw, dilation_h, dilation_w): (usize, usize, usize, usize),
        padding: Padding,
        (channels, multiplier, h, w, batch): (usize, usize, usize, usize, usize),
        bias: bool,
    ) -> Option<Geometry> {
        Conv2dParams::new(channels, channels * multiplier, [kh, kw])
            .groups(channels)
            .stride(stride)
            .dilation([dilation_h, dilation_w])
            .padding(padding)
            .bias(bias)
            .geometry([batch, channels, h, w])
            .ok()
    }

    /// Depthwise 5xN and 7xN windows without vertical dilation on planes tall enough for
    /// blocks of every row count: the unpacked kernel's shared-row tiles.
    fn tall_window_problems() -> impl Strategy<Value = Problem> {
        // Square windows half the time (their tiles are specialised), else any width.
        let window = (
            prop_oneof![Just(5usize), Just(7usize)],
            prop_oneof![Just(None), (1usize..8).prop_map(Some)],
            1usize..3,
        );
        let size = (0usize..4, 0usize..4, 1usize..3, 8usize..30, 1usize..40);
        (window, size)
            .prop_filter_map(
                "window larger than input",
                |((kh, kw, dilation_w), (top, left, channels, h, w))| {
                    let kw = kw.unwrap_or(kh);
                    Conv2dParams::new(channels, channels, [kh, kw])
                        .groups(channels)
                        .dilation([1, dilation_w])
                        .padding(Padding::per_side(top, kh - 1 - top.min(kh - 1), left, left))
                        .geometry([1, channels, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// 1×1 problems with stride 1 and no padding (read in place), of every group count and
    /// plane size around the lanes, and batches whose last group ends the input (the band
    /// copied because its last vectors would read past it).
    fn pointwise_problems() -> impl Strategy<Value = Problem> {
        pointwise_problems_of(
            (1usize..4, 1usize..12, 1usize..12),
            (1usize..20, 1usize..20, 1usize..3),
        )
    }

    /// 1×1 problems, stride 1, no padding, of `(groups, in_per_group, out_per_group)` from
    /// `shape` and `(height, width, batch)` from `size`, with or without a bias.
    fn pointwise_problems_of(
        shape: impl Strategy<Value = (usize, usize, usize)>,
        size: impl Strategy<Value = (usize, usize, usize)>,
    ) -> impl Strategy<Value = Problem> {
        (shape, size, any::<bool>())
            .prop_filter_map(
                "never invalid",
                |((groups, in_per_group, out_per_group), (h, w, batch), bias)| {
                    Conv2dParams::new(groups * in_per_group, groups * out_per_group, 1)
                        .groups(groups)
                        .bias(bias)
                        .geometry([batch, groups * in_per_group, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Output channels per group for the channel-vector body: multiples of 8, so that
    /// blocks of one vector and of two (8 or 16 lanes) both come up on every tier that
    /// divides them.
    fn channel_vector_counts() -> impl Strategy<Value = usize> {
        (1usize..9).prop_map(|vectors| 8 * vectors)
    }

    /// Grouped problems for the channel-vector body (output channels per group a multiple
    /// of 8), with reductions short and long enough to come in several chunks of taps (past
    /// 128 taps on AVX-512, 256 on AVX2).
    fn channel_block_problems() -> impl Strategy<Value = Problem> {
        let in_per_group = prop_oneof![2usize..5, 20usize..40];
        let shape = (
            1usize..3,
            in_per_group,
            channel_vector_counts(),
            (1usize..4, 1usize..4),
        );
        // Asymmetric padding and "same" padding too: per-kernel-column packing copies whole
        // rows shifted where the output is as wide as the input.
        let padding = prop_oneof![
            (0usize..3).prop_map(Padding::uniform),
            (0usize..3, 0usize..3, 0usize..3, 0usize..3)
                .prop_map(|(top, bottom, left, right)| Padding::per_side(top, bottom, left, right)),
            Just(Padding::Same),
        ];
        let window = (
            1usize..3,
            1usize..3,
            padding,
            (1usize..12, 1usize..14),
            1usize..3,
        );
        (shape, window, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                |(
                    (groups, in_per_group, out_per_group, (kh, kw)),
                    (stride, dilation, pad, (h, w), batch),
                    bias,
                )| {
                    Conv2dParams::new(groups * in_per_group, groups * out_per_group, [kh, kw])
                        .groups(groups)
                        .stride(stride)
                        .dilation(dilation)
                        .padding(pad)
                        .bias(bias)
                        .geometry([batch, groups * in_per_group, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// 1x1 problems (stride 1, no padding: read in place) for the channel-vector body, on
    /// planes small and large, reductions short and long.
    fn channel_pointwise_problems() -> impl Strategy<Value = Problem> {
        let in_per_group = prop_oneof![2usize..5, 100usize..300];
        pointwise_problems_of(
            (1usize..3, in_per_group, channel_vector_counts()),
            (1usize..16, 1usize..16, 1usize..3),
        )
    }

    /// Problems whose tasks (one group or three of at most 16 output channels, one sample)
    /// leave two threads unevenly loaded, on planes whose halves hold 256 outputs: split
    /// into blocks of rows on two threads. Windows 1x1 to 3x3 (1x1 read in place), strides
    /// and dilations 1 and 2, per-group output channels of one and two vectors of 8 too.
    fn row_block_problems() -> impl Strategy<Value = Problem> {
        let out_per_group = prop_oneof![1usize..17, Just(8), Just(16)];
        let shape = (
            prop_oneof![Just(1usize), Just(3)],
            2usize..7,
            out_per_group,
            1usize..4,
        );
        let window = (1usize..3, 1usize..3, 0usize..3, any::<bool>());
        (shape, window, (16usize..48, 44usize..80))
            .prop_filter_map(
                "output too small to split",
                |(
                    (groups, in_per_group, out_per_group, kernel),
                    (stride, dilation, pad, bias),
                    (h, w),
                )| {
                    let geometry =
                        Conv2dParams::new(groups * in_per_group, groups * out_per_group, kernel)
                            .groups(groups)
                            .stride(stride)
                            .dilation(dilation)
                            .padding(Padding::uniform(pad))
                            .bias(bias)
                            .geometry([1, groups * in_per_group, h, w])
                            .ok()?;
                    let [out_h, out_w] = geometry.output_size();
                    (out_h / 2 * out_w >= 256).then_some(geometry)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Each forced body over [`row_block_problems`]: on every tier, one thread matches the
    /// reference, two split the plane into blocks of rows, and two and three threads give
    /// the same bits as one.
    fn check_row_blocks(problem: &Problem) -> Result<(), TestCaseError> {
        let geometry = &problem.geometry;
        let pointwise = geometry.kernel_size() == [1, 1] && geometry.stride() == [1, 1];
        let mut bodies = vec![
            Body::Positions(Packing::PhaseSplit),
            Body::Positions(Packing::Im2col),
            Body::Channels(Packing::PhaseSplit),
            Body::Channels(Packing::KernelColumns),
        ];
        if pointwise && geometry.padding() == Default::default() {
            bodies.extend([
                Body::Positions(Packing::InPlace),
                Body::Channels(Packing::InPlace),
            ]);
        }
        for isa in Isa::available() {
            for &body in bodies
                .iter()
                .filter(|&&body| body_fits(body, geometry, isa))
            {
                let path = Path::Body(body);
                let single = forced_plan(problem, path, isa, 1);
                let expected = forced_output(&single, problem);
                let id = single.kernel_id();
                check_against_reference(problem, &expected)
                    .map_err(|diff| TestCaseError::fail(format!("{id}: {diff}")))?;
                for threads in [2, 3] {
                    let parallel = forced_plan(problem, path, isa, threads);
                    // An odd number of chunks (always so up to 8 channels per group; 1x1
                    // groups of 16 come in two chunks of 8) is split into blocks of rows.
                    if let (2, Kernel::Grouped(engine)) = (threads, &parallel.kernel) {
                        let chunks = geometry.out_channels() / engine.chunk_channels;
                        let split = engine.row_blocks > 1;
                        prop_assert!(
                            split || chunks.is_multiple_of(2),
                            "{id}: {chunks} chunks, one block"
                        );
                    }
                    let same = forced_output(&parallel, problem)
                        .iter()
                        .zip(&expected)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    prop_assert!(same, "{id}: {threads} threads differ from one");
                }
            }
        }
        Ok(())
    }

    /// Padding far beyond the input, with a stride that keeps the output small: a valid
    /// geometry whose packed planes would be astronomically large. A clear error, never a
    /// panic, a wrapped size or a huge allocation, on every tier and kernel path.
    #[test]
    fn absurd_padding_is_refused_not_allocated() {
        for (channels, groups, padding, stride) in [
            (16, 16, 1usize << 30, 1usize << 20),
            (4, 2, 1 << 30, 1 << 20),
            (16, 16, 1 << 40, 1 << 40),
            (4, 1, 1 << 40, 1 << 40),
        ] {
            let geometry = Conv2dParams::new(channels, channels, 3)
                .groups(groups)
                .stride(stride)
                .padding(Padding::uniform(padding))
                .bias(false)
                .geometry([1, channels, 1, 1])
                .unwrap();
            let weight = vec![1.0; geometry.weight_count()];
            for isa in Isa::available() {
                for path in [
                    Path::Chosen,
                    Path::Lanes,
                    Path::Body(Body::Positions(Packing::PhaseSplit)),
                ] {
                    let options = PlanOptions {
                        isa: Some(isa),
                        threads: Threads::Count(NonZeroUsize::new(1).unwrap()),
                    };
                    let result = KernelPlan::with_path(&geometry, &weight, None, options, path);
                    assert!(
                        matches!(result, Err(KernelError::TooLarge { .. })),
                        "{isa} {path:?} padding {padding}: {:?}",
                        result.map(|plan| plan.kernel_id())
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(strategy::cases(48)))]

        #[test]
        fn channel_vectors_match_the_reference(problem in channel_block_problems()) {
            check_channel_path(&problem, Packing::PhaseSplit)?;
            check_channel_path(&problem, Packing::KernelColumns)?;
        }

        #[test]
        fn channel_vectors_in_place_match_the_reference(problem in channel_pointwise_problems()) {
            check_channel_path(&problem, Packing::InPlace)?;
        }

        #[test]
        fn blocks_of_rows_give_the_bits_of_one_thread(problem in row_block_problems()) {
            check_row_blocks(&problem)?;
        }

        #[test]
        fn phase_split_packing_matches_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, Path::Body(Body::Positions(Packing::PhaseSplit)))?;
        }

        #[test]
        fn flat_and_row_vector_orders_match_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, Path::PhaseSplit(VectorOrder::Flat))?;
            check_path(&problem, Path::PhaseSplit(VectorOrder::Rows))?;
        }

        #[test]
        fn in_place_pointwise_matches_the_reference(problem in pointwise_problems()) {
            check_path(&problem, Path::Body(Body::Positions(Packing::InPlace)))?;
        }

        #[test]
        fn im2col_packing_matches_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, Path::Body(Body::Positions(Packing::Im2col)))?;
        }

        #[test]
        fn channels_in_lanes_match_the_reference(problem in lane_problems()) {
            check_path(&problem, Path::Lanes)?;
        }

        #[test]
        fn unpacked_depthwise_matches_the_reference(problem in unpacked_problems()) {
            check_path(&problem, Path::Unpacked)?;
        }

        #[test]
        fn unpacked_depthwise_with_stride_two_matches_the_reference(
            problem in stride_two_unpacked_problems()
        ) {
            check_path(&problem, Path::Unpacked)?;
        }

        #[test]
        fn streamed_depthwise_matches_the_reference(problem in streamed_problems(1)) {
            check_path(&problem, Path::Streamed)?;
        }

        #[test]
        fn streamed_depthwise_with_stride_two_matches_the_reference(
            problem in streamed_problems(2)
        ) {
            check_path(&problem, Path::Streamed)?;
        }

        #[test]
        fn shifted_plane_depthwise_matches_the_reference(problem in same_size_problems()) {
            prop_assert_eq!(problem.geometry.output_size(), problem.geometry.input_size());
            check_path(&problem, Path::Shifted)?;
        }

        #[test]
        fn unpacked_depthwise_with_tall_windows_matches_the_reference(
            problem in tall_window_problems()
        ) {
            check_path(&problem, Path::Unpacked)?;
        }
    }
}
