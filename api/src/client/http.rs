//! A small blocking HTTP client for the agentbox API. It holds the server's base URL and the
//! agent's key, builds requests with properly encoded query strings, and turns error
//! responses (`{"error": {"code", "message"}}`) and connection failures into errors that say
//! what went wrong and what to do about it.

use std::error::Error as _;
use std::fmt;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::encode;
use crate::cli::ServerArgs;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a single read or write on the connection (not for a whole transfer).
pub const IO_TIMEOUT: Duration = Duration::from_secs(600);

/// How the client introduces itself.
pub const USER_AGENT: &str = concat!("agentbox/", env!("CARGO_PKG_VERSION"));

const MISSING_KEY: &str = "no API key: pass --key or set AGENTBOX_KEY \
     (`agentbox serve` wrote the first key to <data-dir>/default.key)";

/// A connection to one agentbox server, acting as one agent.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl Client {
    /// A client for the server and key on the command line (or in the environment).
    pub fn new(server: &ServerArgs) -> anyhow::Result<Self> {
        let key = api_key(server.key.as_deref())?;
        let base = base_url(&server.url)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(IO_TIMEOUT)
            .timeout_write(IO_TIMEOUT)
            .user_agent(USER_AGENT)
            .build();
        Ok(Self { agent, base, key })
    }

    /// A request for `route` (which starts with `/`) with the query pairs whose value is
    /// present, authenticated as the agent.
    pub fn request(
        &self,
        method: &str,
        route: &str,
        query: &[(&str, Option<&str>)],
    ) -> ureq::Request {
        self.agent
            .request(method, &encode::url(&self.base, route, query))
            .set("Authorization", &format!("Bearer {}", self.key))
    }

    /// Sends a request without a body.
    pub fn call(&self, request: ureq::Request) -> anyhow::Result<ureq::Response> {
        self.check(request.call())
    }

    /// Sends a request with a JSON body.
    pub fn send_json(
        &self,
        request: ureq::Request,
        body: &impl Serialize,
    ) -> anyhow::Result<ureq::Response> {
        self.check(request.send_json(body))
    }

    fn check(&self, result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<ureq::Response> {
        match result {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                Err(error_response(status, response).into())
            }
            Err(ureq::Error::Transport(transport)) => Err(self.transport_error(&transport)),
        }
    }

    fn transport_error(&self, transport: &ureq::Transport) -> anyhow::Error {
        let detail = transport_detail(transport);
        match transport.kind() {
            ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => self.connect_error(&detail),
            ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                anyhow!("invalid server URL {}: {detail}", self.base)
            }
            _ => self.request_error(&detail),
        }
    }

    /// The server could not be reached at all.
    pub fn connect_error(&self, detail: &str) -> anyhow::Error {
        anyhow!(
            "cannot connect to the agentbox server at {}: {detail} \
             (is `agentbox serve` running there? pass --url or set AGENTBOX_URL)",
            self.base
        )
    }

    /// The connection failed part way through a request.
    pub fn request_error(&self, detail: &str) -> anyhow::Error {
        anyhow!("request to {} failed: {detail}", self.base)
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The agent's API key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The API key from `--key` or `AGENTBOX_KEY`, trimmed; an error that says where to find
/// one when it is missing, or what is wrong with it.
pub(crate) fn api_key(key: Option<&str>) -> anyhow::Result<String> {
    let key = match key.map(str::trim) {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => bail!(MISSING_KEY),
    };
    if key.chars().any(|c| c.is_control() || c == ' ') {
        bail!("the API key contains spaces or control characters; check --key or AGENTBOX_KEY");
    }
    Ok(key)
}

/// The most specific description of a transport failure: the underlying cause if there is
/// one (`Connection refused (os error 111)`), else ureq's message, else its classification.
pub(crate) fn transport_detail(transport: &ureq::Transport) -> String {
    if let Some(source) = transport.source() {
        return source.to_string();
    }
    match transport.message() {
        Some(message) => message.to_owned(),
        None => transport.kind().to_string(),
    }
}

/// The server URL without trailing slashes; `http://` is assumed when no scheme is given.
/// Only plain http is spoken: this build of the client has no TLS.
pub(crate) fn base_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        bail!("the server URL is empty; pass --url or set AGENTBOX_URL");
    }
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let scheme = url
        .split("://")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if scheme != "http" {
        bail!("invalid server URL {url}: this client speaks plain http only");
    }
    Ok(url)
}

/// Reads at most `limit` bytes of a body as text (lossily, so odd bytes cannot hide it).
pub fn read_limited(reader: impl Read, limit: u64) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    reader.take(limit).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The whole body of a successful response as text.
pub fn read_text(response: ureq::Response) -> anyhow::Result<String> {
    let mut text = String::new();
    response
        .into_reader()
        .read_to_string(&mut text)
        .context("reading the server's response")?;
    Ok(text)
}

