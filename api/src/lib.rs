//! The agentbox server and command-line client. This is the only crate that knows HTTP and
//! JSON: it wires the filesystem (`fsd`) to the routes of `/v1/compute`.

pub mod admin;
pub mod cli;
pub mod client;
pub mod keys;
pub mod mount;
pub mod remote_mount;
pub mod server;

pub use server::{AppState, router, serve};
