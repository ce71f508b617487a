//! proptest strategies for grouped-convolution problems.
//!
//! Sizes are biased towards the places where vectorised kernels break: output widths of
//! `lanes − 1`, `lanes` and `lanes + 1` for 4-, 8- and 16-lane vectors, a single row or column,
//! windows that only ever meet padding. Each size is built from the output backwards, so every
//! generated problem is valid and none is rejected.

use gconv_shape::{
    Activation, Conv2dParams, Geometry, Padding, PaddingMode, PaddingPerSide, ShapeError,
};

use crate::Problem;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Upper bounds on the problems a strategy generates. Keep them small: the reference is slow
/// and shrinking is quicker on small problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest batch `N`.
    pub max_batch: usize,
    /// Largest number of groups `g`.
    pub max_groups: usize,
    /// Largest `C_in / g`.
    pub max_in_per_group: usize,
    /// Largest `C_out / g` (the channel multiplier of a depthwise convolution).
    pub max_out_per_group: usize,
    /// Largest kernel height and width.
    pub max_kernel: usize,
    /// Largest stride per axis.
    pub max_stride: usize,
    /// Largest dilation per axis.
    pub max_dilation: usize,
    /// Largest explicit padding per side.
    pub max_padding: usize,
    /// Largest output height.
    pub max_output_height: usize,
    /// Largest output width (the edge-biased sizes above it are left out).
    pub max_output_width: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 2,
            max_groups: 6,
            max_in_per_group: 5,
            max_out_per_group: 3,
            max_kernel: 5,
            max_stride: 3,
            max_dilation: 3,
            max_padding: 3,
            max_output_height: 7,
            max_output_width: 34,
        }
    }
}

/// `default` cases per property, unless `PROPTEST_CASES` says otherwise: fewer under valgrind,
/// more for a soak. (proptest reads the variable only for configs built from its default.)
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// Output widths at the edges of 4-, 8- and 16-lane vectors and of two-vector tiles.
pub const EDGE_WIDTHS: [usize; 15] = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 34];

/// An output extent: half the time an edge width (at most `max`), otherwise any in `1..=max`.
pub fn edge_biased_extent(max: usize) -> BoxedStrategy<usize> {
    let max = max.max(1);
    let edges: Vec<usize> = EDGE_WIDTHS.iter().copied().filter(|&w| w <= max).collect();
    prop_oneof![select(edges), 1..=max].boxed()
}

/// Valid geometries within `limits`, every group count from 1 (dense) to `C_in` (depthwise).
pub fn geometries(limits: Limits) -> impl Strategy<Value = Geometry> {
    let channels = (
        1..=limits.max_groups,
        1..=limits.max_in_per_group,
        1..=limits.max_out_per_group,
    );
    let kernel = (1..=limits.max_kernel, 1..=limits.max_kernel);
    let stride = (1..=limits.max_stride, 1..=limits.max_stride);
    let dilation = (1..=limits.max_dilation, 1..=limits.max_dilation);
    let pad = 0..=limits.max_padding;
    let sides = (pad.clone(), pad.clone(), pad.clone(), pad);
    (
        channels,
        kernel,
        stride,
        dilation,
        sides,
        0..4u8,
        (1..=limits.max_batch, any::<bool>()),
        (
            edge_biased_extent(limits.max_output_height),
            edge_biased_extent(limits.max_output_width),
        ),
        (0..limits.max_stride, 0..limits.max_stride),
    )
        .prop_map(
            |(
                (groups, in_per_group, out_per_group),
                (kernel_h, kernel_w),
                (stride_h, stride_w),
                (dilation_h, dilation_w),
                (top, bottom, left, right),
                padding_kind,
                (batch, bias),
                (out_h, out_w),
                (spare_h, spare_w),
            )| {
                let padding = match padding_kind {
                    0 => Padding::Valid,
                    1 if stride_h == 1 && stride_w == 1 => Padding::Same,
                    2 => Padding::symmetric(top, left),
                    _ => Padding::per_side(top, bottom, left, right),
                };
                let params = Conv2dParams::new(
                    groups * in_per_group,
                    groups * out_per_group,
                    [kernel_h, kernel_w],
                )
                .groups(groups)
                .stride([stride_h, stride_w])
                .dilation([dilation_h, dilation_w])
                .padding(padding)
                .bias(bias);
                let sides = params.validate().expect("valid by construction").padding();
                // Work back from the output extent to an input extent that yields it (or, when
                // padding alone covers the window, the smallest input).
                let input_extent = |out: usize,
                                    stride: usize,
                                    kernel: usize,
                                    dilation: usize,
                                    before: usize,
                                    after: usize,
                                    spare: usize| {
                    let needed = (out - 1) * stride + (kernel - 1) * dilation + 1 + spare % stride;
                    needed.saturating_sub(before + after).max(1)
                };
                let height = input_extent(
                    out_h,
                    stride_h,
                    kernel_h,
                    dilation_h,
                    sides.top,
                    sides.bottom,
                    spare_h,
                );
                let width = input_extent(
                    out_w,
                    stride_w,
                    kernel_w,
                    dilation_w,
                    sides.left,
                    sides.right,
                    spare_w,
                );
                params
                    .geometry([batch, groups * in_per_group, height, width])
                    .expect("valid by construction")
            },
        )
}

