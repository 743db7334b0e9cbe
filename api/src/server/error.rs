//! [`ApiError`]: every failure the API reports, and its one rendering as
//! `{"error": {"code": "...", "message": "..."}}` with the matching status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to the client: a status, a stable machine-readable code and a
/// human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn invalid_json(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("file too large: the limit is {limit} bytes"),
        )
    }

    /// 429: the agent or the server has as many runs going as it allows.
    pub fn too_many_runs(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_runs", message)
        }
    }

    /// 503: runs cannot be made on this server (no FUSE, no cgroups, a missing runtime).
    pub fn runs_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "runs_unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<fsd::Error> for ApiError {
    fn from(error: fsd::Error) -> ApiError {
        use fsd::Error as E;
        let message = error.to_string();
        let (status, code) = match &error {
            E::NotFound(_) | E::NoSuchSnapshot(_) | E::NoSuchAttribute(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            E::NotADirectory(_) => (StatusCode::CONFLICT, "not_a_directory"),
            E::IsADirectory(_) => (StatusCode::CONFLICT, "is_a_directory"),
            E::DirectoryNotEmpty(_) => (StatusCode::CONFLICT, "directory_not_empty"),
            E::InvalidPath(_) | E::NameTooLong(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            E::Reserved(_) => (StatusCode::BAD_REQUEST, "reserved_path"),
            E::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            E::QuotaExceeded(_) => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
            _ => {
                // Say what failed, with every cause, so the operator's log and the client
                // both see the whole story.
                let mut full = message;
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    full.push_str(": ");
                    full.push_str(&cause.to_string());
                    source = cause.source();
                }
                return ApiError::internal(full);
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<browser::Error> for ApiError {
    fn from(error: browser::Error) -> ApiError {
        use browser::Error as E;
        let (status, code) = match &error {
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::Ended { .. } => (StatusCode::CONFLICT, "session_ended"),
            E::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::TooManySessions(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions"),
            E::Launch(_) => (StatusCode::SERVICE_UNAVAILABLE, "browser_unavailable"),
            E::Devtools(_) => (StatusCode::BAD_GATEWAY, "browser_error"),
            E::Io { source, .. } => {
                return ApiError::internal(format!("{error}: {source}"));
            }
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a storage task failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(error: fsd::Error) -> (u16, &'static str) {
        let api = ApiError::from(error);
        (api.status.as_u16(), api.code)
    }

    #[test]
    fn maps_every_store_error() {
        let s = || "/x".to_string();
        assert_eq!(mapped(fsd::Error::NotFound(s())), (404, "not_found"));
        assert_eq!(
            mapped(fsd::Error::AlreadyExists(s())),
            (409, "already_exists")
        );
        assert_eq!(
            mapped(fsd::Error::NotADirectory(s())),
            (409, "not_a_directory")
        );
        assert_eq!(
            mapped(fsd::Error::IsADirectory(s())),
            (409, "is_a_directory")
        );
        assert_eq!(
            mapped(fsd::Error::DirectoryNotEmpty(s())),
            (409, "directory_not_empty")
        );
        assert_eq!(mapped(fsd::Error::InvalidPath(s())), (400, "invalid_path"));
        assert_eq!(mapped(fsd::Error::Reserved(s())), (400, "reserved_path"));
        assert_eq!(
            mapped(fsd::Error::InvalidArgument(s())),
            (400, "invalid_request")
        );
        assert_eq!(
            mapped(fsd::Error::TooLarge { limit: 5 }),
            (413, "too_large")
        );
        assert_eq!(
            mapped(fsd::Error::QuotaExceeded(s())),
            (507, "quota_exceeded")
        );
        assert_eq!(mapped(fsd::Error::Locked(s())), (500, "internal"));
        assert_eq!(mapped(fsd::Error::Corrupt(s())), (500, "internal"));
    }

    #[test]
    fn maps_every_browser_error() {
        let mapped = |error: browser::Error| {
            let api = ApiError::from(error);
            (api.status.as_u16(), api.code)
        };
        let id = || "s1".to_string();
        assert_eq!(mapped(browser::Error::NotFound(id())), (404, "not_found"));
        assert_eq!(
            mapped(browser::Error::Ended {
                id: id(),
                reason: "deleted".into()
            }),
            (409, "session_ended")
        );
        assert_eq!(
            mapped(browser::Error::InvalidRequest(id())),
            (400, "invalid_request")
        );
        assert_eq!(
            mapped(browser::Error::TooManySessions(2)),
            (429, "too_many_sessions")
        );
        assert_eq!(
            mapped(browser::Error::Launch(id())),
            (503, "browser_unavailable")
        );
        assert_eq!(
            mapped(browser::Error::Devtools(id())),
            (502, "browser_error")
        );
    }

    #[test]
    fn internal_errors_carry_their_causes() {
        let error = fsd::Error::Io {
            context: "writing blob".into(),
            source: std::io::Error::other("disk full"),
        };
        let api = ApiError::from(error);
        assert_eq!(api.code, "internal");
        assert_eq!(api.message, "writing blob: disk full");
    }

    #[tokio::test]
    async fn renders_the_documented_shape() {
        let response = ApiError::not_found("no such file or directory: /x").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"error": {"code": "not_found", "message": "no such file or directory: /x"}})
        );
    }

    #[test]
    fn too_many_runs_says_when_to_retry() {
        let response = ApiError::too_many_runs("busy", 2).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_key() {
        let response = ApiError::unauthorized("missing key").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
