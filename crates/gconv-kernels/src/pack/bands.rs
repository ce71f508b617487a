//! How tall the bands of output rows are that a packed layout holds: as many rows as keep
//! the group's packed input in L1, evened out so that they compute the fewest rows.

use gconv_shape::Geometry;

use super::layout::{Layout, Packing, VectorOrder};

/// What bands of output rows a layout is made of: vectors of `lanes`, bands tall enough for
/// four tiles of `widest_tile` positions, within each of `row_blocks` blocks of rows (when
/// tasks split the plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bands {
    pub lanes: usize,
    /// Output positions of the widest register tile that will read the layout.
    pub widest_tile: usize,
    pub row_blocks: usize,
}

impl Bands {
    /// The layout of `packing` for `geometry` with vectors in `order` (flat but for
    /// phase-split packing): phase-split and per kernel column in L1-sized bands, im2col and
    /// in place whole (or a block of rows).
    pub fn layout(
        &self,
        geometry: &Geometry,
        packing: Packing,
        order: VectorOrder,
    ) -> Option<Layout> {
        let rows = match packing {
            Packing::PhaseSplit | Packing::KernelColumns => band_rows(geometry, self),
            Packing::Im2col | Packing::InPlace => {
                let out_rows = geometry.output_size()[0];
                let block = out_rows / self.row_blocks;
                fewest_rows(out_rows, self.row_blocks, block, block)
            }
        };
        Layout::new(geometry, self.lanes, packing, rows, order)
    }
}

/// Bytes of L1 a band of packed input may fill: 24 KiB of the 32 KiB (AMD Zen) or 48 KiB
/// (Intel) of an x86-64 core, leaving room for weights and output.
const BAND_BUDGET: usize = 24 * 1024;

/// Output rows per band of the phase-split and per-kernel-column packings: about as many as
/// keep the group's packed band within [`BAND_BUDGET`], but at least enough for four of the
/// widest tiles, so that a band that cannot fit (many channels per group) is still worth its
/// packing; near that, the height that computes the fewest rows ([`fewest_rows`]).
fn band_rows(geometry: &Geometry, bands: &Bands) -> usize {
    let padding = geometry.padding();
    let [_, width] = geometry.input_size();
    let [stride_h, _] = geometry.stride();
    let padded_w = width + padding.left + padding.right;
    let reach = (geometry.kernel_size()[0] - 1) * geometry.dilation()[0] + 1;
    // Bytes per padded input row of the whole group (all column phases together).
    let row_bytes = padded_w
        .div_ceil(geometry.stride()[1])
        .saturating_mul(geometry.stride()[1])
        .saturating_mul(geometry.in_channels_per_group())
        .saturating_mul(4);
    let budget_rows = (BAND_BUDGET / row_bytes.max(1)).saturating_sub(reach) / stride_h + 1;
    let widest_tile = bands.widest_tile;
    let row_stride = padded_w.div_ceil(geometry.stride()[1]);
    let minimum_rows = (4 * widest_tile).div_ceil(row_stride).max(1);
    // Within the L1 budget: not above it. Past it anyway: up to twice the minimum.
    let (aim, most) = if budget_rows >= minimum_rows {
        (budget_rows, budget_rows)
    } else {
        (minimum_rows, 2 * minimum_rows - 1)
    };
    fewest_rows(geometry.output_size()[0], bands.row_blocks, aim, most)
}

/// Rows per band, from half of `aim` (or of a block) to `most`, that compute the fewest rows over `out_rows`
/// split into `row_blocks` blocks (each band within a block, the last of a block overlapping
/// the one before); of equals, the nearest to `aim` evened out over a block. (Bands evened
/// out alone computed 35 rows for 31 with bands of at most 7, where bands of 8 compute 32;
/// blocks of 15 and 16 rows in bands of 15 computed 45.)
fn fewest_rows(out_rows: usize, row_blocks: usize, aim: usize, most: usize) -> usize {
    let short = out_rows / row_blocks;
    let tall_blocks = out_rows % row_blocks;
    let computed = |band: usize| {
        let rows = |block: usize| block.div_ceil(band) * band;
        (row_blocks - tall_blocks) * rows(short) + tall_blocks * rows(short + 1)
    };
    let tallest = most.min(short).max(1);
    let evened = short.div_ceil(short.div_ceil(aim.max(1)).max(1));
    (aim.min(short).div_ceil(2).clamp(1, tallest)..=tallest)
        .min_by_key(|&band| (computed(band), band.abs_diff(evened)))
        .unwrap_or(tallest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-counted: the band height that computes the fewest rows, of equals the one
    /// nearest the evened-out aim.
    #[test]
    fn bands_compute_the_fewest_rows() {
        assert_eq!(
            fewest_rows(31, 1, 7, 13),
            8,
            "4 bands: 32 rows, not 5 of 7: 35"
        );
        assert_eq!(fewest_rows(28, 1, 7, 13), 7, "evened already (4 of 7 = 28)");
        assert_eq!(
            fewest_rows(31, 2, 15, 15),
            8,
            "blocks of 15 and 16: 32, not 45"
        );
        assert_eq!(
            fewest_rows(15, 2, 12, 23),
            4,
            "blocks of 7 and 8: 16, not 21 in 7s"
        );
        assert_eq!(fewest_rows(1, 1, 9, 17), 1);
    }
}
