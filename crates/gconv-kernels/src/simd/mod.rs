//! The whole SIMD vocabulary a kernel may use, and one implementation per tier.
//!
//! A kernel body is written once, generic over [`Simd`]. A value of a `Simd` type is a
//! zero-sized token that can only be created after run-time detection has proved that the CPU
//! has the instructions, so holding one is the proof that calling its methods is sound. The
//! body is instantiated per tier by a thin generic `#[target_feature]` wrapper (`dispatch`),
//! into which the body and every method here inline.

use crate::Isa;

pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v3;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v4;

/// A kernel body with its arguments, ready to be instantiated for a tier by [`dispatch`].
pub(crate) trait Kernel {
    /// Runs the body with `simd`'s instructions. Implementations are `#[inline(always)]`, so
    /// that the whole body compiles inside the tier's `#[target_feature]` wrapper.
    fn run<S: Simd>(self, simd: S);
}

/// Runs `kernel` on `isa`, which the caller has checked this CPU supports (a plan does so at
/// creation): the one place where tokens are made and `#[target_feature]` code is entered.
pub(crate) fn dispatch<K: Kernel>(isa: Isa, kernel: K) {
    match isa {
        Isa::Portable => kernel.run(portable::Portable),
        #[cfg(target_arch = "x86_64")]
        Isa::X86_64V3 => {
            let simd = x86_64_v3::X86_64V3::detect().expect("plans check AVX2 and FMA at creation");
            // SAFETY: the token proves AVX2 and FMA are present.
            unsafe { run_x86_64_v3(simd, kernel) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::X86_64V4 => {
            let simd = x86_64_v4::X86_64V4::detect().expect("plans check AVX-512F at creation");
            // SAFETY: the token proves AVX-512F is present.
            unsafe { run_x86_64_v4(simd, kernel) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::X86_64V3 | Isa::X86_64V4 => {
            unreachable!("x86-64 tiers are refused at plan creation on other targets")
        }
    }
}

/// The AVX2+FMA instantiation of a kernel body.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_x86_64_v3<K: Kernel>(simd: x86_64_v3::X86_64V3, kernel: K) {
    kernel.run(simd)
}

/// The AVX-512F instantiation of a kernel body.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_x86_64_v4<K: Kernel>(simd: x86_64_v4::X86_64V4, kernel: K) {
    kernel.run(simd)
}

/// A vector of `LANES` f32 and the operations kernels need on it.
///
/// # Safety
///
/// Implementations may only be constructible where their instructions exist.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    /// f32 lanes in a vector.
    const LANES: usize;
    /// The tier these instructions make up: kernels take their register tiles from it when
    /// they are compiled, so that each tier's code holds only its own tiles.
    const ISA: Isa;
    /// The vector type.
    type Vector: Copy;

    /// All lanes set to `value`.
    fn splat(self, value: f32) -> Self::Vector;

    /// `a · b + c`, fused (one rounding) on the x86-64 tiers; on the portable tier, fused only
    /// if the build enables FMA (otherwise a multiply and an add).
    fn mul_add(self, a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;

    /// `a · b + c` (fused) in the lanes whose bit is set in `mask`, `c` in the others: a tap
    /// that exists only for some lanes adds nothing, not even a NaN, to the others.
    fn mul_add_masked(
        self,
        a: Self::Vector,
        b: Self::Vector,
        c: Self::Vector,
        mask: u32,
    ) -> Self::Vector;

    /// Loads `LANES` values from `source`, which need not be aligned.
    ///
    /// # Safety
    ///
    /// `source..source + LANES` must be readable.
    unsafe fn load(self, source: *const f32) -> Self::Vector;

    /// Stores `LANES` values at `target`, which need not be aligned.
    ///
    /// # Safety
    ///
    /// `target..target + LANES` must be writable.
    unsafe fn store(self, target: *mut f32, vector: Self::Vector);

    /// Stores lanes `first..end` of `vector` at `base + first .. base + end`, touching no
    /// other address (`base` itself may lie outside the allocation; it is never dereferenced).
    ///
    /// # Safety
    ///
    /// `first <= end <= LANES`, and `base + first .. base + end` must be writable.
    unsafe fn store_lanes(self, base: *mut f32, vector: Self::Vector, first: usize, end: usize);

    /// Loads the first `count` lanes from `source`, the others zero; reads nothing past
    /// `source + count`.
    ///
    /// # Safety
    ///
    /// `count <= LANES`, and `source..source + count` must be readable.
    #[inline(always)]
    unsafe fn load_first(self, source: *const f32, count: usize) -> Self::Vector {
        // SAFETY: lanes `0..count` read `source..source + count` (the caller's promise).
        unsafe { self.load_lanes(source, 0, count) }
    }

    /// Stores the first `count` lanes of `vector` at `target .. target + count`, a whole
    /// store when `count` is `LANES`; writes nothing past `target + count`.
    ///
    /// # Safety
    ///
    /// `count <= LANES`, and `target..target + count` must be writable.
    #[inline(always)]
    unsafe fn store_first(self, target: *mut f32, vector: Self::Vector, count: usize) {
        // SAFETY: lanes `0..count` write `target..target + count` (the caller's promise).
        unsafe {
            if count == Self::LANES {
                self.store(target, vector);
            } else {
                self.store_lanes(target, vector, 0, count);
            }
        }
    }

    /// Loads lanes `first..end` from `base + first .. base + end`, the others zero, reading no
    /// other address (`base` itself may lie outside the allocation; it is never dereferenced).
    ///
    /// # Safety
    ///
    /// `first <= end <= LANES`, and `base + first .. base + end` must be readable.
    #[inline(always)]
    unsafe fn load_lanes(self, base: *const f32, first: usize, end: usize) -> Self::Vector {
        // SAFETY: the set lanes are `first..end`, readable (the caller's promise).
        unsafe { self.load_masked(base, lanes_between(first, end)) }
    }

    /// Loads lane `l` from `base + l` for every bit `l` set in `mask`, the others zero,
    /// reading no other address: the lanes need not be consecutive (a vector of positions
    /// that spans the end of a row and the start of the next).
    ///
    /// # Safety
    ///
    /// `mask < 2^LANES`, and `base + l` must be readable for every bit `l` set in it.
    unsafe fn load_masked(self, base: *const f32, mask: u32) -> Self::Vector;

    /// Transposes a `LANES × LANES` block: the `LANES` floats at `source + r·source_stride`
    /// (row `r`) become lane `r` of the `LANES` floats at `target + c·target_stride`, for
    /// every column `c`.
    ///
    /// # Safety
    ///
    /// Each of the `LANES` source rows must be readable and each target row writable, and the
    /// two blocks must not overlap.
    unsafe fn transpose_square(
        self,
        source: *const f32,
        source_stride: usize,
        target: *mut f32,
        target_stride: usize,
    );

    /// The even and the odd lanes of the `2·LANES` values `low` then `high`:
    /// `([low₀, low₂, …, high₀, high₂, …], [low₁, low₃, …, high₁, high₃, …])`.
    fn deinterleave(self, low: Self::Vector, high: Self::Vector) -> (Self::Vector, Self::Vector);

    /// The last lane of `before`, then the first `LANES − 1` lanes of `vector`: of the
    /// `2·LANES` values `before` then `vector`, the `LANES` that end one lane before the end
    /// (a row's inputs one column to the left, the column entering from `before`).
    fn shift_in(self, before: Self::Vector, vector: Self::Vector) -> Self::Vector;
}

/// The mask of lanes `first..end`, as [`Simd::load_masked`] takes it (`first <= end <= 32`).
#[inline(always)]
pub(crate) fn lanes_between(first: usize, end: usize) -> u32 {
    debug_assert!(first <= end && end <= 32);
    (((1u64 << end) - 1) & !((1u64 << first) - 1)) as u32
}

/// [`Simd::load_masked`] through a zeroed buffer on the stack, for tiers without masked
/// loads.
///
/// # Safety
///
/// As [`Simd::load_masked`].
#[inline(always)]
pub(crate) unsafe fn load_masked_by_copying<S: Simd>(
    simd: S,
    base: *const f32,
    mask: u32,
) -> S::Vector {
    let mut lanes = [0.0f32; 16];
    debug_assert!(S::LANES <= lanes.len() && u64::from(mask) < 1u64 << S::LANES);
    for (lane, slot) in lanes.iter_mut().enumerate().take(S::LANES) {
        if mask & (1 << lane) != 0 {
            // SAFETY: the caller guarantees `base + lane` is readable for every set bit.
            *slot = unsafe { base.wrapping_add(lane).read_unaligned() };
        }
    }
    // SAFETY: `lanes` holds 16 >= LANES floats.
    unsafe { simd.load(lanes.as_ptr()) }
}

/// [`Simd::transpose_square`] one float at a time, for tiers without shuffles.
///
/// # Safety
///
/// As [`Simd::transpose_square`].
#[inline(always)]
pub(crate) unsafe fn transpose_one_by_one(
    lanes: usize,
    source: *const f32,
    source_stride: usize,
    target: *mut f32,
    target_stride: usize,
) {
    for row in 0..lanes {
        for col in 0..lanes {
            // SAFETY: both addresses are inside the blocks the caller vouches for.
            unsafe {
                *target.add(col * target_stride + row) = *source.add(row * source_stride + col);
            }
        }
    }
}

/// [`Simd::store_lanes`] through a spill to the stack, for tiers without masked stores.
///
/// # Safety
///
/// As [`Simd::store_lanes`].
#[inline(always)]
pub(crate) unsafe fn store_lanes_by_spilling<S: Simd>(
    simd: S,
    base: *mut f32,
    vector: S::Vector,
    first: usize,
    end: usize,
) {
    let mut lanes = [0.0f32; 16];
    debug_assert!(S::LANES <= lanes.len() && first <= end && end <= S::LANES);
    // SAFETY: `lanes` holds 16 >= LANES floats.
    unsafe { simd.store(lanes.as_mut_ptr(), vector) };
    for (lane, &value) in lanes.iter().enumerate().take(end).skip(first) {
        // SAFETY: the caller guarantees `base + first .. base + end` is writable.
        unsafe { base.wrapping_add(lane).write_unaligned(value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tier's transpose and deinterleave against the plain definition.
    fn check<S: Simd>(simd: S) {
        let lanes = S::LANES;
        let (source_stride, target_stride) = (lanes + 3, lanes + 5);
        let source: Vec<f32> = (0..lanes * source_stride).map(|v| v as f32).collect();
        let mut target = vec![-1.0f32; lanes * target_stride];
        // SAFETY: both buffers hold LANES rows of their strides.
        unsafe {
            simd.transpose_square(
                source.as_ptr(),
                source_stride,
                target.as_mut_ptr(),
                target_stride,
            )
        };
        for row in 0..lanes {
            for col in 0..lanes {
                assert_eq!(
                    target[col * target_stride + row],
                    source[row * source_stride + col]
                );
            }
        }
        let values: Vec<f32> = (0..2 * lanes).map(|v| v as f32).collect();
        let mut even = vec![0.0f32; lanes];
        let mut odd = vec![0.0f32; lanes];
        // SAFETY: `values` holds 2·LANES floats, `even` and `odd` LANES each.
        unsafe {
            let (e, o) = simd.deinterleave(
                simd.load(values.as_ptr()),
                simd.load(values.as_ptr().add(lanes)),
            );
            simd.store(even.as_mut_ptr(), e);
            simd.store(odd.as_mut_ptr(), o);
        }
        assert!(even.iter().enumerate().all(|(k, &v)| v == (2 * k) as f32));
        let mut shifted = vec![0.0f32; lanes];
        // SAFETY: `values` holds 2·LANES floats, `shifted` LANES.
        unsafe {
            let vector = simd.shift_in(
                simd.load(values.as_ptr()),
                simd.load(values.as_ptr().add(lanes)),
            );
            simd.store(shifted.as_mut_ptr(), vector);
        }
        assert_eq!(shifted, values[lanes - 1..2 * lanes - 1]);
        assert!(
            odd.iter()
                .enumerate()
                .all(|(k, &v)| v == (2 * k + 1) as f32)
        );
        let mut first = vec![0.0f32; lanes];
        // SAFETY: `values` holds at least 3 floats; `first` LANES.
        unsafe { simd.store(first.as_mut_ptr(), simd.load_first(values.as_ptr(), 3)) };
        assert_eq!(&first[..4], &[0.0, 1.0, 2.0, 0.0]);
        assert!(first[3..].iter().all(|&v| v == 0.0));
        let mut stored_first = vec![-1.0f32; lanes + 1];
        // SAFETY: `stored_first` holds LANES + 1 floats; at most LANES are written.
        unsafe {
            simd.store_first(stored_first.as_mut_ptr(), simd.load(values.as_ptr()), 3);
            simd.store_first(stored_first.as_mut_ptr().add(lanes), simd.splat(7.0), 0);
        }
        assert_eq!(&stored_first[..3], &[0.0, 1.0, 2.0]);
        assert!(stored_first[3..].iter().all(|&v| v == -1.0));
        // SAFETY: as above, LANES floats from the start.
        unsafe { simd.store_first(stored_first.as_mut_ptr(), simd.load(values.as_ptr()), lanes) };
        assert!((0..lanes).all(|lane| stored_first[lane] == lane as f32));
        assert_eq!(stored_first[lanes], -1.0);
        let mut middle = vec![0.0f32; lanes];
        // SAFETY: lanes 2..LANES-1 read `values[1..LANES - 2]`, inside `values`.
        unsafe {
            let loaded = simd.load_lanes(values.as_ptr().wrapping_sub(1), 2, lanes - 1);
            simd.store(middle.as_mut_ptr(), loaded);
        }
        for (lane, &value) in middle.iter().enumerate() {
            let expected = if (2..lanes - 1).contains(&lane) {
                (lane - 1) as f32
            } else {
                0.0
            };
            assert_eq!(value, expected, "lane {lane} of a masked load");
        }
        // Every other lane from the second, and the last: not one run of lanes.
        let mask = (0..lanes)
            .filter(|l| l % 2 == 1 || *l == lanes - 1)
            .fold(0, |m, l| m | 1 << l);
        let mut scattered = vec![0.0f32; lanes];
        // SAFETY: the set lanes read `values[0..LANES - 1]`, inside `values`.
        unsafe {
            let loaded = simd.load_masked(values.as_ptr().wrapping_sub(1), mask);
            simd.store(scattered.as_mut_ptr(), loaded);
        }
        for (lane, &value) in scattered.iter().enumerate() {
            let expected = if mask & (1 << lane) != 0 {
                lane as f32 - 1.0
            } else {
                0.0
            };
            assert_eq!(
                value, expected,
                "lane {lane} of a load under mask {mask:#b}"
            );
        }
        // Products only in the set lanes: a NaN factor in the others leaves them alone.
        let factors: Vec<f32> = (0..lanes)
            .map(|lane| {
                if mask & (1 << lane) != 0 {
                    2.0
                } else {
                    f32::NAN
                }
            })
            .collect();
        let mut fused = vec![0.0f32; lanes];
        // SAFETY: `values` and `factors` hold at least LANES floats, `fused` LANES.
        unsafe {
            let sum = simd.mul_add_masked(
                simd.load(factors.as_ptr()),
                simd.load(values.as_ptr()),
                simd.splat(0.5),
                mask,
            );
            simd.store(fused.as_mut_ptr(), sum);
        }
        for (lane, &value) in fused.iter().enumerate() {
            let expected = if mask & (1 << lane) != 0 {
                2.0 * lane as f32 + 0.5
            } else {
                0.5
            };
            assert_eq!(
                value, expected,
                "lane {lane} of a multiply-add under mask {mask:#b}"
            );
        }
        let mut stored = vec![0.0f32; lanes + 2];
        // SAFETY: lanes 2..LANES-1 land on `stored[3..LANES]`.
        unsafe {
            simd.store_lanes(
                stored.as_mut_ptr().add(1),
                simd.load(values.as_ptr()),
                2,
                lanes - 1,
            )
        };
        let expected: Vec<f32> = (0..lanes + 2)
            .map(|i| {
                if (3..lanes).contains(&i) {
                    (i - 1) as f32
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(stored, expected);
    }

    #[test]
    fn every_tier_this_cpu_has_shuffles_and_stores_as_defined() {
        check(portable::Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = x86_64_v3::X86_64V3::detect() {
                check(simd);
            }
            if let Some(simd) = x86_64_v4::X86_64V4::detect() {
                check(simd);
            }
        }
    }
}
