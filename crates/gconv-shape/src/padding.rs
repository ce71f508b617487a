use crate::ShapeError;

/// Zero padding added around the input, as PyTorch's `padding` argument accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Explicit padding on each side (PyTorch's integer or pair, or `F.pad` before the
    /// convolution for asymmetric padding).
    Explicit(PaddingPerSide),
    /// Pad so that the output has the input's spatial size. The total padding along an axis is
    /// `dilation * (kernel - 1)`; when it is odd, the extra row or column goes at the bottom or
    /// right, as in PyTorch. Only valid with stride 1.
    Same,
    /// No padding.
    Valid,
}

/// Padding resolved to a count of zero rows or columns on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PaddingPerSide {
    /// Zero rows above the input.
    pub top: usize,
    /// Zero rows below the input.
    pub bottom: usize,
    /// Zero columns left of the input.
    pub left: usize,
    /// Zero columns right of the input.
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides (PyTorch's `padding=p`).
    pub const fn uniform(padding: usize) -> Self {
        Self::symmetric(padding, padding)
    }

    /// `vertical` rows above and below, `horizontal` columns left and right
    /// (PyTorch's `padding=(ph, pw)`).
    pub const fn symmetric(vertical: usize, horizontal: usize) -> Self {
        Self::per_side(vertical, vertical, horizontal, horizontal)
    }

    /// A separate count for each side.
    pub const fn per_side(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        Self::Explicit(PaddingPerSide {
            top,
            bottom,
            left,
            right,
        })
    }

    /// The rows and columns of zeros on each side for a kernel of `kernel = [kH, kW]` with
    /// `dilation = [dH, dW]`.
    pub(crate) fn resolve(
        self,
        kernel: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<PaddingPerSide, ShapeError> {
        match self {
            Padding::Explicit(sides) => Ok(sides),
            Padding::Valid => Ok(PaddingPerSide::default()),
            Padding::Same => {
                let (top, bottom) = split_same(kernel[0], dilation[0])?;
                let (left, right) = split_same(kernel[1], dilation[1])?;
                Ok(PaddingPerSide {
                    top,
                    bottom,
                    left,
                    right,
                })
            }
        }
    }
}

/// `same` padding along one axis: `dilation · (kernel − 1)` in total, the odd one after.
fn split_same(kernel: usize, dilation: usize) -> Result<(usize, usize), ShapeError> {
    let total = kernel
        .saturating_sub(1)
        .checked_mul(dilation)
        .ok_or(ShapeError::Overflow {
            what: "the total padding of padding 'same'",
        })?;
    Ok((total / 2, total - total / 2))
}

impl std::fmt::Display for Padding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Padding::Same => f.write_str("same"),
            Padding::Valid => f.write_str("valid"),
            Padding::Explicit(sides) => sides.fmt(f),
        }
    }
}

impl std::fmt::Display for PaddingPerSide {
    /// The shortest of `p`, `ph,pw` or `top,bottom,left,right` that says it, the same forms the
    /// CLI accepts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PaddingPerSide {
            top,
            bottom,
            left,
            right,
        } = *self;
        if top == bottom && left == right {
            if top == left {
                write!(f, "{top}")
            } else {
                write!(f, "{top},{left}")
            }
        } else {
            write!(f, "{top},{bottom},{left},{right}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_puts_the_odd_extra_row_at_the_bottom_and_right() {
        // Effective kernel 4 (k = 4, d = 1) needs 3 rows of padding: 1 above, 2 below.
        // Effective kernel 5 (k = 3, d = 2) needs 4: 2 on each side.
        let sides = Padding::Same.resolve([4, 3], [1, 2]).unwrap();
        assert_eq!(
            sides,
            PaddingPerSide {
                top: 1,
                bottom: 2,
                left: 2,
                right: 2
            }
        );
    }

    #[test]
    fn valid_is_no_padding() {
        assert_eq!(
            Padding::Valid.resolve([3, 3], [1, 1]).unwrap(),
            PaddingPerSide::default()
        );
    }

    #[test]
    fn same_with_a_huge_dilation_is_an_overflow_error() {
        let error = Padding::Same.resolve([3, 3], [usize::MAX, 1]).unwrap_err();
        assert!(matches!(error, ShapeError::Overflow { .. }), "{error}");
    }

    #[test]
    fn display_uses_the_shortest_form() {
        assert_eq!(Padding::uniform(2).to_string(), "2");
        assert_eq!(Padding::symmetric(1, 2).to_string(), "1,2");
        assert_eq!(Padding::per_side(0, 1, 0, 1).to_string(), "0,1,0,1");
        assert_eq!(Padding::Same.to_string(), "same");
    }
}
