use gconv_shape::ShapeError;

use crate::Isa;

/// Why a plan could not be made or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The shapes or buffers break the convolution contract.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A tier was forced that this CPU does not have.
    #[error(
        "instruction set '{requested}' was requested but this CPU only supports {}",
        names(available)
    )]
    UnsupportedIsa {
        /// The tier asked for.
        requested: Isa,
        /// The tiers this CPU has.
        available: Vec<Isa>,
    },
    /// `GCONV_ISA` or an option named no known tier.
    #[error("unknown instruction set '{name}': expected portable, avx2 or avx512")]
    UnknownIsa {
        /// What was given.
        name: String,
    },
    /// `GCONV_CPU` or an option named no known CPU class.
    #[error("unknown CPU class '{name}': expected full512, split512 or narrow")]
    UnknownCpuClass {
        /// What was given.
        name: String,
    },
    /// A thread count of zero, or a thread pool that could not be built.
    #[error("invalid thread setting: {reason}")]
    Threads {
        /// What went wrong.
        reason: String,
    },
    /// The memory for a buffer could not be allocated.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Allocation {
        /// What the buffer was for.
        what: &'static str,
        /// Its size.
        bytes: u128,
    },
    /// A size the kernels index with 32-bit offsets is larger than that.
    #[error("the problem is too large for the kernels: {what} exceeds 2^32 elements")]
    TooLarge {
        /// What is too large.
        what: &'static str,
    },
    /// A wisdom text or file that does not follow the format ([`crate::Wisdom`]).
    #[error("{}line {line} of the wisdom: {reason}", at_path(path))]
    Wisdom {
        /// The file, if it was read from one (empty otherwise).
        path: String,
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A residual given to a plan made without one, or none given to a plan made with one.
    #[error("{}", residual_message(*plan_adds))]
    Residual {
        /// Whether the plan was made to add a residual ([`crate::Options::residual`]).
        plan_adds: bool,
    },
    /// A problem the vectorised kernels do not compute yet (the reference does).
    #[error("{what} does not run on gconv's vectorised kernels yet; gconv_reference computes it")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// A file could not be read or written.
    #[error("cannot access {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
}

/// `PATH, ` before a line number, if the text came from a file.
fn at_path(path: &str) -> String {
    match path {
        "" => String::new(),
        path => format!("{path}, "),
    }
}

fn residual_message(plan_adds: bool) -> &'static str {
    match plan_adds {
        true => {
            "the plan adds a residual (Options::residual) but none was given: \
             run it with a residual of the output's shape"
        }
        false => {
            "a residual was given to a plan made without one: \
             make the plan with Options::residual(true) to add it"
        }
    }
}

fn names(isas: &[Isa]) -> String {
    isas.iter()
        .map(|isa| isa.name())
        .collect::<Vec<_>>()
        .join(", ")
}
