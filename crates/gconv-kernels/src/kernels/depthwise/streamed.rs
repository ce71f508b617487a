//! Depthwise convolution, 3x3 and 5x5 windows with stride 2 and 3x3, 5x5 and 7x7 windows
//! with stride 1 (dilated or not), bands of output columns streamed down their plane, each
//! input row loaded once.
//!
//! A band of up to four vectors of output columns walks down the whole plane, row by row
//! (the input read in the order it lies, as the prefetchers like it), so that every input row
//! is loaded once per vector and feeds every output row whose window holds it:
//!
//! * stride 2 (3x3): output row `r` reads input rows `2r − top ..= 2r − top + 2`, the last of
//!   them the first of row `r + 1`'s, so that row's three taps per vector are carried in
//!   registers to the next output row: per output row and vector, two new input rows, each
//!   one pair of vectors deinterleaved into its three taps (the even and the odd columns of
//!   the pair from the window's middle column, and the odd ones again one lane on), nine
//!   multiply-adds;
//! * stride 2 (5x5): each padded row is window row `p − 2r` of the (up to three) output rows
//!   `r` whose windows hold it, their sums rolling down: per output row and vector, two new
//!   input rows, each three pairs of vectors deinterleaved into its five taps;
//! * stride 1 (`K`x`K`): input row `k` is the last window row of output row
//!   `k + top − K + 1`, the one before of the next, …, the first of the `K`-th, so `K − 1`
//!   partial sums per vector roll down with the rows: per input row and vector, `K` shifted
//!   loads, `K²` multiply-adds, one finished sum stored, one begun from the bias;
//! * stride 1 with dilation `dH`x`dW` (DeepLab's atrous layers): tap `j` loads from `dW·j`
//!   columns on, and the output rows fall into `dH` phases (rows `p, p + dH, p + 2·dH, …`)
//!   whose windows share rows only within the phase, each phase walked down the plane as
//!   above over every `dH`-th input row.
//!
//! The weights are broadcast once per plane, rows of the padding add nothing, and a task
//! takes several planes, claimed and dispatched once. On large inputs (see [`prefetches`]),
//! as a plane's first band loads an input row, it prefetches the same row of the next plane:
//! the hardware prefetchers learn every plane afresh at its 4 KiB pages and never learnt a
//! dilated walk's strides (DeepLabv3's 960 channels of 65x65 with dilation 4 ran at under half
//! the speed without it; measured in `TUNING.md`, `depthwise-streamed-stride-1`). (The
//! unpacked kernel's blocks of 8, 4 and 1 rows, each set up and dispatched on its own, spent
//! about 47 cycles per output vector on MobileNetV2's 28x28 stride-2 layer, against 9
//! multiply-adds and 6 deinterleaving shuffles.)

use gconv_shape::Geometry;

use super::super::{ForwardKernel, Parts};
use super::{Filters, PlaneChannels, Planes, planes_per_task};
use crate::epilogue::{Epilogue, Sink};
use crate::exec::workspace::{Output, Workspace};
use crate::select::Problem;
use crate::simd::{Element, Simd, WithSimd, dispatch, lanes_between, lanes_of, prefetch};
use crate::{Error, Isa};

/// The window's side with stride 2: 3x3, the stride-2 depthwise layer of MobileNet,
/// EfficientNet and their kin, whose nine weights, three carried taps, six new ones and the
/// accumulator fit in the registers of every tier.
const SIDE: usize = 3;

/// The largest window side with stride 1: 3x3, 5x5 (EfficientNet) and 7x7 (ConvNeXt).
const MAX_SIDE: usize = 7;

/// Vectors of output columns a band walks down the plane together: four (128 input columns
/// per row on AVX-512, MobileNetV2's 112x112 plane in one band; with stride 2, their carried
/// taps twelve registers), but two for 7x7 windows, whose taps and sums then fit AVX-512's
/// registers (see [`StreamedPlane::band_stride_one`]; measured in `TUNING.md`,
/// `depthwise-streamed-stride-1`).
const fn band_vectors(stride: usize, side: usize) -> usize {
    if stride == 1 && side == 7 { 2 } else { 4 }
}

/// Whether `geometry` suits this kernel: depthwise, 3x3 or 5x5 with stride 2 without
/// dilation, 3x3, 5x5 or 7x7 with stride 1 and any dilation.
pub(crate) fn suits(geometry: &Geometry) -> bool {
    geometry.in_channels_per_group() == 1
        && match geometry.stride() {
            [2, 2] => {
                geometry.dilation() == [1, 1] && matches!(geometry.kernel_size(), [3, 3] | [5, 5])
            }
            [1, 1] => matches!(geometry.kernel_size(), [3, 3] | [5, 5] | [7, 7]),
            _ => false,
        }
}

/// A depthwise convolution (one input channel per group, any channel multiplier), 3x3 or 5x5
/// with stride 2 without dilation or 3x3, 5x5 or 7x7 with stride 1 and any dilation, prepared
/// for the streamed kernel.
#[derive(Debug)]
pub(crate) struct StreamedEngine<T, E> {
    geometry: Geometry,
    isa: Isa,
    filters: Filters<T>,
    /// Per vector of output columns, the input columns its taps read from every row.
    columns: Vec<VectorColumns>,
    /// Planes per task.
    planes_per_task: usize,
    /// Whether each plane prefetches the next one as it goes (see [`prefetches`]).
    prefetch: bool,
    epilogue: E,
}

