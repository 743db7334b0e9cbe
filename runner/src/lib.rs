//! Code runs: turns a run request into a hardened bubblewrap invocation over the agent's
//! filesystem view, supervises it (timeout, output caps, resource limits, teardown) and
//! reports the result and its usage.
//!
//! Not built yet: the crate exists so the workspace has its final shape. It will depend on
//! neither `fsd` nor `browser` nor any HTTP crate; `api` hands it plain paths and options.
