//! A validated convolution prepared for one tier: packed weights, the packed-input layout,
//! the split of output channels into register blocks and tasks, and the per-tier entry points.

use std::ops::Range;

use gconv_shape::Geometry;

use crate::channel_vectors::{ChannelBlock, convolve_channel_block};
use crate::layout::{Layout, MIXED, Packing, VectorOrder};
use crate::microkernel::{self, convolve_block};
use crate::simd::{Kernel, Simd, dispatch};
use crate::workspace::{Piece, Runs, Workspace};
use crate::{Family, Isa, KernelError};

/// Output channels of a register block, and where the block starts within its task's chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub first_channel: usize,
    pub channels: usize,
}

/// Register-tile widths (vectors per tile) for blocks of 1, 2, 4 and 8 channels, and the
/// largest block: chosen per tier so that accumulators, input vectors and one broadcast weight
/// fit in the register file (16 registers for AVX2 and the portable tier, 32 for AVX-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileShape {
    pub max_channels: usize,
    pub vectors: [usize; 4],
    /// Positions per tile of the channel-vector kernel (`2·LANES` channels × this many).
    pub channel_tile_positions: usize,
    /// The shortest reduction (`K = C_in/g·kH·kW`) from which the channel-vector body runs
    /// where it can, instead of the flat one; `usize::MAX`: never. Measured (one thread,
    /// channel-vector against flat): AVX2 +12 to +74 % on AlexNet conv2/4/5, ResNeXt layer4
    /// and ShuffleNet stage 4 (K from 80), its 16 registers capping the flat tile at
    /// 4 channels x 2 vectors; AVX-512, median of five alternating runs, +3 to +11 % on
    /// AlexNet, +5 % on ResNeXt layer4 and layer4_down, +11 % on 7x7 planes of 96 channels
    /// per group, −3 % on ShuffleNet's 1x1 stage-4 expansion (K = 80); portable −25 %.
    pub channels_min_reduction: usize,
}

impl TileShape {
    pub const fn for_isa(isa: Isa) -> TileShape {
        match isa {
            Isa::X86_64V4 => TileShape {
                max_channels: 8,
                vectors: [8, 6, 4, 3],
                channel_tile_positions: 12,
                channels_min_reduction: 128,
            },
            Isa::X86_64V3 => TileShape {
                max_channels: 4,
                vectors: [6, 4, 2, 1],
                channel_tile_positions: 6,
                channels_min_reduction: 64,
            },
            Isa::Portable => TileShape {
                max_channels: 4,
                vectors: [4, 2, 1, 1],
                channel_tile_positions: 3,
                channels_min_reduction: usize::MAX,
            },
        }
    }

    /// Vectors per tile for a block of `channels`.
    pub const fn vectors_for(&self, channels: usize) -> usize {
        match channels {
            1 => self.vectors[0],
            2 => self.vectors[1],
            4 => self.vectors[2],
            _ => self.vectors[3],
        }
    }

    /// Whether blocks of `channels` run in tiles of `vectors` on this tier.
    pub const fn has_tile(&self, channels: usize, vectors: usize) -> bool {
        channels <= self.max_channels && self.vectors_for(channels) == vectors
    }
}

/// Which kernel body computes a block, and how the group's input is packed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// `M` channels × `V` vectors of positions (`crate::microkernel`), on either packing.
    Positions(Packing),
    /// `2·LANES` (or `LANES`) channels in lanes × `P` positions (`crate::channel_vectors`),
    /// on a phase-split or per-kernel-column packing, or in place.
    Channels(Packing),
}

/// Everything a run needs, fixed at plan creation.
#[derive(Debug)]
pub(crate) struct Engine {
    pub geometry: Geometry,
    pub isa: Isa,
    pub tile: TileShape,
    pub body: Body,
    pub layout: Layout,
    /// Output channels per task: a divisor of `C_out/g`, so a task never spans two groups.
    pub chunk_channels: usize,
    /// Blocks of output rows each (sample, chunk) is split into, one task each: more than
    /// one only where the chunks alone would leave threads idle (see [`row_blocks`]).
    pub row_blocks: usize,
    /// The register blocks of every chunk (the same for all chunks).
    pub blocks: Vec<Block>,
    /// Weights in chunk order, each block packed `[tap][m]`.
    pub weights: Vec<f32>,
    /// Bias per output channel (zeros without a bias).
    pub bias: Vec<f32>,
}

