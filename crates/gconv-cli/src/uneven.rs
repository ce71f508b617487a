//! Uneven groups (`--in-group-sizes`, `--out-group-sizes`) for `run`: the convolution the
//! flags and tensors describe (its implementations are in `implementations`).

use anyhow::{Result, bail};
use gconv::{Conv2dParams, GroupSizes, ShapeError, UnevenGeometry};

use crate::options::GeometryOptions;

/// The convolution with uneven groups that `sizes`, the flags and the tensors' shapes
/// describe: `C_in` from the input, `C_out` the output sizes' sum, the kernel from
/// `kernel_size` or else read off the flat weight's length (a square kernel; another shape
/// needs `--kernel-size`). Every shape is checked.
pub fn geometry_of(
    sizes: GroupSizes,
    flags: &GeometryOptions,
    kernel_size: Option<[usize; 2]>,
    input_shape: &[usize],
    weight_shape: &[usize],
    bias_shape: Option<&[usize]>,
) -> Result<UnevenGeometry> {
    let &[_, in_channels, _, _] = input_shape else {
        let rank = ShapeError::InputRank {
            actual: input_shape.to_vec(),
        };
        return Err(rank.into());
    };
    let &[weight_len] = weight_shape else {
        bail!(
            "with --in-group-sizes the weight is 1-D, each group's [C_out_g, C_in_g, kH, kW] \
             block concatenated in group order; got shape {weight_shape:?}"
        );
    };
    let out_channels = sizes
        .output()
        .iter()
        .try_fold(0usize, |sum, &size| sum.checked_add(size))
        .ok_or(ShapeError::Overflow {
            what: "the sum of the group sizes",
        })?;
    sizes.validate(in_channels, out_channels)?;
    let kernel_size = match kernel_size {
        Some(kernel_size) => kernel_size,
        None => square_kernel(&sizes, weight_len)?,
    };
    let params = flags
        .apply(Conv2dParams::new(in_channels, out_channels, kernel_size))
        .bias(bias_shape.is_some());
    let input_shape = [
        input_shape[0],
        input_shape[1],
        input_shape[2],
        input_shape[3],
    ];
    let geometry = UnevenGeometry::new(params, sizes, input_shape)?;
    let spatial = geometry.spatial();
    spatial.check_bias_shape(bias_shape)?;
    geometry.check_buffer_lengths(
        geometry.input_len(),
        weight_len,
        bias_shape.map(|_| out_channels),
        geometry.output_len(),
    )?;
    Ok(geometry)
}

/// The square kernel a flat weight of `weight_len` elements implies for `sizes`.
fn square_kernel(sizes: &GroupSizes, weight_len: usize) -> Result<[usize; 2]> {
    let per_tap = sizes
        .input()
        .iter()
        .zip(sizes.output())
        .try_fold(0usize, |sum, (&input, &output)| {
            sum.checked_add(input.checked_mul(output)?)
        })
        .ok_or(ShapeError::Overflow {
            what: "the weight's size",
        })?;
    let taps = weight_len / per_tap;
    let side = taps.isqrt();
    if !weight_len.is_multiple_of(per_tap) || side * side != taps || taps == 0 {
        bail!(
            "cannot tell the kernel size from a weight of {weight_len} elements: the groups \
             {sizes} need {per_tap} per kernel tap (Σ C_out_g·C_in_g), and a square kernel \
             a square number of taps; give --kernel-size KH,KW"
        );
    }
    Ok([side, side])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::parse_padding;

    fn flags() -> GeometryOptions {
        GeometryOptions {
            groups: 1,
            stride: [1, 1],
            padding: parse_padding("1").unwrap(),
            padding_mode: gconv::PaddingMode::Zeros,
            dilation: [1, 1],
        }
    }

    #[test]
    fn the_kernel_is_read_off_the_flat_weight_when_square() {
        let sizes = GroupSizes::new([3, 2], [4, 4]);
        let geometry = geometry_of(
            sizes.clone(),
            &flags(),
            None,
            &[1, 5, 6, 6],
            &[20 * 9],
            None,
        )
        .unwrap();
        assert_eq!(geometry.spatial().kernel_size(), [3, 3]);
        let error = geometry_of(
            sizes.clone(),
            &flags(),
            None,
            &[1, 5, 6, 6],
            &[20 * 6],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("give --kernel-size"), "{error}");
        let geometry = geometry_of(
            sizes.clone(),
            &flags(),
            Some([3, 2]),
            &[1, 5, 6, 6],
            &[120],
            Some(&[8]),
        )
        .unwrap();
        assert_eq!(geometry.spatial().kernel_size(), [3, 2]);
        let error =
            geometry_of(sizes, &flags(), Some([3, 3]), &[1, 5, 6, 6], &[120], None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "weight buffer holds 120 elements, but its shape [180] needs 180"
        );
    }

    #[test]
    fn shapes_that_do_not_fit_the_sizes_are_named() {
        let sizes = GroupSizes::new([3, 2], [4, 4]);
        let error =
            geometry_of(sizes.clone(), &flags(), None, &[1, 6, 6, 6], &[180], None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "input group sizes [3, 2] add up to 5, but in_channels is 6"
        );
        let error = geometry_of(
            sizes.clone(),
            &flags(),
            None,
            &[1, 5, 6, 6],
            &[8, 5, 3, 3],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("the weight is 1-D"), "{error}");
        let error =
            geometry_of(sizes.clone(), &flags(), None, &[5, 6, 6], &[180], None).unwrap_err();
        assert!(error.to_string().contains("4 dimensions"), "{error}");
        let error =
            geometry_of(sizes, &flags(), None, &[1, 5, 6, 6], &[180], Some(&[7])).unwrap_err();
        assert!(error.to_string().contains("bias"), "{error}");
    }
}