/// Whether the streamed kernel prefetches the next plane on `geometry`: stride 1 or a 5x5
/// window (3x3 stride-2 planes ran slower with it), on inputs past which the hardware
/// prefetchers fell behind: 8 MiB where dilated rows are walked phase by phase, 16 MiB where
/// rows are read in order. Below that prefetching cost up to 5–7 %. (Measured in
/// `TUNING.md`, `depthwise-streamed-stride-1`.)
pub(crate) fn prefetches<T>(geometry: &Geometry) -> bool {
    let bytes = geometry.input_len() as u128 * size_of::<T>() as u128;
    let walks_rows = geometry.stride() == [1, 1] || geometry.kernel_size() != [SIDE, SIDE];
    let threshold = match geometry.dilation() {
        [1, 1] => PREFETCH_MIN_BYTES,
        _ => PREFETCH_DILATED_MIN_BYTES,
    };
    walks_rows && bytes >= threshold
}

/// Input bytes from which each plane of a dilated layer prefetches the next one.
const PREFETCH_DILATED_MIN_BYTES: u128 = 8 << 20;

/// Input bytes from which each plane of another layer prefetches the next one.
const PREFETCH_MIN_BYTES: u128 = 16 << 20;

/// The input columns a vector of output columns reads from an input row, from `start` on.
/// With stride 2 and a 5x5 window: the pairs of vectors from `start`, `start + 2` and
/// `start + 4`, whose even and odd columns are taps 0 to 4. With stride 2 and a 3x3 window:
/// the pair of vectors from `start` (lane `l` of its even columns is tap 1's
/// input for output lane `l`, of its odd columns tap 2's) and the column before it (tap 0's
/// input for lane 0; its other lanes are tap 2's, one lane on). With stride 1: the vector
/// from `start + dW·j`, tap `j`'s.
#[derive(Debug, Clone, Copy)]
struct VectorColumns {
    /// Stride 2, 3x3: the input column of the pair's lane 0, `2·v·LANES − left + 1`; 5x5:
    /// tap 0's, `2·v·LANES − left`; stride 1: tap 0's, `v·LANES − left`. Negative in the
    /// padding.
    start: isize,
    /// The lanes inside the row (`0 ≤ column < W`): stride 2, 3x3, of the pair's low and
    /// high vectors, and the last lane of the vector ending at `start` if column `start − 1`
    /// is inside; 5x5, of each pair's low and high vectors; stride 1, of each tap's vector.
    masks: [u32; MAX_SIDE],
    /// Whether every lane the vector loads whole is inside the row: loaded without masks.
    whole: bool,
}

impl<T: Element, E: Epilogue<T>> StreamedEngine<T, E> {
    /// The engine for the problem of `parts` (which [`suits`] it).
    pub fn new(parts: Parts<'_, T, E>) -> Result<Self, Error> {
        let Problem { geometry, isa, .. } = parts.problem;
        let [out_h, out_w] = geometry.output_size();
        let columns = vector_columns(geometry, lanes_of::<T>(isa)).ok_or(Error::TooLarge {
            what: "the streamed depthwise kernel's column offsets (a far-padded plane)",
        })?;
        Ok(StreamedEngine {
            geometry: *geometry,
            isa,
            filters: Filters::new(geometry, parts.weights),
            columns,
            planes_per_task: planes_per_task(geometry, out_h * out_w),
            prefetch: prefetches::<T>(geometry),
            epilogue: parts.epilogue,
        })
    }
}

/// Per vector of `lanes` output columns of `geometry`, the input columns its taps read from
/// every row (see [`VectorColumns`]); `None` past `isize`.
fn vector_columns(geometry: &Geometry, lanes: usize) -> Option<Vec<VectorColumns>> {
    let [_, width] = geometry.input_size();
    let [_, out_w] = geometry.output_size();
    let signed = |value: usize| isize::try_from(value).ok();
    let (width, left) = (signed(width)?, signed(geometry.padding().left)?);
    let dilation = signed(geometry.dilation()[1])?;
    // Every column offset below lies within [−left − LANES, 2·out_w + 2·LANES + dW·(K − 1)],
    // and out_w and the dilated window's reach are at most the padded width, which Geometry
    // checked fits in usize.
    let lanes_inside = |first: isize| {
        let first_inside = (-first).clamp(0, lanes as isize) as usize;
        let end_inside = (width - first).clamp(0, lanes as isize) as usize;
        if first_inside < end_inside {
            lanes_between(first_inside, end_inside)
        } else {
            0
        }
    };
    let all = lanes_between(0, lanes);
    let step = lanes as isize;
    let stride_two = geometry.stride() == [2, 2];
    let side = geometry.kernel_size()[0];
    let mut columns = Vec::with_capacity(out_w.div_ceil(lanes));
    for vector in 0..out_w.div_ceil(lanes) {
        let mut masks = [0; MAX_SIDE];
        let (start, masked) = if stride_two && side != SIDE {
            // Tap j's inputs: the even (j even) or odd columns of the pair from
            // `start + 2·(j / 2)`.
            let start = signed(2 * vector * lanes)? - left;
            let halves = 2 * side.div_ceil(2);
            for (half, mask) in masks[..halves].iter_mut().enumerate() {
                *mask = lanes_inside(start + 2 * (half / 2) as isize + step * (half % 2) as isize);
            }
            (start, halves)
        } else if stride_two {
            let start = signed(2 * vector * lanes)? - left + 1;
            masks[..3].copy_from_slice(&[
                lanes_inside(start),
                lanes_inside(start + step),
                lanes_inside(start - step) & (1 << (lanes - 1)),
            ]);
            // (The column before the pair is loaded through its mask in any case.)
            (start, 2)
        } else {
            let start = signed(vector * lanes)? - left;
            for (tap, mask) in masks[..side].iter_mut().enumerate() {
                *mask = lanes_inside(start + dilation * tap as isize);
            }
            (start, side)
        };
        let whole = masks[..masked].iter().all(|&mask| mask == all);
        columns.push(VectorColumns {
            start,
            masks,
            whole,
        });
    }
    Some(columns)
}

