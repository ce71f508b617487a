//! The convolution implementations the CLI can run, by name.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use gconv::gconv_kernels::measured::DEFAULT_BUDGET;
use gconv::{
    Activation, Conv2d, CpuClass, Isa, Options, Planning, PostOps, Threads, UnevenConv2d,
    UnevenGeometry, Wisdom,
};
use gconv_shape::Geometry;

/// Which implementation computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    /// gconv's vectorised kernels, on the best instruction set this CPU has.
    Auto,
    /// The scalar reference: the formula as nested loops (slow; the specification).
    Reference,
}

/// How the fast kernels run: tier, threads, and how their kernel is chosen.
#[derive(Debug, Clone, Args)]
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
    /// How kernels are chosen: `table` (the selection rules, the default), `wisdom` (a choice
    /// measured before and read from --wisdom, else the table's), `measure` or `measure:MS`
    /// (time every candidate kernel for about MS milliseconds, default 50, and keep the
    /// fastest; the output is the same bits whichever wins).
    #[arg(long, value_name = "table|wisdom|measure[:MS]", value_parser = parse_planning)]
    pub planning: Option<Planning>,
    /// Wisdom file: measured kernel choices, read before planning (a missing file is no
    /// wisdom yet) and, with --planning measure, written back with what was measured (whole
    /// or not at all). Without --planning it implies --planning wisdom.
    #[arg(long, value_name = "FILE")]
    pub wisdom: Option<PathBuf>,
}

/// `table`, `wisdom`, `measure` or `measure:MS`.
pub fn parse_planning(text: &str) -> Result<Planning, String> {
    let expected = "expected table, wisdom, measure or measure:MS";
    match text.trim().split_once(':') {
        None => match text.trim() {
            "table" => Ok(Planning::Table),
            "wisdom" => Ok(Planning::Wisdom),
            "measure" => Ok(Planning::Measure {
                budget: DEFAULT_BUDGET,
            }),
            _ => Err(format!("{expected}, got '{text}'")),
        },
        Some(("measure", millis)) => match millis.trim().parse::<u64>() {
            Ok(millis) => Ok(Planning::Measure {
                budget: Duration::from_millis(millis),
            }),
            Err(_) => Err(format!(
                "{expected}: '{millis}' is not a whole number of milliseconds"
            )),
        },
        Some(_) => Err(format!("{expected}, got '{text}'")),
    }
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
            planning: self.planning(),
            activation: Activation::Identity,
            residual: false,
        }
    }

    /// The planning asked for: --planning, else `wisdom` where a wisdom file is given, else
    /// the table.
    pub fn planning(&self) -> Planning {
        match (self.planning, &self.wisdom) {
            (Some(planning), _) => planning,
            (None, Some(_)) => Planning::Wisdom,
            (None, None) => Planning::Table,
        }
    }

    /// Adds the wisdom file's choices (if one is given and exists) to the process's.
    pub fn load_wisdom(&self) -> Result<()> {
        if let Some(path) = &self.wisdom
            && path.exists()
        {
            Wisdom::import(path).context("cannot use the --wisdom file")?;
        }
        Ok(())
    }

    /// Writes the process's wisdom to the wisdom file, if one is given and kernels were
    /// measured.
    pub fn save_wisdom(&self) -> Result<()> {
        if let (Some(path), Planning::Measure { .. }) = (&self.wisdom, self.planning()) {
            Wisdom::export(path).context("cannot write the --wisdom file")?;
        }
        Ok(())
    }
}

/// A convolution ready to run on one implementation, with a printable id.
pub enum Prepared<'a> {
    /// A fast-kernel plan (its post-operations fused into it).
    Fast(Box<Conv2d>),
    /// The scalar reference over these weights, then the post-operations.
    Reference {
        geometry: Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        post: PostOps,
    },
    /// The reference's split-then-concatenate formulation, then the post-operations.
    SplitConcat {
        geometry: Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        post: PostOps,
    },
    /// Uneven groups, each run of equal groups on its fast kernel (post-operations fused).
    Uneven(Box<UnevenConv2d>),
    /// Uneven groups on the scalar reference, then the post-operations.
    UnevenReference {
        geometry: Box<UnevenGeometry>,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        post: PostOps,
    },
}

