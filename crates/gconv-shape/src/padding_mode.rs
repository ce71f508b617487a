//! What the padding holds: PyTorch's `padding_mode`.
//!
//! `nn.Conv2d(..., padding_mode=m)` with `m` other than `zeros` pads the input with `F.pad(x,
//! mode=m)` and then convolves without padding. Along an axis of `n` input elements, padded
//! position `p` (relative to the first input element; negative in the padding before it)
//! holds:
//!
//! | mode | `p < 0` | `p ≥ n` | PyTorch's limit per side |
//! |---|---|---|---|
//! | `zeros` | 0 | 0 | none |
//! | `reflect` | `x[−p]` (the edge not repeated) | `x[2(n−1) − p]` | padding `< n` |
//! | `replicate` | `x[0]` | `x[n − 1]` | none |
//! | `circular` | `x[p + n]` | `x[p − n]` | padding `≤ n` |
//!
//! Rows are padded from the padded columns, so corners combine both axes' rules, as `F.pad`
//! does. [`crate::Geometry`] refuses the paddings PyTorch refuses, with an error that names the
//! side, its padding and the input's size.

use std::fmt;
use std::str::FromStr;

/// What the padding around the input holds (default: zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PaddingMode {
    /// Zeros, as with `padding_mode='zeros'`.
    #[default]
    Zeros,
    /// The input mirrored about its edge element, which is not repeated (`'reflect'`).
    Reflect,
    /// The edge element repeated (`'replicate'`).
    Replicate,
    /// The input wrapped around, as on a torus (`'circular'`).
    Circular,
}

impl PaddingMode {
    /// Every mode, zeros first.
    pub const ALL: [PaddingMode; 4] = [
        PaddingMode::Zeros,
        PaddingMode::Reflect,
        PaddingMode::Replicate,
        PaddingMode::Circular,
    ];

    /// PyTorch's name: `zeros`, `reflect`, `replicate` or `circular`.
    pub fn name(self) -> &'static str {
        match self {
            PaddingMode::Zeros => "zeros",
            PaddingMode::Reflect => "reflect",
            PaddingMode::Replicate => "replicate",
            PaddingMode::Circular => "circular",
        }
    }

    /// The largest padding this mode allows on a side of an axis of `size` input elements
    /// (`None`: any).
    pub fn max_padding(self, size: usize) -> Option<usize> {
        match self {
            PaddingMode::Zeros | PaddingMode::Replicate => None,
            PaddingMode::Reflect => Some(size.saturating_sub(1)),
            PaddingMode::Circular => Some(size),
        }
    }
}

impl fmt::Display for PaddingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A padding mode name that is none of PyTorch's four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePaddingModeError {
    /// What was given.
    pub given: String,
}

impl fmt::Display for ParsePaddingModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown padding mode '{}': expected zeros, reflect, replicate or circular",
            self.given
        )
    }
}

impl std::error::Error for ParsePaddingModeError {}

impl FromStr for PaddingMode {
    type Err = ParsePaddingModeError;

    fn from_str(text: &str) -> Result<PaddingMode, ParsePaddingModeError> {
        PaddingMode::ALL
            .into_iter()
            .find(|mode| mode.name() == text.trim())
            .ok_or_else(|| ParsePaddingModeError {
                given: text.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for mode in PaddingMode::ALL {
            assert_eq!(mode.name().parse::<PaddingMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.name());
        }
        let error = "mirror".parse::<PaddingMode>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown padding mode 'mirror': expected zeros, reflect, replicate or circular"
        );
        assert_eq!(PaddingMode::default(), PaddingMode::Zeros);
    }

    #[test]
    fn limits_are_pytorchs() {
        assert_eq!(PaddingMode::Reflect.max_padding(3), Some(2));
        assert_eq!(PaddingMode::Circular.max_padding(3), Some(3));
        assert_eq!(PaddingMode::Replicate.max_padding(1), None);
        assert_eq!(PaddingMode::Zeros.max_padding(1), None);
    }
}
