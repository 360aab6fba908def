//! Instruction-set tiers: what the CPU offers, what `PARE_ISA` allows, and the tier kernels run at.

use std::fmt;
use std::sync::OnceLock;

/// Kernel tiers, in order of preference. A tier needs its own instructions and those of the tiers it
/// builds on: `AvxVnni` = `Avx2` + AVX-VNNI; `Avx512` = `Avx2` + AVX-512; `Vnni` = `Avx512` +
/// AVX512-VNNI; `Amx` = `Vnni` + AMX. `AvxVnni` and `Avx512` are independent: a CPU may have either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no SIMD assumptions: the reference kernels.
    Scalar,
    /// AVX2 + FMA (256-bit).
    Avx2,
    /// AVX2 + AVX-VNNI (VEX-encoded 256-bit `vpdpbusd`), as on CPUs without AVX-512 that have it.
    AvxVnni,
    /// AVX-512 F/BW/DQ/VL (512-bit).
    Avx512,
    /// AVX-512 VNNI (`vpdpbusd`, u8×s8 dot products).
    Vnni,
    /// AMX tiles with int8 and bf16 (`tdpbusd`, `tdpbf16ps`), permission granted by the kernel.
    Amx,
}

impl Isa {
    /// All tiers, lowest first.
    pub const ALL: [Isa; 6] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Vnni, Isa::Amx];

    /// The name used by `PARE_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Vnni => "vnni",
            Isa::Amx => "amx",
        }
    }

    /// Parses a `PARE_ISA` value.
    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU (and OS) can run kernels of this tier.
    pub fn is_available(self) -> bool {
        static AVAILABLE: OnceLock<[bool; 6]> = OnceLock::new();
        AVAILABLE.get_or_init(|| Isa::ALL.map(has))[self as usize]
    }

    /// The highest tier this CPU offers at or below `self` (at least `Scalar`).
    pub fn best_available_up_to(self) -> Isa {
        Isa::ALL.into_iter().rev().find(|t| *t <= self && t.is_available()).unwrap_or(Isa::Scalar)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An invalid `PARE_ISA` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsaCapError(pub String);

impl fmt::Display for IsaCapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PARE_ISA={:?} is not a kernel tier; use one of scalar, avx2, avxvnni, avx512, vnni, amx", self.0)
    }
}

impl std::error::Error for IsaCapError {}

/// The highest tier this CPU supports, ignoring `PARE_ISA`.
pub fn detected() -> Isa {
    Isa::Amx.best_available_up_to()
}

/// Whether the CPU has the instructions of `tier` and of the tiers it builds on.
#[cfg(target_arch = "x86_64")]
fn has(tier: Isa) -> bool {
    use std::arch::is_x86_feature_detected as f;
    let avx2 = f!("avx2") && f!("fma") && f!("f16c");
    let avx512 = avx2 && f!("avx512f") && f!("avx512bw") && f!("avx512dq") && f!("avx512vl");
    match tier {
        Isa::Scalar => true,
        Isa::Avx2 => avx2,
        Isa::AvxVnni => avx2 && f!("avxvnni"),
        Isa::Avx512 => avx512,
        Isa::Vnni => avx512 && f!("avx512vnni"),
        Isa::Amx => avx512 && f!("avx512vnni") && crate::x86_64::amx::available(),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn has(tier: Isa) -> bool {
    tier == Isa::Scalar
}

/// The cap set by the `PARE_ISA` environment variable, if any.
pub fn cap_from_env() -> Result<Option<Isa>, IsaCapError> {
    match std::env::var("PARE_ISA") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Isa::parse(&v).map(Some).ok_or(IsaCapError(v)),
        Err(_) => Ok(None),
    }
}

/// The tier kernels run at: the highest tier this CPU offers, at or below `PARE_ISA` when set.
/// An invalid `PARE_ISA` is ignored here; front ends should call [`cap_from_env`] first and report it.
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| match cap_from_env() {
        Ok(Some(cap)) => cap.best_available_up_to(),
        _ => detected(),
    })
}

/// CPU model name as the OS reports it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// One line for logs and reports, e.g. `avx512 (cpu offers vnni; capped by PARE_ISA=avx512)`.
pub fn describe() -> String {
    let (act, det) = (active(), detected());
    if act == det {
        format!("{act} (best this cpu offers)")
    } else {
        format!("{act} (cpu offers {det}; capped by PARE_ISA)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse("AVX512"), Some(Isa::Avx512));
        assert_eq!(Isa::parse("sse9"), None);
        assert!(Isa::Scalar < Isa::Amx);
        assert!(active() <= detected());
        for t in Isa::ALL {
            let b = t.best_available_up_to();
            assert!(b <= t && b.is_available());
        }
    }
}