/// Valid problems with data uniform in `[-1, 1)`.
pub fn problems(limits: Limits) -> impl Strategy<Value = Problem> {
    geometries(limits).prop_flat_map(|geometry| with_data(geometry, -1.0f32..1.0))
}

/// Valid problems with integer data in `-4..=4`, on which every `f32` operation of any
/// summation order is exact within the default [`Limits`]: implementations must agree exactly.
pub fn integer_problems(limits: Limits) -> impl Strategy<Value = Problem> {
    geometries(limits).prop_flat_map(|geometry| with_data(geometry, (-4i8..=4).prop_map(f32::from)))
}

/// Valid problems whose input holds a few NaNs and infinities among values in `[-1, 1)`.
pub fn problems_with_non_finite_input(limits: Limits) -> impl Strategy<Value = Problem> {
    problems(limits).prop_flat_map(|problem| {
        let len = problem.input.len();
        let specials = select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        vec((0..len, specials), 1..=3).prop_map(move |hits| {
            let mut problem = problem.clone();
            for (index, value) in hits {
                problem.input[index] = value;
            }
            problem
        })
    })
}

/// Problems for the backward passes, in every padding mode (each side's padding as large as the
/// mode allows, see [`in_padding_mode`]), with an upstream gradient of the output's shape:
/// random data in `[-1, 1)`, or small integers everywhere (where
/// [`crate::check_gradient_against_reference`] is exact).
pub fn gradient_problems(limits: Limits) -> impl Strategy<Value = (Problem, Vec<f32>)> {
    let modes = select(PaddingMode::ALL.to_vec());
    (geometries(limits), modes, any::<bool>()).prop_flat_map(|(geometry, mode, integers)| {
        let geometry = in_padding_mode(&geometry, mode);
        let values = match integers {
            true => (-4i8..=4).prop_map(f32::from).boxed(),
            false => (-1.0f32..1.0).boxed(),
        };
        let grad_output = vec(values.clone(), geometry.output_len());
        (with_data(geometry, values), grad_output)
    })
}

/// Every activation, parameters biased to where implementations part: bounds that cut
/// through the data, equal or in the wrong order (`torch.clamp` then gives `max`), infinite
/// bounds, slopes of 0, 1, negative and steeper than 1.
pub fn activations() -> impl Strategy<Value = Activation> {
    let bound = prop_oneof![
        3 => (-8i8..=8).prop_map(|quarters| f64::from(quarters) / 4.0),
        1 => select(vec![f64::NEG_INFINITY, f64::INFINITY, 0.3]),
    ];
    let slope = prop_oneof![
        select(vec![0.0, 1.0, -1.0, 0.01, 0.1, -0.5, 3.0]),
        -4.0f64..4.0,
    ];
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::Relu6),
        (bound.clone(), bound).prop_map(|(min, max)| Activation::Clamp { min, max }),
        slope.prop_map(|slope| Activation::LeakyRelu { slope }),
    ]
}

/// A residual for `problem`'s output (or none), drawn like its data: integers when the
/// problem's data are all integers (so that exact problems stay exact), else in `[-1, 1)`.
pub fn residuals(problem: &Problem) -> impl Strategy<Value = Option<Vec<f32>>> + use<> {
    let len = problem.geometry.output_len();
    let integers = problem
        .input
        .iter()
        .chain(&problem.weight)
        .all(|value| value.fract() == 0.0);
    let values = match integers {
        true => (-4i8..=4).prop_map(f32::from).boxed(),
        false => (-1.0f32..1.0).boxed(),
    };
    proptest::option::of(vec(values, len))
}

