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

/// Samples and errors of one run.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(Metric, usize), Vec<f64>>,
    errors: BTreeMap<(Metric, usize), String>,
}

impl Results {
    pub fn push(&mut self, metric: Metric, column: usize, value: f64) {
        self.samples
            .entry((metric, column))
            .or_default()
            .push(value);
    }

    /// Records that a step measuring `metrics` failed on `column`; the first error stays.
    pub fn fail(&mut self, metrics: &[Metric], column: usize, error: String) {
        for &metric in metrics {
            self.errors
                .entry((metric, column))
                .or_insert_with(|| error.clone());
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

    pub fn failed(&self, metric: Metric, column: usize) -> bool {
        self.errors.contains_key(&(metric, column))
    }

    pub fn any_error(&self, column: usize) -> bool {
        self.errors.keys().any(|&(_, c)| c == column)
    }

    /// Each distinct error of a column once, in metric order.
    pub fn errors_of(&self, column: usize) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for ((_, c), error) in &self.errors {
            if *c == column && !seen.contains(&error.as_str()) {
                seen.push(error);
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

        results.push(Metric::SeqRead, 1, 5.0);
        results.fail(&[Metric::SeqWrite, Metric::SeqRead], 1, "boom".into());
        results.fail(&[Metric::SeqRead], 1, "later".into());
        assert_eq!(results.median(Metric::SeqRead, 1), None);
        assert!(results.any_error(1) && !results.any_error(0));
        assert_eq!(results.errors_of(1), vec!["boom"]);
    }
}