impl<'a> Prepared<'a> {
    /// Prepares `choice` for `geometry` and its weights, followed by `post`.
    pub fn new(
        choice: KernelChoice,
        geometry: &Geometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        execution: &ExecutionOptions,
        post: PostOps,
    ) -> Result<Prepared<'a>> {
        Ok(match choice {
            KernelChoice::Auto => {
                let options = execution.options().post_ops(post);
                let conv = Conv2d::from_geometry(geometry, weight, bias, options)?;
                Prepared::Fast(Box::new(conv))
            }
            KernelChoice::Reference => {
                post.activation.validate()?;
                Prepared::Reference {
                    geometry: *geometry,
                    weight,
                    bias,
                    post,
                }
            }
        })
    }

    /// Prepares `choice` for uneven groups: `geometry` and its flat weight, followed by
    /// `post`.
    pub fn uneven(
        choice: KernelChoice,
        geometry: &UnevenGeometry,
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        execution: &ExecutionOptions,
        post: PostOps,
    ) -> Result<Prepared<'a>> {
        Ok(match choice {
            KernelChoice::Auto => {
                let options = execution.options().post_ops(post);
                let conv = UnevenConv2d::from_geometry(geometry, weight, bias, options)?;
                Prepared::Uneven(Box::new(conv))
            }
            KernelChoice::Reference => {
                post.activation.validate()?;
                Prepared::UnevenReference {
                    geometry: Box::new(geometry.clone()),
                    weight,
                    bias,
                    post,
                }
            }
        })
    }

    /// The kernel id (fast kernels; each run of uneven groups and its kernel) or
    /// `reference` / `split-concat`.
    pub fn name(&self) -> String {
        match self {
            Prepared::Fast(conv) => conv.kernel_id(),
            Prepared::Uneven(conv) => conv.to_string(),
            Prepared::Reference { .. } | Prepared::UnevenReference { .. } => {
                "reference".to_string()
            }
            Prepared::SplitConcat { .. } => "split-concat".to_string(),
        }
    }

    /// Convolves `input` into `output`, adding `residual` (given exactly when the
    /// post-operations include one) and applying the activation.
    pub fn run(&self, input: &[f32], residual: Option<&[f32]>, output: &mut [f32]) -> Result<()> {
        match self {
            Prepared::Fast(conv) => match residual {
                Some(residual) => conv.run_with_residual(input, residual, output)?,
                None => conv.run(input, output)?,
            },
            Prepared::Reference {
                geometry,
                weight,
                bias,
                post,
            } => {
                post.check_residual(geometry, residual.map(<[f32]>::len))?;
                gconv_reference::conv2d_into(geometry, input, weight, *bias, output)?;
                gconv_reference::post_ops(output, residual, post.activation);
            }
            Prepared::SplitConcat {
                geometry,
                weight,
                bias,
                post,
            } => {
                post.check_residual(geometry, residual.map(<[f32]>::len))?;
                let result = gconv_reference::conv2d_split_concat(geometry, input, weight, *bias)?;
                output.copy_from_slice(&result);
                gconv_reference::post_ops(output, residual, post.activation);
            }
            Prepared::Uneven(conv) => match residual {
                Some(residual) => conv.run_with_residual(input, residual, output)?,
                None => conv.run(input, output)?,
            },
            Prepared::UnevenReference {
                geometry,
                weight,
                bias,
                post,
            } => {
                post.check_residual(geometry.spatial(), residual.map(<[f32]>::len))?;
                let result = gconv_reference::conv2d_uneven(geometry, input, weight, *bias)?;
                output.copy_from_slice(&result);
                gconv_reference::post_ops(output, residual, post.activation);
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
            post: PostOps::default(),
        },
        Prepared::SplitConcat {
            geometry: *geometry,
            weight,
            bias,
            post: PostOps::default(),
        },
    ];
    for isa in Isa::available() {
        let execution = ExecutionOptions {
            isa: Some(isa),
            threads: None,
            cpu: None,
            planning: None,
            wisdom: None,
        };
        prepared.push(Prepared::new(
            KernelChoice::Auto,
            geometry,
            weight,
            bias,
            &execution,
            PostOps::default(),
        )?);
    }
    Ok(prepared)
}
