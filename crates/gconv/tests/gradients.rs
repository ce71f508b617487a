//! The reference's gradients against its forward pass, over the testkit's random problems
//! (every group shape, stride, dilation, per-side padding in every padding mode, batch): the adjoint identities
//! `⟨conv(x, w), gy⟩ = ⟨x, grad_input(gy, w)⟩ = ⟨w, grad_weight(x, gy)⟩`, exactly on small
//! integers and within the rounding of the three references' outputs otherwise.

use gconv_testkit::strategy::{self, Limits};
use proptest::prelude::*;

/// `Σ a·b` in `f64` (exact products), and the number of terms.
fn dot(a: &[f32], b: &[f32]) -> (f64, usize) {
    let sum = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    (sum, a.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategy::cases(128)))]

    #[test]
    fn the_gradients_are_the_adjoints_of_the_forward_reference(
        (problem, grad_output) in strategy::gradient_problems(Limits::default())
    ) {
        let integers = problem.input.iter().chain(&problem.weight).chain(&grad_output)
            .all(|v| v.fract() == 0.0);
        let geometry = problem.geometry.params().bias(false).geometry(problem.geometry.input_shape())
            .unwrap();
        let (x, w, gy) = (&problem.input, &problem.weight, &grad_output);
        let y = gconv_reference::conv2d(&geometry, x, w, None).unwrap();
        let grad_input = gconv_reference::conv2d_grad_input(&geometry, gy, w).unwrap();
        let grad_weight = gconv_reference::conv2d_grad_weight(&geometry, x, gy).unwrap();
        let (forward, _) = dot(&y, gy);
        let (through_input, _) = dot(x, &grad_input);
        let (through_weight, _) = dot(w, &grad_weight);
        // All three sums run over the same products x·w·gy; each reference output is its
        // f64 sum rounded once to f32, an error below 2^-24 of that output's Σ|x·w| (or
        // Σ|gy·w|, Σ|gy·x|). So each side is within 2^-24·T of the exact value, with
        // T = Σ|x·w·gy| over every product; twice that between two sides, and a margin.
        let absolute = |values: &[f32]| values.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let magnitudes = gconv_reference::conv2d(&geometry, &absolute(x), &absolute(w), None).unwrap();
        let (total, _) = dot(&magnitudes, &absolute(gy));
        let bound = match integers {
            true => 0.0,
            false => 2.0 * f64::from(f32::EPSILON) * total + 1e-30,
        };
        prop_assert!(
            (forward - through_input).abs() <= bound,
            "<conv(x, w), gy> = {forward}, <x, grad_input> = {through_input}, bound {bound}"
        );
        prop_assert!(
            (forward - through_weight).abs() <= bound,
            "<conv(x, w), gy> = {forward}, <w, grad_weight> = {through_weight}, bound {bound}"
        );
    }
}
