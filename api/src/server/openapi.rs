//! The OpenAPI 3.1 document served at `/openapi.json`: every route, its parameters, bodies
//! and responses, and the error schema. Checked against the router in `server/tests.rs`.

use axum::Json;
use serde_json::{Map, Value, json};

mod browser;
mod schemas;

pub async fn serve() -> Json<Value> {
    Json(document())
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema_value: Value) -> Value {
    json!({"content": {"application/json": {"schema": schema_value}}})
}

fn ok(description: &str, name: &str) -> Value {
    let mut response = json_body(schema(name));
    response["description"] = json!(description);
    response
}

fn query(name: &str, description: &str, required: bool, kind: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description,
           "schema": {"type": kind}})
}

fn path_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "snapshot id or name",
           "schema": {"type": "string"}})
}

fn snapshot_param() -> Value {
    query(
        "snapshot",
        "read the tree as of this snapshot (id or name)",
        false,
        "string",
    )
}

/// An operation: `responses` holds the success responses; every documented error status in
/// `errors` is added with the error schema, and 401 for every authenticated route.
fn operation(
    id: &str,
    summary: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    mut responses: Map<String, Value>,
    errors: &[u16],
) -> Value {
    let authenticated = !matches!(id, "health" | "openapi");
    let mut statuses: Vec<u16> = errors.to_vec();
    if authenticated {
        statuses.push(401);
    }
    for status in statuses {
        responses.insert(
            status.to_string(),
            json!({"description": error_description(status),
                   "content": {"application/json": {"schema": schema("Error")}}}),
        );
    }
    let mut op = json!({"operationId": id, "summary": summary, "responses": responses});
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    if !authenticated {
        op["security"] = json!([]);
    }
    op
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "invalid_path, reserved_path, invalid_json, invalid_base64, invalid_request or network_not_allowed"
        }
        401 => "unauthorized: missing, malformed, unknown or revoked key",
        404 => "not_found: no such entry or snapshot",
        409 => {
            "not_a_directory, is_a_directory, already_exists, directory_not_empty or \
             session_ended"
        }
        413 => "too_large: upload over the server's limit",
        416 => "range_not_satisfiable: a Range past the end of the file",
        429 => {
            "too_many_runs or too_many_sessions: the agent or the server has as many runs or \
             browsers going as allowed (see Retry-After)"
        }
        502 => "browser_error: the browser did not answer as expected",
        503 => {
            "runs_unavailable or browser_unavailable: runs or browsers cannot be made on this \
             server (the message says why)"
        }
        507 => "quota_exceeded: the agent's byte or file quota would be exceeded",
        _ => "an error",
    }
}

fn responses(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(status, value)| (status.to_string(), value.clone()))
        .collect()
}

fn path_item(operations: &[(&str, Value)]) -> Value {
    Value::Object(
        operations
            .iter()
            .map(|(m, op)| (m.to_string(), op.clone()))
            .collect(),
    )
}

