//! Browser sessions through the API: create with a URL and see it loaded, idle expiry and
//! keepalive, delete, a crashed browser, other agents' and bad tokens refused before
//! anything reaches Chromium, bad input, and the session time in the agent's usage.

use std::time::Duration;

use serde_json::json;

use crate::browser_support::{
    Pages, browser_server, browser_tree, browser_usage, create_session, main_browser_pid,
    session_route, still_running, wait_for, websocket_handshake,
};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_session_opens_its_url_and_ends_when_deleted() {
    let server = browser_server(&[]);
    let client = server.client();
    let pages = Pages::serve();
    let url = format!("{}/start", pages.base);
    let session = create_session(
        &client,
        json!({"url": url, "viewport": {"width": 800, "height": 500}}),
    );
    let id = session["session_id"].as_str().unwrap();
    assert_eq!(session["status"], "running");
    assert_eq!(session["viewport"], json!({"width": 800, "height": 500}));
    assert_eq!(session["idle_timeout_seconds"], 3600);
    assert!(session["expires_at"].is_string());

    let shown = wait_for("the page to load", WAIT, || {
        let shown = client.req("GET", &session_route(id, "")).call().ok();
        let loaded = shown["pages"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["url"] == url && p["title"] == "agentbox start page")
        });
        loaded.then_some(shown)
    });
    assert_eq!(shown["connections"], 0);
    let shot = client
        .req("GET", &session_route(id, "/screenshot"))
        .call()
        .ok();
    assert_eq!(
        (shot["width"].as_u64(), shot["height"].as_u64()),
        (Some(800), Some(500))
    );
    assert_eq!(shot["format"], "png");

    let listed = client
        .req("GET", "/v1/compute/browser/sessions")
        .call()
        .ok();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);

    let tree = browser_tree(&server, id);
    assert!(tree.len() > 1, "a browser and its helpers: {tree:?}");
    let deleted = client.req("DELETE", &session_route(id, "")).call().ok();
    assert_eq!(deleted["status"], "ended");
    assert_eq!(deleted["ended_reason"], "deleted");
    assert_eq!(
        still_running(&tree),
        Vec::<i32>::new(),
        "browser processes outlived the session"
    );
    assert!(
        !server.data_dir.join("browsers").join(id).exists(),
        "the profile outlived the session"
    );
    // Deleting again is fine; an ended session takes no more screenshots.
    client
        .req("DELETE", &session_route(id, ""))
        .call()
        .expect_2xx();
    client
        .req("GET", &session_route(id, "/screenshot"))
        .call()
        .expect_error(409, "session_ended");

    // Its time is in the agent's usage.
    let compute = wait_for("browser time in the usage", WAIT, || {
        let compute = browser_usage(&client);
        (compute["browser_ms"].as_u64().unwrap_or(0) > 0).then_some(compute)
    });
    assert_eq!(compute["browser_sessions"], 1, "{compute}");
}

#[test]
fn idle_sessions_expire_unless_kept_alive() {
    let server = browser_server(&[]);
    let client = server.client();
    let idle = create_session(&client, json!({"idle_timeout_seconds": 2}));
    let kept = create_session(&client, json!({"idle_timeout_seconds": 2}));
    let idle_id = idle["session_id"].as_str().unwrap();
    let kept_id = kept["session_id"].as_str().unwrap();
    for _ in 0..10 {
        client
            .req("POST", &session_route(kept_id, "/keepalive"))
            .call()
            .expect_2xx();
        std::thread::sleep(Duration::from_millis(500));
    }
    let idle = client.req("GET", &session_route(idle_id, "")).call().ok();
    assert_eq!(idle["status"], "ended", "{idle}");
    assert_eq!(idle["ended_reason"], "idle for 2 seconds");
    assert_eq!(main_browser_pid(&server, idle_id), None);
    let kept = client.req("GET", &session_route(kept_id, "")).call().ok();
    assert_eq!(kept["status"], "running", "{kept}");
    client
        .req("POST", &session_route(idle_id, "/keepalive"))
        .call()
        .expect_error(409, "session_ended");
}

#[test]
fn a_crashed_browser_ends_its_session_with_the_reason() {
    let server = browser_server(&[]);
    let client = server.client();
    let session = create_session(&client, json!({}));
    let id = session["session_id"].as_str().unwrap();
    // Running and answering first.
    let shown = client.req("GET", &session_route(id, "")).call().ok();
    assert_eq!(shown["pages"].as_array().map(Vec::len), Some(1), "{shown}");
    let tree = browser_tree(&server, id);
    assert!(tree.len() > 1, "a browser and its helpers: {tree:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &tree[0].to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let ended = wait_for("the session to end", WAIT, || {
        let shown = client.req("GET", &session_route(id, "")).call().ok();
        (shown["status"] == "ended").then_some(shown)
    });
    let reason = ended["ended_reason"].as_str().unwrap();
    assert!(reason.contains("exited unexpectedly"), "{reason}");
    // Its helpers, orphaned by the crash, go with the session.
    wait_for("the browser's processes to go", WAIT, || {
        still_running(&tree).is_empty().then_some(())
    });
}