impl<T: Element, E: Epilogue<T>> ForwardKernel<T> for StreamedEngine<T, E> {
    /// None: the input is read where it lies.
    fn scratch_len(&self) -> usize {
        0
    }

    fn run(&self, input: &[T], output: Output<'_, T>, workspace: &Workspace<T>, parallel: bool) {
        let [out_h, out_w] = self.geometry.output_size();
        let chunk = self.planes_per_task * out_h * out_w;
        // Bands of `band_vectors` vectors, the last one 1..=band_vectors of them; each layout
        // its own dispatched function (one function for every layout measured 8 % slower on
        // the one-vector planes: the other layouts' loops took their registers).
        let vectors = self.columns.len();
        let width = band_vectors(self.geometry.stride()[0], self.geometry.kernel_size()[0]);
        let full = vectors > width;
        let last = vectors - (vectors - 1) / width * width;
        let edge = self.columns.iter().any(|columns| !columns.whole);
        // Dilated or prefetching layers on code of their own, so that the others run on code
        // without their multiplications and checks (which cost 14x14 to 112x112 planes
        // 3–10 %).
        let phased = self.geometry.dilation() != [1, 1] || self.prefetch;
        workspace.for_each_chunk(parallel, output, self.epilogue, chunk, |_, index, sink| {
            let task = Planes::task(self, input, index, self.planes_per_task, sink);
            let isa = self.isa;
            let window = [self.geometry.stride()[0], self.geometry.kernel_size()[0]];
            // Per window, the last bands 1..=band_vectors it can have; with more than one
            // band, bands of `band_vectors` before it.
            macro_rules! layouts {
                ($phased:literal: $([$stride:literal, $side:literal: $($last:literal),*]),*) => {
                    match (window, full, last, edge) {
                        $(
                            ([$stride, $side], false, 1, false) => dispatch(isa, task.in_bands::<$stride, $side, 0, 1, false, $phased>()),
                            $(
                                ([$stride, $side], false, $last, _) => dispatch(isa, task.in_bands::<$stride, $side, 0, $last, true, $phased>()),
                                ([$stride, $side], true, $last, _) => dispatch(isa, task.in_bands::<$stride, $side, { band_vectors($stride, $side) }, $last, true, $phased>()),
                            )*
                        )*
                        _ => unreachable!("the streamed kernel's windows (`suits`) and bands"),
                    }
                };
            }
            // (3x3 stride 2 is neither dilated nor prefetched: see `prefetches`.)
            if phased {
                layouts!(
                    true: [1, 3: 1, 2, 3, 4],
                    [1, 5: 1, 2, 3, 4],
                    [1, 7: 1, 2],
                    [2, 5: 1, 2, 3, 4]
                );
            } else {
                layouts!(
                    false: [1, 3: 1, 2, 3, 4],
                    [1, 5: 1, 2, 3, 4],
                    [1, 7: 1, 2],
                    [2, 3: 1, 2, 3, 4],
                    [2, 5: 1, 2, 3, 4]
                );
            }
        });
    }
}

impl<'a, 's, T, E> Planes<'a, 's, StreamedEngine<T, E>, T, E> {
    /// This task with stride `STRIDE` and a `K`x`K` window, its planes' vectors in bands of
    /// `WIDTH` (none if 0) and a last band of `LAST`, which loads through masks if `EDGE`
    /// (see [`StreamedPlane::masked`]), dilated or prefetching if `PHASED`.
    fn in_bands<
        const STRIDE: usize,
        const K: usize,
        const WIDTH: usize,
        const LAST: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        self,
    ) -> PlanesInBands<'a, 's, T, E, STRIDE, K, WIDTH, LAST, EDGE, PHASED> {
        PlanesInBands { planes: self }
    }
}

/// A task of stride `STRIDE` and a `K`x`K` window whose planes' vectors of columns come in
/// bands of `WIDTH` (none if 0) and a last band of `LAST`, dilated or prefetching if `PHASED`.
struct PlanesInBands<
    'a,
    's,
    T,
    E,
    const STRIDE: usize,
    const K: usize,
    const WIDTH: usize,
    const LAST: usize,
    const EDGE: bool,
    const PHASED: bool,
> {
    planes: Planes<'a, 's, StreamedEngine<T, E>, T, E>,
}

impl<
    T: Element,
    E: Epilogue<T>,
    const STRIDE: usize,
    const K: usize,
    const WIDTH: usize,
    const LAST: usize,
    const EDGE: bool,
    const PHASED: bool,
