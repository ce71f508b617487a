//! The whole SIMD vocabulary a kernel may use, and one implementation per tier and element
//! type.
//!
//! A kernel body is written once, generic over [`Simd`], whose [`Simd::Elem`] is the element
//! type it computes in. A value of a `Simd` type is a zero-sized token that can only be created
//! after run-time detection has proved that the CPU has the instructions, so holding one is the
//! proof that calling its methods is sound. An [`Element`] names its token for each tier, so
//! that `dispatch` can instantiate a body for the tier a plan chose: another element type
//! (`f64`) is new implementations of these two traits, not new kernel bodies.
//!
//! The body is instantiated per tier by a thin generic `#[target_feature]` wrapper, into which
//! the body and every method here inline.

use std::fmt;

use crate::Isa;

pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v3;
#[cfg(target_arch = "x86_64")]
pub mod x86_64_v4;

/// A type the kernels compute in, and the token of each tier's instructions for it.
pub trait Element: Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// Zero: padding, and the lanes a masked load leaves out.
    const ZERO: Self;
    /// `value` rounded to this type: an activation's parameter, as PyTorch casts a Python
    /// float to the tensor's type.
    fn from_f64(value: f64) -> Self;
    /// The portable tier (`wide`).
    type Portable: Simd<Elem = Self>;
    /// AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    type X86_64V3: Simd<Elem = Self>;
    /// AVX-512F.
    #[cfg(target_arch = "x86_64")]
    type X86_64V4: Simd<Elem = Self>;
}

impl Element for f32 {
    const ZERO: f32 = 0.0;
    fn from_f64(value: f64) -> f32 {
        value as f32
    }
    type Portable = portable::F32;
    #[cfg(target_arch = "x86_64")]
    type X86_64V3 = x86_64_v3::F32;
    #[cfg(target_arch = "x86_64")]
    type X86_64V4 = x86_64_v4::F32;
}

/// Elements of type `T` in a vector of tier `isa`.
pub(crate) const fn lanes_of<T>(isa: Isa) -> usize {
    isa.vector_bytes() / size_of::<T>()
}

/// A kernel body with its arguments, ready to be instantiated for a tier by [`dispatch`].
pub(crate) trait WithSimd<T: Element> {
    /// Runs the body with `simd`'s instructions. Implementations are `#[inline(always)]`, so
    /// that the whole body compiles inside the tier's `#[target_feature]` wrapper.
    fn with_simd<S: Simd<Elem = T>>(self, simd: S);
}

/// Runs `body` on `isa`, which the caller has checked this CPU supports (a plan does so at
/// creation): the one place where tokens are made and `#[target_feature]` code is entered.
pub(crate) fn dispatch<T: Element, K: WithSimd<T>>(isa: Isa, body: K) {
    match isa {
        Isa::Portable => body.with_simd(T::Portable::detect().expect("always available")),
        #[cfg(target_arch = "x86_64")]
        Isa::X86_64V3 => {
            let simd = T::X86_64V3::detect().expect("plans check AVX2 and FMA at creation");
            // SAFETY: the token proves AVX2 and FMA are present.
            unsafe { run_x86_64_v3(simd, body) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::X86_64V4 => {
            let simd = T::X86_64V4::detect().expect("plans check AVX-512F at creation");
            // SAFETY: the token proves AVX-512F is present.
            unsafe { run_x86_64_v4(simd, body) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::X86_64V3 | Isa::X86_64V4 => {
            unreachable!("x86-64 tiers are refused at plan creation on other targets")
        }
    }
}

/// The AVX2+FMA instantiation of a kernel body (`simd` is an AVX2 token).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_x86_64_v3<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    body.with_simd(simd)
}

/// The AVX-512F instantiation of a kernel body (`simd` is an AVX-512 token).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_x86_64_v4<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    body.with_simd(simd)
}

/// Runs `body` with `simd`'s instructions in a function of its own, never inlined into the
/// caller: for a hot loop that needs every register, where values the caller keeps live across
/// it (constants hoisted out of a loop around it) would otherwise take some (see
/// `kernels/grouped/channels.rs`). The tier is `S`'s, settled when `S` is compiled.
#[inline(always)]
pub(crate) fn outlined<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    #[cfg(target_arch = "x86_64")]
    {
        if const { matches!(S::ISA, Isa::X86_64V3) } {
            // SAFETY: `simd` is an AVX2 token: the CPU has AVX2 and FMA.
            return unsafe { outlined_x86_64_v3(simd, body) };
        }
        if const { matches!(S::ISA, Isa::X86_64V4) } {
            // SAFETY: `simd` is an AVX-512 token: the CPU has AVX-512F.
            return unsafe { outlined_x86_64_v4(simd, body) };
        }
    }
    outlined_portable(simd, body)
}

/// [`outlined`] on the portable tier.
#[inline(never)]
fn outlined_portable<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    body.with_simd(simd)
}

