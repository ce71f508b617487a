//! Target `shape`: arbitrary parameters and input shapes into validation.
//!
//! The oracle recomputes validity and every size in `u128`, where nothing a `usize` can hold
//! overflows, and enumerates windows one by one where they are few enough. Validation must
//! agree with it exactly: a valid case gives the oracle's geometry, an invalid one an error.

use arbitrary::{Result, Unstructured};
use gconv_shape::{Conv2dParams, Geometry, Padding, PaddingPerSide};

/// Decodes one case from `data` and checks it; panics only on a defect.
pub fn shape(data: &[u8]) {
    let mut bytes = Unstructured::new(data);
    if let Ok((params, input_shape)) = case(&mut bytes) {
        check(&params, &input_shape);
    }
}

/// Parameters and an input shape of any rank, sizes biased towards the small and the extreme.
fn case(bytes: &mut Unstructured) -> Result<(Conv2dParams, Vec<usize>)> {
    let mut params = Conv2dParams::new(size(bytes)?, size(bytes)?, [size(bytes)?, size(bytes)?])
        .stride([size(bytes)?, size(bytes)?])
        .dilation([size(bytes)?, size(bytes)?])
        .groups(size(bytes)?)
        .bias(bytes.arbitrary()?);
    params.padding = match bytes.int_in_range(0u8..=5)? {
        0 => Padding::Same,
        1 => Padding::Valid,
        _ => Padding::per_side(size(bytes)?, size(bytes)?, size(bytes)?, size(bytes)?),
    };
    let rank = match bytes.int_in_range(0u8..=7)? {
        0 => bytes.int_in_range(0usize..=6)?,
        _ => 4,
    };
    let mut input_shape = (0..rank)
        .map(|_| size(bytes))
        .collect::<Result<Vec<usize>>>()?;
    // Mostly the channel count the parameters expect, so that cases get past that rule.
    if rank == 4 && bytes.int_in_range(0u8..=3)? != 0 {
        input_shape[1] = params.in_channels;
    }
    Ok((params, input_shape))
}

/// A size: usually small, sometimes at the edges of `usize`.
fn size(bytes: &mut Unstructured) -> Result<usize> {
    Ok(match bytes.int_in_range(0u8..=15)? {
        0 => usize::MAX - bytes.int_in_range(0usize..=3)?,
        1 => 1 << bytes.int_in_range(16..=usize::BITS - 1)?,
        2 => bytes.arbitrary()?,
        3 => bytes.int_in_range(0..=100_000)?,
        _ => bytes.int_in_range(0..=24)?,
    })
}

fn check(params: &Conv2dParams, input_shape: &[usize]) {
    let expected_params = expected_valid_params(params);
    let validated = params.validate();
    assert_eq!(
        validated.is_ok(),
        expected_params.is_some(),
        "{params:?}: validate() gave {validated:?}"
    );
    if let (Ok(valid), Some(padding)) = (&validated, expected_params) {
        assert_eq!(valid.padding(), padding, "{params:?}");
        let weights = wide_product(&valid.weight_shape());
        assert_eq!(valid.weight_count() as u128, weights, "{params:?}");
        let parameters = weights
            + if params.bias {
                wide(params.out_channels)
            } else {
                0
            };
        match valid.parameter_count() {
            Ok(count) => assert_eq!(count as u128, parameters, "{params:?}"),
            Err(error) => assert!(parameters > wide(usize::MAX), "{params:?}: {error}"),
        }
    }

    let expected =
        expected_params.and_then(|padding| expected_geometry(params, padding, input_shape));
    match (params.geometry(input_shape), expected) {
        (Ok(geometry), Some(output_size)) => check_geometry(&geometry, input_shape, output_size),
        (Err(error), None) => assert!(
            !error.to_string().is_empty(),
            "{params:?} {input_shape:?}: an error without a message"
        ),
        (Ok(geometry), None) => {
            panic!("{params:?} {input_shape:?}: invalid, yet validation gave {geometry:?}")
        }
        (Err(error), Some(output_size)) => panic!(
            "{params:?} {input_shape:?}: valid with output {output_size:?}, yet validation said: {error}"
        ),
    }
}

