//! Target `conv`: small arbitrary valid problems and data through every instruction-set tier
//! the CPU has and every thread count from 1 to 3, each compared with the reference; with
//! post-operations (a residual, an activation) when the bytes go on past the problem; and
//! with a padding mode after those: refused by the kernels, which do not compute modes yet,
//! and computed alike by the reference's two formulations (the mode's index map and F.pad's
//! copies), or refused by the shape rules naming the mode.
//!
//! Data are uniform, small integers (on which every summation order is exact, so the fast
//! kernels must match the reference exactly), or either with NaN, infinities, signed zeros,
//! subnormals and large values planted in the input. Weights and bias stay finite: a
//! non-finite weight times a padding zero is NaN in any kernel that multiplies the padding,
//! while the reference, like the formula, has no term there at all.

use arbitrary::{Result, Unstructured};
use gconv::{Activation, Conv2d, Conv2dParams, Isa, Options, Padding, PaddingMode, ShapeError};
use gconv_testkit::{Problem, check_against_reference, check_fused_against_reference, data};

/// Values planted in the input: the IEEE special cases and magnitudes at the edges.
const SPECIALS: [f32; 8] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -0.0,
    1.0e-40, // subnormal
    -3.0e6,
    7.0e5,
    f32::MIN_POSITIVE,
];

/// Decodes one problem from `data`, runs it everywhere and checks every result; panics only
/// on a defect.
pub fn conv(data: &[u8]) {
    let mut bytes = Unstructured::new(data);
    let Ok(Some(problem)) = problem(&mut bytes) else {
        return;
    };
    let Ok(post) = post_operations(&mut bytes, &problem) else {
        return;
    };
    check(&problem, &post);
    if let Ok(mode) = bytes.choose(&PaddingMode::ALL) {
        check_padding_mode(&problem, *mode);
    }
}

/// `problem`'s parameters in padding mode `mode`: refused with the mode's own error when a
/// side's padding is beyond its limit; otherwise refused by the kernels (unless zeros) and
/// computed alike by the reference's two formulations.
fn check_padding_mode(problem: &Problem, mode: PaddingMode) {
    let params = problem.geometry.params().padding_mode(mode);
    let geometry = match params.geometry(problem.geometry.input_shape()) {
        Ok(geometry) => geometry,
        Err(ShapeError::PaddingModeTooLarge { mode: refused, .. }) if refused == mode => return,
        Err(error) => panic!(
            "{mode}: {:?} refused for another reason: {error}",
            problem.geometry
        ),
    };
    if mode != PaddingMode::Zeros {
        let refused = Conv2d::from_geometry(
            &geometry,
            &problem.weight,
            problem.bias.as_deref(),
            Options::default().threads(1),
        );
        assert!(
            matches!(refused, Err(gconv::Error::Unsupported { .. })),
            "{mode}: the kernels must refuse a padding mode they do not compute"
        );
    }
    let bias = problem.bias.as_deref();
    let direct = gconv_reference::conv2d(&geometry, &problem.input, &problem.weight, bias)
        .expect("the buffers match the geometry");
    let split =
        gconv_reference::conv2d_split_concat(&geometry, &problem.input, &problem.weight, bias)
            .expect("the buffers match the geometry");
    let same = direct
        .iter()
        .zip(&split)
        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
    assert!(same, "{mode}: the references differ on {geometry:?}");
}

/// What follows the convolution: an optional residual and an activation.
struct Post {
    residual: Option<Vec<f32>>,
    activation: Activation,
}

/// Activations with the parameters where implementations part: bounds in the wrong order,
/// infinite ones, slopes of 0, negative and steeper than 1.
const ACTIVATIONS: [Activation; 8] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Relu6,
    Activation::Clamp {
        min: -0.5,
        max: 0.75,
    },
    Activation::Clamp {
        min: 1.0,
        max: -1.0,
    },
    Activation::Clamp {
        min: f64::NEG_INFINITY,
        max: 0.0,
    },
    Activation::LeakyRelu { slope: -2.5 },
    Activation::LeakyRelu { slope: 0.0 },
];