/// [`outlined`] on AVX2+FMA (`simd` is an AVX2 token).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
fn outlined_x86_64_v3<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    body.with_simd(simd)
}

/// [`outlined`] on AVX-512F (`simd` is an AVX-512 token).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx512f")]
fn outlined_x86_64_v4<S: Simd, K: WithSimd<S::Elem>>(simd: S, body: K) {
    body.with_simd(simd)
}

/// A vector of `LANES` elements and the operations kernels need on it.
///
/// The raw-pointer methods are for loops that walk precomputed offsets; where a slice is at
/// hand, the safe slice methods ([`Simd::load_from`], [`Simd::store_into`],
/// [`Simd::load_prefix`], [`Simd::store_prefix`]) check its length instead.
///
/// # Safety
///
/// Implementations may only be constructible where their instructions exist.
pub unsafe trait Simd: Copy + Send + Sync + 'static {
    /// The element type of the vectors.
    type Elem: Element;
    /// Elements in a vector.
    const LANES: usize;
    /// The tier these instructions make up: kernels take their register tiles from it when
    /// they are compiled, so that each tier's code holds only its own tiles.
    const ISA: Isa;
    /// The vector type.
    type Vector: Copy;

    /// The token, if this CPU has the instructions.
    fn detect() -> Option<Self>;

    /// All lanes set to `value`.
    fn splat(self, value: Self::Elem) -> Self::Vector;

    /// `a · b + c`, fused (one rounding) on the x86-64 tiers; on the portable tier, fused only
    /// if the build enables FMA (otherwise a multiply and an add).
    fn mul_add(self, a: Self::Vector, b: Self::Vector, c: Self::Vector) -> Self::Vector;

    /// `a + b`, rounded once.
    fn add(self, a: Self::Vector, b: Self::Vector) -> Self::Vector;

    /// Each lane `v` of `vector` clamped: `u > max ? max : u` where `u = v < min ? min : v`
    /// (`torch.clamp`'s result, `max` everywhere when `min > max`). A NaN lane fails both
    /// comparisons and stays NaN.
    fn clamp(self, vector: Self::Vector, min: Self::Vector, max: Self::Vector) -> Self::Vector;

    /// Each lane `v` of `vector` as leaky ReLU leaves it: `v > 0 ? v : v · slope` (a NaN
    /// lane stays NaN).
    fn leaky(self, vector: Self::Vector, slope: Self::Vector) -> Self::Vector;

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
    unsafe fn load(self, source: *const Self::Elem) -> Self::Vector;

    /// Stores `LANES` values at `target`, which need not be aligned.
    ///
    /// # Safety
    ///
    /// `target..target + LANES` must be writable.
    unsafe fn store(self, target: *mut Self::Elem, vector: Self::Vector);

    /// Stores lanes `first..end` of `vector` at `base + first .. base + end`, touching no
    /// other address (`base` itself may lie outside the allocation; it is never dereferenced).
    ///
    /// # Safety
    ///
    /// `first <= end <= LANES`, and `base + first .. base + end` must be writable.
    unsafe fn store_lanes(
        self,
        base: *mut Self::Elem,
        vector: Self::Vector,
        first: usize,
        end: usize,
    );

    /// Loads lane `l` from `base + l` for every bit `l` set in `mask`, the others zero,
    /// reading no other address: the lanes need not be consecutive (a vector of positions
    /// that spans the end of a row and the start of the next).
    ///
    /// # Safety
    ///
    /// `mask < 2^LANES`, and `base + l` must be readable for every bit `l` set in it.
    unsafe fn load_masked(self, base: *const Self::Elem, mask: u32) -> Self::Vector;

    /// Transposes a `LANES × LANES` block: the `LANES` values at `source + r·source_stride`
    /// (row `r`) become lane `r` of the `LANES` values at `target + c·target_stride`, for
    /// every column `c`.
    ///
    /// # Safety
    ///
    /// Each of the `LANES` source rows must be readable and each target row writable, and the
    /// two blocks must not overlap.
    unsafe fn transpose_square(
        self,
        source: *const Self::Elem,
        source_stride: usize,
        target: *mut Self::Elem,
        target_stride: usize,
    );

    /// The even and the odd lanes of the `2·LANES` values `low` then `high`:
    /// `([low₀, low₂, …, high₀, high₂, …], [low₁, low₃, …, high₁, high₃, …])`.
    fn deinterleave(self, low: Self::Vector, high: Self::Vector) -> (Self::Vector, Self::Vector);

    /// The last lane of `before`, then the first `LANES − 1` lanes of `vector`: of the
    /// `2·LANES` values `before` then `vector`, the `LANES` that end one lane before the end
    /// (a row's inputs one column to the left, the column entering from `before`).
    fn shift_in(self, before: Self::Vector, vector: Self::Vector) -> Self::Vector;

    /// Loads the first `count` lanes from `source`, the others zero; reads nothing past
    /// `source + count`.
    ///
    /// # Safety
    ///
    /// `count <= LANES`, and `source..source + count` must be readable.
    #[inline(always)]
    unsafe fn load_first(self, source: *const Self::Elem, count: usize) -> Self::Vector {
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
    unsafe fn store_first(self, target: *mut Self::Elem, vector: Self::Vector, count: usize) {
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
    unsafe fn load_lanes(self, base: *const Self::Elem, first: usize, end: usize) -> Self::Vector {
        // SAFETY: the set lanes are `first..end`, readable (the caller's promise).
        unsafe { self.load_masked(base, lanes_between(first, end)) }
    }

    /// The even and the odd elements of the `2·LANES` from `low`, each vector through its mask
    /// if `MASKED` (lanes outside it zero), whole if not: the inputs of a stride-2 tap and of
    /// the tap after it.
    ///
    /// # Safety
    ///
    /// With `MASKED`, `low + lane` must be readable for every lane set in the first mask and
    /// `low + LANES + lane` for every lane set in the second; without, all `2·LANES` elements
    /// from `low`.
    #[inline(always)]
    unsafe fn load_deinterleaved<const MASKED: bool>(
        self,
        low: *const Self::Elem,
        [low_mask, high_mask]: [u32; 2],
    ) -> (Self::Vector, Self::Vector) {
        let high = low.wrapping_add(Self::LANES);
        // SAFETY: forwarded from the caller.
        unsafe {
            if MASKED {
                self.deinterleave(
                    self.load_masked(low, low_mask),
                    self.load_masked(high, high_mask),
                )
            } else {
                self.deinterleave(self.load(low), self.load(high))
            }
        }
    }

    /// The first `LANES` elements of `source`.
    ///
    /// # Panics
    ///
    /// If `source` holds fewer.
    #[inline(always)]
    fn load_from(self, source: &[Self::Elem]) -> Self::Vector {
        let source = &source[..Self::LANES];
        // SAFETY: `source` holds exactly LANES elements.
        unsafe { self.load(source.as_ptr()) }
    }

    /// Stores `vector` as the first `LANES` elements of `target`.
    ///
    /// # Panics
    ///
    /// If `target` holds fewer.
    #[inline(always)]
    fn store_into(self, target: &mut [Self::Elem], vector: Self::Vector) {
        let target = &mut target[..Self::LANES];
        // SAFETY: `target` holds exactly LANES elements.
        unsafe { self.store(target.as_mut_ptr(), vector) }
    }

    /// All of `source` (at most `LANES` elements) in the first lanes, the others zero.
    ///
    /// # Panics
    ///
    /// If `source` holds more than `LANES`.
    #[inline(always)]
    fn load_prefix(self, source: &[Self::Elem]) -> Self::Vector {
        assert!(source.len() <= Self::LANES);
        // SAFETY: lanes `0..len` read `source`, no more.
        unsafe { self.load_first(source.as_ptr(), source.len()) }
    }

    /// The first `target.len()` lanes of `vector` (at most `LANES`) into `target`, a whole
    /// store when it holds `LANES`.
    ///
    /// # Panics
    ///
    /// If `target` holds more than `LANES`.
    #[inline(always)]
    fn store_prefix(self, target: &mut [Self::Elem], vector: Self::Vector) {
        assert!(target.len() <= Self::LANES);
        // SAFETY: lanes `0..len` write `target`, no more.
        unsafe { self.store_first(target.as_mut_ptr(), vector, target.len()) }
    }
}

/// The mask of lanes `first..end`, as [`Simd::load_masked`] takes it (`first <= end <= 32`).
#[inline(always)]
pub(crate) fn lanes_between(first: usize, end: usize) -> u32 {
    debug_assert!(first <= end && end <= 32);
    (((1u64 << end) - 1) & !((1u64 << first) - 1)) as u32
}

/// Asks the CPU to bring every cache line of `elements` into L1 ahead of its loads (a hint:
/// nothing on targets without one). The hardware prefetchers stop at every 4 KiB page, so
/// a kernel that jumps from plane to plane (or walks a plane in strides) meets each plane
/// with demand misses unless it asks.
#[inline(always)]
pub(crate) fn prefetch<T>(elements: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        const LINE: usize = 64;
        let (start, bytes) = (elements.as_ptr().cast::<i8>(), size_of_val(elements));
        // The lines from the one holding the first byte to the one holding the last.
        let misalignment = start as usize % LINE;
        let line_start = start.wrapping_sub(misalignment);
        for line in 0..(misalignment + bytes).div_ceil(LINE) {
            // SAFETY: SSE, which every x86-64 CPU has; a prefetch neither faults nor changes
            // what any load sees, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(line_start.wrapping_add(line * LINE)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = elements;
}

/// Elements of the largest vector of any tier and element type (16 `f32`).
pub(crate) const MAX_LANES: usize = 16;

/// [`Simd::load_masked`] through a zeroed buffer on the stack, for tiers without masked
/// loads.
///
/// # Safety
///
/// As [`Simd::load_masked`].
#[inline(always)]
pub(crate) unsafe fn load_masked_by_copying<S: Simd>(
    simd: S,
    base: *const S::Elem,
    mask: u32,
) -> S::Vector {
    let mut lanes = [<S::Elem as Element>::ZERO; MAX_LANES];
    debug_assert!(S::LANES <= lanes.len() && u64::from(mask) < 1u64 << S::LANES);
    for (lane, slot) in lanes.iter_mut().enumerate().take(S::LANES) {
        if mask & (1 << lane) != 0 {
            // SAFETY: the caller guarantees `base + lane` is readable for every set bit.
            *slot = unsafe { base.wrapping_add(lane).read_unaligned() };
        }
    }
    simd.load_from(&lanes)
}

/// [`Simd::transpose_square`] one element at a time, for tiers without shuffles.
///
/// # Safety
///
/// As [`Simd::transpose_square`].
#[inline(always)]
pub(crate) unsafe fn transpose_one_by_one<T: Copy>(
    lanes: usize,
    source: *const T,
    source_stride: usize,
    target: *mut T,
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
    base: *mut S::Elem,
    vector: S::Vector,
    first: usize,
    end: usize,
) {
    let mut lanes = [<S::Elem as Element>::ZERO; MAX_LANES];
    debug_assert!(S::LANES <= lanes.len() && first <= end && end <= S::LANES);
    simd.store_into(&mut lanes, vector);
    for (lane, &value) in lanes.iter().enumerate().take(end).skip(first) {
        // SAFETY: the caller guarantees `base + first .. base + end` is writable.
        unsafe { base.wrapping_add(lane).write_unaligned(value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tier's transpose and deinterleave against the plain definition.
    fn check<S: Simd<Elem = f32>>(simd: S) {
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
        // The slice methods: whole vectors, and prefixes that touch nothing past their slice.
        let mut whole = vec![-1.0f32; lanes + 1];
        simd.store_into(&mut whole, simd.load_from(&values[1..]));
        assert_eq!(&whole[..lanes], &values[1..=lanes]);
        assert_eq!(whole[lanes], -1.0);
        let mut prefix = vec![-1.0f32; lanes];
        simd.store_prefix(&mut prefix[..2], simd.load_prefix(&values[5..8]));
        assert_eq!(&prefix[..3], &[5.0, 6.0, -1.0]);
        let mut loaded = vec![-1.0f32; lanes];
        simd.store_into(&mut loaded, simd.load_prefix(&values[5..8]));
        assert_eq!(&loaded[..3], &[5.0, 6.0, 7.0]);
        assert!(loaded[3..].iter().all(|&v| v == 0.0));

        // A deinterleaved pair, whole and through masks (lane 0 of the low vector and the
        // last lane of the high one left out).
        let low_mask = lanes_between(1, lanes);
        let high_mask = lanes_between(0, lanes - 1);
        // SAFETY: `values` holds 2·LANES floats from its start.
        let ((even, odd), (masked_even, masked_odd)) = unsafe {
            (
                simd.load_deinterleaved::<false>(values.as_ptr(), [0, 0]),
                simd.load_deinterleaved::<true>(values.as_ptr(), [low_mask, high_mask]),
            )
        };
        let lanes_of = |vector| {
            let mut out = vec![0.0f32; lanes];
            simd.store_into(&mut out, vector);
            out
        };
        let (even, odd) = (lanes_of(even), lanes_of(odd));
        let (masked_even, masked_odd) = (lanes_of(masked_even), lanes_of(masked_odd));
        for k in 0..lanes {
            assert_eq!(even[k], (2 * k) as f32);
            assert_eq!(odd[k], (2 * k + 1) as f32);
            let masked_out = |index: usize| index == 0 || index == 2 * lanes - 1;
            let expect = |index: usize| if masked_out(index) { 0.0 } else { index as f32 };
            assert_eq!(masked_even[k], expect(2 * k), "even lane {k} under masks");
            assert_eq!(masked_odd[k], expect(2 * k + 1), "odd lane {k} under masks");
        }
    }

    /// Every tier's activation arithmetic against the reference's `activate`, to the bit
    /// (the sign of a zero included), on the values where implementations part: NaN, signed
    /// zeros, infinities, the bounds themselves, and bounds in the wrong order.
    fn check_activations<S: Simd<Elem = f32>>(simd: S) {
        use gconv_reference::activate;
        use gconv_shape::Activation;

        let special = [
            f32::NAN,
            -f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            6.0,
            -1.0,
            1.0,
            7.5,
            -3.25,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::MAX,
            0.5,
            -6.0,
        ];
        let same = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits();
        for chunk in special
            .chunks(S::LANES)
            .chain([&special[special.len() - 3..]])
        {
            let mut values = vec![0.25f32; S::LANES];
            values[..chunk.len()].copy_from_slice(chunk);
            let vector = simd.load_from(&values);
            let bounds = [
                (0.0, 6.0),
                (-1.0, 1.0),
                (2.0, 1.0),
                (f64::NEG_INFINITY, 0.0),
            ];
            for (min, max) in bounds {
                let mut out = vec![0.0f32; S::LANES];
                let clamped = simd.clamp(vector, simd.splat(min as f32), simd.splat(max as f32));
                simd.store_into(&mut out, clamped);
                for (&value, &got) in values.iter().zip(&out) {
                    let wanted = activate(Activation::Clamp { min, max }, value);
                    assert!(same(got, wanted), "clamp({value}, {min}, {max}) = {got}");
                }
            }
            for slope in [0.01, -2.0, 0.0, 1.0] {
                let mut out = vec![0.0f32; S::LANES];
                simd.store_into(&mut out, simd.leaky(vector, simd.splat(slope as f32)));
                for (&value, &got) in values.iter().zip(&out) {
                    let wanted = activate(Activation::LeakyRelu { slope }, value);
                    assert!(same(got, wanted), "leaky({value}, {slope}) = {got}");
                }
            }
            let mut out = vec![0.0f32; S::LANES];
            simd.store_into(&mut out, simd.add(vector, simd.splat(1.5)));
            for (&value, &got) in values.iter().zip(&out) {
                assert!(same(got, value + 1.5), "{value} + 1.5 = {got}");
            }
        }
    }

    /// `store_lanes` for every run of lanes, empty and whole included, from a base before
    /// the buffer: each stores exactly its lanes, each to its own place (the AVX2 tier builds
    /// a run from pieces of 4, 2 and 1 lanes, so every length and start takes its own path).
    fn check_store_lanes<S: Simd<Elem = f32>>(simd: S) {
        let lanes = S::LANES;
        let values: Vec<f32> = (0..lanes).map(|lane| 10.0 + lane as f32).collect();
        for first in 0..=lanes {
            for end in first..=lanes {
                let mut stored = vec![-1.0f32; lanes + 2];
                // SAFETY: lanes `first..end` land on `stored[first + 1..end + 1]`, inside it.
                unsafe {
                    simd.store_lanes(
                        stored.as_mut_ptr().wrapping_add(1),
                        simd.load(values.as_ptr()),
                        first,
                        end,
                    )
                };
                for (index, &value) in stored.iter().enumerate() {
                    let lane = index.wrapping_sub(1);
                    let expected = if (first..end).contains(&lane) {
                        values[lane]
                    } else {
                        -1.0
                    };
                    assert_eq!(
                        value, expected,
                        "element {index} after lanes {first}..{end}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_tier_this_cpu_has_shuffles_and_stores_as_defined() {
        check(portable::F32);
        check_store_lanes(portable::F32);
        check_activations(portable::F32);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = x86_64_v3::F32::detect() {
                check(simd);
                check_store_lanes(simd);
                check_activations(simd);
            }
            if let Some(simd) = x86_64_v4::F32::detect() {
                check(simd);
                check_store_lanes(simd);
                check_activations(simd);
            }
        }
    }
}
