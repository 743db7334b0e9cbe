//! A small blocking client for the routes the benchmark uses.
//!
//! Every call checks the status and turns an error response into an error that carries the
//! request, the status and the server's JSON error body, so a failing run says exactly what
//! the server refused. Connections are kept alive and shared between threads.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A client for one agent (one key) on one server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Client {
    pub fn new(base_url: &str, key: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .build();
        Client {
            agent,
            base: base_url.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {key}"),
        }
    }

    /// The same server and connection pool, acting as another agent.
    pub fn with_key(&self, key: &str) -> Client {
        Client {
            authorization: format!("Bearer {key}"),
            ..self.clone()
        }
    }

    /// True if `GET /healthz` answers 200.
    pub fn healthy(base_url: &str) -> bool {
        ureq::get(&format!("{}/healthz", base_url.trim_end_matches('/')))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
    }

    fn request(&self, method: &str, route: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{route}", self.base))
            .set("Authorization", &self.authorization)
    }

    /// `PUT /v1/compute/fs/content?path=` with `data` as the raw body; returns the reply.
    pub fn put_raw(&self, path: &str, data: &[u8]) -> Result<Value> {
        let what = format!(
            "PUT /v1/compute/fs/content?path={path} ({} bytes)",
            data.len()
        );
        let request = self
            .request("PUT", "/v1/compute/fs/content")
            .query("path", path)
            .set("Content-Type", "application/octet-stream");
        let reply = json(checked(request.send_bytes(data), &what)?, &what)?;
        let size = reply.get("size").and_then(Value::as_u64);
        if size != Some(data.len() as u64) {
            bail!(
                "{what}: the reply gives size {size:?}, expected {}: {reply}",
                data.len()
            );
        }
        Ok(reply)
    }

    /// `GET /v1/compute/fs/content?path=`: the file's bytes, read into `buf` (cleared
    /// first, its allocation reused).
    pub fn get_raw_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        let what = format!("GET /v1/compute/fs/content?path={path}");
        let request = self
            .request("GET", "/v1/compute/fs/content")
            .query("path", path);
        let response = checked(request.call(), &what)?;
        buf.clear();
        response
            .into_reader()
            .read_to_end(buf)
            .with_context(|| format!("{what}: reading the body"))?;
        Ok(())
    }

    /// `POST /v1/compute/snapshots`; returns the snapshot object.
    pub fn create_snapshot(&self) -> Result<Value> {
        let what = "POST /v1/compute/snapshots";
        let response = self
            .request("POST", "/v1/compute/snapshots")
            .send_json(serde_json::json!({}));
        json(checked(response, what)?, what)
    }

    /// `POST /v1/compute/run` with `code` in `runtime`; returns the result.
    pub fn run(&self, runtime: &str, code: &str) -> Result<Value> {
        let what = format!("POST /v1/compute/run ({runtime})");
        let response = self
            .request("POST", "/v1/compute/run")
            .send_json(serde_json::json!({"runtime": runtime, "code": code}));
        json(checked(response, &what)?, &what)
    }

    /// `POST /v1/compute/snapshots/{id}/restore`.
    pub fn restore_snapshot(&self, id: &str) -> Result<()> {
        let what = format!("POST /v1/compute/snapshots/{id}/restore");
        let route = format!("/v1/compute/snapshots/{id}/restore");
        checked(self.request("POST", &route).call(), &what)?;
        Ok(())
    }
}

/// The response of a successful call, or an error naming the request and what came back.
fn checked(result: Result<ureq::Response, ureq::Error>, what: &str) -> Result<ureq::Response> {
    match result {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let body = response
                .into_string()
                .unwrap_or_else(|e| format!("(unreadable: {e})"));
            bail!("{what}: HTTP {status}: {}", body.trim())
        }
        Err(error) => Err(error).with_context(|| format!("{what}: no response")),
    }
}

fn json(response: ureq::Response, what: &str) -> Result<Value> {
    response
        .into_json()
        .with_context(|| format!("{what}: the reply is not JSON"))
}

/// The `id` field of a snapshot object.
pub fn snapshot_id(snapshot: &Value) -> Result<String> {
    snapshot
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("snapshot object without an id: {snapshot}"))
}
