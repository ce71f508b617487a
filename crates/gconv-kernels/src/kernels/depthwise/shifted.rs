//! Depthwise convolution on small planes whose output is the input's size (stride 1, "same"
//! padding): every tap reads the input plane shifted by a constant number of elements.
//!
//! On a 7x7 or 14x14 plane a vector of output positions spans several rows. Where the output
//! is as tall and as wide as the input, tap `(i, j)` of flat output position `q` reads flat
//! input position `q + (i·dH − top)·W + (j·dW − left)`: the whole plane shifted, except that
//! lanes whose input row or column falls outside the plane must read zero. Those lanes are
//! the same for every channel, so the plan works out one lane mask per vector of positions
//! and tap, and a task reads every tap straight from the caller's input through its mask:
//! no padded copy, no transposes, and every lane useful but the tail of a plane's last
//! vector. (The channels-in-lanes kernel it replaces there spent about a third of its time
//! on MobileNetV2's 7x7 layer transposing and zeroing its padded block; this one runs the
//! 14x14 layers about 1.4 times as fast.)

use gconv_shape::Geometry;

use super::super::{ForwardKernel, Parts};
use super::{Filters, PlaneChannels, Planes, planes_per_task};
use crate::epilogue::{Epilogue, Sink};
use crate::exec::workspace::{Output, Workspace};
use crate::select::Problem;
use crate::simd::{Element, Simd, WithSimd, dispatch, lanes_of};
use crate::{Error, Isa};

/// Vectors of output positions computed together: independent accumulators that keep both
/// FMA units busy through their latency, each tap's weight broadcast once for all of them.
pub(crate) const TILE_VECTORS: usize = 8;

/// Whether `geometry` suits this kernel: depthwise, stride 1, output as large as the input.
pub(crate) fn suits(geometry: &Geometry) -> bool {
    geometry.in_channels_per_group() == 1
        && geometry.stride() == [1, 1]
        && geometry.output_size() == geometry.input_size()
}

/// A stride-1 depthwise convolution (one input channel per group, any channel multiplier)
/// whose output is the input's size, prepared for the shifted-plane kernel.
#[derive(Debug)]
pub(crate) struct ShiftedEngine<T, E> {
    geometry: Geometry,
    isa: Isa,
    filters: Filters<T>,
    /// Per tap, where its input lies relative to the output position, in elements.
    shifts: Vec<isize>,
    /// `[tap][vector]`: the lanes of each vector of output positions whose input for the tap
    /// lies inside the plane.
    masks: Vec<u32>,
    /// The smallest and the largest shift: how far before its position a vector's taps
    /// start reading and how far after they end.
    reach: [isize; 2],
    /// Vectors of `LANES` positions per plane, the last one possibly partial.
    vectors: usize,
    /// Planes per task.
    planes_per_task: usize,
    epilogue: E,
}

impl<T: Element, E: Epilogue<T>> ShiftedEngine<T, E> {
    /// The engine for the problem of `parts` (which [`suits`] it); an error where its masks
    /// would be too many (a large or far-padded plane).
    pub fn new(parts: Parts<'_, T, E>) -> Result<Self, Error> {
        let Problem { geometry, isa, .. } = parts.problem;
        let too_large = Error::TooLarge {
            what: "the shifted-plane depthwise kernel's masks and shifts (a forced kernel on a large or far-padded plane)",
        };
        let [height, width] = geometry.input_size();
        let plane = height * width;
        let lanes = lanes_of::<T>(isa);
        let vectors = plane.div_ceil(lanes);
        let taps = geometry.reduction_len();
        if vectors
            .checked_mul(taps)
            .is_none_or(|masks| masks > MAX_MASKS)
        {
            return Err(too_large);
        }
        let (shifts, masks) = shifts_and_masks(geometry, lanes, vectors).ok_or(too_large)?;
        let reach = [
            shifts.iter().copied().min().unwrap_or(0),
            shifts.iter().copied().max().unwrap_or(0),
        ];
        Ok(ShiftedEngine {
            geometry: *geometry,
            isa,
            filters: Filters::new(geometry, parts.weights),
            shifts,
            masks,
            reach,
            vectors,
            planes_per_task: planes_per_task(geometry, plane),
            epilogue: parts.epilogue,
        })
    }
}

