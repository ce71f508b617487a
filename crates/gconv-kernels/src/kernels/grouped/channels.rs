//! The channel-vector body: output channels in vector lanes, for groups with many of them.
//!
//! The flat body (`super::positions`) vectorise along output positions, so a vector's
//! worth of positions shares each weight. Here a tile is `C·LANES` output channels (`C` = 2,
//! or 1 for a group's last `LANES` channels) × `P` consecutive flat positions (on the
//! per-kernel-column packing and in place exactly the outputs; on the phase-split one a
//! row's padding columns too, computed and dropped, as in the flat kernels): per tap, `C`
//! weight vectors (the tap's weights for the block's channels) are loaded once and each
//! position's input is broadcast against them, `C + P` loads per `C·P` fused multiply-adds.
//! No lane is wasted whatever the number of positions (ShuffleNet's 7x7 planes: 49 positions
//! fill 4 vectors of 16 to 77 % in the flat kernels). The `[position][channel]` tile is
//! turned into the NCHW planes by [`Simd::transpose_square`] on its way out.

use std::ops::Range;

use super::BandBlock;
use crate::epilogue::Epilogue;
use crate::pack::layout::Layout;
use crate::simd::{Element, MAX_LANES, Simd};

/// One block of `C·LANES` output channels of a group over one band of output rows, with what
/// the tap chunks need.
pub(crate) struct ChannelBlock<'a, 's, T, E> {
    /// The block: `C·LANES` channels of weights (packed `[tap][channel]`) and of bias.
    pub band: BandBlock<'a, 's, T, E>,
    /// Taps per chunk: the band's tiles go through the taps a chunk at a time, keeping the
    /// chunk's weights in L1.
    pub tap_chunk: usize,
    /// The tiles' sums between chunks, `[position][C·LANES]` (unused with one chunk).
    pub running_sums: &'a mut [T],
}

/// Convolves one block over one band: the band's flat positions in tiles of `P`, the last
/// few in tiles of 8, 4, 2 and 1 (those smaller than `P`).
#[inline(always)]
pub(crate) fn convolve_channel_block<
    S: Simd,
    E: Epilogue<S::Elem>,
    const C: usize,
    const P: usize,