/// `geometry` in padding mode `mode`, each side's padding cut to the most the mode allows for
/// the input's size (so padding as large as PyTorch accepts is common); the geometry
/// unchanged where that would leave no output. The input and weight shapes stay the same, so
/// a [`Problem`]'s data serve both.
pub fn in_padding_mode(geometry: &Geometry, mode: PaddingMode) -> Geometry {
    let [height, width] = geometry.input_size();
    let limit = |padding: usize, size: usize| {
        mode.max_padding(size)
            .map_or(padding, |max| padding.min(max))
    };
    let padding = geometry.padding();
    let sides = PaddingPerSide {
        top: limit(padding.top, height),
        bottom: limit(padding.bottom, height),
        left: limit(padding.left, width),
        right: limit(padding.right, width),
    };
    let params = geometry
        .params()
        .padding(Padding::Explicit(sides))
        .padding_mode(mode);
    params.geometry(geometry.input_shape()).unwrap_or(*geometry)
}

/// A problem for `geometry` with every value drawn from `values`.
pub fn with_data<S>(geometry: Geometry, values: S) -> impl Strategy<Value = Problem>
where
    S: Strategy<Value = f32> + Clone,
{
    let bias_len = if geometry.has_bias() {
        geometry.out_channels()
    } else {
        0
    };
    (
        vec(values.clone(), geometry.input_len()),
        vec(values.clone(), geometry.weight_count()),
        vec(values, bias_len),
    )
        .prop_map(move |(input, weight, bias)| Problem {
            geometry,
            input,
            weight,
            bias: geometry.has_bias().then_some(bias),
        })
}

/// The rule an [`invalid_cases`] case breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenRule {
    /// A size, stride or dilation of 0.
    Zero,
    /// `groups` does not divide `in_channels`.
    InChannelsNotDivisible,
    /// `groups` does not divide `out_channels`.
    OutChannelsNotDivisible,
    /// `same` padding with a stride other than 1.
    SamePaddingWithStride,
    /// The input's channel count is not `in_channels`.
    InputChannels,
    /// The effective kernel is larger than the padded input.
    KernelLargerThanInput,
}

impl BrokenRule {
    /// Whether `error` reports this rule.
    pub fn matches(self, error: &ShapeError) -> bool {
        matches!(
            (self, error),
            (BrokenRule::Zero, ShapeError::Zero { .. })
                | (
                    BrokenRule::InChannelsNotDivisible,
                    ShapeError::InChannelsNotDivisible { .. }
                )
                | (
                    BrokenRule::OutChannelsNotDivisible,
                    ShapeError::OutChannelsNotDivisible { .. }
                )
                | (
                    BrokenRule::SamePaddingWithStride,
                    ShapeError::SamePaddingWithStride { .. }
                )
                | (BrokenRule::InputChannels, ShapeError::InputChannels { .. })
                | (
                    BrokenRule::KernelLargerThanInput,
                    ShapeError::KernelLargerThanInput { .. }
                )
        )
    }
}

/// Parameters and an input shape that break exactly one rule, and that rule.
pub fn invalid_cases() -> impl Strategy<Value = (Conv2dParams, [usize; 4], BrokenRule)> {
    let valid = (1usize..5, 1usize..5, 1usize..5, 1usize..4, 1usize..3);
    (valid, 0..6u8, 1usize..4).prop_map(
        |((groups, in_per_group, out_per_group, kernel, stride), rule, offset)| {
            let in_channels = groups * in_per_group;
            let base = Conv2dParams::new(in_channels, groups * out_per_group, kernel)
                .groups(groups)
                .stride(stride);
            let size = kernel + stride;
            let input = [1, in_channels, size, size];
            match rule {
                0 => (base.stride([stride, 0]), input, BrokenRule::Zero),
                1 => {
                    // A group count that does not divide in_channels (but does divide out).
                    let groups = in_channels + offset;
                    let params = Conv2dParams {
                        groups,
                        out_channels: groups,
                        ..base
                    };
                    (params, input, BrokenRule::InChannelsNotDivisible)
                }
                2 => {
                    // At least two groups, and one output channel too many for them.
                    let groups = groups + 1;
                    let params = Conv2dParams::new(
                        groups * in_per_group,
                        groups * out_per_group + 1,
                        kernel,
                    )
                    .groups(groups);
                    let input = [1, params.in_channels, size, size];
                    (params, input, BrokenRule::OutChannelsNotDivisible)
                }
                3 => (
                    base.stride(stride + 1).padding(Padding::Same),
                    input,
                    BrokenRule::SamePaddingWithStride,
                ),
                4 => (
                    base,
                    [1, in_channels + offset, size, size],
                    BrokenRule::InputChannels,
                ),
                _ => (
                    // A kernel of at least 2 taps whose dilation spreads them past the input.
                    Conv2dParams {
                        kernel_size: [kernel + 1, kernel + 1],
                        ..base
                    }
                    .dilation(size + offset),
                    input,
                    BrokenRule::KernelLargerThanInput,
                ),
            }
        },
    )
}
