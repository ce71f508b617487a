//! `gconv compare`: two saved criterion baselines side by side, benchmark by benchmark, and a
//! verdict a regression job can act on.
//!
//! criterion keeps, for every benchmark and baseline, the bootstrap confidence interval of
//! the median time (`<criterion dir>/<benchmark>/<baseline>/estimates.json`). The change from
//! baseline to candidate is bracketed by the two intervals: at best the candidate's lower
//! bound over the baseline's upper bound, at worst the other way round. A benchmark counts as
//! slower only when even the best case is slower by more than the threshold, so noise that
//! the intervals cover never fails a job, and a real change larger than the threshold plus
//! the noise always does.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline saved first (`cargo bench -p gconv-benches -- --save-baseline NAME`).
    baseline: String,
    /// The baseline to judge against it.
    candidate: String,
    /// criterion's output directory (default: $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion,
    /// else target/criterion).
    #[arg(long, value_name = "DIR")]
    criterion_dir: Option<PathBuf>,
    /// Fail when a benchmark is slower by more than this many percent beyond the noise.
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "PERCENT",
        default_value_t = 5.0
    )]
    threshold: f64,
    /// Do not fail when a benchmark of the baseline is missing from the candidate.
    #[arg(long)]
    allow_missing: bool,
}

/// criterion's estimate of one benchmark's median time in one baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Point estimate of the median, in nanoseconds.
    pub median_ns: f64,
    /// The confidence interval of the median, in nanoseconds.
    pub interval_ns: (f64, f64),
    /// Floating-point operations per iteration, when the benchmark declared them.
    pub flops: Option<u64>,
}

/// What happened to one benchmark between the two baselines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Slower by more than the threshold even at the best reading of both intervals.
    Slower,
    /// Faster by more than the threshold even at the worst reading.
    Faster,
    /// No change beyond the threshold that the intervals can tell from noise.
    Unchanged,
    /// In the baseline only.
    Missing,
    /// In the candidate only.
    New,
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// criterion's full id, `network/layer/avx512/t1`.
    pub benchmark: String,
    pub baseline: Option<Estimate>,
    pub candidate: Option<Estimate>,
    /// The change of the median time in percent, with its bracketing interval.
    pub change: Option<(f64, (f64, f64))>,
    pub verdict: Verdict,
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    ensure!(
        args.threshold.is_finite() && args.threshold >= 0.0,
        "--threshold must be a non-negative number of percent, got {}",
        args.threshold
    );
    let directory = args.criterion_dir.clone().unwrap_or_else(default_directory);
    let baseline = load_baseline(&directory, &args.baseline)?;
    let candidate = load_baseline(&directory, &args.candidate)?;
    let rows = compare_baselines(&baseline, &candidate, args.threshold);
    print_table(&rows, args)?;
    let count = |verdict| rows.iter().filter(|row| row.verdict == verdict).count();
    let (slower, missing) = (count(Verdict::Slower), count(Verdict::Missing));
    if slower > 0 {
        bail!(
            "{slower} of {} benchmarks are slower by more than {}% beyond the noise",
            rows.len(),
            args.threshold
        );
    }
    if missing > 0 && !args.allow_missing {
        bail!(
            "{missing} benchmarks of '{}' are missing from '{}' (--allow-missing accepts that)",
            args.baseline,
            args.candidate
        );
    }
    Ok(())
}

fn default_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

/// Every benchmark under `directory` saved as baseline `name`, by criterion's full id.
pub fn load_baseline(directory: &Path, name: &str) -> Result<BTreeMap<String, Estimate>> {
    ensure!(
        !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
        "'{name}' is not a baseline name"
    );
    ensure!(
        directory.is_dir(),
        "{} is not a directory of criterion results (run `cargo bench -p gconv-benches` first, or pass --criterion-dir)",
        directory.display()
    );
    let mut estimates = BTreeMap::new();
    collect(directory, name, 0, &mut estimates)?;
    ensure!(
        !estimates.is_empty(),
        "no benchmark under {} was saved as baseline '{name}' (save one with `cargo bench -p gconv-benches -- --save-baseline {name}`)",
        directory.display()
    );
    Ok(estimates)
}

/// criterion nests benchmark directories as group/function/value: a few levels suffice, and
/// the bound keeps a symlink loop from running forever.
const MAX_DEPTH: usize = 8;

fn collect(
    directory: &Path,
    name: &str,
    depth: usize,
    estimates: &mut BTreeMap<String, Estimate>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let entries =
        fs::read_dir(directory).with_context(|| format!("cannot read {}", directory.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", directory.display()))?;
        let path = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) || entry.file_name() == "report" {
            continue;
        }
        if entry.file_name() == name && path.join("estimates.json").is_file() {
            let (id, estimate) = read_estimate(&path)
                .with_context(|| format!("unreadable criterion results in {}", path.display()))?;
            estimates.insert(id, estimate);
        } else {
            collect(&path, name, depth + 1, estimates)?;
        }
    }
    Ok(())
}

