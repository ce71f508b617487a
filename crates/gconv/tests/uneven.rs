//! Uneven groups against the reference's `conv2d_uneven`, on every tier this CPU has and 1–3
//! threads; equal lists against the ordinary grouped convolution, bit for bit.

use gconv::{
    Activation, Conv2d, Conv2dParams, GroupSizes, Isa, Options, UnevenConv2d, UnevenGeometry,
};
use gconv_testkit::strategy::{self, Limits};
use gconv_testkit::{Tolerance, compare_outputs};
use proptest::collection::vec;
use proptest::prelude::*;

/// A problem with uneven groups: shapes, data and the post-operations to run it with.
#[derive(Debug, Clone)]
struct UnevenProblem {
    geometry: UnevenGeometry,
    input: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    residual: Option<Vec<f32>>,
    activation: Activation,
}

/// Group sizes of 1–4 groups, 1-channel groups included, where a group repeats the one before
/// it half the time (so that runs of equal groups, and lists that are all one run, are
/// common).
fn group_sizes() -> impl Strategy<Value = GroupSizes> {
    vec((1usize..=5, 1usize..=4, any::<bool>()), 1..=4).prop_map(|groups| {
        let mut input: Vec<usize> = Vec::new();
        let mut output: Vec<usize> = Vec::new();
        for (in_size, out_size, repeat) in groups {
            let (in_size, out_size) = match (repeat, input.last(), output.last()) {
                (true, Some(&i), Some(&o)) => (i, o),
                _ => (in_size, out_size),
            };
            input.push(in_size);
            output.push(out_size);
        }
        GroupSizes::new(input, output)
    })
}

/// The spatial side of a random grouped problem (kernel, stride, padding, dilation, sizes,
/// batch, bias: every edge the testkit's strategies aim at) with uneven groups instead.
fn uneven_problems() -> impl Strategy<Value = UnevenProblem> {
    let limits = Limits {
        max_groups: 1,
        max_output_width: 18,
        ..Limits::default()
    };
    (strategy::geometries(limits), group_sizes(), any::<bool>()).prop_flat_map(
        |(spatial, sizes, integers)| {
            let [batch, _, height, width] = spatial.input_shape();
            let in_channels = sizes.input().iter().sum();
            let params = Conv2dParams {
                in_channels,
                out_channels: sizes.output().iter().sum(),
                groups: 1,
                ..*spatial.params()
            };
            let geometry = UnevenGeometry::new(params, sizes, [batch, in_channels, height, width])
                .expect("the spatial parameters were valid with one group");
            let values = match integers {
                true => (-4i8..=4).prop_map(f32::from).boxed(),
                false => (-1.0f32..1.0).boxed(),
            };
            let bias_len = params.bias.then_some(params.out_channels);
            (
                Just(geometry.clone()),
                vec(values.clone(), geometry.input_len()),
                vec(values.clone(), geometry.weight_count()),
                vec(values.clone(), bias_len.unwrap_or(0)),
                proptest::option::of(vec(values, geometry.output_len())),
                strategy::activations(),
            )
                .prop_map(
                    move |(geometry, input, weight, bias, residual, activation)| UnevenProblem {
                        geometry,
                        input,
                        weight,
                        bias: bias_len.map(|_| bias),
                        residual,
                        activation,
                    },
                )
        },
    )
}

fn make(problem: &UnevenProblem, options: Options) -> UnevenConv2d {
    UnevenConv2d::from_geometry(
        &problem.geometry,
        &problem.weight,
        problem.bias.as_deref(),
        options,
    )
    .unwrap()
}

/// The reference, then the post-operations as PyTorch's separate operations compute them.
fn expected(problem: &UnevenProblem) -> Vec<f32> {
    gconv_reference::conv2d_uneven(
        &problem.geometry,
        &problem.input,
        &problem.weight,
        problem.bias.as_deref(),
    )
    .unwrap()
}

/// Checks the plain convolution against the reference, within the testkit's rule for the
/// longest reduction of any group (exactly on small integers).
fn check_against_reference(problem: &UnevenProblem, actual: &[f32]) -> Result<(), String> {
    let absolute = |values: &[f32]| values.iter().map(|v| v.abs()).collect::<Vec<_>>();
    let magnitudes = gconv_reference::conv2d_uneven(
        &problem.geometry,
        &absolute(&problem.input),
        &absolute(&problem.weight),
        problem.bias.as_deref().map(absolute).as_deref(),
    )
    .unwrap();
    let all_values = problem
        .input
        .iter()
        .chain(&problem.weight)
        .chain(problem.bias.iter().flatten());
    let integers = all_values.into_iter().all(|v| v.fract() == 0.0);
    let largest = magnitudes.iter().fold(0.0f32, |a, &b| a.max(b));
    let tolerance = if integers && largest < (1 << 24) as f32 {
        Tolerance::EXACT
    } else {
        let [kernel_h, kernel_w] = problem.geometry.spatial().kernel_size();
        let longest = problem.geometry.sizes().input().iter().max().unwrap() * kernel_h * kernel_w;
        Tolerance::for_reduction(longest)
    };
    compare_outputs(
        problem.geometry.output_shape(),
        &expected(problem),
        actual,
        &magnitudes,
        tolerance,
    )
    .map_err(|diff| diff.to_string())
}

