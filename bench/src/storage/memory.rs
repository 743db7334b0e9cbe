//! Section 4: the server's resident memory while it receives a 100 MiB raw upload (and
//! while it sends the file back), against its idle size.
//!
//! A thread reads `VmRSS` from `/proc/<pid>/status` every 10 ms during the transfer. This
//! section runs first, on a freshly started server, so idle really is idle and the
//! kernel's high-water mark (`VmHWM`) after the upload is a second, sampling-free reading
//! of the peak.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Context;
use crate::random::RandomBytes;
use crate::report::{self, Table};
use crate::server;
use crate::stats;

const INTERVAL: Duration = Duration::from_millis(10);

/// RSS readings of one transfer.
#[derive(Debug)]
struct Watched {
    seconds: f64,
    samples: Vec<u64>,
}

impl Watched {
    fn peak(&self) -> u64 {
        self.samples.iter().copied().max().unwrap_or(0)
    }
}

pub fn run(ctx: &Context) -> Result<Table> {
    let pid = ctx.server.pid();
    let size = ctx.plan.memory_upload;
    let mut rng = RandomBytes::seeded(ctx.seed ^ 0x6d65_6d6f);
    let path = "/bench/memory/upload";
    eprintln!(
        "memory: watching the server during a {} upload",
        report::size_label(size)
    );

    // One small request first, so that whatever the server sets up on first use counts as
    // idle, not as the cost of the upload.
    ctx.client
        .put_raw("/bench/memory/warm-up", &rng.bytes(4096))?;
    let idle = idle_rss(pid)?;
    let data = rng.bytes(size);
    let upload = watch(pid, || ctx.client.put_raw(path, &data).map(drop))?;
    let after_upload = server::memory(pid)?;
    let idle_after = idle_rss(pid)?;
    let mut buf = Vec::with_capacity(size);
    let download = watch(pid, || ctx.client.get_raw_into(path, &mut buf))?;
    if buf != data {
        bail!(
            "GET {path} returned {} bytes that differ from the {} uploaded",
            buf.len(),
            size
        );
    }

    let mut table = Table::new(
        "4. Server memory (VmRSS of agentbox serve, sampled every 10 ms)",
        &[
            "transfer",
            "size",
            "time",
            "samples",
            "idle RSS",
            "peak RSS",
            "peak - idle",
            "(peak - idle) / size",
        ],
    );
    for (name, watched, before) in [
        ("PUT raw (upload)", &upload, idle),
        ("GET raw (download)", &download, idle_after),
    ] {
        let growth = watched.peak().saturating_sub(before);
        table.row(vec![
            name.to_string(),
            report::size_label(size),
            report::millis(watched.seconds),
            watched.samples.len().to_string(),
            report::mib(before as f64),
            report::mib(watched.peak() as f64),
            report::mib(growth as f64),
            format!("{:.0}%", 100.0 * growth as f64 / size as f64),
        ]);
    }
    table.note(format!(
        "VmHWM (kernel high-water mark) right after the upload: {}; idle RSS after the upload: {}",
        report::mib(after_upload.hwm as f64),
        report::mib(idle_after as f64)
    ));
    table.note("idle = median of 20 readings 10 ms apart, after one 4 KiB warm-up PUT; the download starts from the idle after the upload");
    Ok(table)
}

/// The median of 20 RSS readings 10 ms apart, in bytes.
fn idle_rss(pid: u32) -> Result<u64> {
    let mut readings = Vec::new();
    for _ in 0..20 {
        readings.push(server::memory(pid)?.rss as f64);
        std::thread::sleep(INTERVAL);
    }
    Ok(stats::median(&readings) as u64)
}

/// Runs `transfer` while a thread reads the server's RSS every [`INTERVAL`].
fn watch(pid: u32, transfer: impl FnOnce() -> Result<()>) -> Result<Watched> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| -> Result<Vec<u64>> {
            let mut samples = Vec::new();
            loop {
                let finished = done.load(Ordering::Relaxed);
                samples.push(server::memory(pid)?.rss);
                if finished {
                    return Ok(samples);
                }
                std::thread::sleep(INTERVAL);
            }
        });
        let start = Instant::now();
        let result = transfer();
        let seconds = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let samples = match sampler.join() {
            Ok(samples) => samples?,
            Err(_) => bail!("the memory sampler panicked"),
        };
        result?;
        Ok(Watched { seconds, samples })
    })
}
