//! The x86-64-v4 tier: AVX-512F, 16 lanes.

use std::arch::x86_64::{
    __m512, _CMP_LE_OQ, _mm512_add_ps, _mm512_alignr_epi32, _mm512_castpd_ps, _mm512_castps_pd,
    _mm512_castps_si512, _mm512_castsi512_ps, _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_mask_mul_ps, _mm512_mask_storeu_ps, _mm512_mask3_fmadd_ps, _mm512_maskz_loadu_ps,
    _mm512_max_ps, _mm512_min_ps, _mm512_permutex2var_ps, _mm512_set1_ps, _mm512_setr_epi32,
    _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd,
    _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
};

use super::{Simd, lanes_between};
use crate::Isa;

/// Proof that the CPU has AVX-512F, for `f32` vectors.
#[derive(Debug, Clone, Copy)]
pub struct F32(());

// SAFETY: a token exists only after `detect` saw AVX-512F.
unsafe impl Simd for F32 {
    type Elem = f32;
    const LANES: usize = 16;
    const ISA: Isa = Isa::X86_64V4;
    type Vector = __m512;

    #[inline(always)]
    fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Self(()))
    }

    #[inline(always)]
    fn splat(self, value: f32) -> __m512 {
        // SAFETY: the token proves AVX-512F is present.
        unsafe { _mm512_set1_ps(value) }
    }

    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F is present.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }

    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F is present.
        unsafe { _mm512_add_ps(a, b) }
    }

    #[inline(always)]
    fn clamp(self, vector: __m512, min: __m512, max: __m512) -> __m512 {
        // `max_ps(a, b)` is `a > b ? a : b` and `min_ps(a, b)` is `a < b ? a : b`: a NaN
        // lane of `vector`, the second operand, comes through both.
        // SAFETY: the token proves AVX-512F is present.
        unsafe { _mm512_min_ps(max, _mm512_max_ps(min, vector)) }
    }

    #[inline(always)]
    fn leaky(self, vector: __m512, slope: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F is present.
        unsafe {
            // Ordered `<=`: a NaN lane is not multiplied (it would stay NaN either way).
            let not_positive = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(vector, _mm512_setzero_ps());
            _mm512_mask_mul_ps(vector, not_positive, vector, slope)
        }
    }

    #[inline(always)]
    fn mul_add_masked(self, a: __m512, b: __m512, c: __m512, mask: u32) -> __m512 {
        // SAFETY: the token proves AVX-512F is present.
        unsafe { _mm512_mask3_fmadd_ps(a, b, c, mask as u16) }
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> __m512 {
        // SAFETY: the token proves AVX-512F; the caller guarantees 16 readable floats.
        unsafe { _mm512_loadu_ps(source) }
    }

    #[inline(always)]
    unsafe fn store(self, target: *mut f32, vector: __m512) {
        // SAFETY: the token proves AVX-512F; the caller guarantees 16 writable floats.
        unsafe { _mm512_storeu_ps(target, vector) }
    }

    #[inline(always)]
    unsafe fn store_lanes(self, base: *mut f32, vector: __m512, first: usize, end: usize) {
        let mask = lanes_between(first, end) as u16;
        // SAFETY: the token proves AVX-512F; masked-off lanes are not accessed, the caller
        // guarantees the others are writable.
        unsafe { _mm512_mask_storeu_ps(base, mask, vector) }
    }

    #[inline(always)]
    fn deinterleave(self, low: __m512, high: __m512) -> (__m512, __m512) {
        // SAFETY: the token proves AVX-512F.
        unsafe {
            // Indices 0..15 pick from `low`, 16..31 from `high`.
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(low, even, high),
                _mm512_permutex2var_ps(low, odd, high),
            )
        }
    }

    #[inline(always)]
    fn shift_in(self, before: __m512, vector: __m512) -> __m512 {
        // SAFETY: the token proves AVX-512F.
        unsafe {
            // `vector` then `before` as 32 lanes (before the lower), from lane 15 on.
            _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                _mm512_castps_si512(vector),
                _mm512_castps_si512(before),
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
        // SAFETY: the token proves AVX-512F; the caller guarantees 16 readable rows and 16
        // writable rows of 16 floats.
        unsafe {
            // Plain loops, not `array::from_fn`: its closures may stay out of line, outside
            // the `target_feature` context, where the intrinsics cannot inline.
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, row) in r.iter_mut().enumerate() {
                *row = _mm512_loadu_ps(source.add(i * source_stride));
            }
            // Pairs of rows interleaved within each 128-bit lane: [a0 b0 a1 b1 | a4 b4 a5 b5 | …].
            let mut t = [_mm512_setzero_ps(); 16];
            for pair in 0..8 {
                t[2 * pair] = _mm512_unpacklo_ps(r[2 * pair], r[2 * pair + 1]);
                t[2 * pair + 1] = _mm512_unpackhi_ps(r[2 * pair], r[2 * pair + 1]);
            }
            // Quads of rows: u[4q + j] = [rows 4q..4q+4 at column j | j + 4 | j + 8 | j + 12].
            let mut u = [_mm512_setzero_ps(); 16];
            for (i, quad) in u.iter_mut().enumerate() {
                let (q, j) = (i / 4, i % 4);
                let x = _mm512_castps_pd(t[4 * q + j % 2]);
                let y = _mm512_castps_pd(t[4 * q + 2 + j % 2]);
                *quad = _mm512_castpd_ps(if j < 2 {
                    _mm512_unpacklo_pd(x, y)
                } else {
                    _mm512_unpackhi_pd(x, y)
                });
            }
            // u is ordered [j = 0, 2, 1, 3] by the pd unpacks above; name the quads by column.
            let quad = |q: usize, j: usize| u[4 * q + [0, 2, 1, 3][j]];
            for j in 0..4 {
                // Rows 0..8: [q0 col j | q0 col j+8 | q1 col j | q1 col j+8] and the +4 twin.
                let low = _mm512_shuffle_f32x4::<0x88>(quad(0, j), quad(1, j));
                let low4 = _mm512_shuffle_f32x4::<0xDD>(quad(0, j), quad(1, j));
                let high = _mm512_shuffle_f32x4::<0x88>(quad(2, j), quad(3, j));
                let high4 = _mm512_shuffle_f32x4::<0xDD>(quad(2, j), quad(3, j));
                let column = |x: __m512, y: __m512, upper: bool| {
                    if upper {
                        _mm512_shuffle_f32x4::<0xDD>(x, y)
                    } else {
                        _mm512_shuffle_f32x4::<0x88>(x, y)
                    }
                };
                _mm512_storeu_ps(target.add(j * target_stride), column(low, high, false));
                _mm512_storeu_ps(target.add((j + 8) * target_stride), column(low, high, true));
                _mm512_storeu_ps(
                    target.add((j + 4) * target_stride),
                    column(low4, high4, false),
                );
                _mm512_storeu_ps(
                    target.add((j + 12) * target_stride),
                    column(low4, high4, true),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn load_masked(self, base: *const f32, mask: u32) -> __m512 {
        // SAFETY: the token proves AVX-512F; masked-off lanes are not read (nor can they
        // fault), the caller guarantees the others are readable.
        unsafe { _mm512_maskz_loadu_ps(mask as u16, base) }
    }
}
