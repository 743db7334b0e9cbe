//! The HTTP server: `router(state)` is the whole API, `serve(listener, state, shutdown)`
//! runs it, `run_from_cli` is `agentbox serve`.

use std::process::ExitCode;

use crate::cli::ServeArgs;

pub fn run_from_cli(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not available yet")
}
