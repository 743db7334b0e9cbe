//! Confinement of process trees, shared by code runs and browser sessions: each tree gets its
//! own cgroup beneath the server's own cgroup (cgroup v2 where the host has it, the v1
//! controllers otherwise) that limits it, measures it and kills all of it at once; and a child
//! is prepared before exec (cgroup join, rlimits, new session, privilege drop) so that nothing
//! it starts escapes the group or keeps host root.
//!
//! A watchman process kills what the trees hold when the server ends, however it ends.
//!
//! ```text
//! CgroupTree::open("runs")          <own cgroup>/agentbox-runs      (one per purpose)
//!   .create("run-42", &limits)      <own cgroup>/agentbox-runs/run-42
//!     .joiner()                     handed to ChildSetup, joined in the child before exec
//!     .usage() / .kill_all() / .remove()
//! ```
//!
//! Depends on libc only; it knows nothing of runs, browsers or HTTP.

mod child;
mod group;
mod hierarchy;
pub mod watchman;

pub use child::{ChildSetup, Credentials, Rlimit};
pub use group::{Cgroup, CgroupTree, Joiner, Limits, Usage};
pub use hierarchy::CgroupVersion;
pub use watchman::Watchman;