/// Per tap of `geometry` (stride 1, output the input's size), where its input lies relative
/// to the output position (`(i·dH − top)·W + (j·dW − left)`), and per tap and vector of
/// `lanes` positions the lanes whose input lies inside the plane; `None` past `isize`.
fn shifts_and_masks(
    geometry: &Geometry,
    lanes: usize,
    vectors: usize,
) -> Option<(Vec<isize>, Vec<u32>)> {
    let [height, width] = geometry.input_size();
    let [kernel_h, kernel_w] = geometry.kernel_size();
    let [dilation_h, dilation_w] = geometry.dilation();
    let padding = geometry.padding();
    let plane = height * width;
    // Window offsets, rows and columns, relative to the output position: `(i·dH − top)` and
    // `(j·dW − left)`, each within the window's reach, which Geometry computed.
    let signed = |value: usize| isize::try_from(value).ok();
    let mut row_offsets = Vec::with_capacity(kernel_h);
    for i in 0..kernel_h {
        row_offsets.push(signed(i * dilation_h)? - signed(padding.top)?);
    }
    let mut column_offsets = Vec::with_capacity(kernel_w);
    for j in 0..kernel_w {
        column_offsets.push(signed(j * dilation_w)? - signed(padding.left)?);
    }
    let (height, width) = (signed(height)?, signed(width)?);
    let mut shifts = Vec::with_capacity(kernel_h * kernel_w);
    let mut masks = Vec::with_capacity(kernel_h * kernel_w * vectors);
    for &row in &row_offsets {
        for &column in &column_offsets {
            shifts.push(row.checked_mul(width)?.checked_add(column)?);
            for vector in 0..vectors {
                let mut mask = 0u32;
                for lane in 0..lanes {
                    let position = vector * lanes + lane;
                    if position >= plane {
                        break;
                    }
                    let (out_row, out_column) =
                        (signed(position)? / width, signed(position)? % width);
                    let inside = (0..height).contains(&(out_row + row))
                        && (0..width).contains(&(out_column + column));
                    mask |= u32::from(inside) << lane;
                }
                masks.push(mask);
            }
        }
    }
    Some((shifts, masks))
}

impl<T: Element, E: Epilogue<T>> ForwardKernel<T> for ShiftedEngine<T, E> {
    /// None: the input is read where it lies.
    fn scratch_len(&self) -> usize {
        0
    }

    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool) {
        let [height, width] = self.geometry.input_size();
        let chunk = self.planes_per_task * height * width;
        workspace.for_each_chunk(parallel, output, self.epilogue, chunk, |_, index, sink| {
            let task = Planes::task(self, input, index, self.planes_per_task, sink);
            dispatch(self.isa, task);
        });
    }
}

/// Masks a plan may work out (a megabyte: about a 200x200 plane of 7x7 taps on AVX2); past
/// that the plane is no longer small and other kernels run it.
const MAX_MASKS: usize = 1 << 18;

impl<T: Element, E: Epilogue<T>> WithSimd<T> for Planes<'_, '_, ShiftedEngine<T, E>, T, E> {
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let (engine, input, first_plane) = (self.engine, self.input, self.first_plane);
        let mut sink = self.sink;
        let geometry = &engine.geometry;
        let [height, width] = geometry.input_size();
        let plane = height * width;
        let taps = geometry.reduction_len();
        let out_channels = geometry.out_channels();
        let multiplier = geometry.out_channels_per_group();
        assert!(S::LANES * engine.vectors >= plane);
        assert_eq!(engine.masks.len(), taps * engine.vectors);
        let channels = PlaneChannels::new(first_plane, out_channels, multiplier);
        let planes = sink.len() / plane;
        for (plane_index, (channel, input_plane)) in (0..planes).zip(channels) {
            assert!((input_plane + 1) * plane <= input.len());
            let shifted = ShiftedPlane {
                simd,
                engine,
                input,
                plane_start: input_plane * plane,
                plane_len: plane,
                weights: engine.filters.weights(channel),
                bias: simd.splat(engine.filters.bias(channel)),
            };
            shifted.convolve(&mut sink, plane_index * plane);
        }
    }
}

