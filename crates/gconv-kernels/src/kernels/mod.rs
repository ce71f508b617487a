//! The kernels, by family, behind one interface: [`ForwardKernel`] for the forward pass, built
//! from a [`Choice`] by [`build_forward`], the one place that knows every kernel type.
//!
//! * [`grouped`] — the grouped kernels, for every family: input packed per group, register
//!   tiles of output channels × positions or of channels in lanes;
//! * [`depthwise`] — the kernels of depthwise layers (one input channel per group).
//!
//! Every kernel body is written once over [`crate::simd::Simd`] and instantiated per tier; every
//! store of an output goes through a [`crate::epilogue::Sink`], so what is applied before it is
//! the kernel's [`Epilogue`] type parameter.

use std::fmt;

use crate::Error;
use crate::epilogue::Epilogue;
use crate::exec::workspace::{Output, Workspace};
use crate::select::{Choice, Problem};
use crate::simd::Element;
use crate::weights::Weights;

pub(crate) mod depthwise;
pub(crate) mod grouped;

use depthwise::lanes::{self, LanesEngine};
use depthwise::shifted::{self, ShiftedEngine};
use depthwise::streamed::{self, StreamedEngine};
use depthwise::unpacked::{self, UnpackedEngine};
use grouped::GroupedEngine;

/// A forward kernel prepared for one problem: its weights packed, ready to run any number of
/// times.
pub(crate) trait ForwardKernel<T>: fmt::Debug + Send + Sync {
    /// Elements of scratch each thread needs.
    fn scratch_len(&self) -> usize;

    /// Convolves NCHW `input` into `output` (both checked against the geometry by the
    /// caller), on the workspace's team when `parallel`.
    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool);
}

/// What a kernel is built from: the problem, its weights (packed in the kernel's order
/// through the store, once for every plan that shares it), and the epilogue its stores apply.
pub(crate) struct Parts<'a, T, E> {
    pub problem: Problem<'a>,
    pub weights: &'a Weights<T>,
    pub epilogue: E,
}

/// The forward kernel of `choice` for the problem of `parts`; an error if the choice cannot
/// run the problem (a forced kernel that does not fit it) or if a size the kernel indexes is
/// too large.
pub(crate) fn build_forward<T: Element, E: Epilogue<T>>(
    choice: &Choice,
    parts: Parts<'_, T, E>,
) -> Result<Box<dyn ForwardKernel<T>>, Error> {
    let Problem { geometry, isa, .. } = parts.problem;
    let fits = match choice {
        Choice::Grouped(_) => true,
        Choice::DepthwiseStreamed => streamed::suits(geometry),
        Choice::DepthwiseShifted => shifted::suits(geometry),
        Choice::DepthwiseUnpacked => unpacked::suits(geometry),
        Choice::DepthwiseLanes { tier } => *tier <= isa && lanes::suits(geometry, *tier),
    };
    if !fits {
        return Err(Error::TooLarge {
            what: "the chosen kernel (a forced kernel that does not fit the problem)",
        });
    }
    Ok(match choice {
        Choice::Grouped(grouped) => Box::new(GroupedEngine::new(grouped, parts)?),
        Choice::DepthwiseStreamed => Box::new(StreamedEngine::new(parts)?),
        Choice::DepthwiseShifted => Box::new(ShiftedEngine::new(parts)?),
        Choice::DepthwiseUnpacked => Box::new(UnpackedEngine::new(parts)?),
        Choice::DepthwiseLanes { tier } => Box::new(LanesEngine::new(parts, *tier)?),
    })
}
