//! [`AppState`]: what every request handler shares — the store, the server's limits and
//! the agents' sandbox mounts.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ApiError;

/// Streaming uploads written at once. Each holds a blocking thread while its body arrives,
/// so they are kept well under the blocking pool's 512 threads; more wait their turn.
const STREAMING_UPLOADS: usize = 128;

/// Limits the server enforces on requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest file an upload may create, in bytes (decoded, for base64 uploads).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 100 * 1024 * 1024,
        }
    }
}

/// The state behind the router. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: fsd::Store,
    pub limits: Limits,
    /// The agents' sandbox views, mounted on demand; `None` where FUSE is unavailable.
    pub mounts: Option<Arc<fsd::mounts::MountManager>>,
    /// Code runs; `None` where they cannot be made (the reason is in `runs_unavailable`).
    pub runs: Option<Arc<super::runs::Runs>>,
    pub runs_unavailable: Arc<str>,
    /// Browser sessions; `None` where Chromium is unavailable.
    pub browsers: Option<Arc<browser::Browsers>>,
    uploads: Arc<Semaphore>,
}

impl AppState {
    pub fn new(store: fsd::Store, limits: Limits) -> AppState {
        let uploads = Arc::new(Semaphore::new(STREAMING_UPLOADS));
        AppState {
            store,
            limits,
            mounts: None,
            runs: None,
            runs_unavailable: Arc::from("code runs are not set up on this server"),
            browsers: None,
            uploads,
        }
    }

    /// The same state with sandbox mounts available.
    pub fn with_mounts(mut self, mounts: Arc<fsd::mounts::MountManager>) -> AppState {
        self.mounts = Some(mounts);
        self
    }

    /// The same state with code runs available, or the reason they are not.
    pub fn with_runs(mut self, runs: Result<Arc<super::runs::Runs>, String>) -> AppState {
        match runs {
            Ok(runs) => self.runs = Some(runs),
            Err(reason) => self.runs_unavailable = Arc::from(reason),
        }
        self
    }

    /// The same state with browser sessions available.
    pub fn with_browsers(mut self, browsers: Arc<browser::Browsers>) -> AppState {
        self.browsers = Some(browsers);
        self
    }

    /// Waits for a turn to stream an upload into the store; the turn lasts as long as the
    /// permit.
    pub async fn upload_turn(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.uploads
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))
    }

    /// Runs a store call on the blocking thread pool and maps its error for the client.
    pub async fn blocking<T, F>(&self, call: F) -> Result<T, ApiError>
    where
        F: FnOnce(&fsd::Store) -> fsd::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || call(&store)).await??)
    }
}
