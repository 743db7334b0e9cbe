//! `GET /v1/compute/usage` (the agent's storage figures) and `GET /healthz`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
use super::error::ApiError;
use super::state::AppState;

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn usage(State(state): State<AppState>, agent: Agent) -> Result<Json<Value>, ApiError> {
    let stats = state
        .blocking(move |store| store.agent_stats(agent.id))
        .await?;
    Ok(Json(usage_json(&agent.name, &stats)))
}

fn usage_json(agent: &str, stats: &fsd::AgentStats) -> Value {
    json!({
        "agent": agent,
        "storage": {
            "logical_bytes": stats.logical_bytes,
            "stored_bytes": stats.stored_bytes,
            "files": stats.files,
            "directories": stats.directories,
            "snapshots": stats.snapshots,
            "quota_bytes": stats.quota.max_bytes,
            "quota_files": stats.quota.max_files,
        }
    })
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_storage_with_null_for_no_quota() {
        let stats = fsd::AgentStats {
            logical_bytes: 10,
            stored_bytes: 8,
            files: 2,
            directories: 1,
            snapshots: 0,
            quota: fsd::Quota {
                max_bytes: Some(100),
                max_files: None,
            },
        };
        let value = usage_json("default", &stats);
        assert_eq!(value["agent"], "default");
        assert_eq!(value["storage"]["quota_bytes"], 100);
        assert!(value["storage"]["quota_files"].is_null());
        assert_eq!(value["storage"]["stored_bytes"], 8);
    }
}
