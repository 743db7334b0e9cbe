//! The watchman: a small process of its own that outlives the server just long enough to
//! kill every process left in the server's cgroup trees, however the server ends.
//!
//! The parent-death signal does not cover everything in the trees. bwrap clears its own when
//! it gains capabilities in its user namespace and arms it again only later, and its inner
//! process arms its own only after setup; a bwrap waiting for its options reads the end of
//! the pipe when the server dies (a dying process's files close before its children are
//! signalled) and goes on without them. The cgroups hold all of these, so the watchman kills
//! by cgroup. The server keeps the write end of a pipe whose read
//! end is the watchman's standard input; the kernel closes it when the server exits for any
//! reason, SIGKILL included, and the watchman then kills what the trees hold and exits. The
//! groups themselves stay for the next start to remove.
//!
//! ```text
//! server:   Watchman::spawn(command)   command = this binary's hidden watch subcommand
//! watchman: watchman::watch(&purposes) returns once the server is gone and its trees are empty
//! ```

use std::io::{self, PipeWriter, Read};
use std::process::{Child, Command, Stdio};

use crate::ChildSetup;
use crate::group::CgroupTree;

/// The server's side of a watchman: dropping it lets the watchman finish.
#[derive(Debug)]
pub struct Watchman {
    /// Closed when the server ends, which is what the watchman waits for.
    server_end: Option<PipeWriter>,
    child: Child,
}

impl Watchman {
    /// Starts `command` (which must end up in [`watch`]) with the pipe as its standard input,
    /// in a session of its own so that signals meant for the server's terminal spare it.
    pub fn spawn(mut command: Command) -> io::Result<Watchman> {
        // Both ends close on exec: only the server and the watchman hold them.
        let (watchman_end, server_end) = io::pipe()?;
        command
            .stdin(Stdio::from(watchman_end))
            .stdout(Stdio::null());
        ChildSetup {
            new_session: true,
            ..ChildSetup::default()
        }
        .apply_to(&mut command);
        let child = command.spawn()?;
        Ok(Watchman {
            server_end: Some(server_end),
            child,
        })
    }
}

impl Drop for Watchman {
    /// A server that stops in good order has ended its processes already: the watchman finds
    /// the trees empty and exits, and is reaped here.
    fn drop(&mut self) {
        drop(self.server_end.take());
        let _ = self.child.wait();
    }
}

/// The watchman's work: waits until standard input reaches its end (the server is gone), then
/// kills every process in the trees of `purposes`. Returns how many groups held processes.
pub fn watch(purposes: &[String]) -> io::Result<usize> {
    let mut stdin = io::stdin().lock();
    let mut buffer = [0u8; 64];
    loop {
        match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    let mut killed = 0;
    let mut first_error = None;
    for purpose in purposes {
        match CgroupTree::existing(purpose).and_then(|tree| match tree {
            Some(tree) => tree.kill_all_groups(),
            None => Ok(0),
        }) {
            Ok(count) => killed += count,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(killed),
    }
}