>(
    simd: S,
    mut block: ChannelBlock<'_, '_, S::Elem, E>,
) {
    let layout = block.band.layout;
    let channels = C * S::LANES;
    assert_eq!(layout.lanes, S::LANES);
    assert!(block.band.packed.len() >= layout.packed_len);
    assert_eq!(block.band.weights.len(), layout.tap_shifts.len() * channels);
    assert_eq!(block.band.bias.len(), channels);
    assert!(block.band.first + channels * block.band.out_plane <= block.band.sink.len());
    assert!(
        P <= S::LANES && P <= 12,
        "tiles of at most LANES and 12 positions"
    );
    // The last row's padding columns are never stored: stop at its last output.
    let positions = (layout.band_rows - 1) * layout.row_stride + layout.out_cols;
    let taps = layout.tap_shifts.len();
    let chunk = block.tap_chunk.max(1);
    if taps > chunk {
        assert!(block.running_sums.len() >= positions * channels);
    }
    let mut scratch = TileScratch {
        positions: [S::Elem::ZERO; MAX_LANES * MAX_LANES],
        planes: [S::Elem::ZERO; MAX_LANES * MAX_LANES],
        runs: [(0, 0, 0); MAX_LANES],
    };
    // Chunks of taps outside, tiles of positions inside: each chunk's weights are read from
    // L1 by every tile. Between chunks a tile's sums wait in `running_sums`, exactly as they
    // were: every output is still the one chain bias, +w₀x₀, +w₁x₁, … .
    for first_tap in (0..taps).step_by(chunk) {
        let chunk = Chunk {
            taps: first_tap..(first_tap + chunk).min(taps),
            first: first_tap == 0,
            last: first_tap + chunk >= taps,
        };
        let mut first = 0;
        // At least a tile's worth: tiles of near-equal sizes between P/2 and P (49 positions:
        // 10, 10, 10, 10, 9, not four of 12 and a tile of one, which runs at a quarter of
        // the speed, its few sums waiting on each other's latency).
        if positions >= P {
            let tiles = positions.div_ceil(P);
            let (size, larger) = (positions / tiles, positions % tiles);
            for index in 0..tiles {
                let size = size + usize::from(index < larger);
                // Only the sizes a tile of `P` may take are compiled (`const` conditions are
                // settled per instantiation).
                macro_rules! sizes {
                    ($($size:literal),*) => {
                        $(
                            if const { $size <= P && 2 * $size >= P } && size == $size {
                                tile::<S, E, C, $size>(simd, &mut block, first, &chunk, &mut scratch);
                            } else
                        )*
                        {
                            unreachable!("tiles of P/2 to P positions");
                        }
                    };
                }
                sizes!(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
                first += size;
            }
        }
        macro_rules! tails {
            ($($size:literal),*) => {$(
                if const { $size < P } {
                    while positions - first >= $size {
                        tile::<S, E, C, $size>(simd, &mut block, first, &chunk, &mut scratch);
                        first += $size;
                    }
                }
            )*};
        }
        tails!(8, 4, 2, 1);
    }
}

/// What storing a tile needs beside its sums, made once per block and band rather than per
/// tile (zeroing the squares and returning the runs by value per tile cost a ResNeXt 14x14
/// layer 2 %): the two squares of the transpose, and the tile's runs of output positions.
struct TileScratch<T> {
    positions: [T; MAX_LANES * MAX_LANES],
    planes: [T; MAX_LANES * MAX_LANES],
    runs: [(usize, usize, usize); MAX_LANES],
}

/// The taps a pass over the band's tiles covers, and whether it starts from the bias (the
/// first) or ends in the output (the last).
struct Chunk {
    taps: Range<usize>,
    first: bool,
    last: bool,
}

/// One tile: `C·LANES` channels × `P` flat positions starting at `first`, over the taps of
/// `chunk`: its sums started (from the bias, or where the last chunk left them), the chunk's
/// taps added (per tap, `C` weight vectors loaded once and each position's input broadcast
/// against them, `C + P` loads per `C·P` fused multiply-adds), and the sums kept for the next
/// chunk or stored.
#[inline(always)]
fn tile<S: Simd, E: Epilogue<S::Elem>, const C: usize, const P: usize>(
    simd: S,
    block: &mut ChannelBlock<'_, '_, S::Elem, E>,
    first: usize,
    chunk: &Chunk,
    scratch: &mut TileScratch<S::Elem>,
) {
    let lanes = S::LANES;
    let channels = C * lanes;
    let mut acc = [[simd.splat(S::Elem::ZERO); C]; P];
    // Plain loops over `C`, not `array::from_fn`: its closure may stay out of line, outside
    // the tier's `target_feature` context.
    if chunk.first {
        let mut bias = [simd.splat(S::Elem::ZERO); C];
        for (half, vector) in bias.iter_mut().enumerate() {
            *vector = simd.load_from(&block.band.bias[half * lanes..]);
        }
        acc = [bias; P];
    } else {
        let sums = &block.running_sums[first * channels..][..P * channels];
        for (vectors, sums) in acc.iter_mut().zip(sums.chunks_exact(channels)) {
            for (half, vector) in vectors.iter_mut().enumerate() {
                *vector = simd.load_from(&sums[half * lanes..]);
            }
        }
    }
    let packed = block.band.packed.as_ptr();
    let weights = &block.band.weights[chunk.taps.start * channels..chunk.taps.end * channels];
    for (&shift, weights) in block.band.layout.tap_shifts[chunk.taps.clone()]
        .iter()
        .zip(weights.chunks_exact(channels))
    {
        // SAFETY: `weights` holds C·LANES elements; the inputs of positions `first..first +
        // P` lie below `shift + band_rows · row_stride <= shift + vectors · LANES <=
        // packed_len` (see `Layout::new`; asserted in `convolve_channel_block`).
        unsafe {
            let mut w = [simd.splat(S::Elem::ZERO); C];
            for (half, vector) in w.iter_mut().enumerate() {
                *vector = simd.load(weights.as_ptr().add(half * lanes));
            }
            let inputs = packed.add(shift + first);
            for (p, sums) in acc.iter_mut().enumerate() {
                let x = simd.splat(*inputs.add(p));
                for half in 0..C {
                    sums[half] = simd.mul_add(w[half], x, sums[half]);
                }
            }
        }
    }
    if chunk.last {
        return store_tile::<S, E, C, P>(simd, &mut block.band, first, &acc, scratch);
    }
    let sums = &mut block.running_sums[first * channels..][..P * channels];
    for (vectors, sums) in acc.iter().zip(sums.chunks_exact_mut(channels)) {
        for (half, &vector) in vectors.iter().enumerate() {
            simd.store_into(&mut sums[half * lanes..], vector);
        }
    }
}

/// Stores a finished tile (`C·LANES` channels × `P` positions from `first`) into the block's
/// planes: each vector of the channels, positions as rows of a square, transposed to channels
/// as rows, each row's runs of output positions stored into its plane. (Rows of the square
/// past `P` hold an earlier tile's sums: their lanes are never stored.)
#[inline(always)]
fn store_tile<S: Simd, E: Epilogue<S::Elem>, const C: usize, const P: usize>(
    simd: S,
    band: &mut BandBlock<'_, '_, S::Elem, E>,
    first: usize,
    acc: &[[S::Vector; C]; P],
    scratch: &mut TileScratch<S::Elem>,
) {
    let lanes = S::LANES;
    let run_count = output_runs::<P>(band.layout, band.band_offset, first, &mut scratch.runs);
    let TileScratch {
        positions,
        planes,
        runs,
    } = scratch;
    for half in 0..C {
        for (p, sums) in acc.iter().enumerate() {
            simd.store_into(&mut positions[p * lanes..], sums[half]);
        }
        // SAFETY: both squares hold LANES rows of LANES elements and do not overlap.
        unsafe { simd.transpose_square(positions.as_ptr(), lanes, planes.as_mut_ptr(), lanes) };
        for channel in 0..lanes {
            let plane = band.first + (half * lanes + channel) * band.out_plane;
            let values = simd.load_from(&planes[channel * lanes..]);
            for &(from, to, target) in &runs[..run_count] {
                band.sink
                    .store_lanes(simd, plane + target, values, from, to);
            }
        }
    }
}

/// The runs of a tile's `P` positions from `first` that are outputs, into `runs`: lanes
/// `from..to` of every channel go to `target..` of its plane; returns how many. At most one
/// run per row the tile touches, so at most `P <= LANES <= 16` (rows of one position when the
/// plane is one column wide).
#[inline(always)]
fn output_runs<const P: usize>(
    layout: &Layout,
    band_offset: usize,
    first: usize,
    runs: &mut [(usize, usize, usize); MAX_LANES],
) -> usize {
    let mut run_count = 0;
    let mut position = first;
    while position < first + P {
        let (row, column) = (position / layout.row_stride, position % layout.row_stride);
        let row_end = (row + 1) * layout.row_stride;
        let next = row_end.min(first + P);
        if column < layout.out_cols {
            let stored = (layout.out_cols - column).min(next - position);
            let target = band_offset + row * layout.out_cols + column;
            runs[run_count] = (position - first, position - first + stored, target);
            run_count += 1;
        }
        position = next;
    }
    run_count
}
