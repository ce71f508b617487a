//! CPU classes: how a core runs its widest vectors, which decides some kernel choices.
//!
//! Two CPUs with the same instruction sets can want different kernels. A core that runs
//! 512-bit fused multiply-adds at full width (two 512-bit FMA pipes: Intel's server cores,
//! AMD Zen 5 desktop and server parts) does twice the arithmetic per cycle in a zmm register
//! as in a ymm one; a core that splits them into two 256-bit halves (AMD Zen 4, Zen 5's
//! mobile parts) does the same arithmetic either way, so a 512-bit vector half of whose lanes
//! are idle costs it twice what a full 256-bit one does. The selection rules read the class
//! where that changes the best kernel (`TUNING.md` names each such rule); everywhere else
//! they read only the tier.
//!
//! The class comes from CPUID (vendor, family and model), never from timing, so the same
//! machine always makes the same choices. `GCONV_CPU` (or [`crate::Options::cpu`]) overrides
//! it, for a CPU the table does not know (an Intel part with a single 512-bit FMA unit
//! behaves as `split512`) and for tests that exercise both classes on one machine.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How the CPU runs 512-bit vector arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CpuClass {
    /// AVX-512 at full width: a zmm FMA does twice a ymm FMA's work in the same time.
    Full512,
    /// AVX-512 split into two 256-bit halves: zmm and ymm FMAs do the same work per cycle.
    Split512,
    /// No AVX-512: 256-bit vectors at most.
    Narrow,
}

impl CpuClass {
    /// Every class.
    pub const ALL: [CpuClass; 3] = [CpuClass::Full512, CpuClass::Split512, CpuClass::Narrow];

    /// The name used by `GCONV_CPU`, the CLI and the golden selection file: `full512`,
    /// `split512`, `narrow`.
    pub fn name(self) -> &'static str {
        match self {
            CpuClass::Full512 => "full512",
            CpuClass::Split512 => "split512",
            CpuClass::Narrow => "narrow",
        }
    }

    /// The class of the CPU this runs on, from CPUID.
    pub fn detect() -> CpuClass {
        if !crate::Isa::X86_64V4.is_supported() {
            return CpuClass::Narrow;
        }
        match identify() {
            Some(identity) => class_of(identity),
            None => CpuClass::Full512,
        }
    }

    /// The class forced by the `GCONV_CPU` environment variable, if it is set; an error if
    /// it names no class.
    pub fn from_env() -> Result<Option<CpuClass>, Error> {
        match std::env::var("GCONV_CPU") {
            Ok(value) if !value.trim().is_empty() => value.parse().map(Some),
            _ => Ok(None),
        }
    }
}

/// This CPU's vendor, family and model as CPUID reports them, e.g. `AuthenticAMD-1a-02`
/// (`unknown` off x86-64): what a measured kernel choice is kept under in a
/// [`crate::Wisdom`], since CPUs of one model time the kernels alike.
pub fn model_key() -> String {
    match (vendor(), identify()) {
        (Some(vendor), Some(Identity { family, model, .. })) => {
            format!("{vendor}-{family:02x}-{model:02x}")
        }
        _ => "unknown".to_string(),
    }
}

/// The CPU vendor's CPUID string (`GenuineIntel`, `AuthenticAMD`), printable characters only.
#[cfg(target_arch = "x86_64")]
fn vendor() -> Option<String> {
    let leaf = std::arch::x86_64::__cpuid(0);
    let bytes: Vec<u8> = [leaf.ebx, leaf.edx, leaf.ecx]
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .filter(u8::is_ascii_alphanumeric)
        .collect();
    String::from_utf8(bytes)
        .ok()
        .filter(|name| !name.is_empty())
}

#[cfg(not(target_arch = "x86_64"))]
fn vendor() -> Option<String> {
    None
}

/// A CPU's vendor, family and model, as CPUID reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    amd: bool,
    family: u32,
    model: u32,
}

/// The class of an AVX-512 CPU by its identity: AMD's Zen 4 (family 0x19) and Zen 5's mobile
/// parts (family 0x1A, models 0x20–0x2F Strix Point and 0x60–0x6F Krackan Point) split
/// 512-bit operations in two; Zen 5's desktop and server parts and Intel's AVX-512 cores run
/// them at full width.
fn class_of(identity: Identity) -> CpuClass {
    match identity {
        Identity {
            amd: true,
            family: 0x19,
            ..
        } => CpuClass::Split512,
        Identity {
            amd: true,
            family: 0x1A,
            model: 0x20..=0x2F | 0x60..=0x6F,
        } => CpuClass::Split512,
        _ => CpuClass::Full512,
    }
}

/// This CPU's identity (CPUID leaves 0 and 1; the family and model with their extended
/// fields, as the vendors define them).
#[cfg(target_arch = "x86_64")]
fn identify() -> Option<Identity> {
    use std::arch::x86_64::__cpuid;
    let vendor = __cpuid(0);
    let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let signature = __cpuid(1).eax;
    let base_family = (signature >> 8) & 0xF;
    let base_model = (signature >> 4) & 0xF;
    let family = match base_family {
        0xF => base_family + ((signature >> 20) & 0xFF),
        _ => base_family,
    };
    let model = match base_family {
        0x6 | 0xF => (((signature >> 16) & 0xF) << 4) | base_model,
        _ => base_model,
    };
    Some(Identity { amd, family, model })
}

#[cfg(not(target_arch = "x86_64"))]
fn identify() -> Option<Identity> {
    None
}

impl fmt::Display for CpuClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CpuClass {
    type Err = Error;

    /// Accepts `full512`, `split512`, `narrow`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.trim().to_ascii_lowercase();
        CpuClass::ALL
            .into_iter()
            .find(|class| class.name() == name)
            .ok_or_else(|| Error::UnknownCpuClass {
                name: text.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for class in CpuClass::ALL {
            assert_eq!(class.name().parse::<CpuClass>().unwrap(), class);
        }
        assert!(matches!(
            "zen4".parse::<CpuClass>(),
            Err(Error::UnknownCpuClass { name }) if name == "zen4"
        ));
    }

    #[test]
    fn known_parts_get_their_class() {
        let amd = |family, model| Identity {
            amd: true,
            family,
            model,
        };
        // Zen 4 (Genoa, Raphael, Phoenix): split.
        for model in [0x11, 0x61, 0x74] {
            assert_eq!(class_of(amd(0x19, model)), CpuClass::Split512);
        }
        // Zen 5: Turin and Granite Ridge full; Strix Point and Krackan Point split.
        assert_eq!(class_of(amd(0x1A, 0x02)), CpuClass::Full512);
        assert_eq!(class_of(amd(0x1A, 0x44)), CpuClass::Full512);
        assert_eq!(class_of(amd(0x1A, 0x24)), CpuClass::Split512);
        assert_eq!(class_of(amd(0x1A, 0x60)), CpuClass::Split512);
        // Intel's AVX-512 cores (Sapphire Rapids: family 6, model 0x8F).
        let intel = Identity {
            amd: false,
            family: 6,
            model: 0x8F,
        };
        assert_eq!(class_of(intel), CpuClass::Full512);
    }

    #[test]
    fn the_model_key_is_one_word() {
        let key = model_key();
        assert!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "{key:?}"
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(key.split('-').count(), 3, "vendor-family-model: {key:?}");
    }

    #[test]
    fn detection_agrees_with_the_tiers() {
        let class = CpuClass::detect();
        assert_eq!(
            class == CpuClass::Narrow,
            !crate::Isa::X86_64V4.is_supported()
        );
    }
}
