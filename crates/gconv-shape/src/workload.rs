//! Layer lists: the convolution layers of networks, as benchmarks, regression jobs and the
//! kernels' selection tests read them.
//!
//! One layer per line, `name,batch,in_channels,out_channels,height,width,kernel_h,kernel_w,
//! stride,padding,dilation,groups[,count]`, with symmetric zero padding and the stride and
//! dilation on both axes; `#` starts a comment line and a `name,…` header line is skipped. The
//! optional `count` says how often the layer occurs in its network (1 if absent), so that a
//! list of a whole network weighs each layer's time into the network's total. This is the
//! format of the peers script in `shared/peers` (which reads the first twelve columns), so one
//! file drives both.

use std::fmt;

use crate::{Conv2dParams, Geometry, Padding, ShapeError};

/// The grouped-convolution layers of published networks (AlexNet, ResNeXt-50, MobileNetV2,
/// ShuffleNet, DeepLab) that the repository benchmarks, as text in the layer-list format.
pub const PUBLISHED: &str = include_str!("../../../benches/layers/published.csv");

/// One convolution layer of a list (without bias: benchmarks time the convolution alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `network.layer`.
    pub name: String,
    /// The validated shapes.
    pub geometry: Geometry,
    /// How often the layer occurs in its network (the optional 13th column; 1 if absent).
    pub count: usize,
}

/// A line of a layer list that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for LayerError {}

const COLUMNS: [&str; 12] = [
    "name",
    "batch",
    "in_channels",
    "out_channels",
    "height",
    "width",
    "kernel_h",
    "kernel_w",
    "stride",
    "padding",
    "dilation",
    "groups",
];

/// Parses a whole layer list; the first bad line is the error.
pub fn parse_layers(text: &str) -> Result<Vec<Layer>, LayerError> {
    let mut layers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("name,") {
            continue;
        }
        let error = |problem: String| LayerError {
            line: line_number,
            problem,
        };
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        if fields.len() != COLUMNS.len() && fields.len() != COLUMNS.len() + 1 {
            return Err(error(format!(
                "expected {} comma-separated fields ({}), and optionally a count, found {}",
                COLUMNS.len(),
                COLUMNS.join(","),
                fields.len()
            )));
        }
        let count = match fields.get(COLUMNS.len()) {
            None => 1,
            Some(field) => match field.parse::<usize>() {
                Ok(count) if count >= 1 => count,
                _ => {
                    return Err(error(format!(
                        "count '{field}' is not a positive integer (how often the layer occurs)"
                    )));
                }
            },
        };
        let mut numbers = [0usize; 11];
        for (slot, (field, column)) in numbers
            .iter_mut()
            .zip(fields[1..COLUMNS.len()].iter().zip(&COLUMNS[1..]))
        {
            *slot = field
                .parse()
                .map_err(|_| error(format!("{column} '{field}' is not a non-negative integer")))?;
        }
        let [
            batch,
            in_channels,
            out_channels,
            height,
            width,
            kernel_h,
            kernel_w,
            stride,
            padding,
            dilation,
            groups,
        ] = numbers;
        let geometry = Conv2dParams::new(in_channels, out_channels, [kernel_h, kernel_w])
            .stride(stride)
            .padding(Padding::uniform(padding))
            .dilation(dilation)
            .groups(groups)
            .bias(false)
            .geometry([batch, in_channels, height, width])
            .map_err(|shape_error: ShapeError| {
                error(format!("layer '{}': {shape_error}", fields[0]))
            })?;
        layers.push(Layer {
            name: fields[0].to_string(),
            geometry,
            count,
        });
    }
    Ok(layers)
}

impl Layer {
    /// The network a layer belongs to: its name up to the last `.` (`resnext50` for
    /// `resnext50.layer2`, `batch8.resnext50` for `batch8.resnext50.layer2`).
    pub fn network(&self) -> &str {
        self.name
            .rsplit_once('.')
            .map_or(self.name.as_str(), |(network, _)| network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_list_parses() {
        let layers = parse_layers(PUBLISHED).unwrap();
        assert!(layers.len() >= 30);
        let conv2 = layers.iter().find(|l| l.name == "alexnet.conv2").unwrap();
        assert_eq!(conv2.geometry.weight_shape(), [256, 48, 5, 5]);
        assert_eq!(conv2.geometry.output_shape(), [1, 256, 27, 27]);
    }

    #[test]
    fn the_network_is_the_name_before_the_last_dot() {
        let layers = parse_layers(PUBLISHED).unwrap();
        let networks: Vec<&str> = layers.iter().map(Layer::network).collect();
        assert!(networks.contains(&"resnext50"));
        assert!(networks.contains(&"batch8.resnext50"));
        assert!(networks.contains(&"mobilenetv2"));
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let text = "# comment\nname,batch,in_channels,out_channels,height,width,kernel_h,kernel_w,stride,padding,dilation,groups\n\
                    ok,1,4,4,8,8,3,3,1,1,1,4\nbad,1,6,6,8,8,1,1,1,0,1,4\n";
        let error = parse_layers(text).unwrap_err();
        assert_eq!(error.line, 4);
        assert!(
            error.to_string().contains("must be divisible by groups"),
            "{error}"
        );
        let error = parse_layers("x,1,2,3\n").unwrap_err();
        assert!(
            error.to_string().starts_with("line 1: expected 12"),
            "{error}"
        );
        let error = parse_layers("x,1,4,4,8,8,3,3,one,1,1,4\n").unwrap_err();
        assert!(error.to_string().contains("stride 'one'"), "{error}");
    }

    #[test]
    fn a_thirteenth_column_counts_the_layer_and_defaults_to_one() {
        let layers =
            parse_layers("once,1,4,4,8,8,3,3,1,1,1,4\nthrice,1,4,8,8,8,1,1,1,0,1,1,3\n").unwrap();
        assert_eq!((layers[0].count, layers[1].count), (1, 3));
        assert_eq!(layers[1].geometry.weight_shape(), [8, 4, 1, 1]);
        for bad in ["0", "-2", "two"] {
            let text = format!("x,1,4,4,8,8,3,3,1,1,1,4,{bad}\n");
            let error = parse_layers(&text).unwrap_err();
            assert!(
                error.to_string().contains(&format!("count '{bad}'")),
                "{error}"
            );
        }
        let error = parse_layers("x,1,4,4,8,8,3,3,1,1,1,4,1,1\n").unwrap_err();
        assert!(error.to_string().contains("found 14"), "{error}");
    }
}
