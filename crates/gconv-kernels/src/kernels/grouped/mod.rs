//! The grouped kernels, for every family: a task packs its group's input band by band (see
//! `crate::pack`) and runs each register block of its chunk of output channels over each
//! band, with one of two bodies:
//!
//! * [`positions`] — `M` output channels × `V` vectors of flat positions (ResNeXt's narrow
//!   groups, ShuffleNet, depthwise layers no depthwise kernel takes);
//! * [`channels`] — `2·LANES` output channels in lanes × `P` positions, the taps in L1-sized
//!   chunks (long reductions: AlexNet, wide late layers, dense layers, 1×1 layers on small
//!   planes).
//!
//! [`tiles`] is the table of both bodies' register tiles per tier.

use std::ops::Range;
use std::sync::Arc;

use gconv_shape::Geometry;

use super::{ForwardKernel, Parts};
use crate::epilogue::{Epilogue, Identity, Sink};
use crate::exec::workspace::{Output, Piece, Runs, Workspace};
use crate::pack::layout::{Layout, Packing};
use crate::select::grouped::blocks;
use crate::select::{Body, GroupedChoice, Problem, too_large};
use crate::simd::{Element, Simd, WithSimd, dispatch, outlined};
use crate::weights::Order;
use crate::{Error, Isa};

pub(crate) mod channels;
pub(crate) mod positions;
pub(crate) mod tiles;

use tiles::{convolve_channels, convolve_positions, tiles_of};

/// A register block of a chunk: its first output channel within the chunk, and its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    first: usize,
    channels: usize,
}

/// One register block of output channels of a group over one band of output rows, and where
/// its data live: what either body computes.
pub(crate) struct BandBlock<'a, 's, T, E> {
    pub layout: &'a Layout,
    /// The group's packed input, at least `layout.packed_len` elements.
    pub packed: &'a [T],
    /// The block's weights, packed `[tap][channel]`.
    pub weights: &'a [T],
    /// The block's bias, one per channel: the block's channel count.
    pub bias: &'a [T],
    /// The task's output: the block's planes are `out_plane` elements apart from `first`.
    pub sink: &'a mut Sink<'s, T, E>,
    pub first: usize,
    pub out_plane: usize,
    /// Where the band's first output row starts within each plane.
    pub band_offset: usize,
}

impl<T, E> BandBlock<'_, '_, T, E> {
    /// Output channels of the block.
    pub fn channels(&self) -> usize {
        self.bias.len()
    }
}

