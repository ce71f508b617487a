use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gconv_kernels::{KernelPlan, Measurement, Rule, Weights};

use crate::{Conv2dParams, CpuClass, Error, Family, Geometry, Isa, Options, PostOps, ShapeError};

/// Input shapes besides the first that a [`Conv2d`] keeps set up; past that the one used
/// longest ago is dropped (and set up again if it comes back).
pub const CACHED_SHAPES: usize = 8;

/// A grouped convolution with its weights, ready to run on any input size its parameters
/// accept.
///
/// # Cost model
///
/// * **Once**, in [`Conv2d::new`]: the parameters, weight and bias are validated and copied,
///   and the first input shape is set up.
/// * **Once per input shape** (`[N, C_in, H, W]`), on its first use or in
///   [`Conv2d::prepare`]: the kernel and tier are chosen for that shape, the tasks and
///   scratch laid out. Up to [`CACHED_SHAPES`] shapes besides the first are kept; a shape
///   dropped from the cache is set up again when it returns.
/// * **Once per order of the weights**: a kernel that reads the weights in an order of its
///   own (its register blocks side by side, or channels in lanes) packs them on the first
///   shape that needs that order; every other shape whose kernel reads the same order shares
///   it. On nearly every layer one order serves every batch size and image size (see
///   [`gconv_kernels::Weights`]).
/// * **Per run**: nothing is allocated on a shape already set up ([`Conv2d::run`],
///   [`Conv2d::run_shaped`]); [`Conv2d::forward`] allocates its output.
/// * **Once per process and thread count**: the first plan that runs on `n > 1` threads
///   starts `n − 1` helper threads, which every later plan of `n` threads shares; they finish
///   starting (and allocate what they need) in the background.
///
/// The result of every shape is bit-identical to that of a `Conv2d` made for that shape,
/// and to itself for every thread count.
pub struct Conv2d {
    params: Conv2dParams,
    /// The weight and bias, and each order a kernel reads them in, packed once for all shapes.
    weights: Weights<f32>,
    options: Options,
    /// The shape given to [`Conv2d::new`], always set up.
    first: KernelPlan,
    /// Other shapes set up, the most recently used first; never more than
    /// [`CACHED_SHAPES`] (its capacity, reserved up front, so that reordering and
    /// replacing allocate nothing).
    others: Mutex<Vec<([usize; 4], Arc<KernelPlan>)>>,
}

impl Conv2d {
    /// Validates `params` against `input_shape` (`[N, C_in, H, W]`), `weight`
    /// (`[C_out, C_in/g, kH, kW]`, flat) and `bias` (`[C_out]`), then sets up that input
    /// shape. `None` for the bias makes a convolution without one; a bias given to
    /// parameters declared with `bias(false)` is an error.
    pub fn new(
        params: Conv2dParams,
        input_shape: [usize; 4],
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<Conv2d, Error> {
        if let (false, Some(bias)) = (params.bias, bias) {
            return Err(ShapeError::BiasNotDeclared { given: bias.len() }.into());
        }
        let params = params.bias(bias.is_some());
        let geometry = params.geometry(input_shape)?;
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
        // The lengths first: a wrong weight must not cost a copy of it.
        geometry.check_parameter_lengths(weight.len(), bias.map(<[f32]>::len))?;
        let weights = Weights::new(weight, bias);
        let first = KernelPlan::with_weights(geometry, &weights, options)?;
        Ok(Conv2d {
            params: *geometry.params(),
            weights,
            options,
            first,
            others: Mutex::new(Vec::with_capacity(CACHED_SHAPES)),
        })
    }

    /// Convolves NCHW `input` of the shape given to [`Conv2d::new`] into the NCHW `output`
    /// buffer, of `geometry().output_len()` elements. Allocates nothing.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        self.first.run(input, output)
    }

    /// Convolves NCHW `input` of `input_shape` (any batch size, height and width the
    /// parameters accept) into the NCHW `output` buffer of the matching output shape (see
    /// [`Conv2d::prepare`]). Sets the shape up on its first use; allocates nothing on a shape
    /// already set up.
    ///
    /// ```
    /// use gconv::{Conv2d, Conv2dParams, Options, Padding};
    ///
    /// // A ResNeXt block's grouped 3x3, made for one 56x56 image on one thread.
    /// let params = Conv2dParams::new(128, 128, 3).groups(32).padding(Padding::uniform(1));
    /// let weight = vec![0.25f32; 128 * 4 * 3 * 3];
    /// let options = Options::default().threads(1);
    /// let conv = Conv2d::new(params, [1, 128, 56, 56], &weight, None, options)?;
    ///
    /// // The last batch of an epoch: three images, another size.
    /// let shape = [3, 128, 40, 48];
    /// let input = vec![1.0f32; shape.iter().product()];
    /// let mut output = vec![0.0f32; conv.prepare(shape)?.output_len()];
    /// conv.run_shaped(shape, &input, &mut output)?;
    /// assert_eq!(output[40 * 48 + 48 + 1], 9.0); // an interior pixel: 4 channels x 3x3 x 0.25
    ///
    /// // A shape the parameters refuse is an error, not a panic.
    /// let error = conv.run_shaped([1, 64, 8, 8], &[0.0; 64 * 64], &mut output).unwrap_err();
    /// assert!(error.to_string().contains("in_channels (128)"), "{error}");
    /// # Ok::<(), gconv::Error>(())
    /// ```
    pub fn run_shaped(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.with_plan(input_shape, |plan| plan.run(input, output))
    }