impl Engine {
    pub fn new(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        isa: Isa,
        threads: usize,
        body: Option<Body>,
        order: Option<VectorOrder>,
    ) -> Result<Engine, KernelError> {
        let tile = TileShape::for_isa(isa);
        // The channel-vector body's blocks are two vectors of channels, the last one of a
        // chunk possibly one.
        let channel_block = 2 * isa.lanes();
        // Chunks of whole blocks; of whole vectors (a last block of one) only where the flat
        // body would waste lanes, or where the channel-vector body is forced. (Single-vector
        // blocks load a weight vector per `P` multiply-adds, not two per `2·P`: on 14x14
        // planes, where the flat body wastes 6–14 % of its lanes, they ran 2–15 % slower.)
        let channel_granule =
            if flat_wastes_lanes(geometry, isa) || matches!(body, Some(Body::Channels(_))) {
                isa.lanes()
            } else {
                channel_block
            };
        // Where the channel-vector body could run, tasks take whole granules of it.
        let per_group = geometry.out_channels_per_group();
        let granule = if geometry.in_channels_per_group() == 1 {
            1
        } else if per_group.is_multiple_of(channel_block) {
            channel_block
        } else if per_group.is_multiple_of(channel_granule) {
            channel_granule
        } else {
            1
        };
        // Chunks that leave threads idle (three tasks on two threads, one idle half the
        // time) are split into blocks of output rows; where the rows are too few for that,
        // whole vectors of channels give way to the flat body's finer chunks (a forced
        // channel-vector body keeps its blocks).
        let coarse = chunk_channels(geometry, threads, granule);
        let (chunk_channels, row_blocks) = match row_blocks(geometry, threads, coarse) {
            Some(row_blocks) => (coarse, row_blocks),
            None if granule > 1 && !matches!(body, Some(Body::Channels(_))) => {
                let fine = chunk_channels(geometry, threads, 1);
                (fine, row_blocks(geometry, threads, fine).unwrap_or(1))
            }
            None => (coarse, 1),
        };
        let lanes = isa.lanes();
        let channels_preferred = prefers_channels(geometry, chunk_channels, channel_granule, &tile);
        let bands = Bands {
            lanes,
            tile: &tile,
            row_blocks,
        };
        let (body, layout) = match body {
            Some(Body::Positions(packing)) => (
                Body::Positions(packing),
                layout(geometry, &bands, packing, order),
            ),
            Some(Body::Channels(packing)) => (
                Body::Channels(packing),
                layout(geometry, &bands, packing, order),
            ),
            None if channels_preferred => {
                let layout = cheaper_channel_layout(geometry, &bands, chunk_channels);
                let packing = layout.as_ref().map_or(Packing::PhaseSplit, |l| l.packing);
                (Body::Channels(packing), layout)
            }
            None => {
                let layout = cheaper_layout(geometry, &bands, chunk_channels);
                let packing = layout.as_ref().map_or(Packing::PhaseSplit, |l| l.packing);
                (Body::Positions(packing), layout)
            }
        };
        if matches!(body, Body::Channels(_))
            && !suits_channels(geometry, chunk_channels, channel_granule)
        {
            return Err(KernelError::TooLarge {
                what: "the channel-vector block (a forced kernel that does not fit the problem)",
            });
        }
        let layout = layout.ok_or(KernelError::TooLarge {
            what: "an output plane or a packed input channel",
        })?;
        let blocks = match body {
            Body::Channels(_) => (0..chunk_channels)
                .step_by(channel_block)
                .map(|first_channel| Block {
                    first_channel,
                    channels: channel_block.min(chunk_channels - first_channel),
                })
                .collect(),
            Body::Positions(_) => blocks(chunk_channels, tile.max_channels),
        };
        let taps = geometry.reduction_len();
        let mut packed_weights = Vec::with_capacity(weight.len());
        for chunk_start in (0..geometry.out_channels()).step_by(chunk_channels) {
            for block in &blocks {
                let first = chunk_start + block.first_channel;
                for tap in 0..taps {
                    for m in 0..block.channels {
                        packed_weights.push(weight[(first + m) * taps + tap]);
                    }
                }
            }
        }
        Ok(Engine {
            geometry: *geometry,
            isa,
            tile,
            body,
            layout,
            chunk_channels,
            row_blocks,
            blocks,
            weights: packed_weights,
            bias: bias.map_or_else(|| vec![0.0; geometry.out_channels()], <[f32]>::to_vec),
        })
    }

    /// Floats of scratch a worker needs: one packed band of a group's input, then (for the
    /// channel-vector body on long reductions) the running sums of a block's band, then
    /// (for blocks of rows) the block's output, copied to its rows of each plane when done.
    pub fn scratch_len(&self) -> usize {
        self.task_scratch_len() + self.staging_len()
    }

    /// Floats of scratch a task's kernels use: the packed band and the running sums.
    fn task_scratch_len(&self) -> usize {
        self.layout.packed_len + self.running_sums_len()
    }

    /// Floats of a block of rows' output: the chunk's channels × the tallest block's rows.
    fn staging_len(&self) -> usize {
        if self.row_blocks == 1 {
            return 0;
        }
        let rows = self.layout.out_rows.div_ceil(self.row_blocks);
        self.chunk_channels * rows * self.layout.out_cols
    }