/// The grouped kernels prepared for one problem: packed weights, the packed-input layout, the
/// split of output channels into register blocks and tasks.
#[derive(Debug)]
pub(crate) struct GroupedEngine<T, E> {
    geometry: Geometry,
    isa: Isa,
    body: Body,
    layout: Layout,
    /// Output channels per task: a divisor of `C_out/g`, so a task never spans two groups.
    chunk_channels: usize,
    /// Blocks of output rows each (sample, chunk) is split into, one task each.
    row_blocks: usize,
    /// The register blocks of every chunk (the same for all chunks).
    blocks: Vec<Block>,
    /// Weights in chunk order, each block packed `[tap][m]` ([`Order::Blocks`]).
    weights: Arc<[T]>,
    /// Bias per output channel (zeros without a bias).
    bias: Arc<[T]>,
    /// Elements of scratch a task's kernels use ([`GroupedEngine::task_scratch_len`]), and
    /// the channels per group: worked out once rather than in every task's set-up (their
    /// divisions took a tenth of a 6-channel 8x8 layer's time).
    task_scratch: usize,
    in_per_group: usize,
    out_per_group: usize,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> GroupedEngine<T, E> {
    /// The engine of `choice` for the problem of `parts`; an error if the choice cannot run it (a forced
    /// body or packing that does not fit the problem).
    pub fn new(choice: &GroupedChoice, parts: Parts<'_, T, E>) -> Result<Self, Error> {
        let Problem { geometry, isa, .. } = parts.problem;
        let partition = choice.partition;
        if choice.body == Body::Channels && !partition.suits_channels(geometry) {
            return Err(Error::TooLarge {
                what: "the channel-vector block (a forced kernel that does not fit the problem)",
            });
        }
        let layout = partition
            .bands(geometry, isa)
            .layout(geometry, choice.packing, choice.order)
            .ok_or(too_large())?;
        let chunk_channels = partition.chunk_channels;
        let blocks: Vec<Block> = match choice.body {
            Body::Channels => {
                let block = 2 * isa.lanes();
                (0..chunk_channels)
                    .step_by(block)
                    .map(|first| Block {
                        first,
                        channels: block.min(chunk_channels - first),
                    })
                    .collect()
            }
            Body::Positions => blocks(chunk_channels, &tiles_of(isa))
                .into_iter()
                .scan(0, |first, channels| {
                    let block = Block {
                        first: *first,
                        channels,
                    };
                    *first += channels;
                    Some(block)
                })
                .collect(),
        };
        let widths = blocks.iter().map(|block| block.channels).collect();
        let weights = parts.weights.packed_in(Order::blocks(widths), geometry);
        let mut engine = GroupedEngine {
            geometry: *geometry,
            isa,
            body: choice.body,
            layout,
            chunk_channels,
            row_blocks: partition.row_blocks,
            blocks,
            weights,
            bias: parts.weights.bias_or_zeros(geometry),
            task_scratch: 0,
            in_per_group: geometry.in_channels_per_group(),
            out_per_group: geometry.out_channels_per_group(),
            epilogue: parts.epilogue,
        };
        engine.task_scratch = engine.task_scratch_len();
        Ok(engine)
    }

    /// Elements of scratch a task's kernels use: the packed band and the running sums.
    fn task_scratch_len(&self) -> usize {
        self.layout.packed_len + self.running_sums_len()
    }

    /// Elements of a block of rows' output: the chunk's channels × the tallest block's rows.
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
        let rows = self.layout.out_rows;
        if self.row_blocks == 1 {
            return (index, 0..rows);
        }
        let (chunk, block) = (index / self.row_blocks, index % self.row_blocks);
        let block_rows = block * rows / self.row_blocks..(block + 1) * rows / self.row_blocks;
        (chunk, block_rows)
    }

    /// Elements of running sums the channel-vector body keeps between chunks of taps: up to
    /// two vectors per position of a band (a block's channels), when the taps come in more
    /// than one chunk.
    fn running_sums_len(&self) -> usize {
        let lanes = self.layout.lanes;
        let chunked = self.geometry.reduction_len() > channel_tap_chunk::<T>(lanes);
        if self.body == Body::Channels && chunked {
            self.layout.band_rows * self.layout.row_stride * 2 * lanes
        } else {
            0
        }
    }
}

impl<T: Element, E: Epilogue<T>> ForwardKernel<T> for GroupedEngine<T, E> {
    /// One packed band of a group's input, then (for the channel-vector body on long
    /// reductions) the running sums of a block's band, then (for blocks of rows) the block's
    /// output, copied to its rows of each plane when done.
    fn scratch_len(&self) -> usize {
        self.task_scratch_len() + self.staging_len()
    }

    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool) {
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
        let task = |scratch: &mut [T], index: usize, mut piece: Piece<'_, T, E>| {
            let (chunk, rows) = self.task_of(index);
            let (sample, chunk_index) = (chunk / chunks_per_sample, chunk % chunks_per_sample);
            let (scratch, staging) = scratch.split_at_mut(self.task_scratch);
            let first_channel = chunk_index * self.chunk_channels;
            let source = self.group_input(input, sample, first_channel);
            if self.row_blocks == 1 {
                let compute = Compute {
                    engine: self,
                    source,
                    first_channel,
                    rows,
                    sink: piece.run(0),
                    scratch,
                };
                dispatch(self.isa, compute);
                return;
            }
            // A block's rows are a run of each of its channels' planes: computed into scratch
            // without the epilogue, then stored in their planes through it (an element per
            // `K` multiply-adds).
            let block_plane = rows.len() * out_cols;
            let staging = &mut staging[..self.chunk_channels * block_plane];
            let compute = Compute {
                engine: self,
                source,
                first_channel,
                rows,
                sink: Sink::new(&mut *staging, None, Identity),
                scratch,
            };
            dispatch(self.isa, compute);
            let store = StoreRows {
                staging,
                block_plane,
                piece,
            };
            dispatch(self.isa, store);
        };
        // SAFETY: tasks of distinct chunks write distinct planes; tasks of one chunk write
        // distinct blocks of rows of its planes (`task_of` splits the plane).
        unsafe { workspace.for_each_piece(parallel, output, self.epilogue, tasks, runs_of, task) };
    }
}

