//! What happens to a finished sum on its way to the output, and the one path every store of
//! an output takes.
//!
//! Every kernel computes an output element as one chain of fused multiply-adds that starts
//! from its channel's bias. What is applied to the finished chain before it is stored is an
//! [`Epilogue`]: nothing ([`Identity`]), or post-operations ([`Fused`]: the residual add
//! and the activation), never an edit of the kernels. Kernels never store an output
//! themselves: they hand each finished vector to a [`Sink`] (their piece of the output, with
//! the matching piece of the residual when the run has one), which applies the epilogue and
//! stores it. Plans run their kernels with [`Identity`] and apply their post-operations to
//! each finished piece ([`PostPass`]).

use std::fmt;

use gconv_shape::Activation;

use crate::Isa;
use crate::simd::{Element, MAX_LANES, Simd, WithSimd, dispatch};

/// What is applied to each finished sum before it is stored, lane by lane.
pub(crate) trait Epilogue<T: Element>: Copy + fmt::Debug + Send + Sync + 'static {
    /// Whether [`Epilogue::apply`] returns the sum unchanged (and no residual is read): then
    /// a [`Sink`] stores straight from where the sums lie (a transposed square directly into
    /// the output).
    const IS_IDENTITY: bool = false;

    /// The value stored for `sum`, `residual` holding the residual's elements at the same
    /// positions when the run has a residual (a tensor of the output's shape). A pure
    /// function of the two: a kernel may store a position twice (overlapping last squares),
    /// the same value both times.
    fn apply<S: Simd<Elem = T>>(
        self,
        simd: S,
        sum: S::Vector,
        residual: Option<S::Vector>,
    ) -> S::Vector;
}

/// Nothing after the chain: the output is bias plus the taps' products.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Identity;

impl<T: Element> Epilogue<T> for Identity {
    const IS_IDENTITY: bool = true;

    #[inline(always)]
    fn apply<S: Simd<Elem = T>>(
        self,
        _simd: S,
        sum: S::Vector,
        _residual: Option<S::Vector>,
    ) -> S::Vector {
        sum
    }
}

/// A plan's post-operations: the residual added when the run has one, then the activation,
/// as `leaky(clamp(sum + residual, min, max), slope)`, which every activation is one case
/// of (ReLU: `min = 0`; no clamp: `±inf`; no leak: `slope = 1`, exact).
///
/// Plans apply it with [`PostPass`], to each piece of the output right after the task that
/// wrote it, rather than as the kernels' own epilogue: see [`PostPass`] for why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fused<T> {
    min: T,
    max: T,
    slope: T,
}

impl<T: Element> Fused<T> {
    /// `activation` (validated: no NaN parameter) after the residual, its parameters rounded
    /// to `T`.
    pub(crate) fn new(activation: Activation) -> Fused<T> {
        let (min, max, slope) = match activation {
            Activation::Identity => (f64::NEG_INFINITY, f64::INFINITY, 1.0),
            Activation::Relu => (0.0, f64::INFINITY, 1.0),
            Activation::Relu6 => (0.0, 6.0, 1.0),
            Activation::Clamp { min, max } => (min, max, 1.0),
            Activation::LeakyRelu { slope } => (f64::NEG_INFINITY, f64::INFINITY, slope),
        };
        Fused {
            min: T::from_f64(min),
            max: T::from_f64(max),
            slope: T::from_f64(slope),
        }
    }
}

impl<T: Element> Epilogue<T> for Fused<T> {
    #[inline(always)]
    fn apply<S: Simd<Elem = T>>(
        self,
        simd: S,
        sum: S::Vector,
        residual: Option<S::Vector>,
    ) -> S::Vector {
        let total = match residual {
            Some(residual) => simd.add(sum, residual),
            None => sum,
        };
        let clamped = simd.clamp(total, simd.splat(self.min), simd.splat(self.max));
        simd.leaky(clamped, simd.splat(self.slope))
    }
}