/// Reads `benchmark.json` (the id and throughput) and `estimates.json` (the median) of one
/// benchmark's baseline directory.
fn read_estimate(directory: &Path) -> Result<(String, Estimate)> {
    let read_json = |file: &str| -> Result<Value> {
        let path = directory.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let benchmark = read_json("benchmark.json")?;
    let estimates = read_json("estimates.json")?;
    let id = benchmark["full_id"]
        .as_str()
        .context("benchmark.json has no full_id")?
        .to_string();
    let number = |value: &Value, what: &str| {
        value
            .as_f64()
            .filter(|number| number.is_finite() && *number > 0.0)
            .with_context(|| format!("estimates.json: {what} is not a positive number"))
    };
    let median = &estimates["median"];
    let interval = &median["confidence_interval"];
    let estimate = Estimate {
        median_ns: number(&median["point_estimate"], "median.point_estimate")?,
        interval_ns: (
            number(
                &interval["lower_bound"],
                "median.confidence_interval.lower_bound",
            )?,
            number(
                &interval["upper_bound"],
                "median.confidence_interval.upper_bound",
            )?,
        ),
        flops: benchmark["throughput"]["Elements"].as_u64(),
    };
    Ok((id, estimate))
}

/// Pairs the benchmarks of two baselines and judges each change against `threshold` percent.
pub fn compare_baselines(
    baseline: &BTreeMap<String, Estimate>,
    candidate: &BTreeMap<String, Estimate>,
    threshold: f64,
) -> Vec<Row> {
    let mut ids: Vec<&String> = baseline.keys().chain(candidate.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let (before, after) = (baseline.get(id).copied(), candidate.get(id).copied());
            let (change, verdict) = match (before, after) {
                (Some(before), Some(after)) => {
                    let percent = |after: f64, before: f64| (after / before - 1.0) * 100.0;
                    let point = percent(after.median_ns, before.median_ns);
                    let best = percent(after.interval_ns.0, before.interval_ns.1);
                    let worst = percent(after.interval_ns.1, before.interval_ns.0);
                    let verdict = if best > threshold {
                        Verdict::Slower
                    } else if worst < -threshold {
                        Verdict::Faster
                    } else {
                        Verdict::Unchanged
                    };
                    (Some((point, (best, worst))), verdict)
                }
                (Some(_), None) => (None, Verdict::Missing),
                (None, _) => (None, Verdict::New),
            };
            Row {
                benchmark: id.clone(),
                baseline: before,
                candidate: after,
                change,
                verdict,
            }
        })
        .collect()
}

fn print_table(rows: &[Row], args: &CompareArgs) -> Result<()> {
    let width = rows
        .iter()
        .map(|row| row.benchmark.len())
        .max()
        .unwrap_or(0)
        .max(9);
    out!(
        "{:<width$} {:>12} {:>12} {:>11} {:>20}  verdict (threshold {}%)",
        "benchmark",
        args.baseline,
        args.candidate,
        "time change",
        "interval",
        args.threshold
    );
    for row in rows {
        let time = |estimate: Option<Estimate>| estimate.map_or("-".to_string(), describe);
        let (change, interval) = row
            .change
            .map_or(("-".to_string(), String::new()), |change| {
                let (point, (low, high)) = change;
                (
                    format!("{point:+.1}%"),
                    format!("[{low:+.1}%, {high:+.1}%]"),
                )
            });
        let verdict = match row.verdict {
            Verdict::Slower => "SLOWER",
            Verdict::Faster => "faster",
            Verdict::Unchanged => "no change beyond noise",
            Verdict::Missing => "MISSING from candidate",
            Verdict::New => "new",
        };
        out!(
            "{:<width$} {:>12} {:>12} {:>11} {:>20}  {verdict}",
            row.benchmark,
            time(row.baseline),
            time(row.candidate),
            change,
            interval
        );
    }
    Ok(())
}

