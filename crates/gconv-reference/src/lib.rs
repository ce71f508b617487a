//! Grouped 2-D convolution written as its definition: the specification every fast kernel of
//! gconv is checked against. Slow on purpose and never optimised.
//!
//! * [`conv2d`] / [`conv2d_into`] — the formula, as nested loops in its own order
//!   (see [`direct`]).
//! * [`conv2d_split_concat`] — an independent second implementation that follows the
//!   historical description of grouped convolution (AlexNet's two GPU branches): slice the input
//!   channels into groups, run an ordinary dense convolution per group on an explicitly padded
//!   copy, concatenate the outputs (see [`split_concat`]).
//! * [`conv2d_fused`] — the convolution, then a residual added and an activation applied,
//!   as PyTorch's separate operations compute them (see [`fused`]); [`post_ops`] is that
//!   second step alone, [`activate`] one element's activation.
//! * [`conv2d_uneven`] — groups of unequal channel counts ([`gconv_shape::GroupSizes`]),
//!   the same formula with each group's own channels and weight block (see [`uneven`]).
//! * [`conv2d_grad_input`], [`conv2d_grad_weight`], [`conv2d_grad_bias`] — the gradients
//!   a training framework needs, from the upstream gradient of the output (see [`backward`]).
//! * [`dense_conv2d`] — that ordinary convolution, for `groups = 1`.
//! * [`block_diagonal_weight`] — a grouped weight written as the equivalent dense weight.
//!
//! All of them sum products in `f64` and round once to `f32`, so their results are the
//! correctly rounded sums up to the rare double rounding of an `f64` sum: a fast kernel that
//! sums in `f32` differs from them by its own rounding error only.
//!
//! ```
//! use gconv_shape::Conv2dParams;
//!
//! // Two groups of one channel each, 1x1 kernel: each output channel scales its own input.
//! let geometry = Conv2dParams::new(2, 2, 1).groups(2).bias(false).geometry([1, 2, 1, 2])?;
//! let input = [1.0, 2.0, /* channel 1 */ 3.0, 4.0];
//! let weight = [10.0, /* filter 1 */ 100.0];
//! let output = gconv_reference::conv2d(&geometry, &input, &weight, None)?;
//! assert_eq!(output, [10.0, 20.0, 300.0, 400.0]);
//! # Ok::<(), gconv_shape::ShapeError>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backward;
pub mod direct;
pub mod fused;
pub mod split_concat;
pub mod uneven;

pub use backward::{conv2d_grad_bias, conv2d_grad_input, conv2d_grad_weight};
pub use direct::{conv2d, conv2d_into};
pub use fused::{activate, conv2d_fused, post_ops};
pub use split_concat::{block_diagonal_weight, conv2d_split_concat, dense_conv2d};
pub use uneven::conv2d_uneven;
