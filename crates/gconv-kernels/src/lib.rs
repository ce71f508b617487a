//! Hand-vectorized direct-convolution kernels for grouped 2-D convolution (NCHW, f32),
//! computed group by group, dispatched at run time to the best instruction set the CPU has,
//! and spread over a team of threads (rayon's, driven by the plan).
//!
//! How a plan computes (each choice is printed in its [`KernelPlan::kernel_id`]):
//!
//! | step | what | where |
//! |---|---|---|
//! | tier | `portable` (`wide`), `x86_64_v3` (AVX2+FMA), `x86_64_v4` (AVX-512F), detected once | [`isa`], [`simd`] |
//! | packing | a group's input, zero-padded and dealt into stride phases (`direct`), in bands of output rows that stay in L1; or one copy per kernel column holding exactly the columns it reads (`columns`, for the channel-vector body: no padding column computed); or one window copy per tap (`im2col`) when that wastes fewer lanes and fits in L2; none for 1×1 stride-1 layers, read where they lie (`inplace`) | `layout` |
//! | body | `M` output channels × `V` vectors of positions (`8c48w` on AVX-512), the vectors laid over flat positions (`direct`) or row by row (`rows`, where stores weigh most); or `2·LANES` channels in lanes × `P` positions (`32c12w`, for long reductions, its taps in L1-sized chunks; a group's last `LANES` channels one vector, where the flat body would waste a fifth of its lanes, as on 7x7 planes); or, for depthwise layers on small or strided planes, channels in lanes through shuffle transposes (`lanes`, 256-bit even on AVX-512); or, for depthwise layers with 3x3 and 5x5 windows and stride 2 or 3x3, 5x5 and 7x7 windows and stride 1, bands of up to four vectors of output columns streamed down the whole plane row by row, every input row loaded once: with stride 2 deinterleaved and carried to the next output row, with stride 1 added to the rolling sums of the output rows that read it (`streamed`); or, for other stride-1 and stride-2 depthwise layers on larger planes, 8 output rows × one vector read straight from the input rows, deinterleaved in registers for stride 2 (`unpacked`); or, on AVX-512, for other stride-1 depthwise layers (dilated) on small planes whose output is the input's size, 8 vectors of flat positions, every tap the input plane shifted, read whole and multiply-added under a per-lane mask (`shifted`) | `microkernel`, `channel_vectors`, `depthwise_lanes`, `depthwise_streamed`, `depthwise_unpacked`, `depthwise_shifted` |
//! | threads | tasks of (sample, whole channel blocks of one group, block of output rows: the plane is split only where the chunks alone would leave a thread idle, as three chunks on two threads), claimed by the calling thread and the plan's helper threads, each from its own contiguous home share first (the same every run, so a layer run again finds its data in that core's cache), then from the others'; the helpers spin briefly between runs instead of sleeping; each output element is one fixed chain of fused multiply-adds, so every thread count gives the same bits | `engine`, `workspace`, `team` |
//!
//! * [`isa`] — the tiers and their detection; `GCONV_ISA` forces one.
//! * [`simd`] — the small trait that is a kernel's whole SIMD vocabulary (splat, load, store,
//!   fused multiply-add, masked multiply-add, load and store, deinterleave, lane shift, square
//!   transpose), one implementation per tier.
//! * `layout` — the packings that turn every tap of every stride and dilation into a
//!   contiguous shifted load, and the map back to output positions.
//! * `microkernel`, `channel_vectors`, `depthwise_lanes`, `depthwise_streamed`,
//!   `depthwise_unpacked`, `depthwise_shifted` — the kernel bodies, each written once over
//!   [`simd::Simd`].
//! * `engine` — weight packing, register blocks, task partition and the per-tier wrappers.
//! * `workspace` — each thread's scratch and the parallel loop that lends every task its own
//!   piece of the output.
//! * [`family`] — depthwise, pointwise, small groups, wide groups.
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
//! println!("{}", plan.kernel_id()); // e.g. dwconv-3x3s1d1-direct-1c128w-x86_64_v4
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod channel_vectors;
mod depthwise_lanes;
mod depthwise_planes;
mod depthwise_shifted;
mod depthwise_streamed;
mod depthwise_unpacked;
mod engine;
mod error;
pub mod family;
pub mod isa;
mod layout;
mod microkernel;
mod plan;
pub mod simd;
mod team;
mod workspace;

pub use error::KernelError;
pub use family::Family;
pub use isa::Isa;
pub use plan::{KernelPlan, PlanOptions, Threads};
pub use workspace::Workspace;
