//! The depthwise kernels (one input channel per group, any channel multiplier `C_out/C_in`):
//!
//! * [`streamed`] — bands of output columns streamed down the plane, every input row loaded
//!   once (3x3 and 5x5 with stride 2; 3x3, 5x5 and 7x7 with stride 1, dilated or not);
//! * [`shifted`] — small planes whose output is the input's size, every tap the input plane
//!   shifted, read under a lane mask;
//! * [`unpacked`] — tiles of output rows read straight from the input rows, on larger planes;
//! * [`lanes`] — channels in lanes, on small or strided planes.
//!
//! Depthwise layers none of them takes run on the grouped kernels.

use std::sync::Arc;

use gconv_shape::Geometry;

use crate::epilogue::Sink;
use crate::simd::Element;
use crate::weights::Weights;

pub(crate) mod lanes;
pub(crate) mod shifted;
pub(crate) mod streamed;
pub(crate) mod unpacked;

/// One task of a kernel `K` that runs whole planes: output planes from `first_plane` on (as
/// many as `sink` holds), and the whole input.
pub(crate) struct Planes<'a, 's, K, T, E> {
    pub engine: &'a K,
    pub input: &'a [T],
    pub first_plane: usize,
    pub sink: Sink<'s, T, E>,
}

impl<'a, 's, K, T, E> Planes<'a, 's, K, T, E> {
    /// Task `index` of `engine` when each task takes `planes_per_task` planes.
    pub fn task(
        engine: &'a K,
        input: &'a [T],
        index: usize,
        planes_per_task: usize,
        sink: Sink<'s, T, E>,
    ) -> Self {
        Planes {
            engine,
            input,
            first_plane: index * planes_per_task,
            sink,
        }
    }
}

/// Each output channel's filter, `[C_out][kH·kW]` (the caller's layout), and bias.
#[derive(Debug)]
pub(crate) struct Filters<T> {
    weights: Arc<[T]>,
    bias: Arc<[T]>,
    taps: usize,
}

impl<T: Element> Filters<T> {
    /// The filters of `weights` (the bias zeros without one) for `geometry`.
    pub fn new(geometry: &Geometry, weights: &Weights<T>) -> Filters<T> {
        Filters {
            weights: weights.as_given(),
            bias: weights.bias_or_zeros(geometry),
            taps: geometry.reduction_len(),
        }
    }

    /// Output channel `channel`'s `kH·kW` weights.
    #[inline(always)]
    pub fn weights(&self, channel: usize) -> &[T] {
        &self.weights[channel * self.taps..][..self.taps]
    }

    /// Output channel `channel`'s bias.
    #[inline(always)]
    pub fn bias(&self, channel: usize) -> T {
        self.bias[channel]
    }
}

/// Output elements a task of whole planes takes at least, several small planes each: a task
/// is claimed, dispatched and set up once for all of them.
#[cfg(not(test))]
const MIN_TASK_ELEMENTS: usize = 1024;
/// (The tests' planes are small: tasks of a few planes each, so that tasks start at planes
/// of every channel and channel-multiplier copy.)
#[cfg(test)]
const MIN_TASK_ELEMENTS: usize = 24;

/// Planes per task for output planes of `out_plane` elements: at least [`MIN_TASK_ELEMENTS`]
/// worth, at most all of them.
pub(crate) fn planes_per_task(geometry: &Geometry, out_plane: usize) -> usize {
    let output_planes = geometry.batch() * geometry.out_channels();
    MIN_TASK_ELEMENTS
        .div_ceil(out_plane.max(1))
        .clamp(1, output_planes.max(1))
}

/// Output planes `first..` of a depthwise layer, `C_out = C_in · multiplier` per sample: for
/// each, its output channel (its weights and bias) and the input plane of the whole batch it
/// reads, `plane / multiplier`. Counted along rather than divided out per plane: a 7x7 plane
/// is about a hundred cycles of work, and its divisions measured 9 %.
pub(crate) struct PlaneChannels {
    out_channels: usize,
    multiplier: usize,
    channel: usize,
    input_plane: usize,
    copy: usize,
}

impl PlaneChannels {
    /// From output plane `first` on (`out_channels` and `multiplier` at least 1).
    pub fn new(first: usize, out_channels: usize, multiplier: usize) -> PlaneChannels {
        PlaneChannels {
            out_channels,
            multiplier,
            channel: first % out_channels,
            input_plane: first / multiplier,
            copy: first % multiplier,
        }
    }
}

impl Iterator for PlaneChannels {
    /// The plane's output channel and input plane.
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        let current = (self.channel, self.input_plane);
        self.channel += 1;
        if self.channel == self.out_channels {
            self.channel = 0;
        }
        self.copy += 1;
        if self.copy == self.multiplier {
            (self.input_plane, self.copy) = (self.input_plane + 1, 0);
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_division_gives() {
        for (out_channels, multiplier) in [(1, 1), (6, 1), (6, 2), (6, 3), (4, 4)] {
            for first in 0..3 * out_channels {
                let counted = PlaneChannels::new(first, out_channels, multiplier);
                for (plane, (channel, input_plane)) in (first..first + 40).zip(counted) {
                    assert_eq!(channel, plane % out_channels);
                    assert_eq!(input_plane, plane / multiplier);
                }
            }
        }
    }
}