/// The padding per side when the input-independent rules hold.
fn expected_valid_params(params: &Conv2dParams) -> Option<PaddingPerSide> {
    let sizes = [
        params.in_channels,
        params.out_channels,
        params.groups,
        params.kernel_size[0],
        params.kernel_size[1],
        params.stride[0],
        params.stride[1],
        params.dilation[0],
        params.dilation[1],
    ];
    if sizes.contains(&0)
        || !params.in_channels.is_multiple_of(params.groups)
        || !params.out_channels.is_multiple_of(params.groups)
    {
        return None;
    }
    let padding = match params.padding {
        Padding::Explicit(sides) => sides,
        Padding::Valid => PaddingPerSide::default(),
        Padding::Same if params.stride != [1, 1] => return None,
        Padding::Same => {
            let total = |axis: usize| {
                usize::try_from(wide(params.dilation[axis]) * wide(params.kernel_size[axis] - 1))
            };
            let (vertical, horizontal) = (total(0).ok()?, total(1).ok()?);
            PaddingPerSide {
                top: vertical / 2,
                bottom: vertical - vertical / 2,
                left: horizontal / 2,
                right: horizontal - horizontal / 2,
            }
        }
    };
    let weights = wide_product(&[
        params.out_channels,
        params.in_channels / params.groups,
        params.kernel_size[0],
        params.kernel_size[1],
    ]);
    (weights <= wide(usize::MAX)).then_some(padding)
}

/// The output `[H_out, W_out]` when the input fits the parameters and every count fits.
fn expected_geometry(
    params: &Conv2dParams,
    padding: PaddingPerSide,
    input_shape: &[usize],
) -> Option<[usize; 2]> {
    let &[batch, channels, height, width] = input_shape else {
        return None;
    };
    if input_shape.contains(&0) || channels != params.in_channels {
        return None;
    }
    let extent = |axis: usize, input: usize, before: usize, after: usize| {
        let effective = wide(params.dilation[axis]) * wide(params.kernel_size[axis] - 1) + 1;
        let padded = wide(input) + wide(before) + wide(after);
        if effective > wide(usize::MAX) || padded > wide(usize::MAX) || effective > padded {
            return None;
        }
        Some((padded - effective) / wide(params.stride[axis]) + 1)
    };
    let output_h = extent(0, height, padding.top, padding.bottom)?;
    let output_w = extent(1, width, padding.left, padding.right)?;
    let outputs = wide_product(&[batch, params.out_channels])
        .saturating_mul(output_h)
        .saturating_mul(output_w);
    let flops = wide_product(&[
        2,
        params.in_channels / params.groups,
        params.kernel_size[0],
        params.kernel_size[1],
    ])
    .saturating_mul(outputs);
    let fits = wide_product(input_shape) <= wide(usize::MAX)
        && outputs <= wide(usize::MAX)
        && flops <= u128::from(u64::MAX);
    fits.then_some([output_h as usize, output_w as usize])
}