    /// Task `index`'s chunk (counted over the whole output, sample by sample) and output
    /// rows: block `index % row_blocks` of near-equal parts of the plane, in order.
    fn task_of(&self, index: usize) -> (usize, Range<usize>) {
        let (chunk, block) = (index / self.row_blocks, index % self.row_blocks);
        let rows = self.layout.out_rows;
        let block_rows = block * rows / self.row_blocks..(block + 1) * rows / self.row_blocks;
        (chunk, block_rows)
    }

    /// Floats of running sums the channel-vector body keeps between chunks of taps: up to
    /// two vectors per position of a band (a block's channels), when the taps come in more
    /// than one chunk.
    fn running_sums_len(&self) -> usize {
        let chunked = self.geometry.reduction_len() > channel_tap_chunk(self.isa.lanes());
        if matches!(self.body, Body::Channels(_)) && chunked {
            self.layout.band_rows * self.layout.row_stride * 2 * self.isa.lanes()
        } else {
            0
        }
    }

    /// Convolves `input` into `output` (both checked by the caller against the geometry),
    /// on the workspace's team when `parallel`.
    pub fn run(&self, input: &[f32], output: &mut [f32], workspace: &Workspace, parallel: bool) {
        let out_cols = self.layout.out_cols;
        let out_plane = self.layout.out_rows * out_cols;
        let chunk_len = self.chunk_channels * out_plane;
        let chunks_per_sample = self.geometry.out_channels() / self.chunk_channels;
        let tasks = self.geometry.batch() * chunks_per_sample * self.row_blocks;
        let runs_of = |index: usize| {
            let (chunk, rows) = self.task_of(index);
            if self.row_blocks == 1 {
                return Runs {
                    start: chunk * chunk_len,
                    count: 1,
                    len: chunk_len,
                    pitch: 0,
                };
            }
            Runs {
                start: chunk * chunk_len + rows.start * out_cols,
                count: self.chunk_channels,
                len: rows.len() * out_cols,
                pitch: out_plane,
            }
        };
        let task = |scratch: &mut [f32], index: usize, mut piece: Piece<'_>| {
            let (chunk, rows) = self.task_of(index);
            let (sample, chunk_index) = (chunk / chunks_per_sample, chunk % chunks_per_sample);
            let (scratch, staging) = scratch.split_at_mut(self.task_scratch_len());
            if self.row_blocks == 1 {
                self.run_task(input, sample, chunk_index, rows, piece.run(0), scratch);
                return;
            }
            // A block's rows are a run of each of its channels' planes: computed into
            // scratch, then copied (a float per `K` multiply-adds).
            let block_plane = rows.len() * out_cols;
            let staging = &mut staging[..self.chunk_channels * block_plane];
            self.run_task(input, sample, chunk_index, rows, staging, scratch);
            for (channel, computed) in staging.chunks_exact(block_plane).enumerate() {
                piece.run(channel).copy_from_slice(computed);
            }
        };
        // SAFETY: tasks of distinct chunks write distinct planes; tasks of one chunk write
        // distinct blocks of rows of its planes (`task_of` splits the plane).
        unsafe { workspace.for_each_piece(parallel, output, tasks, runs_of, task) };
    }

    /// Packs the group's input for `sample`, then convolves every block of chunk
    /// `chunk_index` over the output rows `rows`; `output` holds those rows of each of the
    /// chunk's planes, one plane after the other.
    fn run_task(
        &self,
        input: &[f32],
        sample: usize,
        chunk_index: usize,
        rows: Range<usize>,
        output: &mut [f32],
        packed: &mut [f32],
    ) {
        let first_channel = chunk_index * self.chunk_channels;
        let group = first_channel / self.geometry.out_channels_per_group();
        let image = self.layout.height * self.layout.width;
        let in_channels = self.geometry.group_input_channels(group);
        let sample_start = sample * self.geometry.in_channels() * image;
        let input_tail = &input[sample_start + in_channels.start * image..];
        let group_input = &input_tail[..in_channels.len() * image];
        let packed = &mut packed[..self.task_scratch_len()];
        let task = TaskArgs {
            engine: self,
            group_input,
            input_tail,
            packed,
            first_channel,
            rows,
            output,
        };
        dispatch(self.isa, task);
    }
}

/// One task's inputs to the per-tier entry points.
pub(crate) struct TaskArgs<'a> {
    engine: &'a Engine,
    group_input: &'a [f32],
    /// The input from the group's first channel to the end: what an in-place layout reads.
    input_tail: &'a [f32],
    packed: &'a mut [f32],
    first_channel: usize,
    /// The output rows the task computes, and `output` holds (each of its planes).
    rows: Range<usize>,
    output: &'a mut [f32],
}

impl Kernel for TaskArgs<'_> {
    /// Packs each band of the task's group and runs every block of its chunk over it.
    #[inline(always)]
    fn run<S: Simd>(self, simd: S) {
        run_blocks(simd, self)
    }
}

