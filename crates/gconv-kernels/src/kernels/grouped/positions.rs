//! The flat body: a register tile of `M` output channels × `V` vectors of flat output
//! positions, accumulated over every tap of a group, written once over [`Simd`].

use super::BandBlock;
use crate::epilogue::{Epilogue, Sink};
use crate::pack::layout::{Layout, MIXED};
use crate::simd::{Element, Simd};

/// Convolves one block of `M` output channels over one band of output rows.
///
/// Loop order: the layout's vectors in tiles of `V` (then single vectors for the rest);
/// per tile, every tap in `(c, i, j)` order, each loading `V` input vectors once and feeding
/// them to all `M` channels with broadcast weights: `V` loads and `M` broadcasts per `M·V`
/// fused multiply-adds, the accumulators never leaving registers. Every output element is
/// the same chain `bias, +w₀x₀, +w₁x₁, …` whatever the tile or the task, so results do not
/// depend on the tiling or the thread count.
///
/// (Splitting the taps into L1-sized chunks, with running sums stored between chunks, was
/// measured slower here: see `TUNING.md`, `grouped-positions-phase-split`.)
#[inline(always)]
pub(crate) fn convolve_block<S: Simd, E: Epilogue<S::Elem>, const M: usize, const V: usize>(
    simd: S,
    mut block: BandBlock<'_, '_, S::Elem, E>,
) {
    let layout = block.layout;
    assert_eq!(layout.lanes, S::LANES);
    assert_eq!(block.channels(), M);
    assert!(block.packed.len() >= layout.packed_len);
    assert_eq!(block.weights.len(), layout.tap_shifts.len() * M);
    let mut vector = 0;
    while vector + V <= layout.vectors {
        tile::<S, E, M, V>(simd, &mut block, vector);
        vector += V;
    }
    while vector < layout.vectors {
        tile::<S, E, M, 1>(simd, &mut block, vector);
        vector += 1;
    }
}

/// One `M × V` tile starting at vector `first`.
#[inline(always)]
fn tile<S: Simd, E: Epilogue<S::Elem>, const M: usize, const V: usize>(
    simd: S,
    block: &mut BandBlock<'_, '_, S::Elem, E>,
    first: usize,
) {
    let layout = block.layout;
    debug_assert!(first + V <= layout.vectors);
    let mut starts = [0usize; V];
    for (v, start) in starts.iter_mut().enumerate() {
        *start = layout.starts[first + v] as usize;
    }
    // Plain loops, not `array::map`/`from_fn`: their closures may stay out of line, outside
    // the tier's `target_feature` context, where the intrinsics cannot inline.
    let zero = simd.splat(S::Elem::ZERO);
    let mut acc = [[zero; V]; M];
    for (sums, &b) in acc.iter_mut().zip(block.bias) {
        *sums = [simd.splat(b); V];
    }
    let packed = block.packed.as_ptr();
    for (&shift, taps) in layout.tap_shifts.iter().zip(block.weights.chunks_exact(M)) {
        let mut x = [zero; V];
        for (vector, &start) in x.iter_mut().zip(&starts) {
            // SAFETY: `shift + start + LANES <= layout.packed_len <= packed.len()` for every
            // tap shift and vector start (see `Layout::new`; asserted in `convolve_block`).
            *vector = unsafe { simd.load(packed.add(shift + start)) };
        }
        for (m, &w) in taps.iter().enumerate() {
            let w = simd.splat(w);
            for v in 0..V {
                acc[m][v] = simd.mul_add(w, x[v], acc[m][v]);
            }
        }
    }
    for (m, rows) in acc.iter().enumerate() {
        let plane = block.first + m * block.out_plane + block.band_offset;
        for (v, &vector) in rows.iter().enumerate() {
            store(simd, layout, block.sink, plane, first + v, vector);
        }
    }
}

/// Stores vector `index` of flat positions into its output plane (which starts at `plane`
/// in `sink`), run by run: a whole vector with one store, a run that ends a row or starts the
/// next with a masked store.
#[inline(always)]
fn store<S: Simd, E: Epilogue<S::Elem>>(
    simd: S,
    layout: &Layout,
    sink: &mut Sink<'_, S::Elem, E>,
    plane: usize,
    index: usize,
    vector: S::Vector,
) {
    let whole = layout.whole_targets[index];
    if whole != MIXED {
        sink.store(simd, plane + whole as usize, vector);
        return;
    }
    for segment in layout.segments_of(index) {
        let (first, end) = (segment.first as usize, segment.end as usize);
        sink.store_lanes(simd, plane + segment.target as usize, vector, first, end);
    }
}
