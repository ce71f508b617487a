//! [`KernelPlan`]: a convolution validated, assigned a kernel and tier, its weights packed —
//! once — then run any number of times without allocating.

use std::fmt;
use std::num::NonZeroUsize;

use gconv_shape::{Activation, Geometry, PaddingMode};

use crate::epilogue::{Fused, Identity, PostPass};
use crate::exec::workspace::{Output, Workspace};
use crate::kernels::{ForwardKernel, Parts, build_forward};
use crate::measured::{self, Chosen, Measurement, Planning};
use crate::select::{self, Choice, Problem, Rule, Selection};
use crate::weights::Weights;
use crate::{CpuClass, Error, Family, Isa};

/// How many threads a plan runs on.
///
/// Plans of the same thread count share their helper threads, and their runs take turns: to
/// run several convolutions at once from threads of your own, give each plan
/// `Threads::Count(1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// As many threads as rayon's current pool has (by default one per core).
    #[default]
    All,
    /// Exactly this many: 1 runs on the calling thread alone; `n` on the calling thread and
    /// `n − 1` helper threads, shared by every plan of `n` threads in the process.
    Count(NonZeroUsize),
}

/// Choices a plan is made with. The default: every core (the size of rayon's current pool)
/// and the best tier the CPU has, or the one named by `GCONV_ISA`; the convolution plus its
/// bias, nothing after it.
///
/// ```
/// use gconv_kernels::{Activation, Isa, Options};
///
/// let single = Options::default().threads(1);
/// let portable_on_two = Options::default().isa(Isa::Portable).threads(2);
/// // A MobileNetV2 block's last convolution: relu6(conv(x) + b + x).
/// let block = Options::default().residual(true).activation(Activation::Relu6);
/// # let _ = (single, portable_on_two, block);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Options {
    /// Force an instruction-set tier; `None` takes `GCONV_ISA` if set, else the best the CPU
    /// has. A tier the CPU lacks is an error, never a silent fallback.
    pub isa: Option<Isa>,
    /// Threads to run on.
    pub threads: Threads,
    /// Choose kernels for this CPU class; `None` takes `GCONV_CPU` if set, else the class of
    /// the CPU it runs on ([`CpuClass::detect`]). Any class runs correctly on any CPU: it
    /// only steers the choice of kernel.
    pub cpu: Option<CpuClass>,
    /// How the kernel is chosen: by the selection table (the default), or measured.
    pub planning: Planning,
    /// Applied to every output element last, after the bias and the residual, to each
    /// task's piece of the output as soon as the task has written it (still in cache).
    pub activation: Activation,
    /// Whether every run adds a residual (a tensor of the output's shape) after the bias and
    /// before the activation: such a plan runs only with
    /// [`KernelPlan::run_with_residual`], any other only with [`KernelPlan::run`].
    pub residual: bool,
}

impl Options {
    /// Runs on `count` threads: the calling thread and `count − 1` helpers. 0 means every
    /// core, the default (as rayon's `num_threads(0)` does).
    pub fn threads(mut self, count: usize) -> Self {
        self.threads = NonZeroUsize::new(count).map_or(Threads::All, Threads::Count);
        self
    }

    /// Runs on tier `isa`; making a plan is an error if the CPU lacks it.
    pub fn isa(mut self, isa: Isa) -> Self {
        self.isa = Some(isa);
        self
    }

    /// Chooses kernels as for a CPU of class `cpu`, whatever this one is.
    pub fn cpu(mut self, cpu: CpuClass) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Chooses the kernel as `planning` says.
    pub fn planning(mut self, planning: Planning) -> Self {
        self.planning = planning;
        self
    }

    /// Applies `activation` to every output element, last (see [`Activation`]).
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Adds a residual to every output element after the bias, before the activation:
    /// `y = activation(conv(x) + b + r)`, as in a ResNet or MobileNetV2 block.
    pub fn residual(mut self, residual: bool) -> Self {
        self.residual = residual;
        self
    }

    /// Both post-operations at once: `post`'s residual and activation.
    pub fn post_ops(self, post: PostOps) -> Self {
        self.residual(post.residual).activation(post.activation)
    }

    /// Chooses the kernel by timing the candidates within [`measured::DEFAULT_BUDGET`] (or
    /// takes what the process's [`crate::Wisdom`] recorded): `Planning::Measure`.
    pub fn measure(self) -> Self {
        self.planning(Planning::Measure {
            budget: measured::DEFAULT_BUDGET,
        })
    }
}

/// What a plan applies to each output after the convolution and its bias, in this order:
/// the residual add and the activation of its [`Options`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PostOps {
    /// Whether runs add a residual.
    pub residual: bool,
    /// Applied last.
    pub activation: Activation,
}

impl PostOps {
    /// The post-operations `options` ask for.
    pub fn of(options: &Options) -> PostOps {
        PostOps {
            activation: options.activation,
            residual: options.residual,
        }
    }

    /// Checks that a residual of `residual` elements is given exactly when these
    /// post-operations add one, and then that it has `geometry`'s output length.
    pub fn check_residual(
        &self,
        geometry: &Geometry,
        residual: Option<usize>,
    ) -> Result<(), Error> {
        match (residual, self.residual) {
            (Some(len), true) => Ok(geometry.check_residual_length(len)?),
            (None, false) => Ok(()),
            (_, plan_adds) => Err(Error::Residual { plan_adds }),
        }
    }

    /// Whether outputs are stored as the convolution left them.
    pub fn is_none(&self) -> bool {
        *self == PostOps::default()
    }

    /// The pass that applies these post-operations on tier `isa` (none for none).
    pub(crate) fn pass(&self, isa: Isa) -> Option<PostPass<f32>> {
        (!self.is_none()).then(|| PostPass {
            isa,
            epilogue: Fused::new(self.activation),
        })
    }
}

impl fmt::Display for PostOps {
    /// `residual+relu6`-style: what follows the bias, in order (`none` for nothing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.residual, self.activation) {
            (false, Activation::Identity) => f.write_str("none"),
            (true, Activation::Identity) => f.write_str("residual"),
            (false, activation) => write!(f, "{activation}"),
            (true, activation) => write!(f, "residual+{activation}"),
        }
    }
}

/// Scratch a plan may always allocate per thread, in elements (64 MiB of `f32`), whatever the
/// data size.
const SCRATCH_ELEMENTS: usize = 16 << 20;

/// Below this many FLOPs a plan runs on the calling thread whatever its thread count: the
/// seed layer (2.3 kFLOP) took 23 µs on two threads against 0.4 µs on one.
const PARALLEL_MIN_FLOPS: u64 = 200_000;