#[inline(always)]
fn run_blocks<S: Simd>(simd: S, task: TaskArgs<'_>) {
    let TaskArgs {
        engine,
        group_input,
        input_tail,
        packed,
        first_channel,
        rows,
        output,
    } = task;
    let layout = &engine.layout;
    let (packed, running_sums) = packed.split_at_mut(layout.packed_len);
    for first_row in layout.band_starts(rows.clone()) {
        let place = BandPlace {
            plane_len: rows.len() * layout.out_cols,
            offset: (first_row - rows.start) * layout.out_cols,
        };
        if layout.packing == Packing::InPlace {
            // The band's rows where they lie, unless its last vectors would read past the
            // input's end: then a copy padded with zeros.
            let source = &input_tail[first_row * layout.width..];
            let band_input: &[f32] = if source.len() >= layout.packed_len {
                &source[..layout.packed_len]
            } else {
                let (copied, rest) = packed.split_at_mut(source.len());
                copied.copy_from_slice(source);
                rest.fill(0.0);
                packed
            };
            // (Its own call, not one shared with the packed path through a slice that may
            // point at either: that measured 3–5 % slower on ResNeXt's packed layers.)
            run_band(
                simd,
                engine,
                band_input,
                &mut *running_sums,
                first_channel,
                &mut *output,
                place,
            );
            continue;
        }
        layout.pack_channels(simd, group_input, packed, first_row);
        run_band(
            simd,
            engine,
            packed,
            &mut *running_sums,
            first_channel,
            &mut *output,
            place,
        );
    }
}

/// Where a band's outputs lie in a task's output: planes of `plane_len` floats (the task's
/// rows of each channel), the band's first row `offset` floats into each.
#[derive(Debug, Clone, Copy)]
struct BandPlace {
    plane_len: usize,
    offset: usize,
}

/// Every register block of a task's chunk over one band, with the tile widths of the tier.
#[inline(always)]
fn run_band<S: Simd>(
    simd: S,
    engine: &Engine,
    packed: &[f32],
    running_sums: &mut [f32],
    first_channel: usize,
    output: &mut [f32],
    place: BandPlace,
) {
    let BandPlace {
        plane_len: out_plane,
        offset: band_offset,
    } = place;
    let layout = &engine.layout;
    let taps = engine.geometry.reduction_len();
    let chunk_weights = &engine.weights[first_channel * taps..][..engine.chunk_channels * taps];
    if matches!(engine.body, Body::Channels(_)) {
        for block in &engine.blocks {
            let channel = first_channel + block.first_channel;
            let args = ChannelBlock {
                layout,
                packed,
                weights: &chunk_weights[block.first_channel * taps..][..block.channels * taps],
                bias: &engine.bias[channel..channel + block.channels],
                output: &mut output[block.first_channel * out_plane..]
                    [..block.channels * out_plane],
                out_plane,
                band_offset,
                tap_chunk: channel_tap_chunk(S::LANES),
                running_sums: &mut *running_sums,
            };
            // As for the flat tiles below: only the tier's own tile width is compiled.
            macro_rules! channel_tiles {
                ($($positions:literal),*) => {
                    $(
                        if const { TileShape::for_isa(S::ISA).channel_tile_positions == $positions } {
                            if block.channels == S::LANES {
                                convolve_channel_block::<S, 1, $positions>(simd, args);
                            } else {
                                convolve_channel_block::<S, 2, $positions>(simd, args);
                            }
                            continue;
                        }
                    )*
                    unreachable!("no channel tile for this tier");
                };
            }
            channel_tiles!(12, 6, 3);
        }
        return;
    }
    for block in &engine.blocks {
        let weights = &chunk_weights[block.first_channel * taps..][..block.channels * taps];
        let out = &mut output[block.first_channel * out_plane..][..block.channels * out_plane];
        let channel = first_channel + block.first_channel;
        let bias = &engine.bias[channel..channel + block.channels];
        debug_assert_eq!(engine.tile, TileShape::for_isa(S::ISA));
        let packed: &[f32] = packed;
        // Each tier's code holds only its own tiles: the `const` conditions are settled when
        // the tier is compiled (compiling every tier's tiles into each doubled the crate's
        // build time).
        macro_rules! tiles {
            ($(($m:literal, $v:literal)),*) => {
                $(
                    if const { TileShape::for_isa(S::ISA).has_tile($m, $v) } && block.channels == $m {
                        convolve_block::<S, $m, $v>(simd, microkernel::Block {
                            layout,
                            packed,
                            weights,
                            bias: to_array(bias),
                            output: out,
                            out_plane,
                            band_offset,
                        });
                        continue;
                    }
                )*
                unreachable!("no tile for blocks of {} channels", block.channels);
            };
        }
        tiles!(
            (1, 8),
            (1, 6),
            (1, 4),
            (2, 6),
            (2, 4),
            (2, 2),
            (4, 4),
            (4, 2),
            (4, 1),
            (8, 3)
        );
    }
}

