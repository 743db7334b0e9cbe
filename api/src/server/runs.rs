//! Code runs as the server makes them: the runner and the agents' sandbox views it runs
//! over, the limits on runs going at once (per agent and for the server), and the checks
//! made at start that say why runs are unavailable when they are.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::error::ApiError;
use crate::cli::ServeArgs;

/// Seconds a client is told to wait after a 429.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The server's code runs.
pub struct Runs {
    pub runner: runner::Runner,
    pub mounts: Arc<fsd::mounts::MountManager>,
    max_runs: usize,
    max_per_agent: usize,
    active: Mutex<Active>,
}

#[derive(Default)]
struct Active {
    total: usize,
    per_agent: HashMap<fsd::AgentId, usize>,
}

/// One run's place among the runs going at once; given back when dropped.
pub struct RunTurn {
    runs: Arc<Runs>,
    agent: fsd::AgentId,
}

impl Drop for RunTurn {
    fn drop(&mut self) {
        let mut active = self.runs.lock();
        active.total = active.total.saturating_sub(1);
        if let Some(count) = active.per_agent.get_mut(&self.agent) {
            *count -= 1;
            if *count == 0 {
                active.per_agent.remove(&self.agent);
            }
        }
    }
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A turn for one more run of `agent`, or 429 if the agent or the server has as many
    /// going as allowed.
    pub fn try_start(self: &Arc<Self>, agent: fsd::AgentId) -> Result<RunTurn, ApiError> {
        let mut active = self.lock();
        let agent_runs = active.per_agent.get(&agent).copied().unwrap_or(0);
        if agent_runs >= self.max_per_agent {
            return Err(ApiError::too_many_runs(
                format!(
                    "this agent already has {agent_runs} runs going, the most allowed; retry \
                     when one finishes"
                ),
                RETRY_AFTER_SECONDS,
            ));
        }
        if active.total >= self.max_runs {
            return Err(ApiError::too_many_runs(
                format!(
                    "the server already has {} runs going, the most allowed; retry shortly",
                    active.total
                ),
                RETRY_AFTER_SECONDS,
            ));
        }
        active.total += 1;
        *active.per_agent.entry(agent).or_insert(0) += 1;
        Ok(RunTurn {
            runs: self.clone(),
            agent,
        })
    }
}

/// Sets runs up, or says why they cannot be made here.
pub fn set_up(
    args: &ServeArgs,
    mounts: Option<&Arc<fsd::mounts::MountManager>>,
) -> Result<Arc<Runs>, String> {
    let mounts =
        mounts.ok_or("code runs need the agents' sandbox views, and FUSE is unavailable")?;
    let (uid, gid) = (args.sandbox_uid, args.sandbox_gid);
    if uid == 0 || gid == 0 {
        return Err(
            "code runs never execute as root: --sandbox-uid and --sandbox-gid must not be 0".into(),
        );
    }
    let mut config = runner::RunnerConfig::new(uid, gid);
    if !config.bwrap.exists() {
        return Err(format!(
            "code runs need bubblewrap at {}: run scripts/setup.sh",
            config.bwrap.display()
        ));
    }
    let base = super::mounts::mount_base(args);
    reachable_by(&base, uid, gid)?;
    let runs = &args.runs;
    config.memory_bytes = runs.run_memory_bytes;
    config.max_processes = runs.run_max_processes;
    config.cpu_millicores = runs.run_cpu_millicores;
    config.tmp_bytes = runs.run_tmp_bytes;
    config.output_bytes = runs.run_output_bytes;
    config.allow_network = runs.allow_run_network;
    if config.allow_network && config.slirp4netns.is_none() {
        tracing::warn!(
            "runs asking for the network get 503 until slirp4netns is installed \
             (scripts/setup.sh)"
        );
    }
    let runner = runner::Runner::new(
        config,
        &super::startup::cgroup_purpose("runs", &args.data.data_dir),
    )
    .map_err(|e| format!("code runs need their own cgroups, which cannot be made: {e}"))?;
    Ok(Arc::new(Runs {
        runner,
        mounts: mounts.clone(),
        max_runs: runs.max_runs.max(1),
        max_per_agent: runs.max_runs_per_agent.max(1),
        active: Mutex::new(Active::default()),
    }))
}

/// Fails unless the sandbox user can walk down to the sandbox views under `base` (bubblewrap,
/// running as that user, binds the agent's view from beneath it).
fn reachable_by(base: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let user = confine::Credentials { uid, gid };
    match user.closed_directory_above(&base.join("view")) {
        None => Ok(()),
        Some(closed) => Err(format!(
            "the sandbox user {uid} cannot reach the sandbox views under {}: {} is not \
             searchable by it (chmod o+x it, or choose another --mount-dir)",
            base.display(),
            closed.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_closed_ancestor_makes_the_views_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("mounts");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = reachable_by(&inner, 61000, 61000).unwrap_err();
        assert!(error.contains("not searchable"), "{error}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        reachable_by(&inner, 61000, 61000).unwrap();
    }
}
