//! The contract of a grouped 2-D convolution, as PyTorch's `torch.nn.Conv2d(..., groups=g)`
//! defines it, and nothing else.
//!
//! A convolution is described by [`Conv2dParams`] (channels, kernel, stride, [`Padding`],
//! dilation, groups, bias). Validating those parameters against an input shape `[N, C, H, W]`
//! yields a [`Geometry`]: every size a kernel needs (output shape, weight shape
//! `[C_out, C_in/g, kH, kW]`, parameter and FLOP counts, the channel range of each group, the
//! interior of the output whose windows never touch padding), with all size arithmetic
//! overflow-checked once so that kernels may index freely below the lengths it reports.
//! Every broken rule is its own [`ShapeError`] variant carrying the offending values.
//!
//! ```
//! use gconv_shape::{Conv2dParams, Padding, ShapeError};
//!
//! // ResNeXt-50's grouped 3x3 convolution: 32 groups of 4 channels.
//! let params = Conv2dParams::new(128, 128, [3, 3]).groups(32).padding(Padding::uniform(1));
//! let geometry = params.geometry([1, 128, 56, 56])?;
//! assert_eq!(geometry.weight_shape(), [128, 4, 3, 3]);
//! assert_eq!(geometry.output_shape(), [1, 128, 56, 56]);
//! assert_eq!(geometry.weight_count(), 128 * 128 * 3 * 3 / 32);
//!
//! // Groups must divide the channel counts, as PyTorch insists.
//! let error = Conv2dParams::new(6, 6, [1, 1]).groups(4).validate().unwrap_err();
//! assert_eq!(error.to_string(), "in_channels (6) must be divisible by groups (4)");
//! # Ok::<(), ShapeError>(())
//! ```
//!
//! # Which type do I use
//!
//! * [`Conv2dParams`] — a layer's hyper-parameters by PyTorch's names, built up from
//!   `Conv2dParams::new(in_channels, out_channels, kernel_size)`; every size takes `3`,
//!   `[3, 1]` or `(3, 1)` (see [`Spatial`]).
//! * [`Padding`] — [`Padding::uniform`], [`Padding::symmetric`] (per axis),
//!   [`Padding::per_side`], [`Padding::Same`] or [`Padding::Valid`]; a geometry holds it
//!   resolved into [`PaddingPerSide`]; [`PaddingMode`] says what the padding holds (zeros,
//!   reflect, replicate, circular: PyTorch's `padding_mode`).
//! * [`ValidParams`] — the parameters checked without an input ([`Conv2dParams::validate`]):
//!   weight and bias shapes, parameter count.
//! * [`Geometry`] — the parameters checked against one input shape
//!   ([`Conv2dParams::geometry`]): output shape, buffer lengths, FLOPs, each group's channels.
//! * [`Activation`] — what is applied to each output last (ReLU, ReLU6, clamp, leaky ReLU),
//!   after the bias and an optional residual.
//! * [`GroupSizes`] and [`UnevenGeometry`] — groups of unequal channel counts (beyond
//!   PyTorch): the sizes listed per group for the input and output channels, and the shapes
//!   they give, with the flat weight's layout.
//! * [`ShapeError`] — one variant per broken rule, with the values that broke it.
//! * [`workload`] — lists of published layers (CSV) for benchmarks.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod activation;
mod error;
mod geometry;
mod group_sizes;
mod padding;
mod padding_mode;
mod params;
pub mod workload;

pub use activation::{Activation, ParseActivationError};
pub use error::ShapeError;
pub use geometry::Geometry;
pub use group_sizes::{GroupRun, GroupSizes, UnevenGeometry};
pub use padding::{Padding, PaddingPerSide};
pub use padding_mode::{PaddingMode, ParsePaddingModeError};
pub use params::{Conv2dParams, Spatial, ValidParams};
