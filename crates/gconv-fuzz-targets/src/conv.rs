//! Target `conv`: small arbitrary valid problems and data through every instruction-set tier
//! the CPU has and every thread count from 1 to 3, each compared with the reference.
//!
//! Data are uniform, small integers (on which every summation order is exact, so the fast
//! kernels must match the reference exactly), or either with NaN, infinities, signed zeros,
//! subnormals and large values planted in the input. Weights and bias stay finite: a
//! non-finite weight times a padding zero is NaN in any kernel that multiplies the padding,
//! while the reference, like the formula, has no term there at all.

use arbitrary::{Result, Unstructured};
use gconv::{Conv2d, Conv2dParams, Isa, Options, Padding};
use gconv_testkit::{Problem, check_against_reference, data};

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
    check(&problem);
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

/// Runs `problem` on every tier and thread count: each result must match the reference, and
/// on one tier every thread count must give the same bits.
fn check(problem: &Problem) {
    check_runs(problem, |isa, threads| run(problem, isa, threads));
}

/// [`check`] with the convolution to check passed in, so that the tests can show it fails.
fn check_runs(problem: &Problem, run: impl Fn(Isa, usize) -> Vec<f32>) {
    for isa in Isa::available() {
        let mut first: Option<Vec<f32>> = None;
        for threads in 1..=3 {
            let output = run(isa, threads);
            if let Err(diff) = check_against_reference(problem, &output) {
                panic!(
                    "{isa:?}, {threads} threads, {:?}:\n{diff}",
                    problem.geometry
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

fn run(problem: &Problem, isa: Isa, threads: usize) -> Vec<f32> {
    let options = Options::default().isa(isa).threads(threads);
    let conv = Conv2d::from_geometry(
        &problem.geometry,
        &problem.weight,
        problem.bias.as_deref(),
        options,
    )
    .unwrap_or_else(|error| panic!("{isa:?}: a small valid problem was refused: {error}"));
    conv.forward(&problem.input).unwrap_or_else(|error| {
        panic!("{isa:?}: the input of the right length was refused: {error}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_valid_problem_from_zeros_and_checks_it() {
        // All-zero bytes decode to the smallest choices: one 1x1 channel, no padding.
        let problem = problem(&mut Unstructured::new(&[0; 64])).unwrap().unwrap();
        assert_eq!(problem.geometry.input_shape(), [1, 1, 1, 1]);
        check(&problem);
    }

    #[test]
    #[should_panic(expected = "1 threads")]
    fn a_wrong_output_is_caught() {
        let problem = problem(&mut Unstructured::new(&[7; 64])).unwrap().unwrap();
        let zeros = vec![0.0; problem.geometry.output_len()];
        assert!(check_against_reference(&problem, &zeros).is_err());
        check_runs(&problem, |_, _| zeros.clone());
    }

    #[test]
    #[should_panic(expected = "differ from 1 thread")]
    fn results_that_depend_on_the_thread_count_are_caught() {
        let mut problem = problem(&mut Unstructured::new(&[7; 64])).unwrap().unwrap();
        // Fractional data, so that the reference allows a last-bit difference.
        problem.input = data::uniform(problem.input.len(), 3);
        check_runs(&problem, |isa, threads| {
            let mut output = run(&problem, isa, 1);
            // Within the tolerance, but not the same bits.
            output[0] = f32::from_bits(output[0].to_bits() ^ u32::from(threads == 3));
            output
        });
    }
}
