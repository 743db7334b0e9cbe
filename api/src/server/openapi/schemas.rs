//! The component schemas of the OpenAPI document: every request and response body, and
//! the error shape.

use serde_json::{Value, json};

use super::schema;

pub fn schemas() -> Value {
    let string = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    let nullable_count = json!({"type": ["integer", "null"], "minimum": 0});
    let paths = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["invalid_path", "reserved_path", "invalid_json", "invalid_base64",
                    "invalid_request", "unauthorized", "not_found", "method_not_allowed",
                    "not_a_directory", "is_a_directory", "already_exists", "directory_not_empty",
                    "too_large", "range_not_satisfiable", "quota_exceeded", "internal",
                    "network_not_allowed", "too_many_runs", "runs_unavailable",
                    "session_ended", "too_many_sessions", "browser_unavailable", "browser_error"]},
                "message": string}}}},
        "Entry": {"type": "object", "required": ["name", "path", "type", "size", "mode", "modified_at"],
            "properties": {
                "name": string, "path": string,
                "type": {"type": "string", "enum": ["file", "directory", "symlink"]},
                "size": count, "mode": {"type": "integer", "minimum": 0, "maximum": 4095},
                "modified_at": {"type": "string", "format": "date-time"},
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "files only"},
                "target": {"type": "string", "description": "symlinks only"}}},
        "Listing": {"type": "object", "required": ["path", "entries"], "properties": {
            "path": string, "entries": {"type": "array", "items": schema("Entry")}}},
        "WriteFileRequest": {"type": "object", "required": ["path", "content"], "properties": {
            "path": string, "content": {"type": "string", "contentEncoding": "base64"},
            "mode": {"type": "integer", "minimum": 0, "maximum": 4095}}},
        "Written": {"type": "object", "required": ["path", "size", "hash"], "properties": {
            "path": string, "size": count, "hash": string}},
        "Deleted": {"type": "object", "required": ["path", "deleted"], "properties": {
            "path": string, "deleted": {"type": "boolean", "const": true}}},
        "MoveRequest": {"type": "object", "required": ["from", "to"], "properties": {
            "from": string, "to": string,
            "overwrite": {"type": "boolean", "default": true}}},
        "MkdirRequest": {"type": "object", "required": ["path"], "properties": {
            "path": string, "parents": {"type": "boolean", "default": false}}},
        "CreateSnapshotRequest": {"type": "object", "properties": {
            "name": {"type": ["string", "null"]}}},
        "Snapshot": {"type": "object", "required": ["id", "name", "created_at", "files", "bytes"],
            "properties": {"id": string, "name": {"type": ["string", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "files": count, "bytes": count}},
        "SnapshotList": {"type": "object", "required": ["snapshots"], "properties": {
            "snapshots": {"type": "array", "items": schema("Snapshot")}}},
        "SnapshotDeleted": {"type": "object", "required": ["id", "deleted"], "properties": {
            "id": string, "deleted": {"type": "boolean", "const": true}}},
        "SnapshotRestored": {"type": "object", "required": ["id", "restored"], "properties": {
            "id": string, "restored": {"type": "boolean", "const": true}}},
        "Diff": {"type": "object", "required": ["from", "to", "added", "removed", "modified"],
            "properties": {"from": string, "to": {"type": "string", "description": "a snapshot id or \"live\""},
                "added": paths, "removed": paths, "modified": paths}},
        "Usage": {"type": "object", "required": ["agent", "storage", "compute"], "properties": {
            "agent": string, "storage": {"type": "object", "required": ["logical_bytes",
                "stored_bytes", "files", "directories", "snapshots", "quota_bytes", "quota_files"],
                "properties": {"logical_bytes": count, "stored_bytes": count, "files": count,
                    "directories": count, "snapshots": count, "quota_bytes": nullable_count,
                    "quota_files": nullable_count}},
            "compute": {"type": "object", "description": "compute used since the agent was created, in milliseconds",
                "required": ["runs", "run_ms", "run_cpu_ms", "browser_sessions", "browser_ms"],
                "properties": {"runs": count, "run_ms": count, "run_cpu_ms": count,
                    "browser_sessions": count, "browser_ms": count}}}},
        "RunRequest": {"type": "object", "required": ["code"], "properties": {
            "code": {"type": "string", "description": "the program's text (multiline)"},
            "runtime": {"type": "string", "enum": ["python", "typescript", "bash"],
                "description": "required; `language` is accepted in its place"},
            "language": {"type": "string", "enum": ["python", "typescript", "bash"]},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 30,
                "description": "seconds"},
            "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "added to the documented environment"},
            "stdin": {"type": "string"},
            "cwd": {"type": "string", "default": "/", "description": "absolute, inside the sandbox"},
            "network": {"type": "boolean", "default": false,
                "description": "only where the server allows it"}}},
        "RunResult": {"type": "object", "required": ["stdout", "stderr", "exit_code", "duration_ms",
                "timed_out", "oom_killed", "cpu_ms", "peak_memory_bytes", "stdout_truncated",
                "stderr_truncated"],
            "properties": {"stdout": string, "stderr": string,
                "exit_code": {"type": "integer", "description": "0 on success; 128+n after signal n; 124 after the timeout"},
                "duration_ms": count, "timed_out": {"type": "boolean"},
                "oom_killed": {"type": "boolean"}, "cpu_ms": count, "peak_memory_bytes": count,
                "stdout_truncated": {"type": "boolean"}, "stderr_truncated": {"type": "boolean"}}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "const": "ok"}}},
    })
}