/// The median as a time, or as GFLOP/s when the benchmark declared its FLOPs.
fn describe(estimate: Estimate) -> String {
    match estimate.flops {
        Some(flops) => format!("{:.1} GF/s", flops as f64 / estimate.median_ns),
        None => crate::measure::human(std::time::Duration::from_secs_f64(estimate.median_ns / 1e9)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes criterion's two files for one benchmark of one baseline, the way criterion
    /// 0.8 lays them out.
    fn save(root: &Path, id: &str, baseline: &str, median: f64, interval: (f64, f64)) {
        let directory = root.join(id.replace('/', "_")).join(baseline);
        fs::create_dir_all(&directory).unwrap();
        let benchmark = serde_json::json!({
            "group_id": id.split('/').next().unwrap(),
            "full_id": id,
            "throughput": {"Elements": 1_000_000},
        });
        let estimate = |point: f64, (lower, upper): (f64, f64)| {
            serde_json::json!({
                "confidence_interval": {"confidence_level": 0.95, "lower_bound": lower, "upper_bound": upper},
                "point_estimate": point,
                "standard_error": (upper - lower) / 4.0,
            })
        };
        let estimates = serde_json::json!({
            "mean": estimate(median * 1.01, (interval.0 * 1.01, interval.1 * 1.01)),
            "median": estimate(median, interval),
        });
        fs::write(directory.join("benchmark.json"), benchmark.to_string()).unwrap();
        fs::write(directory.join("estimates.json"), estimates.to_string()).unwrap();
    }

    fn verdicts(root: &Path, threshold: f64) -> BTreeMap<String, Verdict> {
        let before = load_baseline(root, "before").unwrap();
        let after = load_baseline(root, "after").unwrap();
        compare_baselines(&before, &after, threshold)
            .into_iter()
            .map(|row| (row.benchmark, row.verdict))
            .collect()
    }

    #[test]
    fn regression_improvement_noise_and_missing_benchmarks() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        // 20 % slower, intervals of ±1 %: slower even at the best reading.
        save(root, "net/slow/avx512/t1", "before", 100.0, (99.0, 101.0));
        save(root, "net/slow/avx512/t1", "after", 120.0, (119.0, 121.0));
        // 20 % faster.
        save(root, "net/fast/avx512/t1", "before", 100.0, (99.0, 101.0));
        save(root, "net/fast/avx512/t1", "after", 80.0, (79.0, 81.0));
        // 8 % slower at the point estimate, but the intervals are ±10 %: noise.
        save(root, "net/noisy/avx512/t1", "before", 100.0, (90.0, 110.0));
        save(root, "net/noisy/avx512/t1", "after", 108.0, (98.0, 118.0));
        // Gone from the candidate; and one only the candidate has.
        save(root, "net/gone/avx512/t1", "before", 100.0, (99.0, 101.0));
        save(root, "net/added/avx512/t1", "after", 100.0, (99.0, 101.0));
        let verdicts = verdicts(root, 5.0);
        assert_eq!(verdicts["net/slow/avx512/t1"], Verdict::Slower);
        assert_eq!(verdicts["net/fast/avx512/t1"], Verdict::Faster);
        assert_eq!(verdicts["net/noisy/avx512/t1"], Verdict::Unchanged);
        assert_eq!(verdicts["net/gone/avx512/t1"], Verdict::Missing);
        assert_eq!(verdicts["net/added/avx512/t1"], Verdict::New);
        assert_eq!(verdicts.len(), 5);
    }

    #[test]
    fn the_threshold_applies_beyond_the_interval() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        // 10 % slower; the best reading (109 / 101) is 7.9 % slower.
        save(root, "net/layer/avx2/t1", "before", 100.0, (99.0, 101.0));
        save(root, "net/layer/avx2/t1", "after", 110.0, (109.0, 111.0));
        assert_eq!(verdicts(root, 5.0)["net/layer/avx2/t1"], Verdict::Slower);
        assert_eq!(verdicts(root, 8.0)["net/layer/avx2/t1"], Verdict::Unchanged);
    }

    #[test]
    fn the_change_and_its_interval_are_reported() {
        let estimate = |median, interval| Estimate {
            median_ns: median,
            interval_ns: interval,
            flops: None,
        };
        let before = BTreeMap::from([("a".to_string(), estimate(100.0, (95.0, 105.0)))]);
        let after = BTreeMap::from([("a".to_string(), estimate(150.0, (147.0, 168.0)))]);
        let row = &compare_baselines(&before, &after, 5.0)[0];
        let (point, (low, high)) = row.change.unwrap();
        assert!((point - 50.0).abs() < 1e-9);
        assert!((low - 40.0).abs() < 1e-9, "147 / 105 = 1.40, got {low}");
        assert!((high - (168.0 / 95.0 - 1.0) * 100.0).abs() < 1e-9);
    }

    #[test]
    fn an_absent_baseline_or_a_damaged_file_is_an_error_that_says_so() {
        let root = tempfile::tempdir().unwrap();
        save(
            root.path(),
            "net/layer/avx2/t1",
            "before",
            100.0,
            (99.0, 101.0),
        );
        let error = format!("{:#}", load_baseline(root.path(), "after").unwrap_err());
        assert!(error.contains("--save-baseline after"), "{error}");
        let estimates = root.path().join("net_layer_avx2_t1/before/estimates.json");
        fs::write(&estimates, "{\"median\": {}}").unwrap();
        let error = format!("{:#}", load_baseline(root.path(), "before").unwrap_err());
        assert!(error.contains("median.point_estimate"), "{error}");
        assert!(load_baseline(root.path(), "../before").is_err());
    }
}
