use std::fmt;
use std::ops::Range;

use gconv_shape::{GroupRun, GroupSizes, UnevenGeometry};

use crate::{Conv2d, Conv2dParams, Error, Geometry, Isa, Options, PostOps};

/// A convolution whose groups have unequal channel counts ([`GroupSizes`]), with its
/// weights, ready to run on the input shape it was made for and on any other its parameters
/// accept ([`UnevenConv2d::run_shaped`]).
///
/// Consecutive groups of equal sizes form a run ([`GroupSizes::runs`]), which is an ordinary
/// grouped convolution: each run is a [`Conv2d`] of its own, on the kernel and tier its shape
/// gets, so every group runs as fast as a grouped layer of its shape would. Equal lists are one
/// run, the ordinary grouped convolution, bit for bit. With several runs, the runs are
/// convolved one sample at a time (a run's channels of a sample are contiguous; across
/// samples they are not), each on the plan's threads.
///
/// The weight is flat: the concatenation, in group order, of each group's
/// `[out_k, in_k, kH, kW]` block (see [`gconv_shape::GroupSizes`]).
///
/// ```
/// use gconv::{Conv2dParams, GroupSizes, Options, Padding, UnevenConv2d};
///
/// // Three input channels to four outputs, and two to four, 3x3.
/// let params = Conv2dParams::new(5, 8, 3).padding(Padding::uniform(1)).bias(false);
/// let sizes = GroupSizes::new([3, 2], [4, 4]);
/// let weight = vec![1.0f32; 4 * 3 * 9 + 4 * 2 * 9];
/// let conv = UnevenConv2d::new(params, sizes, [1, 5, 6, 6], &weight, None, Options::default())?;
/// let output = conv.forward(&vec![1.0f32; 5 * 6 * 6])?;
/// assert_eq!(output[6 + 1], 27.0); // group 0, an interior pixel: 3 channels x 3x3
/// assert_eq!(output[4 * 36 + 6 + 1], 18.0); // group 1: 2 channels x 3x3
/// # Ok::<(), gconv::Error>(())
/// ```
#[derive(Debug)]
pub struct UnevenConv2d {
    geometry: UnevenGeometry,
    /// Each run of equal groups and its convolution: of the whole batch when there is one
    /// run, of one sample otherwise.
    runs: Vec<(GroupRun, Conv2d)>,
    post_ops: PostOps,
}

