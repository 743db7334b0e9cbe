//! Starting and stopping the `agentbox serve` process under test.
//!
//! The server runs on a free loopback port with its own data directory and writes its
//! output to a log file beside it. The first start creates the agent `default` and writes
//! its key to `<data-dir>/default.key`, which is how the benchmark authenticates. Dropping a
//! [`Server`] kills the process, so an error anywhere never leaves a server behind.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::Client;

/// How long a server may take to answer `/healthz` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the server's log shown with an error.
const LOG_TAIL_LINES: usize = 12;

/// The agentbox binary to measure: the one given, or `agentbox` next to this benchmark.
pub fn agentbox_binary(chosen: Option<&Path>) -> std::io::Result<PathBuf> {
    match chosen {
        Some(binary) => Ok(binary.to_path_buf()),
        None => Ok(std::env::current_exe()?.with_file_name("agentbox")),
    }
}

/// A running `agentbox serve`.
pub struct Server {
    child: Child,
    binary: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The key of the agent `default`.
    pub key: String,
}

impl Server {
    /// Starts `binary serve` with its data in `data_dir` and its output in `log`, and waits
    /// until it answers and has written the default agent's key.
    pub fn start(binary: &Path, data_dir: &Path, log: &Path) -> Result<Server> {
        if !binary.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p api` (bench/run.sh does)",
                binary.display()
            );
        }
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("AGENTBOX_NO_FSYNC")
            .env_remove("AGENTBOX_MAX_FILE_BYTES")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let mut server = Server {
            child,
            binary: binary.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            url: format!("http://{listen}"),
            key: String::new(),
        };
        server.key = server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<String> {
        let key_file = self.data_dir.join("default.key");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited during start-up ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if Client::healthy(&self.url)
                && let Ok(key) = fs::read_to_string(&key_file)
                && !key.trim().is_empty()
            {
                return Ok(key.trim().to_string());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the server did not answer {}/healthz and write {} within {:?}; its log:\n{}",
                    self.url,
                    key_file.display(),
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates another agent with `agentbox agents create NAME --json` on the running
    /// server's data directory and returns its key.
    pub fn create_agent(&self, name: &str) -> Result<String> {
        let output = Command::new(&self.binary)
            .args(["agents", "--data-dir"])
            .arg(&self.data_dir)
            .args(["create", name, "--json"])
            .output()
            .context("running agentbox agents create")?;
        if !output.status.success() {
            bail!(
                "agentbox agents create {name} --json failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let reply: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "agentbox agents create {name} --json printed no JSON: {}",
                    String::from_utf8_lossy(&output.stdout).trim()
                )
            })?;
        reply
            .get("key")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .with_context(|| {
                format!("agentbox agents create {name} --json printed no key: {reply}")
            })
    }

    /// The last lines of the server's log without terminal colours, for error messages.
    pub fn log_tail(&self) -> String {
        let text = strip_colours(&fs::read_to_string(&self.log).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Asks the server to shut down (SIGTERM) and waits; kills it if it takes too long.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("server pid out of range")?;
        // SAFETY: kill(2) has no memory effects; `pid` is our own child, not yet reaped
        // (try_wait above returned None), so the id cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let asked = Instant::now();
        while asked.elapsed() < STOP_TIMEOUT {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Resident set size and its high-water mark of a process, in bytes, from
/// `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .with_context(|| format!("{path} has no {name}"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{path}: cannot parse {name}{line}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_colours("\u{1b}[2mtime\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "time  INFO x"
        );
    }

    #[test]
    fn reads_own_memory() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
    }
}
