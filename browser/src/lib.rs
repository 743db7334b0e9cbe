//! Browser sessions: launches and supervises one headless Chromium per session, proxies the
//! Chrome DevTools Protocol, takes screenshots, routes downloads into the agent's filesystem
//! and expires idle sessions.
//!
//! Not built yet: the crate exists so the workspace has its final shape. It will depend on
//! neither `fsd` nor `runner` nor any HTTP crate; `api` hands it plain paths and options.
