//! The HTTP server: `router(state)` is the whole API, `serve(listener, state, shutdown)`
//! runs it, `run_from_cli` is `agentbox serve`.
//!
//! Every `/v1/compute` handler takes an [`Agent`], the extractor that resolves the bearer
//! key, so a request can only ever touch its own agent's tree. Store calls block, so they
//! run on tokio's blocking pool ([`AppState::blocking`]); file contents stream through
//! bounded channels in both directions ([`body`]).

mod auth;
mod body;
mod browser_routes;
mod browsers;
mod cdp_proxy;
mod content_routes;
mod decode;
mod drain;
mod entry;
mod error;
mod extract;
mod fs_routes;
mod mounts;
mod openapi;
mod range;
mod routes;
mod run_routes;
mod runs;
mod snapshot_routes;
mod startup;
mod state;
mod time;
mod usage;

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use tracing::Instrument;

use crate::cli::ServeArgs;

pub use auth::Agent;
pub use error::ApiError;
pub use startup::{lock_data_dir, spawn_sweeper};
pub use state::{AppState, Limits};
pub use time::rfc3339_ns;

/// The whole API, ready to serve.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes::routes() {
        router = router.route(route.path, route.handler);
    }
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            drain::drain_unread_body,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// One span and one log line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %request.method(), uri = %request.uri());
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(%address, "listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    Ok(())
}

/// `agentbox serve`: locks and opens the data directory, creates the first agent on first
/// start, and serves until Ctrl-C or SIGTERM.
pub fn run_from_cli(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = &args.data.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let _lock = startup::lock_data_dir(data_dir)?;
    let options = fsd::StoreOptions {
        durable: !args.no_fsync,
        sweep_grace: Duration::from_secs(args.sweep.sweep_grace_seconds),
        batch_window: Some(fsd::BATCH_WINDOW),
    };
    let store = fsd::Store::open(data_dir, options)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    // Files a previous process left open after their last unlink.
    store.remove_orphans()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        startup::bootstrap_default_agent(&store, data_dir)?;
        let sweeper = startup::spawn_sweeper(store.clone(), args.sweep.sweep_interval_seconds);
        let limits = Limits {
            max_file_bytes: args.max_file_bytes,
        };
        let mut state = AppState::new(store.clone(), limits);
        // Before anything is started in the trees.
        let watchman = startup::start_watchman(&args);
        let mounts = mounts::sandbox_mounts(&store, &args)?;
        if let Some(mounts) = &mounts {
            state = state.with_mounts(mounts.clone());
        }
        let runs = runs::set_up(&args, mounts.as_ref());
        if let Err(reason) = &runs {
            tracing::warn!("code runs are unavailable: {reason}");
        }
        state = state.with_runs(runs);
        let idle_unmounter = mounts.clone().map(mounts::spawn_idle_unmounter);
        let browsers = browsers::browsers(&store, &args)?;
        if let Some(browsers) = &browsers {
            state = state.with_browsers(browsers.clone());
        }
        let browser_sweeper = browsers.clone().map(browsers::spawn_sweeper);
        let served = serve(listener, state, startup::shutdown_signal()).await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        if let Some(task) = idle_unmounter {
            task.abort();
        }
        if let Some(task) = browser_sweeper {
            task.abort();
        }
        if let Some(browsers) = browsers {
            browsers.end_all().await;
        }
        if let Some(mounts) = mounts {
            tokio::task::spawn_blocking(move || mounts.unmount_all()).await??;
        }
        drop(watchman);
        startup::remove_cgroup_trees(&args);
        // The last batch of the mounts' changes, so the index alone has everything.
        store.sync().context("committing the last changes")?;
        served?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// `agentbox watch-cgroups`: the watchman `serve` starts (see `confine::watchman`).
pub fn watch_cgroups(args: crate::cli::WatchCgroupsArgs) -> anyhow::Result<ExitCode> {
    let killed =
        confine::watchman::watch(&args.purposes).context("killing what the server left")?;
    if killed > 0 {
        tracing::warn!(
            groups = killed,
            "the server ended with processes left: killed them"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
