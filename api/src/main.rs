//! `agentbox`: the server (`serve`), data-directory administration (`agents`, `keys`,
//! `fsck`, `gc`), the HTTP client (`fs`, `snapshot`, `run`) and FUSE mounts (`mount`), in one
//! binary.

use std::process::ExitCode;

use clap::Parser;

use api::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Serve(args) => api::server::run_from_cli(args),
        Command::Agents(args) => api::admin::agents(args),
        Command::Keys(args) => api::admin::keys(args),
        Command::Fsck(args) => api::admin::fsck(args),
        Command::Gc(args) => api::admin::gc(args),
        Command::Fs(args) => api::client::fs(args),
        Command::Snapshot(args) => api::client::snapshot(args),
        Command::Mount(args) => api::mount::run(args),
        Command::Run(args) => api::client::run(args),
        Command::WatchCgroups(args) => api::server::watch_cgroups(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("agentbox: {error:#}");
            ExitCode::FAILURE
        }
    }
}
