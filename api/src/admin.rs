//! Commands that work directly on a data directory: agents, keys, fsck, gc.

use std::process::ExitCode;

use crate::cli::{AgentsArgs, FsckArgs, GcArgs, KeysArgs};

pub fn agents(_args: AgentsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}

pub fn keys(_args: KeysArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}

pub fn fsck(_args: FsckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}

pub fn gc(_args: GcArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}
