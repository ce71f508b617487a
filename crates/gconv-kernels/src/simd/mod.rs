//! The whole SIMD vocabulary a kernel may use, and one implementation per tier.
//!
//! A kernel body is written once, generic over [`Simd`]. A value of a `Simd` type is a
//! zero-sized token that can only be created after run-time detection has proved that the CPU
//! has the instructions, so holding one is the proof that calling its methods is sound. The
//! body is instantiated per tier by a thin `#[target_feature]` wrapper (see `crate::engine`),
//! into which every method here inlines.

pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v3;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v4;

/// A vector of `LANES` f32 and the operations kernels need on it.
///
/// # Safety
///
/// Implementations may only be constructible where their instructions exist.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    /// f32 lanes in a vector.
    const LANES: usize;
    /// The vector type.
    type Vector: Copy;

    /// All lanes set to `value`.
    fn splat(self, value: f32) -> Self::Vector;

    /// `a · b + c`, fused (one rounding) on the x86-64 tiers; on the portable tier, fused only
    /// if the build enables FMA (otherwise a multiply and an add).
    fn mul_add(self, a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;

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

    /// The even and the odd lanes of the `2·LANES` values `low` then `high`:
    /// `([low₀, low₂, …, high₀, high₂, …], [low₁, low₃, …, high₁, high₃, …])`.
    fn deinterleave(self, low: Self::Vector, high: Self::Vector) -> (Self::Vector, Self::Vector);
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