> WithSimd<T> for PlanesInBands<'_, '_, T, E, STRIDE, K, WIDTH, LAST, EDGE, PHASED>
{
    #[inline(always)]
    fn with_simd<S: Simd<Elem = T>>(self, simd: S) {
        let Planes { engine, input, .. } = self.planes;
        let (first_plane, mut sink) = (self.planes.first_plane, self.planes.sink);
        let geometry = &engine.geometry;
        let [height, width] = geometry.input_size();
        let [out_h, out_w] = geometry.output_size();
        let (plane, out_plane) = (height * width, out_h * out_w);
        let out_channels = geometry.out_channels();
        let multiplier = geometry.out_channels_per_group();
        assert_eq!(engine.columns.len(), out_w.div_ceil(S::LANES));
        let channels = PlaneChannels::new(first_plane, out_channels, multiplier);
        let planes = sink.len() / out_plane;
        for (plane_index, (channel, input_plane)) in (0..planes).zip(channels) {
            // Exactly `K²` (a constant): the entries past them are never written, nor their
            // zeroing kept (with a slice of unknown length, a memset of the whole array was a
            // fifth of a 7x7 plane's time).
            let weights = &engine.filters.weights(channel)[..K * K];
            let mut splat = [simd.splat(T::ZERO); MAX_SIDE * MAX_SIDE];
            for (vector, &weight) in splat.iter_mut().zip(weights) {
                *vector = simd.splat(weight);
            }
            let streamed = StreamedPlane {
                simd,
                input: &input[input_plane * plane..][..plane],
                next_input: match engine.prefetch {
                    true => input.get((input_plane + 1) * plane..(input_plane + 2) * plane),
                    false => None,
                }
                .unwrap_or(&[]),
                weights: splat,
                bias: simd.splat(engine.filters.bias(channel)),
                height,
                width,
                pad_top: geometry.padding().top,
                dilation: geometry.dilation(),
                out_h,
                out_w,
            };
            let base = plane_index * out_plane;
            streamed.convolve::<_, STRIDE, K, WIDTH, LAST, EDGE, PHASED>(
                &engine.columns,
                &mut sink,
                base,
            );
        }
    }
}

/// Vectors in the widest band (see [`band_vectors`]).
pub(crate) const MAX_BAND: usize = 4;

/// Where a band of `B` vectors stores: its output plane (`out_h` rows from `base` in
/// `output`), and per vector the first column and the number of columns it holds.
struct Band<const B: usize> {
    base: usize,
    out_h: usize,
    vectors: [(usize, usize); B],
    /// Whether this is the plane's first band, the one that prefetches the next plane.
    leads: bool,
}

impl<const B: usize> Band<B> {
    /// Vectors `first..first + B` of the output plane of `out_h` rows of `out_w` from `base`
    /// in `output`.
    #[inline(always)]
    fn new<T: Element, E: Epilogue<T>>(
        output: &Sink<'_, T, E>,
        base: usize,
        [out_h, out_w]: [usize; 2],
        lanes: usize,
        first: usize,
    ) -> Band<B> {
        // The plane's region once, so that a store checks only its row (see `store`).
        output.check_region(base, out_w, out_h, out_w);
        let vectors = std::array::from_fn(|vector| {
            let start = (first + vector) * lanes;
            assert!(start < out_w);
            (start, (out_w - start).min(lanes))
        });
        Band {
            base,
            out_h,
            vectors,
            leads: first == 0,
        }
    }
}

/// One plane's input, weights and bias, and the geometry a column of it needs.
struct StreamedPlane<'a, S: Simd> {
    simd: S,
    input: &'a [S::Elem],
    /// The next plane of the input, prefetched row by row (empty after the last, or where the
    /// engine does not prefetch).
    next_input: &'a [S::Elem],
    /// Tap `(i, j)` at `K·i + j` (the first `K²`), each broadcast.
    weights: [S::Vector; MAX_SIDE * MAX_SIDE],
    bias: S::Vector,
    height: usize,
    width: usize,
    pad_top: usize,
    /// Stride 1: window rows and columns `dH` and `dW` apart.
    dilation: [usize; 2],
    out_h: usize,
    out_w: usize,
}

