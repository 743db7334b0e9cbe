//! What was measured, by metric and column, with the errors of the steps that failed.

use std::collections::BTreeMap;

use crate::stats;

/// Everything the report shows a figure for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// MiB/s.
    SeqWrite,
    SeqRead,
    /// Operations per second and MiB/s.
    RandReadIops,
    RandReadMib,
    RandWriteIops,
    RandWriteMib,
    /// Files (or entries) per second.
    Create,
    Stat,
    Unlink,
    ReaddirRate,
    /// Seconds for the whole directory.
    ReaddirTime,
}

impl Metric {
    /// True when a smaller figure is better (a time rather than a rate).
    pub fn is_time(self) -> bool {
        self == Metric::ReaddirTime
    }
}

/// Why a step has no figure.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What the table shows instead of the figure: `failed`, `timed out`.
    pub cell: &'static str,
    pub message: String,
}

/// Samples and errors of one run.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(Metric, usize), Vec<f64>>,
    failures: BTreeMap<(Metric, usize), Failure>,
}

impl Results {
    pub fn push(&mut self, metric: Metric, column: usize, value: f64) {
        self.samples
            .entry((metric, column))
            .or_default()
            .push(value);
    }

    /// Records that a step measuring `metrics` failed on `column`; the first failure stays.
    pub fn fail(&mut self, metrics: &[Metric], column: usize, failure: Failure) {
        for &metric in metrics {
            self.failures
                .entry((metric, column))
                .or_insert_with(|| failure.clone());
        }
    }

    /// The median of the samples, if there are any and the step never failed.
    pub fn median(&self, metric: Metric, column: usize) -> Option<f64> {
        if self.failed(metric, column) {
            return None;
        }
        self.samples
            .get(&(metric, column))
            .filter(|samples| !samples.is_empty())
            .map(|samples| stats::median(samples))
    }

    /// The smallest and largest sample, when there are at least two.
    pub fn spread(&self, metric: Metric, column: usize) -> Option<(f64, f64)> {
        let samples = self.samples.get(&(metric, column))?;
        if samples.len() < 2 {
            return None;
        }
        let summary = stats::Summary::of(samples);
        Some((summary.min, summary.max))
    }

    pub fn failure(&self, metric: Metric, column: usize) -> Option<&Failure> {
        self.failures.get(&(metric, column))
    }

    pub fn failed(&self, metric: Metric, column: usize) -> bool {
        self.failures.contains_key(&(metric, column))
    }

    pub fn any_error(&self, column: usize) -> bool {
        self.failures.keys().any(|&(_, c)| c == column)
    }

    /// Each distinct error message of a column once, in metric order.
    pub fn errors_of(&self, column: usize) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for ((_, c), failure) in &self.failures {
            if *c == column && !seen.contains(&failure.message.as_str()) {
                seen.push(&failure.message);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_failures() {
        let mut results = Results::default();
        for value in [3.0, 1.0, 2.0] {
            results.push(Metric::Create, 0, value);
        }
        assert_eq!(results.median(Metric::Create, 0), Some(2.0));
        assert_eq!(results.median(Metric::Create, 1), None);

        assert_eq!(results.spread(Metric::Create, 0), Some((1.0, 3.0)));

        let failure = |message: &str| Failure {
            cell: "failed",
            message: message.to_string(),
        };
        results.push(Metric::SeqRead, 1, 5.0);
        assert_eq!(results.spread(Metric::SeqRead, 1), None);
        results.fail(&[Metric::SeqWrite, Metric::SeqRead], 1, failure("boom"));
        results.fail(&[Metric::SeqRead], 1, failure("later"));
        assert_eq!(results.median(Metric::SeqRead, 1), None);
        assert!(results.any_error(1) && !results.any_error(0));
        assert_eq!(results.errors_of(1), vec!["boom"]);
    }
}
