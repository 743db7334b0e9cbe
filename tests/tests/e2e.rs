//! End-to-end tests: a real `agentbox serve` process on a loopback port, driven over HTTP
//! by a real client (and by the `agentbox` command-line client), each test with a data
//! directory of its own; and `agentbox mount` of such a directory checked with pjdfstest
//! (`conformance::`).
//!
//! Run them with `cargo nextest run -p e2e`. The crash test (`crash::`) is in the exclusive
//! group of `.config/nextest.toml`.

#[path = "e2e/browser_support.rs"]
mod browser_support;
#[path = "e2e/run_support.rs"]
mod run_support;
#[path = "e2e/support.rs"]
mod support;

#[path = "e2e/adversarial.rs"]
mod adversarial;
#[path = "e2e/browsers.rs"]
mod browsers;
#[path = "e2e/cdp_clients.rs"]
mod cdp_clients;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/concurrency.rs"]
mod concurrency;
#[path = "e2e/conformance.rs"]
mod conformance;
#[path = "e2e/contract.rs"]
mod contract;
#[path = "e2e/crash.rs"]
mod crash;
#[path = "e2e/errors.rs"]
mod errors;
#[path = "e2e/files.rs"]
mod files;
#[path = "e2e/isolation.rs"]
mod isolation;
#[path = "e2e/remote_mount.rs"]
mod remote_mount;
#[path = "e2e/runs.rs"]
mod runs;
#[path = "e2e/service.rs"]
mod service;
#[path = "e2e/snapshots.rs"]
mod snapshots;
