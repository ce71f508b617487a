//! The convolution implementations the CLI can run, by name.

use std::num::NonZeroUsize;

use anyhow::Result;
use clap::{Args, ValueEnum};
use gconv::{Conv2d, CpuClass, Isa, Options, Threads};
use gconv_shape::Geometry;

/// Which implementation computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    /// gconv's vectorised kernels, on the best instruction set this CPU has.
    Auto,
    /// The scalar reference: the formula as nested loops (slow; the specification).
    Reference,
}

/// How the fast kernels run: tier and threads.
#[derive(Debug, Clone, Copy, Args)]
pub struct ExecutionOptions {
    /// Force an instruction set: portable, avx2 or avx512 (default: GCONV_ISA if set, else the
    /// best this CPU has). A tier the CPU lacks is an error.
    #[arg(long, value_name = "ISA", value_parser = parse_isa)]
    pub isa: Option<Isa>,
    /// Choose kernels as for this CPU class: full512 (512-bit vectors at full width), split512
    /// (split into 256-bit halves) or narrow (no AVX-512). Default: GCONV_CPU if set, else
    /// this CPU's class. Any class runs correctly anywhere; it only steers kernel choice.
    #[arg(long, value_name = "CLASS", value_parser = parse_cpu)]
    pub cpu: Option<CpuClass>,
    /// Worker threads (default: all cores). The output is bit-identical for every count.
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

fn parse_isa(text: &str) -> Result<Isa, String> {
    text.parse::<Isa>().map_err(|error| error.to_string())
}

fn parse_cpu(text: &str) -> Result<CpuClass, String> {
    text.parse::<CpuClass>().map_err(|error| error.to_string())
}

impl ExecutionOptions {
    /// The library options these flags ask for.
    pub fn options(&self) -> Options {
        Options {
            isa: self.isa,
            threads: match self.threads.and_then(|n| NonZeroUsize::new(n as usize)) {
                Some(count) => Threads::Count(count),
                None => Threads::All,
            },
            cpu: self.cpu,
        }
    }
}

/// A convolution ready to run on one implementation, with a printable id.
pub enum Prepared<'a> {
    /// A fast-kernel plan.
    Fast(Box<Conv2d>),
    /// The scalar reference over these weights.
    Reference {
        geometry: Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
    },
    /// The reference's split-then-concatenate formulation.
    SplitConcat {
        geometry: Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
    },
}

impl<'a> Prepared<'a> {
    /// Prepares `choice` for `geometry` and its weights.
    pub fn new(
        choice: KernelChoice,
        geometry: &Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        execution: &ExecutionOptions,
    ) -> Result<Prepared<'a>> {
        Ok(match choice {
            KernelChoice::Auto => Prepared::Fast(Box::new(Conv2d::from_geometry(
                geometry,
                weight,
                bias,
                execution.options(),
            )?)),
            KernelChoice::Reference => Prepared::Reference {
                geometry: *geometry,
                weight,
                bias,
            },
        })
    }

    /// The kernel id (fast kernels) or `reference` / `split-concat`.
    pub fn name(&self) -> String {
        match self {
            Prepared::Fast(conv) => conv.kernel_id(),
            Prepared::Reference { .. } => "reference".to_string(),
            Prepared::SplitConcat { .. } => "split-concat".to_string(),
        }
    }

    /// Convolves `input` into `output`.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        match self {
            Prepared::Fast(conv) => conv.run(input, output)?,
            Prepared::Reference {
                geometry,
                weight,
                bias,
            } => gconv_reference::conv2d_into(geometry, input, weight, *bias, output)?,
            Prepared::SplitConcat {
                geometry,
                weight,
                bias,
            } => {
                let result = gconv_reference::conv2d_split_concat(geometry, input, weight, *bias)?;
                output.copy_from_slice(&result);
            }
        }
        Ok(())
    }
}

/// Every implementation, for the demo: the reference, its split-concat twin, and the fast
/// kernels on every tier this CPU has.
pub fn all<'a>(
    geometry: &Geometry,
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
) -> Result<Vec<Prepared<'a>>> {
    let mut prepared = vec![
        Prepared::Reference {
            geometry: *geometry,
            weight,
            bias,
        },
        Prepared::SplitConcat {
            geometry: *geometry,
            weight,
            bias,
        },
    ];
    for isa in Isa::available() {
        let execution = ExecutionOptions {
            isa: Some(isa),
            threads: None,
            cpu: None,
        };
        prepared.push(Prepared::new(
            KernelChoice::Auto,
            geometry,
            weight,
            bias,
            &execution,
        )?);
    }
    Ok(prepared)
}
