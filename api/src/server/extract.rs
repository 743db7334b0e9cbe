//! Request extractors that answer bad input in the API's error format: JSON bodies
//! ([`ApiJson`], [`JsonBytes`]), query strings ([`ApiQuery`]) and path segments ([`ApiPath`]).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body; any rejection becomes `400 invalid_json` (or `413 too_large`).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::BytesRejection(bytes) => bytes_rejection(bytes),
        JsonRejection::MissingJsonContentType(_) => missing_content_type(),
        other => ApiError::invalid_json(other.body_text()),
    }
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body is larger than the server accepts",
        )
    } else {
        ApiError::invalid_json(format!(
            "could not read the request body: {}",
            rejection.body_text()
        ))
    }
}

fn missing_content_type() -> ApiError {
    ApiError::invalid_json("expected a request body with `Content-Type: application/json`")
}

/// A JSON request body kept as raw bytes, so that a large field can be borrowed from it
/// instead of copied; parse it with [`JsonBytes::parse`].
#[derive(Debug)]
pub struct JsonBytes(pub Vec<u8>);

impl JsonBytes {
    /// Checks the content type, then reads the body (see [`super::body::collect`]).
    pub async fn read(
        headers: &HeaderMap,
        body: Body,
        limit: usize,
        too_large: impl Fn() -> ApiError,
    ) -> Result<JsonBytes, ApiError> {
        if !is_json(headers.get(header::CONTENT_TYPE)) {
            return Err(missing_content_type());
        }
        let declared = super::body::declared_length(headers);
        super::body::collect(body, limit, declared, too_large)
            .await
            .map(JsonBytes)
    }

    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0)
            .map_err(|error| ApiError::invalid_json(format!("invalid JSON body: {error}")))
    }
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Query-string parameters; any rejection becomes `400 invalid_request`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::invalid_request(rejection.body_text())
}

/// Path parameters such as a snapshot id; any rejection becomes `400 invalid_request`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::invalid_request(rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn recognises_json_content_types() {
        let yes = [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ];
        for value in yes {
            assert!(is_json(Some(&HeaderValue::from_static(value))), "{value}");
        }
        for value in ["text/plain", "application/octet-stream", "json"] {
            assert!(!is_json(Some(&HeaderValue::from_static(value))), "{value}");
        }
        assert!(!is_json(None));
    }
}
