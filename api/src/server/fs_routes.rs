//! The JSON file routes under `/v1/compute/fs`: list, stat, base64 upload, delete, move and
//! mkdir. Raw content transfers are in [`super::content_routes`].

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
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

#[instrument(skip_all, fields(agent = %agent.name, path = %query.path))]
pub async fn list(
    State(state): State<AppState>,
    agent: Agent,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({"path": path.to_string(), "entries": entries})))
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
    let entry = state.blocking(move |store| Entry::load(store, agent.id, &path, &view)).await?;
    Ok(Json(entry))
}

/// `PUT /fs`: the content is borrowed from the request body where it can be, so a large
/// upload is held once as base64 and once decoded, never more.
#[derive(Debug, Deserialize)]
struct PutFile<'a> {
    path: String,
    #[serde(borrow)]
    content: Cow<'a, str>,
    mode: Option<u32>,
}

#[instrument(skip_all, fields(agent = %agent.name, path = tracing::field::Empty))]
pub async fn put(
    State(state): State<AppState>,
    agent: Agent,
    body: JsonBytes,
) -> Result<Json<Written>, ApiError> {
    let max = state.limits.max_file_bytes;
    let (path, mode, bytes) = {
        let request: PutFile<'_> = body.parse()?;
        tracing::Span::current().record("path", request.path.as_str());
        let path = parse_path(&request.path)?;
        let mode = check_mode(request.mode)?;
        (path, mode, decode_base64(&request.content, max)?)
    };
    drop(body);
    let options = fsd::WriteOptions { create_parents: true, mode, max_size: Some(max) };
    let written = path.clone();
    let attr = state
        .blocking(move |store| store.write_file(agent.id, &written, &mut &bytes[..], &options))
        .await?;
    Ok(Json(Written::new(&path, &attr)))
}

/// Decodes standard base64 (padding optional, whitespace ignored) of at most `max` bytes.
fn decode_base64(text: &str, max: u64) -> Result<Vec<u8>, ApiError> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text: Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(text.chars().filter(|c| !c.is_ascii_whitespace()).collect())
    } else {
        Cow::Borrowed(text)
    };
    // Every 4 characters decode to 3 bytes, less at most 2 for padding.
    if (text.len() as u64 / 4 * 3).saturating_sub(2) > max {
        return Err(ApiError::too_large(max));
    }
    let bytes = ENGINE.decode(text.as_bytes()).map_err(|error| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_base64",
            format!("`content` is not valid base64: {error}"),
        )
    })?;
    if bytes.len() as u64 > max {
        return Err(ApiError::too_large(max));
    }
    Ok(bytes)
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
        return Err(ApiError::invalid_request("the root directory cannot be deleted"));
    }
    let removed = path.clone();
    state.blocking(move |store| store.remove(agent.id, &removed, query.recursive)).await?;
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
    fn decodes_base64_leniently_but_refuses_garbage() {
        assert_eq!(decode_base64("aGVsbG8=", 100).unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8", 100).unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8=\n", 100).unwrap(), b"hello");
        assert_eq!(decode_base64("", 100).unwrap(), b"");
        assert_eq!(decode_base64("not base64!", 100).unwrap_err().code, "invalid_base64");
        assert_eq!(decode_base64("aGVsbG8=", 4).unwrap_err().code, "too_large");
        assert_eq!(decode_base64("aGVsbG8=", 5).unwrap(), b"hello");
        let big = "A".repeat(4000);
        assert_eq!(decode_base64(&big, 2000).unwrap_err().code, "too_large");
    }

    #[test]
    fn borrows_content_from_the_body() {
        let body = JsonBytes(r#"{"path": "/a", "content": "aGVsbG8="}"#.into());
        let request: PutFile<'_> = body.parse().unwrap();
        assert!(matches!(request.content, Cow::Borrowed(_)));
        let missing = JsonBytes(r#"{"content": "aGVsbG8="}"#.into());
        assert_eq!(missing.parse::<PutFile<'_>>().unwrap_err().code, "invalid_json");
    }

    #[test]
    fn checks_modes_and_views() {
        assert_eq!(check_mode(Some(0o7777)).unwrap(), Some(0o7777));
        assert_eq!(check_mode(Some(0o10000)).unwrap_err().code, "invalid_request");
        assert_eq!(view_of(None), fsd::View::Live);
        assert_eq!(view_of(Some(String::new())), fsd::View::Live);
        assert_eq!(view_of(Some("s1".into())), fsd::View::Snapshot("s1".into()));
        assert_eq!(parse_path("relative").unwrap_err().code, "invalid_path");
    }
}