/// A plan's post-operations ([`Fused`]) applied in place to a piece of the output that a
/// task has just finished, while it is still in the core's cache, before the task's thread
/// takes the next piece: one more pass over data in L1 or L2, never over the whole tensor.
///
/// Why not in the kernels' stores, as an [`Epilogue`] type: every kernel is compiled once
/// per epilogue type, so a second type doubled the kernels' build, and in the stores the
/// same operations made the compiler split and spill the compute-bound channel-vector tiles
/// (the measurements are in `TUNING.md`, "Post-operations"). The kernels' sink still takes
/// any epilogue (the tests run every kernel with one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PostPass<T> {
    /// The tier the plan runs on (checked at its creation).
    pub isa: Isa,
    pub epilogue: Fused<T>,
}

impl<T: Element> PostPass<T> {
    /// `values[i] = epilogue(values[i], residual[i])` for every element.
    pub(crate) fn apply(&self, values: &mut [T], residual: Option<&[T]>) {
        let sink = Sink::new(values, residual, self.epilogue);
        dispatch(self.isa, InPlace { sink });
    }
}

/// Every element of a sink's piece, read and stored again through its epilogue.
struct InPlace<'a, T, E> {
    sink: Sink<'a, T, E>,
}

impl<T: Element, E: Epilogue<T>> WithSimd<T> for InPlace<'_, T, E> {
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let mut sink = self.sink;
        let len = sink.len();
        let mut at = 0;
        while at + S::LANES <= len {
            let sum = simd.load_from(&sink.output[at..]);
            sink.store(simd, at, sum);
            at += S::LANES;
        }
        let sum = simd.load_prefix(&sink.output[at..]);
        sink.store_prefix(simd, at, sum, len - at);
    }
}

/// A store of `count` elements from `at` outside a piece of `len`: a kernel's defect.
#[cold]
#[inline(never)]
fn outside(at: usize, count: usize, len: usize) -> ! {
    panic!("a store of {count} elements from {at} passes the end of its piece of {len}")
}

/// A kernel's piece of the output, with the same piece of the residual when the epilogue
/// has one: every store of an output goes through here, and the epilogue with it.
///
/// Offsets are within the piece. Every method checks that what it writes lies inside it.
pub(crate) struct Sink<'a, T, E> {
    output: &'a mut [T],
    residual: Option<&'a [T]>,
    epilogue: E,
}

