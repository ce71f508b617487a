//! How far an `f32` convolution may be from the reference.
//!
//! An implementation that sums the `K = C_in/g · kH · kW` products of an output element in
//! `f32`, in any order, with or without fused multiply-adds, is within
//! `γ_K · Σ|x·w|` of the exact sum, where `γ_K = K·u / (1 − K·u)` and `u = 2⁻²⁴` is the unit
//! roundoff (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). The reference
//! rounds its `f64` sum once, adding at most `u·|y|`. The bound used here is
//! `(K + 2) · ε · (Σ|x·w| + |b|)` with `ε = 2u`: twice the worst case, so a correct
//! implementation never fails it, while a wrong tap or a missed channel, which changes the sum
//! by a whole product, still does for all but vanishing products.
//!
//! When every input, weight and bias is an integer and every partial sum stays below `2²⁴`,
//! every `f32` operation is exact and the bound is zero: the outputs must be equal.

use gconv_shape::Geometry;

/// The per-element bound on `|actual − expected|`, as a multiple of that element's magnitude
/// `Σ|x·w| + |b|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Multiplies the magnitude of each output element.
    pub relative: f32,
    /// Added to every bound, to absorb underflow to subnormals.
    pub absolute: f32,
}

impl Tolerance {
    /// No difference allowed (besides `+0` against `−0`).
    pub const EXACT: Tolerance = Tolerance {
        relative: 0.0,
        absolute: 0.0,
    };

    /// The bound for an `f32` summation of `reduction_len` products plus a bias.
    pub fn for_reduction(reduction_len: usize) -> Tolerance {
        Tolerance {
            relative: (reduction_len as f32 + 2.0) * f32::EPSILON,
            absolute: f32::MIN_POSITIVE,
        }
    }

    /// [`Tolerance::for_reduction`] of the geometry's `K = C_in/g · kH · kW`.
    pub fn for_geometry(geometry: &Geometry) -> Tolerance {
        Self::for_reduction(geometry.reduction_len())
    }

    /// The allowed difference for an element of magnitude `Σ|x·w| + |b|`.
    pub fn bound(&self, magnitude: f32) -> f32 {
        self.relative * magnitude + self.absolute
    }
}

/// Whether every `f32` operation of a convolution on these data is exact: all values are
/// integers, and the largest possible partial sum `Σ|x·w| + |b|` is below `2²⁴`.
pub fn is_exact_in_f32(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> bool {
    integer_sum_bound(geometry, input, weight, bias).is_some_and(|worst| worst < EXACT_LIMIT)
}

/// Integers of `f32` are exact below this magnitude, and so is every sum of them that stays
/// below it.
pub(crate) const EXACT_LIMIT: f64 = (1u32 << 24) as f64;

/// The largest magnitude a partial sum `Σ|x·w| + |b|` of a convolution on these data can
/// reach, when every value is a finite integer; `None` otherwise.
pub(crate) fn integer_sum_bound(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Option<f64> {
    let all = || input.iter().chain(weight).chain(bias.into_iter().flatten());
    if !all_integers(all()) {
        return None;
    }
    let bias_max = bias.map_or(0.0, max_abs);
    Some(geometry.reduction_len() as f64 * max_abs(input) * max_abs(weight) + bias_max)
}

/// Whether every value is a finite integer.
pub(crate) fn all_integers<'a>(mut values: impl Iterator<Item = &'a f32>) -> bool {
    values.all(|value| value.is_finite() && value.fract() == 0.0)
}

/// The largest magnitude among `values` (0 for none).
pub(crate) fn max_abs(values: &[f32]) -> f64 {
    values.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::Conv2dParams;

    #[test]
    fn the_bound_grows_with_the_reduction_length() {
        let short = Tolerance::for_reduction(9);
        let long = Tolerance::for_reduction(9 * 512);
        assert!(long.bound(1.0) > 100.0 * short.bound(1.0));
        assert_eq!(Tolerance::EXACT.bound(1e30), 0.0);
    }

    #[test]
    fn small_integers_are_exact_and_fractions_are_not() {
        let geometry = Conv2dParams::new(1, 1, 3)
            .bias(false)
            .geometry([1, 1, 3, 3])
            .unwrap();
        assert!(is_exact_in_f32(&geometry, &[3.0; 9], &[-4.0; 9], None));
        assert!(!is_exact_in_f32(&geometry, &[0.5; 9], &[1.0; 9], None));
        assert!(!is_exact_in_f32(&geometry, &[f32::NAN; 9], &[1.0; 9], None));
        assert!(!is_exact_in_f32(
            &geometry,
            &[4096.0; 9],
            &[4096.0; 9],
            None
        ));
    }
}
