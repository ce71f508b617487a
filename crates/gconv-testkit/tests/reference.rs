//! The reference checked against independent formulations of grouped convolution: split per
//! group then concatenate, ordinary dense convolution for one group, dense convolution with a
//! block-diagonal weight. All sum in f64 in the same order, so they agree exactly.

use gconv_reference::{block_diagonal_weight, conv2d, conv2d_split_concat, dense_conv2d};
use gconv_shape::{Conv2dParams, PaddingMode};
use gconv_testkit::strategy::{self, Limits};
use proptest::prelude::*;

/// Equality that treats +0 and -0 alike (the only way exact sums that skip or add zero
/// padding terms can differ) and requires a NaN to meet a NaN.
fn same_values(left: &[f32], right: &[f32]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Both references in every padding mode: the mode's index map against F.pad's copies.
    #[test]
    fn reference_equals_split_then_concatenate_in_every_padding_mode(
        problem in strategy::problems(Limits::default()),
        mode in proptest::sample::select(PaddingMode::ALL.to_vec()),
    ) {
        let geometry = strategy::in_padding_mode(&problem.geometry, mode);
        let bias = problem.bias.as_deref();
        let direct = conv2d(&geometry, &problem.input, &problem.weight, bias).unwrap();
        let split = conv2d_split_concat(&geometry, &problem.input, &problem.weight, bias).unwrap();
        prop_assert!(same_values(&direct, &split), "{mode}: {direct:?}\n!=\n{split:?}");
    }

    #[test]
    fn reference_equals_split_then_concatenate(problem in strategy::problems(Limits::default())) {
        let bias = problem.bias.as_deref();
        let direct = conv2d(&problem.geometry, &problem.input, &problem.weight, bias).unwrap();
        let split = conv2d_split_concat(&problem.geometry, &problem.input, &problem.weight, bias).unwrap();
        prop_assert!(same_values(&direct, &split), "{direct:?}\n!=\n{split:?}");
    }

    #[test]
    fn reference_with_one_group_equals_dense_convolution(
        problem in strategy::problems(Limits { max_groups: 1, ..Limits::default() })
    ) {
        prop_assert_eq!(problem.geometry.groups(), 1);
        let bias = problem.bias.as_deref();
        let direct = conv2d(&problem.geometry, &problem.input, &problem.weight, bias).unwrap();
        let dense = dense_conv2d(&problem.geometry, &problem.input, &problem.weight, bias).unwrap();
        prop_assert!(same_values(&direct, &dense));
    }

    #[test]
    fn grouped_equals_dense_with_a_block_diagonal_weight(problem in strategy::problems(Limits::default())) {
        let geometry = problem.geometry;
        let params = Conv2dParams { groups: 1, ..*geometry.params() };
        let dense_geometry = params.geometry(geometry.input_shape()).unwrap();
        let dense_weight = block_diagonal_weight(&geometry, &problem.weight).unwrap();
        let bias = problem.bias.as_deref();
        let grouped = conv2d(&geometry, &problem.input, &problem.weight, bias).unwrap();
        let dense = conv2d(&dense_geometry, &problem.input, &dense_weight, bias).unwrap();
        prop_assert!(same_values(&grouped, &dense));
    }

    #[test]
    fn every_generated_invalid_case_is_refused_for_its_rule((params, input, rule) in strategy::invalid_cases()) {
        let error = params.geometry(input).unwrap_err();
        prop_assert!(rule.matches(&error), "{rule:?} but got {error}");
    }
}
