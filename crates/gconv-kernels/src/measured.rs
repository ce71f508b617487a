//! The measured choice (FFTW's `MEASURE`, for one convolution): at plan creation, every
//! candidate kernel ([`crate::select`]'s candidates) runs the problem on synthetic data,
//! round after round within a time budget, and the fastest is kept — and recorded in the
//! process's [`Wisdom`], which later plans of the same problem read instead of timing.
//!
//! Every candidate computes each output as the table's choice does, one chain of
//! multiply-adds (bias, then the taps in the same order; kernels that sum in another order
//! are no candidates), so the choice changes the time a run takes, never its bits: a
//! measured plan gives the table's plan's output exactly, for every thread count
//! (`tests::every_candidate_gives_the_same_bits`).

use std::fmt;
use std::time::{Duration, Instant};

use crate::Error;
use crate::exec::workspace::{Output, Workspace};
use crate::kernels::ForwardKernel;
use crate::plan::{PostOps, build, forward_kernel};
use crate::select::{self, Choice, Problem, Selection, candidates};
use crate::weights::Weights;
use crate::wisdom::{Key, Wisdom};

/// How a plan chooses its kernel.
///
/// ```
/// use std::time::Duration;
/// use gconv_kernels::{Options, Planning};
///
/// let timed = Options::default().measure(); // within the default 50 ms
/// let longer = Options::default().planning(Planning::Measure { budget: Duration::from_millis(200) });
/// # let _ = (timed, longer);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Planning {
    /// The selection table's rule ([`crate::select::forward::RULES`]): no timing, the same
    /// choice on every machine of a tier and CPU class.
    #[default]
    Table,
    /// The choice recorded in the process's [`Wisdom`] for this CPU model and problem, where
    /// there is one; the table's otherwise. Never times.
    Wisdom,
    /// The recorded choice where there is one; otherwise every candidate kernel is timed on
    /// the problem for about `budget` (the table's choice at least once whatever the
    /// budget, the others while it lasts), the fastest is kept and recorded. Another kernel replaces the table's only when it is
    /// faster by more than the noise margin ([`MARGIN_PERCENT`] %).
    Measure {
        /// How long the timing may take, roughly: a round of the candidates still running
        /// is finished once begun.
        budget: Duration,
    },
}

/// The budget [`crate::Options::measure`] gives a plan.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);

/// How much faster (in percent of its time) a candidate must be than the table's choice to
/// replace it: less is within the noise of a shared machine.
pub const MARGIN_PERCENT: u32 = 3;

/// Rounds of timed runs after the warm-up, at most: the best of a dozen runs is stable.
const MAX_ROUNDS: usize = 3;

/// Runs of a candidate per round, back to back: on layers whose weights outgrow L2 the
/// second run after another candidate's was still a third slower than a loop's (ResNeXt's
/// 1x1 layers on 7x7 planes, 8 MB of weights), the fourth as fast (see `TUNING.md`).
const RUNS_PER_ROUND: usize = 4;

/// A candidate more than this many times slower than the best so far stops being timed.
const DROP_RATIO: f64 = 1.5;

/// How a measured plan came by its kernel, and what each candidate took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    source: Source,
    elapsed: Duration,
    table_kernel: String,
    timings: Vec<Timing>,
}

/// Where a measured plan's kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Timed against the other candidates when the plan was made.
    Timed,
    /// Read from the process's wisdom (a measurement made before).
    Wisdom,
}

/// One candidate's timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// The candidate's kernel id.
    pub kernel: String,
    /// Its fastest run; `None` if the budget ran out before its turn.
    pub best: Option<Duration>,
    /// How many times it ran.
    pub runs: usize,
}

impl Measurement {
    /// Whether the kernel was timed now or read from wisdom.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The time the choice took (building and timing every candidate, or the lookup).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The kernel id the selection table would have chosen.
    pub fn table_kernel(&self) -> &str {
        &self.table_kernel
    }

