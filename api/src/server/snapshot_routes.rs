//! The snapshot routes under `/v1/compute/snapshots`: create, list, show, delete, restore
//! and diff. A snapshot is named in a path by its id or its name.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::state::AppState;
use super::time::rfc3339_ns;

/// A snapshot as the API shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub name: Option<String>,
    pub created_at: String,
    pub files: u64,
    pub bytes: u64,
}

impl From<fsd::SnapshotInfo> for Snapshot {
    fn from(info: fsd::SnapshotInfo) -> Snapshot {
        Snapshot {
            id: info.id,
            name: info.name,
            created_at: rfc3339_ns(info.created_at_ns),
            files: info.files,
            bytes: info.logical_bytes,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CreateRequest {
    name: Option<String>,
}

/// The body is optional: an empty one creates an unnamed snapshot.
#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn create(
    State(state): State<AppState>,
    agent: Agent,
    body: Bytes,
) -> Result<(StatusCode, Json<Snapshot>), ApiError> {
    let request: CreateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::invalid_json(format!("invalid JSON body: {error}")))?
    };
    let info = state
        .blocking(move |store| store.create_snapshot(agent.id, request.name.as_deref()))
        .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn list(State(state): State<AppState>, agent: Agent) -> Result<Json<Value>, ApiError> {
    let infos = state
        .blocking(move |store| store.list_snapshots(agent.id))
        .await?;
    let snapshots: Vec<Snapshot> = infos.into_iter().map(Snapshot::from).collect();
    Ok(Json(json!({"snapshots": snapshots})))
}

#[instrument(skip_all, fields(agent = %agent.name, snapshot = %id))]
pub async fn show(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Snapshot>, ApiError> {
    let info = state
        .blocking(move |store| store.snapshot(agent.id, &id))
        .await?;
    Ok(Json(info.into()))
}

#[instrument(skip_all, fields(agent = %agent.name, snapshot = %id))]
pub async fn delete(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_snapshot(&state, agent.id, id, fsd::Store::delete_snapshot, "deleted").await
}

#[instrument(skip_all, fields(agent = %agent.name, snapshot = %id))]
pub async fn restore(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_snapshot(
        &state,
        agent.id,
        id,
        fsd::Store::restore_snapshot,
        "restored",
    )
    .await
}

/// Finds the agent's snapshot `id_or_name`, applies `action` to it by its id and answers
/// `{"id": ID, done: true}`.
async fn act_on_snapshot(
    state: &AppState,
    agent: fsd::AgentId,
    id_or_name: String,
    action: fn(&fsd::Store, fsd::AgentId, &str) -> fsd::Result<()>,
    done: &str,
) -> Result<Json<Value>, ApiError> {
    let id = state
        .blocking(move |store| {
            let info = store.snapshot(agent, &id_or_name)?;
            action(store, agent, &info.id)?;
            Ok(info.id)
        })
        .await?;
    Ok(Json(json!({"id": id, done: true})))
}

#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    to: Option<String>,
}

/// The response of a diff: paths grouped by change, each list sorted by path.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Diff {
    pub from: String,
    pub to: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

impl Diff {
    fn new(from: String, to: String, entries: Vec<fsd::DiffEntry>) -> Diff {
        let mut diff = Diff {
            from,
            to,
            added: vec![],
            removed: vec![],
            modified: vec![],
        };
        for entry in entries {
            match entry.change {
                fsd::Change::Added => diff.added.push(entry.path),
                fsd::Change::Removed => diff.removed.push(entry.path),
                fsd::Change::Modified => diff.modified.push(entry.path),
            }
        }
        diff
    }
}

#[instrument(skip_all, fields(agent = %agent.name, snapshot = %id))]
pub async fn diff(
    State(state): State<AppState>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<Diff>, ApiError> {
    let diff = state
        .blocking(move |store| {
            let from = store.snapshot(agent.id, &id)?.id;
            let (to, to_view) = match query.to.filter(|to| !to.is_empty() && to != "live") {
                Some(to) => {
                    let to = store.snapshot(agent.id, &to)?.id;
                    (to.clone(), fsd::View::Snapshot(to))
                }
                None => ("live".to_string(), fsd::View::Live),
            };
            let entries = store.diff(agent.id, &fsd::View::Snapshot(from.clone()), &to_view)?;
            Ok(Diff::new(from, to, entries))
        })
        .await?;
    Ok(Json(diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_diff_entries_by_change() {
        let entry = |path: &str, change| fsd::DiffEntry {
            path: path.into(),
            change,
            kind: fsd::FileType::File,
        };
        let diff = Diff::new(
            "s1".into(),
            "live".into(),
            vec![
                entry("/a", fsd::Change::Added),
                entry("/b", fsd::Change::Modified),
                entry("/c", fsd::Change::Removed),
                entry("/d", fsd::Change::Added),
            ],
        );
        assert_eq!(diff.added, ["/a", "/d"]);
        assert_eq!(diff.modified, ["/b"]);
        assert_eq!(diff.removed, ["/c"]);
    }

    #[test]
    fn shows_snapshots_as_documented() {
        let info = fsd::SnapshotInfo {
            id: "s1".into(),
            name: None,
            created_at_ns: 0,
            files: 2,
            logical_bytes: 30,
        };
        let value = serde_json::to_value(Snapshot::from(info)).unwrap();
        assert_eq!(
            value,
            json!({"id": "s1", "name": null, "created_at": "1970-01-01T00:00:00.000000000Z",
                   "files": 2, "bytes": 30})
        );
    }
}
