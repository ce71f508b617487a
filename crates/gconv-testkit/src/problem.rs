use gconv_shape::Geometry;

/// A convolution and its data: NCHW `input`, `weight` `[C_out, C_in/g, kH, kW]`, and a bias
/// exactly when the geometry has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The validated shapes.
    pub geometry: Geometry,
    /// `geometry.input_len()` values.
    pub input: Vec<f32>,
    /// `geometry.weight_count()` values.
    pub weight: Vec<f32>,
    /// `C_out` values when `geometry.has_bias()`.
    pub bias: Option<Vec<f32>>,
}
