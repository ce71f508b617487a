use std::fmt;

use gconv_kernels::KernelPlan;

use crate::{Conv2dParams, Error, Family, Geometry, Isa, Options};

/// A grouped convolution with its weights, ready to run.
pub struct Conv2d {
    plan: KernelPlan,
}

impl Conv2d {
    /// Validates `params` against `input_shape` (`[N, C_in, H, W]`), `weight`
    /// (`[C_out, C_in/g, kH, kW]`, flat) and `bias` (`[C_out]`; `None` makes a convolution
    /// without bias whatever `params.bias` says), then prepares the kernel.
    pub fn new(
        params: Conv2dParams,
        input_shape: [usize; 4],
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<Conv2d, Error> {
        let geometry = params.bias(bias.is_some()).geometry(input_shape)?;
        Conv2d::from_geometry(&geometry, weight, bias, options)
    }

    /// [`Conv2d::new`] for an already validated geometry; `bias` must be given exactly when
    /// the geometry has one.
    pub fn from_geometry(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<Conv2d, Error> {
        Ok(Conv2d {
            plan: KernelPlan::new(geometry, weight, bias, options)?,
        })
    }

    /// Convolves NCHW `input` into the NCHW `output` buffer, of `geometry().output_len()`
    /// elements. Allocates nothing.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        self.plan.run(input, output)
    }

    /// Convolves NCHW `input` into a new output; an output the machine cannot hold is an
    /// error, not an abort.
    pub fn forward(&self, input: &[f32]) -> Result<Vec<f32>, Error> {
        let geometry = self.geometry();
        // The input first: a wrong one must not cost an allocation of the output.
        geometry.check_buffer_lengths(
            input.len(),
            geometry.weight_count(),
            geometry.has_bias().then(|| geometry.out_channels()),
            geometry.output_len(),
        )?;
        let len = geometry.output_len();
        let mut output = Vec::new();
        output
            .try_reserve_exact(len)
            .map_err(|_| Error::Allocation {
                what: "the output",
                bytes: len as u128 * 4,
            })?;
        output.resize(len, 0.0);
        self.run(input, &mut output)?;
        Ok(output)
    }

    /// The validated shapes.
    pub fn geometry(&self) -> &Geometry {
        self.plan.geometry()
    }

    /// The instruction-set tier it runs on.
    pub fn isa(&self) -> Isa {
        self.plan.isa()
    }

    /// The kernel family.
    pub fn family(&self) -> Family {
        self.plan.family()
    }

    /// Threads it runs on.
    pub fn threads(&self) -> usize {
        self.plan.threads()
    }

    /// The id of the kernel that runs, e.g. `gconv-small-3x3s1d1-direct-8c48w-x86_64_v4`.
    pub fn kernel_id(&self) -> String {
        self.plan.kernel_id()
    }
}

impl fmt::Debug for Conv2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.plan, f)
    }
}

impl fmt::Display for Conv2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.plan, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_refuses_a_wrong_input_before_allocating_and_an_unallocatable_output() {
        // 1 -> 2^20 channels, 1x1, on a 2048x2048 image: an output of 2^42 floats (16 TiB).
        let out_channels = 1 << 20;
        let weight = vec![1.0; out_channels];
        let conv = Conv2d::new(
            Conv2dParams::new(1, out_channels, 1),
            [1, 1, 2048, 2048],
            &weight,
            None,
            Options::default(),
        )
        .unwrap();
        let error = conv.forward(&[0.0; 3]).unwrap_err();
        assert!(
            error.to_string().contains("input buffer holds 3 elements"),
            "{error}"
        );
        let input = vec![0.5; 2048 * 2048];
        let error = conv.forward(&input).unwrap_err();
        assert_eq!(
            error,
            Error::Allocation {
                what: "the output",
                bytes: 4 << 42
            }
        );
        assert_eq!(
            error.to_string(),
            "cannot allocate 17592186044416 bytes for the output"
        );
    }
}
