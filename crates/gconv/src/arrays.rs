//! Running a [`Conv2d`] on [`ndarray`] arrays (the `ndarray` feature).
//!
//! The kernels read and write NCHW in standard (C-contiguous) order. An input or residual
//! array in that order is read where it lies; any other layout (a transposed view, a slice
//! with steps, negative strides) is copied once into standard order first. An output view in
//! standard order is written in place; any other is computed into a new buffer and then
//! assigned, element by element. Shapes are checked before anything is copied or written,
//! and an error leaves the output array as it was.

use ndarray::{Array4, ArrayView4, ArrayViewMut4};

use crate::{Conv2d, Error, ShapeError};

impl Conv2d {
    /// Convolves the NCHW array `input` (any batch size, height and width the parameters
    /// accept; any strides) into `output`, which must have the output's shape
    /// (`prepare(input.dim()).output_shape()`).
    ///
    /// ```
    /// use gconv::{Conv2d, Conv2dParams, Options, Padding};
    /// use ndarray::{Array4, s};
    ///
    /// let params = Conv2dParams::new(4, 4, 3).groups(4).padding(Padding::uniform(1));
    /// let conv = Conv2d::new(params, [1, 4, 6, 6], &[1.0; 4 * 9], None, Options::default())?;
    ///
    /// // Every other column of a wider image: a strided view, copied once.
    /// let image = Array4::<f32>::ones((1, 4, 6, 12));
    /// let input = image.slice(s![.., .., .., ..;2]);
    /// let mut output = Array4::<f32>::zeros((1, 4, 6, 6));
    /// conv.run_array(input, output.view_mut())?;
    /// assert_eq!(output[[0, 2, 3, 3]], 9.0);
    /// assert_eq!(output[[0, 2, 0, 0]], 4.0);
    ///
    /// // An output of the wrong shape is an error naming both shapes.
    /// let mut wrong = Array4::<f32>::zeros((1, 4, 5, 6));
    /// let error = conv.run_array(input, wrong.view_mut()).unwrap_err();
    /// assert!(error.to_string().contains("[1, 4, 6, 6]"), "{error}");
    /// # Ok::<(), gconv::Error>(())
    /// ```
    pub fn run_array(
        &self,
        input: ArrayView4<f32>,
        output: ArrayViewMut4<f32>,
    ) -> Result<(), Error> {
        self.run_arrays(input, None, output)
    }

    /// [`Conv2d::run_array`] for a convolution made with [`crate::Options::residual`]: adds
    /// `residual` (the output's shape, any strides) after the bias, before the activation
    /// (see [`Conv2d::run_with_residual`]).
    pub fn run_array_with_residual(
        &self,
        input: ArrayView4<f32>,
        residual: ArrayView4<f32>,
        output: ArrayViewMut4<f32>,
    ) -> Result<(), Error> {
        self.run_arrays(input, Some(residual), output)
    }

    /// Convolves the NCHW array `input` (any strides) into a new array of the output's shape.
    ///
    /// ```
    /// use gconv::{Conv2d, Conv2dParams, Options};
    /// use ndarray::Array4;
    ///
    /// let conv = Conv2d::new(Conv2dParams::new(6, 4, 1).groups(2), [2, 6, 3, 3],
    ///                        &[0.5; 4 * 3], None, Options::default())?;
    /// let output = conv.forward_array(Array4::<f32>::ones((2, 6, 3, 3)).view())?;
    /// assert_eq!(output.dim(), (2, 4, 3, 3));
    /// assert_eq!(output[[1, 3, 2, 2]], 1.5); // three input channels per group, 0.5 each
    /// # Ok::<(), gconv::Error>(())
    /// ```
    pub fn forward_array(&self, input: ArrayView4<f32>) -> Result<Array4<f32>, Error> {
        self.forward_arrays(input, None)
    }

    /// [`Conv2d::forward_array`] with a residual of the output's shape (see
    /// [`Conv2d::run_array_with_residual`]).
    pub fn forward_array_with_residual(
        &self,
        input: ArrayView4<f32>,
        residual: ArrayView4<f32>,
    ) -> Result<Array4<f32>, Error> {
        self.forward_arrays(input, Some(residual))
    }

    fn run_arrays(
        &self,
        input: ArrayView4<f32>,
        residual: Option<ArrayView4<f32>>,
        mut output: ArrayViewMut4<f32>,
    ) -> Result<(), Error> {
        let input_shape = shape_of(input.shape());
        let output_shape = self.prepare(input_shape)?.output_shape();
        check_shape("output", output_shape, output.shape())?;
        if let Some(residual) = &residual {
            check_shape("residual", output_shape, residual.shape())?;
        }
        if let Some(target) = output.as_slice_mut() {
            return self.run_on_slices(input_shape, input, residual, target);
        }
        let computed = self.forward_arrays(input, residual)?;
        output.assign(&computed);
        Ok(())
    }