/// One task's computation, dispatched to the per-tier entry points: the chunk of output
/// channels from `first_channel` over the output `rows`, into `sink` (those rows of each of
/// the chunk's planes, one plane after the other). One dispatched function per sink type:
/// the bodies are compiled once for the plan's epilogue, not once per call site inside one
/// function (inlined twice there, the channel-vector tile lost its registers: AlexNet ran at
/// 0.6 of its speed on AVX2).
struct Compute<'a, 's, T, E, F> {
    engine: &'a GroupedEngine<T, E>,
    source: GroupInput<'a, T>,
    first_channel: usize,
    rows: Range<usize>,
    sink: Sink<'s, T, F>,
    scratch: &'a mut [T],
}

impl<T: Element, E: Epilogue<T>, F: Epilogue<T>> WithSimd<T> for Compute<'_, '_, T, E, F> {
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        // Destructured, not read field by field after moving `sink` out: that measured 3 %
        // slower on ShuffleNet's 1x1 layers (AVX2, Zen 2), the same loops compiled around a
        // different frame.
        let Compute {
            engine,
            source,
            first_channel,
            rows,
            mut sink,
            scratch,
        } = self;
        engine.convolve(simd, source, first_channel, rows, &mut sink, scratch);
    }
}

/// A block of rows computed in `staging` (`block_plane` elements per channel), stored in its
/// rows of each plane through the epilogue.
struct StoreRows<'a, 'p, T, E> {
    staging: &'a [T],
    block_plane: usize,
    piece: Piece<'p, T, E>,
}

impl<T: Element, E: Epilogue<T>> WithSimd<T> for StoreRows<'_, '_, T, E> {
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let mut piece = self.piece;
        for (channel, computed) in self.staging.chunks_exact(self.block_plane).enumerate() {
            piece.run(channel).store_all(simd, computed);
        }
    }
}

/// A task's group input: its channels, and all of the input from its first channel on (what
/// an in-place layout reads).
#[derive(Clone, Copy)]
struct GroupInput<'a, T> {
    channels: &'a [T],
    tail: &'a [T],
}

/// Where a band's outputs lie in a task's output: planes of `plane_len` elements (the task's
/// rows of each channel), the band's first row `offset` elements into each.
#[derive(Debug, Clone, Copy)]
struct BandPlace {
    plane_len: usize,
    offset: usize,
}

