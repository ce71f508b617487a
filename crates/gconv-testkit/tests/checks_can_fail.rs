//! The testkit's comparison accepts a correct convolution and rejects wrong ones: a check that
//! cannot fail would be worthless.

use gconv_testkit::strategy::{self, Limits};
use gconv_testkit::{OutputDiff, Problem, check_against_reference};
use proptest::prelude::*;

fn reference(problem: &Problem) -> Vec<f32> {
    gconv_reference::conv2d(
        &problem.geometry,
        &problem.input,
        &problem.weight,
        problem.bias.as_deref(),
    )
    .unwrap()
}

proptest! {
    #[test]
    fn the_reference_passes_its_own_check(problem in strategy::problems(Limits::default())) {
        prop_assert_eq!(check_against_reference(&problem, &reference(&problem)), Ok(()));
    }

    #[test]
    fn nan_and_infinity_in_the_input_are_checked_as_they_propagate(
        problem in strategy::problems_with_non_finite_input(Limits::default())
    ) {
        prop_assert_eq!(check_against_reference(&problem, &reference(&problem)), Ok(()));
    }

    /// Changing one weight by one unit changes every output that uses it by a whole product:
    /// on integer data, where the check is exact, that must be caught (when the weight meets a
    /// nonzero input at all).
    #[test]
    fn a_wrong_weight_is_caught(
        problem in strategy::integer_problems(Limits::default()),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut wrong = problem.clone();
        let tap = pick.index(wrong.weight.len());
        wrong.weight[tap] += 1.0;
        let output = reference(&wrong);
        if output != reference(&problem) {
            let verdict = check_against_reference(&problem, &output);
            let caught = matches!(verdict, Err(OutputDiff::Values { .. }));
            prop_assert!(caught, "a changed weight went unnoticed: {:?}", verdict);
        }
    }

    #[test]
    fn a_missing_bias_is_caught(problem in strategy::problems(Limits::default())) {
        prop_assume!(problem.bias.as_ref().is_some_and(|b| b.iter().any(|&v| v.abs() > 1e-3)));
        let without_bias = gconv_reference::conv2d(
            &gconv_shape::Conv2dParams { bias: false, ..*problem.geometry.params() }
                .geometry(problem.geometry.input_shape())
                .unwrap(),
            &problem.input,
            &problem.weight,
            None,
        )
        .unwrap();
        prop_assert!(check_against_reference(&problem, &without_bias).is_err());
    }
}

mod gradients {
    use gconv_testkit::gradients::{gradient_magnitudes, reference_gradient};
    use gconv_testkit::strategy::{self, Limits};
    use gconv_testkit::{Gradient, OutputDiff, check_gradient_against_reference};
    use proptest::prelude::*;

    const ALL: [Gradient; 3] = [Gradient::Input, Gradient::Weight, Gradient::Bias];

    proptest! {
        #[test]
        fn the_reference_passes_its_own_gradient_checks(
            (problem, grad_output) in strategy::gradient_problems(Limits::default())
        ) {
            for gradient in ALL {
                let actual = reference_gradient(&problem, &grad_output, gradient);
                prop_assert_eq!(
                    check_gradient_against_reference(&problem, &grad_output, gradient, &actual),
                    Ok(()),
                    "{:?}", gradient
                );
            }
        }

        /// One element moved by a hundredth of its magnitude (far more than any rounding
        /// of its reduction, long as the weight's is) is caught, for each gradient.
        #[test]
        fn a_gradient_element_off_by_a_hundredth_is_caught(
            (problem, grad_output) in strategy::gradient_problems(Limits::default()),
            pick in any::<prop::sample::Index>(),
        ) {
            for gradient in ALL {
                let mut actual = reference_gradient(&problem, &grad_output, gradient);
                let index = pick.index(actual.len());
                let magnitude = gradient_magnitudes(&problem, &grad_output, gradient)[index];
                if magnitude <= 1e-3 {
                    continue;
                }
                actual[index] += magnitude / 100.0;
                let verdict = check_gradient_against_reference(&problem, &grad_output, gradient, &actual);
                prop_assert!(
                    matches!(verdict, Err(OutputDiff::Values { count: 1, .. })),
                    "{:?}: {:?}", gradient, verdict
                );
            }
        }
    }
}
