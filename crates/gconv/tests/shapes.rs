//! One `Conv2d` run on many input shapes: every batch size and plane its parameters accept
//! gives the bits of a `Conv2d` made for that shape, on every tier this CPU has, whatever the
//! order the shapes come in and however often the cache of set-up shapes overflows.

use gconv::{CACHED_SHAPES, Conv2d, Conv2dParams, Error, Isa, Options, Padding, ShapeError};
use proptest::prelude::*;

fn options(isa: Isa, threads: usize) -> Options {
    Options::default().isa(isa).threads(threads)
}

/// Deterministic values in [-1, 1) for a buffer of `len`.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|index| ((index * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// A layer: the parameters and a strategy for its input shapes (batch 1–5, planes from the
/// smallest its window allows to a few vectors wide).
fn layers() -> impl Strategy<Value = (Conv2dParams, usize)> {
    let depthwise = (
        1..=3usize,
        1..=2usize,
        prop::sample::select(vec![3usize, 5]),
    )
        .prop_map(|(channels, stride, kernel)| {
            let params = Conv2dParams::new(16 * channels, 16 * channels, kernel)
                .groups(16 * channels)
                .stride(stride)
                .padding(Padding::uniform(kernel / 2));
            (params, 16 * channels)
        });
    let grouped = (
        1..=4usize,
        1..=8usize,
        1..=8usize,
        prop::sample::select(vec![1usize, 3]),
    )
        .prop_map(|(groups, in_per_group, out_per_group, kernel)| {
            let params = Conv2dParams::new(groups * in_per_group, groups * out_per_group, kernel)
                .groups(groups)
                .padding(Padding::uniform(kernel / 2));
            (params, groups * in_per_group)
        });
    prop_oneof![depthwise, grouped]
}

fn shapes(in_channels: usize) -> impl Strategy<Value = Vec<[usize; 4]>> {
    prop::collection::vec(
        (1..=5usize, 5..=40usize, 5..=40usize).prop_map(move |(n, h, w)| [n, in_channels, h, w]),
        1..=2 * CACHED_SHAPES,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(gconv_testkit::strategy::cases(24)))]

    #[test]
    fn one_conv_on_many_shapes_gives_the_bits_of_a_conv_per_shape(
        ((params, in_channels), first, shapes) in layers()
            .prop_flat_map(|(params, in_channels)| {
                (Just((params, in_channels)), (1..=3usize, 5..=24usize, 5..=24usize), shapes(in_channels))
            }),
    ) {
        let weight_len = params.validate().unwrap().weight_shape().iter().product();
        let weight = values(weight_len, 1);
        let bias = values(params.out_channels, 2);
        let first = [first.0, in_channels, first.1, first.2];
        for isa in Isa::available() {
            for threads in [1, 2] {
                let conv = Conv2d::new(params, first, &weight, Some(&bias), options(isa, threads)).unwrap();
                // Each shape twice, the second time from the cache (or set up again, once
                // more than CACHED_SHAPES others came between).
                for (index, &shape) in shapes.iter().chain(&shapes).enumerate() {
                    let input = values(shape.iter().product(), index);
                    let fresh = Conv2d::new(params, shape, &weight, Some(&bias), options(isa, threads)).unwrap();
                    let expected = fresh.forward(&input).unwrap();
                    let geometry = conv.prepare(shape).unwrap();
                    prop_assert_eq!(geometry.output_shape(), fresh.geometry().output_shape());
                    let mut output = vec![f32::NAN; geometry.output_len()];
                    conv.run_shaped(shape, &input, &mut output).unwrap();
                    let identical = output.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                    prop_assert!(identical, "{isa}, {threads} threads, shape {shape:?} after {first:?}");
                    let forwarded = conv.forward_shaped(shape, &input).unwrap();
                    prop_assert!(forwarded.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                // The first shape still runs as made.
                let input = values(first.iter().product(), 99);
                let fresh = Conv2d::new(params, first, &weight, Some(&bias), options(isa, threads)).unwrap();
                let again = conv.forward_shaped(first, &input).unwrap();
                prop_assert_eq!(again, fresh.forward(&input).unwrap());
            }
        }
    }
}

#[test]
fn a_shape_the_parameters_refuse_is_an_error_that_names_it() {
    let params = Conv2dParams::new(8, 8, 3).groups(4);
    let weight = vec![0.5; 8 * 2 * 9];
    let conv = Conv2d::new(params, [1, 8, 10, 10], &weight, None, Options::default()).unwrap();
    let error = conv.prepare([1, 8, 2, 10]).unwrap_err();
    assert!(matches!(
        error,
        Error::Shape(ShapeError::KernelLargerThanInput { .. })
    ));
    let error = conv
        .run_shaped([1, 6, 10, 10], &[0.0; 600], &mut [0.0; 800])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "input [1, 6, 10, 10] must have in_channels (8) channels in dimension 1 of [N, C, H, W], but has 6"
    );
    // A buffer whose length fits another shape: the declared shape decides.
    let error = conv
        .run_shaped([2, 8, 10, 10], &[0.0; 800], &mut [0.0; 1600])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "input buffer holds 800 elements, but its shape [2, 8, 10, 10] needs 1600"
    );
}

#[test]
fn a_channels_last_input_is_named_as_such() {
    let params = Conv2dParams::new(32, 32, 3).groups(32);
    let weight = vec![0.5; 32 * 9];
    let error =
        Conv2d::new(params, [2, 33, 29, 32], &weight, None, Options::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "input [2, 33, 29, 32] must have in_channels (32) channels in dimension 1 of [N, C, H, W], \
         but has 33; its last dimension has 32: is it channels-last (NHWC)? gconv takes NCHW, here \
         [2, 32, 33, 29]"
    );
}

#[test]
fn a_bias_given_to_parameters_without_one_is_an_error() {
    let params = Conv2dParams::new(4, 4, 1).bias(false);
    let error = Conv2d::new(
        params,
        [1, 4, 3, 3],
        &[1.0; 16],
        Some(&[0.0; 4]),
        Options::default(),
    )
    .unwrap_err();
    assert_eq!(
        error,
        Error::Shape(ShapeError::BiasNotDeclared { given: 4 })
    );
    assert_eq!(
        error.to_string(),
        "a bias of 4 elements was given, but the parameters say bias = false: pass no bias, or \
         declare one with bias(true)"
    );
    // Declared (the default) and not given: a convolution without bias, as documented.
    let conv = Conv2d::new(
        Conv2dParams::new(4, 4, 1),
        [1, 4, 3, 3],
        &[1.0; 16],
        None,
        Options::default(),
    )
    .unwrap();
    assert!(!conv.geometry().has_bias());
}

/// A padding mode other than zeros is refused by the fast kernels with an error that says
/// so, rather than computed with zeros.
#[test]
fn padding_modes_other_than_zeros_are_refused_by_the_kernels() {
    use gconv::PaddingMode;
    for mode in [
        PaddingMode::Reflect,
        PaddingMode::Replicate,
        PaddingMode::Circular,
    ] {
        let params = Conv2dParams::new(4, 4, 3)
            .groups(4)
            .padding(Padding::uniform(1))
            .padding_mode(mode)
            .bias(false);
        let error =
            Conv2d::new(params, [1, 4, 8, 8], &[0.5; 36], None, Options::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "padding_mode '{mode}' does not run on gconv's vectorised kernels yet; gconv_reference computes it"
            )
        );
    }
}
