//! Checking an implementation's gradients (the backward passes of `y = conv(x, w) + b`) against
//! the reference's, under a tolerance derived from each gradient's reduction length.
//!
//! Each gradient element is a sum of products, like a forward output, so the bound of
//! [`crate::tolerance`] applies with the length of that sum and the element's magnitude (the
//! same gradient of the absolute values):
//!
//! | gradient | products per element `K` |
//! |---|---|
//! | input | `C_out/g · kH · kW` (zeros padding), times 9 for `reflect` and `circular` (a pixel and its copies on both sides of each axis), times `(pad_top + pad_bottom + 1)·(pad_left + pad_right + 1)` for `replicate` (an edge pixel fills the padding) |
//! | weight | `N · H_out · W_out`: long, so its bound is wide, as its error can be |
//! | bias | `N · H_out · W_out` |
//!
//! Exact (no difference allowed) when every value is an integer and every magnitude stays
//! below `2²⁴`, where every `f32` sum of such products is exact.

use gconv_shape::{Geometry, PaddingMode};

use crate::Problem;
use crate::diff::{OutputDiff, compare_outputs};
use crate::tolerance::{EXACT_LIMIT, Tolerance, all_integers};

/// Which gradient of the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gradient {
    /// `∂L/∂x`, the input's shape.
    Input,
    /// `∂L/∂w`, the weight's shape.
    Weight,
    /// `∂L/∂b`, `[C_out]`.
    Bias,
}

impl Gradient {
    /// The number of products summed into one element of this gradient (see the module
    /// documentation).
    pub fn reduction_len(self, geometry: &Geometry) -> usize {
        let [batch, _, out_height, out_width] = geometry.output_shape();
        match self {
            Gradient::Input => {
                let [kernel_h, kernel_w] = geometry.kernel_size();
                let padding = geometry.padding();
                let copies = match geometry.padding_mode() {
                    PaddingMode::Zeros => 1,
                    PaddingMode::Reflect | PaddingMode::Circular => 9,
                    PaddingMode::Replicate => {
                        (padding.top + padding.bottom + 1) * (padding.left + padding.right + 1)
                    }
                };
                geometry.out_channels_per_group() * kernel_h * kernel_w * copies
            }
            Gradient::Weight | Gradient::Bias => batch * out_height * out_width,
        }
    }

    /// The shape the gradient is reported in, as NCHW-like coordinates: the input's, the
    /// weight's, or `[1, C_out, 1, 1]`.
    fn shape(self, geometry: &Geometry) -> [usize; 4] {
        match self {
            Gradient::Input => geometry.input_shape(),
            Gradient::Weight => geometry.weight_shape(),
            Gradient::Bias => [1, geometry.out_channels(), 1, 1],
        }
    }
}

/// The reference's `gradient` of `problem` for the upstream gradient `grad_output`.
pub fn reference_gradient(problem: &Problem, grad_output: &[f32], gradient: Gradient) -> Vec<f32> {
    let geometry = &problem.geometry;
    match gradient {
        Gradient::Input => {
            gconv_reference::conv2d_grad_input(geometry, grad_output, &problem.weight)
        }
        Gradient::Weight => {
            gconv_reference::conv2d_grad_weight(geometry, &problem.input, grad_output)
        }
        Gradient::Bias => gconv_reference::conv2d_grad_bias(geometry, grad_output),
    }
    .expect("a Problem's buffers match its geometry, and grad_output its output")
}

/// Each element's magnitude: the same gradient of the absolute values (`Σ|gy·w|` per input
/// pixel, `Σ|gy·x|` per weight, `Σ|gy|` per bias), the scale its rounding error is bounded by.
pub fn gradient_magnitudes(problem: &Problem, grad_output: &[f32], gradient: Gradient) -> Vec<f32> {
    let absolute = |values: &[f32]| values.iter().map(|v| v.abs()).collect::<Vec<_>>();
    let absolute_problem = Problem {
        geometry: problem.geometry,
        input: absolute(&problem.input),
        weight: absolute(&problem.weight),
        bias: None,
    };
    reference_gradient(&absolute_problem, &absolute(grad_output), gradient)
}

/// Compares an implementation's `gradient` of `problem` (for the upstream gradient
/// `grad_output`, the output's shape) with the reference's: exactly on small integers,
/// otherwise within [`Tolerance::for_reduction`] of [`Gradient::reduction_len`] on each
/// element's magnitude.
pub fn check_gradient_against_reference(
    problem: &Problem,
    grad_output: &[f32],
    gradient: Gradient,
    actual: &[f32],
) -> Result<(), OutputDiff> {
    let expected = reference_gradient(problem, grad_output, gradient);
    let magnitudes = gradient_magnitudes(problem, grad_output, gradient);
    let data = problem
        .input
        .iter()
        .chain(&problem.weight)
        .chain(grad_output);
    let exact = all_integers(data)
        && magnitudes
            .iter()
            .all(|&magnitude| f64::from(magnitude) < EXACT_LIMIT);
    let tolerance = match exact {
        true => Tolerance::EXACT,
        false => Tolerance::for_reduction(gradient.reduction_len(&problem.geometry)),
    };
    compare_outputs(
        gradient.shape(&problem.geometry),
        &expected,
        actual,
        &magnitudes,
        tolerance,
    )
}
