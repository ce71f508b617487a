//! End-to-end tests that reach every rule of the forward selection table
//! (`gconv_kernels::select::forward::RULES`): one strategy per rule generates problems that
//! rule chooses, each test asserts that the rule did choose them (so a strategy that drifts
//! off its rule fails rather than testing another kernel), then checks the output against the
//! reference on 1 thread and bit-identity on 2 and 3, on every tier this CPU has where the rule
//! applies (AVX-512 as chosen for both classes of CPU that have it). Fixed cases below sit on the boundaries random shapes rarely hit: a leftover batch
//! of claimed tasks, reductions at exact multiples of a tap chunk, widths of lanes ± 1.

use std::ops::RangeInclusive;

use gconv::gconv_kernels::KernelPlan;
use gconv::{Conv2dParams, CpuClass, Geometry, Isa, Options, Padding};
use gconv_testkit::strategy::{self, with_data};
use gconv_testkit::{Problem, check_against_reference};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A plan on `isa` with the kernel chosen for a CPU of class `cpu`.
fn plan_for(problem: &Problem, isa: Isa, cpu: CpuClass, threads: usize) -> KernelPlan {
    KernelPlan::new(
        &problem.geometry,
        &problem.weight,
        problem.bias.as_deref(),
        Options::default().isa(isa).cpu(cpu).threads(threads),
    )
    .unwrap()
}

/// The classes whose choices a test runs on `isa`: on AVX-512 both that have it (any class
/// runs on any CPU of the tier), below it this CPU's (the rules read the class only there).
fn classes(isa: Isa) -> Vec<CpuClass> {
    match isa {
        Isa::X86_64V4 => vec![CpuClass::Full512, CpuClass::Split512],
        _ => vec![CpuClass::detect()],
    }
}

fn output(plan: &KernelPlan, problem: &Problem) -> Vec<f32> {
    let mut output = vec![f32::NAN; problem.geometry.output_len()];
    plan.run(&problem.input, &mut output).unwrap();
    output
}

/// On `isa`, for each class of [`classes`]: `rule` chooses the problem on one thread, the
/// output matches the reference, and 2 and 3 threads give the bits of 1.
fn check_rule_on(problem: &Problem, rule: &str, isa: Isa) -> Result<(), TestCaseError> {
    for cpu in classes(isa) {
        check_rule_for(problem, rule, isa, cpu)?;
    }
    Ok(())
}

/// [`check_rule_on`] for a CPU of class `cpu`.
fn check_rule_for(
    problem: &Problem,
    rule: &str,
    isa: Isa,
    cpu: CpuClass,
) -> Result<(), TestCaseError> {
    let single = plan_for(problem, isa, cpu, 1);
    prop_assert_eq!(
        single.rule().name(),
        rule,
        "{:?} on {} ({})",
        problem.geometry,
        isa,
        cpu
    );
    let expected = output(&single, problem);
    check_against_reference(problem, &expected)
        .map_err(|diff| TestCaseError::fail(format!("{rule} on {isa}: {diff}")))?;
    for threads in [2, 3] {
        // Not asserted to be `rule`: a dense or few-group layer's channels are split between
        // threads, and a thread's share may suit another body.
        let parallel = plan_for(problem, isa, cpu, threads);
        let identical = output(&parallel, problem)
            .iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        prop_assert!(
            identical,
            "{rule} on {isa}: {threads} threads differ from 1"
        );
    }
    Ok(())
}

/// [`check_rule_on`] on every tier in `tiers` that this CPU has.
fn check_rule(problem: &Problem, rule: &str, tiers: &[Isa]) -> Result<(), TestCaseError> {
    for &isa in tiers.iter().filter(|isa| Isa::available().contains(isa)) {
        check_rule_on(problem, rule, isa)?;
    }
    Ok(())
}

const ALL_TIERS: [Isa; 3] = [Isa::Portable, Isa::X86_64V3, Isa::X86_64V4];
const VECTOR_TIERS: [Isa; 2] = [Isa::X86_64V3, Isa::X86_64V4];
const BELOW_AVX512: [Isa; 2] = [Isa::Portable, Isa::X86_64V3];
const AVX512: [Isa; 1] = [Isa::X86_64V4];

/// A depthwise layer, each dimension by name; `..DEPTHWISE` fills in the rest.
#[derive(Debug, Clone, Copy)]
struct Depthwise {
    batch: usize,
    channels: usize,
    /// Filters per input channel.
    multiplier: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: Padding,
    dilation: usize,
    plane: [usize; 2],
}

