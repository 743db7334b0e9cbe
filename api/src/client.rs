//! The HTTP client behind `agentbox fs`, `agentbox snapshot` and `agentbox run`: one blocking request per
//! command against a running server, results printed for people (tables, sizes) or as the
//! server's JSON with `--json`.

mod encode;
mod format;
mod fs;
pub(crate) mod http;
mod print;
mod progress;
mod run;
mod snapshot;
mod transfer;
mod upload;

use std::process::ExitCode;

use crate::cli::{FsArgs, FsCommand, RunArgs, SnapshotArgs, SnapshotCommand};

pub use http::ApiError;

/// Runs one `agentbox fs` command.
pub fn fs(args: FsArgs) -> anyhow::Result<ExitCode> {
    let client = http::Client::new(&args.server)?;
    match args.command {
        FsCommand::Ls {
            path,
            snapshot,
            json,
        } => fs::ls(&client, &path, snapshot.as_deref(), json)?,
        FsCommand::Put {
            local,
            remote,
            json,
        } => transfer::put(&client, &local, &remote, json)?,
        FsCommand::Get {
            remote,
            local,
            snapshot,
        } => transfer::get(&client, &remote, local.as_deref(), snapshot.as_deref())?,
        FsCommand::Rm { path, recursive } => fs::rm(&client, &path, recursive)?,
        FsCommand::Mv {
            from,
            to,
            no_clobber,
        } => fs::mv(&client, &from, &to, no_clobber)?,
        FsCommand::Stat {
            path,
            snapshot,
            json,
        } => fs::stat(&client, &path, snapshot.as_deref(), json)?,
        FsCommand::Mkdir { path } => fs::mkdir(&client, &path)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one `agentbox snapshot` command.
pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let client = http::Client::new(&args.server)?;
    match args.command {
        SnapshotCommand::Create { name, json } => snapshot::create(&client, name.as_deref(), json)?,
        SnapshotCommand::List { json } => snapshot::list(&client, json)?,
        SnapshotCommand::Restore { id } => snapshot::restore(&client, &id)?,
        SnapshotCommand::Delete { id } => snapshot::delete(&client, &id)?,
        SnapshotCommand::Diff { from, to, json } => {
            snapshot::diff(&client, &from, to.as_deref(), json)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `agentbox run`; exits with the program's exit code.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    run::run(args)
}
