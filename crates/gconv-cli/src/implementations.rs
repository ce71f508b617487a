//! The convolution implementations the CLI can run, by name.

use anyhow::Result;
use clap::ValueEnum;
use gconv_shape::Geometry;

/// Which implementation computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    /// The fastest implementation available for the problem on this CPU.
    Auto,
    /// The scalar reference: the formula as nested loops (slow; the specification).
    Reference,
}

/// A convolution of (geometry, input, weight, bias) into a new output.
type ConvolveFn = fn(&Geometry, &[f32], &[f32], Option<&[f32]>) -> Result<Vec<f32>>;

/// One way of computing a convolution, with a name for tables.
pub struct Implementation {
    /// Printable id.
    pub name: &'static str,
    run: ConvolveFn,
}

impl Implementation {
    /// Computes the convolution.
    pub fn run(
        &self,
        geometry: &Geometry,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        (self.run)(geometry, input, weight, bias)
    }
}

/// The scalar reference.
pub const REFERENCE: Implementation = Implementation {
    name: "reference",
    run: |geometry, input, weight, bias| {
        Ok(gconv_reference::conv2d(geometry, input, weight, bias)?)
    },
};

/// The reference's independent split-per-group-then-concatenate formulation.
pub const SPLIT_CONCAT: Implementation = Implementation {
    name: "split-concat",
    run: |geometry, input, weight, bias| {
        Ok(gconv_reference::conv2d_split_concat(
            geometry, input, weight, bias,
        )?)
    },
};

/// The implementation `choice` names. Until the vectorised kernels land, `auto` is the
/// reference.
pub fn chosen(choice: KernelChoice) -> &'static Implementation {
    match choice {
        KernelChoice::Auto | KernelChoice::Reference => &REFERENCE,
    }
}

/// Every implementation, for the demo.
pub fn all() -> [&'static Implementation; 2] {
    [&REFERENCE, &SPLIT_CONCAT]
}
