//! `GET /v1/compute/usage` (the agent's storage and compute figures) and `GET /healthz`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tracing::instrument;

use super::auth::Agent;
use super::error::ApiError;
use super::state::AppState;

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn usage(State(state): State<AppState>, agent: Agent) -> Result<Json<Value>, ApiError> {
    let (stats, compute) = state
        .blocking(move |store| Ok((store.agent_stats(agent.id)?, store.compute_usage(agent.id)?)))
        .await?;
    Ok(Json(usage_json(&agent.name, &stats, &compute)))
}

fn usage_json(agent: &str, stats: &fsd::AgentStats, compute: &fsd::ComputeUsage) -> Value {
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
        },
        "compute": {
            "runs": compute.runs,
            "run_ms": compute.run_ms,
            "run_cpu_ms": compute.run_cpu_ms,
            "browser_sessions": compute.browser_sessions,
            "browser_ms": compute.browser_ms,
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
    fn reports_storage_and_compute_with_null_for_no_quota() {
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
        let compute = fsd::ComputeUsage {
            runs: 3,
            run_ms: 40,
            ..fsd::ComputeUsage::default()
        };
        let value = usage_json("default", &stats, &compute);
        assert_eq!(value["agent"], "default");
        assert_eq!(value["storage"]["quota_bytes"], 100);
        assert!(value["storage"]["quota_files"].is_null());
        assert_eq!(value["storage"]["stored_bytes"], 8);
        assert_eq!(value["compute"]["runs"], 3);
        assert_eq!(value["compute"]["run_ms"], 40);
        assert_eq!(value["compute"]["browser_ms"], 0);
    }
}