    /// [`Conv2d::run`] for a convolution made with [`Options::residual`]: adds `residual`
    /// (NCHW, the output's shape) to each output after the bias, then applies the activation,
    /// on each piece of the output as soon as it is computed, while it is in cache (not as a
    /// second pass over the tensor). Allocates nothing.
    ///
    /// ```
    /// use gconv::{Activation, Conv2d, Conv2dParams, Options, Padding};
    ///
    /// // The end of a MobileNetV2 block: relu6(conv(x) + b + shortcut), one pass.
    /// let params = Conv2dParams::new(32, 32, 3).groups(32).padding(Padding::uniform(1));
    /// let options = Options::default().residual(true).activation(Activation::Relu6);
    /// let weight = vec![1.0f32; 32 * 3 * 3];
    /// let bias = vec![-2.0f32; 32];
    /// let conv = Conv2d::new(params, [1, 32, 8, 8], &weight, Some(&bias), options)?;
    ///
    /// let input = vec![1.0f32; 32 * 8 * 8];
    /// let shortcut = vec![0.5f32; 32 * 8 * 8];
    /// let mut output = vec![0.0f32; 32 * 8 * 8];
    /// conv.run_with_residual(&input, &shortcut, &mut output)?;
    /// assert_eq!(output[8 + 1], 6.0); // an interior pixel: min(9 − 2 + 0.5, 6)
    /// assert_eq!(output[0], 2.5); // a corner sees 2x2 of the window: 4 − 2 + 0.5
    ///
    /// // Forgetting the residual is an error, not a convolution without it.
    /// assert!(conv.run(&input, &mut output).is_err());
    /// # Ok::<(), gconv::Error>(())
    /// ```
    pub fn run_with_residual(
        &self,
        input: &[f32],
        residual: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.first.run_with_residual(input, residual, output)
    }

    /// [`Conv2d::run_shaped`] with a residual of the output's shape (see
    /// [`Conv2d::run_with_residual`]).
    pub fn run_shaped_with_residual(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
        residual: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.with_plan(input_shape, |plan| {
            plan.run_with_residual(input, residual, output)
        })
    }

    /// Convolves NCHW `input` of the shape given to [`Conv2d::new`] into a new output; an
    /// output the machine cannot hold is an error, not an abort.
    pub fn forward(&self, input: &[f32]) -> Result<Vec<f32>, Error> {
        forward_on(&self.first, input, None)
    }

    /// [`Conv2d::forward`] for an input of `input_shape` (see [`Conv2d::run_shaped`]).
    pub fn forward_shaped(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
    ) -> Result<Vec<f32>, Error> {
        self.with_plan(input_shape, |plan| forward_on(plan, input, None))
    }

    /// [`Conv2d::forward`] with a residual of the output's shape (see
    /// [`Conv2d::run_with_residual`]).
    pub fn forward_with_residual(
        &self,
        input: &[f32],
        residual: &[f32],
    ) -> Result<Vec<f32>, Error> {
        forward_on(&self.first, input, Some(residual))
    }

    /// Sets up `input_shape` ahead of its first run, so that the run allocates nothing, and
    /// returns its validated shapes (the output shape is `geometry.output_shape()`).
    pub fn prepare(&self, input_shape: [usize; 4]) -> Result<Geometry, Error> {
        self.with_plan(input_shape, |plan| Ok(*plan.geometry()))
    }

    /// `work` on the plan of `input_shape`: the first shape's, else one from the cache
    /// ([`Conv2d::plan_for`]).
    pub(crate) fn with_plan<R>(
        &self,
        input_shape: [usize; 4],
        work: impl FnOnce(&KernelPlan) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if input_shape == self.first.geometry().input_shape() {
            return work(&self.first);
        }
        work(&*self.plan_for(input_shape)?)
    }

    /// The plan of `input_shape`: from the cache (moved to its front), else made and cached.
    fn plan_for(&self, input_shape: [usize; 4]) -> Result<Arc<KernelPlan>, Error> {
        if let Some(plan) = cached(&mut self.others(), input_shape) {
            return Ok(plan);
        }
        // Made outside the lock: setting a shape up takes a while, and runs of the shapes
        // already set up must not wait for it.
        let geometry = self.params.geometry(input_shape)?;
        let plan = KernelPlan::with_weights(&geometry, &self.weights, self.options)?;
        let mut others = self.others();
        if let Some(made_meanwhile) = cached(&mut others, input_shape) {
            return Ok(made_meanwhile);
        }
        if others.len() == CACHED_SHAPES {
            others.pop();
        }
        let plan = Arc::new(plan);
        others.insert(0, (input_shape, Arc::clone(&plan)));
        Ok(plan)
    }

