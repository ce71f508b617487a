//! [`Wisdom`]: kernel choices measured once and kept, so that later plans — in this process
//! or, through a small text file, in others — take them without timing again (FFTW's
//! wisdom, for convolutions).
//!
//! A measured plan ([`crate::Planning::Measure`]) looks its problem up in the process's
//! wisdom ([`Wisdom::global`]) before timing anything, and records what it measured there.
//! A plan made with [`crate::Planning::Wisdom`] takes the recorded choice where there is one
//! and the selection table's everywhere else, never timing. [`Wisdom::import`] and
//! [`Wisdom::export`] move the process's wisdom to and from a file.
//!
//! # The file
//!
//! ```text
//! # gconv wisdom 1
//! # cpu isa class threads problem kernel best-ns
//! AuthenticAMD-1a-02 avx512 full512 1 1x64x56x56-g64-o64-k3x3-s1x1-d1x1-p1,1,1,1 dwconv-3x3s1d1-streamed-1c16w-x86_64_v4 31250
//! ```
//!
//! One line per measured problem: the CPU model it was measured on ([`crate::cpu::model_key`]),
//! the tier, the CPU class the kernels were chosen for, the threads, the problem (input shape
//! `N x C x H x W`, groups, output channels, kernel size, stride, dilation, padding top,
//! bottom, left, right), the kernel that won (its kernel id) and its best time in
//! nanoseconds. Lines of other CPU models are kept but never used here: one file can serve
//! a fleet. A kernel id that no candidate of the problem has any more (a file written by
//! another version of gconv) is ignored and measured again.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use gconv_shape::Geometry;

use crate::{CpuClass, Error, Isa};

/// The first line of every wisdom file, with its format's version.
const HEADER: &str = "# gconv wisdom 1";

/// The second line: what the fields are.
const FIELDS: &str = "# cpu isa class threads problem kernel best-ns";

/// Measured kernel choices, each under the CPU model, tier, class, thread count and problem
/// it was measured for.
///
/// ```
/// use gconv_kernels::Wisdom;
///
/// let text = "# gconv wisdom 1\n\
///     AuthenticAMD-1a-02 avx512 full512 1 1x64x56x56-g64-o64-k3x3-s1x1-d1x1-p1,1,1,1 \
///     dwconv-3x3s1d1-streamed-1c16w-x86_64_v4 31250\n";
/// let wisdom: Wisdom = text.parse()?;
/// assert_eq!(wisdom.len(), 1);
/// assert!(wisdom.to_string().starts_with("# gconv wisdom 1\n"));
/// # Ok::<(), gconv_kernels::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wisdom {
    entries: BTreeMap<Key, Entry>,
}

/// What a measurement is kept under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    cpu_model: String,
    isa: Isa,
    class: CpuClass,
    threads: usize,
    problem: String,
}

/// What a measurement found: the winning kernel and its best time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kernel: String,
    nanos: u64,
}

/// The process's wisdom, which measured plans read and add to.
static GLOBAL: Mutex<Wisdom> = Mutex::new(Wisdom::new());

impl Key {
    /// The key of a plan for `geometry` on `isa`, for CPUs of `class`, on `threads`, on this
    /// CPU's model.
    pub(crate) fn new(geometry: &Geometry, isa: Isa, class: CpuClass, threads: usize) -> Key {
        Key {
            cpu_model: crate::cpu::model_key(),
            isa,
            class,
            threads,
            problem: problem_key(geometry),
        }
    }
}

/// A problem as one word: `NxCxHxW-gG-oC_out-kKHxKW-sSHxSW-dDHxDW-pT,B,L,R`.
fn problem_key(geometry: &Geometry) -> String {
    let [n, c, h, w] = geometry.input_shape();
    let [kh, kw] = geometry.kernel_size();
    let [sh, sw] = geometry.stride();
    let [dh, dw] = geometry.dilation();
    let padding = geometry.padding();
    format!(
        "{n}x{c}x{h}x{w}-g{}-o{}-k{kh}x{kw}-s{sh}x{sw}-d{dh}x{dw}-p{},{},{},{}",
        geometry.groups(),
        geometry.out_channels(),
        padding.top,
        padding.bottom,
        padding.left,
        padding.right
    )
}

impl Wisdom {
    /// No measurements.
    pub const fn new() -> Wisdom {
        Wisdom {
            entries: BTreeMap::new(),
        }
    }

