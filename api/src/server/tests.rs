//! Router-level tests: the OpenAPI document against the real router in both directions,
//! authentication on every route, the JSON fallbacks, and the routes against a real store.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

fn test_state(dir: &std::path::Path) -> AppState {
    let store = fsd::Store::open(
        dir,
        fsd::StoreOptions {
            durable: false,
            batch_window: Some(fsd::BATCH_WINDOW),
            ..Default::default()
        },
    )
    .expect("open a store");
    AppState::new(
        store,
        Limits {
            max_file_bytes: 1024 * 1024,
        },
    )
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A concrete URI for a documented path.
fn concrete(path: &str) -> String {
    path.replace("{id}", "s1").replace("{session_id}", "s1")
}

#[test]
fn the_document_and_the_route_list_name_the_same_operations() {
    let documented: BTreeSet<(String, String)> = openapi::operations(&openapi::document())
        .into_iter()
        .collect();
    let routed: BTreeSet<(String, String)> = routes::routes()
        .into_iter()
        .map(|route| (route.method.to_string(), route.path.to_string()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented operations with no route: {unrouted:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_needs_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(test_state(dir.path()));
    for (method, path) in openapi::operations(&openapi::document()) {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(concrete(&path))
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&app, request).await;
        if path.starts_with("/v1/compute") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        } else {
            assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(test_state(dir.path()));
    let request = Request::get("/v1/compute/nope")
        .body(Body::empty())
        .unwrap();
    let (status, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let request = Request::patch("/v1/compute/fs")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key(header::ALLOW));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(test_state(dir.path()));
    let unknown = crate::keys::generate().key;
    for authorization in ["Bearer nonsense", "Basic abc", &format!("Bearer {unknown}")] {
        let request = Request::get("/v1/compute/usage")
            .header(header::AUTHORIZATION, authorization)
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

/// A store with one agent, its key, and the router over it.
fn agent_app(dir: &std::path::Path) -> (Router, String) {
    let state = test_state(dir);
    let agent = state.store.create_agent("a").unwrap();
    let key = crate::keys::generate();
    state
        .store
        .add_key(agent.id, &key.id, crate::keys::hash(&key.key))
        .unwrap();
    (router(state), key.key)
}

fn authed(method: Method, uri: &str, key: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn files_round_trip_through_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, key) = agent_app(dir.path());
    let put = r#"{"path": "/reports/summary.txt", "content": "aGVsbG8gd29ybGQ="}"#;
    let (status, body) = call(
        &app,
        authed(Method::PUT, "/v1/compute/fs", &key, put.into()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["size"], 11);

    let (status, body) = call(
        &app,
        authed(
            Method::GET,
            "/v1/compute/fs?path=/reports",
            &key,
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entries"][0]["path"], "/reports/summary.txt");
    assert_eq!(body["entries"][0]["type"], "file");

    let uri = "/v1/compute/fs/content?path=/reports/summary.txt";
    let response = app
        .clone()
        .oneshot(authed(Method::GET, uri, &key, Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"hello world");

    let too_big = Body::from(vec![7u8; 1024 * 1024 + 1]);
    let uri = "/v1/compute/fs/content?path=/big";
    let (status, body) = call(&app, authed(Method::PUT, uri, &key, too_big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _) = call(
        &app,
        authed(
            Method::GET,
            "/v1/compute/fs/stat?path=/big",
            &key,
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = call(
        &app,
        authed(Method::PUT, "/v1/compute/fs", &key, "{".into()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
}