/// `values` as an array of `M`: the bias of a block.
#[inline(always)]
fn to_array<const M: usize>(values: &[f32]) -> [f32; M] {
    std::array::from_fn(|m| values[m])
}

/// Output channels per task: all of a group's when there are enough groups and samples to
/// keep `threads` busy (then each group's input is packed once), otherwise the largest
/// multiple of `granule` dividing `C_out/g` that yields two tasks per thread, but not fewer
/// than 16 channels (or the group), so that re-packing a group's input for each of its tasks
/// stays small against their arithmetic. Pointwise groups, read in place, re-pack nothing:
/// their floor is one register block of 8 channels (ShuffleNet's 20-channel groups: 6 tasks of
/// 10 for two threads, not 3 of 20).
fn chunk_channels(geometry: &Geometry, threads: usize, granule: usize) -> usize {
    let per_group = geometry.out_channels_per_group();
    if threads <= 1 {
        return per_group;
    }
    let wanted = 2 * threads;
    let groups = geometry.batch() * geometry.groups();
    let floor = if Family::of(geometry) == Family::Pointwise {
        per_group.min(8)
    } else {
        per_group.min(16)
    };
    let mut choice = per_group;
    let candidates = (floor..=per_group)
        .rev()
        .filter(|d| per_group.is_multiple_of(*d) && d.is_multiple_of(granule));
    for divisor in candidates {
        choice = divisor;
        if groups * (per_group / divisor) >= wanted {
            break;
        }
    }
    choice
}

/// Whether `tasks` keep `threads` evenly busy: as many tasks per thread, or enough of them
/// (four per thread) that the last round hardly matters.
fn balanced(tasks: usize, threads: usize) -> bool {
    threads <= 1 || tasks.is_multiple_of(threads) || tasks >= 4 * threads
}

/// Output positions a block of rows holds at least, and rows: below that its bands are
/// mostly edges and its packing is repeated for little (a 15x15 plane in two blocks of
/// 32-channel chunks ran 7 % slower on two threads than four chunks of 40 channels whole).
const MIN_BLOCK_POSITIONS: usize = 256;
const MIN_BLOCK_ROWS: usize = 2;

/// Blocks of output rows to split each (sample, chunk of `chunk` channels) task into: the
/// fewest that keep `threads` evenly busy ([`balanced`]), 1 when the chunks alone do; `None`
/// when the plane's rows are too few for that. Every block's bands are whole and the same
/// multiply-adds run on every output, so the output does not depend on the blocks.
fn row_blocks(geometry: &Geometry, threads: usize, chunk: usize) -> Option<usize> {
    let tasks = geometry.batch() * geometry.out_channels() / chunk;
    let [out_rows, out_cols] = geometry.output_size();
    (1..=4 * threads).find(|&blocks| {
        let rows = out_rows / blocks;
        let fits =
            blocks == 1 || (rows >= MIN_BLOCK_ROWS && rows * out_cols >= MIN_BLOCK_POSITIONS);
        fits && balanced(tasks * blocks, threads)
    })
}

/// Bytes of L2 an im2col buffer may fill: a quarter of the smallest x86-64 L2 of this
/// decade (1 MiB), so that it survives the output and weights passing through.
const L2_BUDGET: usize = 256 * 1024;

/// The layout whose packing has the lower estimated cost for a task of `chunk_channels`
/// output channels, in vector operations: the multiply-adds (`chunk · K` per vector of
/// positions, discarded columns included) plus the packing (two per vector copied; a strided
/// im2col gathers one float at a time). Phase-split wins ties: it packs less.
fn cheaper_layout(geometry: &Geometry, bands: &Bands<'_>, chunk_channels: usize) -> Option<Layout> {
    // Nothing to pack beats any packing.
    if let Some(in_place) = layout(geometry, bands, Packing::InPlace, None) {
        return Some(in_place);
    }
    let phase_split = layout(geometry, bands, Packing::PhaseSplit, None)?;
    let Some(im2col) = layout(geometry, bands, Packing::Im2col, None) else {
        return Some(phase_split);
    };
    let taps = geometry.reduction_len();
    let cost = |layout: &Layout| {
        let bands = layout.out_rows.div_ceil(layout.band_rows);
        let arithmetic = chunk_channels * taps * layout.vectors * bands;
        arithmetic + packing_cost(geometry, layout) * bands
    };
    // Im2col copies every window: it only pays while the copy stays in L2 for all the blocks
    // that read it (measured: AlexNet's 1 to 3.5 MB im2col buffers ran at half the speed).
    let fits_in_l2 = im2col.packed_len * 4 <= L2_BUDGET;
    if fits_in_l2 && 20 * cost(&im2col) < 19 * cost(&phase_split) {
        Some(im2col)
    } else {
        Some(phase_split)
    }
}