/// The post-operations decoded after the problem: none when the bytes have run out, so that
/// the corpus found before post-operations existed decodes to the cases it always did.
fn post_operations(bytes: &mut Unstructured, problem: &Problem) -> Result<Post> {
    let activation = ACTIVATIONS[bytes.choose_index(ACTIVATIONS.len()).unwrap_or(0)];
    let residual = match bytes.arbitrary::<Option<u64>>()? {
        None => None,
        // Integers when the data are, so that exact problems stay exact.
        Some(seed) => {
            let values = data::uniform(problem.geometry.output_len(), seed);
            let integers = problem.input.iter().all(|value| value.fract() == 0.0);
            Some(match integers {
                true => values.iter().map(|value| (value * 4.0).round()).collect(),
                false => values,
            })
        }
    };
    Ok(Post {
        residual,
        activation,
    })
}

/// A valid problem within the sizes the property tests use, or `None` when the decoded
/// parameters are invalid (the `shape` target covers those).
fn problem(bytes: &mut Unstructured) -> Result<Option<Problem>> {
    let groups = bytes.int_in_range(1..=6)?;
    let in_per_group = bytes.int_in_range(1..=5)?;
    let out_per_group = bytes.int_in_range(1..=3)?;
    let kernel = [bytes.int_in_range(1..=5)?, bytes.int_in_range(1..=5)?];
    let mut params = Conv2dParams::new(groups * in_per_group, groups * out_per_group, kernel)
        .groups(groups)
        .stride([bytes.int_in_range(1..=3)?, bytes.int_in_range(1..=3)?])
        .dilation([bytes.int_in_range(1..=3)?, bytes.int_in_range(1..=3)?])
        .bias(bytes.arbitrary()?);
    params.padding = if bytes.ratio(1, 8)? {
        Padding::Same
    } else {
        let mut side = || bytes.int_in_range(0..=3);
        Padding::per_side(side()?, side()?, side()?, side()?)
    };
    let input_shape = [
        bytes.int_in_range(1..=2)?,
        params.in_channels,
        bytes.int_in_range(1..=12)?,
        bytes.int_in_range(1..=40)?,
    ];
    let Ok(geometry) = params.geometry(input_shape) else {
        return Ok(None);
    };
    let integers = bytes.arbitrary()?;
    let seed = bytes.arbitrary()?;
    let values = |len: usize, seed: u64| -> Vec<f32> {
        let values = data::uniform(len, seed);
        if integers {
            values.iter().map(|value| (value * 4.0).round()).collect()
        } else {
            values
        }
    };
    let mut input = values(geometry.input_len(), seed);
    let weight = values(geometry.weight_count(), seed ^ 1);
    let bias = geometry
        .has_bias()
        .then(|| values(geometry.out_channels(), seed ^ 2));
    for _ in 0..bytes.int_in_range(0..=6)? {
        let index = bytes.choose_index(input.len())?;
        input[index] = *bytes.choose(&SPECIALS)?;
    }
    Ok(Some(Problem {
        geometry,
        input,
        weight,
        bias,
    }))
}

/// Runs `problem` with `post` on every tier and thread count: each result must match the
/// reference, and on one tier every thread count must give the same bits.
fn check(problem: &Problem, post: &Post) {
    check_runs(problem, post, |isa, threads| {
        run(problem, post, isa, threads)
    });
}

/// [`check`] with the convolution to check passed in, so that the tests can show it fails.
fn check_runs(problem: &Problem, post: &Post, run: impl Fn(Isa, usize) -> Vec<f32>) {
    for isa in Isa::available() {
        let mut first: Option<Vec<f32>> = None;
        for threads in 1..=3 {
            let output = run(isa, threads);
            let checked = match (&post.residual, post.activation) {
                (None, Activation::Identity) => check_against_reference(problem, &output),
                (residual, activation) => {
                    check_fused_against_reference(problem, residual.as_deref(), activation, &output)
                }
            };
            if let Err(diff) = checked {
                panic!(
                    "{isa:?}, {threads} threads, {:?}, {} (residual: {}):\n{diff}",
                    problem.geometry,
                    post.activation,
                    post.residual.is_some()
                );
            }
            match &first {
                None => first = Some(output),
                Some(first) => assert!(
                    first
                        .iter()
                        .zip(&output)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?}: {threads} threads differ from 1 thread on {:?}",
                    problem.geometry
                ),
            }
        }
    }
}