/// A grouped convolution ready to run: geometry, tier, threads, and each pass's kernel with
/// its weights packed (today the forward pass).
pub struct KernelPlan {
    geometry: Geometry,
    isa: Isa,
    cpu: CpuClass,
    threads: usize,
    /// Problems below this many FLOPs run on the calling thread ([`PARALLEL_MIN_FLOPS`];
    /// the tests lower it to split even tiny problems).
    parallel_min_flops: u64,
    post: PostOps,
    forward: Pass<f32>,
    /// Scratch, and the team of threads the plan runs on.
    workspace: Workspace<f32>,
}

/// One pass of a plan: the kernel chosen, the rule that chose it, and the kernel built.
struct Pass<T> {
    selection: Selection,
    kernel: Box<dyn ForwardKernel<T>>,
    /// How a measured plan came by its kernel (`None`: the table chose it).
    measurement: Option<Measurement>,
}

impl KernelPlan {
    /// Validates `weight` (`[C_out, C_in/g, kH, kW]`, flat) and `bias` (`[C_out]` exactly when
    /// the geometry has a bias) against `geometry`, picks the tier and the kernel, and packs
    /// the weights.
    pub fn new(
        geometry: &Geometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<KernelPlan, Error> {
        // The lengths first: a wrong weight must not cost a copy of it.
        geometry.check_parameter_lengths(weight.len(), bias.map(<[f32]>::len))?;
        Self::with_weights(geometry, &Weights::new(weight, bias), options)
    }

    /// [`KernelPlan::new`] with weights shared by other plans (of other input shapes): the
    /// weights are packed only in orders none of them has packed yet.
    pub fn with_weights(
        geometry: &Geometry,
        weights: &Weights<f32>,
        options: Options,
    ) -> Result<KernelPlan, Error> {
        let post = PostOps::of(&options);
        Self::assemble(geometry, weights, options, |problem, parallel| {
            // A problem too small to share the work runs on the calling thread: its kernel
            // is chosen and its tasks laid out as for one thread.
            let problem = match parallel {
                true => problem,
                false => Problem {
                    threads: 1,
                    ..problem
                },
            };
            match options.planning {
                Planning::Table => {
                    let selection = select::forward::select(problem)?;
                    build(problem, weights, selection)
                }
                planning => {
                    measured::choose(problem, weights, post, planning, parallel, |scratch| {
                        scratch_fits(geometry, scratch)
                    })
                }
            }
        })
    }

    /// [`KernelPlan::with_weights`] with the forward kernel chosen by `select`, for the
    /// problem as given (the tests force a kernel through it, on any partition).
    #[cfg(test)]
    fn with_selection(
        geometry: &Geometry,
        weights: &Weights<f32>,
        options: Options,
        select: impl FnOnce(Problem<'_>) -> Result<Selection, Error>,
    ) -> Result<KernelPlan, Error> {
        Self::assemble(geometry, weights, options, |problem, _| {
            build(problem, weights, select(problem)?)
        })
    }

    /// The plan of the problem that `options` make of `geometry`, with the kernel `choose`
    /// gives it (told whether runs share the work).
    fn assemble(
        geometry: &Geometry,
        weights: &Weights<f32>,
        options: Options,
        choose: impl FnOnce(Problem<'_>, bool) -> Result<Chosen, Error>,
    ) -> Result<KernelPlan, Error> {
        // The kernels below take the weights and bias as checked here.
        geometry
            .check_parameter_lengths(weights.weight().len(), weights.bias().map(<[f32]>::len))?;
        options.activation.validate()?;
        if geometry.padding_mode() != PaddingMode::Zeros {
            return Err(Error::Unsupported {
                what: format!("padding_mode '{}'", geometry.padding_mode()),
            });
        }
        let isa = match options.isa {
            Some(isa) => Isa::require(isa)?,
            None => Isa::from_env()?.unwrap_or_else(Isa::best),
        };
        let cpu = match options.cpu {
            Some(cpu) => cpu,
            None => CpuClass::from_env()?.unwrap_or_else(CpuClass::detect),
        };
        let threads = match options.threads {
            Threads::All => rayon::current_num_threads(),
            Threads::Count(count) => count.get(),
        };
        let problem = Problem {
            geometry,
            isa,
            cpu,
            threads,
        };
        let parallel = runs_in_parallel(geometry, threads, PARALLEL_MIN_FLOPS);
        let Chosen {
            selection,
            kernel,
            measurement,
        } = choose(problem, parallel)?;
        let scratch = kernel.scratch_len();
        if !scratch_fits(geometry, scratch) {
            return Err(Error::TooLarge {
                what: "the packed input scratch (padding or dilation far beyond the input)",
            });
        }
        Ok(KernelPlan {
            geometry: *geometry,
            isa,
            cpu,
            threads,
            parallel_min_flops: PARALLEL_MIN_FLOPS,
            post: PostOps::of(&options),
            forward: Pass {
                selection,
                kernel,
                measurement,
            },
            workspace: Workspace::new(threads, scratch)?,
        })
    }

    /// Convolves NCHW `input` into NCHW `output`, applying the plan's activation; both
    /// lengths are checked. A plan made to add a residual refuses to run without one.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        if self.post.residual {
            return Err(Error::Residual { plan_adds: true });
        }
        self.run_on(input, None, output)
    }

    /// Convolves NCHW `input` into NCHW `output`, adding `residual` (NCHW, the output's
    /// shape) after the bias and applying the plan's activation last, to each task's piece of
    /// the output as soon as the task has written it; every length is checked. Only for a
    /// plan made with [`Options::residual`].
    pub fn run_with_residual(
        &self,
        input: &[f32],
        residual: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        if !self.post.residual {
            return Err(Error::Residual { plan_adds: false });
        }
        self.run_on(input, Some(residual), output)
    }

    fn run_on(
        &self,
        input: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) -> Result<(), Error> {
        let geometry = &self.geometry;
        let bias_len = geometry.has_bias().then(|| geometry.out_channels());
        geometry.check_buffer_lengths(
            input.len(),
            geometry.weight_count(),
            bias_len,
            output.len(),
        )?;
        if let Some(residual) = residual {
            geometry.check_residual_length(residual.len())?;
        }
        let parallel = runs_in_parallel(geometry, self.threads, self.parallel_min_flops);
        let output = Output {
            values: output,
            residual,
            post: self.post.pass(self.isa),
        };
        self.forward
            .kernel
            .run(input, output, &self.workspace, parallel);
        Ok(())
    }

    /// What the plan applies to every output after the bias: the residual add
    /// ([`KernelPlan::run_with_residual`]) and the activation.
    pub fn post_ops(&self) -> PostOps {
        self.post
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The instruction-set tier the plan runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The CPU class the kernel was chosen for.
    pub fn cpu_class(&self) -> CpuClass {
        self.cpu
    }

    /// The kernel family.
    pub fn family(&self) -> Family {
        Family::of(&self.geometry)
    }

    /// Threads the plan runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// What runs and how it is tiled, e.g. `dwconv-3x3s2d1-streamed-1c16w-x86_64_v4`: family,
    /// kernel size, stride, dilation, input packing (`direct`: padded stride phases, every tap
    /// a shifted view; `rows`: the same, vectors starting at every row; `columns`: one copy
    /// per kernel column, every tap a shifted view of one; `im2col`: one copied window per
    /// tap; `inplace`: the input read where it lies; or the depthwise kernel's name), the
    /// largest register tile (output channels × output positions) and the tier.
    pub fn kernel_id(&self) -> String {
        self.forward
            .selection
            .choice
            .kernel_id(&self.geometry, self.isa)
    }

    /// The rule of the selection table ([`select::forward::RULES`]) that chose the forward
    /// kernel; `measured` where a measurement ([`Planning::Measure`]) chose another kernel
    /// than the table's.
    pub fn rule(&self) -> &'static Rule {
        self.forward.selection.rule
    }

    /// How a measured plan came by its kernel: timed now (each candidate's best time) or read
    /// from wisdom; `None` where the selection table chose it.
    pub fn measurement(&self) -> Option<&Measurement> {
        self.forward.measurement.as_ref()
    }
}

/// The kernel `selection` chose for `problem`, built on `weights`.
pub(crate) fn build(
    problem: Problem<'_>,
    weights: &Weights<f32>,
    selection: Selection,
) -> Result<Chosen, Error> {
    let kernel = forward_kernel(problem, weights, &selection.choice)?;
    Ok(Chosen {
        selection,
        kernel,
        measurement: None,
    })
}

/// The forward kernel of `choice` for `problem` on `weights`. Its stores apply nothing: a
/// plan's post-operations follow each task ([`PostPass`]).
pub(crate) fn forward_kernel(
    problem: Problem<'_>,
    weights: &Weights<f32>,
    choice: &Choice,
) -> Result<Box<dyn ForwardKernel<f32>>, Error> {
    let parts = Parts {
        problem,
        weights,
        epilogue: Identity,
    };
    build_forward(choice, parts)
}

/// Whether runs of `geometry` on `threads` share the work: sharing costs a few
/// microseconds, not worth it below `min_flops` (a few hundred kFLOP).
fn runs_in_parallel(geometry: &Geometry, threads: usize, min_flops: u64) -> bool {
    threads > 1 && geometry.flops() >= min_flops
}

/// Whether a kernel may have `scratch` elements per thread: scratch beyond the data itself
/// only comes from absurd padding or dilation (a packed band is normally a few kilobytes),
/// and is refused rather than allocated.
fn scratch_fits(geometry: &Geometry, scratch: usize) -> bool {
    let data = geometry.input_len().saturating_add(geometry.output_len());
    scratch <= SCRATCH_ELEMENTS.max(data.saturating_mul(2))
}

impl fmt::Debug for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelPlan")
            .field("kernel", &self.kernel_id())
            .field("rule", &self.rule().name())
            .field("cpu", &self.cpu.name())
            .field(
                "planning",
                &match self.measurement() {
                    Some(measurement) => measurement.to_string(),
                    None => "table".to_string(),
                },
            )
            .field("post_ops", &self.post.to_string())
            .field("threads", &self.threads)
            .field("output_shape", &self.geometry.output_shape())
            .finish()
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} thread(s)", self.kernel_id(), self.threads)?;
        match self.post.is_none() {
            true => Ok(()),
            false => write!(f, ", then {}", self.post),
        }
    }
}