/// Vector operations that packing one band of a group's input costs: two per vector copied
/// plus [`ROW_COST`] per row (short rows cost mostly their bookkeeping); a strided im2col
/// gathers one float at a time.
fn packing_cost(geometry: &Geometry, layout: &Layout) -> usize {
    let channels = geometry.in_channels_per_group();
    let taps = geometry.reduction_len();
    let lanes = layout.lanes;
    let rows = |count: usize, length: usize| count * (ROW_COST + 2 * length.div_ceil(lanes));
    match layout.packing {
        Packing::PhaseSplit => {
            let phase_rows = layout.stride_h * layout.stride_w * layout.plane_rows;
            channels * rows(phase_rows, layout.row_stride)
        }
        Packing::KernelColumns => {
            let copies = layout.kernel[1] * layout.stride_h * layout.plane_rows;
            channels * rows(copies, layout.out_cols)
        }
        Packing::Im2col if layout.stride_w == 1 => 2 * taps * layout.vectors,
        Packing::Im2col => taps * layout.vectors * lanes,
        Packing::InPlace => 0,
    }
}

/// Vector operations a packed row costs beyond its copy: finding its source, clipping it to
/// the padding, one masked store.
const ROW_COST: usize = 6;

/// The packing for the channel-vector body with the lower estimated cost for a task of
/// `chunk_channels` output channels: its tiles' multiply-adds (one per position, kept or
/// discarded, per `LANES` channels and tap) plus the packing. Per kernel column computes no
/// discarded column but copies each input row `kW` times.
fn cheaper_channel_layout(
    geometry: &Geometry,
    bands: &Bands<'_>,
    chunk_channels: usize,
) -> Option<Layout> {
    // Nothing to pack beats any packing.
    if let Some(in_place) = layout(geometry, bands, Packing::InPlace, None) {
        return Some(in_place);
    }
    let phase_split = layout(geometry, bands, Packing::PhaseSplit, None)?;
    let Some(columns) = layout(geometry, bands, Packing::KernelColumns, None) else {
        return Some(phase_split);
    };
    let taps = geometry.reduction_len();
    let cost = |layout: &Layout| {
        let bands = layout.out_rows.div_ceil(layout.band_rows);
        let positions = (layout.band_rows - 1) * layout.row_stride + layout.out_cols;
        let arithmetic = chunk_channels / layout.lanes * taps * positions;
        (arithmetic + packing_cost(geometry, layout)) * bands
    };
    if cost(&columns) < cost(&phase_split) {
        Some(columns)
    } else {
        Some(phase_split)
    }
}

/// What bands of output rows a layout is made of: vectors of `lanes`, bands sized for the
/// tier's `tile`, within each of `row_blocks` blocks of rows (when tasks split the plane).
struct Bands<'a> {
    lanes: usize,
    tile: &'a TileShape,
    row_blocks: usize,
}

/// The layout of `packing` for `geometry`: phase-split and per kernel column in L1-sized
/// bands, im2col and in place whole (or a block of rows). The vector order is `order` if
/// given, else the one of [`cheaper_order`].
fn layout(
    geometry: &Geometry,
    bands: &Bands<'_>,
    packing: Packing,
    order: Option<VectorOrder>,
) -> Option<Layout> {
    let lanes = bands.lanes;
    match packing {
        Packing::KernelColumns => {
            let band_rows = band_rows(geometry, bands);
            Layout::new(geometry, lanes, packing, band_rows, VectorOrder::Flat)
        }
        Packing::PhaseSplit => {
            let band_rows = band_rows(geometry, bands);
            let make = |order| Layout::new(geometry, lanes, packing, band_rows, order);
            match order {
                Some(order) => make(order),
                None => Some(cheaper_order(
                    geometry,
                    make(VectorOrder::Flat)?,
                    make(VectorOrder::Rows)?,
                )),
            }
        }
        Packing::Im2col | Packing::InPlace => {
            let block = geometry.output_size()[0] / bands.row_blocks;
            let band_rows = fewest_rows(geometry.output_size()[0], bands.row_blocks, block, block);
            Layout::new(geometry, lanes, packing, band_rows, VectorOrder::Flat)
        }
    }
}

/// A vector store spanning two rows (or ending in padding columns) costs about this many
/// multiply-adds: a lookup and a masked store per run of lanes.
const MIXED_STORE_COST: usize = 4;

/// Of two layouts that differ in their vector order, the one with the lower cost per output
/// channel: each vector's `K` multiply-adds and its store, a mixed store costing more. Flat
/// order computes fewer dead lanes where `W_out` is far from a multiple of the lanes; rows
/// store whole vectors, which counts where `K` is small (depthwise).
fn cheaper_order(geometry: &Geometry, flat: Layout, rows: Layout) -> Layout {
    let taps = geometry.reduction_len();
    let cost = |layout: &Layout| {
        let mixed = layout
            .whole_targets
            .iter()
            .filter(|&&target| target == MIXED)
            .count();
        layout.vectors * (taps + 1) + mixed * MIXED_STORE_COST
    };
    if cost(&rows) < cost(&flat) {
        rows
    } else {
        flat
    }
}

