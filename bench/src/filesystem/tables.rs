//! The report: one table per workload with the columns side by side and agentbox's speed
//! relative to the others, then the targets with PASS or MISS.

use super::Plan;
use super::cache::Settler;
use super::column::{AGENTBOX, Column, EXT4, FLOOR, JUICEFS};
use super::results::{Metric, Results};
use crate::report::{self, Table};

/// A target from the filesystem's issue, met by the agentbox column.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// At least this many per second.
    Rate(f64),
    /// At least this fraction of ext4's figure.
    OfExt4(f64),
}

/// Rounds whose largest figure is more than this many times their smallest are pointed out.
const NOISY: f64 = 2.0;

const TARGETS: [(&str, Metric, Target); 4] = [
    (
        "create+write 2.7 KB files",
        Metric::Create,
        Target::Rate(10_000.0),
    ),
    ("stat", Metric::Stat, Target::Rate(50_000.0)),
    ("sequential read", Metric::SeqRead, Target::OfExt4(0.5)),
    ("sequential write", Metric::SeqWrite, Target::OfExt4(0.8)),
];

/// The three workload tables.
pub fn sections(
    plan: &Plan,
    columns: &[Column],
    results: &Results,
    settler: &Settler,
) -> Vec<Table> {
    let read_label = if settler.drops() {
        "read, caches dropped first"
    } else {
        "read (caches NOT dropped)"
    };
    let sequential = side_by_side(
        format!(
            "1. Sequential I/O: one {} file, fio bs=1M, median of {} (MiB/s)",
            report::size_label(plan.seq_size as usize),
            plan.seq_rounds
        ),
        columns,
        results,
        &[
            ("write, fsync at end", Metric::SeqWrite),
            (read_label, Metric::SeqRead),
        ],
        &[
            "write: a new file, fio --rw=write --end_fsync=1 (the fsync is timed)",
            "read: the same file, fio --rw=read, after sync and dropping caches",
        ],
    );

    let random = side_by_side(
        format!(
            "2. Random 4 KiB I/O: a {} file, fio psync iodepth 1, {} s each{}",
            report::size_label(plan.rand_size as usize),
            plan.rand_seconds,
            if plan.rand_rounds > 1 {
                format!(", median of {}", plan.rand_rounds)
            } else {
                String::new()
            }
        ),
        columns,
        results,
        &[
            ("randread IOPS", Metric::RandReadIops),
            ("randread MiB/s", Metric::RandReadMib),
            ("randwrite IOPS", Metric::RandWriteIops),
            ("randwrite MiB/s", Metric::RandWriteMib),
        ],
        &[
            "the file is written sequentially first; caches are dropped before each job",
            "randwrite fsyncs at its end (timed); offsets follow fio's fixed random sequence",
        ],
    );

    let small = side_by_side(
        format!(
            "3. Small files: {} files of {} bytes in one directory, std::fs, median of {}",
            report::thousands(plan.files as i64),
            report::thousands(plan.file_size as i64),
            plan.file_rounds
        ),
        columns,
        results,
        &[
            ("create+write files/s", Metric::Create),
            ("stat /s", Metric::Stat),
            ("readdir ms", Metric::ReaddirTime),
            ("readdir entries/s", Metric::ReaddirRate),
            ("unlink files/s", Metric::Unlink),
        ],
        &[
            "create+write: File::create, write_all, close (no fsync); stat: fs::metadata",
            "readdir: fs::read_dir of the whole directory; unlink: fs::remove_file",
            "caches are dropped before the creates only; the phases follow one another",
            "ratios compare speeds throughout: above 1.00x, agentbox is faster",
        ],
    );
    vec![sequential, random, small]
}

/// One table: a row per metric, a figure per column, agentbox's speed relative to the
/// others; then `notes`, then which rounds disagreed a lot.
fn side_by_side(
    title: String,
    columns: &[Column],
    results: &Results,
    rows: &[(&str, Metric)],
    notes: &[&str],
) -> Table {
    let mut headers: Vec<&str> = vec![""];
    headers.extend(columns.iter().map(|c| c.name));
    headers.extend(["agentbox/ext4", "agentbox/JuiceFS", "agentbox/floor"]);
    let mut table = Table::new(title, &headers);
    let mut noisy = Vec::new();
    for &(label, metric) in rows {
        let mut cells = vec![label.to_string()];
        cells.extend((0..columns.len()).map(|c| cell(columns, results, metric, c)));
        cells.push(speed_ratio(results, metric, AGENTBOX, EXT4));
        cells.push(speed_ratio(results, metric, AGENTBOX, JUICEFS));
        cells.push(speed_ratio(results, metric, AGENTBOX, FLOOR));
        table.row(cells);
        for (c, column) in columns.iter().enumerate() {
            if let Some((min, max)) = results.spread(metric, c)
                && max > NOISY * min
            {
                let (min, max) = if metric.is_time() {
                    (min * 1000.0, max * 1000.0)
                } else {
                    (min, max)
                };
                noisy.push(format!(
                    "{} {label} {} - {}",
                    column.name,
                    report::number(min),
                    report::number(max)
                ));
            }
        }
    }
    for &note in notes {
        table.note(note);
    }
    if !noisy.is_empty() {
        table.note(format!(
            "rounds differed by more than {NOISY}x (a noisy disk or a busy machine): {}",
            noisy.join("; ")
        ));
    }
    table
}