#[test]
fn sessions_are_invisible_to_other_agents_and_to_wrong_tokens() {
    let server = browser_server(&[]);
    let owner = server.client();
    let other = server.create_agent("other", &[]);
    let session = create_session(&owner, json!({}));
    let id = session["session_id"].as_str().unwrap();
    let ws_url = session["ws_url"].as_str().unwrap();
    let token = ws_url.split("token=").nth(1).unwrap();
    let other_key = other.key.clone().unwrap();

    for (method, rest) in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/keepalive"),
        ("GET", "/screenshot"),
    ] {
        other
            .req(method, &session_route(id, rest))
            .call()
            .expect_error(404, "not_found");
    }
    // The CDP routes take the session's token; anything else is an unknown session, and no
    // token at all is refused.
    let cdp = session_route(id, "/cdp");
    let version = session_route(id, "/cdp/json/version");
    server
        .client_with_key(Some(&other_key))
        .req("GET", &version)
        .call()
        .expect_error(404, "not_found");
    server
        .client_with_key(None)
        .req("GET", &version)
        .query("token", "0123")
        .call()
        .expect_error(404, "not_found");
    server
        .client_with_key(None)
        .req("GET", &version)
        .call()
        .expect_error(401, "unauthorized");
    let bearer = format!("Bearer {other_key}");
    for (route, headers) in [
        (format!("{cdp}?token=wrong"), vec![]),
        (cdp.clone(), vec![("Authorization", bearer.as_str())]),
        (cdp.clone(), vec![]),
    ] {
        let status = websocket_handshake(&server, &route, &headers);
        assert!(
            status.contains(" 404 ") || status.contains(" 401 "),
            "{route}: {status}"
        );
    }
    // Nothing reached the browser: no connection was counted, no activity recorded.
    let shown = owner.req("GET", &session_route(id, "")).call().ok();
    assert_eq!(shown["status"], "running");
    assert_eq!(shown["connections"], 0);
    // The right token, in the query or as a bearer, opens it.
    let good = websocket_handshake(&server, &format!("{cdp}?token={token}"), &[]);
    assert!(good.contains(" 101 "), "{good}");
    let bearer = format!("Bearer {token}");
    let good = websocket_handshake(&server, &cdp, &[("Authorization", &bearer)]);
    assert!(good.contains(" 101 "), "{good}");
    let version = server
        .client_with_key(Some(token))
        .req("GET", &version)
        .call()
        .ok();
    assert!(
        version["Browser"].as_str().unwrap().contains("Chrome"),
        "{version}"
    );
    let debugger = version["webSocketDebuggerUrl"].as_str().unwrap();
    assert!(
        debugger.starts_with(&server.url.replace("http://", "ws://")),
        "{debugger}"
    );
    assert!(debugger.contains(&format!("/v1/compute/browser/sessions/{id}/cdp?token=")));
    assert!(
        other.req("GET", "/v1/compute/browser/sessions").call().ok()["sessions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_requests_start_nothing() {
    let server = browser_server(&[]);
    let client = server.client();
    let profiles = || {
        let mut names: Vec<String> = std::fs::read_dir(server.data_dir.join("browsers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // The warm browser (a profile and a download directory), once it is there.
    let warm = wait_for("the warm browser", WAIT, || {
        let names = profiles();
        (names.len() == 2).then_some(names)
    });
    for (body, code) in [
        (json!({"url": "file:///etc/passwd"}), "invalid_request"),
        (json!({"url": "--no-sandbox"}), "invalid_request"),
        (json!({"idle_timeout_seconds": 0}), "invalid_request"),
        (
            json!({"idle_timeout_seconds": 10_000_000}),
            "invalid_request",
        ),
        (
            json!({"viewport": {"width": 10, "height": 10}}),
            "invalid_request",
        ),
        (json!({"colour": "blue"}), "invalid_json"),
        (json!({"url": 5}), "invalid_json"),
    ] {
        client
            .req("POST", "/v1/compute/browser/sessions")
            .json(&body)
            .expect_error(400, code);
    }
    client
        .req("POST", "/v1/compute/browser/sessions")
        .send(crate::support::Body::JsonText("{\"url\":"))
        .expect_error(400, "invalid_json");
    client
        .req("GET", &session_route("nope", ""))
        .call()
        .expect_error(404, "not_found");
    client
        .req("GET", &session_route("nope", "/screenshot"))
        .call()
        .expect_error(404, "not_found");
    let listed = client
        .req("GET", "/v1/compute/browser/sessions")
        .call()
        .ok();
    assert!(listed["sessions"].as_array().unwrap().is_empty());
    assert_eq!(profiles(), warm);
}
