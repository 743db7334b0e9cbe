//! The browser-session part of the OpenAPI document: its paths (the CDP WebSocket and its
//! discovery route included) and schemas.

use serde_json::{Map, Value, json};

use super::{json_body, ok, operation, path_item, query, responses, schema};

fn session_param() -> Value {
    json!({"name": "session_id", "in": "path", "required": true,
           "description": "the session's id", "schema": {"type": "string"}})
}

fn token_param() -> Value {
    query(
        "token",
        "the session's token (from `ws_url`); `Authorization: Bearer <token>` also works",
        false,
        "string",
    )
}

/// Adds the browser paths to `paths`.
pub fn add_paths(paths: &mut Map<String, Value>) {
    let session = ok("the session", "BrowserSession");
    let base = "/v1/compute/browser/sessions";
    let mut add = |suffix: &str, item: Value| paths.insert(format!("{base}{suffix}"), item);
    add(
        "",
        path_item(&[
            (
                "post",
                operation(
                    "create_browser_session",
                    "Start a headless Chromium; its `ws_url` takes any CDP client",
                    vec![],
                    Some(json_body(schema("CreateBrowserSessionRequest"))),
                    responses(&[("201", ok("the new session", "BrowserSession"))]),
                    &[400, 429, 503],
                ),
            ),
            (
                "get",
                operation(
                    "list_browser_sessions",
                    "The agent's sessions, running and recently ended",
                    vec![],
                    None,
                    responses(&[("200", ok("the sessions", "BrowserSessionList"))]),
                    &[503],
                ),
            ),
        ]),
    );
    add(
        "/{session_id}",
        path_item(&[
            (
                "get",
                operation(
                    "show_browser_session",
                    "A session, with its open pages while it runs",
                    vec![session_param()],
                    None,
                    responses(&[("200", session.clone())]),
                    &[404, 502, 503],
                ),
            ),
            (
                "delete",
                operation(
                    "delete_browser_session",
                    "End a session (idempotent): its browser and profile are gone on return",
                    vec![session_param()],
                    None,
                    responses(&[("200", session.clone())]),
                    &[404, 503],
                ),
            ),
        ]),
    );
    add(
        "/{session_id}/keepalive",
        path_item(&[(
            "post",
            operation(
                "keep_browser_session_alive",
                "Count as activity: push the idle deadline back",
                vec![session_param()],
                None,
                responses(&[("200", session)]),
                &[404, 409, 503],
            ),
        )]),
    );
    add(
        "/{session_id}/screenshot",
        path_item(&[(
            "get",
            operation(
                "browser_screenshot",
                "A PNG of the current page's viewport",
                vec![session_param()],
                None,
                responses(&[("200", ok("the screenshot", "Screenshot"))]),
                &[400, 404, 409, 502, 503],
            ),
        )]),
    );
    let websocket = json!({"description": "the WebSocket is open: CDP messages both ways"});
    add(
        "/{session_id}/cdp",
        path_item(&[(
            "get",
            operation(
                "browser_cdp",
                "The session's Chrome DevTools Protocol WebSocket (`ws_url`); authenticated by \
                 the session token, not the agent key",
                vec![session_param(), token_param()],
                None,
                responses(&[("101", websocket)]),
                &[400, 404, 409, 502, 503],
            ),
        )]),
    );
    for suffix in [
        "/{session_id}/cdp/json/version",
        "/{session_id}/cdp/json/version/",
    ] {
        add(
            suffix,
            path_item(&[(
                "get",
                operation(
                    "browser_cdp_version",
                    "DevTools discovery, as Chromium answers it, with `webSocketDebuggerUrl` \
                     pointing at this server (for clients given an HTTP URL)",
                    vec![session_param(), token_param()],
                    None,
                    responses(&[("200", ok("the browser's version", "BrowserVersion"))]),
                    &[404, 409, 502, 503],
                ),
            )]),
        );
    }
}

/// The browser schemas, added to the document's components.
pub fn schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    let count = json!({"type": "integer", "minimum": 0});
    let viewport = json!({"type": "object", "required": ["width", "height"], "properties": {
        "width": {"type": "integer", "minimum": 100, "maximum": 4096},
        "height": {"type": "integer", "minimum": 100, "maximum": 4096}}});
    let value = json!({
        "CreateBrowserSessionRequest": {"type": "object", "properties": {
            "url": {"type": "string", "description": "http(s) URL or about:blank to open at once"},
            "viewport": viewport,
            "idle_timeout_seconds": {"type": "integer", "minimum": 1,
                "description": "default 3600; at most the server's maximum"}}},
        "BrowserSession": {"type": "object",
            "required": ["session_id", "ws_url", "status", "created_at", "last_activity_at",
                "expires_at", "idle_timeout_seconds", "viewport", "connections",
                "downloads_in_progress"],
            "properties": {
                "session_id": string, "ws_url": {"type": "string", "format": "uri"},
                "status": {"type": "string", "enum": ["running", "ended"]},
                "ended_reason": string, "ended_at": time,
                "created_at": time, "last_activity_at": time,
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
                "idle_timeout_seconds": count, "viewport": viewport,
                "connections": count, "downloads_in_progress": count,
                "pages": {"type": "array", "items": {"type": "object",
                    "required": ["id", "url", "title"],
                    "properties": {"id": string, "url": string, "title": string}}}}},
        "BrowserSessionList": {"type": "object", "required": ["sessions"], "properties": {
            "sessions": {"type": "array", "items": schema("BrowserSession")}}},
        "Screenshot": {"type": "object", "required": ["image", "width", "height", "format"],
            "properties": {"image": {"type": "string", "contentEncoding": "base64"},
                "width": count, "height": count,
                "format": {"type": "string", "const": "png"}}},
        "BrowserVersion": {"type": "object", "required": ["Browser", "webSocketDebuggerUrl"],
            "properties": {"Browser": string, "Protocol-Version": string, "User-Agent": string,
                "V8-Version": string, "WebKit-Version": string,
                "webSocketDebuggerUrl": {"type": "string", "format": "uri"}}},
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}
