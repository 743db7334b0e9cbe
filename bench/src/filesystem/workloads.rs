//! Running each workload on every column, round after round, the columns taking turns at
//! going first. A step that fails on one column is recorded against it and the others go
//! on; only an interruption stops the run.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::cache::Settler;
use super::column::Column;
use super::fio::{self, Job, Pattern};
use super::results::{Failure, Metric, Results};
use super::{Plan, files, interrupt};
use crate::random::RandomBytes;
use crate::report;

const MIB: u64 = 1024 * 1024;
/// The files of the fio workloads, in each column's directory.
const SEQ_FILE: &str = "seq.dat";
const RAND_FILE: &str = "rand.dat";

/// Everything a workload needs besides the columns and where its figures go.
struct Run<'a> {
    plan: &'a Plan,
    settler: &'a Settler,
    fio: &'a Path,
    /// Where fio's reports go: the benchmark's own directory, not a column.
    scratch: &'a Path,
}

/// Runs every workload on every column that could be set up.
pub fn run_all(
    columns: &mut [Column],
    plan: &Plan,
    settler: &Settler,
    fio: &Path,
    scratch: &Path,
    results: &mut Results,
) -> Result<()> {
    let run = Run {
        plan,
        settler,
        fio,
        scratch,
    };
    let mut rng = RandomBytes::from_clock();
    for round in 0..plan.seq_rounds {
        for c in order(round, columns.len()) {
            let label = format!("sequential {}/{}", round + 1, plan.seq_rounds);
            let metrics = [Metric::SeqWrite, Metric::SeqRead];
            attempt(
                results,
                &metrics,
                &mut columns[c],
                c,
                &label,
                |root, results| sequential(&run, root, c, results),
            )?;
            remove_quietly(&columns[c], SEQ_FILE);
        }
    }
    for round in 0..plan.rand_rounds {
        for c in order(round, columns.len()) {
            let label = format!("random {}/{}", round + 1, plan.rand_rounds);
            let metrics = [Metric::RandReadIops, Metric::RandReadMib];
            attempt(
                results,
                &metrics,
                &mut columns[c],
                c,
                &label,
                |root, results| random_read(&run, root, c, results),
            )?;
            let metrics = [Metric::RandWriteIops, Metric::RandWriteMib];
            attempt(
                results,
                &metrics,
                &mut columns[c],
                c,
                &label,
                |root, results| random_write(&run, root, c, results),
            )?;
            remove_quietly(&columns[c], RAND_FILE);
        }
    }
    for round in 0..plan.file_rounds {
        for c in order(round, columns.len()) {
            let label = format!("small files {}/{}", round + 1, plan.file_rounds);
            let metrics = [
                Metric::Create,
                Metric::Stat,
                Metric::ReaddirTime,
                Metric::ReaddirRate,
                Metric::Unlink,
            ];
            // Fresh content for every round and column: nothing deduplicates.
            let contents: Vec<Vec<u8>> =
                (0..plan.files).map(|_| rng.bytes(plan.file_size)).collect();
            attempt(
                results,
                &metrics,
                &mut columns[c],
                c,
                &label,
                |root, results| small_files(&run, root, round, &contents, c, results),
            )?;
        }
    }
    Ok(())
}

/// The column order of a round: each column goes first in turn.
fn order(round: usize, columns: usize) -> impl Iterator<Item = usize> {
    (0..columns).map(move |i| (round + i) % columns)
}

/// Runs one step on one column unless the column is missing or already failed at it;
/// records a failure and carries on, except when the run was interrupted.
fn attempt(
    results: &mut Results,
    metrics: &[Metric],
    column: &mut Column,
    index: usize,
    label: &str,
    step: impl FnOnce(&Path, &mut Results) -> Result<String>,
) -> Result<()> {
    interrupt::check()?;
    let Some(root) = column.root.clone() else {
        return Ok(());
    };
    if metrics.iter().any(|&m| results.failed(m, index)) {
        return Ok(());
    }
    match column.check().and_then(|()| step(&root, results)) {
        Ok(summary) => eprintln!("{label}: {}: {summary}", column.name),
        Err(error) => {
            interrupt::check()?;
            let cell = if error.downcast_ref::<fio::TimedOut>().is_some() {
                "timed out"
            } else {
                "failed"
            };
            let message = format!("{label}: {error:#}");
            eprintln!("{}: FAILED: {message}", column.name);
            results.fail(metrics, index, Failure { cell, message });
        }
    }
    Ok(())
}