/// Taps per chunk of the channel-vector body: a chunk's weights for the block's `2·LANES`
/// channels take 16 KiB, which stay in L1 across the band's tiles instead of streaming from
/// L2 for each (AlexNet conv5: 1728 taps, 221 KB of weights per block).
fn channel_tap_chunk(lanes: usize) -> usize {
    16 * 1024 / (2 * lanes * 4)
}

/// Whether the flat body would compute at least a fifth more lanes than there are outputs
/// (a plane's flat positions, padding columns included, rounded up to whole vectors): then
/// the channel-vector body pays even with single-vector blocks. Measured (one thread,
/// AVX-512, against the flat body): ShuffleNet's 1x1 on 7x7 planes (64 lanes for 49
/// outputs) +28 %; 14x14 planes (6 and 14 % more lanes) 2–15 % slower.
fn flat_wastes_lanes(geometry: &Geometry, isa: Isa) -> bool {
    // In u128, saturating: absurd padding (refused later) must not overflow here.
    let [out_h, out_w] = geometry.output_size().map(|size| size as u128);
    let padding = geometry.padding();
    let padded_w = [geometry.input_size()[1], padding.left, padding.right]
        .into_iter()
        .fold(0u128, |sum, size| sum.saturating_add(size as u128));
    let row_stride = padded_w.div_ceil(geometry.stride()[1] as u128);
    let lanes = isa.lanes() as u128;
    let computed = out_h
        .saturating_sub(1)
        .saturating_mul(row_stride)
        .saturating_add(out_w)
        .saturating_add(lanes - 1)
        / lanes
        * lanes;
    computed.saturating_mul(5) >= out_h.saturating_mul(out_w).saturating_mul(6)
}

/// Whether the channel-vector body can run `geometry`: more than one input channel per
/// group (depthwise has its own kernels) and task chunks of whole `granule`s of channels.
fn suits_channels(geometry: &Geometry, chunk_channels: usize, granule: usize) -> bool {
    geometry.in_channels_per_group() > 1 && chunk_channels.is_multiple_of(granule)
}

/// Whether the channel-vector body should run `geometry`: where it can, with a reduction of
/// at least the tier's [`TileShape::channels_min_reduction`], long enough that storing each
/// tile through a transpose is small against its arithmetic.
fn prefers_channels(
    geometry: &Geometry,
    chunk_channels: usize,
    granule: usize,
    tile: &TileShape,
) -> bool {
    suits_channels(geometry, chunk_channels, granule)
        && geometry.reduction_len() >= tile.channels_min_reduction
}

/// Bytes of L1 a band of packed input may fill: 24 KiB of the 32 KiB (AMD Zen) or 48 KiB
/// (Intel) of an x86-64 core, leaving room for weights and output.
const BAND_BUDGET: usize = 24 * 1024;

/// Output rows per band of the phase-split and per-kernel-column packings: about as many as
/// keep the group's packed band within [`BAND_BUDGET`], but at least enough for four of the
/// widest tiles, so that a band that cannot fit (many channels per group) is still worth its
/// packing; near that, the height that computes the fewest rows ([`fewest_rows`]).
fn band_rows(geometry: &Geometry, bands: &Bands<'_>) -> usize {
    let (lanes, tile) = (bands.lanes, bands.tile);
    let padding = geometry.padding();
    let [_, width] = geometry.input_size();
    let [stride_h, _] = geometry.stride();
    let padded_w = width + padding.left + padding.right;
    let reach = (geometry.kernel_size()[0] - 1) * geometry.dilation()[0] + 1;
    // Bytes per padded input row of the whole group (all column phases together).
    let row_bytes = padded_w
        .div_ceil(geometry.stride()[1])
        .saturating_mul(geometry.stride()[1])
        .saturating_mul(geometry.in_channels_per_group())
        .saturating_mul(4);
    let budget_rows = (BAND_BUDGET / row_bytes.max(1)).saturating_sub(reach) / stride_h + 1;
    let widest_tile =
        tile.vectors_for(tile.max_channels.min(geometry.out_channels_per_group())) * lanes;
    let row_stride = padded_w.div_ceil(geometry.stride()[1]);
    let minimum_rows = (4 * widest_tile).div_ceil(row_stride).max(1);
    // Within the L1 budget: not above it. Past it anyway: up to twice the minimum.
    let (aim, most) = if budget_rows >= minimum_rows {
        (budget_rows, budget_rows)
    } else {
        (minimum_rows, 2 * minimum_rows - 1)
    };
    fewest_rows(geometry.output_size()[0], bands.row_blocks, aim, most)
}

