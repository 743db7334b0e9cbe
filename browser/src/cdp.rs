//! The server's own DevTools connection to a browser: commands with ids matched to their
//! answers, events handed to a callback. Only the few commands the server needs have typed
//! wrappers here; clients' traffic goes through the proxy untouched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{Error, Result};

/// The largest message either side of a DevTools connection may send: fits full-page
/// screenshots and large evaluations.
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// How long the server waits for an answer to one of its own commands.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>>;

/// A DevTools event: its method and parameters.
#[derive(Debug, Clone)]
pub struct Event {
    pub method: String,
    pub params: Value,
}

/// A live connection; closed when dropped.
pub struct Connection {
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// The WebSocket limits of every DevTools connection the server makes.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// A page (tab) of a browser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageTarget {
    #[serde(rename = "targetId")]
    pub id: String,
    pub url: String,
    pub title: String,
}

#[derive(Deserialize)]
struct TargetInfo {
    #[serde(rename = "targetId")]
    target_id: String,
    #[serde(rename = "type")]
    kind: String,
    url: String,
    title: String,
}

impl Connection {
    /// Connects to a DevTools WebSocket; `on_event` sees every event the browser sends.
    pub async fn connect(
        url: &str,
        on_event: impl Fn(Event) + Send + Sync + 'static,
    ) -> Result<Connection> {
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(websocket_config()), true)
                .await
                .map_err(|e| Error::Devtools(format!("connecting to {url}: {e}")))?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    let waiter = lock(&answers).remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(answer(value));
                    }
                } else if let Some(method) = value.get("method").and_then(Value::as_str) {
                    on_event(Event {
                        method: method.to_string(),
                        params: value.get("params").cloned().unwrap_or(Value::Null),
                    });
                }
            }
            // The browser went away: everyone still waiting hears so.
            for (_, waiter) in lock(&answers).drain() {
                let _ = waiter.send(Err(Error::Devtools(
                    "the browser closed the connection".into(),
                )));
            }
        });
        Ok(Connection {
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            reader,
            writer,
        })
    }

    /// Sends one command (to a page when `session` names one) and waits for its result.
    pub async fn call(&self, method: &str, params: Value, session: Option<&str>) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        if self
            .outgoing
            .send(Message::text(command.to_string()))
            .is_err()
        {
            lock(&self.pending).remove(&id);
            return Err(Error::Devtools("the browser connection is closed".into()));
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Devtools("the browser connection is closed".into())),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(Error::Devtools(format!(
                    "{method} got no answer within {COMMAND_TIMEOUT:?}"
                )))
            }
        }
    }

    /// The browser's open pages, in the order the browser lists them.
    pub async fn pages(&self) -> Result<Vec<PageTarget>> {
        let result = self.call("Target.getTargets", json!({}), None).await?;
        let infos: Vec<TargetInfo> = serde_json::from_value(result["targetInfos"].clone())
            .map_err(|e| Error::Devtools(format!("Target.getTargets: {e}")))?;
        Ok(infos
            .into_iter()
            .filter(|t| t.kind == "page")
            .map(|t| PageTarget {
                id: t.target_id,
                url: t.url,
                title: t.title,
            })
            .collect())
    }

    /// Where and how the browser saves downloads (for the default browser context).
    pub async fn set_download_behavior(&self, directory: &std::path::Path) -> Result<()> {
        self.call(
            "Browser.setDownloadBehavior",
            json!({
                "behavior": "allow",
                "downloadPath": directory,
                "eventsEnabled": true,
            }),
            None,
        )
        .await?;
        Ok(())
    }

    /// A PNG of a page's viewport, as the page is currently emulated. Attaches for the
    /// capture only, and sets no emulation of its own, so a client's viewport is untouched.
    pub async fn capture_png(&self, page: &str) -> Result<Vec<u8>> {
        let captured = self
            .call_on_page(page, "Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = captured["data"]
            .as_str()
            .ok_or_else(|| Error::Devtools("Page.captureScreenshot gave no data".into()))?;
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| Error::Devtools(format!("Page.captureScreenshot: {e}")))
    }

    /// Starts loading `url` in the browser's first page (without waiting for it to load).
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let pages = self.pages().await?;
        let page = pages
            .first()
            .ok_or_else(|| Error::Devtools("the browser has no page to open a URL in".into()))?;
        self.call_on_page(&page.id, "Page.navigate", json!({"url": url}))
            .await
            .map(|_| ())
    }

    /// Calls `method` on page `page`, attached to it for this call only.
    async fn call_on_page(&self, page: &str, method: &str, params: Value) -> Result<Value> {
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": page, "flatten": true}),
                None,
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Devtools("Target.attachToTarget gave no sessionId".into()))?
            .to_string();
        let answered = self.call(method, params, Some(&session)).await;
        let _ = self
            .call(
                "Target.detachFromTarget",
                json!({"sessionId": session}),
                None,
            )
            .await;
        answered
    }

    /// Opens a page at `url` in a new tab.
    pub async fn open_page(&self, url: &str) -> Result<String> {
        let created = self
            .call("Target.createTarget", json!({"url": url}), None)
            .await?;
        created["targetId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Devtools("Target.createTarget gave no targetId".into()))
    }
}

fn answer(value: Value) -> Result<Value> {
    if let Some(error) = value.get("error") {
        let message = error["message"].as_str().unwrap_or("unknown error");
        return Err(Error::Devtools(message.to_string()));
    }
    Ok(value.get("result").cloned().unwrap_or(Value::Null))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Width and height from a PNG's header.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_png_dimensions() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&360u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((640, 360)));
        assert_eq!(png_size(&png[..20]), None);
        png[1] = b'X';
        assert_eq!(png_size(&png), None);
    }

    #[test]
    fn answers_carry_results_or_errors() {
        assert_eq!(
            answer(json!({"id": 1, "result": {"a": 1}})).unwrap(),
            json!({"a": 1})
        );
        let error = answer(json!({"id": 1, "error": {"code": -32000, "message": "no"}}));
        assert!(matches!(error, Err(Error::Devtools(m)) if m == "no"));
    }
}
