//! Comparing an output with the reference, and saying where and how they differ.

use std::fmt;

use gconv_shape::{Activation, Geometry};

use crate::Problem;
use crate::tolerance::{
    EXACT_LIMIT, Tolerance, all_integers, integer_sum_bound, is_exact_in_f32, max_abs,
};

/// How many mismatching elements an [`OutputDiff`] lists by name.
const LISTED: usize = 8;

/// Why an output does not match the expected one.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputDiff {
    /// The outputs do not even have the same number of elements.
    Length {
        /// Elements of the expected output.
        expected: usize,
        /// Elements of the actual output.
        actual: usize,
    },
    /// Some elements are further apart than the tolerance allows.
    Values {
        /// `[N, C, H, W]` of the output.
        shape: [usize; 4],
        /// The tolerance that was applied.
        tolerance: Tolerance,
        /// How many elements are out of tolerance.
        count: usize,
        /// The first few of them, in NCHW order, then the worst one if not among them.
        listed: Vec<ElementDiff>,
    },
}

/// One output element out of tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElementDiff {
    /// `[n, c, h, w]`.
    pub index: [usize; 4],
    /// The reference value.
    pub expected: f32,
    /// The value under test.
    pub actual: f32,
    /// The largest difference allowed for this element.
    pub bound: f32,
}