    fn forward_arrays(
        &self,
        input: ArrayView4<f32>,
        residual: Option<ArrayView4<f32>>,
    ) -> Result<Array4<f32>, Error> {
        let input_shape = shape_of(input.shape());
        let output_shape = self.prepare(input_shape)?.output_shape();
        if let Some(residual) = &residual {
            check_shape("residual", output_shape, residual.shape())?;
        }
        let input = input.as_standard_layout();
        let values = match residual {
            None => self.forward_shaped(input_shape, standard(&input))?,
            Some(residual) => {
                let residual = residual.as_standard_layout();
                self.with_plan(input_shape, |plan| {
                    super::conv2d::forward_on(plan, standard(&input), Some(standard(&residual)))
                })?
            }
        };
        Ok(Array4::from_shape_vec(dim(output_shape), values)
            .expect("a plan's output holds the product of its output shape"))
    }

    fn run_on_slices(
        &self,
        input_shape: [usize; 4],
        input: ArrayView4<f32>,
        residual: Option<ArrayView4<f32>>,
        output: &mut [f32],
    ) -> Result<(), Error> {
        let input = input.as_standard_layout();
        match residual {
            None => self.run_shaped(input_shape, standard(&input), output),
            Some(residual) => {
                let residual = residual.as_standard_layout();
                self.run_shaped_with_residual(
                    input_shape,
                    standard(&input),
                    standard(&residual),
                    output,
                )
            }
        }
    }
}

/// The elements of an array in standard order, which `as_standard_layout` guarantees.
fn standard<'a>(array: &'a ndarray::CowArray<'_, f32, ndarray::Ix4>) -> &'a [f32] {
    array
        .as_slice()
        .expect("as_standard_layout gives a standard-order array")
}

fn shape_of(shape: &[usize]) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

fn dim(shape: [usize; 4]) -> (usize, usize, usize, usize) {
    (shape[0], shape[1], shape[2], shape[3])
}

