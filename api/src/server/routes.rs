//! The one list of routes. The router is built from it, and the OpenAPI document is checked
//! against it, so a route cannot exist without being documented or the other way round.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::state::AppState;
use super::{
    browser_routes, cdp_proxy, content_routes, fs_routes, openapi, run_routes, snapshot_routes,
    usage,
};

/// One operation: a method on a path (axum syntax, `{id}` for a parameter).
pub struct Route {
    /// Also compared with the OpenAPI document by the router tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    fn new<H, T>(method: Method, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} cannot be routed"));
        Route {
            method,
            path,
            handler: on(filter, handler),
        }
    }

    fn body_limit(mut self, limit: DefaultBodyLimit) -> Route {
        self.handler = self.handler.layer(limit);
        self
    }
}

/// Every route the server answers.
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(M::GET, "/healthz", usage::healthz),
        Route::new(M::GET, "/openapi.json", openapi::serve),
        Route::new(M::GET, "/v1/compute/fs", fs_routes::list),
        // Read by the handler, within a limit that follows the largest file.
        Route::new(M::PUT, "/v1/compute/fs", fs_routes::put)
            .body_limit(DefaultBodyLimit::disable()),
        Route::new(M::DELETE, "/v1/compute/fs", fs_routes::delete),
        Route::new(M::GET, "/v1/compute/fs/content", content_routes::get),
        // Streamed to the store; the size limit is enforced while writing.
        Route::new(M::PUT, "/v1/compute/fs/content", content_routes::put)
            .body_limit(DefaultBodyLimit::disable()),
        Route::new(M::GET, "/v1/compute/fs/stat", fs_routes::stat),
        Route::new(M::POST, "/v1/compute/fs/move", fs_routes::rename),
        Route::new(M::POST, "/v1/compute/fs/mkdir", fs_routes::mkdir),
        Route::new(M::POST, "/v1/compute/snapshots", snapshot_routes::create),
        Route::new(M::GET, "/v1/compute/snapshots", snapshot_routes::list),
        Route::new(M::GET, "/v1/compute/snapshots/{id}", snapshot_routes::show),
        Route::new(
            M::DELETE,
            "/v1/compute/snapshots/{id}",
            snapshot_routes::delete,
        ),
        Route::new(
            M::POST,
            "/v1/compute/snapshots/{id}/restore",
            snapshot_routes::restore,
        ),
        Route::new(
            M::GET,
            "/v1/compute/snapshots/{id}/diff",
            snapshot_routes::diff,
        ),
        Route::new(M::GET, "/v1/compute/usage", usage::usage),
        // Code of up to the default 2 MB body limit.
        Route::new(M::POST, "/v1/compute/run", run_routes::run),
        Route::new(
            M::POST,
            "/v1/compute/browser/sessions",
            browser_routes::create,
        ),
        Route::new(M::GET, "/v1/compute/browser/sessions", browser_routes::list),
        Route::new(
            M::GET,
            "/v1/compute/browser/sessions/{session_id}",
            browser_routes::show,
        ),
        Route::new(
            M::DELETE,
            "/v1/compute/browser/sessions/{session_id}",
            browser_routes::delete,
        ),
        Route::new(
            M::POST,
            "/v1/compute/browser/sessions/{session_id}/keepalive",
            browser_routes::keepalive,
        ),
        Route::new(
            M::GET,
            "/v1/compute/browser/sessions/{session_id}/screenshot",
            browser_routes::screenshot,
        ),
        Route::new(
            M::GET,
            "/v1/compute/browser/sessions/{session_id}/cdp",
            cdp_proxy::connect,
        ),
        Route::new(
            M::GET,
            "/v1/compute/browser/sessions/{session_id}/cdp/json/version",
            cdp_proxy::version,
        ),
        // Playwright asks with a trailing slash.
        Route::new(
            M::GET,
            "/v1/compute/browser/sessions/{session_id}/cdp/json/version/",
            cdp_proxy::version,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_operation_is_listed_twice() {
        let routes = routes();
        let mut seen = std::collections::HashSet::new();
        for route in &routes {
            assert!(
                seen.insert((route.method.clone(), route.path)),
                "{} {}",
                route.method,
                route.path
            );
        }
    }
}
