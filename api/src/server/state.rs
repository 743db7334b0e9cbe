//! [`AppState`]: what every request handler shares — the store and the server's limits.

use super::error::ApiError;

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
}

impl AppState {
    pub fn new(store: fsd::Store, limits: Limits) -> AppState {
        AppState { store, limits }
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