fn cell(columns: &[Column], results: &Results, metric: Metric, column: usize) -> String {
    if columns[column].root.is_none() {
        return "n/a".to_string();
    }
    if let Some(failure) = results.failure(metric, column) {
        return failure.cell.to_string();
    }
    match results.median(metric, column) {
        Some(seconds) if metric.is_time() => report::number(seconds * 1000.0),
        Some(value) => report::number(value),
        None => "-".to_string(),
    }
}

/// How many times as fast `a` is as `b` (for times, the inverse ratio).
fn speed_ratio(results: &Results, metric: Metric, a: usize, b: usize) -> String {
    match (results.median(metric, a), results.median(metric, b)) {
        (Some(x), Some(y)) if metric.is_time() => times(y / x),
        (Some(x), Some(y)) => times(x / y),
        _ => "n/a".to_string(),
    }
}

/// A ratio such as `0.52x`, with more decimals when it is small: `0.0031x`.
fn times(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_string()
    } else if value < 0.01 {
        format!("{value:.4}x")
    } else if value < 0.1 {
        format!("{value:.3}x")
    } else {
        format!("{value:.2}x")
    }
}

/// The targets and whether the agentbox column meets them, then any failures.
pub fn targets(columns: &[Column], results: &Results) -> Table {
    let mut table = Table::new(
        "Targets (issue 3), agentbox column",
        &["", "required", "measured", "verdict"],
    );
    let mut met = 0;
    for (label, metric, target) in TARGETS {
        let agentbox = results.median(metric, AGENTBOX);
        let (required, measured) = match target {
            Target::Rate(rate) => (
                format!(">= {}/s", report::number(rate)),
                agentbox.map(|value| (value, format!("{}/s", report::number(value)))),
            ),
            Target::OfExt4(fraction) => (
                format!(">= {fraction:.2}x ext4"),
                agentbox
                    .zip(results.median(metric, EXT4))
                    .map(|(value, ext4)| (value / ext4, report::ratio(value, ext4))),
            ),
        };
        let goal = match target {
            Target::Rate(rate) => rate,
            Target::OfExt4(fraction) => fraction,
        };
        let (measured, verdict) = match measured {
            Some((value, text)) if value >= goal => {
                met += 1;
                (text, "PASS")
            }
            Some((_, text)) => (text, "MISS"),
            None => ("n/a".to_string(), "n/a"),
        };
        table.row(vec![
            label.to_string(),
            required,
            measured,
            verdict.to_string(),
        ]);
    }
    table.note(format!("{met} of {} targets met", TARGETS.len()));
    let agentbox = &columns[AGENTBOX];
    if agentbox.root.is_some() && agentbox.about.contains("--agentbox-dir") {
        table.note("the agentbox column is a directory given with --agentbox-dir, not a mount");
    }
    for (c, column) in columns.iter().enumerate() {
        if column.root.is_none() {
            table.note(format!("{}: {}", column.name, indent(&column.about)));
        }
        for error in results.errors_of(c) {
            table.note(format!("{} failed: {}", column.name, indent(error)));
        }
    }
    table
}

/// Indents the continuation lines of a multi-line message under a note.
fn indent(message: &str) -> String {
    message.replace('\n', "\n      ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_ratios_invert_times() {
        let mut results = Results::default();
        results.push(Metric::ReaddirTime, AGENTBOX, 0.002);
        results.push(Metric::ReaddirTime, EXT4, 0.001);
        results.push(Metric::Create, AGENTBOX, 20_000.0);
        results.push(Metric::Create, EXT4, 40_000.0);
        assert_eq!(
            speed_ratio(&results, Metric::ReaddirTime, AGENTBOX, EXT4),
            "0.50x"
        );
        assert_eq!(
            speed_ratio(&results, Metric::Create, AGENTBOX, EXT4),
            "0.50x"
        );
        assert_eq!(
            speed_ratio(&results, Metric::Create, AGENTBOX, JUICEFS),
            "n/a"
        );
    }
}
