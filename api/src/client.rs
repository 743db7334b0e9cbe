//! The HTTP client behind `agentbox fs` and `agentbox snapshot`.

use std::process::ExitCode;

use crate::cli::{FsArgs, SnapshotArgs};

pub fn fs(_args: FsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}

pub fn snapshot(_args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}