    fn others(&self) -> MutexGuard<'_, Vec<([usize; 4], Arc<KernelPlan>)>> {
        // The list is whole between any two statements that change it: a panic elsewhere
        // while it was locked leaves nothing to repair.
        self.others.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The validated shapes of the input shape given to [`Conv2d::new`].
    pub fn geometry(&self) -> &Geometry {
        self.first.geometry()
    }

    /// The instruction-set tier it runs on.
    pub fn isa(&self) -> Isa {
        self.first.isa()
    }

    /// The CPU class its kernels were chosen for (`GCONV_CPU`, [`Options::cpu`], or this
    /// CPU's).
    pub fn cpu_class(&self) -> CpuClass {
        self.first.cpu_class()
    }

    /// The rule of the selection table that chose the first input shape's kernel
    /// (`measured` where a measurement chose another, see [`crate::Planning`]).
    pub fn rule(&self) -> &'static Rule {
        self.first.rule()
    }

    /// How a measured plan of the first input shape came by its kernel (timed, each
    /// candidate's best time, or read from wisdom); `None` where the table chose it.
    pub fn measurement(&self) -> Option<&Measurement> {
        self.first.measurement()
    }

    /// What it applies to every output after the bias: the residual add ([`Options::residual`],
    /// [`Conv2d::run_with_residual`]) and the activation ([`Options::activation`]).
    pub fn post_ops(&self) -> PostOps {
        self.first.post_ops()
    }

    /// The kernel family of the first input shape.
    pub fn family(&self) -> Family {
        self.first.family()
    }

    /// Threads it runs on.
    pub fn threads(&self) -> usize {
        self.first.threads()
    }

    /// The id of the kernel that runs the first input shape, e.g.
    /// `dwconv-3x3s2d1-streamed-1c16w-x86_64_v4`.
    pub fn kernel_id(&self) -> String {
        self.first.kernel_id()
    }
}

/// The plan of `input_shape` in `others`, moved to the front.
fn cached(
    others: &mut [([usize; 4], Arc<KernelPlan>)],
    input_shape: [usize; 4],
) -> Option<Arc<KernelPlan>> {
    let index = others.iter().position(|(shape, _)| *shape == input_shape)?;
    others[..=index].rotate_right(1);
    Some(Arc::clone(&others[0].1))
}

/// `plan` run on `input`, with `residual` if given, into a new output.
pub(crate) fn forward_on(
    plan: &KernelPlan,
    input: &[f32],
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, Error> {
    let geometry = plan.geometry();
    // The inputs first: a wrong one must not cost an allocation of the output.
    geometry.check_buffer_lengths(
        input.len(),
        geometry.weight_count(),
        geometry.has_bias().then(|| geometry.out_channels()),
        geometry.output_len(),
    )?;
    if let Some(residual) = residual {
        geometry.check_residual_length(residual.len())?;
    }
    let mut output = zeroed_output(geometry.output_len())?;
    match residual {
        Some(residual) => plan.run_with_residual(input, residual, &mut output)?,
        None => plan.run(input, &mut output)?,
    }
    Ok(output)
}

/// An output of `len` zeros, or an error when the machine cannot hold it.
pub(crate) fn zeroed_output(len: usize) -> Result<Vec<f32>, Error> {
    let mut output = Vec::new();
    output
        .try_reserve_exact(len)
        .map_err(|_| Error::Allocation {
            what: "the output",
            bytes: len as u128 * 4,
        })?;
    output.resize(len, 0.0);
    Ok(output)
}

impl fmt::Debug for Conv2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<[usize; 4]> = self.others().iter().map(|(shape, _)| *shape).collect();
        f.debug_struct("Conv2d")
            .field("first", &self.first)
            .field("other_shapes", &shapes)
            .field("weights", &self.weights)
            .finish()
    }
}

impl fmt::Display for Conv2d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.first, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other batch sizes and image sizes of a ResNeXt layer set up on one `Conv2d` pack no
    /// weights beyond the first shape's (on one thread its order does not depend on them).
    #[test]
    fn other_shapes_share_the_packed_weights() {
        let params = Conv2dParams::new(64, 64, 3)
            .groups(16)
            .padding(crate::Padding::uniform(1));
        let weight = vec![0.5; 64 * 4 * 9];
        let bias = vec![0.25; 64];
        let conv = Conv2d::new(
            params,
            [1, 64, 14, 14],
            &weight,
            Some(&bias),
            Options::default().threads(1),
        )
        .unwrap();
        let packed = conv.weights.packed_orders();
        assert_eq!(packed, 1, "{conv:?}");
        for shape in [
            [2, 64, 14, 14],
            [5, 64, 14, 14],
            [1, 64, 28, 20],
            [3, 64, 9, 31],
        ] {
            conv.prepare(shape).unwrap();
        }
        assert_eq!(conv.weights.packed_orders(), packed, "{conv:?}");
    }

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
