//! Hand-vectorized direct-convolution kernels for grouped 2-D convolution (NCHW), computed
//! group by group, dispatched at run time to the best instruction set the CPU has, and spread
//! over a team of threads.
//!
//! A [`KernelPlan`] goes through four stages, each a folder of this crate:
//!
//! | stage | what | where |
//! |---|---|---|
//! | choose | a pure function from the problem (geometry, tier, CPU class, threads) to a kernel, by a table of rules per pass, each with its reason; the measurements behind them in `TUNING.md` | [`select`] |
//! | pack | the layouts a group's input is copied into so that every tap of every stride and dilation is a contiguous shifted load (phase split, per kernel column, im2col, in place), and their bands of rows | `pack` |
//! | compute | the kernel bodies by family, each written once over the SIMD vocabulary and instantiated per tier, every output stored through the plan's epilogue | `kernels/grouped`, `kernels/depthwise`, `epilogue`, [`simd`] |
//! | execute | the team of threads (the caller and helpers, each claiming tasks from its own home share first), each thread's scratch, the loop that lends each task its piece of the output | `exec` |
//!
//! The seams a feature plugs into:
//!
//! * **element type** — [`simd::Simd`] carries its [`simd::Simd::Elem`], and an
//!   [`simd::Element`] names its token per tier: another element type is new
//!   implementations of those traits, not new kernel bodies (`f32` is the one implemented);
//! * **epilogue** — what is applied to a finished sum before it is stored is a type: nothing
//!   after the chain that starts from the bias, or a plan's residual add and activation
//!   ([`Options::residual`], [`Options::activation`]), chosen per plan at run time; every
//!   store goes through one sink;
//! * **pass** — a plan names its passes (today `forward`), each with its selection table in
//!   [`select`] and its kernel interface in `kernels`; the packing, SIMD and execution stages
//!   serve every pass;
//! * **tiles** — each tier's register tiles are one table that also generates the dispatch
//!   over them (`kernels/grouped/tiles.rs`).
//!
//! Every output element is one fixed chain of fused multiply-adds (bias, then the taps in
//! order), so every thread count gives the same bits. `GCONV_ISA` forces a tier ([`isa`]),
//! `GCONV_CPU` a CPU class ([`cpu`]: whether 512-bit vectors run at full width).
//!
//! Where the checks live: each stage's unit tests beside it (forced kernels against the
//! reference, with a non-trivial epilogue too); `selection/forward.txt`, the golden kernel
//! choice of every published layer and edge shape per tier and thread count;
//! `tests/team_model.rs`, the team's handshake under the loom model checker; and, where the
//! crates meet, `gconv`'s `tests/rules.rs` (a strategy per selection rule, asserting the rule
//! that chose it) and `tests/equivalence.rs` (random problems of every shape).
//!
//! ```
//! use gconv_kernels::{KernelPlan, Options};
//! use gconv_shape::{Conv2dParams, Padding};
//!
//! let geometry = Conv2dParams::new(8, 8, 3)
//!     .groups(8)
//!     .padding(Padding::uniform(1))
//!     .bias(false)
//!     .geometry([1, 8, 5, 5])?;
//! let weight = vec![1.0f32; geometry.weight_count()];
//! let plan = KernelPlan::new(&geometry, &weight, None, Options::default())?;
//! let input = vec![1.0f32; geometry.input_len()];
//! let mut output = vec![0.0f32; geometry.output_len()];
//! plan.run(&input, &mut output)?;
//! assert_eq!(output[2 * 5 + 2], 9.0); // an interior pixel sums its 3x3 window
//! assert_eq!(output[0], 4.0); // a corner sees 2x2 of it
//! println!("{} ({})", plan.kernel_id(), plan.rule().name());
//! // e.g. dwconv-3x3s1d1-lanes-8c8w-x86_64_v3 (depthwise-lanes)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which type do I use
//!
//! Most users want `gconv::Conv2d`, which runs one layer on every input size. Here:
//!
//! * [`KernelPlan`] — one layer on one input shape: kernel, tier and threads chosen, weights
//!   packed; [`KernelPlan::rule`] names the rule of [`select`] that chose its kernel.
//! * [`Weights`] — a weight and bias shared by the plans of several input shapes, so that
//!   each order the kernels read them in is packed once ([`KernelPlan::with_weights`]).
//! * [`Options`] — threads, tier and CPU class: `Options::default().threads(1)`; by default
//!   every core, the best tier the CPU has and its class ([`Threads`], [`Isa`], [`CpuClass`]).
//! * [`Family`] — the kind of layer (depthwise, pointwise, small groups, wide groups) that
//!   kernel ids and benchmarks sort layers into.
//! * [`Error`] — every failure: the shape rules ([`gconv_shape::ShapeError`]), a tier the
//!   CPU lacks, memory that cannot be had, a size too large for the kernels.

#![deny(missing_docs)]

pub mod cpu;
mod epilogue;
mod error;
mod exec;
pub mod family;
pub mod isa;
mod kernels;
pub mod measured;
mod pack;
mod plan;
pub mod select;
pub mod simd;
mod weights;
pub mod wisdom;

pub use cpu::CpuClass;
pub use error::Error;
pub use family::Family;
/// What a plan applies to every output last ([`Options::activation`]), from `gconv_shape`.
pub use gconv_shape::Activation;
pub use isa::Isa;
pub use measured::{Measurement, Planning};
pub use plan::{KernelPlan, Options, PostOps, Threads};
pub use weights::Weights;
pub use wisdom::Wisdom;

/// The name [`Error`] had before it took the one `gconv` re-exports it under.
#[deprecated(note = "renamed to `Error`")]
pub type KernelError = Error;
/// The name [`Options`] had before it took the one `gconv` re-exports it under.
#[deprecated(note = "renamed to `Options`")]
pub type PlanOptions = Options;
pub use select::Rule;