/// The geometry a plan was made for (for callers that only keep the plan).
impl AsRef<Geometry> for KernelPlan {
    fn as_ref(&self) -> &Geometry {
        self.geometry()
    }
}

#[cfg(test)]
mod tests {
    //! Every kernel forced on problems that suit it, on every tier this CPU has and on one and
    //! two threads, against the reference. (The crate `gconv` tests what the plans choose by
    //! themselves, rule by rule.)

    use super::*;
    use crate::epilogue::testing::{self as epilogue_testing, residual_leaky};
    use crate::epilogue::{Epilogue, Fused};
    use crate::kernels::depthwise::{lanes, streamed};
    use crate::pack::layout::{Packing, VectorOrder};
    use crate::select::{Body, Choice, GroupedChoice};
    use gconv_shape::{Conv2dParams, Padding};
    use gconv_testkit::strategy::{self, Limits};
    use gconv_testkit::{Problem, check_against_reference};
    use proptest::prelude::*;

    /// A kernel forced whatever the rules would choose: a grouped body on a packing (in a
    /// vector order, or the cheaper one), or a depthwise kernel.
    #[derive(Debug, Clone, Copy)]
    enum Force {
        Grouped(Body, Packing, Option<VectorOrder>),
        Depthwise(Choice),
        /// Channels in lanes on the plan's tier, or (`narrow`) its 256-bit subset.
        Lanes {
            narrow: bool,
        },
    }

    /// The rule a forced selection names.
    static FORCED: Rule = Rule::forced();

    impl Force {
        /// The forced selection for `problem`.
        fn select(self, problem: select::Problem<'_>) -> Result<Selection, Error> {
            let choice = match self {
                Force::Grouped(body, packing, order) => {
                    Choice::Grouped(GroupedChoice::forced(problem, body, packing, order)?)
                }
                Force::Depthwise(choice) => choice,
                Force::Lanes { narrow } => Choice::DepthwiseLanes {
                    tier: Force::lanes_tier(narrow, problem.isa),
                },
            };
            Ok(Selection {
                choice,
                rule: &FORCED,
            })
        }

        /// The tier of forced channels in lanes on a plan of tier `isa`.
        fn lanes_tier(narrow: bool, isa: Isa) -> Isa {
            match narrow {
                true => lanes::narrow_tier(isa),
                false => isa,
            }
        }