fn same_bits(a: &[f32], b: &[f32]) -> Option<usize> {
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    a.iter().zip(b).position(|(a, b)| !same(a, b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategy::cases(96)))]

    /// Every tier and thread count matches the reference, gives the same bits for every
    /// thread count, and applies the residual and activation to the bit as the separate
    /// operations do.
    #[test]
    fn uneven_groups_match_the_reference(problem in uneven_problems()) {
        let runs = problem.geometry.sizes().runs();
        for isa in Isa::available() {
            let plain = make(&problem, Options::default().isa(isa).threads(1));
            prop_assert_eq!(plain.isa(), isa);
            prop_assert_eq!(plain.runs().count(), runs.len(), "one convolution per run");
            let single = plain.forward(&problem.input).unwrap();
            check_against_reference(&problem, &single)
                .map_err(|diff| TestCaseError::fail(format!("{isa}: {diff}")))?;
            let mut post = single.clone();
            gconv_reference::post_ops(&mut post, problem.residual.as_deref(), problem.activation);
            for threads in [1, 2, 3] {
                let parallel = make(&problem, Options::default().isa(isa).threads(threads));
                let output = parallel.forward(&problem.input).unwrap();
                prop_assert_eq!(same_bits(&output, &single), None, "{}: {} threads", isa, threads);
                let options = Options::default()
                    .isa(isa)
                    .threads(threads)
                    .residual(problem.residual.is_some())
                    .activation(problem.activation);
                let fused = make(&problem, options);
                let output = match &problem.residual {
                    Some(residual) => fused.forward_with_residual(&problem.input, residual),
                    None => fused.forward(&problem.input),
                }
                .unwrap();
                prop_assert_eq!(
                    same_bits(&output, &post), None,
                    "{}: {} threads, {}", isa, threads, problem.activation
                );
            }
        }
    }

    /// Equal lists are the ordinary grouped convolution, to the bit.
    #[test]
    fn equal_lists_are_the_grouped_convolution(problem in strategy::problems(Limits::default())) {
        let geometry = &problem.geometry;
        let sizes = GroupSizes::even(geometry.in_channels(), geometry.out_channels(), geometry.groups())
            .unwrap();
        let grouped = Conv2d::from_geometry(
            geometry,
            &problem.weight,
            problem.bias.as_deref(),
            Options::default(),
        )
        .unwrap();
        let uneven = UnevenConv2d::new(
            *geometry.params(),
            sizes,
            geometry.input_shape(),
            &problem.weight,
            problem.bias.as_deref(),
            Options::default(),
        )
        .unwrap();
        let (_, run) = uneven.runs().next().unwrap();
        prop_assert_eq!(run.kernel_id(), grouped.kernel_id());
        let expected = grouped.forward(&problem.input).unwrap();
        prop_assert_eq!(same_bits(&uneven.forward(&problem.input).unwrap(), &expected), None);
    }
}

/// Each run's channels are, to the bit, the ordinary grouped convolution of those channels
/// with the run's weight blocks: running the runs one sample at a time changes nothing.
#[test]
fn each_run_is_its_grouped_convolution_on_the_whole_batch() {
    let params = Conv2dParams::new(11, 12, 3)
        .stride(2)
        .padding(gconv::Padding::uniform(1));
    let sizes = GroupSizes::new([3, 3, 1, 4], [2, 2, 5, 3]);
    let input_shape = [3, 11, 9, 13];
    let geometry = UnevenGeometry::new(params, sizes.clone(), input_shape).unwrap();
    let input = gconv_testkit::data::uniform(geometry.input_len(), 1);
    let weight = gconv_testkit::data::uniform(geometry.weight_count(), 2);
    let bias = gconv_testkit::data::uniform(12, 3);
    let conv = UnevenConv2d::new(
        params,
        sizes,
        input_shape,
        &weight,
        Some(&bias),
        Options::default(),
    )
    .unwrap();
    assert_eq!(conv.runs().count(), 3);
    let output = conv.forward(&input).unwrap();
    let [batch, _, height, width] = input_shape;
    let [_, _, out_height, out_width] = geometry.output_shape();
    let (plane, out_plane) = (height * width, out_height * out_width);
    for (run, _) in conv.runs() {
        let whole = geometry.run_geometry(run, batch).unwrap();
        let grouped = Conv2d::from_geometry(
            &whole,
            &weight[geometry.run_weight_range(run)],
            Some(&bias[run.output_channels()]),
            Options::default(),
        )
        .unwrap();
        let run_input: Vec<f32> = (0..batch)
            .flat_map(|n| {
                &input[(n * 11 + run.input_channels().start) * plane..]
                    [..run.input_channels().len() * plane]
            })
            .copied()
            .collect();
        let expected = grouped.forward(&run_input).unwrap();
        let run_output: Vec<f32> = (0..batch)
            .flat_map(|n| {
                &output[(n * 12 + run.output_channels().start) * out_plane..]
                    [..run.output_channels().len() * out_plane]
            })
            .copied()
            .collect();
        assert_eq!(same_bits(&run_output, &expected), None, "{run:?}");
    }
}