fn run(problem: &Problem, post: &Post, isa: Isa, threads: usize) -> Vec<f32> {
    let options = Options::default()
        .isa(isa)
        .threads(threads)
        .residual(post.residual.is_some())
        .activation(post.activation);
    let conv = Conv2d::from_geometry(
        &problem.geometry,
        &problem.weight,
        problem.bias.as_deref(),
        options,
    )
    .unwrap_or_else(|error| panic!("{isa:?}: a small valid problem was refused: {error}"));
    match &post.residual {
        Some(residual) => conv.forward_with_residual(&problem.input, residual),
        None => conv.forward(&problem.input),
    }
    .unwrap_or_else(|error| panic!("{isa:?}: the input of the right length was refused: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_valid_problem_from_zeros_and_checks_it() {
        // All-zero bytes decode to the smallest choices: one 1x1 channel, no padding.
        let mut bytes = Unstructured::new(&[0; 64]);
        let problem = problem(&mut bytes).unwrap().unwrap();
        assert_eq!(problem.geometry.input_shape(), [1, 1, 1, 1]);
        let post = post_operations(&mut bytes, &problem).unwrap();
        check(&problem, &post);
    }

    /// Bytes past the problem choose post-operations, checked against the reference's.
    #[test]
    fn bytes_past_the_problem_add_a_residual_and_an_activation() {
        let mut data = vec![7u8; 64];
        data.extend([4, 1, 9, 9, 9, 9, 9, 9, 9, 9]);
        let mut bytes = Unstructured::new(&data);
        let problem = problem(&mut bytes).unwrap().unwrap();
        let post = post_operations(&mut bytes, &problem).unwrap();
        assert!(post.residual.is_some());
        assert_ne!(post.activation, Activation::Identity);
        check(&problem, &post);
    }

    /// Bytes past the post-operations choose a padding mode: each mode of a small problem
    /// with padding on every side, within the modes' limits and past reflect's.
    #[test]
    fn every_padding_mode_is_refused_by_the_kernels_and_agreed_by_the_references() {
        let mut problem = problem(&mut Unstructured::new(&[7; 64])).unwrap().unwrap();
        for padding in [1, 2, 40] {
            let params = problem.geometry.params().padding(Padding::uniform(padding));
            let Ok(geometry) = params.geometry(problem.geometry.input_shape()) else {
                continue;
            };
            problem.geometry = geometry;
            for mode in PaddingMode::ALL {
                check_padding_mode(&problem, mode);
            }
        }
    }

    #[test]
    #[should_panic(expected = "residual: true")]
    fn a_missing_residual_is_caught() {
        let mut bytes = Unstructured::new(&[7; 64]);
        let problem = problem(&mut bytes).unwrap().unwrap();
        let post = Post {
            residual: Some(vec![1.0; problem.geometry.output_len()]),
            activation: Activation::Identity,
        };
        let plain = Post {
            residual: None,
            activation: Activation::Identity,
        };
        check_runs(&problem, &post, |isa, threads| {
            run(&problem, &plain, isa, threads)
        });
    }

    #[test]
    #[should_panic(expected = "1 threads")]
    fn a_wrong_output_is_caught() {
        let problem = problem(&mut Unstructured::new(&[7; 64])).unwrap().unwrap();
        let zeros = vec![0.0; problem.geometry.output_len()];
        assert!(check_against_reference(&problem, &zeros).is_err());
        let post = Post {
            residual: None,
            activation: Activation::Identity,
        };
        check_runs(&problem, &post, |_, _| zeros.clone());
    }

    #[test]
    #[should_panic(expected = "differ from 1 thread")]
    fn results_that_depend_on_the_thread_count_are_caught() {
        let mut problem = problem(&mut Unstructured::new(&[7; 64])).unwrap().unwrap();
        // Fractional data, so that the reference allows a last-bit difference.
        problem.input = data::uniform(problem.input.len(), 3);
        let post = Post {
            residual: None,
            activation: Activation::Identity,
        };
        check_runs(&problem, &post, |isa, threads| {
            let mut output = run(&problem, &post, isa, 1);
            // Within the tolerance, but not the same bits.
            output[0] = f32::from_bits(output[0].to_bits() ^ u32::from(threads == 3));
            output
        });
    }
}