/// Removes a workload's file if a failed step left it behind.
fn remove_quietly(column: &Column, name: &str) {
    if let Some(root) = &column.root {
        let _ = std::fs::remove_file(root.join(name));
    }
}

fn sequential(run: &Run, root: &Path, c: usize, results: &mut Results) -> Result<String> {
    let file = root.join(SEQ_FILE);
    let job = |pattern| Job {
        pattern,
        file: file.clone(),
        block_size: MIB,
        size: run.plan.seq_size,
        seconds: None,
    };
    run.settler.settle()?;
    let write = job(Pattern::Write).run(run.fio, run.scratch)?;
    run.settler.settle()?;
    let read = job(Pattern::Read).run(run.fio, run.scratch)?;
    std::fs::remove_file(&file)?;
    results.push(Metric::SeqWrite, c, write.mib_per_second());
    results.push(Metric::SeqRead, c, read.mib_per_second());
    Ok(format!(
        "write {} MiB/s, read {} MiB/s",
        report::number(write.mib_per_second()),
        report::number(read.mib_per_second())
    ))
}

/// The sequential write that lays out the random workloads' file.
fn layout(run: &Run, root: &Path) -> Job {
    Job {
        pattern: Pattern::Write,
        file: root.join(RAND_FILE),
        block_size: MIB,
        size: run.plan.rand_size,
        seconds: None,
    }
}

fn random_job(run: &Run, root: &Path, pattern: Pattern) -> Job {
    Job {
        pattern,
        block_size: 4096,
        seconds: Some(run.plan.rand_seconds),
        ..layout(run, root)
    }
}

fn random_read(run: &Run, root: &Path, c: usize, results: &mut Results) -> Result<String> {
    run.settler.settle()?;
    layout(run, root).run(run.fio, run.scratch)?;
    run.settler.settle()?;
    let read = random_job(run, root, Pattern::RandRead).run(run.fio, run.scratch)?;
    results.push(Metric::RandReadIops, c, read.iops);
    results.push(Metric::RandReadMib, c, read.mib_per_second());
    Ok(format!("randread {} IOPS", report::number(read.iops)))
}

fn random_write(run: &Run, root: &Path, c: usize, results: &mut Results) -> Result<String> {
    let laid_out =
        std::fs::metadata(root.join(RAND_FILE)).is_ok_and(|meta| meta.len() >= run.plan.rand_size);
    if !laid_out {
        run.settler.settle()?;
        layout(run, root).run(run.fio, run.scratch)?;
    }
    run.settler.settle()?;
    let write = random_job(run, root, Pattern::RandWrite).run(run.fio, run.scratch)?;
    results.push(Metric::RandWriteIops, c, write.iops);
    results.push(Metric::RandWriteMib, c, write.mib_per_second());
    Ok(format!("randwrite {} IOPS", report::number(write.iops)))
}

fn small_files(
    run: &Run,
    root: &Path,
    round: usize,
    contents: &[Vec<u8>],
    c: usize,
    results: &mut Results,
) -> Result<String> {
    run.settler.settle()?;
    let started = Instant::now();
    let t = files::round(&root.join(format!("files-{round}")), contents)?;
    let n = contents.len() as f64;
    results.push(Metric::Create, c, n / t.create);
    results.push(Metric::Stat, c, n / t.stat);
    results.push(Metric::ReaddirTime, c, t.readdir);
    results.push(Metric::ReaddirRate, c, n / t.readdir);
    results.push(Metric::Unlink, c, n / t.unlink);
    Ok(format!(
        "create {} files/s, stat {}/s, readdir {}, unlink {} files/s ({:.1} s)",
        report::number(n / t.create),
        report::number(n / t.stat),
        report::millis(t.readdir),
        report::number(n / t.unlink),
        started.elapsed().as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_goes_first_in_turn() {
        let firsts: Vec<usize> = (0..3).map(|r| order(r, 3).next().unwrap()).collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        let mut round: Vec<usize> = order(4, 3).collect();
        round.sort();
        assert_eq!(round, vec![0, 1, 2]);
    }
}
