//! Code runs: turns a run request into a hardened bubblewrap invocation over the agent's
//! filesystem view, supervises it (timeout, output caps, resource limits, teardown) and
//! reports the result and its usage.
//!
//! [`Runner::run`] takes the path of the agent's sandbox view (mounted by the caller) and a
//! [`RunSpec`]; it never learns which agent that is. `fsd`, `browser` and HTTP are no
//! concern of this crate: `api` hands it plain paths and options.
//!
//! - `spec`: what a run asks for, and the checks that refuse a bad request.
//! - `bwrap`: the bubblewrap command line, one pure function.
//! - `seccomp`: the system-call filter, as a BPF program.
//! - `environment`: the environment variables and generated `/etc` files of a run.
//! - `datafd`: bytes passed to bubblewrap through anonymous files.
//! - `output`: capped, concurrent capture of stdout and stderr, with live chunks.
//! - `warm`: sandboxes started ahead of their runs, in their own cgroups.
//! - `supervise`: one run from start to teardown.

mod bwrap;
mod datafd;
mod environment;
mod network;
mod output;
mod seccomp;
mod spec;
mod supervise;
mod warm;

pub use bwrap::ETC_ENTRIES;
pub use output::{OutputChunk, Stream};
pub use spec::{
    DEFAULT_TIMEOUT, InvalidKind, InvalidRun, MAX_ENV_BYTES, MAX_ENV_VARS, MAX_TIMEOUT, RunSpec,
    Runtime,
};
pub use supervise::{BareSandbox, RunError, RunOutcome, Runner, RunnerConfig, TIMEOUT_EXIT_CODE};
