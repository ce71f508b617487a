//! The one kernel body: a register tile of `M` output channels × `V` vectors of flat output
//! positions, accumulated over every tap of the group, written once over [`Simd`].

use crate::layout::Layout;
use crate::simd::Simd;

/// Convolves one block of `M` output channels of a group over the whole output plane.
///
/// Loop order: flat positions in tiles of `V` vectors (then single vectors for the rest); per
/// tile, taps in `(c, i, j)` order, each loading `V` input vectors once and feeding them to all
/// `M` channels with broadcast weights — `V` loads and `M` broadcasts per `M·V` fused
/// multiply-adds. Every output element is the same chain `bias, +w₀x₀, +w₁x₁, …` whatever
/// the tile, so results do not depend on `V` or on which task ran the block.
///
/// `weights` is the block packed as `[tap][m]`; `output` holds the block's `M` output planes,
/// `out_plane` floats apart.
///
/// # Safety
///
/// `packed` must be readable for `layout.packed_len` floats and hold the group's packed input.
#[inline(always)]
pub(crate) unsafe fn convolve_block<S: Simd, const M: usize, const V: usize>(
    simd: S,
    layout: &Layout,
    packed: *const f32,
    weights: &[f32],
    bias: [f32; M],
    output: &mut [f32],
    out_plane: usize,
) {
    debug_assert_eq!(weights.len(), layout.tap_shifts.len() * M);
    debug_assert_eq!(layout.lanes, S::LANES);
    assert!(output.len() >= M * out_plane);
    let mut vector = 0;
    while vector + V <= layout.vectors {
        // SAFETY: forwarded from the caller; `vector + V <= layout.vectors`.
        unsafe {
            tile::<S, M, V>(
                simd, layout, packed, weights, bias, output, out_plane, vector,
            )
        };
        vector += V;
    }
    while vector < layout.vectors {
        // SAFETY: as above, for one vector.
        unsafe {
            tile::<S, M, 1>(
                simd, layout, packed, weights, bias, output, out_plane, vector,
            )
        };
        vector += 1;
    }
}

/// One `M × V` tile starting at vector `first`.
///
/// # Safety
///
/// As [`convolve_block`], and `first + V <= layout.vectors`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<S: Simd, const M: usize, const V: usize>(
    simd: S,
    layout: &Layout,
    packed: *const f32,
    weights: &[f32],
    bias: [f32; M],
    output: &mut [f32],
    out_plane: usize,
    first: usize,
) {
    let start = first * S::LANES;
    let mut acc: [[S::Vector; V]; M] = bias.map(|b| [simd.splat(b); V]);
    for (&shift, taps) in layout.tap_shifts.iter().zip(weights.chunks_exact(M)) {
        // SAFETY: `shift + (first + V) · LANES <= layout.packed_len` (see `Layout::new`), and
        // the caller guarantees that many readable floats.
        let x: [S::Vector; V] =
            std::array::from_fn(|v| unsafe { simd.load(packed.add(shift + start + v * S::LANES)) });
        for (m, &w) in taps.iter().enumerate() {
            let w = simd.splat(w);
            for v in 0..V {
                acc[m][v] = simd.mul_add(w, x[v], acc[m][v]);
            }
        }
    }
    for (m, rows) in acc.iter().enumerate() {
        let plane = &mut output[m * out_plane..(m + 1) * out_plane];
        for (v, &vector) in rows.iter().enumerate() {
            store(simd, layout, plane, first + v, vector);
        }
    }
}

/// Writes vector `index` of flat positions into its output plane, run by run: a whole
/// vector with one store, a run that ends a row or starts the next with a masked store.
#[inline(always)]
fn store<S: Simd>(simd: S, layout: &Layout, plane: &mut [f32], index: usize, vector: S::Vector) {
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
