//! `POST /v1/compute/run`: code in a fresh sandbox over the agent's tree. Answers the whole
//! result as JSON, or, with `Accept: text/event-stream`, streams `stdout` and `stderr`
//! chunks as they happen, heartbeats while quiet, and the full result as the last event once
//! every process of the run is gone. Every run's wall-clock and CPU milliseconds are added
//! to the agent's compute usage.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::instrument;

use super::auth::Agent;
use super::error::ApiError;
use super::extract::ApiJson;
use super::runs::{RunTurn, Runs};
use super::state::AppState;

/// How often a quiet stream sends a heartbeat comment.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Output chunks waiting for a slow streaming client before the run's output waits too.
const STREAM_BUFFER: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    code: String,
    #[serde(alias = "language")]
    runtime: String,
    /// Seconds; fractions allowed.
    timeout: Option<f64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    network: bool,
}

impl RunRequest {
    fn into_spec(self) -> Result<runner::RunSpec, ApiError> {
        let runtime = runner::Runtime::parse(&self.runtime).ok_or_else(|| {
            ApiError::invalid_request(format!(
                "unknown runtime {:?}: use python, typescript or bash",
                self.runtime
            ))
        })?;
        let timeout = match self.timeout {
            None => runner::DEFAULT_TIMEOUT,
            Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                if seconds > runner::MAX_TIMEOUT.as_secs_f64() {
                    return Err(ApiError::invalid_request(format!(
                        "timeout must be at most {} seconds",
                        runner::MAX_TIMEOUT.as_secs()
                    )));
                }
                Duration::from_secs_f64(seconds)
            }
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "timeout must be a positive number of seconds",
                ));
            }
        };
        Ok(runner::RunSpec {
            runtime,
            code: self.code,
            stdin: self.stdin.unwrap_or_default().into_bytes(),
            env: self.env.into_iter().collect(),
            cwd: self.cwd.unwrap_or_else(|| "/".to_string()),
            timeout,
            network: self.network,
        })
    }
}

#[instrument(skip_all, fields(agent = %agent.name))]
pub async fn run(
    State(state): State<AppState>,
    agent: Agent,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    let spec = request.into_spec()?;
    let runs = state
        .runs
        .clone()
        .ok_or_else(|| ApiError::runs_unavailable(state.runs_unavailable.to_string()))?;
    spec.validate(runs.runner.config().allow_network)
        .map_err(invalid_run)?;
    check_cwd(&state, &agent, &spec.cwd).await?;
    let turn = runs.try_start(agent.id)?;
    if wants_stream(&headers) {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let run = tokio::spawn(execute(state, runs, agent, spec, turn, Some(sender)));
        Ok(Sse::new(events(receiver, run))
            .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
            .into_response())
    } else {
        // The run goes on to its end (and is metered) even if the client leaves.
        let outcome = tokio::spawn(execute(state, runs, agent, spec, turn, None)).await??;
        Ok(Json(result_json(&outcome)).into_response())
    }
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().starts_with("text/event-stream"))
        })
}

fn invalid_run(invalid: runner::InvalidRun) -> ApiError {
    match invalid.kind {
        runner::InvalidKind::NetworkNotAllowed => ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "network_not_allowed",
            invalid.message,
        ),
        runner::InvalidKind::Invalid => ApiError::invalid_request(invalid.message),
    }
}

/// A `cwd` outside the reserved names must be a directory of the agent's tree.
async fn check_cwd(state: &AppState, agent: &Agent, cwd: &str) -> Result<(), ApiError> {
    let path =
        fsd::FsPath::parse(cwd).map_err(|e| ApiError::invalid_request(format!("cwd: {e}")))?;
    if path.is_root() || path.is_reserved() {
        return Ok(());
    }
    let id = agent.id;
    let attr = state
        .blocking(move |store| store.stat(id, &path, &fsd::View::Live))
        .await
        .map_err(|e| ApiError::invalid_request(format!("cwd {cwd}: {}", e.message)))?;
    if attr.kind != fsd::FileType::Directory {
        return Err(ApiError::invalid_request(format!(
            "cwd {cwd} is not a directory"
        )));
    }
    Ok(())
}

