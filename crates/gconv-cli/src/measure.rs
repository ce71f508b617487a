//! Repeating a run until a minimum time has passed, and summarising it by its median.

use std::time::{Duration, Instant};

/// The timings of repeated runs of one thing.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Every run's wall time, sorted.
    pub runs: Vec<Duration>,
}

impl Timings {
    /// The median run time.
    pub fn median(&self) -> Duration {
        let middle = self.runs.len() / 2;
        if self.runs.len() % 2 == 1 {
            self.runs[middle]
        } else {
            (self.runs[middle - 1] + self.runs[middle]) / 2
        }
    }

    /// `flops` divided by the median time, in GFLOP/s.
    pub fn gflops(&self, flops: u64) -> f64 {
        flops as f64 / self.median().as_secs_f64() / 1e9
    }
}

/// Runs `work` once to warm up, then repeatedly until `min_time` has passed and at least
/// `min_runs` runs were timed.
pub fn repeat(min_time: Duration, min_runs: usize, mut work: impl FnMut()) -> Timings {
    work();
    let start = Instant::now();
    let mut runs = Vec::new();
    while runs.len() < min_runs.max(1) || start.elapsed() < min_time {
        let begin = Instant::now();
        work();
        runs.push(begin.elapsed());
    }
    runs.sort();
    Timings { runs }
}

/// A duration as a short human string: `812 µs`, `12.3 ms`, `1.52 s`.
pub fn human(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1e3 {
        format!("{micros:.1} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        let odd = Timings {
            runs: vec![ms(1), ms(2), ms(10)],
        };
        assert_eq!(odd.median(), ms(2));
        let even = Timings {
            runs: vec![ms(1), ms(2), ms(4), ms(10)],
        };
        assert_eq!(even.median(), ms(3));
        assert!((even.gflops(3_000_000) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn repeat_runs_at_least_the_minimum() {
        let mut count = 0;
        let timings = repeat(Duration::ZERO, 5, || count += 1);
        assert_eq!(timings.runs.len(), 5);
        assert_eq!(count, 6, "one warm-up run plus five timed runs");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_micros(812)), "812.0 µs");
        assert_eq!(human(Duration::from_micros(12_300)), "12.30 ms");
        assert_eq!(human(Duration::from_millis(1520)), "1.52 s");
    }
}
