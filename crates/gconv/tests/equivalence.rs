//! Fast kernels against the reference, for every tier this CPU has and thread counts 1, 2, 3,
//! over random valid problems (see `gconv_testkit::strategy` for the edge cases they aim at).

use std::num::NonZeroUsize;

use gconv::{Activation, Conv2d, Isa, Options, Threads};
use gconv_testkit::strategy::{self, Limits};
use gconv_testkit::{Problem, check_against_reference, check_fused_against_reference};
use proptest::prelude::*;

fn options(isa: Isa, threads: usize) -> Options {
    Options::default().isa(isa).threads(threads)
}

fn run(problem: &Problem, isa: Isa, threads: usize) -> Vec<f32> {
    let conv = Conv2d::from_geometry(
        &problem.geometry,
        &problem.weight,
        problem.bias.as_deref(),
        options(isa, threads),
    )
    .unwrap();
    assert_eq!(conv.isa(), isa, "the forced tier must be the one that runs");
    conv.forward(&problem.input).unwrap()
}

/// Every tier this CPU has, with every thread count, matches the reference; and the thread
/// count never changes a bit.
fn check_all(problem: &Problem) -> Result<(), TestCaseError> {
    for isa in Isa::available() {
        let single = run(problem, isa, 1);
        check_against_reference(problem, &single)
            .map_err(|diff| TestCaseError::fail(format!("{isa}: {diff}")))?;
        for threads in [2, 3] {
            let parallel = run(problem, isa, threads);
            let identical = single
                .iter()
                .zip(&parallel)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            prop_assert!(identical, "{isa}: {threads} threads differ from 1 thread");
        }
    }
    Ok(())
}

/// A problem with post-operations: the residual (or none) and the activation.
fn fused_problems(
    problems: impl Strategy<Value = Problem>,
) -> impl Strategy<Value = (Problem, Option<Vec<f32>>, Activation)> {
    problems.prop_flat_map(|problem| {
        let residual = strategy::residuals(&problem);
        (Just(problem), residual, strategy::activations())
    })
}

/// Every tier and thread count runs the post-operations in the kernel the plain convolution
/// runs, giving `activation(plain + residual)` to the bit, which matches the reference's
/// separate operations.
fn check_fused(
    problem: &Problem,
    residual: Option<&[f32]>,
    activation: Activation,
) -> Result<(), TestCaseError> {
    let make = |options: Options| {
        Conv2d::from_geometry(
            &problem.geometry,
            &problem.weight,
            problem.bias.as_deref(),
            options,
        )
        .unwrap()
    };
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for isa in Isa::available() {
        let plain = make(options(isa, 1));
        let mut expected = plain.forward(&problem.input).unwrap();
        gconv_reference::post_ops(&mut expected, residual, activation);
        for threads in [1, 2, 3] {
            let fused_options = options(isa, threads)
                .residual(residual.is_some())
                .activation(activation);
            let fused = make(fused_options);
            prop_assert_eq!(
                fused.kernel_id(),
                plain.kernel_id(),
                "the post-operations changed the kernel"
            );
            let output = match residual {
                Some(residual) => fused.forward_with_residual(&problem.input, residual),
                None => fused.forward(&problem.input),
            }
            .unwrap();
            let wrong = output.iter().zip(&expected).position(|(a, b)| !same(a, b));
            prop_assert!(
                wrong.is_none(),
                "{isa}, {threads} threads, {activation}: output {:?} is {:?}, not {:?}",
                wrong,
                wrong.map(|at| output[at]),
                wrong.map(|at| expected[at])
            );
            if threads == 1 {
                check_fused_against_reference(problem, residual, activation, &output)
                    .map_err(|diff| TestCaseError::fail(format!("{isa}, {activation}: {diff}")))?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategy::cases(128)))]

    #[test]
    fn fused_post_operations_match_the_reference(
        (problem, residual, activation) in fused_problems(strategy::problems(Limits::default()))
    ) {
        check_fused(&problem, residual.as_deref(), activation)?;
    }

    #[test]
    fn fused_post_operations_are_exact_on_small_integers(
        (problem, residual, activation) in fused_problems(strategy::integer_problems(Limits::default()))
    ) {
        check_fused(&problem, residual.as_deref(), activation)?;
    }

    #[test]
    fn nan_goes_through_every_fused_activation(
        (problem, residual, activation) in fused_problems(
            strategy::problems_with_non_finite_input(Limits::default())
        )
    ) {
        check_fused(&problem, residual.as_deref(), activation)?;
    }

    #[test]
    fn fast_kernels_match_the_reference(problem in strategy::problems(Limits::default())) {
        check_all(&problem)?;
    }

    #[test]
    fn fast_kernels_are_exact_on_small_integers(problem in strategy::integer_problems(Limits::default())) {
        check_all(&problem)?;
    }

    #[test]
    fn nan_and_infinity_propagate_as_in_the_reference(
        problem in strategy::problems_with_non_finite_input(Limits::default())
    ) {
        check_all(&problem)?;
    }
}

/// Layers of the published list large enough to be split across threads (and small enough
/// for the reference): every tier, 1, 2 and 3 threads, bit-identical and matching the
/// reference.
#[test]
fn published_layers_are_bit_identical_for_every_thread_count() {
    let layers = gconv::workload::parse_layers(gconv::workload::PUBLISHED).unwrap();
    let mut checked = 0;
    for layer in layers
        .iter()
        .filter(|layer| (1_000_000..30_000_000).contains(&layer.geometry.flops()))
    {
        let geometry = layer.geometry;
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let problem = Problem {
            geometry,
            input: values(geometry.input_len(), 1),
            weight: values(geometry.weight_count(), 2),
            bias: None,
        };
        check_all(&problem).unwrap_or_else(|error| panic!("{}: {error}", layer.name));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} layers in range");
}

/// One plan shared by several threads at once (it is `Sync`): every call gives the same
/// bits as a call alone, on every tier and thread setting.
#[test]
fn a_plan_shared_by_threads_gives_the_same_bits() {
    let layers = gconv::workload::parse_layers(gconv::workload::PUBLISHED).unwrap();
    for name in ["resnext50.layer3", "mobilenetv2.dw576_14_s2"] {
        let layer = layers.iter().find(|layer| layer.name == name).unwrap();
        let geometry = layer.geometry;
        let input = gconv_testkit::data::uniform(geometry.input_len(), 5);
        let weight = gconv_testkit::data::uniform(geometry.weight_count(), 6);
        for isa in Isa::available() {
            for threads in [Threads::All, Threads::Count(NonZeroUsize::new(2).unwrap())] {
                let options = Options {
                    threads,
                    ..Options::default().isa(isa)
                };
                let conv = Conv2d::from_geometry(&geometry, &weight, None, options).unwrap();
                let alone = conv.forward(&input).unwrap();
                std::thread::scope(|scope| {
                    for _ in 0..3 {
                        scope.spawn(|| {
                            for _ in 0..5 {
                                let output = conv.forward(&input).unwrap();
                                assert!(
                                    output
                                        .iter()
                                        .zip(&alone)
                                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                                    "{name} {isa}"
                                );
                            }
                        });
                    }
                });
            }
        }
    }
}
