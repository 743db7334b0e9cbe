//! Running one fio job and reading its JSON report.
//!
//! Every job is the same on every column: one thread (`--thread`, so killing fio leaves no
//! job process behind), the `psync` engine at iodepth 1, buffered I/O, no preallocation
//! (not every FUSE filesystem has `fallocate`), and fio's default of invalidating the
//! file's cached pages before it starts. A write job fsyncs at its end and the fsync counts
//! in its time, so every column's figure is for data on disk.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::interrupt;

/// How long a size-based job may take before it is killed: 512 MiB at under 1 MiB/s.
const SIZED_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a time-based job may overrun its run time (its final fsync included).
const TIMED_SLACK: Duration = Duration::from_secs(120);

/// The access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Write,
    Read,
    RandWrite,
    RandRead,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Write => "write",
            Pattern::Read => "read",
            Pattern::RandWrite => "randwrite",
            Pattern::RandRead => "randread",
        }
    }

    fn writes(self) -> bool {
        matches!(self, Pattern::Write | Pattern::RandWrite)
    }
}

/// One fio job on one file.
#[derive(Debug, Clone)]
pub struct Job {
    pub pattern: Pattern,
    pub file: PathBuf,
    pub block_size: u64,
    /// The file's size (and, unless `seconds` is set, the bytes transferred).
    pub size: u64,
    /// Run for this long, going round the file as often as it takes.
    pub seconds: Option<u64>,
}

/// What a job measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub bytes: u64,
    pub bytes_per_second: f64,
    pub iops: f64,
}

/// A job that overran its time limit and was killed.
#[derive(Debug)]
pub struct TimedOut {
    pub job: String,
    pub limit: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} had not finished after {} s and was killed",
            self.job,
            self.limit.as_secs()
        )
    }
}

impl std::error::Error for TimedOut {}

impl Outcome {
    pub fn mib_per_second(&self) -> f64 {
        self.bytes_per_second / (1024.0 * 1024.0)
    }
}

impl Job {
    /// fio's arguments, `--output` excepted.
    pub fn args(&self) -> Vec<OsString> {
        let mut file = OsString::from("--filename=");
        file.push(&self.file);
        let mut args: Vec<OsString> = vec![
            format!("--name={}", self.pattern.name()).into(),
            file,
            format!("--rw={}", self.pattern.name()).into(),
            format!("--bs={}", self.block_size).into(),
            format!("--size={}", self.size).into(),
            "--ioengine=psync".into(),
            "--iodepth=1".into(),
            "--direct=0".into(),
            "--thread".into(),
            "--fallocate=none".into(),
            "--output-format=json".into(),
        ];
        if self.pattern.writes() {
            args.push("--end_fsync=1".into());
        }
        if let Some(seconds) = self.seconds {
            args.push("--time_based".into());
            args.push(format!("--runtime={seconds}s").into());
        }
        args
    }

    /// `fio --rw=randwrite (10 s) on PATH`, for messages.
    fn describe(&self) -> String {
        let seconds = self
            .seconds
            .map(|s| format!(" ({s} s)"))
            .unwrap_or_default();
        format!(
            "fio --rw={}{seconds} on {}",
            self.pattern.name(),
            self.file.display()
        )
    }

    fn timeout(&self) -> Duration {
        match self.seconds {
            Some(seconds) => Duration::from_secs(seconds) + TIMED_SLACK,
            None => SIZED_TIMEOUT,
        }
    }

    /// Runs the job with `fio`, its report and messages in files under `scratch`.
    pub fn run(&self, fio: &Path, scratch: &Path) -> Result<Outcome> {
        let report = scratch.join("fio.json");
        let messages = scratch.join("fio.stderr");
        let mut output = OsString::from("--output=");
        output.push(&report);
        let mut child = Command::new(fio)
            .args(self.args())
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&messages)?)
            .spawn()
            .with_context(|| format!("starting {}", fio.display()))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if interrupt::requested() || started.elapsed() > self.timeout() {
                child.kill()?;
                child.wait()?;
                interrupt::check()?;
                return Err(TimedOut {
                    job: self.describe(),
                    limit: self.timeout(),
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&messages).unwrap_or_default();
        if !status.success() {
            bail!("{} failed ({status}): {}", self.describe(), stderr.trim());
        }
        let json = std::fs::read_to_string(&report)
            .with_context(|| format!("reading fio's report {}", report.display()))?;
        let outcome = parse(&json, self.pattern).with_context(|| self.describe())?;
        if self.seconds.is_none() && outcome.bytes != self.size {
            bail!(
                "{} moved {} bytes, not {}",
                self.describe(),
                outcome.bytes,
                self.size
            );
        }
        Ok(outcome)
    }
}