impl<S: Simd> StreamedPlane<'_, S> {
    /// Loop order: bands of `WIDTH` vectors of output columns (none if 0), then a
    /// last band of `LAST`, each walked down the plane row by row (see
    /// [`StreamedPlane::band`]), dilated or prefetching if `PHASED`.
    #[inline(always)]
    fn convolve<
        E: Epilogue<S::Elem>,
        const STRIDE: usize,
        const K: usize,
        const WIDTH: usize,
        const LAST: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        &self,
        columns: &[VectorColumns],
        output: &mut Sink<'_, S::Elem, E>,
        base: usize,
    ) {
        let mut first = 0;
        if WIDTH > 0 {
            while columns.len() - first > WIDTH {
                self.band::<STRIDE, K, WIDTH, true, PHASED>(first, &columns[first..], output, base);
                first += WIDTH;
            }
        }
        assert_eq!(columns.len() - first, LAST);
        self.band::<STRIDE, K, LAST, EDGE, PHASED>(first, &columns[first..], output, base);
    }

    /// Output column vectors `first..first + B` (described from `columns[0]` on) by
    /// [`StreamedPlane::band_stride_one`], [`StreamedPlane::band_stride_two`] or
    /// [`StreamedPlane::band_stride_two_rolling`].
    #[inline(always)]
    fn band<
        const STRIDE: usize,
        const K: usize,
        const B: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        &self,
        first: usize,
        columns: &[VectorColumns],
        output: &mut Sink<'_, S::Elem, impl Epilogue<S::Elem>>,
        base: usize,
    ) {
        let columns: &[VectorColumns; B] = columns[..B].try_into().unwrap();
        let plane = [self.out_h, self.out_w];
        let band = Band::<B>::new(output, base, plane, S::LANES, first);
        if STRIDE == 1 {
            self.band_stride_one::<_, K, B, EDGE, PHASED>(&band, output, columns);
        } else if K == SIDE {
            self.band_stride_two::<_, B, EDGE>(&band, output, columns);
        } else {
            self.band_stride_two_rolling::<_, K, B, EDGE, PHASED>(&band, output, columns);
        }
    }

    /// Stride 1, a `K`x`K` window: output column vectors `first..first + B` of every output
    /// row, phase by phase of the vertical dilation `dH` if `PHASED` (else in one phase), each
    /// phase by [`StreamedPlane::phase_stride_one`].
    #[inline(always)]
    fn band_stride_one<
        E: Epilogue<S::Elem>,
        const K: usize,
        const B: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        columns: &[VectorColumns; B],
    ) {
        if !PHASED {
            let rows = [0, 1, band.out_h];
            self.phase_stride_one::<E, K, B, EDGE, false>(band, output, columns, rows);
            return;
        }
        let step = self.dilation[0];
        for phase in 0..step.min(band.out_h) {
            let rows = [phase, step, (band.out_h - phase).div_ceil(step)];
            self.phase_stride_one::<E, K, B, EDGE, true>(band, output, columns, rows);
        }
    }

    /// Stride 1, a `K`x`K` window, output rows `phase + step·t` for `t < rows`: output column
    /// vectors `first..first + B` of those rows, top to bottom, each row's vectors left to
    /// right. Counting the phase's rows alone (padded row `phase + step·u` as its row `u`),
    /// its row `k` is window row `K − 1` of its output row `k − K + 1`, row `K − 2` of the
    /// next, …, row 0 of the `K`-th: per vector, that first sum is finished and stored, the
    /// next `K − 2` carried on, the last begun from the bias, so every input row is loaded
    /// once per phase. Each output's chain: bias, then the taps in `(i, j)` order; rows of
    /// the padding add nothing.
    ///
    /// Where the band's taps and sums (`2·B·K` vectors) fit the registers, a row's taps are
    /// loaded for all `B` vectors first, then each weight is broadcast once for all of them;
    /// elsewhere vector by vector, each weight broadcast per vector (with four vectors of 7x7
    /// sums that order kept the sums on the stack, loaded and stored per row).
    #[inline(always)]
    fn phase_stride_one<
        E: Epilogue<S::Elem>,
        const K: usize,
        const B: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        columns: &[VectorColumns; B],
        [phase, step, rows]: [usize; 3],
    ) {
        // The phase's row `u`, in the padded plane; its output row `t`.
        let padded_row = |u: usize| self.input_row(phase + step * u);
        let output_row = |t: usize| phase + step * t;
        let prefetch_row = |row: Option<usize>| {
            if PHASED {
                self.prefetch_next(band, row);
            }
        };
        let dilation = if PHASED { self.dilation[1] } else { 1 };
        let add_row = |sum: S::Vector, i: usize, taps: &Option<[S::Vector; K]>| match taps {
            Some(taps) => self.add_window_row(sum, i, taps),
            None => sum,
        };
        // Per vector, the sums of the phase's output rows t .. t + K − 1 so far (the last
        // unused between rows): before its row 0, its padded rows 0 .. K − 1 added to the
        // outputs whose windows hold them, sums[m] (its output row m) taking its padded row p
        // as window row p − m.
        for padded in 0..K - 1 {
            prefetch_row(padded_row(padded));
        }
        let mut sums = [[self.bias; K]; B];
        for (sums, columns) in sums.iter_mut().zip(columns) {
            for padded in 0..K - 1 {
                let taps = self.row_taps::<1, K, B, EDGE>(padded_row(padded), columns, dilation);
                for (m, sum) in sums[..=padded].iter_mut().enumerate() {
                    *sum = add_row(*sum, padded - m, &taps);
                }
            }
        }
        if const { 2 * B * K + 2 <= S::ISA.registers() } {
            // Every vector's taps and sums in registers (AVX-512; below it, bands of one or
            // two 3x3 vectors): per input row, each weight is loaded once for the band's `B`
            // vectors, window row by window row (output row `r + m` takes the row as its
            // window row `K − 1 − m`).
            for t in 0..rows {
                let (r, row) = (output_row(t), padded_row(t + K - 1));
                prefetch_row(row);
                let mut acc = [[self.bias; K]; B];
                for (acc, sums) in acc.iter_mut().zip(&sums) {
                    acc[..K - 1].copy_from_slice(&sums[..K - 1]);
                }
                if row.is_some() {
                    let mut taps = [[self.simd.splat(S::Elem::ZERO); K]; B];
                    for (taps, columns) in taps.iter_mut().zip(columns) {
                        if let Some(row_taps) =
                            self.row_taps::<1, K, B, EDGE>(row, columns, dilation)
                        {
                            *taps = row_taps;
                        }
                    }
                    // Range loops over constants, fully unrolled: every index a constant,
                    // so the arrays stay in registers (iterator chains here left the sums
                    // on the stack, 10–20 % slower).
                    #[allow(clippy::needless_range_loop)]
                    for m in 0..K {
                        let window_row = K - 1 - m;
                        for j in 0..K {
                            let weight = self.weights[K * window_row + j];
                            for v in 0..B {
                                acc[v][m] = self.simd.mul_add(weight, taps[v][j], acc[v][m]);
                            }
                        }
                    }
                }
                for (vector, (acc, sums)) in acc.iter().zip(sums.iter_mut()).enumerate() {
                    self.store(band, output, r, vector, acc[0]);
                    sums[..K - 1].copy_from_slice(&acc[1..]);
                }
            }
            return;
        }
        for t in 0..rows {
            let (r, row) = (output_row(t), padded_row(t + K - 1));
            prefetch_row(row);
            // The band's vectors written out, whatever the compiler's unrolling heuristics
            // decide: as a loop (which it kept when the stores were checked), the sums lived
            // on the stack, 0.85 of the speed on 28x28 planes. (A macro, not a closure: a
            // closure left out of line runs without the tier's instructions.)
            macro_rules! each_vector {
                ($($vector:literal),*) => {$(
                    if $vector < B {
                        let sums = &mut sums[$vector];
                        let taps = self.row_taps::<1, K, B, EDGE>(row, &columns[$vector], dilation);
                        self.store(band, output, r, $vector, add_row(sums[0], K - 1, &taps));
                        for m in 1..K - 1 {
                            sums[m - 1] = add_row(sums[m], K - 1 - m, &taps);
                        }
                        sums[K - 2] = add_row(self.bias, 0, &taps);
                    }
                )*};
            }
            const { assert!(B <= MAX_BAND) };
            each_vector!(0, 1, 2, 3);
        }
    }

    /// Stride 2, a `K`x`K` window (5x5): output column vectors `first..first + B` of every
    /// output row, top to bottom, each row's vectors left to right. Padded row `p` is window
    /// row `p − 2r` of each output row `r` whose window holds it, the `⌈K/2⌉` sums of output
    /// rows `r ..` rolling down: per output row, its window's last two rows loaded, each
    /// added to every sum that takes it, the first sum finished and stored, a new one begun
    /// from the bias. Each output's chain: bias, then the taps in `(i, j)` order; rows of the
    /// padding add nothing.
    #[inline(always)]
    fn band_stride_two_rolling<
        E: Epilogue<S::Elem>,
        const K: usize,
        const B: usize,
        const EDGE: bool,
        const PHASED: bool,
    >(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        columns: &[VectorColumns; B],
    ) {
        // Sums of output rows r .. r + ⌈K/2⌉ (at most MAX_SIDE).
        let in_flight = K.div_ceil(2);
        // Adds padded row `padded` (its taps, if a row of the plane) to the sums of output
        // rows `r ..` whose windows hold it.
        let add_row = |sums: &mut [S::Vector; MAX_SIDE],
                       r: usize,
                       padded: usize,
                       taps: &Option<[S::Vector; K]>| {
            let Some(taps) = taps else {
                return;
            };
            for (m, sum) in sums[..in_flight].iter_mut().enumerate() {
                if let Some(i) = padded.checked_sub(2 * (r + m)).filter(|&i| i < K) {
                    *sum = self.add_window_row(*sum, i, taps);
                }
            }
        };
        if PHASED {
            for padded in 0..K - 2 {
                self.prefetch_next(band, self.input_row(padded));
            }
        }
        let mut sums = [[self.bias; MAX_SIDE]; B];
        for (sums, columns) in sums.iter_mut().zip(columns) {
            for padded in 0..K - 2 {
                let taps = self.row_taps::<2, K, B, EDGE>(self.input_row(padded), columns, 1);
                add_row(sums, 0, padded, &taps);
            }
        }
        for r in 0..band.out_h {
            let rows =
                [2 * r + K - 2, 2 * r + K - 1].map(|padded| (padded, self.input_row(padded)));
            if PHASED {
                for (_, row) in rows {
                    self.prefetch_next(band, row);
                }
            }
            for (vector, (sums, columns)) in sums.iter_mut().zip(columns).enumerate() {
                for (padded, row) in rows {
                    let taps = self.row_taps::<2, K, B, EDGE>(row, columns, 1);
                    add_row(sums, r, padded, &taps);
                }
                self.store(band, output, r, vector, sums[0]);
                for m in 1..in_flight {
                    sums[m - 1] = sums[m];
                }
                sums[in_flight - 1] = self.bias;
            }
        }
    }

    /// Stride 2: output column vectors `first..first + B` of every output row, top to
    /// bottom, each row's vectors left to right (the input read row after row: one vector
    /// at a time down the whole plane ran 18–26 % slower on 112x112 and 56x56 planes), every
    /// vector's window-last-row taps carried to the next output row as its first, so two
    /// input rows are loaded per output row. The rows whose windows lie inside the plane go
    /// two at a time (two independent chains of multiply-adds in flight) and load without
    /// checking which rows exist; the few whose windows reach into the padding check each
    /// row. Each output's chain: bias, then the taps in `(i, j)` order.
    #[inline(always)]
    fn band_stride_two<E: Epilogue<S::Elem>, const B: usize, const EDGE: bool>(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        columns: &[VectorColumns; B],
    ) {
        let out_h = band.out_h;
        // Output rows `first_inside..end_inside` read only rows of the plane.
        let top = self.pad_top;
        let first_inside = top.div_ceil(2).min(out_h);
        let end_inside = (self.height + top)
            .checked_sub(SIDE)
            .map_or(0, |reach| reach / 2 + 1)
            .clamp(first_inside, out_h);
        let mut carried = [[self.simd.splat(S::Elem::ZERO); SIDE]; B];
        for (taps, columns) in carried.iter_mut().zip(columns) {
            *taps = self.pair_row::<B, EDGE>(self.input_row(0), columns);
        }
        for r in 0..first_inside {
            self.row_checking_rows::<_, B, EDGE>(band, output, r, columns, &mut carried);
        }
        let mut r = first_inside;
        while r + 2 <= end_inside {
            let row = 2 * r + 1 - top;
            for (vector, (carried, columns)) in carried.iter_mut().zip(columns).enumerate() {
                let middle = self.pair_row::<B, EDGE>(Some(row), columns);
                let shared = self.pair_row::<B, EDGE>(Some(row + 1), columns);
                let next_middle = self.pair_row::<B, EDGE>(Some(row + 2), columns);
                let bottom = self.pair_row::<B, EDGE>(Some(row + 3), columns);
                self.store(
                    band,
                    output,
                    r,
                    vector,
                    self.sum([*carried, middle, shared]),
                );
                self.store(
                    band,
                    output,
                    r + 1,
                    vector,
                    self.sum([shared, next_middle, bottom]),
                );
                *carried = bottom;
            }
            r += 2;
        }
        for r in r..out_h {
            self.row_checking_rows::<_, B, EDGE>(band, output, r, columns, &mut carried);
        }
    }

    /// Output row `r` of a band, its window rows each checked to lie inside the plane.
    #[inline(always)]
    fn row_checking_rows<E: Epilogue<S::Elem>, const B: usize, const EDGE: bool>(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        r: usize,
        columns: &[VectorColumns; B],
        carried: &mut [[S::Vector; SIDE]; B],
    ) {
        for (vector, (carried, columns)) in carried.iter_mut().zip(columns).enumerate() {
            let middle = self.pair_row::<B, EDGE>(self.input_row(2 * r + 1), columns);
            let bottom = self.pair_row::<B, EDGE>(self.input_row(2 * r + 2), columns);
            self.store(
                band,
                output,
                r,
                vector,
                self.sum([*carried, middle, bottom]),
            );
            *carried = bottom;
        }
    }

    /// Prefetches input row `row` (none in the padding) of the next plane, from the plane's
    /// first band.
    #[inline(always)]
    fn prefetch_next<const B: usize>(&self, band: &Band<B>, row: Option<usize>) {
        if let Some(row) = row
            && band.leads
            && let Some(next) = self
                .next_input
                .get(row * self.width..(row + 1) * self.width)
        {
            prefetch(next);
        }
    }

    /// Row `padded` of the padded input (window row `i` of output row `r` is row `s·r + i`):
    /// input row `padded − top`, if inside the plane.
    #[inline(always)]
    fn input_row(&self, padded: usize) -> Option<usize> {
        padded
            .checked_sub(self.pad_top)
            .filter(|&row| row < self.height)
    }

    /// Bias, then the taps of window rows `rows` times their weights, in `(i, j)` order.
    #[inline(always)]
    fn sum(&self, rows: [[S::Vector; SIDE]; SIDE]) -> S::Vector {
        let mut sum = self.bias;
        for (i, taps) in rows.iter().enumerate() {
            sum = self.add_window_row(sum, i, taps);
        }
        sum
    }

    /// `sum` plus the `K` taps of window row `i` times their weights, in `j` order.
    #[inline(always)]
    fn add_window_row<const K: usize>(
        &self,
        sum: S::Vector,
        i: usize,
        taps: &[S::Vector; K],
    ) -> S::Vector {
        let mut sum = sum;
        for (j, &tap) in taps.iter().enumerate() {
            sum = self.simd.mul_add(self.weights[K * i + j], tap, sum);
        }
        sum
    }

    /// Stores `sum` as vector `vector` of the band in output row `r`.
    #[inline(always)]
    fn store<E: Epilogue<S::Elem>, const B: usize>(
        &self,
        band: &Band<B>,
        output: &mut Sink<'_, S::Elem, E>,
        r: usize,
        vector: usize,
        sum: S::Vector,
    ) {
        let (start, count) = band.vectors[vector];
        assert!(r < band.out_h);
        let at = band.base + r * self.out_w + start;
        // SAFETY: `Band::new` checked that the plane's `out_h` rows of `out_w` from `base` lie
        // inside `output`, and that each vector's `count <= LANES` columns from `start` lie
        // inside a row; `r < out_h`. (One check per store, not three: checked stores kept a
        // 28x28 plane at 0.87 of its speed.)
        unsafe { output.store_prefix_unchecked(self.simd, at, sum, count) };
    }

    /// Stride 2: the three taps input row `row` gives a vector of a band of `B`
    /// ([`StreamedPlane::pair_taps`]), zeros for a row of the padding; without masks where
    /// every column is inside the row (see [`StreamedPlane::masked`]).
    #[inline(always)]
    fn pair_row<const B: usize, const EDGE: bool>(
        &self,
        row: Option<usize>,
        columns: &VectorColumns,
    ) -> [S::Vector; SIDE] {
        let Some(row) = row else {
            return [self.simd.splat(S::Elem::ZERO); SIDE];
        };
        assert!(row < self.height && self.input.len() == self.height * self.width);
        if Self::masked::<B, EDGE>(columns) {
            self.pair_taps::<true>(row, columns)
        } else {
            self.pair_taps::<false>(row, columns)
        }
    }

    /// The `K` taps input row `row` gives a vector of a band of `B` with stride `STRIDE`
    /// ([`StreamedPlane::loaded_taps`]), or `None` for a row of the padding; without masks
    /// where every column is inside the row (see [`StreamedPlane::masked`]).
    #[inline(always)]
    fn row_taps<const STRIDE: usize, const K: usize, const B: usize, const EDGE: bool>(
        &self,
        row: Option<usize>,
        columns: &VectorColumns,
        dilation: usize,
    ) -> Option<[S::Vector; K]> {
        let row = row?;
        assert!(row < self.height && self.input.len() == self.height * self.width);
        Some(match Self::masked::<B, EDGE>(columns) {
            false => self.loaded_taps::<STRIDE, K, false>(row, columns, dilation),
            true => self.loaded_taps::<STRIDE, K, true>(row, columns, dilation),
        })
    }

    /// Whether a vector of a band of `B` loads through its masks: where some column is
    /// outside the row, which is no vector's case without `EDGE` and, in a band of one,
    /// every vector's with it (one choice for the whole band, made by the caller).
    #[inline(always)]
    fn masked<const B: usize, const EDGE: bool>(columns: &VectorColumns) -> bool {
        EDGE && (B == 1 || !columns.whole)
    }

    /// Where column `columns.start` of input row `row` would lie (outside the row in the
    /// padding: never dereferenced there, the masks leave those lanes out).
    #[inline(always)]
    fn column_start(&self, row: usize, columns: &VectorColumns) -> *const S::Elem {
        self.input
            .as_ptr()
            .wrapping_add(row * self.width)
            .wrapping_offset(columns.start)
    }

    /// The `K` taps of input row `row < H`: at stride 1, each a vector loaded from its column,
    /// `dilation` (`dW`) apart; at stride 2, tap `j` the even (`j` even) or odd columns of the
    /// pair of vectors from `start + 2·(j / 2)`.
    #[inline(always)]
    fn loaded_taps<const STRIDE: usize, const K: usize, const EDGE: bool>(
        &self,
        row: usize,
        columns: &VectorColumns,
        dilation: usize,
    ) -> [S::Vector; K] {
        let simd = self.simd;
        let base = self.column_start(row, columns);
        if STRIDE == 1 {
            return std::array::from_fn(|tap| {
                let source = base.wrapping_add(dilation * tap);
                // SAFETY: row `row` is inside the plane (`row_taps`) and `input` is exactly
                // the plane; the lanes set in the tap's mask are columns
                // `start + dW·tap + lane` inside 0..W (worked out by the plan for this
                // geometry), and without `EDGE` all are.
                unsafe {
                    if EDGE {
                        simd.load_masked(source, columns.masks[tap])
                    } else {
                        simd.load(source)
                    }
                }
            });
        }
        let zero = simd.splat(S::Elem::ZERO);
        let mut taps = [zero; K];
        for pair in 0..K.div_ceil(2) {
            let masks = [columns.masks[2 * pair], columns.masks[2 * pair + 1]];
            // SAFETY: row `row` is inside the plane (`row_taps`) and `input` is exactly
            // the plane; the lanes set in the masks are columns inside 0..W (worked out by
            // the plan for this geometry: from `start + 2·pair` and `+ LANES`), and without
            // `EDGE` all of them are.
            let (even, odd) =
                unsafe { simd.load_deinterleaved::<EDGE>(base.wrapping_add(2 * pair), masks) };
            taps[2 * pair] = even;
            if 2 * pair + 1 < K {
                taps[2 * pair + 1] = odd;
            }
        }
        taps
    }

    /// Stride 2: the three taps of input row `row < H`, one pair of vectors deinterleaved
    /// into taps 1 and 2, tap 0 being tap 2's inputs one lane on with the column before the
    /// pair entering at lane 0. (Loading tap 0's pair too cost a third more: every unaligned
    /// 64-byte load splits a cache line.)
    #[inline(always)]
    fn pair_taps<const EDGE: bool>(
        &self,
        row: usize,
        columns: &VectorColumns,
    ) -> [S::Vector; SIDE] {
        let simd = self.simd;
        let lanes = S::LANES;
        let base = self.column_start(row, columns);
        let [low, high, before, ..] = columns.masks;
        // SAFETY: row `row` is inside the plane (`pair_row`) and `input` is exactly the
        // plane; the lanes set in the masks are columns inside 0..W (worked out by the plan
        // for this geometry: from `start` for the pair's low vector, `start + LANES` for its
        // high one, `start − LANES` for the column before), and without `EDGE` the pair's
        // all are.
        let (even, odd, previous) = unsafe {
            let (even, odd) = simd.load_deinterleaved::<EDGE>(base, [low, high]);
            (
                even,
                odd,
                simd.load_masked(base.wrapping_sub(lanes), before),
            )
        };
        [simd.shift_in(previous, odd), even, odd]
    }
}
