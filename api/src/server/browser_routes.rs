//! `/v1/compute/browser/sessions`: create, list, show, keep alive, screenshot and delete an
//! agent's browser sessions. Each session holds the agent's sandbox mount, whose
//! `/downloads` is the browser's download directory.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
use super::error::ApiError;
use super::extract::ApiPath;
use super::state::AppState;
use super::time::rfc3339_ns;

/// The server's browsers, or why there are none.
pub fn browsers(state: &AppState) -> Result<&Arc<browser::Browsers>, ApiError> {
    state.browsers.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "browser_unavailable",
            "browser sessions are not available on this server (Chromium or FUSE is missing; \
             see the server's log)",
        )
    })
}

/// The `ws_url` of a session, on the host and scheme the client used to reach the server.
pub fn cdp_url(headers: &HeaderMap, id: &str, token: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let scheme = if secure { "wss" } else { "ws" };
    format!("{scheme}://{host}/v1/compute/browser/sessions/{id}/cdp?token={token}")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    url: Option<String>,
    viewport: Option<ViewportRequest>,
    idle_timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewportRequest {
    width: u32,
    height: u32,
}

fn timestamp(at: SystemTime) -> String {
    let ns = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    rfc3339_ns(ns)
}

fn session_json(info: &browser::SessionInfo, headers: &HeaderMap) -> Value {
    let mut value = json!({
        "session_id": info.id,
        "ws_url": cdp_url(headers, &info.id, &info.token),
        "status": if info.running { "running" } else { "ended" },
        "created_at": timestamp(info.created_at),
        "last_activity_at": timestamp(info.last_activity_at),
        "expires_at": info.expires_at.map(timestamp),
        "idle_timeout_seconds": info.idle_timeout.as_secs(),
        "viewport": {"width": info.viewport.width, "height": info.viewport.height},
        "connections": info.connections,
        "downloads_in_progress": info.downloads_in_progress,
    });
    if let Some(reason) = &info.ended_reason {
        value["ended_reason"] = json!(reason);
        value["ended_at"] = json!(info.ended_at.map(timestamp));
    }
    if let Some(pages) = &info.pages {
        value["pages"] = pages
            .iter()
            .map(|p| json!({"id": p.id, "url": p.url, "title": p.title}))
            .collect();
    }
    value
}

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn create(
    State(state): State<AppState>,
    agent: Agent,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::invalid_json(format!("invalid JSON body: {error}")))?
    };
    let browsers = browsers(&state)?.clone();
    let mounts = state.mounts.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "browser_unavailable",
            "browser sessions need the agent's filesystem mounted, and FUSE is unavailable",
        )
    })?;
    let agent_id = agent.id;
    // The agent's /downloads is there from the start.
    let lease = tokio::task::spawn_blocking(move || {
        let lease = mounts.acquire(agent_id)?;
        let downloads = lease.path().join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|error| {
            ApiError::internal(format!("creating /downloads in the agent's tree: {error}"))
        })?;
        Ok::<_, ApiError>(lease)
    })
    .await??;
    let request = browser::SessionRequest {
        url: request.url,
        viewport: request.viewport.map(|v| browser::Viewport {
            width: v.width,
            height: v.height,
        }),
        idle_timeout: request.idle_timeout_seconds.map(Duration::from_secs),
        downloads_dir: lease.path().join("downloads"),
        held: Box::new(lease),
    };
    let info = browsers.create(agent.id, request).await?;
    Ok((StatusCode::CREATED, Json(session_json(&info, &headers))))
}

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn list(
    State(state): State<AppState>,
    agent: Agent,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let sessions: Vec<Value> = browsers(&state)?
        .list(agent.id)
        .iter()
        .map(|info| session_json(info, &headers))
        .collect();
    Ok(Json(json!({"sessions": sessions})))
}

#[instrument(skip_all, fields(agent = %agent.name, session = %id))]
pub async fn show(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let info = browsers(&state)?.describe(agent.id, &id).await?;
    Ok(Json(session_json(&info, &headers)))
}

#[instrument(skip_all, fields(agent = %agent.name, session = %id))]
pub async fn keepalive(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let info = browsers(&state)?.keepalive(agent.id, &id)?;
    Ok(Json(session_json(&info, &headers)))
}

#[instrument(skip_all, fields(agent = %agent.name, session = %id))]
pub async fn delete(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let info = browsers(&state)?.end(agent.id, &id).await?;
    Ok(Json(session_json(&info, &headers)))
}

#[instrument(skip_all, fields(agent = %agent.name, session = %id))]
pub async fn screenshot(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let shot = browsers(&state)?.screenshot(agent.id, &id).await?;
    Ok(Json(json!({
        "image": base64::engine::general_purpose::STANDARD.encode(&shot.png),
        "width": shot.width,
        "height": shot.height,
        "format": "png",
    })))
}