/// One sample, one filter per channel, a 3x3 window at stride 1 without padding or dilation.
const DEPTHWISE: Depthwise = Depthwise {
    batch: 1,
    channels: 1,
    multiplier: 1,
    kernel: [3, 3],
    stride: 1,
    padding: Padding::Valid,
    dilation: 1,
    plane: [8, 8],
};

impl Depthwise {
    fn geometry(self) -> Geometry {
        Conv2dParams::new(self.channels, self.channels * self.multiplier, self.kernel)
            .groups(self.channels)
            .stride(self.stride)
            .padding(self.padding)
            .dilation(self.dilation)
            .geometry([self.batch, self.channels, self.plane[0], self.plane[1]])
            .unwrap()
    }
}

/// A grouped layer of `groups` groups of `in_per_group` → `out_per_group` channels, each
/// dimension by name; `..GROUPED` fills in the rest.
#[derive(Debug, Clone, Copy)]
struct Grouped {
    batch: usize,
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    plane: [usize; 2],
}

/// One sample, one group of one channel each way, 1x1 at stride 1 without padding.
const GROUPED: Grouped = Grouped {
    batch: 1,
    groups: 1,
    in_per_group: 1,
    out_per_group: 1,
    kernel: 1,
    stride: 1,
    padding: 0,
    plane: [8, 8],
};

impl Grouped {
    fn geometry(self) -> Geometry {
        let (in_channels, out_channels) = (
            self.groups * self.in_per_group,
            self.groups * self.out_per_group,
        );
        Conv2dParams::new(in_channels, out_channels, self.kernel)
            .groups(self.groups)
            .stride(self.stride)
            .padding(Padding::uniform(self.padding))
            .geometry([self.batch, in_channels, self.plane[0], self.plane[1]])
            .unwrap()
    }
}

fn problems(geometries: impl Strategy<Value = Geometry>) -> impl Strategy<Value = Problem> {
    geometries.prop_flat_map(|geometry| with_data(geometry, -1.0f32..1.0))
}

/// Output widths whose vectors of `lanes` are at least four fifths full, in at most
/// `max_vectors` vectors: the streamed kernel's short bands.
fn well_filled_widths(lanes: usize, max_vectors: usize) -> impl Strategy<Value = usize> {
    (1..=max_vectors)
        .prop_flat_map(move |vectors| (4 * lanes * vectors).div_ceil(5)..=lanes * vectors)
}

/// Output channels per group that fill whole register blocks of every tier: the
/// channel-vector body keeps a group's output channels in blocks of two vectors (32 lanes on
/// AVX-512).
fn whole_vectors() -> impl Strategy<Value = usize> {
    (1..=3usize).prop_map(|blocks| 32 * blocks)
}

macro_rules! rule_test {
    ($test:ident, $rule:literal, $tiers:expr, $geometries:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(strategy::cases(24)))]

            #[test]
            fn $test(problem in problems($geometries)) {
                check_rule(&problem, $rule, &$tiers)?;
            }
        }
    };
}

rule_test!(
    depthwise_streamed_3x3_stride_2,
    "depthwise-streamed-3x3-stride-2",
    ALL_TIERS,
    (
        1..=2usize,
        1..=5usize,
        1..=2usize,
        0..=1usize,
        3..=40usize,
        3..=40usize
    )
        .prop_map(
            |(batch, channels, multiplier, padding, height, width)| Depthwise {
                batch,
                channels,
                multiplier,
                stride: 2,
                padding: Padding::uniform(padding),
                plane: [height, width],
                ..DEPTHWISE
            }
            .geometry()
        )
);

rule_test!(
    depthwise_streamed_5x5_stride_2,
    "depthwise-streamed-5x5-stride-2",
    AVX512,
    (
        1..=2usize,
        1..=4usize,
        0..=2usize,
        5..=24usize,
        21..=48usize
    )
        .prop_map(|(batch, channels, padding, height, width)| Depthwise {
            batch,
            channels,
            kernel: [5, 5],
            stride: 2,
            padding: Padding::uniform(padding),
            plane: [height, width],
            ..DEPTHWISE
        }
        .geometry())
);

