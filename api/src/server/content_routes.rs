//! Raw file content: `GET /v1/compute/fs/content` streams a file (with ranges and entity
//! tags) and `PUT /v1/compute/fs/content` streams a request body into one, neither holding
//! the whole file in memory.

use std::io::{Read, Seek};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::instrument;

use super::auth::Agent;
use super::body::{self, BodyFailure, ChannelReader};
use super::entry::Written;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::fs_routes::{PathQuery, check_mode, parse_path, view_of};
use super::range::{RangeError, etag, if_none_match, parse_range};
use super::state::AppState;

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn get(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<PathQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = parse_path(&query.path)?;
    let view = view_of(query.snapshot);
    let reader = state
        .blocking(move |store| store.open_file(agent.id, &path, &view))
        .await?;
    let (len, hash) = (reader.len(), reader.hash());
    download(reader, len, &hash, &headers)
}

/// The response for a download of `reader` (`len` bytes, content hash `hash`) given the
/// request's conditional and range headers.
fn download<R>(
    reader: R,
    len: u64,
    hash: &fsd::Hash,
    headers: &HeaderMap,
) -> Result<Response, ApiError>
where
    R: Read + Seek + Send + 'static,
{
    let tag = etag(hash);
    let tag_value = HeaderValue::from_str(&tag).map_err(|e| ApiError::internal(e.to_string()))?;
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| if_none_match(value.to_str().unwrap_or(""), &tag));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag_value)]).into_response());
    }
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::invalid_request("the Range header is not valid text"))?;
            match parse_range(value, len) {
                Ok(range) => Some(range),
                Err(RangeError::Invalid(message)) => {
                    return Err(ApiError::invalid_request(message));
                }
                Err(RangeError::Unsatisfiable) => {
                    let error = ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "range_not_satisfiable",
                        format!("the range {value:?} lies past the end of the file ({len} bytes)"),
                    );
                    let unsatisfied = format!("bytes */{len}");
                    return Ok(([(header::CONTENT_RANGE, unsatisfied)], error).into_response());
                }
            }
        }
    };
    let (status, start, count) = match range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.start, range.len()),
        None => (StatusCode::OK, 0, len),
    };
    let body = if count == 0 {
        Body::empty()
    } else {
        body::file_body(reader, start, count)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    out.insert(header::ETAG, tag_value);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = range {
        let value = HeaderValue::from_str(&range.content_range(len))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        out.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct PutContentQuery {
    path: String,
    mode: Option<u32>,
}

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn put(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<PutContentQuery>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<Written>, ApiError> {
    let path = parse_path(&query.path)?;
    let mode = check_mode(query.mode)?;
    let max = state.limits.max_file_bytes;
    let declared = body::declared_length(&headers);
    if declared.is_some_and(|declared| declared > max) {
        return Err(ApiError::too_large(max));
    }

    let _turn = state.upload_turn().await?;
    let (tx, rx) = body::upload_channel();
    let failure = BodyFailure::default();
    let reader_failure = failure.clone();
    let options = fsd::WriteOptions {
        create_parents: true,
        mode,
        max_size: Some(max),
    };
    let written = path.clone();
    let write = state.blocking(move |store| {
        let mut reader = ChannelReader::new(rx, reader_failure);
        store.write_file(agent.id, &written, &mut reader, &options)
    });
    tokio::pin!(write);
    let pump = body::pump(request_body, tx, failure.clone());
    // The write may finish before the body does (at the size limit, say): then the rest of
    // the body is not read.
    let result = tokio::select! {
        result = &mut write => result,
        () = pump => write.await,
    };
    match result {
        Ok(attr) => Ok(Json(Written::new(&path, &attr))),
        Err(error) => match failure.get() {
            Some(why) if error.status.is_server_error() => {
                Err(ApiError::invalid_request(why.clone()))
            }
            _ => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const DATA: &[u8] = b"0123456789";

    fn request(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    async fn answer(pairs: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let hash = fsd::Hash::of(DATA);
        let response = match download(Cursor::new(DATA), DATA.len() as u64, &hash, &request(pairs))
        {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn serves_whole_files_with_their_tag() {
        let (status, headers, body) = answer(&[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, DATA);
        assert_eq!(headers[header::CONTENT_LENGTH], "10");
        assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
        assert_eq!(headers[header::ETAG], etag(&fsd::Hash::of(DATA)).as_str());
    }

    #[tokio::test]
    async fn serves_ranges() {
        let (status, headers, body) = answer(&[(header::RANGE, "bytes=2-4")]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, b"234");
        assert_eq!(headers[header::CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(headers[header::CONTENT_LENGTH], "3");
        let (_, _, body) = answer(&[(header::RANGE, "bytes=-3")]).await;
        assert_eq!(body, b"789");
    }

    #[tokio::test]
    async fn refuses_bad_and_unsatisfiable_ranges() {
        let (status, headers, body) = answer(&[(header::RANGE, "bytes=10-")]).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(headers[header::CONTENT_RANGE], "bytes */10");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("range_not_satisfiable")
        );
        let (status, _, body) = answer(&[(header::RANGE, "bytes=5-1")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8(body).unwrap().contains("invalid_request"));
    }

    #[tokio::test]
    async fn answers_not_modified_for_a_matching_tag() {
        let tag = etag(&fsd::Hash::of(DATA));
        let (status, headers, body) =
            answer(&[(header::IF_NONE_MATCH, &tag), (header::RANGE, "bytes=0-1")]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(headers[header::ETAG], tag.as_str());
        assert!(body.is_empty());
        let (status, _, _) = answer(&[(header::IF_NONE_MATCH, "\"stale\"")]).await;
        assert_eq!(status, StatusCode::OK);
    }
}
