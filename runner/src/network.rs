//! The network of a run that asks for it. The sandbox keeps a network namespace of its own
//! (never the host's), and slirp4netns links it to the outside through a user-mode NAT
//! with the host's loopback refused: the code reaches the internet, but not what listens on
//! the host's `127.0.0.1` (the API, the browsers' DevTools ports, other local services).
//!
//! bwrap reports the sandbox's pid on `--info-fd` once the namespaces exist and holds the
//! program on `--block-fd` until it reads a byte; between the two, slirp4netns is started
//! on that pid (as root, which `/dev/net/tun` needs; in slirp4netns's own sandbox and
//! seccomp filter; in the run's cgroup, so it dies with the run) and waited for.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::datafd;

/// The resolver slirp4netns serves inside the namespace (it forwards to the host's).
pub const RESOLV_CONF: &str = "nameserver 10.0.2.3\n";

/// How long bwrap and slirp4netns may take to bring the link up.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox's ends of the network descriptors, held by the server: bwrap's report and
/// the byte that lets the program start.
pub struct NetworkEnds {
    pub info: File,
    pub block: File,
}

/// A running slirp4netns; killed when dropped (the run's cgroup kill takes it too).
pub struct Link {
    _process: tokio::process::Child,
}

/// Links the sandbox that reports on `ends.info` to the outside and lets its program start.
/// `cgroup` is the run's: slirp4netns joins it before exec.
pub async fn connect(
    slirp4netns: &Path,
    ends: NetworkEnds,
    cgroup: confine::Joiner,
) -> io::Result<Link> {
    tokio::time::timeout(LINK_TIMEOUT, link(slirp4netns, ends, cgroup))
        .await
        .map_err(|_| io::Error::other("the sandbox's network did not come up in time"))?
}

async fn link(slirp4netns: &Path, ends: NetworkEnds, cgroup: confine::Joiner) -> io::Result<Link> {
    let pid = sandbox_pid(ends.info).await?;
    let (ready_read, ready_write) = datafd::pipe()?;
    let mut command = std::process::Command::new(slirp4netns);
    command
        .args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd",
        ])
        .arg(ready_write.as_raw_fd().to_string())
        // The namespace by path, joined from here: by pid, slirp4netns would first join the
        // sandbox's user namespace, which bwrap is still setting up (and then nests).
        .arg("--netns-type=path")
        .arg(format!("/proc/{pid}/ns/net"))
        .arg("tap0")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let inherited = [ready_write.as_raw_fd()];
    // SAFETY: the hook only calls fcntl on a descriptor number (async-signal-safe, no
    // allocation: the array is moved in whole).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            datafd::inheritable(&inherited)
        });
    }
    confine::ChildSetup {
        cgroup: Some(cgroup),
        new_session: true,
        no_new_privileges: true,
        parent_death_signal: Some(libc::SIGKILL),
        ..confine::ChildSetup::default()
    }
    .apply_to(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let process = command.spawn()?;
    drop(ready_write);
    let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_read)?;
    let mut byte = [0u8; 1];
    if ready.read(&mut byte).await? == 0 {
        return Err(io::Error::other("slirp4netns ended before the link was up"));
    }
    let mut block = ends.block;
    block.write_all(b"1")?;
    Ok(Link { _process: process })
}

/// The sandbox's pid, from bwrap's `{"child-pid": N}` report. Read up to the report's end
/// only: the descriptor may stay open in the sandbox.
async fn sandbox_pid(info: File) -> io::Result<u32> {
    let mut info = tokio::net::unix::pipe::Receiver::from_file(info)?;
    let mut report = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let read = info.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        report.extend_from_slice(&buffer[..read]);
        if report.contains(&b'}') {
            break;
        }
    }
    child_pid(&report).ok_or_else(|| {
        io::Error::other(format!(
            "bwrap reported no sandbox pid: {:?}",
            String::from_utf8_lossy(&report)
        ))
    })
}

/// The number after `"child-pid":` in bwrap's report.
fn child_pid(report: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(report).ok()?;
    let after = &text[text.find("\"child-pid\"")? + "\"child-pid\"".len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|pid| *pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_read_from_bwraps_report() {
        assert_eq!(child_pid(b"{\n    \"child-pid\": 4242\n}\n"), Some(4242));
        assert_eq!(child_pid(b"{ \"child-pid\":17 }"), Some(17));
        assert_eq!(child_pid(b"{ \"child-pid\": 0 }"), None);
        assert_eq!(child_pid(b"{ \"other\": 5 }"), None);
        assert_eq!(child_pid(b""), None);
    }
}