rule_test!(
    depthwise_lanes_short_rows,
    "depthwise-lanes-short-rows",
    AVX512,
    (
        1..=2usize,
        1..=4usize,
        [1..=3usize, 1..=3usize],
        0..=3usize,
        1..=2usize,
        1..=6usize,
        1..=8usize
    )
        .prop_map(
            |(batch, eights, [half_h, half_w], padding, dilation, height, out_width)| {
                let kernel = [2 * half_h + 1, 2 * half_w + 1];
                let padding = padding.min(half_w * dilation);
                let reach = (kernel[1] - 1) * dilation;
                Depthwise {
                    batch,
                    channels: 8 * eights,
                    kernel,
                    padding: Padding::uniform(padding),
                    dilation,
                    plane: [
                        height + (kernel[0] - 1) * dilation,
                        out_width + reach - 2 * padding.min(reach / 2),
                    ],
                    ..DEPTHWISE
                }
                .geometry()
            }
        )
);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategy::cases(24)))]

    /// 3x3 stride 2 on rows of at most half a 16-lane vector, channels in blocks of 16: the
    /// channels-in-lanes kernel where 16 lanes run at full width, the streamed one where
    /// 512-bit operations are split.
    #[test]
    fn depthwise_lanes_short_rows_stride_2(problem in problems((
        1..=2usize,
        1..=4usize,
        0..=1usize,
        3..=24usize,
        3..=16usize,
    )
        .prop_map(|(batch, blocks, padding, height, width)| Depthwise {
            batch,
            channels: 16 * blocks,
            stride: 2,
            padding: Padding::uniform(padding),
            plane: [height, width],
            ..DEPTHWISE
        }
        .geometry()))) {
        if Isa::available().contains(&Isa::X86_64V4) {
            check_rule_for(&problem, "depthwise-lanes-short-rows", Isa::X86_64V4, CpuClass::Full512)?;
            check_rule_for(
                &problem,
                "depthwise-streamed-3x3-stride-2",
                Isa::X86_64V4,
                CpuClass::Split512,
            )?;
        }
    }
}

rule_test!(
    depthwise_streamed_stride_1,
    "depthwise-streamed-stride-1",
    AVX512,
    (
        (1..=2usize, 1..=4usize, 1..=2usize),
        1..=3usize,
        prop_oneof![2 => Just(1usize), 1 => 2..=4usize],
        0..=3usize,
        7..=40usize,
        7..=40usize
    )
        .prop_map(
            |((batch, channels, multiplier), half, dilation, padding, height, width)| {
                let side = 2 * half + 1;
                // Planes at least as large as the dilated window, so that every padding
                // leaves an output.
                let reach = (side - 1) * dilation + 1;
                Depthwise {
                    batch,
                    channels,
                    multiplier,
                    kernel: [side, side],
                    padding: Padding::uniform(padding.min(half) * dilation),
                    dilation,
                    plane: [height.max(reach), width.max(reach)],
                    ..DEPTHWISE
                }
                .geometry()
            }
        )
);

/// Depthwise layers with a `side`-square window dilated by `dilation`, rows of the output
/// widths `widths` and up to twelve rows more than the window reaches, any padding up to
/// half the window: the streamed kernel's bands.
fn banded(
    side: usize,
    dilation: usize,
    widths: impl Strategy<Value = usize>,
) -> impl Strategy<Value = Geometry> {
    let half = side / 2;
    let reach = (side - 1) * dilation;
    (
        (1..=2usize, 1..=4usize, 1..=2usize),
        0..=half,
        reach + 1..=reach + 12,
        widths,
    )
        .prop_map(
            move |((batch, channels, multiplier), padding, height, out_width)| {
                let padding = padding * dilation;
                Depthwise {
                    batch,
                    channels,
                    multiplier,
                    kernel: [side, side],
                    padding: Padding::uniform(padding),
                    dilation,
                    plane: [height, out_width + reach - 2 * padding],
                    ..DEPTHWISE
                }
                .geometry()
            },
        )
}

/// Short bands below AVX-512, for the lanes of `isa`: windows of `2·half + 1` for `half` in
/// `halves`, dilated by each of `dilations`, rows of at most `max_vectors` vectors (and of
/// at most twelve rolling sums).
fn short_bands(
    isa: Isa,
    halves: RangeInclusive<usize>,
    dilations: RangeInclusive<usize>,
    max_vectors: usize,
) -> impl Strategy<Value = Geometry> {
    (halves, dilations).prop_flat_map(move |(half, dilation)| {
        let side = 2 * half + 1;
        let widths = well_filled_widths(isa.lanes(), (12 / (side - 1)).min(max_vectors));
        banded(side, dilation, widths)
    })
}

