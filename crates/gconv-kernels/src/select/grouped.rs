//! The grouped kernels' plan: how their tasks split the output (chunks of a group's output
//! channels, blocks of output rows), and which packing and vector order cost least. Pure
//! functions of the problem; the rules in [`super::forward`] use them.

use gconv_shape::Geometry;

use crate::kernels::grouped::tiles::{Tiles, tiles_of};
use crate::pack::bands::Bands;
use crate::pack::layout::{Layout, MIXED, Packing, VectorOrder};
use crate::{Family, Isa};

/// How a grouped kernel's tasks split the output, and the granule of its channel blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    /// Output channels per task: a divisor of `C_out/g`, so a task never spans two groups.
    pub chunk_channels: usize,
    /// Blocks of output rows each (sample, chunk) is split into, one task each: more than one
    /// only where the chunks alone would leave threads idle (see [`row_blocks`]).
    pub row_blocks: usize,
    /// Channels of the channel-vector body's smallest block here: `2·LANES`, or `LANES`
    /// where the flat body would waste lanes (or the body is forced).
    pub channel_granule: usize,
}

impl Partition {
    /// The partition for `geometry` on `isa` and `threads`; `forced_channels`: the
    /// channel-vector body will run whatever it costs (a test forcing it), so chunks keep
    /// whole vectors of channels.
    pub fn new(geometry: &Geometry, isa: Isa, threads: usize, forced_channels: bool) -> Partition {
        // The channel-vector body's blocks are two vectors of channels, the last one of a
        // chunk possibly one.
        let channel_block = 2 * isa.lanes();
        // Chunks of whole blocks; of whole vectors (a last block of one) only where the flat
        // body would waste lanes, or where the channel-vector body is forced. (Single-vector
        // blocks load a weight vector per `P` multiply-adds, not two per `2·P`: see
        // TUNING.md, `grouped-channels`.)
        let channel_granule = if flat_wastes_lanes(geometry, isa) || forced_channels {
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
            None if granule > 1 && !forced_channels => {
                let fine = chunk_channels(geometry, threads, 1);
                (fine, row_blocks(geometry, threads, fine).unwrap_or(1))
            }
            None => (coarse, 1),
        };
        Partition {
            chunk_channels,
            row_blocks,
            channel_granule,
        }
    }

    /// Whether the channel-vector body can run these chunks: more than one input channel per
    /// group (depthwise has its own kernels) and chunks of whole granules.
    pub fn suits_channels(&self, geometry: &Geometry) -> bool {
        geometry.in_channels_per_group() > 1
            && self.chunk_channels.is_multiple_of(self.channel_granule)
    }

    /// The bands a layout of this partition is made of on `isa`.
    pub fn bands(&self, geometry: &Geometry, isa: Isa) -> Bands {
        let tiles = tiles_of(isa);
        // The widest tile a chunk runs: its first (largest) register block's.
        let per_group = geometry.out_channels_per_group();
        let widest = tiles
            .block_sizes()
            .find(|&size| size <= per_group)
            .unwrap_or(1);
        Bands {
            lanes: isa.lanes(),
            widest_tile: tiles.vectors_for(widest) * isa.lanes(),
            row_blocks: self.row_blocks,
        }
    }
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
/// mostly edges and its packing is repeated for little (`TUNING.md`, partition).
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

/// The phase-split layout in the cheaper vector order ([`cheaper_order`]).
pub(crate) fn phase_split(geometry: &Geometry, bands: &Bands) -> Option<Layout> {
    let flat = bands.layout(geometry, Packing::PhaseSplit, VectorOrder::Flat)?;
    let rows = bands.layout(geometry, Packing::PhaseSplit, VectorOrder::Rows)?;
    Some(cheaper_order(geometry, flat, rows))
}

/// Bytes of L2 an im2col buffer may fill: a quarter of the smallest x86-64 L2 of this
/// decade (1 MiB), so that it survives the output and weights passing through.
const L2_BUDGET: usize = 256 * 1024;

/// What a task of `chunk_channels` output channels of `geometry` costs on a packed layout, in
/// vector operations: its multiply-adds plus its packing, band by band. The packing choices
/// compare a candidate layout against phase split.
pub(crate) struct TaskCost<'a> {
    pub geometry: &'a Geometry,
    pub chunk_channels: usize,
}

impl TaskCost<'_> {
    /// Whether im2col costs the flat body less than `phase_split`: the multiply-adds
    /// (`chunk · K` per vector of positions, discarded columns included) plus the packing (two
    /// per vector copied; a strided im2col gathers one element at a time), as long as its copy
    /// of every window stays in L2 for all the blocks that read it (`TUNING.md`,
    /// `grouped-positions-im2col`). Phase-split wins ties: it packs less.
    pub fn im2col_pays(&self, phase_split: &Layout, im2col: &Layout) -> bool {
        let fits_in_l2 = im2col.packed_len * 4 <= L2_BUDGET;
        fits_in_l2 && 20 * self.positions_body(im2col) < 19 * self.positions_body(phase_split)
    }

    /// Whether per-kernel-column packing costs the channel-vector body less than
    /// `phase_split`: its tiles' multiply-adds (one per position, kept or discarded, per
    /// `LANES` channels and tap) plus the packing. Per kernel column computes no discarded
    /// column but copies each input row `kW` times.
    pub fn columns_pay(&self, phase_split: &Layout, columns: &Layout) -> bool {
        self.channels_body(columns) < self.channels_body(phase_split)
    }

    /// The flat body's cost on `layout`.
    fn positions_body(&self, layout: &Layout) -> usize {
        let bands = layout.out_rows.div_ceil(layout.band_rows);
        let arithmetic = self.chunk_channels * self.geometry.reduction_len() * layout.vectors;
        (arithmetic + packing_cost(self.geometry, layout)) * bands
    }

    /// The channel-vector body's cost on `layout`.
    fn channels_body(&self, layout: &Layout) -> usize {
        let bands = layout.out_rows.div_ceil(layout.band_rows);
        let positions = (layout.band_rows - 1) * layout.row_stride + layout.out_cols;
        let taps = self.geometry.reduction_len();
        let arithmetic = self.chunk_channels / layout.lanes * taps * positions;
        (arithmetic + packing_cost(self.geometry, layout)) * bands
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

/// Whether the flat body would compute at least a fifth more lanes than there are outputs
/// (a plane's flat positions, padding columns included, rounded up to whole vectors): then
/// the channel-vector body pays even with single-vector blocks (`TUNING.md`,
/// `grouped-channels-*`).
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

/// The register blocks a chunk of `channels` output channels is split into for the flat body
/// on `tiles`: greedily, the largest block first.
pub(crate) fn blocks(channels: usize, tiles: &Tiles) -> Vec<usize> {
    let mut blocks = Vec::new();
    let mut left = channels;
    for size in tiles.block_sizes() {
        while left >= size {
            blocks.push(size);
            left -= size;
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
        let avx512 = tiles_of(Isa::X86_64V4);
        let avx2 = tiles_of(Isa::X86_64V3);
        assert_eq!(blocks(20, &avx512), [8, 8, 4]);
        assert_eq!(blocks(7, &avx512), [4, 2, 1]);
        assert_eq!(blocks(20, &avx2), [4, 4, 4, 4, 4]);
        assert_eq!(blocks(1, &avx512), [1]);
        assert_eq!(blocks(27, &avx512).iter().sum::<usize>(), 27);
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
