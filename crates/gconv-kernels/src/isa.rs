//! Instruction-set tiers, detected at run time.
//!
//! Tiers are named after the x86-64 psABI micro-architecture levels: `x86_64_v3` is
//! AVX2 + FMA, `x86_64_v4` is AVX-512F. `portable` is the `wide` crate, which compiles to
//! whatever the build's target features allow (SSE2 on a default x86-64 build, NEON on
//! aarch64), so it is available everywhere.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An instruction-set tier a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// `wide`'s portable vectors: 8 lanes of f32, as fast as the build's target features.
    Portable,
    /// AVX2 + FMA, 8 lanes, chosen at run time.
    X86_64V3,
    /// AVX-512F, 16 lanes, chosen at run time.
    X86_64V4,
}

impl Isa {
    /// Every tier, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::X86_64V3, Isa::X86_64V4];

    /// The name used in kernel ids, `GCONV_ISA` and the CLI: `portable`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::X86_64V3 => "avx2",
            Isa::X86_64V4 => "avx512",
        }
    }

    /// The psABI level name used in kernel ids.
    pub fn level(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::X86_64V3 => "x86_64_v3",
            Isa::X86_64V4 => "x86_64_v4",
        }
    }

    /// f32 lanes per vector.
    pub const fn lanes(self) -> usize {
        self.vector_bytes() / 4
    }

    /// Bytes per vector: 32 on the portable tier (`wide`'s vectors) and AVX2, 64 on AVX-512.
    pub const fn vector_bytes(self) -> usize {
        match self {
            Isa::Portable | Isa::X86_64V3 => 32,
            Isa::X86_64V4 => 64,
        }
    }

    /// Vector registers a kernel may tile into: 32 on AVX-512, 16 on AVX2 and on the
    /// portable tier (SSE on x86-64).
    pub(crate) const fn registers(self) -> usize {
        match self {
            Isa::X86_64V4 => 32,
            Isa::X86_64V3 | Isa::Portable => 16,
        }
    }

    /// Whether this CPU can run the tier. Like the psABI level it is named after,
    /// `x86_64_v4` includes `x86_64_v3`: an AVX-512 plan may run parts on AVX2.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::X86_64V3 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::X86_64V4 => {
                std::arch::is_x86_feature_detected!("avx512f") && Isa::X86_64V3.is_supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::X86_64V3 | Isa::X86_64V4 => false,
        }
    }

    /// The tiers this CPU supports, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest tier this CPU supports.
    pub fn best() -> Isa {
        Isa::available().into_iter().last().unwrap_or(Isa::Portable)
    }

    /// `requested` if the CPU supports it, else an error naming the tier.
    pub fn require(requested: Isa) -> Result<Isa, Error> {
        if requested.is_supported() {
            Ok(requested)
        } else {
            Err(Error::UnsupportedIsa {
                requested,
                available: Isa::available(),
            })
        }
    }

    /// The tier forced by the `GCONV_ISA` environment variable, if it is set; an error if it
    /// names no tier or one this CPU lacks.
    pub fn from_env() -> Result<Option<Isa>, Error> {
        match std::env::var("GCONV_ISA") {
            Ok(value) if !value.trim().is_empty() => {
                let isa = value.parse::<Isa>()?;
                Isa::require(isa).map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = Error;

    /// Accepts `portable`, `avx2` / `x86_64_v3`, `avx512` / `x86_64_v4`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(Isa::Portable),
            "avx2" | "x86_64_v3" | "x86-64-v3" => Ok(Isa::X86_64V3),
            "avx512" | "x86_64_v4" | "x86-64-v4" => Ok(Isa::X86_64V4),
            _ => Err(Error::UnknownIsa {
                name: text.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
            assert_eq!(isa.level().parse::<Isa>().unwrap(), isa);
        }
        assert!(matches!(
            "sse9".parse::<Isa>(),
            Err(Error::UnknownIsa { .. })
        ));
    }

    #[test]
    fn portable_is_always_available_and_best_is_supported() {
        assert!(Isa::available().contains(&Isa::Portable));
        assert!(Isa::best().is_supported());
        for isa in Isa::ALL {
            assert_eq!(Isa::require(isa).is_ok(), isa.is_supported());
        }
    }
}