fn paths() -> Value {
    let path_q = |description: &str| query("path", description, true, "string");
    let raw_file = json!({"description": "the file's bytes", "headers": {
        "ETag": {"schema": {"type": "string"}, "description": "the content hash, quoted"},
        "Accept-Ranges": {"schema": {"type": "string", "const": "bytes"}}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
    let partial = json!({"description": "the requested byte range", "headers": {
        "Content-Range": {"schema": {"type": "string"}, "description": "bytes a-b/len"}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
    let header = |name: &str, description: &str| {
        json!({"name": name, "in": "header", "required": false, "description": description,
               "schema": {"type": "string"}})
    };
    let written = ok("what was written", "Written");
    let entry = ok("the entry", "Entry");
    let snapshot = ok("the snapshot", "Snapshot");
    let mut paths = Map::new();
    let mut add = |path: &str, item: Value| paths.insert(path.to_string(), item);

    add(
        "/healthz",
        path_item(&[(
            "get",
            operation(
                "health",
                "Liveness check",
                vec![],
                None,
                responses(&[("200", ok("the server is up", "Health"))]),
                &[],
            ),
        )]),
    );
    add(
        "/openapi.json",
        path_item(&[(
            "get",
            operation(
                "openapi",
                "This document",
                vec![],
                None,
                responses(&[(
                    "200",
                    json!({"description": "the OpenAPI document",
            "content": {"application/json": {"schema": {"type": "object"}}}}),
                )]),
                &[],
            ),
        )]),
    );
    add(
        "/v1/compute/fs",
        path_item(&[
            (
                "get",
                operation(
                    "list_directory",
                    "List a directory, sorted by name",
                    vec![
                        query("path", "the directory; defaults to /", false, "string"),
                        snapshot_param(),
                    ],
                    None,
                    responses(&[("200", ok("the directory's entries", "Listing"))]),
                    &[400, 404, 409],
                ),
            ),
            (
                "put",
                operation(
                    "write_file",
                    "Write a whole file from base64; parents are created",
                    vec![],
                    Some(json_body(schema("WriteFileRequest"))),
                    responses(&[("200", written.clone())]),
                    &[400, 409, 413, 507],
                ),
            ),
            (
                "delete",
                operation(
                    "delete",
                    "Delete a file, symlink or directory",
                    vec![
                        path_q("the entry to delete; / is refused"),
                        query(
                            "recursive",
                            "delete a non-empty directory",
                            false,
                            "boolean",
                        ),
                    ],
                    None,
                    responses(&[("200", ok("deleted", "Deleted"))]),
                    &[400, 404, 409],
                ),
            ),
        ]),
    );
    add(
        "/v1/compute/fs/content",
        path_item(&[
            (
                "get",
                operation(
                    "read_file",
                    "Download a file's bytes",
                    vec![
                        path_q("the file"),
                        snapshot_param(),
                        header("Range", "one range: bytes=a-b, bytes=a- or bytes=-n"),
                        header(
                            "If-None-Match",
                            "answer 304 if the content still has this ETag",
                        ),
                    ],
                    None,
                    responses(&[
                        ("200", raw_file),
                        ("206", partial),
                        (
                            "304",
                            json!({"description": "the content matches If-None-Match"}),
                        ),
                    ]),
                    &[400, 404, 409, 416],
                ),
            ),
            (
                "put",
                operation(
                    "upload_file",
                    "Write a whole file from the raw body, streamed",
                    vec![
                        path_q("the file to create or replace"),
                        query("mode", "permission bits for a new file", false, "integer"),
                    ],
                    Some(json!({"content": {"application/octet-stream":
                {"schema": {"type": "string", "format": "binary"}}}})),
                    responses(&[("200", written)]),
                    &[400, 409, 413, 507],
                ),
            ),
        ]),
    );
    add(
        "/v1/compute/fs/stat",
        path_item(&[(
            "get",
            operation(
                "stat",
                "One entry's attributes",
                vec![path_q("the entry"), snapshot_param()],
                None,
                responses(&[("200", entry.clone())]),
                &[400, 404, 409],
            ),
        )]),
    );
    add(
        "/v1/compute/fs/move",
        path_item(&[(
            "post",
            operation(
                "move",
                "Move or rename",
                vec![],
                Some(json_body(schema("MoveRequest"))),
                responses(&[("200", ok("the moved entry at its new path", "Entry"))]),
                &[400, 404, 409],
            ),
        )]),
    );
    add(
        "/v1/compute/fs/mkdir",
        path_item(&[(
            "post",
            operation(
                "mkdir",
                "Create a directory",
                vec![],
                Some(json_body(schema("MkdirRequest"))),
                responses(&[("200", ok("the directory's entry", "Entry"))]),
                &[400, 404, 409, 507],
            ),
        )]),
    );
    add(
        "/v1/compute/snapshots",
        path_item(&[
            (
                "post",
                operation(
                    "create_snapshot",
                    "Snapshot the whole tree",
                    vec![],
                    Some(json!({"required": false, "content": {"application/json":
                {"schema": schema("CreateSnapshotRequest")}}})),
                    responses(&[("201", snapshot.clone())]),
                    &[400, 409],
                ),
            ),
            (
                "get",
                operation(
                    "list_snapshots",
                    "List snapshots, oldest first",
                    vec![],
                    None,
                    responses(&[("200", ok("the snapshots", "SnapshotList"))]),
                    &[],
                ),
            ),
        ]),
    );
    add(
        "/v1/compute/snapshots/{id}",
        path_item(&[
            (
                "get",
                operation(
                    "get_snapshot",
                    "One snapshot",
                    vec![path_param()],
                    None,
                    responses(&[("200", snapshot)]),
                    &[404],
                ),
            ),
            (
                "delete",
                operation(
                    "delete_snapshot",
                    "Delete a snapshot",
                    vec![path_param()],
                    None,
                    responses(&[("200", ok("deleted", "SnapshotDeleted"))]),
                    &[404],
                ),
            ),
        ]),
    );
    add(
        "/v1/compute/snapshots/{id}/restore",
        path_item(&[(
            "post",
            operation(
                "restore_snapshot",
                "Make the live tree exactly the snapshot",
                vec![path_param()],
                None,
                responses(&[("200", ok("restored", "SnapshotRestored"))]),
                &[404, 507],
            ),
        )]),
    );
    add(
        "/v1/compute/snapshots/{id}/diff",
        path_item(&[(
            "get",
            operation(
                "diff_snapshot",
                "Paths added, removed and modified from the snapshot to another or the live tree",
                vec![
                    path_param(),
                    query(
                        "to",
                        "a snapshot id or name; defaults to the live tree",
                        false,
                        "string",
                    ),
                ],
                None,
                responses(&[("200", ok("the differences", "Diff"))]),
                &[404],
            ),
        )]),
    );
    add(
        "/v1/compute/usage",
        path_item(&[(
            "get",
            operation(
                "usage",
                "The agent's storage figures",
                vec![],
                None,
                responses(&[("200", ok("usage", "Usage"))]),
                &[],
            ),
        )]),
    );
    add(
        "/v1/compute/run",
        path_item(&[(
            "post",
            operation(
                "run",
                "Run code in a fresh sandbox over the agent's tree",
                vec![header(
                    "Accept",
                    "text/event-stream streams `stdout` and `stderr` events ({\"text\"}), \
                     heartbeat comments, and the result as the last `result` event",
                )],
                Some(json_body(schema("RunRequest"))),
                responses(&[(
                    "200",
                    json!({"description": "the run's result (or its event stream)",
                        "content": {"application/json": {"schema": schema("RunResult")},
                            "text/event-stream": {"schema": {"type": "string"}}}}),
                )]),
                &[400, 413, 429, 503],
            ),
        )]),
    );
    browser::add_paths(&mut paths);
    Value::Object(paths)
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "agentbox",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted compute API for AI agents. Every route under \
                /v1/compute needs `Authorization: Bearer <key>`; the key names the agent.",
        },
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": all_schemas(),
        },
    })
}

fn all_schemas() -> Value {
    let mut all = schemas::schemas();
    if let Some(map) = all.as_object_mut() {
        map.extend(browser::schemas());
    }
    all
}

/// Every `(METHOD, path)` the document describes.
#[cfg(test)]
pub fn operations(document: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in item.as_object().into_iter().flat_map(|ops| ops.keys()) {
                found.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at a schema that exists.
    #[test]
    fn references_resolve() {
        let document = document();
        let mut stack = vec![&document];
        let mut refs = 0;
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let name = target.strip_prefix("#/components/schemas/").unwrap();
                        assert!(
                            document["components"]["schemas"].get(name).is_some(),
                            "{target}"
                        );
                        refs += 1;
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(refs > 20);
    }

    /// Every error code of the API reference's table is in the error schema, and back.
    #[test]
    fn the_error_schema_lists_the_documented_codes() {
        let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
        let reference = std::fs::read_to_string(reference).unwrap();
        let table = reference
            .split("## Errors")
            .nth(1)
            .unwrap()
            .split("\n## ")
            .next()
            .unwrap();
        let mut documented: Vec<&str> = table
            .lines()
            .filter(|line| line.starts_with("| 4") || line.starts_with("| 5"))
            .flat_map(|line| {
                line.split('|')
                    .nth(2)
                    .unwrap()
                    .split('`')
                    .skip(1)
                    .step_by(2)
            })
            .collect();
        let document = document();
        let schema = &document["components"]["schemas"]["Error"]["properties"]["error"];
        let mut listed: Vec<&str> = schema["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| code.as_str().unwrap())
            .collect();
        documented.sort_unstable();
        listed.sort_unstable();
        assert_eq!(documented, listed);
    }

    #[test]
    fn every_operation_has_an_id_and_a_success_response() {
        let document = document();
        for (method, path) in operations(&document) {
            let op = &document["paths"][&path][method.to_ascii_lowercase()];
            assert!(op["operationId"].is_string(), "{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2') || status == "101"),
                "{method} {path}"
            );
        }
    }
}