impl<'a, T: Element, E: Epilogue<T>> Sink<'a, T, E> {
    /// The piece `output`, and `residual`, the residual's elements at the same positions
    /// (given exactly when the run has a residual).
    pub fn new(output: &'a mut [T], residual: Option<&'a [T]>, epilogue: E) -> Sink<'a, T, E> {
        if let Some(residual) = residual {
            assert_eq!(
                residual.len(),
                output.len(),
                "a residual piece of another size"
            );
        }
        Sink {
            output,
            residual,
            epilogue,
        }
    }

    /// Elements in the piece.
    pub fn len(&self) -> usize {
        self.output.len()
    }

    /// The same piece, borrowed again: to hand to a function while keeping this one.
    #[inline(always)]
    pub fn reborrow(&mut self) -> Sink<'_, T, E> {
        Sink {
            output: &mut *self.output,
            residual: self.residual,
            epilogue: self.epilogue,
        }
    }

    /// Stores `sum`, through the epilogue, as the `LANES` elements from `at`.
    #[inline(always)]
    pub fn store<S: Simd<Elem = T>>(&mut self, simd: S, at: usize, sum: S::Vector) {
        self.check(at, S::LANES);
        let value = self.finish(simd, sum, at, 0, S::LANES);
        // SAFETY: `at .. at + LANES` lies inside the piece (checked).
        unsafe { simd.store(self.output.as_mut_ptr().add(at), value) }
    }

    /// Stores the first `count` lanes of `sum` (at most `LANES`), through the epilogue, as
    /// the elements `at .. at + count`.
    #[inline(always)]
    pub fn store_prefix<S: Simd<Elem = T>>(
        &mut self,
        simd: S,
        at: usize,
        sum: S::Vector,
        count: usize,
    ) {
        self.check(at, count.min(S::LANES + 1));
        let value = self.finish(simd, sum, at, 0, count);
        // SAFETY: `count <= LANES` and `at .. at + count` lies inside the piece (checked: a
        // count past LANES fails as LANES + 1 elements would).
        unsafe { simd.store_first(self.output.as_mut_ptr().add(at), value, count) }
    }

    /// [`Sink::store_prefix`] without its check, for a kernel that has checked the region it
    /// stores in once ([`Sink::check_region`]) rather than at every store.
    ///
    /// # Safety
    ///
    /// `count <= LANES`, and `at .. at + count` must lie inside the piece.
    #[inline(always)]
    pub unsafe fn store_prefix_unchecked<S: Simd<Elem = T>>(
        &mut self,
        simd: S,
        at: usize,
        sum: S::Vector,
        count: usize,
    ) {
        debug_assert!(count <= S::LANES && at + count <= self.output.len());
        let value = self.finish(simd, sum, at, 0, count);
        // SAFETY: the caller's promise.
        unsafe { simd.store_first(self.output.as_mut_ptr().add(at), value, count) }
    }

    /// Panics unless `rows` rows of `width` elements, `pitch` apart from `at`, lie inside the
    /// piece.
    pub fn check_region(&self, at: usize, pitch: usize, rows: usize, width: usize) {
        if rows > 0 {
            let last = (rows - 1)
                .checked_mul(pitch)
                .and_then(|offset| offset.checked_add(at));
            self.check(last.unwrap_or(usize::MAX), width);
        }
    }

    /// Stores lanes `first..end` of `sum`, through the epilogue, as the elements from `at`
    /// (lane `first` at `at`).
    #[inline(always)]
    pub fn store_lanes<S: Simd<Elem = T>>(
        &mut self,
        simd: S,
        at: usize,
        sum: S::Vector,
        first: usize,
        end: usize,
    ) {
        assert!(first <= end && end <= S::LANES);
        self.check(at, end - first);
        let value = self.finish(simd, sum, at, first, end);
        let base = self
            .output
            .as_mut_ptr()
            .wrapping_add(at)
            .wrapping_sub(first);
        // SAFETY: lanes `first..end` land on `at .. at + end − first`, inside the piece
        // (checked).
        unsafe { simd.store_lanes(base, value, first, end) }
    }

    /// Panics unless the `count` elements from `at` lie inside the piece: one branch, the
    /// message out of line (stores are in the kernels' inner loops, and their size decides
    /// whether a band's vectors are unrolled).
    #[inline(always)]
    fn check(&self, at: usize, count: usize) {
        let len = self.output.len();
        if at > len || count > len - at {
            outside(at, count, len);
        }
    }

    /// Stores the first `count` lanes (at most `LANES`) of each of `sums`, through the
    /// epilogue, sum `r` as the elements from `at + r·pitch`: a block of output rows, its
    /// bounds checked once for all of them.
    #[inline(always)]
    pub fn store_rows<S: Simd<Elem = T>, const R: usize>(
        &mut self,
        simd: S,
        at: usize,
        pitch: usize,
        sums: &[S::Vector; R],
        count: usize,
    ) {
        assert!(count <= S::LANES && R > 0);
        // The last row's vector is the furthest store.
        let last = (R - 1)
            .checked_mul(pitch)
            .and_then(|offset| offset.checked_add(at));
        self.check(last.unwrap_or(usize::MAX), count);
        let first = self.output.as_mut_ptr().wrapping_add(at);
        for (r, &sum) in sums.iter().enumerate() {
            let value = self.finish(simd, sum, at + r * pitch, 0, count);
            // SAFETY: lanes `0..count` of row `r` land on `at + r·pitch ..`, inside the piece
            // (asserted for the last row, the others lie before it).
            unsafe { simd.store_first(first.wrapping_add(r * pitch), value, count) };
        }
    }

    /// Stores `values` (the piece's length), through the epilogue: a block of output computed
    /// elsewhere (in scratch) reaching its place.
    #[inline(always)]
    pub fn store_all<S: Simd<Elem = T>>(&mut self, simd: S, values: &[T]) {
        assert_eq!(values.len(), self.output.len());
        if E::IS_IDENTITY {
            self.output.copy_from_slice(values);
            return;
        }
        let mut chunks = values.chunks_exact(S::LANES);
        let mut at = 0;
        for chunk in &mut chunks {
            self.store(simd, at, simd.load_from(chunk));
            at += S::LANES;
        }
        let rest = chunks.remainder();
        self.store_prefix(simd, at, simd.load_prefix(rest), rest.len());
    }

    /// Stores a block of `[position][channel]` sums, `LANES` channels by `positions` (at most
    /// `LANES`) from `source` (rows `LANES` apart), through the epilogue, as `LANES` runs of
    /// `positions` elements: channel `c`'s from `at + c·pitch`.
    #[inline(always)]
    pub fn store_transposed<S: Simd<Elem = T>>(
        &mut self,
        simd: S,
        source: &[T],
        positions: usize,
        at: usize,
        pitch: usize,
    ) {
        let lanes = S::LANES;
        assert!(positions <= lanes && source.len() >= positions * lanes);
        if E::IS_IDENTITY && positions == lanes {
            let last = at + (lanes - 1) * pitch + lanes;
            assert!(last <= self.output.len());
            // SAFETY: `source` holds LANES rows of LANES elements; target row `c` is
            // `output[at + c·pitch..][..LANES]`, inside the piece (asserted for the last).
            unsafe {
                simd.transpose_square(
                    source.as_ptr(),
                    lanes,
                    self.output[at..].as_mut_ptr(),
                    pitch,
                )
            };
            return;
        }
        let mut square = [T::ZERO; MAX_LANES * MAX_LANES];
        let mut transposed = [T::ZERO; MAX_LANES * MAX_LANES];
        let rows = source[..positions * lanes].chunks_exact(lanes);
        for (row, values) in square.chunks_exact_mut(lanes).zip(rows) {
            simd.store_into(row, simd.load_from(values));
        }
        // SAFETY: both squares hold LANES rows of LANES elements (LANES <= MAX_LANES).
        unsafe { simd.transpose_square(square.as_ptr(), lanes, transposed.as_mut_ptr(), lanes) };
        for (channel, sums) in transposed.chunks_exact(lanes).take(lanes).enumerate() {
            self.store_prefix(simd, at + channel * pitch, simd.load_from(sums), positions);
        }
    }

    /// `sum` through the epilogue, for the lanes `first..end` that go to `at..`.
    #[inline(always)]
    fn finish<S: Simd<Elem = T>>(
        &self,
        simd: S,
        sum: S::Vector,
        at: usize,
        first: usize,
        end: usize,
    ) -> S::Vector {
        if E::IS_IDENTITY {
            return sum;
        }
        let residual = self.residual.map(|residual| {
            let residual = &residual[at..at + (end - first)];
            // SAFETY: lanes `first..end` read `residual`, a slice of `end − first`.
            unsafe { simd.load_lanes(residual.as_ptr().wrapping_sub(first), first, end) }
        });
        self.epilogue.apply(simd, sum, residual)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! An epilogue for tests of the seam.

    use super::*;

    /// The plans' epilogue with a residual and a leaky ReLU of slope ½:
    /// `leaky(sum + residual)`. It depends on where each output lies (through the residual)
    /// and is not idempotent, so a store at the wrong place, a missed or a doubled
    /// application changes the result, which [`expected`] computes exactly from the plain
    /// output.
    pub(crate) fn residual_leaky() -> Fused<f32> {
        Fused::new(LEAKY)
    }

    const LEAKY: Activation = Activation::LeakyRelu { slope: 0.5 };

    /// What [`residual_leaky`] makes of `plain` (the output without it) and `residual`.
    pub(crate) fn expected(plain: &[f32], residual: &[f32]) -> Vec<f32> {
        plain
            .iter()
            .zip(residual)
            .map(|(&sum, &residual)| gconv_reference::activate(LEAKY, sum + residual))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{expected, residual_leaky};
    use super::*;
    use crate::simd::portable;

    impl<T: Element, E: Epilogue<T>> Sink<'_, T, E> {
        /// What the piece holds.
        pub(crate) fn values(&self) -> &[T] {
            self.output
        }
    }

    /// Every store of a sink applies the epilogue once, to the lanes it stores, with the
    /// residual of the same positions; nothing else of the piece is touched.
    #[test]
    fn every_store_applies_the_epilogue_to_its_own_lanes() {
        let simd = portable::F32;
        let lanes = 8;
        let sums: Vec<f32> = (0..4 * lanes).map(|v| v as f32 * 0.5 - 3.0).collect();
        let residual: Vec<f32> = (0..4 * lanes).map(|v| (v % 7) as f32 - 2.0).collect();
        let expected = expected(&sums, &residual);
        let mut output = vec![f32::NAN; 4 * lanes];
        let mut sink = Sink::new(&mut output, Some(&residual), residual_leaky());
        sink.store(simd, 0, simd.load_from(&sums));
        sink.store_prefix(simd, lanes, simd.load_from(&sums[lanes..]), 3);
        // Lanes 2..5 of a vector whose lane 0 would be element 2·LANES − 2.
        let vector = simd.load_from(&sums[2 * lanes - 2..]);
        sink.store_lanes(simd, 2 * lanes, vector, 2, 5);
        let values = sink.values().to_vec();
        for (index, (&value, &wanted)) in values.iter().zip(&expected).enumerate() {
            let stored = index < lanes + 3 || (2 * lanes..2 * lanes + 3).contains(&index);
            if stored {
                assert_eq!(value, wanted, "element {index}");
            } else {
                assert!(value.is_nan(), "element {index} touched");
            }
        }
        let mut copied = vec![f32::NAN; 4 * lanes];
        Sink::new(&mut copied, Some(&residual), residual_leaky()).store_all(simd, &sums[..]);
        assert_eq!(copied, expected);
    }

    /// A transposed block stores each channel's positions, through the epilogue, whole
    /// squares and partial ones alike.
    #[test]
    fn transposed_blocks_land_channel_by_channel() {
        let simd = portable::F32;
        let lanes = 8;
        let pitch = 11;
        for positions in [lanes, 3] {
            // block[p][c] = 100·c + p.
            let block: Vec<f32> = (0..lanes * lanes)
                .map(|i| (100 * (i % lanes) + i / lanes) as f32)
                .collect();
            let len = (lanes - 1) * pitch + lanes + 2;
            let residual: Vec<f32> = (0..len).map(|v| v as f32).collect();
            for with_epilogue in [false, true] {
                let mut output = vec![f32::NAN; len];
                if with_epilogue {
                    Sink::new(&mut output, Some(&residual), residual_leaky())
                        .store_transposed(simd, &block, positions, 2, pitch);
                } else {
                    Sink::new(&mut output, None, Identity)
                        .store_transposed(simd, &block, positions, 2, pitch);
                }
                for channel in 0..lanes {
                    for position in 0..lanes {
                        let at = 2 + channel * pitch + position;
                        let sum = (100 * channel + position) as f32;
                        let wanted = if with_epilogue {
                            expected(&[sum], &[residual[at]])[0]
                        } else {
                            sum
                        };
                        if position < positions {
                            assert_eq!(
                                output[at], wanted,
                                "channel {channel}, position {position}"
                            );
                        } else {
                            assert!(
                                output[at].is_nan(),
                                "channel {channel}, position {position}"
                            );
                        }
                    }
                }
            }
        }
    }
}