    /// Measurements held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no measurement.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `other`'s measurements, which replace this one's of the same CPU model, tier,
    /// class, threads and problem.
    pub fn merge(&mut self, other: &Wisdom) {
        for (key, entry) in &other.entries {
            self.entries.insert(key.clone(), entry.clone());
        }
    }

    /// Reads a wisdom file.
    pub fn read(path: &Path) -> Result<Wisdom, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| io_error(path, &error))?;
        text.parse().map_err(|error| match error {
            Error::Wisdom { line, reason, .. } => Error::Wisdom {
                path: path.display().to_string(),
                line,
                reason,
            },
            other => other,
        })
    }

    /// Writes this wisdom to `path` whole or not at all: through a temporary file in the
    /// same directory, renamed over `path` once written and flushed to disk. On an error
    /// `path` is as it was.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let name = path.file_name().ok_or_else(|| Error::Io {
            path: path.display().to_string(),
            reason: "it names no file".to_string(),
        })?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(temporary_name);
        let written = std::fs::File::create(&temporary)
            .and_then(|mut file| {
                file.write_all(self.to_string().as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, path));
        written.map_err(|error| {
            // Nothing to do if the temporary file was never made.
            let _ = std::fs::remove_file(&temporary);
            io_error(path, &error)
        })
    }

    /// The process's wisdom: what measured plans have found (and what was imported), which
    /// every measured plan reads first.
    pub fn global() -> MutexGuard<'static, Wisdom> {
        // The map stays consistent whatever a panicking holder was doing: each change is one
        // insert.
        GLOBAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a wisdom file's measurements to the process's; returns how many it held.
    pub fn import(path: &Path) -> Result<usize, Error> {
        let read = Wisdom::read(path)?;
        Wisdom::global().merge(&read);
        Ok(read.len())
    }

    /// Writes the process's wisdom to `path` (whole or not at all, as [`Wisdom::write`]).
    pub fn export(path: &Path) -> Result<(), Error> {
        let snapshot = Wisdom::global().clone();
        snapshot.write(path)
    }

    /// The kernel recorded for `key`, if any.
    pub(crate) fn kernel(&self, key: &Key) -> Option<&str> {
        self.entries.get(key).map(|entry| entry.kernel.as_str())
    }

    /// Records that `kernel` ran `key`'s problem fastest, in `nanos` at best.
    pub(crate) fn record(&mut self, key: Key, kernel: String, nanos: u64) {
        self.entries.insert(key, Entry { kernel, nanos });
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

impl fmt::Display for Wisdom {
    /// The file format (see the module's documentation), header first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}")?;
        writeln!(f, "{FIELDS}")?;
        for (key, entry) in &self.entries {
            writeln!(
                f,
                "{} {} {} {} {} {} {}",
                key.cpu_model,
                key.isa.name(),
                key.class.name(),
                key.threads,
                key.problem,
                entry.kernel,
                entry.nanos
            )?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Wisdom {
    type Err = Error;

    /// Parses the file format; an empty text is an empty wisdom. Errors name the line.
    fn from_str(text: &str) -> Result<Wisdom, Error> {
        let mut wisdom = Wisdom::new();
        let mut lines = text.lines().enumerate();
        let refuse = |line: usize, reason: String| Error::Wisdom {
            path: String::new(),
            line: line + 1,
            reason,
        };
        match lines.next() {
            None => return Ok(wisdom),
            Some((_, first)) if first.trim_end() == HEADER => {}
            Some((index, first)) => {
                let reason = format!("expected '{HEADER}', found '{}'", shorten(first));
                return Err(refuse(index, reason));
            }
        }
        for (index, line) in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [cpu_model, isa, class, threads, problem, kernel, nanos] = fields[..] else {
                let reason = format!(
                    "expected 7 fields (cpu isa class threads problem kernel best-ns), found {}",
                    fields.len()
                );
                return Err(refuse(index, reason));
            };
            let isa: Isa = isa
                .parse()
                .map_err(|error| refuse(index, format!("{error}")))?;
            let class: CpuClass = class
                .parse()
                .map_err(|error| refuse(index, format!("{error}")))?;
            let threads = match threads.parse::<usize>() {
                Ok(threads) if threads > 0 => threads,
                _ => {
                    let reason = format!("threads '{threads}' is not a positive integer");
                    return Err(refuse(index, reason));
                }
            };
            let nanos = nanos.parse::<u64>().map_err(|_| {
                refuse(
                    index,
                    format!("best-ns '{nanos}' is not a non-negative integer"),
                )
            })?;
            let key = Key {
                cpu_model: cpu_model.to_string(),
                isa,
                class,
                threads,
                problem: problem.to_string(),
            };
            wisdom.record(key, kernel.to_string(), nanos);
        }
        Ok(wisdom)
    }
}

/// At most 60 characters of `text`, for an error message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_shape::{Conv2dParams, Padding};

    fn key(problem: &str, threads: usize) -> Key {
        Key {
            cpu_model: "GenuineIntel-06-8f".to_string(),
            isa: Isa::X86_64V4,
            class: CpuClass::Full512,
            threads,
            problem: problem.to_string(),
        }
    }

    #[test]
    fn the_problem_key_names_every_dimension() {
        let geometry = Conv2dParams::new(64, 128, [3, 5])
            .groups(32)
            .stride([2, 1])
            .dilation([1, 2])
            .padding(Padding::per_side(1, 2, 3, 4))
            .geometry([2, 64, 28, 30])
            .unwrap();
        assert_eq!(
            problem_key(&geometry),
            "2x64x28x30-g32-o128-k3x5-s2x1-d1x2-p1,2,3,4"
        );
    }

    #[test]
    fn text_round_trips_and_later_measurements_replace_earlier_ones() {
        let mut wisdom = Wisdom::new();
        wisdom.record(
            key("1x8x9x9-g8-o8-k3x3-s1x1-d1x1-p1,1,1,1", 1),
            "a".into(),
            5,
        );
        wisdom.record(
            key("1x8x9x9-g8-o8-k3x3-s1x1-d1x1-p1,1,1,1", 2),
            "b".into(),
            7,
        );
        let text = wisdom.to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        let parsed: Wisdom = text.parse().unwrap();
        assert_eq!(parsed, wisdom);

        let mut newer = Wisdom::new();
        newer.record(
            key("1x8x9x9-g8-o8-k3x3-s1x1-d1x1-p1,1,1,1", 2),
            "c".into(),
            6,
        );
        wisdom.merge(&newer);
        assert_eq!(wisdom.len(), 2);
        let two = key("1x8x9x9-g8-o8-k3x3-s1x1-d1x1-p1,1,1,1", 2);
        assert_eq!(wisdom.kernel(&two), Some("c"));
        assert_eq!("".parse::<Wisdom>().unwrap(), Wisdom::new());
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let cases = [
            ("not wisdom\n", 1, "expected '# gconv wisdom 1'"),
            (
                "# gconv wisdom 1\nA avx512 full512 1 p k\n",
                2,
                "expected 7 fields",
            ),
            (
                "# gconv wisdom 1\n\nA sse9 full512 1 p k 5\n",
                3,
                "unknown instruction set 'sse9'",
            ),
            (
                "# gconv wisdom 1\nA avx2 wide 1 p k 5\n",
                2,
                "CPU class 'wide'",
            ),
            (
                "# gconv wisdom 1\nA avx2 narrow 0 p k 5\n",
                2,
                "threads '0'",
            ),
            (
                "# gconv wisdom 1\nA avx2 narrow 1 p k -5\n",
                2,
                "best-ns '-5'",
            ),
        ];
        for (text, line, expected) in cases {
            match text.parse::<Wisdom>() {
                Err(Error::Wisdom {
                    line: got, reason, ..
                }) => {
                    assert_eq!(got, line, "{text:?}");
                    assert!(reason.contains(expected), "{reason} for {text:?}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn files_are_written_whole_and_read_back() {
        let directory = std::env::temp_dir().join(format!("gconv-wisdom-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("wisdom.txt");
        let mut wisdom = Wisdom::new();
        wisdom.record(key("p", 1), "k".into(), 9);
        wisdom.write(&path).unwrap();
        assert_eq!(Wisdom::read(&path).unwrap(), wisdom);
        // Only the file itself is left: no temporary beside it.
        let names: Vec<_> = std::fs::read_dir(&directory).unwrap().collect();
        assert_eq!(names.len(), 1);

        // A write into a directory that does not exist fails and names the path.
        let missing = directory.join("no-such-directory").join("wisdom.txt");
        let error = wisdom.write(&missing).unwrap_err();
        assert!(error.to_string().contains("no-such-directory"), "{error}");

        // A file that is not wisdom is refused with its path and line.
        std::fs::write(&path, "# gconv wisdom 1\nbroken\n").unwrap();
        let error = Wisdom::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("wisdom.txt") && error.contains("line 2"),
            "{error}"
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