fn check_geometry(geometry: &Geometry, input_shape: &[usize], output_size: [usize; 2]) {
    let params = geometry.params();
    let groups = params.groups;
    assert_eq!(geometry.input_shape().as_slice(), input_shape);
    assert_eq!(geometry.output_size(), output_size, "{geometry:?}");
    assert_eq!(
        geometry.weight_shape(),
        [
            params.out_channels,
            params.in_channels / groups,
            params.kernel_size[0],
            params.kernel_size[1]
        ]
    );
    assert_eq!(wide(geometry.input_len()), wide_product(input_shape));
    assert_eq!(
        wide(geometry.output_len()),
        wide_product(&geometry.output_shape())
    );
    assert_eq!(
        u128::from(geometry.flops()),
        2 * wide(geometry.output_len()) * wide(geometry.reduction_len())
    );
    let padding = geometry.padding();
    for axis in 0..2 {
        let (before, after, interior) = if axis == 0 {
            (padding.top, padding.bottom, geometry.interior_rows())
        } else {
            (padding.left, padding.right, geometry.interior_cols())
        };
        check_windows(geometry, axis, [before, after], interior);
    }
    if groups <= 4096 {
        let mut next_input = 0;
        let mut next_output = 0;
        for group in 0..groups {
            let (inputs, outputs) = (
                geometry.group_input_channels(group),
                geometry.group_output_channels(group),
            );
            assert_eq!((inputs.start, outputs.start), (next_input, next_output));
            (next_input, next_output) = (inputs.end, outputs.end);
        }
        assert_eq!(
            (next_input, next_output),
            (params.in_channels, params.out_channels)
        );
    }
}

/// Along one axis, enumerates every window of the padded input tap by tap (when there are few
/// enough) and checks the output extent and the interior against them.
fn check_windows(
    geometry: &Geometry,
    axis: usize,
    [before, after]: [usize; 2],
    interior: std::ops::Range<usize>,
) {
    let input = geometry.input_size()[axis];
    let (kernel, stride, dilation) = (
        geometry.kernel_size()[axis],
        geometry.stride()[axis],
        geometry.dilation()[axis],
    );
    let padded = input + before + after;
    let output = geometry.output_size()[axis];
    if padded > 1 << 16 || kernel > 64 || output.saturating_mul(kernel) > 1 << 16 {
        return;
    }
    // Positions in u128: a huge stride may put the second window beyond usize.
    let taps = |window: usize| {
        (0..kernel).map(move |tap| wide(window) * wide(stride) + wide(tap) * wide(dilation))
    };
    let windows = (0..)
        .take_while(|&window| taps(window).all(|position| position < wide(padded)))
        .count();
    assert_eq!(windows, output, "axis {axis} of {geometry:?}");
    for window in 0..output {
        let inside =
            taps(window).all(|position| (wide(before)..wide(before + input)).contains(&position));
        assert_eq!(
            inside,
            interior.contains(&window),
            "axis {axis}, window {window} of {geometry:?}: interior {interior:?}"
        );
    }
}

fn wide(value: usize) -> u128 {
    value as u128
}

fn wide_product(values: &[usize]) -> u128 {
    // Three factors below 2^64 can overflow u128; saturating is enough to compare with the
    // limits of usize and u64.
    values
        .iter()
        .fold(1u128, |product, &value| product.saturating_mul(wide(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_agrees_with_hand_computed_sizes() {
        // AlexNet conv2: 48 → 128 per group, 5x5, padding 2, on 27x27.
        let params = Conv2dParams::new(96, 256, 5)
            .padding(Padding::uniform(2))
            .groups(2);
        let padding = expected_valid_params(&params).unwrap();
        assert_eq!(
            expected_geometry(&params, padding, &[1, 96, 27, 27]),
            Some([27, 27])
        );
        // Stride 2, dilation 3, kernel 3 on 10 rows, no padding: (10 - 7) / 2 + 1 = 2.
        let params = Conv2dParams::new(4, 4, 3).stride(2).dilation(3).groups(4);
        let padding = expected_valid_params(&params).unwrap();
        assert_eq!(
            expected_geometry(&params, padding, &[1, 4, 10, 10]),
            Some([2, 2])
        );
        assert_eq!(expected_geometry(&params, padding, &[1, 4, 6, 10]), None);
        assert_eq!(expected_valid_params(&params.groups(3)), None);
    }

    #[test]
    fn a_huge_batch_overflows_the_output_count() {
        let params = Conv2dParams::new(2, 2, 1);
        let shape = [usize::MAX / 2, 2, 2, 2];
        assert_eq!(
            expected_geometry(&params, PaddingPerSide::default(), &shape),
            None
        );
        check(&params, &shape);
    }
}
