//! What the CDP proxy does to the messages it carries, as pure functions of the text: a
//! client's own download behaviour is kept inside the agent's downloads directory, and
//! download events are watched so that a download in progress keeps its session alive.
//! Everything else passes unchanged.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

/// Rewrites a client's message for the browser. `Browser.setDownloadBehavior` and
/// `Page.setDownloadBehavior` that allow downloads (or ask for the default) get the session's
/// downloads directory and plain `allow`, so files land in the agent's tree under their
/// suggested names; `deny` passes as it is.
pub fn client_to_browser<'a>(text: &'a str, downloads: &Path) -> Cow<'a, str> {
    // Cheap test first: nearly every message is something else.
    if !text.contains("setDownloadBehavior") {
        return Cow::Borrowed(text);
    }
    let Ok(mut message) = serde_json::from_str::<Value>(text) else {
        return Cow::Borrowed(text);
    };
    let method = message.get("method").and_then(Value::as_str);
    if !matches!(
        method,
        Some("Browser.setDownloadBehavior" | "Page.setDownloadBehavior")
    ) {
        return Cow::Borrowed(text);
    }
    let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else {
        return Cow::Borrowed(text);
    };
    let behavior = params.get("behavior").and_then(Value::as_str);
    if behavior == Some("deny") {
        return Cow::Borrowed(text);
    }
    params.insert("behavior".into(), Value::from("allow"));
    params.insert(
        "downloadPath".into(),
        Value::from(downloads.to_string_lossy().into_owned()),
    );
    Cow::Owned(message.to_string())
}

/// Downloads a browser has begun and not yet finished, by guid.
#[derive(Debug, Default)]
pub struct DownloadTracker {
    in_progress: HashSet<String>,
}

impl DownloadTracker {
    /// Follows one message from the browser; true when it was a download event.
    pub fn observe(&mut self, text: &str) -> bool {
        if !text.contains("Browser.download") && !text.contains("Page.download") {
            return false;
        }
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return false;
        };
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        self.observe_event(method, &params)
    }

    /// Follows one parsed event; true when it was a download event.
    pub fn observe_event(&mut self, method: &str, params: &Value) -> bool {
        let Some(guid) = params.get("guid").and_then(Value::as_str) else {
            return false;
        };
        match method {
            "Browser.downloadWillBegin" | "Page.downloadWillBegin" => {
                self.in_progress.insert(guid.to_string());
                true
            }
            "Browser.downloadProgress" | "Page.downloadProgress" => {
                if params.get("state").and_then(Value::as_str) != Some("inProgress") {
                    self.in_progress.remove(guid);
                }
                true
            }
            _ => false,
        }
    }

    pub fn active(&self) -> usize {
        self.in_progress.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOWNLOADS: &str = "/mounts/7/downloads";

    fn rewrite(message: Value) -> Value {
        let text = message.to_string();
        serde_json::from_str(&client_to_browser(&text, Path::new(DOWNLOADS))).unwrap()
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let text = r#"{"id":1,"method":"Runtime.evaluate","params":{"expression":"1"}}"#;
        assert!(matches!(
            client_to_browser(text, Path::new(DOWNLOADS)),
            Cow::Borrowed(t) if t == text
        ));
        let mention = r#"{"id":2,"method":"Runtime.evaluate","params":{"expression":"'setDownloadBehavior'"}}"#;
        assert_eq!(client_to_browser(mention, Path::new(DOWNLOADS)), mention);
        assert_eq!(
            client_to_browser("not json setDownloadBehavior", Path::new(DOWNLOADS)),
            "not json setDownloadBehavior"
        );
    }

    #[test]
    fn a_clients_download_directory_is_kept_in_the_agents_tree() {
        let rewritten = rewrite(json!({
            "id": 5, "sessionId": "S",
            "method": "Browser.setDownloadBehavior",
            "params": {"behavior": "allowAndName", "downloadPath": "/tmp/playwright-artifacts-x",
                       "browserContextId": "C", "eventsEnabled": true}
        }));
        assert_eq!(
            rewritten,
            json!({
                "id": 5, "sessionId": "S",
                "method": "Browser.setDownloadBehavior",
                "params": {"behavior": "allow", "downloadPath": DOWNLOADS,
                           "browserContextId": "C", "eventsEnabled": true}
            })
        );
        let page = rewrite(json!({"id": 6, "method": "Page.setDownloadBehavior",
                                  "params": {"behavior": "default"}}));
        assert_eq!(page["params"]["downloadPath"], DOWNLOADS);
        assert_eq!(page["params"]["behavior"], "allow");
    }

    #[test]
    fn deny_stays_deny() {
        let message = json!({"id": 1, "method": "Browser.setDownloadBehavior",
                             "params": {"behavior": "deny"}});
        assert_eq!(rewrite(message.clone()), message);
    }

    #[test]
    fn tracks_downloads_until_they_end() {
        let mut tracker = DownloadTracker::default();
        let begin = json!({"method": "Browser.downloadWillBegin",
                           "params": {"guid": "g1", "url": "http://x/a", "suggestedFilename": "a.csv"}});
        assert!(tracker.observe(&begin.to_string()));
        assert_eq!(tracker.active(), 1);
        let progress = json!({"method": "Browser.downloadProgress",
                              "params": {"guid": "g1", "state": "inProgress", "receivedBytes": 5}});
        assert!(tracker.observe(&progress.to_string()));
        assert_eq!(tracker.active(), 1);
        let done = json!({"method": "Browser.downloadProgress",
                          "params": {"guid": "g1", "state": "completed"}});
        assert!(tracker.observe(&done.to_string()));
        assert_eq!(tracker.active(), 0);
        assert!(!tracker.observe(r#"{"method":"Page.frameNavigated","params":{}}"#));
    }
}
