//! Section 1: PUT and GET throughput of whole files through the raw content routes, next
//! to writing the same bytes to a file with `write_all` + `fsync` and reading them back.
//!
//! Every PUT sends new random bytes, so neither deduplication nor compression helps. The
//! server acknowledges a PUT once the content is durable, which is what the fsync in the
//! baseline matches. Reads are warm on both sides: nothing is dropped from the page cache,
//! so the read baseline is the speed of the page cache. The agentbox and baseline steps
//! alternate which goes first, so neither always pays for the other's writeback.

use std::fs;
use std::time::Instant;

use anyhow::{Result, bail};

use super::{Context, disk};
use crate::random::RandomBytes;
use crate::report::{self, Table};
use crate::stats::Summary;

const MIB: f64 = 1024.0 * 1024.0;

/// Throughputs of one file size, in MiB/s, one sample per repetition.
#[derive(Debug, Default)]
struct Samples {
    put: Vec<f64>,
    get: Vec<f64>,
    write_fsync: Vec<f64>,
    read: Vec<f64>,
}

pub fn run(ctx: &Context) -> Result<Table> {
    let mut table = Table::new(
        "1. Throughput: raw PUT/GET /v1/compute/fs/content vs direct file I/O on the same disk",
        &[
            "size",
            "op",
            "runs",
            "agentbox MiB/s",
            "(min - max)",
            "baseline op",
            "baseline MiB/s",
            "ratio",
        ],
    );
    let mut rng = RandomBytes::seeded(ctx.seed ^ 0x7468_726f);
    for &(size, runs) in &ctx.plan.throughput {
        eprintln!("throughput: {} x {runs}", report::size_label(size));
        let samples = measure(ctx, &mut rng, size, runs)?;
        let label = report::size_label(size);
        for (op, agentbox, baseline_name, baseline) in [
            ("PUT", &samples.put, "write_all+fsync", &samples.write_fsync),
            ("GET", &samples.get, "read (warm cache)", &samples.read),
        ] {
            let a = Summary::of(agentbox);
            let b = Summary::of(baseline);
            table.row(vec![
                label.clone(),
                op.to_string(),
                a.n.to_string(),
                report::number(a.median),
                format!("({} - {})", report::number(a.min), report::number(a.max)),
                baseline_name.to_string(),
                report::number(b.median),
                report::ratio(a.median, b.median),
            ]);
        }
    }
    table.note(
        "medians; ratio = agentbox / baseline; MiB = 2^20 bytes; new random bytes on every PUT",
    );
    table.note(
        "PUT is acknowledged once durable; the write baseline is File::create + write_all + fsync",
    );
    table.note(
        "the read baseline is warm page cache (nothing is dropped on purpose); so are the GETs",
    );
    Ok(table)
}

fn measure(ctx: &Context, rng: &mut RandomBytes, size: usize, runs: usize) -> Result<Samples> {
    let mut samples = Samples::default();
    let mut buf = Vec::with_capacity(size);
    let rate = |seconds: f64| size as f64 / MIB / seconds;
    for i in 0..runs {
        let data = rng.bytes(size);
        let remote = format!("/bench/throughput/{size}-{i}");
        let local = ctx.baseline_dir.join(format!("throughput-{size}-{i}"));
        let agentbox_first = i % 2 == 1;

        let put = || -> Result<f64> {
            let start = Instant::now();
            ctx.client.put_raw(&remote, &data)?;
            Ok(rate(start.elapsed().as_secs_f64()))
        };
        let write = || -> Result<f64> {
            let start = Instant::now();
            disk::write_fsync(&local, &data)?;
            Ok(rate(start.elapsed().as_secs_f64()))
        };
        if agentbox_first {
            samples.put.push(put()?);
            samples.write_fsync.push(write()?);
        } else {
            samples.write_fsync.push(write()?);
            samples.put.push(put()?);
        }

        for agentbox in [agentbox_first, !agentbox_first] {
            let start = Instant::now();
            if agentbox {
                ctx.client.get_raw_into(&remote, &mut buf)?;
            } else {
                disk::read_into(&local, &mut buf)?;
            }
            let throughput = rate(start.elapsed().as_secs_f64());
            if buf != data {
                let source = if agentbox {
                    format!("GET {remote}")
                } else {
                    local.display().to_string()
                };
                bail!(
                    "{source} returned {} bytes that differ from the {} written",
                    buf.len(),
                    data.len()
                );
            }
            if agentbox {
                &mut samples.get
            } else {
                &mut samples.read
            }
            .push(throughput);
        }
        fs::remove_file(&local)?;
    }
    Ok(samples)
}