    /// Each candidate's timing, the table's choice first (empty when read from wisdom).
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }

    /// The table's choice's best time over the fastest candidate's, if both ran: how much
    /// the measurement gained (1.0: the table's choice is the fastest).
    pub fn table_ratio(&self) -> Option<f64> {
        let table = self.timings.first()?.best?;
        let best = self.timings.iter().filter_map(|timing| timing.best).min()?;
        Some(table.as_secs_f64() / best.as_secs_f64().max(1e-12))
    }
}

impl fmt::Display for Measurement {
    /// `timed 4 kernels in 38 ms` or `from wisdom`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::Wisdom => f.write_str("from wisdom"),
            Source::Timed => {
                let timed = self.timings.iter().filter(|t| t.best.is_some()).count();
                write!(
                    f,
                    "timed {timed} of {} kernels in {:.1} ms",
                    self.timings.len(),
                    self.elapsed.as_secs_f64() * 1e3
                )
            }
        }
    }
}

/// The kernel a plan runs, the rule (or measurement) that chose it.
pub(crate) struct Chosen {
    pub selection: Selection,
    pub kernel: Box<dyn ForwardKernel<f32>>,
    pub measurement: Option<Measurement>,
}

/// The rule a measured choice other than the table's names.
pub(crate) static MEASURED: select::Rule = select::Rule::measured();

/// The kernel for `problem` as `planning` says (not [`Planning::Table`], which the plan
/// selects itself); `parallel`: whether runs of this problem share the work.
pub(crate) fn choose(
    problem: Problem<'_>,
    weights: &Weights<f32>,
    post: PostOps,
    planning: Planning,
    parallel: bool,
    scratch_fits: impl Fn(usize) -> bool,
) -> Result<Chosen, Error> {
    let started = Instant::now();
    let (table, others) = candidates::forward(problem)?;
    let Problem {
        geometry,
        isa,
        cpu,
        threads,
    } = problem;
    let key = Key::new(geometry, isa, cpu, threads);
    let kernel_of = |choice: &Choice| forward_kernel(problem, weights, choice);
    let selection_of = |choice: Choice| Selection {
        choice,
        rule: if choice == table.choice {
            table.rule
        } else {
            &MEASURED
        },
    };
    let table_kernel = table.choice.kernel_id(geometry, isa);

    // Wisdom first: a recorded kernel that is still a candidate here.
    let recorded = Wisdom::global().kernel(&key).map(str::to_string);
    if let Some(recorded) = recorded {
        let choice = std::iter::once(table.choice)
            .chain(others.iter().copied())
            .find(|choice| choice.kernel_id(geometry, isa) == recorded);
        if let Some(choice) = choice
            && let Ok(kernel) = kernel_of(&choice)
            && scratch_fits(kernel.scratch_len())
        {
            return Ok(Chosen {
                selection: selection_of(choice),
                kernel,
                measurement: Some(Measurement {
                    source: Source::Wisdom,
                    elapsed: started.elapsed(),
                    table_kernel,
                    timings: Vec::new(),
                }),
            });
        }
    }
    let budget = match planning {
        Planning::Measure { budget } => budget,
        Planning::Table | Planning::Wisdom => return build(problem, weights, table),
    };

    // The table's kernel must build; a candidate that does not (or needs absurd scratch)
    // is left out.
    let mut entries = vec![Entry::new(table.choice, kernel_of(&table.choice)?)];
    for choice in others {
        if let Ok(kernel) = kernel_of(&choice)
            && scratch_fits(kernel.scratch_len())
        {
            entries.push(Entry::new(choice, kernel));
        }
    }
    time(&mut entries, problem, post, parallel, started, budget)?;

    let bests: Vec<Option<Duration>> = entries.iter().map(|entry| entry.best).collect();
    let winner = winner(&bests);
    let timings = entries
        .iter()
        .map(|entry| Timing {
            kernel: entry.choice.kernel_id(geometry, isa),
            best: entry.best,
            runs: entry.runs,
        })
        .collect();
    let winner = entries.swap_remove(winner);
    let nanos = winner.best.map_or(0, |best| best.as_nanos());
    Wisdom::global().record(
        key,
        winner.choice.kernel_id(geometry, isa),
        u64::try_from(nanos).unwrap_or(u64::MAX),
    );
    // The losers' packed weights go with them.
    drop(entries);
    weights.release_unread();
    Ok(Chosen {
        selection: selection_of(winner.choice),
        kernel: winner.kernel,
        measurement: Some(Measurement {
            source: Source::Timed,
            elapsed: started.elapsed(),
            table_kernel,
            timings,
        }),
    })
}

