//! The x86-64-v3 tier: AVX2 + FMA, 8 lanes.

use std::arch::x86_64::{
    __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps,
};

use super::Simd;

/// Proof that the CPU has AVX2 and FMA.
#[derive(Debug, Clone, Copy)]
pub struct X86_64V3(());

impl X86_64V3 {
    /// The token, if the CPU has AVX2 and FMA.
    pub fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Self(()))
    }
}

// SAFETY: a token exists only after `detect` saw AVX2 and FMA.
unsafe impl Simd for X86_64V3 {
    const LANES: usize = 8;
    type Vector = __m256;

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
    unsafe fn load(self, source: *const f32) -> __m256 {
        // SAFETY: the token proves AVX; the caller guarantees 8 readable floats.
        unsafe { _mm256_loadu_ps(source) }
    }

    #[inline(always)]
    unsafe fn store(self, target: *mut f32, vector: __m256) {
        // SAFETY: the token proves AVX; the caller guarantees 8 writable floats.
        unsafe { _mm256_storeu_ps(target, vector) }
    }
}