#[test]
fn refusals_name_the_rule_and_leave_the_output_untouched() {
    let params = Conv2dParams::new(5, 8, 3).bias(false);
    let sizes = GroupSizes::new([3, 2], [4, 4]);
    let weight = vec![1.0; 4 * 3 * 9 + 4 * 2 * 9];
    let options = Options::default().residual(true);
    let conv =
        UnevenConv2d::new(params, sizes.clone(), [2, 5, 6, 6], &weight, None, options).unwrap();
    let input = vec![1.0; 2 * 5 * 36];
    let mut output = vec![7.0; 2 * 8 * 16];
    let error = conv.run(&input, &mut output).unwrap_err();
    assert_eq!(error, gconv::Error::Residual { plan_adds: true });
    let error = conv
        .run_with_residual(&input, &[0.0; 5], &mut output)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("residual buffer holds 5 elements"),
        "{error}"
    );
    let error = conv
        .run_with_residual(&input[1..], &output.clone(), &mut output)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("input buffer holds 359 elements"),
        "{error}"
    );
    assert!(output.iter().all(|&v| v == 7.0));

    let error = UnevenConv2d::new(
        params,
        sizes.clone(),
        [2, 5, 6, 6],
        &weight[1..],
        None,
        options,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "weight buffer holds 179 elements, but its shape [180] needs 180"
    );
    let error = UnevenConv2d::new(
        params.bias(true),
        sizes,
        [2, 5, 6, 6],
        &weight,
        None,
        options,
    )
    .unwrap_err();
    assert!(error.to_string().contains("bias"), "{error}");
    let error = UnevenConv2d::new(
        params,
        GroupSizes::new([3, 2], [4, 3]),
        [2, 5, 6, 6],
        &weight,
        None,
        options,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "output group sizes [4, 3] add up to 7, but out_channels is 8"
    );
}

/// Other input shapes run through the same convolution give the bits of one made for that
/// shape, with one run of groups (the whole batch at once) and with several (a sample at a
/// time), with and without a residual; a shape the parameters refuse is an error.
#[test]
fn other_shapes_match_a_convolution_made_for_them() {
    let params = Conv2dParams::new(9, 9, 3).padding(gconv::Padding::uniform(1));
    // One run of three equal groups, then two runs (1-channel outputs, then 4).
    for sizes in [
        GroupSizes::new([3, 3, 3], [3, 3, 3]),
        GroupSizes::new([3, 3, 3], [1, 4, 4]),
    ] {
        let first = [1, 9, 8, 8];
        let geometry = UnevenGeometry::new(params, sizes.clone(), first).unwrap();
        let weight = gconv_testkit::data::uniform(geometry.weight_count(), 5);
        let bias = gconv_testkit::data::uniform(9, 6);
        let options = Options::default()
            .residual(true)
            .activation(Activation::Relu);
        let conv =
            UnevenConv2d::new(params, sizes.clone(), first, &weight, Some(&bias), options).unwrap();
        for shape in [[3, 9, 5, 11], [2, 9, 8, 8], [1, 9, 1, 1]] {
            let made =
                UnevenConv2d::new(params, sizes.clone(), shape, &weight, Some(&bias), options)
                    .unwrap();
            let output_len = conv.prepare(shape).unwrap().output_len();
            let input = gconv_testkit::data::uniform(shape.iter().product(), 7);
            let residual = gconv_testkit::data::uniform(output_len, 8);
            let expected = made.forward_with_residual(&input, &residual).unwrap();
            let mut output = vec![f32::NAN; output_len];
            conv.run_shaped_with_residual(shape, &input, &residual, &mut output)
                .unwrap();
            assert_eq!(same_bits(&output, &expected), None, "{sizes}, {shape:?}");
        }
        let error = conv.prepare([1, 8, 8, 8]).unwrap_err();
        assert!(error.to_string().contains("in_channels (9)"), "{error}");
    }
    // Without post-operations, forward_shaped and run_shaped agree.
    let params = Conv2dParams::new(9, 10, 3).padding(gconv::Padding::uniform(1));
    let sizes = GroupSizes::new([4, 5], [6, 4]);
    let geometry = UnevenGeometry::new(params, sizes.clone(), [1, 9, 6, 6]).unwrap();
    let weight = gconv_testkit::data::uniform(geometry.weight_count(), 1);
    let bias = gconv_testkit::data::uniform(10, 2);
    let conv = UnevenConv2d::new(
        params,
        sizes,
        [1, 9, 6, 6],
        &weight,
        Some(&bias),
        Options::default(),
    )
    .unwrap();
    let shape = [2, 9, 7, 3];
    let input = gconv_testkit::data::uniform(2 * 9 * 7 * 3, 3);
    let forwarded = conv.forward_shaped(shape, &input).unwrap();
    let mut output = vec![0.0; forwarded.len()];
    conv.run_shaped(shape, &input, &mut output).unwrap();
    assert_eq!(same_bits(&output, &forwarded), None);
}