rule_test!(
    depthwise_streamed_stride_1_short_bands_dilated_avx2,
    "depthwise-streamed-stride-1-short-bands",
    [Isa::X86_64V3],
    // 3x3 and 5x5 windows whose rows are one band of the streamed kernel.
    short_bands(Isa::X86_64V3, 1..=2, 2..=4, 4)
);

rule_test!(
    depthwise_streamed_stride_1_short_bands_avx2,
    "depthwise-streamed-stride-1-short-bands",
    [Isa::X86_64V3],
    short_bands(Isa::X86_64V3, 1..=3, 1..=1, usize::MAX)
);

/// Windows of five and seven rows on AVX2 whose rows hold more rolling sums than registers
/// (three to five vectors of outputs for 7x7, four or five for 5x5, each at least 85 %
/// full), on planes too short for the unpacked kernel to share their rows: the streamed
/// kernel with its sums spilled.
fn spilled_bands() -> impl Strategy<Value = Geometry> {
    let lanes = Isa::X86_64V3.lanes();
    (2..=3usize).prop_flat_map(move |half| {
        let side = 2 * half + 1;
        let fewest = 12 / (side - 1) + 1;
        let widths = (fewest..=5usize)
            .prop_flat_map(move |vectors| (17 * lanes * vectors).div_ceil(20)..=lanes * vectors);
        banded(side, 1, widths)
    })
}

rule_test!(
    depthwise_streamed_stride_1_spilled_bands_avx2,
    "depthwise-streamed-stride-1-short-bands",
    [Isa::X86_64V3],
    spilled_bands()
);

rule_test!(
    depthwise_streamed_stride_1_short_bands_portable,
    "depthwise-streamed-stride-1-short-bands",
    [Isa::Portable],
    short_bands(Isa::Portable, 1..=3, 1..=1, usize::MAX)
);

rule_test!(
    depthwise_shifted,
    "depthwise-shifted",
    AVX512,
    (
        (1..=2usize, 1..=4usize),
        // Windows the streamed kernel leaves: not square, or larger than 7x7.
        prop::sample::select(vec![[1usize, 3], [3, 1], [3, 5], [5, 3], [2, 2], [9, 9]]),
        1..=3usize,
        9..=32usize,
        9..=32usize
    )
        .prop_map(|((batch, channels), kernel, dilation, height, width)| {
            let reach = (kernel[0].max(kernel[1]) - 1) * dilation + 1;
            Depthwise {
                batch,
                channels,
                kernel,
                padding: Padding::Same,
                dilation,
                plane: [height.max(reach), width.max(reach)],
                ..DEPTHWISE
            }
            .geometry()
        })
);

rule_test!(
    depthwise_unpacked_stride_2,
    "depthwise-unpacked-stride-2",
    ALL_TIERS,
    (
        1..=2usize,
        1..=2usize,
        prop::sample::select(vec![1usize, 2, 5]),
        90..=110usize,
        90..=110usize
    )
        .prop_map(
            |(channels, multiplier, kernel_w, height, width)| Depthwise {
                channels,
                multiplier,
                kernel: [3, kernel_w],
                stride: 2,
                padding: Padding::uniform(1),
                plane: [height, width],
                ..DEPTHWISE
            }
            .geometry()
        )
);

rule_test!(
    depthwise_unpacked_stride_1,
    "depthwise-unpacked-stride-1",
    BELOW_AVX512,
    (
        1..=2usize,
        1..=2usize,
        1..=3usize,
        40..=60usize,
        56..=90usize
    )
        .prop_map(
            |(channels, multiplier, dilation, height, width)| Depthwise {
                channels,
                multiplier,
                padding: Padding::uniform(dilation),
                dilation,
                plane: [height, width],
                ..DEPTHWISE
            }
            .geometry()
        )
);

rule_test!(
    depthwise_lanes,
    "depthwise-lanes",
    ALL_TIERS,
    (
        1..=2usize,
        1..=2usize,
        [1..=5usize, 1..=5usize],
        0..=1usize,
        1..=2usize,
        [9..=30usize, 9..=30usize]
    )
        .prop_map(
            |(batch, sixteens, kernel, padding, dilation, plane)| Depthwise {
                batch,
                channels: 16 * sixteens,
                kernel,
                stride: 3,
                padding: Padding::uniform(padding),
                dilation,
                plane,
                ..DEPTHWISE
            }
            .geometry()
        )
);