        /// What the kernel id of a plan running this names: the packing or the depthwise
        /// kernel (and for the channel-vector body its tile of two vectors of channels).
        fn id_names(self, plan: &KernelPlan) -> bool {
            let id = plan.kernel_id();
            let named = |part: &str| id.contains(&format!("-{part}-"));
            match self {
                Force::Grouped(body, packing, order) => {
                    let packing_named = match (packing, order) {
                        (Packing::PhaseSplit, Some(VectorOrder::Flat)) => named("direct"),
                        (Packing::PhaseSplit, Some(VectorOrder::Rows)) => named("rows"),
                        (Packing::PhaseSplit, None) => named("direct") || named("rows"),
                        (Packing::Im2col, _) => named("im2col"),
                        (Packing::KernelColumns, _) => named("columns"),
                        (Packing::InPlace, _) => named("inplace"),
                    };
                    let tile = format!("-{}c", 2 * plan.isa.lanes());
                    packing_named && (body == Body::Positions || id.contains(&tile))
                }
                Force::Depthwise(Choice::DepthwiseStreamed) => named("streamed"),
                Force::Depthwise(Choice::DepthwiseShifted) => named("shifted"),
                Force::Depthwise(Choice::DepthwiseUnpacked) => named("unpacked"),
                Force::Depthwise(Choice::DepthwiseLanes { tier }) => {
                    named("lanes") && id.contains(&format!("-{}c", tier.lanes()))
                }
                Force::Lanes { narrow } => {
                    let tier = Force::lanes_tier(narrow, plan.isa);
                    named("lanes") && id.contains(&format!("-{}c", tier.lanes()))
                }
                Force::Depthwise(Choice::Grouped(_)) => false,
            }
        }
    }

    const LANES: Force = Force::Lanes { narrow: false };
    const NARROW_LANES: Force = Force::Lanes { narrow: true };
    const UNPACKED: Force = Force::Depthwise(Choice::DepthwiseUnpacked);
    const SHIFTED: Force = Force::Depthwise(Choice::DepthwiseShifted);
    const STREAMED: Force = Force::Depthwise(Choice::DepthwiseStreamed);

    /// The flat body on `packing`.
    fn positions(packing: Packing) -> Force {
        Force::Grouped(Body::Positions, packing, None)
    }

    /// The channel-vector body on `packing`.
    fn channels(packing: Packing) -> Force {
        Force::Grouped(Body::Channels, packing, None)
    }

    fn check_path(problem: &Problem, force: Force) -> Result<(), TestCaseError> {
        check_path_on(problem, force, Isa::available())
    }

    /// [`check_path`] on the channel-vector body, on the tiers it fits.
    fn check_channel_path(problem: &Problem, packing: Packing) -> Result<(), TestCaseError> {
        let force = channels(packing);
        let isas = Isa::available()
            .into_iter()
            .filter(|&isa| force_fits(force, &problem.geometry, isa));
        check_path_on(problem, force, isas)
    }

    /// Whether a forced kernel can run `geometry` on `isa`: the channel-vector body's blocks
    /// are whole vectors of a group's output channels.
    fn force_fits(force: Force, geometry: &Geometry, isa: Isa) -> bool {
        !matches!(force, Force::Grouped(Body::Channels, ..))
            || geometry
                .out_channels_per_group()
                .is_multiple_of(isa.lanes())
    }

    /// A plan of `problem` forced onto `force` and `isa` with `threads`, split across them
    /// however small the problem; it runs the kernel forced.
    fn forced_plan(problem: &Problem, force: Force, isa: Isa, threads: usize) -> KernelPlan {
        let options = Options::default().isa(isa).threads(threads);
        let weights = Weights::new(&problem.weight, problem.bias.as_deref());
        let mut plan =
            KernelPlan::with_selection(&problem.geometry, &weights, options, |selection_problem| {
                force.select(selection_problem)
            })
            .unwrap();
        assert!(force.id_names(&plan), "{force:?} runs {}", plan.kernel_id());
        plan.parallel_min_flops = 0;
        plan
    }

    /// `plan` run on `problem`'s input, into an output that starts as NaN.
    fn forced_output(plan: &KernelPlan, problem: &Problem) -> Vec<f32> {
        let mut output = vec![f32::NAN; problem.geometry.output_len()];
        plan.run(&problem.input, &mut output).unwrap();
        output
    }

    fn check_path_on(
        problem: &Problem,
        force: Force,
        isas: impl IntoIterator<Item = Isa>,
    ) -> Result<(), TestCaseError> {
        for isa in isas {
            for threads in [1, 2] {
                let plan = forced_plan(problem, force, isa, threads);
                let output = forced_output(&plan, problem);
                check_against_reference(problem, &output).map_err(|diff| {
                    TestCaseError::fail(format!("{} ({threads} threads): {diff}", plan.kernel_id()))
                })?;
                check_epilogue(problem, &plan, &output)?;
            }
        }
        Ok(())
    }

    /// The kernel `plan` runs, built again with the epilogue [`residual_leaky`] and run with
    /// a residual: every output is the epilogue of the plain output `plain` and of the
    /// residual at its own position, to the bit (each store applies it once, in place). Then
    /// with other activations, with and without a residual, in the stores and as the plan
    /// applies them (a pass over each task's piece): each output is the reference's
    /// `activate(plain + residual)`, to the bit.
    fn check_epilogue(
        problem: &Problem,
        plan: &KernelPlan,
        plain: &[f32],
    ) -> Result<(), TestCaseError> {
        let residual: Vec<f32> = (0..plain.len())
            .map(|index| (index * 7919 % 97) as f32 / 32.0 - 1.5)
            .collect();
        let expected = epilogue_testing::expected(plain, &residual);
        let output = run_with_epilogue(problem, plan, residual_leaky(), Some(&residual));
        compare(plan, "residual+leaky_relu:0.5", &output, &expected)?;
        let activations = [
            Activation::Relu6,
            Activation::LeakyRelu { slope: -0.375 },
            Activation::Clamp {
                min: 0.5,
                max: -0.5,
            },
        ];
        for (index, activation) in activations.into_iter().enumerate() {
            // Each activation with and without a residual, a different pairing per kernel.
            let with_residual = (index + plain.len()).is_multiple_of(2);
            let residual = with_residual.then_some(residual.as_slice());
            let fused = Fused::<f32>::new(activation);
            let output = run_with_epilogue(problem, plan, fused, residual);
            let expected: Vec<f32> = plain
                .iter()
                .enumerate()
                .map(|(at, &sum)| {
                    let total = residual.map_or(sum, |residual| sum + residual[at]);
                    gconv_reference::activate(activation, total)
                })
                .collect();
            let name = format!("{activation}, residual {with_residual}");
            compare(plan, &name, &output, &expected)?;
            // The plan's own way: the plain kernel, then the pass over each task's piece.
            let mut output = vec![f32::NAN; plain.len()];
            let values = Output {
                values: &mut output,
                residual,
                post: PostOps {
                    residual: with_residual,
                    activation,
                }
                .pass(plan.isa),
            };
            let parallel = plan.threads > 1;
            plan.forward
                .kernel
                .run(&problem.input, values, &plan.workspace, parallel);
            compare(
                plan,
                &format!("{name}, after each task"),
                &output,
                &expected,
            )?;
        }
        Ok(())
    }

