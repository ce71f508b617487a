//! The convolution followed by its post-operations, as PyTorch computes them one after the
//! other on `f32` tensors:
//!
//! ```text
//! t = y + r          (y the convolution's output rounded to f32, r the residual; one f32 add)
//! out = act(t)       (in f32, the activation's parameters rounded to f32 first)
//! ```
//!
//! with `act` one of
//!
//! ```text
//! identity(t)          = t
//! relu(t)              = clamp(t, 0, +inf)
//! relu6(t)             = clamp(t, 0, 6)
//! clamp(t, min, max)   = u > max ? max : u   where u = t < min ? min : t
//! leaky_relu(t, slope) = t > 0 ? t : t · slope
//! ```
//!
//! A NaN `t` fails every comparison and comes out as it went in: NaN propagates through every
//! activation, as in PyTorch. With `min > max`, clamp gives `max` everywhere, as
//! `torch.clamp` does.

use gconv_shape::{Activation, Geometry, ShapeError};

/// `act(value)` for one `f32` element: the formulas of the module documentation.
pub fn activate(activation: Activation, value: f32) -> f32 {
    let clamp = |min: f32, max: f32| {
        let raised = if value < min { min } else { value };
        if raised > max { max } else { raised }
    };
    match activation {
        Activation::Identity => value,
        Activation::Relu => clamp(0.0, f32::INFINITY),
        Activation::Relu6 => clamp(0.0, 6.0),
        Activation::Clamp { min, max } => clamp(min as f32, max as f32),
        Activation::LeakyRelu { slope } => {
            if value > 0.0 {
                value
            } else {
                value * slope as f32
            }
        }
    }
}

/// [`crate::conv2d`], then the residual (NCHW, the output's shape) added and `activation`
/// applied, element by element (see the module documentation).
pub fn conv2d_fused(
    geometry: &Geometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    activation: Activation,
) -> Result<Vec<f32>, ShapeError> {
    activation.validate()?;
    if let Some(residual) = residual {
        geometry.check_residual_length(residual.len())?;
    }
    let mut output = crate::conv2d(geometry, input, weight, bias)?;
    post_ops(&mut output, residual, activation);
    Ok(output)
}

/// The post-operations alone, on an output already computed: `output[i] =
/// act(output[i] + residual[i])` (see the module documentation).
///
/// # Panics
///
/// If `residual` is not as long as `output`.
pub fn post_ops(output: &mut [f32], residual: Option<&[f32]>, activation: Activation) {
    match residual {
        Some(residual) => {
            assert_eq!(residual.len(), output.len(), "a residual of another length");
            for (value, &residual) in output.iter_mut().zip(residual) {
                *value = activate(activation, *value + residual);
            }
        }
        None => {
            for value in output.iter_mut() {
                *value = activate(activation, *value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::Conv2dParams;

    #[test]
    fn activations_by_hand() {
        let values = [-7.0, -0.5, 0.0, 0.5, 6.0, 7.5];
        let apply = |activation| values.map(|v| activate(activation, v));
        assert_eq!(apply(Activation::Identity), values);
        assert_eq!(apply(Activation::Relu), [0.0, 0.0, 0.0, 0.5, 6.0, 7.5]);
        assert_eq!(apply(Activation::Relu6), [0.0, 0.0, 0.0, 0.5, 6.0, 6.0]);
        let clamp = Activation::Clamp {
            min: -1.0,
            max: 0.25,
        };
        assert_eq!(apply(clamp), [-1.0, -0.5, 0.0, 0.25, 0.25, 0.25]);
        let leaky = Activation::LeakyRelu { slope: 0.5 };
        assert_eq!(apply(leaky), [-3.5, -0.25, 0.0, 0.5, 6.0, 7.5]);
        // torch.clamp with min > max: max everywhere.
        let inverted = Activation::Clamp { min: 2.0, max: 1.0 };
        assert_eq!(apply(inverted), [1.0; 6]);
    }

    #[test]
    fn nan_goes_through_every_activation() {
        for activation in [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::Clamp { min: 0.0, max: 1.0 },
            Activation::LeakyRelu { slope: 0.1 },
        ] {
            assert!(activate(activation, f32::NAN).is_nan(), "{activation}");
        }
    }

    #[test]
    fn the_residual_is_added_before_the_activation() {
        // 1x1 convolution scaling by 2, bias 1: y = 2x + 1 = [-5, -1, 3, 7] for x = [-3, -1, 1, 3];
        // residual [1, 2, 3, -8]: t = [-4, 1, 6, -1]; relu6: [0, 1, 6, 0].
        let geometry = Conv2dParams::new(1, 1, 1).geometry([1, 1, 2, 2]).unwrap();
        let input = [-3.0, -1.0, 1.0, 3.0];
        let residual = [1.0, 2.0, 3.0, -8.0];
        let output = conv2d_fused(
            &geometry,
            &input,
            &[2.0],
            Some(&[1.0]),
            Some(&residual),
            Activation::Relu6,
        )
        .unwrap();
        assert_eq!(output, [0.0, 1.0, 6.0, 0.0]);
        let without = conv2d_fused(
            &geometry,
            &input,
            &[2.0],
            Some(&[1.0]),
            None,
            Activation::Relu6,
        )
        .unwrap();
        assert_eq!(without, [0.0, 0.0, 3.0, 6.0]);
    }

    #[test]
    fn a_residual_of_another_shape_and_a_nan_parameter_are_refused() {
        let geometry = Conv2dParams::new(1, 1, 1).geometry([1, 1, 2, 2]).unwrap();
        let input = [0.0; 4];
        let error = conv2d_fused(
            &geometry,
            &input,
            &[1.0],
            Some(&[0.0]),
            Some(&[0.0; 3]),
            Activation::Identity,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "residual buffer holds 3 elements, but its shape [1, 1, 2, 2] needs 4"
        );
        let nan = Activation::LeakyRelu { slope: f64::NAN };
        let error = conv2d_fused(&geometry, &input, &[1.0], Some(&[0.0]), None, nan);
        assert!(error.is_err());
    }
}
