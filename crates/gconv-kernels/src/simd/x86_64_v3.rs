//! The x86-64-v3 tier: AVX2 + FMA, 8 lanes.

use std::arch::x86_64::{
    __m128i, __m256, __m256i, _CMP_GT_OQ, _mm_castps_si128, _mm_movehl_ps, _mm_store_ss,
    _mm_storel_epi64, _mm_storeu_ps, _mm256_add_epi32, _mm256_add_ps, _mm256_alignr_epi8,
    _mm256_and_si256, _mm256_blendv_ps, _mm256_castpd_ps, _mm256_castps_pd, _mm256_castps_si256,
    _mm256_castps256_ps128, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpeq_epi32,
    _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_maskload_ps, _mm256_max_ps,
    _mm256_min_ps, _mm256_mul_ps, _mm256_permute2f128_ps, _mm256_permute4x64_pd,
    _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32,
    _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};

use super::Simd;
use crate::Isa;

/// Proof that the CPU has AVX2 and FMA, for `f32` vectors.
#[derive(Debug, Clone, Copy)]
pub struct F32(());

// SAFETY: a token exists only after `detect` saw AVX2 and FMA.
unsafe impl Simd for F32 {
    type Elem = f32;
    const LANES: usize = 8;
    const ISA: Isa = Isa::X86_64V3;
    type Vector = __m256;

