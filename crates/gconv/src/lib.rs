//! Grouped 2-D convolution with the semantics of PyTorch's `torch.nn.Conv2d(..., groups=g)`,
//! NCHW float32, on hand-vectorized kernels chosen at run time for the CPU.
//!
//! Make a [`Conv2d`] once — it validates the parameters and weights and sets up the first
//! input shape: kernel, instruction set, packed weights — then run it as often as needed:
//! [`Conv2d::run`] writes into a caller's buffer without allocating, [`Conv2d::forward`]
//! returns a new one. The same `Conv2d` runs any other batch size, height and width its
//! parameters accept ([`Conv2d::run_shaped`]), setting each new shape up on its first use
//! (see the cost model on [`Conv2d`]). Results are bit-identical for every thread count.
//!
//! ```
//! use gconv::{Conv2d, Conv2dParams, Options, Padding};
//!
//! // MobileNetV2's stride-2 depthwise 3x3 on 96 channels.
//! let params = Conv2dParams::new(96, 96, 3).groups(96).stride(2).padding(Padding::uniform(1));
//! let weight = vec![0.1f32; 96 * 3 * 3];
//! let bias = vec![0.0f32; 96];
//! let conv = Conv2d::new(params, [1, 96, 112, 112], &weight, Some(&bias), Options::default())?;
//! assert_eq!(conv.geometry().output_shape(), [1, 96, 56, 56]);
//!
//! let input = vec![1.0f32; 96 * 112 * 112];
//! let mut output = vec![0.0f32; conv.geometry().output_len()];
//! conv.run(&input, &mut output)?; // no allocation: call it in a loop
//! println!("ran {conv}");          // e.g. dwconv-3x3s2d1-streamed-1c16w-x86_64_v4 on 2 thread(s)
//!
//! // A batch of four 56x56 images through the same weights: set up once, then cached.
//! let shape = [4, 96, 56, 56];
//! let output_len = conv.prepare(shape)?.output_len();
//! let mut output = vec![0.0f32; output_len];
//! conv.run_shaped(shape, &vec![1.0f32; 4 * 96 * 56 * 56], &mut output)?;
//! # Ok::<(), gconv::Error>(())
//! ```
//!
//! # Which type do I use
//!
//! * [`Conv2d`] — almost always: a layer's weights, ready to run on any input size.
//! * [`Conv2dParams`] — the layer's hyper-parameters by PyTorch's names, built up from
//!   `Conv2dParams::new(in_channels, out_channels, kernel_size)`; sizes take `3`, `[3, 1]`
//!   or `(3, 1)` ([`gconv_shape::Spatial`]); [`Padding`] for `same`, `valid` and per side.
//! * [`Options`] — threads and instruction set: `Options::default().threads(1)`; by default
//!   every core and the best tier the CPU has. What follows the convolution, applied to each
//!   piece of the output as it is computed: a residual (`.residual(true)`, then [`Conv2d::run_with_residual`]) and an
//!   [`Activation`] (`.activation(Activation::Relu6)`). `Options::default().measure()` times the
//!   candidate kernels of each shape when it is set up and keeps the fastest ([`Planning`]),
//!   recording it in the process's [`Wisdom`], which a file carries to other processes.
//! * [`UnevenConv2d`] — groups of unequal channel counts, beyond PyTorch ([`GroupSizes`]:
//!   input `[3, 2]`, output `[4, 4]`), each run of equal groups on the kernel its shape gets.
//! * [`Geometry`] — a layer's shapes for one input: output and weight shapes, parameter and
//!   FLOP counts; from [`Conv2dParams::geometry`] or [`Conv2d::prepare`].
//! * With the `ndarray` feature, `Conv2d::run_array` and `Conv2d::forward_array` take
//!   `ndarray`'s `ArrayView4` in any layout (one that is not in standard order is copied
//!   once) and write an `ArrayViewMut4` or a new `Array4`, checking its shape.
//! * [`Error`] — every failure, naming the rule and the values that broke it; the shape
//!   rules are [`ShapeError`]s inside [`Error::Shape`].
//!
//! The pieces are separate crates, re-exported here whole: [`gconv_shape`] (the contract
//! and its errors) and [`gconv_kernels`] (tiers, kernel selection, the kernels, and
//! [`gconv_kernels::KernelPlan`], one input shape's plan, which also names the selection
//! rule that chose its kernel).

#![deny(missing_docs)]

pub use gconv_kernels::{
    CpuClass, Error, Family, Isa, Options, Planning, PostOps, Threads, Wisdom,
};
pub use gconv_shape::{
    Activation, Conv2dParams, Geometry, GroupRun, GroupSizes, Padding, PaddingMode, PaddingPerSide,
    ShapeError, UnevenGeometry,
};

use gconv_kernels::KernelPlan;

#[cfg(feature = "ndarray")]
mod arrays;
mod conv2d;
mod uneven;

/// Layer lists: the convolution layers of networks (see [`gconv_shape::workload`]).
pub use gconv_shape::workload;

pub use conv2d::{CACHED_SHAPES, Conv2d};
pub use uneven::UnevenConv2d;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The kernels: tiers, kernel selection, plans for one input shape.
pub use gconv_kernels;
/// The contract: parameters, validation, shapes and their errors.
pub use gconv_shape;

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KernelPlan>();
};
