//! [`KernelPlan`]: a convolution validated, assigned a kernel and tier, its weights packed —
//! once — then run any number of times without allocating.

use std::fmt;
use std::num::NonZeroUsize;

use gconv_shape::Geometry;

use crate::engine::{Engine, Workspace};
use crate::layout::Packing;
use crate::{Family, Isa, KernelError};

/// How many threads a plan runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// Every thread of rayon's global pool (by default one per core).
    #[default]
    All,
    /// Exactly this many: 1 runs on the calling thread, more on a pool owned by the plan.
    Count(NonZeroUsize),
}

/// Choices a plan is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Force an instruction-set tier; `None` takes `GCONV_ISA` if set, else the best the CPU
    /// has. A tier the CPU lacks is an error, never a silent fallback.
    pub isa: Option<Isa>,
    /// Threads to run on.
    pub threads: Threads,
}

/// A grouped convolution ready to run: geometry, packed weights, kernel, tier and threads.
pub struct KernelPlan {
    engine: Engine,
    threads: usize,
    pool: Option<rayon::ThreadPool>,
    workspace: Workspace,
}

impl KernelPlan {
    /// Validates `weight` (`[C_out, C_in/g, kH, kW]`, flat) and `bias` (`[C_out]` exactly when
    /// the geometry has a bias) against `geometry`, picks the tier and packs the weights.
    pub fn new(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: PlanOptions,
    ) -> Result<KernelPlan, KernelError> {
        let isa = match options.isa {
            Some(isa) => Isa::require(isa)?,
            None => Isa::from_env()?.unwrap_or_else(Isa::best),
        };
        let (threads, pool) = match options.threads {
            Threads::All => (rayon::current_num_threads(), None),
            Threads::Count(count) if count.get() == 1 => (1, None),
            Threads::Count(count) => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(count.get())
                    .thread_name(|index| format!("gconv-{index}"))
                    .build()
                    .map_err(|error| KernelError::Threads {
                        reason: error.to_string(),
                    })?;
                (count.get(), Some(pool))
            }
        };
        let engine = Engine::new(geometry, weight, bias, isa, threads)?;
        let workspace = engine.workspace(threads);
        Ok(KernelPlan {
            engine,
            threads,
            pool,
            workspace,
        })
    }

    /// Convolves NCHW `input` into NCHW `output`; both lengths are checked.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), KernelError> {
        let geometry = &self.engine.geometry;
        let bias_len = geometry.has_bias().then(|| geometry.out_channels());
        geometry.check_buffer_lengths(
            input.len(),
            geometry.weight_count(),
            bias_len,
            output.len(),
        )?;
        let parallel = self.threads > 1;
        match &self.pool {
            Some(pool) => {
                pool.install(|| self.engine.run(input, output, &self.workspace, parallel))
            }
            None => self.engine.run(input, output, &self.workspace, parallel),
        }
        Ok(())
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.engine.geometry
    }

    /// The instruction-set tier the plan runs on.
    pub fn isa(&self) -> Isa {
        self.engine.isa
    }

    /// The kernel family.
    pub fn family(&self) -> Family {
        self.engine.family
    }

    /// Threads the plan runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// What runs and how it is tiled, e.g. `dwconv-3x3s2d1-direct-1c128w-x86_64_v4`: family,
    /// kernel size, stride, dilation, input packing (`direct`: padded stride phases, every tap
    /// a shifted view; `im2col`: one copied window per tap), the largest register tile (output
    /// channels × output positions) and the tier.
    pub fn kernel_id(&self) -> String {
        let engine = &self.engine;
        let geometry = &engine.geometry;
        let axis = |[height, width]: [usize; 2]| {
            if height == width {
                height.to_string()
            } else {
                format!("{height}x{width}")
            }
        };
        let [kernel_h, kernel_w] = geometry.kernel_size();
        let channels = engine.blocks.first().map_or(1, |block| block.channels);
        let positions = engine.tile.vectors_for(channels) * engine.isa.lanes();
        let packing = match engine.layout.packing {
            Packing::PhaseSplit => "direct",
            Packing::Im2col => "im2col",
        };
        format!(
            "{}-{kernel_h}x{kernel_w}s{}d{}-{packing}-{channels}c{positions}w-{}",
            engine.family,
            axis(geometry.stride()),
            axis(geometry.dilation()),
            engine.isa.level()
        )
    }
}

impl fmt::Debug for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPlan")
            .field("kernel", &self.kernel_id())
            .field("threads", &self.threads)
            .field("output_shape", &self.engine.geometry.output_shape())
            .finish()
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} thread(s)", self.kernel_id(), self.threads)
    }
}

/// The geometry a plan was made for (for callers that only keep the plan).
impl AsRef<Geometry> for KernelPlan {
    fn as_ref(&self) -> &Geometry {
        self.geometry()
    }
}
