//! Section 2: how many 4 KiB files per second `PUT /v1/compute/fs/content` stores, from
//! one client and from several at once, next to creating, writing and fsyncing the same
//! files directly on the same disk (sequentially and from as many threads).
//!
//! Each round writes fresh files into fresh directories; the agentbox and baseline steps
//! alternate which goes first from round to round.

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;

use super::{Context, disk};
use crate::parallel;
use crate::random::RandomBytes;
use crate::report::{self, Table};
use crate::stats::{self, Summary};

/// Files per second of each way of writing, one sample per round, and PUT latencies.
#[derive(Debug, Default)]
struct Samples {
    sequential_put: Vec<f64>,
    sequential_disk: Vec<f64>,
    concurrent_put: Vec<f64>,
    concurrent_disk: Vec<f64>,
    sequential_latency: Vec<f64>,
    concurrent_latency: Vec<f64>,
}

pub fn run(ctx: &Context) -> Result<Table> {
    let plan = &ctx.plan;
    let threads = plan.threads;
    let mut rng = RandomBytes::seeded(ctx.seed ^ 0x736d_616c);
    let mut samples = Samples::default();
    for round in 0..plan.small_rounds {
        eprintln!(
            "small files: round {} of {}: {} sequential, {} from {threads} clients",
            round + 1,
            plan.small_rounds,
            plan.small_sequential,
            plan.small_concurrent
        );
        let agentbox_first = round % 2 == 1;
        let files: Vec<Vec<u8>> = (0..plan.small_sequential)
            .map(|_| rng.bytes(plan.small_size))
            .collect();
        let local = ctx.baseline_dir.join(format!("small-{round}-sequential"));
        let remote = format!("/bench/small/{round}/sequential");
        for agentbox in [agentbox_first, !agentbox_first] {
            if agentbox {
                let (rate, latencies) = put_files(ctx, &remote, &files, 1)?;
                samples.sequential_put.push(rate);
                samples.sequential_latency.extend(latencies);
            } else {
                samples
                    .sequential_disk
                    .push(write_files(&local, &files, 1)?);
            }
        }

        let files: Vec<Vec<u8>> = (0..plan.small_concurrent)
            .map(|_| rng.bytes(plan.small_size))
            .collect();
        let local_concurrent = ctx.baseline_dir.join(format!("small-{round}-concurrent"));
        let remote = format!("/bench/small/{round}/concurrent");
        for agentbox in [agentbox_first, !agentbox_first] {
            if agentbox {
                let (rate, latencies) = put_files(ctx, &remote, &files, threads)?;
                samples.concurrent_put.push(rate);
                samples.concurrent_latency.extend(latencies);
            } else {
                samples
                    .concurrent_disk
                    .push(write_files(&local_concurrent, &files, threads)?);
            }
        }
        fs::remove_dir_all(&local)?;
        fs::remove_dir_all(&local_concurrent)?;
    }

    let mut table = Table::new(
        format!(
            "2. Small files: {} PUTs (raw route) vs create+write+fsync on the same disk",
            report::size_label(plan.small_size)
        ),
        &[
            "clients",
            "files/round",
            "rounds",
            "agentbox files/s",
            "baseline files/s",
            "ratio",
            "PUT latency p50",
            "p99",
        ],
    );
    for (clients, files, put, base, latencies) in [
        (
            "1 (sequential)".to_string(),
            plan.small_sequential,
            &samples.sequential_put,
            &samples.sequential_disk,
            &samples.sequential_latency,
        ),
        (
            format!("{threads} concurrent"),
            plan.small_concurrent,
            &samples.concurrent_put,
            &samples.concurrent_disk,
            &samples.concurrent_latency,
        ),
    ] {
        let a = Summary::of(put);
        let b = Summary::of(base);
        table.row(vec![
            clients,
            report::thousands(files as i64),
            a.n.to_string(),
            report::number(a.median),
            report::number(b.median),
            report::ratio(a.median, b.median),
            report::millis(stats::median(latencies)),
            report::millis(stats::percentile(latencies, 99.0)),
        ]);
    }
    table
        .note("medians over rounds; ratio = agentbox / baseline; new random content in every file");
    table.note(format!(
        "the baseline writes the same bytes with File::create + write_all + fsync, from 1 and {threads} threads"
    ));
    Ok(table)
}

/// PUTs `files` under `remote` from `clients` threads; returns files per second and
/// each request's latency in seconds.
fn put_files(
    ctx: &Context,
    remote: &str,
    files: &[Vec<u8>],
    clients: usize,
) -> Result<(f64, Vec<f64>)> {
    let latencies = Mutex::new(Vec::with_capacity(files.len()));
    let start = Instant::now();
    parallel::for_each_index(clients, files.len(), |i| {
        let sent = Instant::now();
        ctx.client
            .put_raw(&format!("{remote}/f{i:05}"), &files[i])?;
        let latency = sent.elapsed().as_secs_f64();
        latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(latency);
        Ok(())
    })?;
    let rate = files.len() as f64 / start.elapsed().as_secs_f64();
    Ok((
        rate,
        latencies.into_inner().unwrap_or_else(|e| e.into_inner()),
    ))
}

/// Creates, writes and fsyncs `files` in a new directory `dir` from `threads` threads;
/// returns files per second.
fn write_files(dir: &Path, files: &[Vec<u8>], threads: usize) -> Result<f64> {
    fs::create_dir_all(dir)?;
    let start = Instant::now();
    parallel::for_each_index(threads, files.len(), |i| {
        disk::write_fsync(&dir.join(format!("f{i:05}")), &files[i])
    })?;
    Ok(files.len() as f64 / start.elapsed().as_secs_f64())
}