/// Makes the run over the agent's sandbox view and meters it.
async fn execute(
    state: AppState,
    runs: Arc<Runs>,
    agent: Agent,
    spec: runner::RunSpec,
    turn: RunTurn,
    events: Option<mpsc::Sender<runner::OutputChunk>>,
) -> Result<runner::RunOutcome, ApiError> {
    let begun = std::time::Instant::now();
    let mounts = runs.mounts.clone();
    let id = agent.id;
    let lease = tokio::task::spawn_blocking(move || mounts.acquire(id)).await??;
    let leased = begun.elapsed();
    let outcome = runs.runner.run(lease.path(), &spec, events).await;
    let ran = begun.elapsed();
    drop(lease);
    drop(turn);
    let outcome = outcome.map_err(|error| match error {
        runner::RunError::Invalid(invalid) => invalid_run(invalid),
        runner::RunError::Unavailable(message) => ApiError::runs_unavailable(message),
        runner::RunError::Io { .. } => ApiError::internal(format!("the run failed: {error}")),
    })?;
    let duration_ms = outcome.duration.as_millis() as u64;
    let cpu_ms = outcome.cpu.as_millis() as u64;
    state
        .blocking(move |store| store.record_run(id, duration_ms, cpu_ms))
        .await?;
    tracing::debug!(
        lease_ms = leased.as_secs_f64() * 1000.0,
        run_ms = (ran - leased).as_secs_f64() * 1000.0,
        record_ms = (begun.elapsed() - ran).as_secs_f64() * 1000.0,
        "run request phases"
    );
    tracing::info!(
        runtime = spec.runtime.name(),
        exit_code = outcome.exit_code,
        duration_ms,
        cpu_ms,
        timed_out = outcome.timed_out,
        oom_killed = outcome.oom_killed,
        "run finished"
    );
    Ok(outcome)
}

fn result_json(outcome: &runner::RunOutcome) -> Value {
    json!({
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": outcome.exit_code,
        "duration_ms": outcome.duration.as_millis() as u64,
        "timed_out": outcome.timed_out,
        "oom_killed": outcome.oom_killed,
        "cpu_ms": outcome.cpu.as_millis() as u64,
        "peak_memory_bytes": outcome.peak_memory_bytes,
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
    })
}

type RunTask = tokio::task::JoinHandle<Result<runner::RunOutcome, ApiError>>;

/// The event stream: every output chunk, then `result` (or `error`) once the run is over.
fn events(
    receiver: mpsc::Receiver<runner::OutputChunk>,
    run: RunTask,
) -> impl Stream<Item = Result<Event, Infallible>> {
    enum Phase {
        Output(mpsc::Receiver<runner::OutputChunk>, RunTask),
        Done,
    }
    stream::unfold(Phase::Output(receiver, run), |phase| async move {
        match phase {
            Phase::Output(mut receiver, run) => match receiver.recv().await {
                Some(chunk) => {
                    let event = Event::default()
                        .event(chunk.stream.name())
                        .data(json!({"text": chunk.text}).to_string());
                    Some((Ok(event), Phase::Output(receiver, run)))
                }
                None => {
                    let event = match run.await.map_err(ApiError::from).and_then(|r| r) {
                        Ok(outcome) => Event::default()
                            .event("result")
                            .data(result_json(&outcome).to_string()),
                        Err(error) => Event::default().event("error").data(
                            json!({"error": {"code": error.code, "message": error.message}})
                                .to_string(),
                        ),
                    };
                    Some((Ok(event), Phase::Done))
                }
            },
            Phase::Done => None,
        }
    })
}