impl UnevenConv2d {
    /// Validates `params` with `sizes` in place of `params.groups` (which must be 1 or the
    /// number of groups) against `input_shape`, the flat `weight` and the `bias` (`[C_out]`,
    /// present exactly when `params.bias`), and sets up each run of equal groups.
    pub fn new(
        params: Conv2dParams,
        sizes: GroupSizes,
        input_shape: [usize; 4],
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<UnevenConv2d, Error> {
        let geometry = UnevenGeometry::new(params, sizes, input_shape)?;
        Self::from_geometry(&geometry, weight, bias, options)
    }

    /// [`UnevenConv2d::new`] for shapes already validated: checks the flat `weight` and the
    /// `bias` against `geometry` and sets up each run of equal groups.
    pub fn from_geometry(
        geometry: &UnevenGeometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        options: Options,
    ) -> Result<UnevenConv2d, Error> {
        geometry.check_buffer_lengths(
            geometry.input_len(),
            weight.len(),
            bias.map(<[f32]>::len),
            geometry.output_len(),
        )?;
        let runs = geometry.sizes().runs();
        let batch = match runs.len() {
            1 => geometry.input_shape()[0],
            _ => 1,
        };
        let runs = runs
            .into_iter()
            .map(|run| {
                let run_geometry = geometry.run_geometry(&run, batch)?;
                let conv = Conv2d::from_geometry(
                    &run_geometry,
                    &weight[geometry.run_weight_range(&run)],
                    bias.map(|bias| &bias[run.output_channels()]),
                    options,
                )?;
                Ok((run, conv))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(UnevenConv2d {
            geometry: geometry.clone(),
            runs,
            post_ops: PostOps::of(&options),
        })
    }

    /// Convolves NCHW `input` of the shape given to [`UnevenConv2d::new`] into the NCHW
    /// `output` buffer, of `geometry().output_len()` elements. Allocates nothing.
    pub fn run(&self, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
        self.run_parts(self.geometry.spatial(), input, None, output)
    }

    /// Convolves NCHW `input` of `input_shape` (any batch size, height and width the
    /// parameters accept) into `output` of the matching output shape ([`UnevenConv2d::prepare`]).
    /// Each run's [`Conv2d`] sets the shape up on its first use and keeps it, as
    /// [`Conv2d::run_shaped`] does; a shape already set up allocates nothing.
    pub fn run_shaped(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        let spatial = self.shaped(input_shape)?;
        self.run_parts(&spatial, input, None, output)
    }

    /// [`UnevenConv2d::run_shaped`] with a residual (see [`UnevenConv2d::run_with_residual`]).
    pub fn run_shaped_with_residual(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
        residual: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        let spatial = self.shaped(input_shape)?;
        self.run_parts(&spatial, input, Some(residual), output)
    }

    /// [`UnevenConv2d::forward`] for an input of `input_shape`.
    pub fn forward_shaped(
        &self,
        input_shape: [usize; 4],
        input: &[f32],
    ) -> Result<Vec<f32>, Error> {
        let spatial = self.shaped(input_shape)?;
        self.forward_parts(&spatial, input, None)
    }

    /// Sets `input_shape` up in every run ahead of its first use, and returns its shapes (with
    /// one group: the output shape is `output_shape()`).
    pub fn prepare(&self, input_shape: [usize; 4]) -> Result<Geometry, Error> {
        let spatial = self.shaped(input_shape)?;
        for (run, conv) in &self.runs {
            conv.prepare(self.run_shape(run, &spatial))?;
        }
        Ok(spatial)
    }

    /// [`UnevenConv2d::run`] for a convolution made with [`Options::residual`]: adds
    /// `residual` (the output's shape) after the bias, before the activation.
    pub fn run_with_residual(
        &self,
        input: &[f32],
        residual: &[f32],
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.run_parts(self.geometry.spatial(), input, Some(residual), output)
    }

    /// Convolves NCHW `input` into a new output; an output the machine cannot hold is an
    /// error, not an abort.
    pub fn forward(&self, input: &[f32]) -> Result<Vec<f32>, Error> {
        self.forward_parts(self.geometry.spatial(), input, None)
    }

    /// [`UnevenConv2d::forward`] with a residual (see [`UnevenConv2d::run_with_residual`]).
    pub fn forward_with_residual(
        &self,
        input: &[f32],
        residual: &[f32],
    ) -> Result<Vec<f32>, Error> {
        self.forward_parts(self.geometry.spatial(), input, Some(residual))
    }

    /// The validated shapes and group sizes.
    pub fn geometry(&self) -> &UnevenGeometry {
        &self.geometry
    }

    /// Each run of consecutive equal groups and the convolution that computes it (its
    /// kernel, tier and the rule that chose it): the whole batch when there is one run, one
    /// sample at a time otherwise.
    pub fn runs(&self) -> impl Iterator<Item = (&GroupRun, &Conv2d)> {
        self.runs.iter().map(|(run, conv)| (run, conv))
    }

    /// The tier every run runs on.
    pub fn isa(&self) -> Isa {
        self.runs[0].1.isa()
    }

    /// What follows the convolution (see [`Options::residual`], [`Options::activation`]).
    pub fn post_ops(&self) -> PostOps {
        self.post_ops
    }

    /// The shapes of `input_shape` with one group (the group sizes were checked against the
    /// channel counts when the convolution was made, and the input's channels are checked
    /// here); allocates nothing.
    fn shaped(&self, input_shape: [usize; 4]) -> Result<Geometry, Error> {
        Ok(self.geometry.spatial().params().geometry(input_shape)?)
    }

    /// The input shape of `run`'s convolution for an input of `spatial`'s shape: the whole
    /// batch when there is one run, one sample otherwise.
    fn run_shape(&self, run: &GroupRun, spatial: &Geometry) -> [usize; 4] {
        let [batch, _, height, width] = spatial.input_shape();
        let batch = if self.runs.len() == 1 { batch } else { 1 };
        [batch, run.groups * run.in_per_group, height, width]
    }

    /// Every check a run makes, made before anything is written, so that an error leaves
    /// `output` as it was.
    fn check(
        &self,
        spatial: &Geometry,
        input: usize,
        residual: Option<usize>,
        output: usize,
    ) -> Result<(), Error> {
        let bias = spatial.has_bias().then(|| spatial.out_channels());
        spatial.check_buffer_lengths(input, spatial.weight_count(), bias, output)?;
        self.post_ops.check_residual(spatial, residual)
    }

    fn run_parts(
        &self,
        spatial: &Geometry,
        input: &[f32],
        residual: Option<&[f32]>,
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.check(
            spatial,
            input.len(),
            residual.map(<[f32]>::len),
            output.len(),
        )?;
        if let [(run, conv)] = self.runs.as_slice() {
            let shape = self.run_shape(run, spatial);
            return match residual {
                Some(residual) => conv.run_shaped_with_residual(shape, input, residual, output),
                None => conv.run_shaped(shape, input, output),
            };
        }
        let [batch, in_channels, height, width] = spatial.input_shape();
        let [_, out_channels, out_height, out_width] = spatial.output_shape();
        let (plane, out_plane) = (height * width, out_height * out_width);
        let channels = |range: Range<usize>, plane: usize| range.start * plane..range.end * plane;
        for sample in 0..batch {
            let sample_input = &input[sample * in_channels * plane..][..in_channels * plane];
            let outputs =
                sample * out_channels * out_plane..(sample + 1) * out_channels * out_plane;
            let sample_output = &mut output[outputs.clone()];
            let sample_residual = residual.map(|residual| &residual[outputs]);
            for (run, conv) in &self.runs {
                let shape = self.run_shape(run, spatial);
                let run_input = &sample_input[channels(run.input_channels(), plane)];
                let run_outputs = channels(run.output_channels(), out_plane);
                let run_output = &mut sample_output[run_outputs.clone()];
                match sample_residual {
                    Some(residual) => conv.run_shaped_with_residual(
                        shape,
                        run_input,
                        &residual[run_outputs],
                        run_output,
                    )?,
                    None => conv.run_shaped(shape, run_input, run_output)?,
                }
            }
        }
        Ok(())
    }

    fn forward_parts(
        &self,
        spatial: &Geometry,
        input: &[f32],
        residual: Option<&[f32]>,
    ) -> Result<Vec<f32>, Error> {
        let len = spatial.output_len();
        // The inputs first: a wrong one must not cost an allocation of the output.
        self.check(spatial, input.len(), residual.map(<[f32]>::len), len)?;
        let mut output = crate::conv2d::zeroed_output(len)?;
        self.run_parts(spatial, input, residual, &mut output)?;
        Ok(output)
    }
}
impl fmt::Display for UnevenConv2d {
    /// `groups 0..2 (3→4 each): <kernel>; group 2 (2→4): <kernel>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (run, conv)) in self.runs.iter().enumerate() {
            if index > 0 {
                write!(f, "; ")?;
            }
            let arrow = format!("{}→{}", run.in_per_group, run.out_per_group);
            match run.groups {
                1 => write!(f, "group {} ({arrow})", run.first_group)?,
                _ => write!(f, "groups {:?} ({arrow} each)", run.group_range())?,
            }
            write!(f, ": {conv}")?;
        }
        Ok(())
    }
}