/// The index of the fastest of `bests` (the table's choice's first), unless the table's
/// choice is within [`MARGIN_PERCENT`] of it: then 0.
fn winner(bests: &[Option<Duration>]) -> usize {
    let fastest = bests
        .iter()
        .enumerate()
        .filter_map(|(index, best)| best.map(|best| (index, best)))
        .min_by_key(|&(_, best)| best)
        .map_or(0, |(index, _)| index);
    match (bests.first().copied().flatten(), bests[fastest]) {
        (Some(table), Some(best))
            if best.as_nanos() * 100 < table.as_nanos() * u128::from(100 - MARGIN_PERCENT) =>
        {
            fastest
        }
        _ => 0,
    }
}

/// A candidate being timed.
struct Entry {
    choice: Choice,
    kernel: Box<dyn ForwardKernel<f32>>,
    best: Option<Duration>,
    runs: usize,
}

impl Entry {
    fn new(choice: Choice, kernel: Box<dyn ForwardKernel<f32>>) -> Entry {
        Entry {
            choice,
            kernel,
            best: None,
            runs: 0,
        }
    }
}

/// Runs the candidates in rounds on synthetic data until `budget` has passed since
/// `started` or each has run [`MAX_ROUNDS`] rounds of [`RUNS_PER_ROUND`] runs after its
/// first. The first run of each is
/// a warm-up (its page faults, a team of threads waking), counted only for a candidate that
/// never runs again; the table's choice always runs, the others only while the budget
/// lasts. From the third round a candidate [`DROP_RATIO`] times slower than the best stops
/// (never the table's choice, whose time is the yardstick).
fn time(
    entries: &mut [Entry],
    problem: Problem<'_>,
    post: PostOps,
    parallel: bool,
    started: Instant,
    budget: Duration,
) -> Result<(), Error> {
    let geometry = problem.geometry;
    let scratch = entries
        .iter()
        .map(|entry| entry.kernel.scratch_len())
        .max()
        .unwrap_or(0);
    let workspace = Workspace::new(problem.threads, scratch)?;
    let input = synthetic(geometry.input_len())?;
    let mut output = synthetic(geometry.output_len())?;
    // The candidates store as the plan will: through its epilogue, reading a residual if it
    // adds one.
    let residual = match post.residual {
        true => Some(synthetic(geometry.output_len())?),
        false => None,
    };
    let mut warm_up = vec![None; entries.len()];
    for round in 0..=MAX_ROUNDS {
        let best_so_far = entries.iter().filter_map(|entry| entry.best).min();
        for (index, entry) in entries.iter_mut().enumerate() {
            if started.elapsed() >= budget && !(index == 0 && round == 0) {
                continue;
            }
            let slow = match (entry.best, best_so_far) {
                (Some(own), Some(best)) => own.as_secs_f64() > DROP_RATIO * best.as_secs_f64(),
                _ => false,
            };
            if round >= 2 && index > 0 && slow {
                continue;
            }
            // After the warm-up, runs come in groups, back to back: the last ones find the
            // caches as a loop of runs leaves them (what `gconv bench` and the peers
            // measure), not as the other candidates left them.
            let runs = if round == 0 { 1 } else { RUNS_PER_ROUND };
            for _ in 0..runs {
                let start = Instant::now();
                let output = Output {
                    values: &mut output,
                    residual: residual.as_deref(),
                    post: post.pass(problem.isa),
                };
                entry.kernel.run(&input, output, &workspace, parallel);
                let took = start.elapsed();
                entry.runs += 1;
                match round {
                    0 => warm_up[index] = Some(took),
                    _ => entry.best = Some(entry.best.map_or(took, |best| best.min(took))),
                }
            }
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    for (entry, warm_up) in entries.iter_mut().zip(warm_up) {
        entry.best = entry.best.or(warm_up);
    }
    Ok(())
}

/// `len` values in [-1, 1), a fixed pseudo-random sequence: data without zeros or
/// subnormals, so that every kernel does the arithmetic it does on real data.
fn synthetic(len: usize) -> Result<Vec<f32>, Error> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(len)
        .map_err(|_| Error::Allocation {
            what: "the measured choice's synthetic data",
            bytes: len as u128 * 4,
        })?;
    let mut state = 0x9E37_79B9u32;
    values.extend((0..len).map(|_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // 23 random bits and a half: exact in an f32, never 0 after the shift to [-1, 1).
        ((state >> 9) as f32 + 0.5) / (1u32 << 22) as f32 - 1.0
    }));
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuClass, Isa, KernelPlan, Options};
    use gconv_shape::{Conv2dParams, Geometry, Padding};
    use gconv_testkit::strategy::{self, Limits};
    use proptest::prelude::*;

    /// Each candidate kernel of `problem`'s geometry on every tier and class this CPU has,
    /// on 1 and 2 threads, run on its data: each output as a vector of bits, with its id.
    fn every_candidate(problem: &gconv_testkit::Problem) -> Vec<Vec<(String, Vec<u32>)>> {
        let geometry = &problem.geometry;
        let weights = Weights::new(&problem.weight, problem.bias.as_deref());
        let mut outputs = Vec::new();
        for isa in Isa::available() {
            for cpu in [CpuClass::Full512, CpuClass::Split512] {
                for threads in [1, 2] {
                    let candidate_problem = Problem {
                        geometry,
                        isa,
                        cpu,
                        threads,
                    };
                    let (table, others) = candidates::forward(candidate_problem).unwrap();
                    let mut runs = Vec::new();
                    for choice in std::iter::once(table.choice).chain(others) {
                        let kernel = forward_kernel(candidate_problem, &weights, &choice).unwrap();
                        let workspace = Workspace::new(threads, kernel.scratch_len()).unwrap();
                        let mut output = vec![f32::NAN; geometry.output_len()];
                        let values = Output {
                            values: &mut output,
                            residual: None,
                            post: None,
                        };
                        kernel.run(&problem.input, values, &workspace, threads > 1);
                        let bits = output.iter().map(|value| value.to_bits()).collect();
                        runs.push((choice.kernel_id(geometry, isa), bits));
                    }
                    outputs.push(runs);
                }
            }
        }
        outputs
    }

    /// Every candidate of `problem` gives the table's choice's bits.
    fn check_same_bits(problem: &gconv_testkit::Problem) -> Result<(), TestCaseError> {
        for runs in every_candidate(problem) {
            let (table_id, table_bits) = &runs[0];
            for (id, bits) in &runs[1..] {
                prop_assert!(
                    bits == table_bits,
                    "{id} differs from {table_id} on {:?}",
                    problem.geometry
                );
            }
        }
        Ok(())
    }

    /// A problem of `geometry` with the testkit's data.
    fn problem_of(geometry: Geometry) -> gconv_testkit::Problem {
        use gconv_testkit::data::uniform;
        gconv_testkit::Problem {
            input: uniform(geometry.input_len(), 1),
            weight: uniform(geometry.weight_count(), 2),
            bias: geometry
                .has_bias()
                .then(|| uniform(geometry.out_channels(), 3)),
            geometry,
        }
    }

    fn geometry(params: Conv2dParams, input: [usize; 4]) -> Geometry {
        params.geometry(input).unwrap()
    }

    /// One problem of every family whose candidates span every kernel: depthwise (lanes
    /// of both widths, streamed, shifted, unpacked where it sums row by row), grouped and
    /// dense (both bodies, every packing).
    fn families() -> Vec<Geometry> {
        vec![
            geometry(
                Conv2dParams::new(32, 32, 3)
                    .groups(32)
                    .padding(Padding::uniform(1)),
                [1, 32, 9, 11],
            ),
            geometry(
                Conv2dParams::new(16, 16, 5)
                    .groups(16)
                    .stride(2)
                    .padding(Padding::uniform(2)),
                [2, 16, 13, 13],
            ),
            geometry(
                Conv2dParams::new(64, 64, 3)
                    .groups(4)
                    .padding(Padding::uniform(1)),
                [1, 64, 7, 9],
            ),
            geometry(
                Conv2dParams::new(16, 16, 3)
                    .groups(16)
                    .dilation(3)
                    .padding(Padding::uniform(3)),
                [1, 16, 12, 14],
            ),
            geometry(Conv2dParams::new(64, 64, 1).groups(2), [1, 64, 5, 6]),
            geometry(
                Conv2dParams::new(8, 16, 3).stride(2).dilation(2),
                [1, 8, 12, 12],
            ),
        ]
    }

    #[test]
    fn every_candidate_gives_the_same_bits() {
        for geometry in families() {
            check_same_bits(&problem_of(geometry)).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(strategy::cases(24)))]

        #[test]
        fn every_candidate_gives_the_same_bits_on_random_problems(
            problem in strategy::problems(Limits::default())
        ) {
            check_same_bits(&problem)?;
        }
    }

    #[test]
    fn the_candidates_have_distinct_ids_and_include_every_kernel_family() {
        let mut ids = Vec::new();
        for geometry in families() {
            for isa in Isa::available() {
                let problem = Problem {
                    geometry: &geometry,
                    isa,
                    cpu: CpuClass::detect(),
                    threads: 1,
                };
                let (table, others) = candidates::forward(problem).unwrap();
                let here: Vec<String> = std::iter::once(table.choice)
                    .chain(others)
                    .map(|choice| choice.kernel_id(&geometry, isa))
                    .collect();
                let mut unique = here.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), here.len(), "{here:?}");
                ids.extend(here);
            }
        }
        for kernel in [
            "-streamed-",
            "-shifted-",
            "-unpacked-",
            "-lanes-",
            "-direct-",
            "-inplace-",
            "-columns-",
            "-im2col-",
        ] {
            assert!(
                ids.iter().any(|id| id.contains(kernel)),
                "no candidate is {kernel}: {ids:?}"
            );
        }
    }

    /// A grouped layer no other test measures (wisdom is per process: each test its own
    /// problem). Grouped, not depthwise: its bodies and packings compete on every tier,
    /// where a depthwise layer's AVX2 choice can be the unpacked kernel, whose order of sums
    /// no other kernel shares, so that it competes with nothing.
    fn measured_geometry(width: usize) -> Geometry {
        geometry(
            Conv2dParams::new(64, 64, 3)
                .groups(8)
                .padding(Padding::uniform(1))
                .bias(false),
            [1, 64, 10, width],
        )
    }

    fn plan(geometry: &Geometry, planning: Planning) -> KernelPlan {
        let weight = vec![0.25f32; geometry.weight_count()];
        let options = Options::default().threads(1).planning(planning);
        KernelPlan::new(geometry, &weight, None, options).unwrap()
    }

    #[test]
    fn a_measured_plan_times_the_candidates_and_records_the_winner() {
        let geometry = measured_geometry(101);
        let first = plan(
            &geometry,
            Planning::Measure {
                budget: Duration::from_millis(20),
            },
        );
        let measurement = first.measurement().expect("a measured plan says so");
        assert_eq!(measurement.source(), Source::Timed);
        let timings = measurement.timings();
        assert!(timings.len() > 1, "{timings:?}");
        assert_eq!(timings[0].kernel, measurement.table_kernel());
        assert!(timings[0].runs >= 1 && timings[0].best.is_some());
        assert!(measurement.table_ratio().unwrap() >= 1.0);
        assert!(
            timings
                .iter()
                .any(|timing| timing.kernel == first.kernel_id())
        );
        match first.kernel_id() == measurement.table_kernel() {
            true => assert_ne!(first.rule().name(), "measured"),
            false => assert_eq!(first.rule().name(), "measured"),
        }
        assert!(
            format!("{first:?}").contains("planning: \"timed "),
            "{first:?}"
        );

        // The next plan of the problem reads the wisdom: the same kernel, no timing.
        let second = plan(
            &geometry,
            Planning::Measure {
                budget: Duration::from_millis(20),
            },
        );
        assert_eq!(second.measurement().unwrap().source(), Source::Wisdom);
        assert_eq!(second.kernel_id(), first.kernel_id());
        let from_wisdom = plan(&geometry, Planning::Wisdom);
        assert_eq!(from_wisdom.kernel_id(), first.kernel_id());
        // The table never reads it.
        assert!(plan(&geometry, Planning::Table).measurement().is_none());
    }

    #[test]
    fn without_budget_only_the_tables_choice_runs_and_it_is_kept() {
        let geometry = measured_geometry(102);
        let chosen = plan(
            &geometry,
            Planning::Measure {
                budget: Duration::ZERO,
            },
        );
        let timings = chosen.measurement().unwrap().timings();
        assert_eq!(timings[0].runs, 1, "{timings:?}");
        assert!(
            timings[1..]
                .iter()
                .all(|timing| timing.runs == 0 && timing.best.is_none())
        );
        assert_eq!(chosen.kernel_id(), timings[0].kernel);
        assert_eq!(
            chosen.kernel_id(),
            plan(&geometry, Planning::Table).kernel_id()
        );
    }

    #[test]
    fn recorded_wisdom_steers_the_plan_and_a_stale_kernel_is_ignored() {
        let geometry = measured_geometry(103);
        let table = plan(&geometry, Planning::Table);
        let problem = Problem {
            geometry: &geometry,
            isa: table.isa(),
            cpu: table.cpu_class(),
            threads: 1,
        };
        let (_, others) = candidates::forward(problem).unwrap();
        let other = others[0].kernel_id(&geometry, table.isa());
        let key = Key::new(&geometry, table.isa(), table.cpu_class(), 1);

        Wisdom::global().record(key.clone(), other.clone(), 1);
        let steered = plan(&geometry, Planning::Wisdom);
        assert_eq!(steered.kernel_id(), other);
        assert_eq!(steered.rule().name(), "measured");
        assert_eq!(steered.measurement().unwrap().source(), Source::Wisdom);

        Wisdom::global().record(key, "dwconv-from-another-version".to_string(), 1);
        let stale = plan(&geometry, Planning::Wisdom);
        assert_eq!(stale.kernel_id(), table.kernel_id());
        assert!(stale.measurement().is_none());
    }

    #[test]
    fn another_kernel_wins_only_by_more_than_the_margin() {
        let micros = |values: &[Option<u64>]| -> Vec<Option<Duration>> {
            values
                .iter()
                .map(|value| value.map(Duration::from_micros))
                .collect()
        };
        // 3 % faster is noise; 4 % wins; the fastest of several wins; unrun ones never do.
        assert_eq!(winner(&micros(&[Some(100), Some(97)])), 0);
        assert_eq!(winner(&micros(&[Some(100), Some(96)])), 1);
        assert_eq!(winner(&micros(&[Some(100), Some(90), Some(80), None])), 2);
        assert_eq!(winner(&micros(&[Some(100), None, Some(120)])), 0);
        assert_eq!(winner(&micros(&[Some(100)])), 0);
    }

    #[test]
    fn the_synthetic_data_is_finite_nonzero_and_fixed() {
        let values = synthetic(10_000).unwrap();
        assert!(
            values
                .iter()
                .all(|v| v.is_finite() && *v != 0.0 && v.abs() < 1.0)
        );
        assert_eq!(values, synthetic(10_000).unwrap());
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
