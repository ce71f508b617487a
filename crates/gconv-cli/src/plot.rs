//! The bar chart of `gconv bench --plot`: GFLOP/s per layer, one bar per implementation.
//!
//! Bars run horizontally, one band per layer, so that long layer names stay readable however
//! many layers there are; within a band, gconv comes first and the peers follow in a fixed
//! order with fixed colours, so that charts of different runs compare at a glance.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One implementation's GFLOP/s for each layer of the chart (`None`: not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry: `gconv`, `ort`, `torch_cl`, …
    pub name: String,
    /// One value per layer, in the chart's layer order.
    pub gflops: Vec<Option<f64>>,
}

/// Pixels of one bar, of the gap between layer bands, and of the margin for layer names.
const BAR: u32 = 9;
const BAND_GAP: u32 = 10;
const NAME_MARGIN: u32 = 230;
const WIDTH: u32 = 1000;

/// Colours by position: gconv's first, strong; the peers' in muted tones.
const COLOURS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// Draws `series` over `layers` as an SVG file at `path`, written whole or not at all.
pub fn bar_chart(path: &Path, title: &str, layers: &[String], series: &[Series]) -> Result<()> {
    let svg = render(title, layers, series)?;
    gconv_cli::files::write_atomically(path, |out| out.write_all(svg.as_bytes()))
}

/// The chart as SVG text.
pub fn render(title: &str, layers: &[String], series: &[Series]) -> Result<String> {
    let bars = series.len().max(1) as u32;
    let band = bars * BAR + BAND_GAP;
    let height = 90 + band * layers.len() as u32 + 20 * bars;
    let largest = series
        .iter()
        .flat_map(|series| series.gflops.iter().flatten())
        .copied()
        .filter(|value| value.is_finite())
        .fold(0.0f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(NAME_MARGIN)
            .build_cartesian_2d(0.0..(largest * 1.25).max(1.0), 0.0..layers.len() as f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_max_light_lines(1)
            .x_desc("GFLOP/s (median)")
            .draw()
            .map_err(draw_error)?;
        // The x range leaves a quarter of the width free on the right for the legend.
        // Layer `i` occupies y in [n - i - 1, n - i): the first layer at the top.
        let top = |layer: usize| (layers.len() - layer) as f64;
        let gap = f64::from(BAND_GAP) / f64::from(band);
        let bar = (1.0 - gap) / f64::from(bars);
        for (index, series) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let rectangles = series
                .gflops
                .iter()
                .enumerate()
                .filter_map(|(layer, value)| Some((layer, (*value)?)))
                .map(|(layer, value)| {
                    let upper = top(layer) - gap / 2.0 - bar * index as f64;
                    Rectangle::new([(0.0, upper), (value, upper - bar)], colour.filled())
                });
            chart
                .draw_series(rectangles)
                .map_err(draw_error)?
                .label(series.name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        for (layer, name) in layers.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, top(layer) - 0.5));
            root.draw(&Text::new(
                name.clone(),
                (x - NAME_MARGIN as i32 + 8, y - 6),
                ("sans-serif", 12),
            ))
            .map_err(draw_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_and_implementation_is_in_the_chart() {
        let layers = vec![
            "alexnet.conv2".to_string(),
            "mobilenetv2.dw32_112".to_string(),
        ];
        let series = [
            Series {
                name: "gconv".to_string(),
                gflops: vec![Some(140.0), Some(28.0)],
            },
            Series {
                name: "ort".to_string(),
                gflops: vec![Some(156.5), None],
            },
        ];
        let svg = render("published, 1 thread", &layers, &series).unwrap();
        for text in [
            "alexnet.conv2",
            "mobilenetv2.dw32_112",
            "gconv",
            "ort",
            "1 thread",
        ] {
            assert!(svg.contains(text), "{text} is not in the chart");
        }
        // One bar per measured value, plus the two legend swatches.
        let gconv_red = svg.matches("fill=\"#D62728\"").count();
        let ort_blue = svg.matches("fill=\"#1F77B4\"").count();
        assert_eq!((gconv_red, ort_blue), (2 + 1, 1 + 1), "{svg}");
    }

    #[test]
    fn writing_into_a_missing_directory_fails_and_leaves_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing/chart.svg");
        assert!(bar_chart(&path, "t", &[], &[]).is_err());
        assert!(!path.exists());
    }
}
