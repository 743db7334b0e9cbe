//! `agentbox-bench`: measures an `agentbox serve` it starts itself, each figure next to a
//! baseline measured in the same run on the same disk, and prints one report.
//!
//! Sections: throughput of raw PUT/GET, the small-file PUT rate, snapshot create and
//! restore times, and the server's memory during a large upload. Progress goes to stderr,
//! the report to stdout. `bench/run.sh` builds everything in release mode and runs this.
//!
//! `agentbox-bench fs` is the filesystem benchmark instead: an agentbox FUSE mount next to
//! ext4 and JuiceFS (see [`filesystem`]). `agentbox-bench run` is the run benchmark: hello
//! world through the API next to the same sandbox started bare (see [`runs`]).
//! `agentbox-bench browser` measures browser sessions next to a cold launch of the same
//! Chromium (see [`browsers`]).

mod browsers;
mod filesystem;
mod http;
mod parallel;
mod random;
mod report;
mod runs;
mod server;
mod stats;
mod storage;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::http::Client;
use crate::random::RandomBytes;
use crate::server::Server;
use crate::storage::{Context, Plan};

/// Benchmark agentbox against direct disk I/O on the same machine.
#[derive(Debug, Parser)]
#[command(name = "agentbox-bench", args_conflicts_with_subcommands = true)]
struct Args {
    /// Another benchmark instead of the storage one.
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Directory in which the server's data directory, the in-process store and the
    /// baseline files are created, all on the same disk (removed at the end).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The agentbox binary to start [default: `agentbox` next to this binary].
    #[arg(long)]
    agentbox: Option<PathBuf>,
    /// Concurrent clients where a section uses several.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Fewer repetitions and only the 1,000-file tree: checks that everything works; not
    /// figures to quote.
    #[arg(long)]
    quick: bool,
    /// Keep the temporary directory (and the server's log) instead of removing it.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The filesystem benchmark: fio and small-file workloads on an `agentbox mount`, a
    /// plain ext4 directory and a JuiceFS mount, side by side.
    Fs(filesystem::Options),
    /// The run benchmark: hello world through `POST /v1/compute/run` for each runtime,
    /// next to the same sandbox started bare (the same bwrap flags, no server).
    Run(runs::Options),
    /// The browser benchmark: session create, screenshot and memory per idle session, next
    /// to the same Chromium launched by hand.
    Browser(browsers::Options),
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = match args.mode.take() {
        Some(Mode::Fs(options)) => filesystem::run(options),
        Some(Mode::Run(options)) => runs::run(options),
        Some(Mode::Browser(options)) => browsers::run(options),
        None => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agentbox-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let binary = server::agentbox_binary(args.agentbox.as_deref())?;
    let plan = if args.quick {
        Plan::quick(args.threads)
    } else {
        Plan::full(args.threads)
    };
    let work = tempfile::Builder::new()
        .prefix("agentbox-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a directory in {}", args.dir.display()))?;
    let data_dir = work.path().join("server-data");
    let baseline_dir = work.path().join("baseline");
    let store_dir = work.path().join("store");
    for dir in [&data_dir, &baseline_dir, &store_dir] {
        fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    eprintln!(
        "starting {} serve in {}",
        binary.display(),
        data_dir.display()
    );
    let server = Server::start(&binary, &data_dir, &work.path().join("server.log"))?;
    let ctx = Context {
        server: &server,
        client: Client::new(&server.url, &server.key),
        baseline_dir,
        store_dir,
        plan,
        seed: RandomBytes::from_clock().next_u64(),
    };
    // Memory first, on the fresh server, so that idle means idle.
    let sections = (|| -> Result<_> {
        let memory = storage::memory::run(&ctx)?;
        let throughput = storage::throughput::run(&ctx)?;
        let small_files = storage::small_files::run(&ctx)?;
        let snapshots = storage::snapshots::run(&ctx)?;
        Ok([throughput, small_files, snapshots, memory])
    })();
    let sections = match sections {
        Ok(sections) => sections,
        Err(error) => {
            eprintln!("the server's log ends with:\n{}\n", server.log_tail());
            return Err(error);
        }
    };
    let threads = ctx.plan.threads;
    drop(ctx);
    let pid = server.pid();
    server.stop()?;

    report::print_title("", args.quick);
    let filesystem = storage::disk::filesystem_of(work.path()).unwrap_or_else(|| "?".to_string());
    println!("  machine    {}", report::machine());
    println!(
        "  disk       {} ({filesystem}): server data, in-process store and baseline files",
        work.path().display()
    );
    println!(
        "  server     {} serve, default options (durable writes), pid {pid}",
        binary.display()
    );
    println!("  clients    {} threads where concurrent", threads);
    println!("  run time   {:.0} s", started.elapsed().as_secs_f64());
    for section in sections {
        println!();
        print!("{section}");
    }
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}