    #[inline(always)]
    fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Self(()))
    }

    #[inline(always)]
    fn splat(self, value: f32) -> __m256 {
        // SAFETY: the token proves AVX is present.
        unsafe { _mm256_set1_ps(value) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the token proves FMA is present.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: the token proves AVX is present.
        unsafe { _mm256_add_ps(a, b) }
    }

    #[inline(always)]
    fn clamp(self, vector: __m256, min: __m256, max: __m256) -> __m256 {
        // `max_ps(a, b)` is `a > b ? a : b` and `min_ps(a, b)` is `a < b ? a : b`: a NaN
        // lane of `vector`, the second operand, comes through both.
        // SAFETY: the token proves AVX is present.
        unsafe { _mm256_min_ps(max, _mm256_max_ps(min, vector)) }
    }

    #[inline(always)]
    fn leaky(self, vector: __m256, slope: __m256) -> __m256 {
        // SAFETY: the token proves AVX is present.
        unsafe {
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(vector, _mm256_setzero_ps());
            _mm256_blendv_ps(_mm256_mul_ps(vector, slope), vector, positive)
        }
    }

    #[inline(always)]
    fn mul_add_masked(self, a: __m256, b: __m256, c: __m256, mask: u32) -> __m256 {
        // SAFETY: the token proves AVX2 and FMA are present.
        unsafe {
            let lanes = _mm256_castsi256_ps(lanes_of(mask));
            _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), lanes)
        }
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> __m256 {
        // SAFETY: the token proves AVX; the caller guarantees 8 readable floats.
        unsafe { _mm256_loadu_ps(source) }
    }

    #[inline(always)]
    unsafe fn store(self, target: *mut f32, vector: __m256) {
        // SAFETY: the token proves AVX; the caller guarantees 8 writable floats.
        unsafe { _mm256_storeu_ps(target, vector) }
    }

    #[inline(always)]
    unsafe fn store_lanes(self, base: *mut f32, vector: __m256, first: usize, end: usize) {
        // Not `vmaskmovps`: AMD's AVX2 cores (Zen 2 and 3) take about 16 cycles per masked
        // store (TUNING.md, "Partial stores on AVX2"). The lanes are moved down to lane 0 and
        // stored as at most a 4-, a 2- and a 1-lane piece, as in XNNPACK's AVX tails.
        // SAFETY: the token proves AVX2; only `base + first .. base + end` is written, which
        // the caller guarantees is writable (`base` itself is never dereferenced).
        unsafe {
            if first == 0 && end == 8 {
                return _mm256_storeu_ps(base, vector);
            }
            let from_first = _mm256_add_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(first as i32),
            );
            let moved = _mm256_permutevar8x32_ps(vector, from_first);
            let mut target = base.wrapping_add(first);
            let count = end - first;
            let mut piece = _mm256_castps256_ps128(moved);
            if count & 4 != 0 {
                _mm_storeu_ps(target, piece);
                piece = _mm256_extractf128_ps::<1>(moved);
                target = target.add(4);
            }
            if count & 2 != 0 {
                _mm_storel_epi64(target.cast::<__m128i>(), _mm_castps_si128(piece));
                piece = _mm_movehl_ps(piece, piece);
                target = target.add(2);
            }
            if count & 1 != 0 {
                _mm_store_ss(target, piece);
            }
        }
    }

    #[inline(always)]
    fn deinterleave(self, low: __m256, high: __m256) -> (__m256, __m256) {
        // SAFETY: the token proves AVX2.
        unsafe {
            // Within each 128-bit half: [l0 l2 h0 h2 | l4 l6 h4 h6], then reorder the 64-bit
            // pairs to [l0 l2 l4 l6 h0 h2 h4 h6].
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(low, high);
            let order = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
            };
            (order(even), order(odd))
        }
    }

    #[inline(always)]
    fn shift_in(self, before: __m256, vector: __m256) -> __m256 {
        // SAFETY: the token proves AVX2.
        unsafe {
            // [before₄..₇ | vector₀..₃], then per 128-bit half the last lane of that followed
            // by the half's first three of `vector`: [before₇ v₀ v₁ v₂ | v₃ v₄ v₅ v₆].
            let straddle = _mm256_permute2f128_ps::<0x21>(before, vector);
            _mm256_castsi256_ps(_mm256_alignr_epi8::<12>(
                _mm256_castps_si256(vector),
                _mm256_castps_si256(straddle),
            ))
        }
    }

    #[inline(always)]
    unsafe fn transpose_square(
        self,
        source: *const f32,
        source_stride: usize,
        target: *mut f32,
        target_stride: usize,
    ) {
        // SAFETY: the token proves AVX; the caller guarantees 8 readable rows and 8 writable
        // rows of 8 floats.
        unsafe {
            // Plain loops, not `array::from_fn`: its closures may stay out of line, outside
            // the `target_feature` context, where the intrinsics cannot inline.
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, row) in r.iter_mut().enumerate() {
                *row = _mm256_loadu_ps(source.add(i * source_stride));
            }
            // Pairs of rows interleaved: [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7].
            let mut t = [_mm256_setzero_ps(); 8];
            for pair in 0..4 {
                t[2 * pair] = _mm256_unpacklo_ps(r[2 * pair], r[2 * pair + 1]);
                t[2 * pair + 1] = _mm256_unpackhi_ps(r[2 * pair], r[2 * pair + 1]);
            }
            // Quads of rows: [a0 b0 c0 d0 | a4 b4 c4 d4] … [a3 b3 c3 d3 | a7 b7 c7 d7].
            let quad = |x: __m256, y: __m256, high: bool| {
                if high {
                    _mm256_shuffle_ps::<0xEE>(x, y)
                } else {
                    _mm256_shuffle_ps::<0x44>(x, y)
                }
            };
            let u = [
                quad(t[0], t[2], false),
                quad(t[0], t[2], true),
                quad(t[1], t[3], false),
                quad(t[1], t[3], true),
                quad(t[4], t[6], false),
                quad(t[4], t[6], true),
                quad(t[5], t[7], false),
                quad(t[5], t[7], true),
            ];
            // Halves of the two quads joined: column j, then column j + 4.
            for j in 0..4 {
                _mm256_storeu_ps(
                    target.add(j * target_stride),
                    _mm256_permute2f128_ps::<0x20>(u[j], u[j + 4]),
                );
                _mm256_storeu_ps(
                    target.add((j + 4) * target_stride),
                    _mm256_permute2f128_ps::<0x31>(u[j], u[j + 4]),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn load_masked(self, base: *const f32, mask: u32) -> __m256 {
        // SAFETY: the token proves AVX2; lanes whose bit is clear are masked off and not read
        // (nor can they fault), the caller guarantees the others are readable.
        unsafe { _mm256_maskload_ps(base, lanes_of(mask)) }
    }
}

/// The lanes whose bit is set in `mask` as a vector mask: all ones there, zeros elsewhere.
///
/// # Safety
///
/// AVX2 must be present (inlined into the tier's methods, which hold the token).
#[inline(always)]
unsafe fn lanes_of(mask: u32) -> __m256i {
    // SAFETY: the caller guarantees AVX2.
    unsafe {
        let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let set = _mm256_and_si256(_mm256_set1_epi32(mask as i32), bits);
        _mm256_cmpeq_epi32(set, bits)
    }
}
