//! The activation applied to each output element after the bias and the optional residual,
//! as PyTorch's modules define it.
//!
//! The order of a fused convolution is fixed: `y = activation(conv(x, w) + b + residual)`,
//! as in a ResNet block (`relu(bn(conv(x)) + x)`) or MobileNetV2's. NaN in the sum stays NaN
//! through every activation, as it does in PyTorch.

use std::fmt;
use std::str::FromStr;

use crate::ShapeError;

/// What is applied to each output element last, PyTorch's name in brackets.
///
/// Parameters are `f64`, as PyTorch's are Python floats: the kernels round them once to the
/// element type they compute in, as PyTorch casts them to the tensor's.
///
/// ```
/// use gconv_shape::Activation;
///
/// let relu6: Activation = "relu6".parse()?;
/// assert_eq!(relu6, Activation::Relu6);
/// assert_eq!("clamp:-1,1".parse::<Activation>()?, Activation::Clamp { min: -1.0, max: 1.0 });
/// assert_eq!(Activation::LeakyRelu { slope: 0.01 }.to_string(), "leaky_relu:0.01");
/// # Ok::<(), gconv_shape::ParseActivationError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// Nothing: the element as it is (`nn.Identity`).
    #[default]
    Identity,
    /// `max(v, 0)` (`nn.ReLU`).
    Relu,
    /// `min(max(v, 0), 6)` (`nn.ReLU6`).
    Relu6,
    /// `min(max(v, min), max)` (`torch.clamp`, XNNPACK's `minmax`): with `min > max`
    /// every element becomes `max`, as in PyTorch.
    Clamp {
        /// The lower bound (may be `-inf`).
        min: f64,
        /// The upper bound (may be `inf`).
        max: f64,
    },
    /// `v` where `v > 0`, else `v · slope` (`nn.LeakyReLU(negative_slope)`).
    LeakyRelu {
        /// The factor of the non-positive elements (PyTorch's `negative_slope`).
        slope: f64,
    },
}

impl Activation {
    /// PyTorch's name of the activation, as `--activation` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Clamp { .. } => "clamp",
            Activation::LeakyRelu { .. } => "leaky_relu",
        }
    }

    /// Refuses a NaN parameter (which would make every element it touches NaN: a defect of
    /// the caller, never a wish).
    pub fn validate(&self) -> Result<(), ShapeError> {
        let nan = |parameter| ShapeError::ActivationParameterNan {
            activation: self.name(),
            parameter,
        };
        match *self {
            Activation::Clamp { min, .. } if min.is_nan() => Err(nan("min")),
            Activation::Clamp { max, .. } if max.is_nan() => Err(nan("max")),
            Activation::LeakyRelu { slope } if slope.is_nan() => Err(nan("slope")),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Activation {
    /// The form [`Activation::from_str`] reads: `relu`, `clamp:-1,1`, `leaky_relu:0.01`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Clamp { min, max } => write!(f, "clamp:{min},{max}"),
            Activation::LeakyRelu { slope } => write!(f, "leaky_relu:{slope}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A text that names no activation, or one with missing or malformed parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseActivationError {
    given: String,
    reason: &'static str,
}

impl fmt::Display for ParseActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "activation '{}': {}; expected identity, relu, relu6, clamp:MIN,MAX or leaky_relu:SLOPE",
            self.given, self.reason
        )
    }
}

impl std::error::Error for ParseActivationError {}

impl FromStr for Activation {
    type Err = ParseActivationError;

    /// Reads `identity`, `relu`, `relu6`, `clamp:MIN,MAX` or `leaky_relu:SLOPE` (numbers as
    /// Rust reads them: `-inf` and `inf` included, NaN refused).
    fn from_str(text: &str) -> Result<Activation, ParseActivationError> {
        let error = |reason| ParseActivationError {
            given: text.to_owned(),
            reason,
        };
        let number = |part: &str| match part.trim().parse::<f64>() {
            Ok(value) if value.is_nan() => Err(error("a parameter is NaN")),
            Ok(value) => Ok(value),
            Err(_) => Err(error("a parameter is not a number")),
        };
        let (name, parameters) = match text.split_once(':') {
            Some((name, parameters)) => (name, Some(parameters)),
            None => (text, None),
        };
        match (name.trim(), parameters) {
            ("identity" | "none", None) => Ok(Activation::Identity),
            ("relu", None) => Ok(Activation::Relu),
            ("relu6", None) => Ok(Activation::Relu6),
            ("clamp", Some(bounds)) => match bounds.split_once(',') {
                Some((min, max)) => Ok(Activation::Clamp {
                    min: number(min)?,
                    max: number(max)?,
                }),
                None => Err(error("clamp takes two bounds, MIN,MAX")),
            },
            ("leaky_relu", Some(slope)) => Ok(Activation::LeakyRelu {
                slope: number(slope)?,
            }),
            ("clamp", None) => Err(error("clamp takes two bounds, MIN,MAX")),
            ("leaky_relu", None) => Err(error("leaky_relu takes its slope, leaky_relu:SLOPE")),
            ("identity" | "none" | "relu" | "relu6", Some(_)) => {
                Err(error("this activation takes no parameters"))
            }
            _ => Err(error("no such activation")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_activation_reads_back_what_it_prints() {
        for activation in [
            Activation::Identity,
            Activation::Relu,
            Activation::Relu6,
            Activation::Clamp {
                min: -0.5,
                max: 6.25,
            },
            Activation::Clamp {
                min: f64::NEG_INFINITY,
                max: 3.0,
            },
            Activation::LeakyRelu { slope: 0.01 },
            Activation::LeakyRelu { slope: -2.0 },
        ] {
            let text = activation.to_string();
            assert_eq!(text.parse::<Activation>(), Ok(activation), "{text}");
            assert_eq!(activation.validate(), Ok(()));
        }
    }

    #[test]
    fn malformed_texts_say_what_is_wrong() {
        for (text, reason) in [
            ("gelu", "no such activation"),
            ("clamp", "clamp takes two bounds"),
            ("clamp:1", "clamp takes two bounds"),
            ("clamp:a,1", "not a number"),
            ("clamp:0,NaN", "NaN"),
            ("leaky_relu", "takes its slope"),
            ("relu:2", "takes no parameters"),
        ] {
            let message = text.parse::<Activation>().unwrap_err().to_string();
            assert!(
                message.contains(reason) && message.contains(text),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn nan_parameters_are_refused_by_name() {
        let error = Activation::Clamp {
            min: 0.0,
            max: f64::NAN,
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the max of activation clamp is NaN; it must be a number (infinities are allowed)"
        );
        let error = Activation::LeakyRelu { slope: f64::NAN }
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("slope of activation leaky_relu"));
    }
}
