//! The one list of routes. The router is built from it, and the OpenAPI document is checked
//! against it, so a route cannot exist without being documented or the other way round.

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};

use super::state::{AppState, Limits};
use super::{content_routes, fs_routes, openapi, snapshot_routes, usage};

/// One operation: a method on a path (axum syntax, `{id}` for a parameter).
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn route(method: Method, path: &'static str, handler: MethodRouter<AppState>) -> Route {
    Route { method, path, handler }
}

/// Every route the server answers.
pub fn routes(limits: Limits) -> Vec<Route> {
    let base64_limit = DefaultBodyLimit::max(base64_body_limit(limits.max_file_bytes));
    vec![
        route(Method::GET, "/healthz", get(usage::healthz)),
        route(Method::GET, "/openapi.json", get(openapi::serve)),
        route(Method::GET, "/v1/compute/fs", get(fs_routes::list)),
        route(Method::PUT, "/v1/compute/fs", put(fs_routes::put).layer(base64_limit)),
        route(Method::DELETE, "/v1/compute/fs", delete(fs_routes::delete)),
        route(Method::GET, "/v1/compute/fs/content", get(content_routes::get)),
        route(
            Method::PUT,
            "/v1/compute/fs/content",
            // Streamed to the store; the size limit is enforced while writing.
            put(content_routes::put).layer(DefaultBodyLimit::disable()),
        ),
        route(Method::GET, "/v1/compute/fs/stat", get(fs_routes::stat)),
        route(Method::POST, "/v1/compute/fs/move", post(fs_routes::rename)),
        route(Method::POST, "/v1/compute/fs/mkdir", post(fs_routes::mkdir)),
        route(Method::POST, "/v1/compute/snapshots", post(snapshot_routes::create)),
        route(Method::GET, "/v1/compute/snapshots", get(snapshot_routes::list)),
        route(Method::GET, "/v1/compute/snapshots/{id}", get(snapshot_routes::show)),
        route(Method::DELETE, "/v1/compute/snapshots/{id}", delete(snapshot_routes::delete)),
        route(Method::POST, "/v1/compute/snapshots/{id}/restore", post(snapshot_routes::restore)),
        route(Method::GET, "/v1/compute/snapshots/{id}/diff", get(snapshot_routes::diff)),
        route(Method::GET, "/v1/compute/usage", get(usage::usage)),
    ]
}

/// The largest `PUT /fs` body: the base64 of the largest file, plus room for the rest of
/// the JSON.
pub fn base64_body_limit(max_file_bytes: u64) -> usize {
    let encoded = max_file_bytes.div_ceil(3).saturating_mul(4);
    usize::try_from(encoded.saturating_add(64 * 1024)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_limit_fits_the_largest_file() {
        assert_eq!(base64_body_limit(3), 4 + 64 * 1024);
        assert_eq!(base64_body_limit(4), 8 + 64 * 1024);
        assert_eq!(base64_body_limit(u64::MAX), usize::MAX);
    }

    #[test]
    fn no_operation_is_listed_twice() {
        let routes = routes(Limits::default());
        let mut seen = std::collections::HashSet::new();
        for route in &routes {
            assert!(seen.insert((route.method.clone(), route.path)), "{} {}", route.method, route.path);
        }
    }
}
