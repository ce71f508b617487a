//! Property-test a grouped 2-D convolution against gconv's reference.
//!
//! * [`strategy`] (feature `strategies`, on by default) — proptest strategies for valid problems (shapes biased towards the edges of
//!   SIMD tiles, groups from 1 to `C_in`, channel multipliers, strides, dilations, asymmetric
//!   kernels and padding, batches) with random or small-integer data, and for deliberately
//!   invalid parameters paired with the rule they break.
//! * [`tolerance`] — how far an `f32` implementation may be from the reference: a bound derived
//!   from the reduction length `K = C_in/g · kH · kW` and the magnitudes of the products, exact
//!   where the data are small integers.
//! * [`data`] — deterministic pseudo-random tensors.
//! * [`diff`] — compares two outputs under that bound and explains a mismatch in NCHW
//!   coordinates; [`check_fused_against_reference`] does so for a convolution followed by a
//!   residual add and an activation (strategies: [`strategy::activations`],
//!   [`strategy::residuals`]).
//! * [`gradients`] — the same for the backward passes: [`check_gradient_against_reference`]
//!   for the gradient of the input, the weight or the bias, its tolerance derived from each
//!   gradient's reduction length (the weight's sums run over the batch and every output
//!   position); strategy: [`strategy::gradient_problems`], in every padding mode.
//!
//! Without the `strategies` feature the crate does not depend on proptest, so a binary can use
//! the tolerance and the diff to check its own results.
//!
//! The example checks a naive convolution, written here, against the reference:
//!
//! ```
//! use gconv_shape::Geometry;
//! use gconv_testkit::{Problem, check_against_reference, strategy};
//! use proptest::prelude::*;
//! use proptest::test_runner::{Config, TestRunner};
//!
//! /// A convolution under test: loops over the output, skipping taps that land in padding.
//! fn my_conv(g: &Geometry, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
//!     let [n_, c_in, h, wd] = g.input_shape();
//!     let [_, c_out, ho, wo] = g.output_shape();
//!     let ([kh, kw], [sh, sw], [dh, dw]) = (g.kernel_size(), g.stride(), g.dilation());
//!     let (cg, og, pad) = (g.in_channels_per_group(), g.out_channels_per_group(), g.padding());
//!     let mut y = vec![0.0; g.output_len()];
//!     for n in 0..n_ { for co in 0..c_out { for oy in 0..ho { for ox in 0..wo {
//!         let mut acc = b.map_or(0.0, |b| b[co]);
//!         for c in 0..cg { for i in 0..kh { for j in 0..kw {
//!             let iy = (oy * sh + i * dh) as isize - pad.top as isize;
//!             let ix = (ox * sw + j * dw) as isize - pad.left as isize;
//!             if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize { continue; }
//!             let ci = co / og * cg + c;
//!             acc += x[((n * c_in + ci) * h + iy as usize) * wd + ix as usize]
//!                 * w[((co * cg + c) * kh + i) * kw + j];
//!         }}}
//!         y[((n * c_out + co) * ho + oy) * wo + ox] = acc;
//!     }}}}
//!     y
//! }
//!
//! let mut runner = TestRunner::new(Config { cases: 32, ..Config::default() });
//! runner
//!     .run(&strategy::problems(strategy::Limits::default()), |problem: Problem| {
//!         let ours = my_conv(&problem.geometry, &problem.input, &problem.weight, problem.bias.as_deref());
//!         check_against_reference(&problem, &ours).map_err(|diff| TestCaseError::fail(diff.to_string()))
//!     })
//!     .unwrap();
//! ```

#![deny(missing_docs)]

pub mod data;
pub mod diff;
pub mod gradients;
mod problem;
#[cfg(feature = "strategies")]
pub mod strategy;
pub mod tolerance;

pub use diff::{
    OutputDiff, check_against_reference, check_fused_against_reference, compare_outputs,
};
pub use gradients::{Gradient, check_gradient_against_reference};
pub use problem::Problem;
#[cfg(feature = "strategies")]
pub use strategy::Limits;
pub use tolerance::Tolerance;
