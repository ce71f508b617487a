//! The register tiles of the grouped bodies, per tier: one table that both describes them
//! (for the selection and the kernel ids) and instantiates them (the dispatch from a block's
//! channel count to its tile), so that the two cannot drift apart.
//!
//! Flat body (`positions`): `M` output channels × `V` vectors of positions, sized so that the
//! `M·V` accumulators, `V` input vectors and a broadcast weight fit the register file (16
//! registers on AVX2 and the portable tier, 32 on AVX-512). Channel-vector body (`channels`):
//! `2·LANES` channels (two vectors) × `P` positions. Each tier's code holds only its own
//! tiles: the tier conditions are `const`, settled when the tier is compiled.

use super::BandBlock;
use super::channels::{self, ChannelBlock};
use super::positions;
use crate::Isa;
use crate::epilogue::Epilogue;
use crate::simd::Simd;

/// A tier's register tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tiles {
    /// The flat body's tiles, `(M, V)`, the largest block first: every block size a chunk is
    /// split into has its tile here.
    pub positions: &'static [(usize, usize)],
    /// Positions per tile of the channel-vector body.
    pub channel_positions: usize,
}

impl Tiles {
    /// Vectors per tile for a flat block of `channels`, which must be one of the table's.
    pub fn vectors_for(&self, channels: usize) -> usize {
        self.positions
            .iter()
            .find(|&&(m, _)| m == channels)
            .map(|&(_, v)| v)
            .unwrap_or_else(|| panic!("no tile for blocks of {channels} channels"))
    }

    /// The flat body's block sizes, largest first.
    pub fn block_sizes(&self) -> impl Iterator<Item = usize> {
        self.positions.iter().map(|&(m, _)| m)
    }
}

/// The tile table: per tier, the flat body's `(M, V)` tiles (largest block first) and the
/// channel-vector body's positions per tile. Emits [`tiles_of`] and the dispatch functions
/// [`convolve_positions`] and [`convolve_channels`] from the same list.
macro_rules! tile_table {
    ($($isa:ident: positions [$(($m:literal, $v:literal)),+], channels $p:literal;)+) => {
        /// The register tiles of tier `isa`.
        pub(crate) const fn tiles_of(isa: Isa) -> Tiles {
            match isa {
                $(Isa::$isa => Tiles {
                    positions: &[$(($m, $v)),+],
                    channel_positions: $p,
                },)+
            }
        }

        /// Convolves `block` with the flat tile of its channel count on `S`'s tier.
        #[inline(always)]
        pub(super) fn convolve_positions<S: Simd, E: Epilogue<S::Elem>>(
            simd: S,
            block: BandBlock<'_, '_, S::Elem, E>,
        ) {
            $(
                if const { matches!(S::ISA, Isa::$isa) } {
                    match block.channels() {
                        $($m => return positions::convolve_block::<S, E, $m, $v>(simd, block),)+
                        channels => unreachable!("no tile for blocks of {channels} channels"),
                    }
                }
            )+
            unreachable!("no tiles for this tier");
        }

        /// Convolves `block` (`vectors` vectors of channels, 1 or 2) with the channel-vector
        /// tile of `S`'s tier.
        #[inline(always)]
        pub(super) fn convolve_channels<S: Simd, E: Epilogue<S::Elem>>(
            simd: S,
            vectors: usize,
            block: ChannelBlock<'_, '_, S::Elem, E>,
        ) {
            $(
                if const { matches!(S::ISA, Isa::$isa) } {
                    return match vectors {
                        1 => channels::convolve_channel_block::<S, E, 1, $p>(simd, block),
                        _ => channels::convolve_channel_block::<S, E, 2, $p>(simd, block),
                    };
                }
            )+
            unreachable!("no tiles for this tier");
        }
    };
}

tile_table! {
    X86_64V4: positions [(8, 3), (4, 4), (2, 6), (1, 8)], channels 12;
    X86_64V3: positions [(4, 2), (2, 4), (1, 6)], channels 6;
    Portable: positions [(4, 1), (2, 2), (1, 4)], channels 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tier's tiles fit its registers: `M·V` accumulators, `V` inputs and a weight.
    #[test]
    fn every_tile_fits_its_tiers_registers() {
        for isa in Isa::ALL {
            let tiles = tiles_of(isa);
            for &(m, v) in tiles.positions {
                // Accumulators, inputs and the broadcast weight.
                let needed = m * v + v + 1;
                assert!(needed <= isa.registers(), "{isa}: {m}x{v}");
            }
            let sizes: Vec<usize> = tiles.block_sizes().collect();
            assert!(
                sizes.windows(2).all(|pair| pair[0] > pair[1]),
                "{isa}: {sizes:?}"
            );
            assert_eq!(
                sizes.last(),
                Some(&1),
                "{isa}: a block of one channel ends every chunk"
            );
            assert!(tiles.channel_positions <= isa.lanes());
        }
    }
}