/// One plane's weights and where its input starts in the whole input, beside the plan's
/// shifts and masks.
struct ShiftedPlane<'a, S: Simd, E> {
    simd: S,
    engine: &'a ShiftedEngine<S::Elem, E>,
    /// All of the input: a vector's taps may read the planes either side, in lanes their
    /// mask leaves out.
    input: &'a [S::Elem],
    plane_start: usize,
    /// Positions per plane.
    plane_len: usize,
    weights: &'a [S::Elem],
    bias: S::Vector,
}

impl<S: Simd, E: Epilogue<S::Elem>> ShiftedPlane<'_, S, E> {
    /// Loop order: the plane's vectors of positions in tiles of [`TILE_VECTORS`] (the last
    /// tile the rest), then the taps, each one load and masked fused multiply-add per vector.
    #[inline(always)]
    fn convolve(&self, output: &mut Sink<'_, S::Elem, E>, base: usize) {
        let mut first = 0;
        while self.engine.vectors - first >= TILE_VECTORS {
            self.tile::<TILE_VECTORS>(first, output, base);
            first += TILE_VECTORS;
        }
        macro_rules! rest {
            ($($size:literal),*) => {
                match self.engine.vectors - first {
                    $($size => self.tile::<$size>(first, output, base),)*
                    _ => {}
                }
            };
        }
        rest!(1, 2, 3, 4, 5, 6, 7);
    }

    /// Vectors `first..first + V` of the plane's output positions: whole loads where every
    /// tap's vector lies inside the input (the lanes outside the plane multiply-add nothing),
    /// masked loads only at the input's two ends (masked loads throughout measured a fifth
    /// slower).
    #[inline(always)]
    fn tile<const V: usize>(&self, first: usize, output: &mut Sink<'_, S::Elem, E>, base: usize) {
        // Positions inside the input, so these fit in isize (the input does); the reach may be
        // anything a far-padded plane gives.
        let start = (self.plane_start + first * S::LANES) as isize;
        let end = start + (V * S::LANES) as isize;
        let inside = start.saturating_add(self.engine.reach[0]) >= 0
            && end.saturating_add(self.engine.reach[1]) <= self.input.len() as isize;
        if inside {
            self.tile_reading::<V, false>(first, output, base)
        } else {
            self.tile_reading::<V, true>(first, output, base)
        }
    }

    /// [`ShiftedPlane::tile`], loading through the tap's masks if `MASKED`.
    #[inline(always)]
    fn tile_reading<const V: usize, const MASKED: bool>(
        &self,
        first: usize,
        output: &mut Sink<'_, S::Elem, E>,
        base: usize,
    ) {
        let (simd, lanes) = (self.simd, S::LANES);
        let mut acc = [self.bias; V];
        for (tap, (&shift, &weight)) in self.engine.shifts.iter().zip(self.weights).enumerate() {
            let weight = simd.splat(weight);
            let base = self
                .input
                .as_ptr()
                .wrapping_add(self.plane_start + first * lanes)
                .wrapping_offset(shift);
            let masks = &self.engine.masks[tap * self.engine.vectors + first..][..V];
            for (vector, (sum, &mask)) in acc.iter_mut().zip(masks).enumerate() {
                let source = base.wrapping_add(vector * lanes);
                // SAFETY: without `MASKED`, all LANES elements from `source` lie inside the
                // input (`tile` checked the taps' reach); with it, the lanes set in `mask`
                // are positions whose input for this tap lies inside the plane (worked out by
                // the plan for this geometry), and `source + lane` is that input.
                let x = unsafe {
                    if MASKED {
                        simd.load_masked(source, mask)
                    } else {
                        simd.load(source)
                    }
                };
                *sum = simd.mul_add_masked(weight, x, *sum, mask);
            }
        }
        let plane = self.plane_len;
        for (vector, &sum) in acc.iter().enumerate() {
            let start = (first + vector) * lanes;
            output.store_prefix(simd, base + start, sum, (plane - start).min(lanes));
        }
    }
}