rule_test!(
    grouped_channels_in_place,
    "grouped-channels-in-place",
    VECTOR_TIERS,
    (
        1..=2usize,
        1..=2usize,
        128..=144usize,
        whole_vectors(),
        [2..=9usize, 2..=9usize]
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, plane)| Grouped {
                batch,
                groups,
                in_per_group,
                out_per_group,
                plane,
                ..GROUPED
            }
            .geometry()
        )
);

rule_test!(
    grouped_channels_columns,
    "grouped-channels-columns",
    VECTOR_TIERS,
    (
        1..=2usize,
        16..=24usize,
        whole_vectors(),
        [8..=20usize, 8..=15usize]
    )
        .prop_map(|(groups, in_per_group, out_per_group, plane)| Grouped {
            groups,
            in_per_group,
            out_per_group,
            kernel: 3,
            padding: 1,
            plane,
            ..GROUPED
        }
        .geometry())
);

/// Phase-split channel vectors: stride 2 on planes where a copy per kernel column costs more,
/// `out_per_group` a block of two vectors of `isa`.
fn channel_phase_split(
    out_per_group: usize,
    in_per_group: std::ops::RangeInclusive<usize>,
    side: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Geometry> {
    (1..=4usize, in_per_group, [side.clone(), side]).prop_map(
        move |(groups, in_per_group, plane)| {
            Grouped {
                groups,
                in_per_group,
                out_per_group,
                kernel: 3,
                stride: 2,
                padding: 1,
                plane,
                ..GROUPED
            }
            .geometry()
        },
    )
}

rule_test!(
    grouped_channels_phase_split_avx2,
    "grouped-channels-phase-split",
    [Isa::X86_64V3],
    channel_phase_split(16, 16..=20, 26..=32)
);

rule_test!(
    grouped_channels_phase_split_avx512,
    "grouped-channels-phase-split",
    AVX512,
    channel_phase_split(32, 28..=36, 12..=16)
);

rule_test!(
    grouped_positions_in_place,
    "grouped-positions-in-place",
    ALL_TIERS,
    (
        1..=3usize,
        1..=8usize,
        2..=16usize,
        1..=16usize,
        // From 3x3 up: smaller planes fill under half a vector and go to the channel body.
        [3..=20usize, 3..=20usize]
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, plane)| Grouped {
                batch,
                groups,
                in_per_group,
                out_per_group,
                plane,
                ..GROUPED
            }
            .geometry()
        )
);

rule_test!(
    grouped_positions_im2col,
    "grouped-positions-im2col",
    ALL_TIERS,
    // Strided 1x1 projections (a ResNet's downsampling shortcut): the phase split would
    // compute every discarded stride phase, im2col gathers only the kept positions.
    (
        1..=2usize,
        1..=2usize,
        4..=32usize,
        1..=32usize,
        [6..=28usize, 6..=28usize]
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, plane)| Grouped {
                batch,
                groups,
                in_per_group,
                out_per_group,
                stride: 2,
                plane,
                ..GROUPED
            }
            .geometry()
        )
);

/// The flat body on phase-split packing: 3x3 windows at stride 1 or 2 on planes of `side`.
fn positions_phase_split(side: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Geometry> {
    (
        1..=2usize,
        1..=5usize,
        2..=6usize,
        1..=6usize,
        1..=2usize,
        [side.clone(), side],
    )
        .prop_map(
            |(batch, groups, in_per_group, out_per_group, stride, plane)| {
                Grouped {
                    batch,
                    groups,
                    in_per_group,
                    out_per_group,
                    kernel: 3,
                    stride,
                    padding: 1,
                    plane,
                }
                .geometry()
            },
        )
}

rule_test!(
    grouped_positions_phase_split,
    "grouped-positions-phase-split",
    BELOW_AVX512,
    positions_phase_split(12..=24)
);

// On AVX-512 the phase split's two padding columns per row waste a twentieth of 16-lane
// vectors on rows up to about 40 wide, where im2col's copy (within L2) wins: wider planes.
rule_test!(
    grouped_positions_phase_split_avx512,
    "grouped-positions-phase-split",
    AVX512,
    positions_phase_split(44..=60)
);

/// A fixed problem with seeded data: on every tier, the reference on one thread and the same
/// bits on 2 and 3; returns the rules that chose it, one per tier (on AVX-512 one per CPU
/// class of [`classes`]).
fn check_fixed(geometry: Geometry) -> Vec<&'static str> {
    let data = |len: usize, seed: u64| gconv_testkit::data::uniform(len, seed);
    let problem = Problem {
        geometry,
        input: data(geometry.input_len(), 1),
        weight: data(geometry.weight_count(), 2),
        bias: geometry
            .has_bias()
            .then(|| data(geometry.out_channels(), 3)),
    };
    Isa::available()
        .into_iter()
        .flat_map(|isa| classes(isa).into_iter().map(move |cpu| (isa, cpu)))
        .map(|(isa, cpu)| {
            let rule = plan_for(&problem, isa, cpu, 1).rule().name();
            check_rule_for(&problem, rule, isa, cpu).unwrap_or_else(|error| panic!("{error}"));
            rule
        })
        .collect()
}

