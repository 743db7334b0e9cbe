//! The JSON file routes under `/v1/compute/fs`: list, stat, base64 upload, delete, move and
//! mkdir. Raw content transfers are in [`super::content_routes`].

use std::borrow::Cow;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
use super::decode;
use super::entry::{Entry, Written};
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, JsonBytes};
use super::state::AppState;

/// Parses a path from a request; a bad one is `400 invalid_path`.
pub fn parse_path(path: &str) -> Result<fsd::FsPath, ApiError> {
    Ok(fsd::FsPath::parse(path)?)
}

/// The view a `snapshot=` parameter selects; absent or empty is the live tree.
pub fn view_of(snapshot: Option<String>) -> fsd::View {
    match snapshot {
        Some(id) if !id.is_empty() => fsd::View::Snapshot(id),
        _ => fsd::View::Live,
    }
}

/// Permission bits from a request: at most `0o7777`.
pub fn check_mode(mode: Option<u32>) -> Result<Option<u32>, ApiError> {
    match mode {
        Some(mode) if mode > 0o7777 => Err(ApiError::invalid_request(format!(
            "mode {mode} is not a set of permission bits (at most 4095, 0o7777)"
        ))),
        _ => Ok(mode),
    }
}

fn root() -> String {
    "/".to_string()
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default = "root")]
    path: String,
    snapshot: Option<String>,
}

