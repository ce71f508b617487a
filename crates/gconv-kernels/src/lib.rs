//! Hand-vectorized direct-convolution kernels for grouped 2-D convolution (NCHW, f32),
//! computed group by group, dispatched at run time to the best instruction set the CPU has,
//! and spread over threads with rayon.
//!
//! * [`isa`] — the tiers (`portable` on `wide`, `x86_64_v3` = AVX2+FMA, `x86_64_v4` =
//!   AVX-512F) and their detection; `GCONV_ISA` forces one.
//! * [`simd`] — the small trait that is a kernel's whole SIMD vocabulary, one implementation
//!   per tier.
//! * `layout` — the zero-padded, phase-split packing of a group's input that turns every tap
//!   of every stride and dilation into a contiguous shifted load.
//! * `microkernel` — the one kernel body: `M` output channels × `V` vectors of outputs.
//! * `channel_vectors` — the second body: output channels in lanes × positions, for groups
//!   with many output channels.
//! * `depthwise_lanes` — depthwise convolution of small planes with channels in lanes.
//! * `engine` — weight packing, register blocks, task partition and the per-tier wrappers.
//! * [`family`] — depthwise, pointwise, small groups, wide groups, and kernel ids.
//! * [`KernelPlan`] — the public entry point: validate and pack once, run many times.
//!
//! ```
//! use gconv_kernels::{KernelPlan, PlanOptions};
//! use gconv_shape::{Conv2dParams, Padding};
//!
//! let geometry = Conv2dParams::new(8, 8, 3)
//!     .groups(8)
//!     .padding(Padding::uniform(1))
//!     .bias(false)
//!     .geometry([1, 8, 5, 5])?;
//! let weight = vec![1.0f32; geometry.weight_count()];
//! let plan = KernelPlan::new(&geometry, &weight, None, PlanOptions::default())?;
//! let input = vec![1.0f32; geometry.input_len()];
//! let mut output = vec![0.0f32; geometry.output_len()];
//! plan.run(&input, &mut output)?;
//! assert_eq!(output[2 * 5 + 2], 9.0); // an interior pixel sums its 3x3 window
//! assert_eq!(output[0], 4.0); // a corner sees 2x2 of it
//! println!("{}", plan.kernel_id()); // e.g. dwconv-3x3s1d1-1c128w-x86_64_v4
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod channel_vectors;
mod depthwise_lanes;
mod engine;
mod error;
pub mod family;
pub mod isa;
mod layout;
mod microkernel;
mod plan;
pub mod simd;

pub use engine::Workspace;
pub use error::KernelError;
pub use family::Family;
pub use isa::Isa;
pub use plan::{KernelPlan, PlanOptions, Threads};