impl<T: Element, E: Epilogue<T>> GroupedEngine<T, E> {
    /// The input of the group of output channel `first_channel`, in `sample`.
    fn group_input<'a>(
        &self,
        input: &'a [T],
        sample: usize,
        first_channel: usize,
    ) -> GroupInput<'a, T> {
        let group = first_channel / self.out_per_group;
        let image = self.layout.height * self.layout.width;
        let sample_start = sample * self.geometry.in_channels() * image;
        let tail = &input[sample_start + group * self.in_per_group * image..];
        GroupInput {
            channels: &tail[..self.in_per_group * image],
            tail,
        }
    }

    /// Convolves the chunk of output channels from `first_channel` over the output `rows`
    /// into `sink` (those rows of each of the chunk's planes, one plane after the other),
    /// band by band: each band of `source` packed into `scratch` (or read in place), then
    /// every register block run over it.
    #[inline(always)]
    fn convolve<S: Simd<Elem = T>, F: Epilogue<T>>(
        &self,
        simd: S,
        source: GroupInput<'_, T>,
        first_channel: usize,
        rows: Range<usize>,
        sink: &mut Sink<'_, T, F>,
        scratch: &mut [T],
    ) {
        let layout = &self.layout;
        let (packed, running_sums) =
            // (Worked out again here, not read from `task_scratch`: in this function, which
            // holds the kernels, reading the field measured 5 % slower on ShuffleNet's 1x1
            // layers; see `Compute`.)
            scratch[..self.task_scratch_len()].split_at_mut(layout.packed_len);
        for first_row in layout.band_starts(rows.clone()) {
            let place = BandPlace {
                plane_len: rows.len() * layout.out_cols,
                offset: (first_row - rows.start) * layout.out_cols,
            };
            if layout.packing == Packing::InPlace {
                // The band's rows where they lie, unless its last vectors would read past the
                // input's end: then a copy padded with zeros.
                let source = &source.tail[first_row * layout.width..];
                let band_input: &[T] = if source.len() >= layout.packed_len {
                    &source[..layout.packed_len]
                } else {
                    let (copied, rest) = packed.split_at_mut(source.len());
                    copied.copy_from_slice(source);
                    rest.fill(T::ZERO);
                    packed
                };
                // (Its own call, not one shared with the packed path through a slice that may
                // point at either: that measured 3–5 % slower on ResNeXt's packed layers.)
                self.run_band(simd, band_input, running_sums, first_channel, sink, place);
                continue;
            }
            layout.pack_channels(simd, source.channels, packed, first_row);
            self.run_band(simd, packed, running_sums, first_channel, sink, place);
        }
    }

    /// Every register block of a task's chunk over one band.
    #[inline(always)]
    fn run_band<S: Simd<Elem = T>, F: Epilogue<T>>(
        &self,
        simd: S,
        packed: &[T],
        running_sums: &mut [T],
        first_channel: usize,
        sink: &mut Sink<'_, T, F>,
        place: BandPlace,
    ) {
        let BandPlace {
            plane_len: out_plane,
            offset: band_offset,
        } = place;
        let layout = &self.layout;
        let taps = self.geometry.reduction_len();
        let chunk_weights = &self.weights[first_channel * taps..][..self.chunk_channels * taps];
        for block in &self.blocks {
            let weights = &chunk_weights[block.first * taps..][..block.channels * taps];
            let channel = first_channel + block.first;
            let bias = &self.bias[channel..channel + block.channels];
            let band = BandBlock {
                layout,
                packed,
                weights,
                bias,
                sink: &mut *sink,
                first: block.first * out_plane,
                out_plane,
                band_offset,
            };
            match self.body {
                Body::Channels => {
                    let block = channels::ChannelBlock {
                        band,
                        tap_chunk: channel_tap_chunk::<T>(S::LANES),
                        running_sums: &mut *running_sums,
                    };
                    let vectors = bias.len() / S::LANES;
                    outlined(simd, ChannelsBlock { vectors, block });
                }
                Body::Positions => convolve_positions(simd, band),
            }
        }
    }
}

/// A block of the channel-vector body over one band, run in a function of its own
/// ([`outlined`]): inlined into the task's, the store path's constants, hoisted out of the
/// loop over the band's tiles, took two of AVX2's sixteen registers through the tap loop,
/// which needs fifteen (a 2x6 tile, two weight vectors, the broadcast input); an accumulator
/// went to the stack and AlexNet ran at 0.6 of its speed.
struct ChannelsBlock<'a, 's, T, E> {
    vectors: usize,
    block: channels::ChannelBlock<'a, 's, T, E>,
}

impl<T: Element, E: Epilogue<T>> WithSimd<T> for ChannelsBlock<'_, '_, T, E> {
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        convolve_channels(simd, self.vectors, self.block);
    }
}

/// Taps per chunk of the channel-vector body on vectors of `lanes`: a chunk's weights for the
/// block's `2·LANES` channels take 16 KiB, which stay in L1 across the band's tiles instead of
/// streaming from L2 for each (AlexNet conv5: 1728 taps, 221 KB of weights per block).
fn channel_tap_chunk<T>(lanes: usize) -> usize {
    16 * 1024 / (2 * lanes * size_of::<T>())
}