    /// The kernel `plan` runs, built again with `epilogue`, run on `problem` with `residual`.
    fn run_with_epilogue<E: Epilogue<f32>>(
        problem: &Problem,
        plan: &KernelPlan,
        epilogue: E,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        let selection_problem = select::Problem {
            geometry: &problem.geometry,
            isa: plan.isa,
            cpu: plan.cpu,
            threads: plan.threads,
        };
        let weights = Weights::new(&problem.weight, problem.bias.as_deref());
        let parts = Parts {
            problem: selection_problem,
            weights: &weights,
            epilogue,
        };
        let kernel = build_forward(&plan.forward.selection.choice, parts).unwrap();
        let workspace = Workspace::new(plan.threads, kernel.scratch_len()).unwrap();
        let mut output = vec![f32::NAN; problem.geometry.output_len()];
        let values = Output {
            values: &mut output,
            residual,
            post: None,
        };
        kernel.run(&problem.input, values, &workspace, plan.threads > 1);
        output
    }

    /// `output` against `expected`, bit by bit (NaN as any NaN).
    fn compare(
        plan: &KernelPlan,
        epilogue: &str,
        output: &[f32],
        expected: &[f32],
    ) -> Result<(), TestCaseError> {
        let same = |got: &f32, want: &f32| {
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
        };
        let wrong = output
            .iter()
            .zip(expected)
            .position(|(got, want)| !same(got, want));
        match wrong {
            None => Ok(()),
            Some(index) => Err(TestCaseError::fail(format!(
                "{} ({} threads) with the epilogue {epilogue}: output {index} is {}, not {}",
                plan.kernel_id(),
                plan.threads,
                output[index],
                expected[index]
            ))),
        }
    }

