//! The portable tier: `wide::f32x8`, lowered to the build's target features.

use wide::f32x8;

use crate::Isa;

use super::{Simd, load_masked_by_copying, store_lanes_by_spilling, transpose_one_by_one};

/// Token for `wide`'s 8-lane `f32` vectors; available on every CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct F32;

// SAFETY: `wide` only uses instructions the build's target features guarantee.
unsafe impl Simd for F32 {
    type Elem = f32;
    const LANES: usize = 8;
    const ISA: Isa = Isa::Portable;
    type Vector = f32x8;

    #[inline(always)]
    fn detect() -> Option<Self> {
        Some(F32)
    }

    #[inline(always)]
    fn splat(self, value: f32) -> f32x8 {
        f32x8::splat(value)
    }

    #[inline(always)]
    fn mul_add(self, a: f32x8, b: f32x8, c: f32x8) -> f32x8 {
        a.mul_add(b, c)
    }

    #[inline(always)]
    fn add(self, a: f32x8, b: f32x8) -> f32x8 {
        a + b
    }

    #[inline(always)]
    fn clamp(self, vector: f32x8, min: f32x8, max: f32x8) -> f32x8 {
        let (values, min, max) = (vector.to_array(), min.to_array(), max.to_array());
        f32x8::from(std::array::from_fn::<f32, 8, _>(|lane| {
            let raised = if values[lane] < min[lane] {
                min[lane]
            } else {
                values[lane]
            };
            if raised > max[lane] {
                max[lane]
            } else {
                raised
            }
        }))
    }

    #[inline(always)]
    fn leaky(self, vector: f32x8, slope: f32x8) -> f32x8 {
        let (values, slope) = (vector.to_array(), slope.to_array());
        f32x8::from(std::array::from_fn::<f32, 8, _>(|lane| {
            if values[lane] > 0.0 {
                values[lane]
            } else {
                values[lane] * slope[lane]
            }
        }))
    }

    #[inline(always)]
    fn mul_add_masked(self, a: f32x8, b: f32x8, c: f32x8, mask: u32) -> f32x8 {
        let (sum, kept) = (a.mul_add(b, c).to_array(), c.to_array());
        f32x8::from(std::array::from_fn::<f32, 8, _>(|lane| {
            if mask & (1 << lane) != 0 {
                sum[lane]
            } else {
                kept[lane]
            }
        }))
    }

    #[inline(always)]
    unsafe fn load(self, source: *const f32) -> f32x8 {
        // SAFETY: the caller guarantees 8 readable floats; `read_unaligned` needs no alignment.
        f32x8::from(unsafe { source.cast::<[f32; 8]>().read_unaligned() })
    }

    #[inline(always)]
    unsafe fn store(self, target: *mut f32, vector: f32x8) {
        // SAFETY: the caller guarantees 8 writable floats; `write_unaligned` needs no alignment.
        unsafe { target.cast::<[f32; 8]>().write_unaligned(vector.to_array()) }
    }

    #[inline(always)]
    unsafe fn store_lanes(self, base: *mut f32, vector: f32x8, first: usize, end: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { store_lanes_by_spilling(self, base, vector, first, end) }
    }

    #[inline(always)]
    fn shift_in(self, before: f32x8, vector: f32x8) -> f32x8 {
        let (before, vector) = (before.to_array(), vector.to_array());
        f32x8::new(std::array::from_fn(|lane| {
            if lane == 0 {
                before[7]
            } else {
                vector[lane - 1]
            }
        }))
    }

    #[inline(always)]
    fn deinterleave(self, low: f32x8, high: f32x8) -> (f32x8, f32x8) {
        let (low, high) = (low.to_array(), high.to_array());
        let even = std::array::from_fn(|lane| {
            if lane < 4 {
                low[2 * lane]
            } else {
                high[2 * lane - 8]
            }
        });
        let odd = std::array::from_fn(|lane| {
            if lane < 4 {
                low[2 * lane + 1]
            } else {
                high[2 * lane - 7]
            }
        });
        (f32x8::from(even), f32x8::from(odd))
    }

    #[inline(always)]
    unsafe fn transpose_square(
        self,
        source: *const f32,
        source_stride: usize,
        target: *mut f32,
        target_stride: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { transpose_one_by_one(8, source, source_stride, target, target_stride) }
    }

    #[inline(always)]
    unsafe fn load_masked(self, base: *const f32, mask: u32) -> f32x8 {
        // SAFETY: forwarded from the caller (with every lane set, all 8 are readable).
        unsafe {
            if mask == 0xff {
                self.load(base)
            } else {
                load_masked_by_copying(self, base, mask)
            }
        }
    }
}
