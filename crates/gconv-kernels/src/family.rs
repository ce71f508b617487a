//! Kernel families: which shapes of grouped convolution a plan treats alike, and the printable
//! kernel id that says what ran and how it was tiled.

use std::fmt;

use gconv_shape::Geometry;

/// The family of a grouped convolution, by its channels per group and kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// One input channel per group (`g = C_in`), any channel multiplier: MobileNet, ConvNeXt.
    Depthwise,
    /// A 1×1 kernel, stride 1, no padding: a per-group matrix product (ShuffleNet).
    Pointwise,
    /// 2 to 16 input channels per group: ResNeXt, RegNet.
    SmallGroups,
    /// More than 16 input channels per group, including ordinary convolution: AlexNet.
    WideGroups,
}

impl Family {
    /// The family of `geometry`.
    pub fn of(geometry: &Geometry) -> Family {
        let unit_window = geometry.kernel_size() == [1, 1]
            && geometry.stride() == [1, 1]
            && geometry.padding() == Default::default();
        if geometry.in_channels_per_group() == 1 {
            Family::Depthwise
        } else if unit_window {
            Family::Pointwise
        } else if geometry.in_channels_per_group() <= 16 {
            Family::SmallGroups
        } else {
            Family::WideGroups
        }
    }

    /// Short name used in kernel ids.
    pub fn name(self) -> &'static str {
        match self {
            Family::Depthwise => "dwconv",
            Family::Pointwise => "pwconv",
            Family::SmallGroups => "gconv-small",
            Family::WideGroups => "gconv-wide",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
