//! The run benchmark: the round trip of a hello-world run through `POST /v1/compute/run`
//! for each runtime, and runs per second with concurrent clients, each next to the same
//! sandbox started bare in the same run: [`runner::BareSandbox`], the exact bwrap command
//! line, user and privileges of a run, over the same agent view, without the server, the
//! cgroup or the supervision. The difference is what the API costs.
//!
//! API and bare samples alternate, so that a noisy moment on a shared machine hits both.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::http::Client;
use crate::parallel::for_each_index;
use crate::report::{self, Table};
use crate::server::Server;
use crate::stats::percentile;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Where the server's data directory is created (removed at the end).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The agentbox binary to start [default: `agentbox` next to this binary].
    #[arg(long)]
    agentbox: Option<PathBuf>,
    /// Round trips measured per runtime, for the API and for the bare sandbox each.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Concurrent clients in the throughput section.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Runs per throughput measurement (each measured three times).
    #[arg(long, default_value_t = 400)]
    throughput_runs: usize,
    /// Few samples: checks that everything works; not figures to quote.
    #[arg(long)]
    quick: bool,
}

/// A runtime's hello world, and the most its API p50 may exceed the bare p50 by.
const HELLO: [(runner::Runtime, &str, f64); 3] = [
    (runner::Runtime::Bash, "echo hello", 5.0),
    (runner::Runtime::Python, "print('hello')", 8.0),
    (runner::Runtime::Typescript, "console.log('hello')", 8.0),
];
/// Runs of each kind before measuring (mounts, caches).
const WARM_UP: usize = 5;

pub fn run(mut options: Options) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the run benchmark starts sandboxes as the sandbox user, which needs root"
    );
    if options.quick {
        options.samples = options.samples.min(20);
        options.throughput_runs = options.throughput_runs.min(80);
    }
    let started = Instant::now();
    let binary = crate::server::agentbox_binary(options.agentbox.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("agentbox-run-bench-")
        .tempdir_in(&options.dir)
        .with_context(|| format!("creating a directory in {}", options.dir.display()))?;
    // The sandbox user must reach the agent's view beneath it.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o711))?;
    let data_dir = work.path().join("data");
    eprintln!(
        "starting {} serve in {}",
        binary.display(),
        data_dir.display()
    );
    let server = Server::start(&binary, &data_dir, &work.path().join("server.log"))?;
    let client = Client::new(&server.url, &server.key);
    let result = measure(&options, &client, &data_dir);
    let tables = match result {
        Ok(tables) => tables,
        Err(error) => {
            eprintln!("the server's log ends with:\n{}\n", server.log_tail());
            return Err(error);
        }
    };
    let pid = server.pid();
    server.stop()?;

    report::print_title("run ", options.quick);
    println!("  machine    {}", report::machine());
    println!(
        "  server     {} serve, default options, pid {pid}",
        binary.display()
    );
    println!(
        "  baseline   the same bwrap command line, user and privileges, over the same \
         agent view, started directly (no server, cgroup or supervision)"
    );
    println!("  run time   {:.0} s", started.elapsed().as_secs_f64());
    for table in tables {
        println!();
        print!("{table}");
    }
    Ok(())
}