/// A directory listing: `{"path", "entries"}`.
#[derive(Debug, Serialize)]
pub struct Listing {
    path: String,
    entries: Vec<Entry>,
}

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn list(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Listing>, ApiError> {
    let path = parse_path(&query.path)?;
    let view = view_of(query.snapshot);
    let listed = path.clone();
    let entries = state
        .blocking(move |store| {
            let mut entries = Vec::new();
            for item in store.list_dir(agent.id, &listed, &view)? {
                let child = listed.join(&item.name);
                let target = match item.attr.kind {
                    fsd::FileType::Symlink => Some(store.readlink(agent.id, &child, &view)?),
                    _ => None,
                };
                entries.push(Entry::new(&child, &item.attr, target));
            }
            Ok(entries)
        })
        .await?;
    Ok(Json(Listing {
        path: path.to_string(),
        entries,
    }))
}

#[derive(Debug, Deserialize)]
pub struct PathQuery {
    pub path: String,
    pub snapshot: Option<String>,
}

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn stat(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Entry>, ApiError> {
    let path = parse_path(&query.path)?;
    let view = view_of(query.snapshot);
    let entry = state
        .blocking(move |store| Entry::load(store, agent.id, &path, &view))
        .await?;
    Ok(Json(entry))
}

/// `PUT /fs`. The content is borrowed from the request body and decoded in place, so a
/// large upload is held once, as its base64.
#[derive(Debug, Deserialize)]
struct PutFile<'a> {
    path: String,
    #[serde(borrow)]
    content: Cow<'a, str>,
    mode: Option<u32>,
}

/// The largest `PUT /fs` body: the base64 of the largest file, plus room for the rest of
/// the JSON.
pub fn base64_body_limit(max_file_bytes: u64) -> usize {
    let encoded = max_file_bytes.div_ceil(3).saturating_mul(4);
    usize::try_from(encoded.saturating_add(64 * 1024)).unwrap_or(usize::MAX)
}

#[instrument(skip_all, fields(agent = %agent.name, path = tracing::field::Empty))]
pub async fn put(
    State(state): State<AppState>,
    agent: Agent,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Written>, ApiError> {
    let max = state.limits.max_file_bytes;
    let limit = base64_body_limit(max);
    let body = JsonBytes::read(&headers, body, limit, || ApiError::too_large(max)).await?;
    let (path, mode, bytes) = decode_put(body, max)?;
    tracing::Span::current().record("path", tracing::field::display(&path));
    let options = fsd::WriteOptions {
        create_parents: true,
        mode,
        max_size: Some(max),
    };
    let written = path.clone();
    let attr = state
        .blocking(move |store| store.write_file(agent.id, &written, &mut &bytes[..], &options))
        .await?;
    Ok(Json(Written::new(&path, &attr)))
}

/// Parses a `PUT /fs` body and decodes its content, reusing the body's buffer.
fn decode_put(body: JsonBytes, max: u64) -> Result<(fsd::FsPath, Option<u32>, Vec<u8>), ApiError> {
    let (path, mode, content) = {
        let request: PutFile<'_> = body.parse()?;
        let path = parse_path(&request.path)?;
        let mode = check_mode(request.mode)?;
        let content = match request.content {
            Cow::Borrowed(text) => {
                let start = text.as_ptr() as usize - body.0.as_ptr() as usize;
                Ok(start..start + text.len())
            }
            Cow::Owned(text) => Err(text),
        };
        (path, mode, content)
    };
    let bytes = match content {
        Ok(range) => decode::decode_in_place(body.0, range, max)?,
        Err(text) => {
            drop(body);
            decode::decode(text, max)?
        }
    };
    Ok((path, mode, bytes))
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    path: String,
    #[serde(default)]
    recursive: bool,
}

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn delete(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let path = parse_path(&query.path)?;
    if path.is_root() {
        return Err(ApiError::invalid_request(
            "the root directory cannot be deleted",
        ));
    }
    let removed = path.clone();
    state
        .blocking(move |store| store.remove(agent.id, &removed, query.recursive))
        .await?;
    Ok(Json(json!({"path": path.to_string(), "deleted": true})))
}

#[derive(Debug, Deserialize)]
pub struct MoveRequest {
    from: String,
    to: String,
    overwrite: Option<bool>,
}

#[instrument(skip_all, fields(agent = %agent.name, from = %request.from, to = %request.to))]
pub async fn rename(
    State(state): State<AppState>,
    agent: Agent,
    ApiJson(request): ApiJson<MoveRequest>,
) -> Result<Json<Entry>, ApiError> {
    let from = parse_path(&request.from)?;
    let to = parse_path(&request.to)?;
    let mode = match request.overwrite.unwrap_or(true) {
        true => fsd::RenameMode::Replace,
        false => fsd::RenameMode::NoReplace,
    };
    let entry = state
        .blocking(move |store| {
            store.rename(agent.id, &from, &to, mode)?;
            Entry::load(store, agent.id, &to, &fsd::View::Live)
        })
        .await?;
    Ok(Json(entry))
}

#[derive(Debug, Deserialize)]
pub struct MkdirRequest {
    path: String,
    #[serde(default)]
    parents: bool,
}

#[instrument(skip_all, fields(agent = %agent.name, path = %request.path))]
pub async fn mkdir(
    State(state): State<AppState>,
    agent: Agent,
    ApiJson(request): ApiJson<MkdirRequest>,
) -> Result<Json<Entry>, ApiError> {
    let path = parse_path(&request.path)?;
    let made = path.clone();
    let attr = state
        .blocking(move |store| store.mkdir(agent.id, &made, request.parents, 0o755))
        .await?;
    Ok(Json(Entry::new(&path, &attr, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_put_bodies_in_place_or_from_escaped_strings() {
        let body = JsonBytes(br#"{"path": "/a", "content": "aGVsbG8=", "mode": 384}"#.to_vec());
        let (path, mode, bytes) = decode_put(body, 100).unwrap();
        assert_eq!(
            (path.to_string(), mode, bytes),
            ("/a".into(), Some(384), b"hello".to_vec())
        );
        let escaped = JsonBytes(br#"{"path": "/a", "content": "aGk\/"}"#.to_vec());
        assert_eq!(decode_put(escaped, 100).unwrap().2, b"hi?");
        let bad = JsonBytes(br#"{"path": "/a", "content": "!!"}"#.to_vec());
        assert_eq!(decode_put(bad, 100).unwrap_err().code, "invalid_base64");
        let big = JsonBytes(br#"{"path": "/a", "content": "aGVsbG8="}"#.to_vec());
        assert_eq!(decode_put(big, 4).unwrap_err().code, "too_large");
    }

    #[test]
    fn base64_limit_fits_the_largest_file() {
        assert_eq!(base64_body_limit(3), 4 + 64 * 1024);
        assert_eq!(base64_body_limit(4), 8 + 64 * 1024);
        assert_eq!(base64_body_limit(u64::MAX), usize::MAX);
    }

    #[test]
    fn borrows_content_from_the_body() {
        let body = JsonBytes(br#"{"path": "/a", "content": "aGVsbG8="}"#.to_vec());
        let request: PutFile<'_> = body.parse().unwrap();
        assert!(matches!(request.content, Cow::Borrowed(_)));
        let missing = JsonBytes(br#"{"content": "aGVsbG8="}"#.to_vec());
        assert_eq!(
            missing.parse::<PutFile<'_>>().unwrap_err().code,
            "invalid_json"
        );
    }

    #[test]
    fn checks_modes_and_views() {
        assert_eq!(check_mode(Some(0o7777)).unwrap(), Some(0o7777));
        assert_eq!(
            check_mode(Some(0o10000)).unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(view_of(None), fsd::View::Live);
        assert_eq!(view_of(Some(String::new())), fsd::View::Live);
        assert_eq!(view_of(Some("s1".into())), fsd::View::Snapshot("s1".into()));
        assert_eq!(parse_path("relative").unwrap_err().code, "invalid_path");
    }
}
