//! Grouped 2-D convolution with the semantics of PyTorch's `torch.nn.Conv2d(..., groups=g)`,
//! NCHW float32, on hand-vectorized kernels chosen at run time for the CPU.
//!
//! Make a [`Conv2d`] once — it validates the shapes, picks the kernel family and instruction
//! set, and packs the weights — then run it as often as needed: [`Conv2d::run`] writes into a
//! caller's buffer without allocating, [`Conv2d::forward`] returns a new one. Results are
//! bit-identical for every thread count.
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
//! # Ok::<(), gconv::Error>(())
//! ```
//!
//! The pieces are separate crates, re-exported here: [`gconv_shape`] (the contract and its
//! errors) and [`gconv_kernels`] (tiers, families, the kernels).

pub use gconv_kernels::{Family, Isa, KernelError as Error, PlanOptions as Options, Threads};
pub use gconv_shape::{Conv2dParams, Geometry, Padding, PaddingPerSide, ShapeError};

use gconv_kernels::KernelPlan;

mod conv2d;

/// Layer lists: the convolution layers of networks (see [`gconv_shape::workload`]).
pub use gconv_shape::workload;

pub use conv2d::Conv2d;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub use gconv_kernels;
#[doc(hidden)]
pub use gconv_shape;

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KernelPlan>();
};