fn measure(options: &Options, client: &Client, data_dir: &Path) -> Result<Vec<Table>> {
    // A first run mounts the agent's view; the baseline runs over the same mount.
    for (runtime, code, _) in HELLO {
        api_run(client, runtime, code)?;
    }
    let root = agent_view(data_dir)?;
    let config = runner::RunnerConfig::new(61000, 61000);

    let mut latency = Table::new(
        format!(
            "Round trip of hello world, ms ({} samples each, API and bare alternating)",
            options.samples
        ),
        &[
            "runtime",
            "API p50",
            "API p95",
            "bare p50",
            "bare p95",
            "p50 above bare",
            "target",
            "met",
        ],
    );
    for (runtime, code, allowed) in HELLO {
        eprintln!("round trips: {}", runtime.name());
        for _ in 0..WARM_UP {
            api_run(client, runtime, code)?;
            bare_run(&config, &root, runtime, code)?;
        }
        let mut api = Vec::with_capacity(options.samples);
        let mut bare = Vec::with_capacity(options.samples);
        for _ in 0..options.samples {
            let t = Instant::now();
            api_run(client, runtime, code)?;
            api.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            bare_run(&config, &root, runtime, code)?;
            bare.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let over = percentile(&api, 50.0) - percentile(&bare, 50.0);
        latency.row(vec![
            runtime.name().to_string(),
            format!("{:.1}", percentile(&api, 50.0)),
            format!("{:.1}", percentile(&api, 95.0)),
            format!("{:.1}", percentile(&bare, 50.0)),
            format!("{:.1}", percentile(&bare, 95.0)),
            format!("{over:+.1}"),
            format!("<= {allowed:.0}"),
            if over <= allowed { "yes" } else { "NO" }.to_string(),
        ]);
    }
    latency.note("API: POST /v1/compute/run over loopback HTTP, measured by the client.");
    latency.note("bare: runner::BareSandbox, spawned and waited for, output captured.");

    let (runtime, code, _) = HELLO[0];
    let mut throughput = Table::new(
        format!(
            "Runs per second, {} concurrent clients, {} bash hello-world runs per measurement \
             (median of 3)",
            options.concurrency, options.throughput_runs
        ),
        &["", "runs/s", "of bare"],
    );
    let mut api_rates = Vec::new();
    let mut bare_rates = Vec::new();
    for round in 0..3 {
        eprintln!("throughput: round {}", round + 1);
        api_rates.push(rate(options, |_| api_run(client, runtime, code))?);
        bare_rates.push(rate(options, |_| bare_run(&config, &root, runtime, code))?);
    }
    let api_rate = percentile(&api_rates, 50.0);
    let bare_rate = percentile(&bare_rates, 50.0);
    let ratio = api_rate / bare_rate;
    throughput.row(vec![
        "API".into(),
        format!("{api_rate:.0}"),
        format!("{:.0}%", ratio * 100.0),
    ]);
    throughput.row(vec![
        "bare loop".into(),
        format!("{bare_rate:.0}"),
        "100%".into(),
    ]);
    throughput.note(format!(
        "target: at least 80% of the bare loop: {}",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    ));
    Ok(vec![latency, throughput])
}

/// Runs per second of `job` on the configured number of threads.
fn rate(options: &Options, job: impl Fn(usize) -> Result<()> + Sync) -> Result<f64> {
    let t = Instant::now();
    for_each_index(options.concurrency, options.throughput_runs, job)?;
    Ok(options.throughput_runs as f64 / t.elapsed().as_secs_f64())
}

fn api_run(client: &Client, runtime: runner::Runtime, code: &str) -> Result<()> {
    let result = client.run(runtime.name(), code)?;
    if result["exit_code"] != 0 || result["stdout"] != "hello\n" {
        bail!(
            "a {} hello world through the API failed: {result}",
            runtime.name()
        );
    }
    Ok(())
}

fn bare_run(
    config: &runner::RunnerConfig,
    root: &Path,
    runtime: runner::Runtime,
    code: &str,
) -> Result<()> {
    let spec = runner::RunSpec::new(runtime, code);
    let mut sandbox = runner::BareSandbox::new(config, root, &spec)?;
    let output = sandbox
        .command()
        .stdin(Stdio::null())
        .output()
        .context("starting bwrap")?;
    if !output.status.success() || output.stdout != b"hello\n" {
        bail!(
            "a bare {} hello world failed ({}): {}",
            runtime.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The agent's sandbox view, which the server mounted for the first run.
fn agent_view(data_dir: &Path) -> Result<PathBuf> {
    let mounts = data_dir.join("mounts");
    let mut views = fs::read_dir(&mounts)
        .with_context(|| format!("listing {}", mounts.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir());
    let view = views.next().context("the server mounted no sandbox view")?;
    ensure!(
        views.next().is_none(),
        "more than one sandbox view in {}",
        mounts.display()
    );
    Ok(view)
}
