//! The one kernel body: a register tile of `M` output channels × `V` vectors of flat output
//! positions, accumulated over every tap of a group, written once over [`Simd`].

use crate::layout::{Layout, MIXED};
use crate::simd::Simd;

/// One block of `M` output channels of a group over one band of output rows, and where its
/// data live.
pub(crate) struct Block<'a, const M: usize> {
    pub layout: &'a Layout,
    /// The group's packed input, at least `layout.packed_len` floats.
    pub packed: &'a [f32],
    /// The block's weights, packed `[tap][m]`.
    pub weights: &'a [f32],
    pub bias: [f32; M],
    /// The block's `M` output planes, `out_plane` floats apart.
    pub output: &'a mut [f32],
    pub out_plane: usize,
    /// Where the band's first output row starts within each plane.
    pub band_offset: usize,
}

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
/// measured 5–10 % slower on every wide layer of the published list: the hardware
/// prefetchers keep up with one pass over all taps.)
#[inline(always)]
pub(crate) fn convolve_block<S: Simd, const M: usize, const V: usize>(
    simd: S,
    mut block: Block<'_, M>,
) {
    let layout = block.layout;
    assert_eq!(layout.lanes, S::LANES);
    assert!(block.packed.len() >= layout.packed_len);
    assert_eq!(block.weights.len(), layout.tap_shifts.len() * M);
    assert!(block.output.len() >= M * block.out_plane);
    let mut vector = 0;
    while vector + V <= layout.vectors {
        tile::<S, M, V>(simd, &mut block, vector);
        vector += V;
    }
    while vector < layout.vectors {
        tile::<S, M, 1>(simd, &mut block, vector);
        vector += 1;
    }
}

/// One `M × V` tile starting at vector `first`.
#[inline(always)]
fn tile<S: Simd, const M: usize, const V: usize>(simd: S, block: &mut Block<'_, M>, first: usize) {
    let layout = block.layout;
    debug_assert!(first + V <= layout.vectors);
    let mut starts = [0usize; V];
    for (v, start) in starts.iter_mut().enumerate() {
        *start = layout.starts[first + v] as usize;
    }
    // Plain loops, not `array::map`/`from_fn`: their closures may stay out of line, outside
    // the tier's `target_feature` context, where the intrinsics cannot inline.
    let mut acc = [[simd.splat(0.0); V]; M];
    for (sums, &b) in acc.iter_mut().zip(&block.bias) {
        *sums = [simd.splat(b); V];
    }
    let packed = block.packed.as_ptr();
    for (&shift, taps) in layout.tap_shifts.iter().zip(block.weights.chunks_exact(M)) {
        let mut x = [simd.splat(0.0); V];
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
    let band_len = layout.band_rows * layout.out_cols;
    for (m, rows) in acc.iter().enumerate() {
        let plane = &mut block.output[m * block.out_plane + block.band_offset..][..band_len];
        for (v, &vector) in rows.iter().enumerate() {
            store(simd, layout, plane, first + v, vector);
        }
    }
}

/// Writes vector `index` of flat positions into its output plane, run by run: a whole
/// vector with one store, a run that ends a row or starts the next with a masked store.
#[inline(always)]
fn store<S: Simd>(simd: S, layout: &Layout, plane: &mut [f32], index: usize, vector: S::Vector) {
    let whole = layout.whole_targets[index];
    if whole != MIXED {
        let target = &mut plane[whole as usize..][..S::LANES];
        // SAFETY: `target` is a slice of exactly LANES floats.
        unsafe { simd.store(target.as_mut_ptr(), vector) };
        return;
    }
    for segment in layout.segments_of(index) {
        let (first, end) = (segment.first as usize, segment.end as usize);
        let target = &mut plane[segment.target as usize..][..end - first];
        if end - first == S::LANES {
            // SAFETY: `target` is a slice of exactly LANES floats.
            unsafe { simd.store(target.as_mut_ptr(), vector) };
        } else {
            // SAFETY: lanes `first..end` land on `target`, a slice of `end - first` floats.
            unsafe {
                simd.store_lanes(target.as_mut_ptr().wrapping_sub(first), vector, first, end)
            };
        }
    }
}