fn check_shape(what: &'static str, expected: [usize; 4], actual: &[usize]) -> Result<(), Error> {
    if actual == expected {
        return Ok(());
    }
    Err(ShapeError::ArrayShape {
        what,
        expected: expected.to_vec(),
        actual: actual.to_vec(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Conv2dParams, Options, Padding};
    use ndarray::{Array, Axis, s};

    /// A ResNeXt-like grouped layer with a bias, on one thread, and a deterministic input.
    fn layer(options: Options) -> (Conv2d, Array4<f32>) {
        let params = Conv2dParams::new(8, 6, 3)
            .groups(2)
            .stride(2)
            .padding(Padding::uniform(1));
        let weight: Vec<f32> = (0..6 * 4 * 9)
            .map(|i| ((i % 7) as f32 - 3.0) / 4.0)
            .collect();
        let bias = [0.5, -1.0, 0.25, 2.0, -0.75, 1.0];
        let conv = Conv2d::new(params, [2, 8, 7, 9], &weight, Some(&bias), options).unwrap();
        let input = Array::from_shape_fn((2, 8, 7, 9), |(n, c, h, w)| {
            ((n * 31 + c * 7 + h * 3 + w) % 11) as f32 - 5.0
        });
        (conv, input)
    }

    fn flat(conv: &Conv2d, input: &Array4<f32>) -> Vec<f32> {
        let shape = shape_of(input.shape());
        conv.forward_shaped(shape, input.as_slice().unwrap())
            .unwrap()
    }

    #[test]
    fn standard_arrays_give_the_slice_api_s_bits() {
        let (conv, input) = layer(Options::default().threads(1));
        let expected = flat(&conv, &input);
        let forwarded = conv.forward_array(input.view()).unwrap();
        assert_eq!(forwarded.as_slice().unwrap(), expected.as_slice());
        let mut output = Array4::from_elem(forwarded.dim(), f32::NAN);
        conv.run_array(input.view(), output.view_mut()).unwrap();
        assert_eq!(output, forwarded);
    }

    /// A channels-last array viewed as NCHW, a stepped slice and a reversed axis are copied
    /// into standard order; each gives the bits of the same values in a standard array.
    #[test]
    fn any_input_strides_give_the_standard_array_s_bits() {
        let (conv, input) = layer(Options::default().threads(2));
        let expected = conv.forward_array(input.view()).unwrap();

        let channels_last = input.view().permuted_axes([0, 2, 3, 1]);
        let channels_last = channels_last.as_standard_layout();
        let nchw_view = channels_last.view().permuted_axes([0, 3, 1, 2]);
        assert!(!nchw_view.is_standard_layout());
        assert_eq!(conv.forward_array(nchw_view).unwrap(), expected);

        let wide = Array::from_shape_fn((2, 8, 7, 18), |(n, c, h, w)| {
            if w % 2 == 0 {
                input[[n, c, h, w / 2]]
            } else {
                f32::NAN
            }
        });
        assert_eq!(
            conv.forward_array(wide.slice(s![.., .., .., ..;2]))
                .unwrap(),
            expected
        );

        let mut reversed = input.clone();
        reversed.invert_axis(Axis(2));
        let mut back = reversed.view();
        back.invert_axis(Axis(2));
        assert_eq!(conv.forward_array(back).unwrap(), expected);
    }

    /// An output view that is not in standard order (a slice of a larger array) is written
    /// exactly where it lies, nothing around it.
    #[test]
    fn a_strided_output_view_is_written_in_place_and_nowhere_else() {
        let (conv, input) = layer(Options::default());
        let expected = conv.forward_array(input.view()).unwrap();
        let (n, c, h, w) = expected.dim();
        let mut larger = Array4::from_elem((n, c, h, 2 * w + 1), -7.0f32);
        conv.run_array(input.view(), larger.slice_mut(s![.., .., .., 1..;2]))
            .unwrap();
        assert_eq!(larger.slice(s![.., .., .., 1..;2]), expected);
        assert!(
            larger
                .slice(s![.., .., .., 0..;2])
                .iter()
                .all(|&v| v == -7.0)
        );
    }

    #[test]
    fn residual_arrays_of_any_strides_match_the_slice_api() {
        let options = Options::default()
            .residual(true)
            .activation(Activation::Relu6);
        let (conv, input) = layer(options);
        let output_shape = conv
            .prepare(shape_of(input.shape()))
            .unwrap()
            .output_shape();
        let residual = Array::from_shape_fn(dim(output_shape), |(n, c, h, w)| {
            (n + c + h * w) as f32 / 8.0 - 1.0
        });
        let expected = conv.forward_shaped_with_residual_for_test(&input, &residual);
        let transposed = residual.view().reversed_axes();
        let transposed = transposed.as_standard_layout();
        let residual_view = transposed.view().reversed_axes();
        assert!(!residual_view.is_standard_layout());
        let forwarded = conv
            .forward_array_with_residual(input.view(), residual_view)
            .unwrap();
        assert_eq!(forwarded.as_slice().unwrap(), expected.as_slice());
        let mut output = Array4::zeros(forwarded.dim());
        conv.run_array_with_residual(input.view(), residual_view, output.view_mut())
            .unwrap();
        assert_eq!(output, forwarded);
    }

    #[test]
    fn wrong_shapes_are_errors_that_leave_the_output_untouched() {
        let options = Options::default().residual(true);
        let (conv, input) = layer(options);
        let output_shape = conv
            .prepare(shape_of(input.shape()))
            .unwrap()
            .output_shape();
        let residual = Array4::<f32>::zeros(dim(output_shape));

        let mut short = Array4::from_elem((2, 6, 4, 4), 3.0f32);
        let error = conv
            .run_array_with_residual(input.view(), residual.view(), short.view_mut())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "output array must have shape [2, 6, 4, 5] (NCHW), got [2, 6, 4, 4]"
        );
        assert!(short.iter().all(|&v| v == 3.0));

        let mut output = Array4::from_elem(dim(output_shape), 3.0f32);
        let wrong_residual = Array4::<f32>::zeros((2, 6, 5, 4));
        let error = conv
            .run_array_with_residual(input.view(), wrong_residual.view(), output.view_mut())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "residual array must have shape [2, 6, 4, 5] (NCHW), got [2, 6, 5, 4]"
        );
        assert!(output.iter().all(|&v| v == 3.0));

        let three_channels = Array4::<f32>::zeros((2, 3, 7, 9));
        let error = conv.forward_array_with_residual(three_channels.view(), residual.view());
        assert!(
            error.unwrap_err().to_string().contains("in_channels (8)"),
            "the input's channel count is checked by the shape rules"
        );

        let error = conv.run_array(input.view(), output.view_mut()).unwrap_err();
        assert_eq!(error, Error::Residual { plan_adds: true });
        assert!(output.iter().all(|&v| v == 3.0));
    }

    impl Conv2d {
        fn forward_shaped_with_residual_for_test(
            &self,
            input: &Array4<f32>,
            residual: &Array4<f32>,
        ) -> Vec<f32> {
            let shape = shape_of(input.shape());
            let output_len = self.prepare(shape).unwrap().output_len();
            let mut output = vec![0.0; output_len];
            self.run_shaped_with_residual(
                shape,
                input.as_slice().unwrap(),
                residual.as_slice().unwrap(),
                &mut output,
            )
            .unwrap();
            output
        }
    }
}
