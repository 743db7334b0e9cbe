//! What the CDP proxy does to the messages it carries, as a pure function of the text: a
//! client's own download behaviour is kept to the session's download directory. Everything
//! else passes unchanged (download events the browser sends are followed by
//! [`crate::downloads`]).

use std::borrow::Cow;
use std::path::Path;

use serde_json::Value;

/// Rewrites a client's message for the browser. `Browser.setDownloadBehavior` and
/// `Page.setDownloadBehavior` that allow downloads (or ask for the default) get the session's
/// download directory and plain `allow`, so files are saved under their suggested names and
/// reach the agent's tree; `deny` passes as it is.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOWNLOADS: &str = "/data/browsers/s1.downloads";

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
    fn a_clients_download_directory_is_kept_to_the_sessions() {
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
}