/// The body of a successful response parsed as JSON.
pub fn read_json<T: DeserializeOwned>(response: ureq::Response) -> anyhow::Result<T> {
    parse_json(&read_text(response)?)
}

/// A successful response's body parsed as JSON.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    serde_json::from_str(text).with_context(|| {
        format!(
            "unexpected response from the server: {}",
            snippet(text, 200)
        )
    })
}

/// An error reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// The machine-readable code (`not_found`, `unauthorized`, ...), absent when the body
    /// was not an agentbox error (a proxy's page, an empty body).
    pub code: Option<String>,
    pub message: String,
    /// What the user can do about it, shown in parentheses after the message.
    pub hint: Option<&'static str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) if self.message.is_empty() => write!(f, "{code}")?,
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => write!(f, "HTTP {}: {}", self.status, self.message)?,
        }
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// An error response (`status`, with at most 64 KiB of its body read) as an [`ApiError`].
pub(crate) fn error_response(status: u16, response: ureq::Response) -> ApiError {
    let status_text = response.status_text().to_owned();
    // An unreadable error body still leaves the status to report.
    let body = read_limited(response.into_reader(), 64 * 1024).unwrap_or_default();
    parse_error_body(status, &status_text, &body)
}

/// Turns an error response into an [`ApiError`]: the server's code and message when the body
/// is an agentbox error, else the start of whatever the body was, else the status text.
pub(crate) fn parse_error_body(status: u16, status_text: &str, body: &str) -> ApiError {
    if let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(body) {
        let hint = (error.code == "unauthorized").then_some("check --key or AGENTBOX_KEY");
        return ApiError {
            status,
            code: Some(error.code),
            message: error.message,
            hint,
        };
    }
    let text = body.trim();
    let message = if text.is_empty() {
        if status_text.is_empty() {
            "no details".to_owned()
        } else {
            status_text.to_owned()
        }
    } else {
        snippet(text, 200)
    };
    ApiError {
        status,
        code: None,
        message,
        hint: None,
    }
}

/// The first line of `text`, cut to at most `max` characters.
fn snippet(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}...")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agentbox_error_bodies_give_code_and_message() {
        let body = r#"{"error":{"code":"not_found","message":"no such file or directory: /x"}}"#;
        let error = parse_error_body(404, "Not Found", body);
        assert_eq!(error.code.as_deref(), Some("not_found"));
        assert_eq!(
            error.to_string(),
            "not_found: no such file or directory: /x"
        );
    }

    #[test]
    fn unauthorized_errors_point_at_the_key() {
        let body = r#"{"error":{"code":"unauthorized","message":"unknown key"}}"#;
        assert_eq!(
            parse_error_body(401, "Unauthorized", body).to_string(),
            "unauthorized: unknown key (check --key or AGENTBOX_KEY)"
        );
    }

    #[test]
    fn errors_without_a_message_show_the_code() {
        let body = r#"{"error":{"code":"internal"}}"#;
        assert_eq!(parse_error_body(500, "", body).to_string(), "internal");
    }

    #[test]
    fn other_bodies_fall_back_to_text_or_status() {
        let error = parse_error_body(502, "Bad Gateway", "<html>upstream down</html>\nmore");
        assert_eq!(error.code, None);
        assert_eq!(error.to_string(), "HTTP 502: <html>upstream down</html>");
        assert_eq!(
            parse_error_body(404, "Not Found", "").to_string(),
            "HTTP 404: Not Found"
        );
        assert_eq!(
            parse_error_body(400, "Bad Request", r#"{"error":"flat"}"#).to_string(),
            r#"HTTP 400: {"error":"flat"}"#
        );
        let long = "x".repeat(500);
        assert_eq!(
            parse_error_body(500, "", &long).message,
            format!("{}...", "x".repeat(200))
        );
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(base_url("http://h:8080/").unwrap(), "http://h:8080");
        assert_eq!(
            base_url(" 127.0.0.1:8080 ").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("HTTP://box.example/api").unwrap(),
            "HTTP://box.example/api"
        );
        assert!(base_url("https://box.example").is_err());
        assert!(base_url("ftp://h").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn a_missing_key_says_where_to_find_one() {
        let args = ServerArgs {
            url: "http://127.0.0.1:1".to_owned(),
            key: None,
        };
        let message = Client::new(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("--key"), "{message}");
        assert!(message.contains("AGENTBOX_KEY"), "{message}");
        assert!(message.contains("default.key"), "{message}");
    }

    #[test]
    fn a_refused_connection_names_the_url() {
        // Bind then drop a listener to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let args = ServerArgs {
            url: format!("http://127.0.0.1:{port}"),
            key: Some("abx_k".to_owned()),
        };
        let client = Client::new(&args).unwrap();
        let error = client
            .call(client.request("GET", "/healthz", &[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("http://127.0.0.1:{port}")),
            "{error}"
        );
        assert!(error.contains("cannot connect"), "{error}");
    }
}