/// Rows per band, from half of `aim` (or of a block) to `most`, that compute the fewest rows over `out_rows`
/// split into `row_blocks` blocks (each band within a block, the last of a block overlapping
/// the one before); of equals, the nearest to `aim` evened out over a block. (Bands evened
/// out alone computed 35 rows for 31 with bands of at most 7, where bands of 8 compute 32;
/// blocks of 15 and 16 rows in bands of 15 computed 45.)
fn fewest_rows(out_rows: usize, row_blocks: usize, aim: usize, most: usize) -> usize {
    let short = out_rows / row_blocks;
    let tall_blocks = out_rows % row_blocks;
    let computed = |band: usize| {
        let rows = |block: usize| block.div_ceil(band) * band;
        (row_blocks - tall_blocks) * rows(short) + tall_blocks * rows(short + 1)
    };
    let tallest = most.min(short).max(1);
    let evened = short.div_ceil(short.div_ceil(aim.max(1)).max(1));
    (aim.min(short).div_ceil(2).clamp(1, tallest)..=tallest)
        .min_by_key(|&band| (computed(band), band.abs_diff(evened)))
        .unwrap_or(tallest)
}

/// A chunk of `channels` split greedily into register blocks of `max`, then 4, 2, 1.
fn blocks(channels: usize, max: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut first_channel = 0;
    for size in [8, 4, 2, 1] {
        if size > max {
            continue;
        }
        while channels - first_channel >= size {
            blocks.push(Block {
                first_channel,
                channels: size,
            });
            first_channel += size;
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::Conv2dParams;

    #[test]
    fn blocks_cover_the_chunk_largest_first() {
        let sizes = |channels, max| -> Vec<usize> {
            blocks(channels, max).iter().map(|b| b.channels).collect()
        };
        assert_eq!(sizes(20, 8), [8, 8, 4]);
        assert_eq!(sizes(7, 8), [4, 2, 1]);
        assert_eq!(sizes(20, 4), [4, 4, 4, 4, 4]);
        assert_eq!(sizes(1, 8), [1]);
        let covered: usize = blocks(27, 8).iter().map(|b| b.channels).sum();
        assert_eq!(covered, 27);
    }

    /// Hand-counted: the band height that computes the fewest rows, of equals the one
    /// nearest the evened-out aim.
    #[test]
    fn bands_compute_the_fewest_rows() {
        assert_eq!(
            fewest_rows(31, 1, 7, 13),
            8,
            "4 bands: 32 rows, not 5 of 7: 35"
        );
        assert_eq!(fewest_rows(28, 1, 7, 13), 7, "evened already (4 of 7 = 28)");
        assert_eq!(
            fewest_rows(31, 2, 15, 15),
            8,
            "blocks of 15 and 16: 32, not 45"
        );
        assert_eq!(
            fewest_rows(15, 2, 12, 23),
            4,
            "blocks of 7 and 8: 16, not 21 in 7s"
        );
        assert_eq!(fewest_rows(1, 1, 9, 17), 1);
    }

    #[test]
    fn chunks_divide_the_group_and_split_only_when_threads_need_it() {
        let alexnet = Conv2dParams::new(384, 256, 3)
            .groups(2)
            .geometry([1, 384, 13, 13])
            .unwrap();
        assert_eq!(
            chunk_channels(&alexnet, 1, 1),
            128,
            "one thread: whole groups"
        );
        assert_eq!(
            chunk_channels(&alexnet, 2, 32) % 32,
            0,
            "whole channel blocks"
        );
        let split = chunk_channels(&alexnet, 2, 1);
        assert!(split < 128 && 128 % split == 0 && split >= 8, "{split}");
        // A dense layer of 96 channels in blocks of 32: 3 tasks for two threads, uneven, so
        // each is split into two blocks of rows; one thread takes the whole plane.
        let dense = Conv2dParams::new(64, 96, 3)
            .geometry([1, 64, 31, 29])
            .unwrap();
        assert_eq!(chunk_channels(&dense, 2, 32), 32);
        assert!(!balanced(3, 2));
        assert_eq!(row_blocks(&dense, 2, 32), Some(2));
        assert_eq!(
            row_blocks(&dense, 3, 32),
            Some(1),
            "three tasks, three threads"
        );
        assert_eq!(row_blocks(&dense, 1, 96), Some(1));
        // On a 7x7 plane, blocks of three rows would be mostly edges: finer chunks instead.
        let small = Conv2dParams::new(64, 96, 3)
            .geometry([1, 64, 7, 7])
            .unwrap();
        assert_eq!(row_blocks(&small, 2, 32), None);
        assert_eq!(chunk_channels(&small, 2, 1), 24);
        assert_eq!(row_blocks(&small, 2, 24), Some(1));
        let depthwise = Conv2dParams::new(96, 96, 3)
            .groups(96)
            .geometry([1, 96, 8, 8])
            .unwrap();
        assert_eq!(chunk_channels(&depthwise, 2, 1), 1);
    }
}
