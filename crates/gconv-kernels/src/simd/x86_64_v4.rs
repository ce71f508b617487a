//! The x86-64-v4 tier: AVX-512F, 16 lanes.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_permutex2var_ps,
    _mm512_set1_ps, _mm512_setr_epi32, _mm512_storeu_ps,
};

use super::Simd;

/// Proof that the CPU has AVX-512F.
#[derive(Debug, Clone, Copy)]
pub struct X86_64V4(());

impl X86_64V4 {
    /// The token, if the CPU has AVX-512F.
    pub fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Self(()))
    }
}

// SAFETY: a token exists only after `detect` saw AVX-512F.
unsafe impl Simd for X86_64V4 {
    const LANES: usize = 16;
    type Vector = __m512;

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
        let mask = (((1u32 << end) - 1) & !((1u32 << first) - 1)) as u16;
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
}