impl fmt::Display for OutputDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputDiff::Length { expected, actual } => write!(
                f,
                "output has {actual} elements, the reference has {expected}"
            ),
            OutputDiff::Values {
                shape,
                tolerance,
                count,
                listed,
            } => {
                let total: usize = shape.iter().product();
                writeln!(
                    f,
                    "{count} of {total} output elements of shape {shape:?} differ from the reference \
                     (tolerance {:e} x magnitude + {:e}):",
                    tolerance.relative, tolerance.absolute
                )?;
                for element in listed {
                    writeln!(
                        f,
                        "  at [n, c, h, w] = {:?}: expected {:e}, got {:e} (difference {:e}, allowed {:e})",
                        element.index,
                        element.expected,
                        element.actual,
                        (element.actual - element.expected).abs(),
                        element.bound
                    )?;
                }
                if *count > listed.len() {
                    writeln!(f, "  … and {} more", count - listed.len())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for OutputDiff {}

/// Compares `actual` with `expected`, element by element, allowing
/// `tolerance.bound(magnitudes[i])` at element `i`. A NaN must meet a NaN, an infinity the
/// same infinity; `+0` equals `−0`.
pub fn compare_outputs(
    shape: [usize; 4],
    expected: &[f32],
    actual: &[f32],
    magnitudes: &[f32],
    tolerance: Tolerance,
) -> Result<(), OutputDiff> {
    if expected.len() != actual.len() || magnitudes.len() != expected.len() {
        return Err(OutputDiff::Length {
            expected: expected.len(),
            actual: actual.len(),
        });
    }
    let [_, channels, height, width] = shape;
    let index_of = |flat: usize| {
        [
            flat / (width * height * channels),
            flat / (width * height) % channels,
            flat / width % height,
            flat % width,
        ]
    };
    let mut count = 0;
    let mut listed = Vec::new();
    let mut worst: Option<(f32, ElementDiff)> = None;
    for (flat, ((&expected, &actual), &magnitude)) in
        expected.iter().zip(actual).zip(magnitudes).enumerate()
    {
        let bound = tolerance.bound(magnitude);
        let matches = if expected.is_nan() {
            actual.is_nan()
        } else if expected.is_infinite() {
            actual == expected
        } else {
            (actual - expected).abs() <= bound
        };
        if matches {
            continue;
        }
        count += 1;
        let element = ElementDiff {
            index: index_of(flat),
            expected,
            actual,
            bound,
        };
        if listed.len() < LISTED {
            listed.push(element);
        }
        // NaN excess (a NaN where a number was expected) counts as the worst of all.
        let excess = (actual - expected).abs() - bound;
        let excess = if excess.is_nan() {
            f32::INFINITY
        } else {
            excess
        };
        if worst.is_none_or(|(largest, _)| excess > largest) {
            worst = Some((excess, element));
        }
    }
    match worst {
        None => Ok(()),
        Some((_, worst)) => {
            if !listed.contains(&worst) {
                listed.push(worst);
            }
            Err(OutputDiff::Values {
                shape,
                tolerance,
                count,
                listed,
            })
        }
    }
}

/// Compares an implementation's output for `problem` with [`gconv_reference::conv2d`]: exactly
/// when the data are small integers (see [`is_exact_in_f32`]), otherwise within
/// [`Tolerance::for_geometry`] of each element's magnitude `Σ|x·w| + |b|`.
pub fn check_against_reference(problem: &Problem, actual: &[f32]) -> Result<(), OutputDiff> {
    let Problem {
        geometry,
        input,
        weight,
        bias,
    } = problem;
    let expected = reference(geometry, input, weight, bias.as_deref());
    let tolerance = if is_exact_in_f32(geometry, input, weight, bias.as_deref()) {
        Tolerance::EXACT
    } else {
        Tolerance::for_geometry(geometry)
    };
    let magnitudes = magnitudes(problem);
    compare_outputs(
        geometry.output_shape(),
        &expected,
        actual,
        &magnitudes,
        tolerance,
    )
}

/// Compares an implementation's output for `problem` followed by its post-operations — the
/// residual added, then `activation` — with [`gconv_reference::conv2d_fused`]: exactly when
/// the data (the residual's included) are small integers, otherwise within the
/// convolution's tolerance widened by the residual's add, on the magnitude
/// `Σ|x·w| + |b| + |r|`, times `|slope|` for a leaky ReLU steeper than 1 (every activation
/// moves two values no further apart than that).
pub fn check_fused_against_reference(
    problem: &Problem,
    residual: Option<&[f32]>,
    activation: Activation,
    actual: &[f32],
) -> Result<(), OutputDiff> {
    let Problem {
        geometry,
        input,
        weight,
        bias,
    } = problem;
    let bias = bias.as_deref();
    let expected =
        gconv_reference::conv2d_fused(geometry, input, weight, bias, residual, activation)
            .expect("a Problem's buffers match its geometry, and the residual the output");
    let mut magnitudes = magnitudes(problem);
    let steepest = match activation {
        Activation::LeakyRelu { slope } => (slope as f32).abs().max(1.0),
        _ => 1.0,
    };
    for (index, magnitude) in magnitudes.iter_mut().enumerate() {
        let residual = residual.map_or(0.0, |residual| residual[index].abs());
        *magnitude = (*magnitude + residual) * steepest;
    }
    // Exact when the convolution's data and the residual are integers whose sums, the
    // residual's add included, stay where every integer is exact.
    let residual_max = residual.map_or(0.0, max_abs);
    let exact = residual.is_none_or(|residual| all_integers(residual.iter()))
        && integer_sum_bound(geometry, input, weight, bias)
            .is_some_and(|worst| worst + residual_max < EXACT_LIMIT);
    let tolerance = match exact {
        true => Tolerance::EXACT,
        // The residual's add rounds once more, here and in the reference.
        false => Tolerance::for_reduction(geometry.reduction_len() + 2),
    };
    compare_outputs(
        geometry.output_shape(),
        &expected,
        actual,
        &magnitudes,
        tolerance,
    )
}

/// Each output element's magnitude `Σ|x·w| + |b|`: the convolution of the absolute values.
fn magnitudes(problem: &Problem) -> Vec<f32> {
    let absolute = |values: &[f32]| values.iter().map(|v| v.abs()).collect::<Vec<_>>();
    reference(
        &problem.geometry,
        &absolute(&problem.input),
        &absolute(&problem.weight),
        problem.bias.as_deref().map(absolute).as_deref(),
    )
}

fn reference(geometry: &Geometry, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    gconv_reference::conv2d(geometry, input, weight, bias)
        .expect("a Problem's buffers match its geometry by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: [usize; 4] = [1, 2, 1, 2];

    #[test]
    fn values_within_the_bound_match() {
        let tolerance = Tolerance {
            relative: 0.1,
            absolute: 0.0,
        };
        let result = compare_outputs(
            SHAPE,
            &[1.0, -0.0, f32::NAN, f32::INFINITY],
            &[1.05, 0.0, f32::NAN, f32::INFINITY],
            &[1.0; 4],
            tolerance,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_mismatch_is_reported_in_nchw_coordinates() {
        let diff = compare_outputs(
            SHAPE,
            &[1.0, 2.0, 3.0, f32::INFINITY],
            &[1.0, 2.0, 3.5, f32::NAN],
            &[1.0; 4],
            Tolerance::EXACT,
        )
        .unwrap_err();
        let OutputDiff::Values { count, listed, .. } = &diff else {
            panic!("expected a value diff, got {diff}");
        };
        assert_eq!(*count, 2);
        assert_eq!(listed[0].index, [0, 1, 0, 0]);
        assert_eq!(listed[1].index, [0, 1, 0, 1]);
        let text = diff.to_string();
        assert!(text.contains("2 of 4 output elements"), "{text}");
        assert!(
            text.contains("[0, 1, 0, 0]: expected 3e0, got 3.5e0"),
            "{text}"
        );
    }

    #[test]
    fn a_nan_where_a_number_was_expected_is_a_mismatch() {
        let result = compare_outputs(
            [1, 1, 1, 1],
            &[1.0],
            &[f32::NAN],
            &[1.0],
            Tolerance::for_reduction(1000),
        );
        assert!(result.is_err());
    }

    /// The fused check accepts the reference's own result and refuses one without the
    /// residual, with the activation skipped, or off by a whole product.
    #[test]
    fn the_fused_check_catches_a_missing_post_operation() {
        use gconv_shape::Conv2dParams;
        let geometry = Conv2dParams::new(2, 2, 3)
            .groups(2)
            .padding(gconv_shape::Padding::uniform(1))
            .geometry([1, 2, 4, 4])
            .unwrap();
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 37 + seed * 11) % 19) as f32 / 7.0 - 1.3)
                .collect()
        };
        let problem = Problem {
            geometry,
            input: values(geometry.input_len(), 1),
            weight: values(geometry.weight_count(), 2),
            bias: Some(values(2, 3)),
        };
        let residual = values(geometry.output_len(), 4);
        let activation = Activation::Clamp {
            min: -0.5,
            max: 1.0,
        };
        let bias = problem.bias.as_deref();
        let fused = |residual, activation| {
            gconv_reference::conv2d_fused(
                &geometry,
                &problem.input,
                &problem.weight,
                bias,
                residual,
                activation,
            )
            .unwrap()
        };
        let right = fused(Some(&residual), activation);
        let check = |actual: &[f32]| {
            check_fused_against_reference(&problem, Some(&residual), activation, actual)
        };
        assert_eq!(check(&right), Ok(()));
        assert!(check(&fused(None, activation)).is_err(), "no residual");
        let plain = fused(Some(&residual), Activation::Identity);
        assert!(check(&plain).is_err(), "no activation");
        let mut off = right.clone();
        let inside = off.iter().position(|v| v.abs() < 0.4).unwrap();
        off[inside] += 0.01;
        assert!(check(&off).is_err(), "one element off");
    }

    #[test]
    fn different_lengths_are_reported() {
        let result = compare_outputs(SHAPE, &[0.0; 4], &[0.0; 3], &[0.0; 4], Tolerance::EXACT);
        assert_eq!(
            result,
            Err(OutputDiff::Length {
                expected: 4,
                actual: 3
            })
        );
    }
}