    /// Depthwise problems whose channels fill whole vectors of every tier (16 lanes).
    fn lane_problems() -> impl Strategy<Value = Problem> {
        // Kernels up to 7x7 (49 taps): ConvNeXt's depthwise size. Strides and dilations up to
        // 3 pair output rows 1, 2 or 3 apart, shifted by 1 to 3 kernel rows (or not at all).
        (
            1usize..3,
            1usize..8,
            1usize..8,
            1usize..4,
            1usize..4,
            0usize..4,
            1usize..12,
            1usize..12,
            1usize..3,
        )
            .prop_filter_map(
                "window larger than input",
                |(blocks, kh, kw, stride, dilation, pad, h, w, batch)| {
                    let channels = 16 * blocks;
                    Conv2dParams::new(channels, channels, [kh, kw])
                        .groups(channels)
                        .stride(stride)
                        .dilation(dilation)
                        .padding(Padding::uniform(pad))
                        .geometry([batch, channels, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Stride-1 depthwise problems with channel multipliers, asymmetric kernels and padding,
    /// dilation, and rows around one and two vectors of every tier (8 and 16 lanes); half
    /// the windows square, most of those 3x3 (their shared-row tiles are specialised).
    fn unpacked_problems() -> impl Strategy<Value = Problem> {
        let square = prop_oneof![Just(3usize), 1usize..8].prop_map(|side| (side, side));
        let window = (
            prop_oneof![square, (1usize..8, 1usize..6)],
            1usize..4,
            1usize..4,
        )
            .prop_map(|((kh, kw), dh, dw)| (kh, kw, dh, dw));
        let size = (1usize..4, 1usize..4, 1usize..20, 1usize..40, 1usize..3);
        depthwise_problems(1, window, size)
    }

    /// Stride-1 depthwise problems whose output is the input's size (the padding of each axis
    /// adds up to the window's reach, split unevenly too), with channel multipliers,
    /// dilation, planes around one and two vectors of every tier and batches, so that the
    /// input's first and last planes (masked loads) and the planes between (whole loads)
    /// all occur.
    fn same_size_problems() -> impl Strategy<Value = Problem> {
        let window = (1usize..8, 1usize..8, 1usize..3, 1usize..3);
        let split = (0.0f64..1.0, 0.0f64..1.0);
        let size = (1usize..4, 1usize..3, 1usize..20, 1usize..40, 1usize..4);
        (window, split, size, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                |((kh, kw, dilation_h, dilation_w), (above, before), size, bias)| {
                    let (reach_h, reach_w) = ((kh - 1) * dilation_h, (kw - 1) * dilation_w);
                    let top = (above * (reach_h + 1) as f64) as usize;
                    let left = (before * (reach_w + 1) as f64) as usize;
                    let padding = Padding::per_side(top, reach_h - top, left, reach_w - left);
                    depthwise_geometry(1, (kh, kw, dilation_h, dilation_w), padding, size, bias)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Stride-2 depthwise problems for the unpacked kernel: windows of three and five rows
    /// (shared input rows) and others, planes tall enough for blocks of every row count and wide
    /// enough that a row holds pairs of vectors inside and at both ends (32 input columns
    /// per vector pair on AVX-512).
    fn stride_two_unpacked_problems() -> impl Strategy<Value = Problem> {
        let window = (
            prop_oneof![Just(3usize), Just(5usize), 1usize..6],
            1usize..6,
            1usize..3,
            1usize..3,
        );
        let size = (1usize..3, 1usize..3, 1usize..40, 1usize..72, 1usize..3);
        depthwise_problems(2, window, size)
    }

    /// Depthwise problems of `stride` for the streamed kernel (3x3, 5x5 and 7x7 windows with
    /// stride 1, dilated by up to four on either axis a third of the time, 3x3 and 5x5 with
    /// stride 2): padding of up to three on
    /// each side (the first and last output rows reading padding rows, the first and last
    /// vectors of columns padding columns), planes of odd and even sizes, short (no row pair
    /// inside) and tall, rows around one and two vectors of every tier (32 input columns per
    /// vector on AVX-512 with stride 2, 16 with stride 1) and rows of more vectors than a
    /// band holds (four), channel multipliers and batches.
    fn streamed_problems(stride: usize) -> impl Strategy<Value = Problem> {
        let width = prop_oneof![3 => 1usize..72, 1 => 60usize..170];
        let size = (1usize..4, 1usize..3, 1usize..24, width, 1usize..3);
        let window = if stride == 1 {
            let side = prop_oneof![Just(3usize), Just(5), Just(7)];
            let dilation = prop_oneof![2 => Just((1usize, 1usize)), 1 => (1usize..5, 1usize..5)];
            (side, dilation)
                .prop_map(|(side, (dilation_h, dilation_w))| (side, side, dilation_h, dilation_w))
                .boxed()
        } else {
            let side = prop_oneof![Just(3usize), Just(5)];
            side.prop_map(|side| (side, side, 1, 1)).boxed()
        };
        depthwise_problems(stride, window, size)
    }

    /// Depthwise problems of `stride` with windows `(kH, kW, dH, dW)` and sizes `(channels,
    /// multiplier, H, W, batch)` drawn from the given strategies, asymmetric padding of up to
    /// three on each side, with and without bias.
    fn depthwise_problems(
        stride: usize,
        window: impl Strategy<Value = (usize, usize, usize, usize)>,
        size: impl Strategy<Value = (usize, usize, usize, usize, usize)>,
    ) -> impl Strategy<Value = Problem> {
        let padding = (0usize..4, 0usize..4, 0usize..4, 0usize..4);
        (window, padding, size, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                move |(window, (top, bottom, left, right), size, bias)| {
                    let padding = Padding::per_side(top, bottom, left, right);
                    depthwise_geometry(stride, window, padding, size, bias)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// A depthwise geometry of `stride`, window `(kH, kW, dH, dW)`, `padding` and sizes
    /// `(channels, multiplier, H, W, batch)`, if valid.
    fn depthwise_geometry(
        stride: usize,
        (kh, kw, dilation_h, dilation_w): (usize, usize, usize, usize),
        padding: Padding,
        (channels, multiplier, h, w, batch): (usize, usize, usize, usize, usize),
        bias: bool,
    ) -> Option<Geometry> {
        Conv2dParams::new(channels, channels * multiplier, [kh, kw])
            .groups(channels)
            .stride(stride)
            .dilation([dilation_h, dilation_w])
            .padding(padding)
            .bias(bias)
            .geometry([batch, channels, h, w])
            .ok()
    }

    /// Depthwise 5xN and 7xN windows without vertical dilation on planes tall enough for
    /// blocks of every row count: the unpacked kernel's shared-row tiles.
    fn tall_window_problems() -> impl Strategy<Value = Problem> {
        // Square windows half the time (their tiles are specialised), else any width.
        let window = (
            prop_oneof![Just(5usize), Just(7usize)],
            prop_oneof![Just(None), (1usize..8).prop_map(Some)],
            1usize..3,
        );
        let size = (0usize..4, 0usize..4, 1usize..3, 8usize..30, 1usize..40);
        (window, size)
            .prop_filter_map(
                "window larger than input",
                |((kh, kw, dilation_w), (top, left, channels, h, w))| {
                    let kw = kw.unwrap_or(kh);
                    Conv2dParams::new(channels, channels, [kh, kw])
                        .groups(channels)
                        .dilation([1, dilation_w])
                        .padding(Padding::per_side(top, kh - 1 - top.min(kh - 1), left, left))
                        .geometry([1, channels, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// 1×1 problems with stride 1 and no padding (read in place), of every group count and
    /// plane size around the lanes, and batches whose last group ends the input (the band
    /// copied because its last vectors would read past it).
    fn pointwise_problems() -> impl Strategy<Value = Problem> {
        pointwise_problems_of(
            (1usize..4, 1usize..12, 1usize..12),
            (1usize..20, 1usize..20, 1usize..3),
        )
    }

    /// 1×1 problems, stride 1, no padding, of `(groups, in_per_group, out_per_group)` from
    /// `shape` and `(height, width, batch)` from `size`, with or without a bias.
    fn pointwise_problems_of(
        shape: impl Strategy<Value = (usize, usize, usize)>,
        size: impl Strategy<Value = (usize, usize, usize)>,
    ) -> impl Strategy<Value = Problem> {
        (shape, size, any::<bool>())
            .prop_filter_map(
                "never invalid",
                |((groups, in_per_group, out_per_group), (h, w, batch), bias)| {
                    Conv2dParams::new(groups * in_per_group, groups * out_per_group, 1)
                        .groups(groups)
                        .bias(bias)
                        .geometry([batch, groups * in_per_group, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Output channels per group for the channel-vector body: multiples of 8, so that
    /// blocks of one vector and of two (8 or 16 lanes) both come up on every tier that
    /// divides them.
    fn channel_vector_counts() -> impl Strategy<Value = usize> {
        (1usize..9).prop_map(|vectors| 8 * vectors)
    }

    /// Grouped problems for the channel-vector body (output channels per group a multiple
    /// of 8), with reductions short and long enough to come in several chunks of taps (past
    /// 128 taps on AVX-512, 256 on AVX2).
    fn channel_block_problems() -> impl Strategy<Value = Problem> {
        let in_per_group = prop_oneof![2usize..5, 20usize..40];
        let shape = (
            1usize..3,
            in_per_group,
            channel_vector_counts(),
            (1usize..4, 1usize..4),
        );
        // Asymmetric padding and "same" padding too: per-kernel-column packing copies whole
        // rows shifted where the output is as wide as the input.
        let padding = prop_oneof![
            (0usize..3).prop_map(Padding::uniform),
            (0usize..3, 0usize..3, 0usize..3, 0usize..3)
                .prop_map(|(top, bottom, left, right)| Padding::per_side(top, bottom, left, right)),
            Just(Padding::Same),
        ];
        let window = (
            1usize..3,
            1usize..3,
            padding,
            (1usize..12, 1usize..14),
            1usize..3,
        );
        (shape, window, any::<bool>())
            .prop_filter_map(
                "window larger than input",
                |(
                    (groups, in_per_group, out_per_group, (kh, kw)),
                    (stride, dilation, pad, (h, w), batch),
                    bias,
                )| {
                    Conv2dParams::new(groups * in_per_group, groups * out_per_group, [kh, kw])
                        .groups(groups)
                        .stride(stride)
                        .dilation(dilation)
                        .padding(pad)
                        .bias(bias)
                        .geometry([batch, groups * in_per_group, h, w])
                        .ok()
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// 1x1 problems (stride 1, no padding: read in place) for the channel-vector body, on
    /// planes small and large, reductions short and long.
    fn channel_pointwise_problems() -> impl Strategy<Value = Problem> {
        let in_per_group = prop_oneof![2usize..5, 100usize..300];
        pointwise_problems_of(
            (1usize..3, in_per_group, channel_vector_counts()),
            (1usize..16, 1usize..16, 1usize..3),
        )
    }

    /// Problems whose tasks (one group or three of at most 16 output channels, one sample)
    /// leave two threads unevenly loaded, on planes whose halves hold 256 outputs: split
    /// into blocks of rows on two threads. Windows 1x1 to 3x3 (1x1 read in place), strides
    /// and dilations 1 and 2, per-group output channels of one and two vectors of 8 too.
    fn row_block_problems() -> impl Strategy<Value = Problem> {
        let out_per_group = prop_oneof![1usize..17, Just(8), Just(16)];
        let shape = (
            prop_oneof![Just(1usize), Just(3)],
            2usize..7,
            out_per_group,
            1usize..4,
        );
        let window = (1usize..3, 1usize..3, 0usize..3, any::<bool>());
        (shape, window, (16usize..48, 44usize..80))
            .prop_filter_map(
                "output too small to split",
                |(
                    (groups, in_per_group, out_per_group, kernel),
                    (stride, dilation, pad, bias),
                    (h, w),
                )| {
                    let geometry =
                        Conv2dParams::new(groups * in_per_group, groups * out_per_group, kernel)
                            .groups(groups)
                            .stride(stride)
                            .dilation(dilation)
                            .padding(Padding::uniform(pad))
                            .bias(bias)
                            .geometry([1, groups * in_per_group, h, w])
                            .ok()?;
                    let [out_h, out_w] = geometry.output_size();
                    (out_h / 2 * out_w >= 256).then_some(geometry)
                },
            )
            .prop_flat_map(|geometry| strategy::with_data(geometry, -1.0f32..1.0))
    }

    /// Each forced body over [`row_block_problems`]: on every tier, one thread matches the
    /// reference, two split the plane into blocks of rows, and two and three threads give
    /// the same bits as one.
    fn check_row_blocks(problem: &Problem) -> Result<(), TestCaseError> {
        let geometry = &problem.geometry;
        let pointwise = geometry.kernel_size() == [1, 1] && geometry.stride() == [1, 1];
        let mut forces = vec![
            positions(Packing::PhaseSplit),
            positions(Packing::Im2col),
            channels(Packing::PhaseSplit),
            channels(Packing::KernelColumns),
        ];
        if pointwise && geometry.padding() == Default::default() {
            forces.extend([positions(Packing::InPlace), channels(Packing::InPlace)]);
        }
        for isa in Isa::available() {
            for &force in forces
                .iter()
                .filter(|&&force| force_fits(force, geometry, isa))
            {
                let single = forced_plan(problem, force, isa, 1);
                let expected = forced_output(&single, problem);
                let id = single.kernel_id();
                check_against_reference(problem, &expected)
                    .map_err(|diff| TestCaseError::fail(format!("{id}: {diff}")))?;
                for threads in [2, 3] {
                    let parallel = forced_plan(problem, force, isa, threads);
                    // An odd number of chunks (always so up to 8 channels per group; 1x1
                    // groups of 16 come in two chunks of 8) is split into blocks of rows.
                    if let (2, Choice::Grouped(grouped)) =
                        (threads, parallel.forward.selection.choice)
                    {
                        let partition = grouped.partition;
                        let chunks = geometry.out_channels() / partition.chunk_channels;
                        let split = partition.row_blocks > 1;
                        prop_assert!(
                            split || chunks.is_multiple_of(2),
                            "{id}: {chunks} chunks, one block"
                        );
                    }
                    let same = forced_output(&parallel, problem)
                        .iter()
                        .zip(&expected)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    prop_assert!(same, "{id}: {threads} threads differ from one");
                    // Blocks of rows reach their planes through the epilogue too.
                    check_epilogue(problem, &parallel, &expected)?;
                }
            }
        }
        Ok(())
    }

    /// Plans of one layer for other batch sizes share the weights packed for the first: on
    /// one thread the kernel's order of the weights does not depend on the batch (grouped
    /// layers of narrow, wide and 1x1 groups; a depthwise layer on small planes, which the
    /// channels-in-lanes kernel packs).
    #[test]
    fn plans_of_other_batch_sizes_pack_no_weights_again() {
        let layers = [
            (64, 64, 3, 16, 14),
            (256, 256, 3, 8, 7),
            (240, 240, 1, 3, 14),
            (64, 64, 3, 64, 7),
        ];
        for (in_channels, out_channels, kernel, groups, side) in layers {
            let params = Conv2dParams::new(in_channels, out_channels, kernel)
                .groups(groups)
                .padding(Padding::uniform(kernel / 2));
            let geometry = |batch| params.geometry([batch, in_channels, side, side]).unwrap();
            let weight = vec![0.25; geometry(1).weight_count()];
            let bias = vec![0.5; out_channels];
            for isa in Isa::available() {
                let weights = Weights::new(&weight, Some(&bias));
                let options = Options::default().isa(isa).threads(1);
                let first = KernelPlan::with_weights(&geometry(1), &weights, options).unwrap();
                let packed = weights.packed_orders();
                let others: Vec<KernelPlan> = (2..6)
                    .map(|batch| KernelPlan::with_weights(&geometry(batch), &weights, options))
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(
                    weights.packed_orders(),
                    packed,
                    "{} and {:?}: {weights:?}",
                    first.kernel_id(),
                    others.iter().map(KernelPlan::kernel_id).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Inputs large enough that the streamed kernel prefetches each next plane as it goes (a
    /// dilated 3x3 window with stride 1, a 5x5 window with stride 2): the reference's
    /// outputs, the last plane's (which has no next plane) included, on every tier and with
    /// one and two threads. (Not under valgrind: its name leaves out the filter's words.)
    #[test]
    fn streamed_depthwise_agrees_with_reference_on_prefetched_large_inputs() {
        for (side, stride, dilation) in [(3, 1, 2), (5, 2, 1)] {
            let geometry = Conv2dParams::new(3, 3, side)
                .groups(3)
                .stride(stride)
                .dilation(dilation)
                .padding(Padding::uniform(side / 2 * dilation))
                .bias(true)
                .geometry([1, 3, 1500, 1000])
                .unwrap();
            assert!(streamed::prefetches::<f32>(&geometry), "{geometry:?}");
            let problem = Problem {
                input: gconv_testkit::data::uniform(geometry.input_len(), 1),
                weight: gconv_testkit::data::uniform(geometry.weight_count(), 2),
                bias: Some(gconv_testkit::data::uniform(3, 3)),
                geometry,
            };
            check_path(&problem, STREAMED).unwrap();
        }
    }

    /// Padding far beyond the input, with a stride that keeps the output small: a valid
    /// geometry whose packed planes would be astronomically large. A clear error, never a
    /// panic, a wrapped size or a huge allocation, on every tier and kernel path.
    /// A residual is given exactly to the plans made to add one, of the output's length; a
    /// NaN parameter is refused when the plan is made. Each refusal names what is wrong.
    #[test]
    fn residuals_and_activations_are_checked() {
        let geometry = Conv2dParams::new(4, 4, 3)
            .groups(4)
            .padding(Padding::uniform(1))
            .geometry([1, 4, 6, 6])
            .unwrap();
        let weight = vec![0.5; geometry.weight_count()];
        let bias = vec![-1.0; 4];
        let input = vec![1.0; geometry.input_len()];
        let residual = vec![0.25; geometry.output_len()];
        let mut output = vec![0.0; geometry.output_len()];
        let options = Options::default().threads(1);
        let plain = KernelPlan::new(&geometry, &weight, Some(&bias), options).unwrap();
        let error = plain
            .run_with_residual(&input, &residual, &mut output)
            .unwrap_err();
        assert_eq!(error, Error::Residual { plan_adds: false });
        assert!(
            error.to_string().contains("Options::residual(true)"),
            "{error}"
        );
        let block = options.residual(true).activation(Activation::Relu);
        let fused = KernelPlan::new(&geometry, &weight, Some(&bias), block).unwrap();
        let error = fused.run(&input, &mut output).unwrap_err();
        assert_eq!(error, Error::Residual { plan_adds: true });
        let short = fused
            .run_with_residual(&input, &residual[1..], &mut output)
            .unwrap_err();
        assert!(
            short.to_string().contains("residual buffer holds 143"),
            "{short}"
        );
        fused
            .run_with_residual(&input, &residual, &mut output)
            .unwrap();
        // A corner sees 2x2 taps of 0.5: relu(2 − 1 + 0.25); an interior pixel 3x3.
        assert_eq!(output[0], 1.25);
        assert_eq!(output[6 + 1], 3.75);
        assert_eq!(fused.post_ops().to_string(), "residual+relu");
        assert!(format!("{fused:?}").contains("post_ops: \"residual+relu\""));
        let nan = options.activation(Activation::Clamp {
            min: 0.0,
            max: f64::NAN,
        });
        let error = KernelPlan::new(&geometry, &weight, Some(&bias), nan).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the max of activation clamp is NaN"),
            "{error}"
        );
    }

    #[test]
    fn absurd_padding_is_refused_not_allocated() {
        for (channels, groups, padding, stride) in [
            (16, 16, 1usize << 30, 1usize << 20),
            (4, 2, 1 << 30, 1 << 20),
            (16, 16, 1 << 40, 1 << 40),
            (4, 1, 1 << 40, 1 << 40),
        ] {
            let geometry = Conv2dParams::new(channels, channels, 3)
                .groups(groups)
                .stride(stride)
                .padding(Padding::uniform(padding))
                .bias(false)
                .geometry([1, channels, 1, 1])
                .unwrap();
            let weight = vec![1.0; geometry.weight_count()];
            for isa in Isa::available() {
                for force in [None, Some(LANES), Some(positions(Packing::PhaseSplit))] {
                    let options = Options::default().isa(isa).threads(1);
                    let result = match force {
                        None => KernelPlan::new(&geometry, &weight, None, options),
                        Some(force) => KernelPlan::with_selection(
                            &geometry,
                            &Weights::new(&weight, None),
                            options,
                            |problem| force.select(problem),
                        ),
                    };
                    assert!(
                        matches!(result, Err(Error::TooLarge { .. })),
                        "{isa} {force:?} padding {padding}: {:?}",
                        result.map(|plan| plan.kernel_id())
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(strategy::cases(48)))]

        #[test]
        fn channel_vectors_match_the_reference(problem in channel_block_problems()) {
            check_channel_path(&problem, Packing::PhaseSplit)?;
            check_channel_path(&problem, Packing::KernelColumns)?;
        }

        #[test]
        fn channel_vectors_in_place_match_the_reference(problem in channel_pointwise_problems()) {
            check_channel_path(&problem, Packing::InPlace)?;
        }

        #[test]
        fn blocks_of_rows_give_the_bits_of_one_thread(problem in row_block_problems()) {
            check_row_blocks(&problem)?;
        }

        #[test]
        fn phase_split_packing_matches_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, positions(Packing::PhaseSplit))?;
        }

        #[test]
        fn flat_and_row_vector_orders_match_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, Force::Grouped(Body::Positions, Packing::PhaseSplit, Some(VectorOrder::Flat)))?;
            check_path(&problem, Force::Grouped(Body::Positions, Packing::PhaseSplit, Some(VectorOrder::Rows)))?;
        }

        #[test]
        fn in_place_pointwise_matches_the_reference(problem in pointwise_problems()) {
            check_path(&problem, positions(Packing::InPlace))?;
        }

        #[test]
        fn im2col_packing_matches_the_reference(problem in strategy::problems(Limits::default())) {
            check_path(&problem, positions(Packing::Im2col))?;
        }

        #[test]
        fn channels_in_lanes_match_the_reference(problem in lane_problems()) {
            check_path(&problem, LANES)?;
            check_path(&problem, NARROW_LANES)?;
        }

        #[test]
        fn unpacked_depthwise_matches_the_reference(problem in unpacked_problems()) {
            check_path(&problem, UNPACKED)?;
        }

        #[test]
        fn unpacked_depthwise_with_stride_two_matches_the_reference(
            problem in stride_two_unpacked_problems()
        ) {
            check_path(&problem, UNPACKED)?;
        }

        #[test]
        fn streamed_depthwise_matches_the_reference(problem in streamed_problems(1)) {
            check_path(&problem, STREAMED)?;
        }

        #[test]
        fn streamed_depthwise_with_stride_two_matches_the_reference(
            problem in streamed_problems(2)
        ) {
            check_path(&problem, STREAMED)?;
        }

        #[test]
        fn shifted_plane_depthwise_matches_the_reference(problem in same_size_problems()) {
            prop_assert_eq!(problem.geometry.output_size(), problem.geometry.input_size());
            check_path(&problem, SHIFTED)?;
        }

        #[test]
        fn unpacked_depthwise_with_tall_windows_matches_the_reference(
            problem in tall_window_problems()
        ) {
            check_path(&problem, UNPACKED)?;
        }
    }
}