/// Reads the figures of the first job in fio's `--output-format=json` report; anything
/// fio printed before the JSON is skipped.
pub fn parse(report: &str, pattern: Pattern) -> Result<Outcome> {
    let start = report.find('{').context("fio printed no JSON report")?;
    let value: Value = serde_json::from_str(&report[start..]).context("parsing fio's report")?;
    let job = value
        .get("jobs")
        .and_then(|jobs| jobs.get(0))
        .context("fio's report has no job")?;
    let error = job.get("error").and_then(Value::as_i64).unwrap_or(0);
    if error != 0 {
        bail!(
            "fio reports error {error} ({})",
            std::io::Error::from_raw_os_error(error as i32)
        );
    }
    let side = if pattern.writes() { "write" } else { "read" };
    let figures = job
        .get(side)
        .with_context(|| format!("fio's report has no {side} figures"))?;
    let number = |field: &str| {
        figures
            .get(field)
            .and_then(Value::as_f64)
            .with_context(|| format!("fio's report has no {side}.{field}"))
    };
    Ok(Outcome {
        bytes: number("io_bytes")? as u64,
        bytes_per_second: number("bw_bytes")?,
        iops: number("iops")?,
    })
}

/// `fio --version`, or a message saying how to install it.
pub fn version(fio: &Path) -> Result<String> {
    let output = Command::new(fio)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {}: install fio (Debian package `fio`; scripts/setup.sh does)",
                fio.display()
            )
        })?;
    if !output.status.success() {
        bail!("`{} --version` failed ({})", fio.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "randread",
      "error" : 0,
      "read" : { "io_bytes" : 57876480, "bw_bytes" : 57818661, "iops" : 14115.884116, "runtime" : 1001 },
      "write" : { "io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0 }
    }
  ]
}"#;

    #[test]
    fn reads_the_right_side_of_the_report() {
        let read = parse(REPORT, Pattern::RandRead).unwrap();
        assert_eq!(read.bytes, 57_876_480);
        assert_eq!(read.iops, 14115.884116);
        assert!((read.mib_per_second() - 55.14).abs() < 0.01);
        let write = parse(REPORT, Pattern::Write).unwrap();
        assert_eq!(write.bytes, 0);
    }

    #[test]
    fn reports_fio_errors() {
        let failed = REPORT.replace("\"error\" : 0", "\"error\" : 5");
        let error = parse(&failed, Pattern::RandRead).unwrap_err().to_string();
        assert!(error.contains("error 5"), "{error}");
        assert!(parse("fio: no such file", Pattern::Read).is_err());
    }

    #[test]
    fn writes_fsync_at_the_end_and_timed_jobs_say_so() {
        let job = Job {
            pattern: Pattern::RandWrite,
            file: PathBuf::from("/m/rand.dat"),
            block_size: 4096,
            size: 256 << 20,
            seconds: Some(10),
        };
        let args: Vec<String> = job
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "--rw=randwrite",
            "--filename=/m/rand.dat",
            "--bs=4096",
            "--size=268435456",
            "--iodepth=1",
            "--end_fsync=1",
            "--time_based",
            "--runtime=10s",
            "--thread",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        let read = Job {
            pattern: Pattern::Read,
            seconds: None,
            ..job
        };
        let args: Vec<OsString> = read.args();
        assert!(!args.iter().any(|a| a == "--end_fsync=1"));
        assert!(!args.iter().any(|a| a == "--time_based"));
    }
}
