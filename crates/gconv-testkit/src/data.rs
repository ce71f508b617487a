//! Deterministic pseudo-random tensors, the same on every machine, so that demos,
//! benchmarks and tests run on repeatable data.

/// `len` values uniform in `[-1, 1)`, the same for the same `seed` on every machine.
pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
    // SplitMix64: a full-period generator good enough for test data, and trivially portable.
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 24 bits give an exactly representable value in [0, 1).
            (z >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_in_range_and_repeatable() {
        let values = uniform(10_000, 7);
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        assert_eq!(values, uniform(10_000, 7));
        assert_ne!(values, uniform(10_000, 8));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }
}
