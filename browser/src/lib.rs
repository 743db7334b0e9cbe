//! Browser sessions: launches and supervises one headless Chromium per session, gives the
//! CDP proxy what it needs (token check, upstream endpoint, message rules), takes
//! screenshots, routes downloads into the agent's filesystem and expires idle sessions.
//!
//! Knows nothing of HTTP or of the store: `api` hands it plain paths, options and an
//! opaque value to hold while a session lives (the agent's mount lease), and carries the
//! WebSocket traffic itself.

pub mod cdp;
pub mod downloads;
pub mod flags;
pub mod launch;
pub mod proxy;
pub mod session;
pub mod sessions;

pub use confine::Credentials;
pub use flags::{Flavor, Viewport};
pub use session::{ConnectionGuard, Owner, Session, SessionInfo};
pub use sessions::{
    Browsers, BrowsersOptions, Meter, Screenshot, SessionRequest, View, default_limits,
};

/// Everything that can go wrong with a browser session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no browser session {0}")]
    NotFound(String),
    #[error("browser session {id} has ended: {reason}")]
    Ended { id: String, reason: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0} browser sessions are running, the most this server allows")]
    TooManySessions(usize),
    #[error("starting the browser: {0}")]
    Launch(String),
    #[error("talking to the browser: {0}")]
    Devtools(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A mapper for `map_err` that names what was being done.
    pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