/// Pieces that do not split evenly into claims: the workspace hands the team claims of two
/// or more pieces, the last one short (2 and 3 threads; every piece must still run once). A
/// 32x32 depthwise plane is a task of its own, so these layers have 37 to 134 pieces.
#[test]
fn a_short_last_batch_of_claimed_pieces_still_runs() {
    for channels in [37, 41, 67] {
        let padding = Padding::uniform(1);
        let small = Depthwise {
            channels,
            padding,
            plane: [32, 32],
            ..DEPTHWISE
        };
        let strided = Depthwise {
            batch: 2,
            stride: 2,
            plane: [64, 64],
            ..small
        };
        check_fixed(small.geometry());
        check_fixed(strided.geometry());
    }
}

/// Rows shorter than one tile of the channel-vector body (1 to 13 positions): the tails of
/// 8, 4, 2 and 1 positions.
#[test]
fn channel_vector_rows_shorter_than_a_tile() {
    for width in 1..=13 {
        let layer = Grouped {
            in_per_group: 136,
            out_per_group: 16,
            plane: [1, width],
            ..GROUPED
        };
        let rules = check_fixed(layer.geometry());
        if Isa::available().contains(&Isa::X86_64V3) {
            assert!(rules.contains(&"grouped-channels-in-place"), "{rules:?}");
        }
    }
}

/// Reductions of exactly one and two tap chunks of the channel-vector body (and one tap more
/// or fewer), where the last chunk's flag decides whether the sums are stored.
#[test]
fn reductions_at_exact_multiples_of_a_tap_chunk() {
    let mut rules = Vec::new();
    for in_per_group in [127, 128, 129, 255, 256, 257, 512] {
        for (groups, plane) in [(1, [3, 5]), (2, [2, 3])] {
            let layer = Grouped {
                groups,
                in_per_group,
                out_per_group: 16,
                plane,
                ..GROUPED
            };
            rules.extend(check_fixed(layer.geometry()));
        }
    }
    if Isa::available().contains(&Isa::X86_64V3) {
        assert!(rules.contains(&"grouped-channels-in-place"), "{rules:?}");
    }
}

/// Output widths of lanes − 1, lanes and lanes + 1 (and twice and four times lanes) for the
/// lanes of every tier, on every depthwise and grouped body the selection reaches with them.
#[test]
fn widths_around_whole_vectors() {
    let mut rules = std::collections::BTreeSet::new();
    for lanes in [4, 8, 16] {
        for vectors in [1, 2, 4] {
            for out_width in [lanes * vectors - 1, lanes * vectors, lanes * vectors + 1] {
                for side in [3, 5] {
                    let width = out_width + side - 1;
                    for stride in [1, 2] {
                        let width = (out_width - 1) * stride + side;
                        let layer = Depthwise {
                            channels: 16,
                            kernel: [side, side],
                            stride,
                            plane: [side + 3, width],
                            ..DEPTHWISE
                        };
                        rules.extend(check_fixed(layer.geometry()));
                    }
                    let layer = Grouped {
                        groups: 2,
                        in_per_group: 3,
                        out_per_group: 4,
                        kernel: side,
                        plane: [side + 2, width],
                        ..GROUPED
                    };
                    rules.extend(check_fixed(layer.geometry()));
                }
            }
        }
    }
    eprintln!("rules reached: {rules:?}");
}
