//! The CDP endpoint of a browser session: the WebSocket a client's `ws_url` names, and the
//! HTTP discovery route (`/json/version`) that points back at it. A connection is accepted
//! only with the session's own token, checked before anything reaches Chromium; messages
//! then flow both ways, client messages count as activity, and the few rules of
//! [`browser::proxy`] apply (downloads stay in the agent's tree).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use browser::Session;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message as Upstream};

use super::browser_routes::{browsers, cdp_url};
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The token from `?token=` or, failing that, `Authorization: Bearer`.
fn presented_token<'a>(query: &'a TokenQuery, headers: &'a HeaderMap) -> Result<&'a str, ApiError> {
    if let Some(token) = query.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "a browser session's CDP endpoint needs its token: `?token=` or \
                 `Authorization: Bearer <token>`",
            )
        })
}

fn authorize(
    state: &AppState,
    id: &str,
    query: &TokenQuery,
    headers: &HeaderMap,
) -> Result<Arc<Session>, ApiError> {
    let token = presented_token(query, headers)?;
    Ok(browsers(state)?.authorize(id, token)?)
}

/// `GET .../cdp`: upgrades to a WebSocket proxied to the session's browser.
pub async fn connect(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let session = authorize(&state, &id, &query, &headers)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "this is a CDP WebSocket endpoint: {}",
                rejection.body_text()
            ),
        )
    })?;
    // Connect upstream first, so a browser that cannot be reached is an HTTP error.
    let (upstream, _) = tokio_tungstenite::connect_async_with_config(
        session.devtools_url(),
        Some(browser::cdp::websocket_config()),
        true,
    )
    .await
    .map_err(|error| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "browser_error",
            format!("connecting to the browser: {error}"),
        )
    })?;
    Ok(upgrade
        .max_message_size(browser::cdp::MAX_MESSAGE_BYTES)
        .max_frame_size(browser::cdp::MAX_MESSAGE_BYTES)
        .on_upgrade(move |client| relay(client, upstream, session)))
}

/// `GET .../cdp/json/version`: what `chromium --remote-debugging-port` answers there, with
/// `webSocketDebuggerUrl` pointing at this server.
pub async fn version(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let session = authorize(&state, &id, &query, &headers)?;
    session.touch();
    let token = presented_token(&query, &headers)?;
    let mut version = session.version().await?;
    version["webSocketDebuggerUrl"] = json!(cdp_url(&headers, &id, token));
    Ok(Json(version))
}

type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Carries messages both ways until either side closes or the session ends.
async fn relay(client: WebSocket, upstream: UpstreamSocket, session: Arc<Session>) {
    let _connection = session.connect();
    let (mut to_client, mut from_client) = client.split();
    let (mut to_browser, mut from_browser) = upstream.split();
    let downloads = session.download_dir().to_path_buf();
    let inbound = async {
        while let Some(Ok(message)) = from_client.next().await {
            session.touch();
            let forwarded = match message {
                ws::Message::Text(text) => {
                    match browser::proxy::client_to_browser(text.as_str(), &downloads) {
                        std::borrow::Cow::Borrowed(_) => upstream_text(text.into()),
                        std::borrow::Cow::Owned(rewritten) => Some(Upstream::text(rewritten)),
                    }
                }
                ws::Message::Binary(bytes) => Some(Upstream::Binary(bytes)),
                ws::Message::Close(_) => break,
                // axum answers pings itself.
                ws::Message::Ping(_) | ws::Message::Pong(_) => None,
            };
            if let Some(message) = forwarded
                && to_browser.send(message).await.is_err()
            {
                break;
            }
        }
        let _ = to_browser.close().await;
    };
    let outbound = async {
        while let Some(Ok(message)) = from_browser.next().await {
            let forwarded = match message {
                Upstream::Text(text) => {
                    session.observe_browser_message(text.as_str());
                    ws::Utf8Bytes::try_from(Bytes::from(text))
                        .ok()
                        .map(ws::Message::Text)
                }
                Upstream::Binary(bytes) => Some(ws::Message::Binary(bytes)),
                Upstream::Close(_) => break,
                _ => None,
            };
            if let Some(message) = forwarded
                && to_client.send(message).await.is_err()
            {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
        () = session.ending() => {}
    }
}

fn upstream_text(bytes: Bytes) -> Option<Upstream> {
    tungstenite::Utf8Bytes::try_from(bytes)
        .ok()
        .map(Upstream::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_token_from_the_query_or_the_header() {
        let mut headers = HeaderMap::new();
        let query = TokenQuery {
            token: Some("q".into()),
        };
        assert_eq!(presented_token(&query, &headers).unwrap(), "q");
        headers.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(
            presented_token(&TokenQuery::default(), &headers).unwrap(),
            "h"
        );
        let empty = TokenQuery {
            token: Some(String::new()),
        };
        assert_eq!(presented_token(&empty, &headers).unwrap(), "h");
        let error = presented_token(&TokenQuery::default(), &HeaderMap::new()).unwrap_err();
        assert_eq!(error.code, "unauthorized");
    }
}
