//! The requests the mount makes of the server: stat, list, read (whole or a byte range)
//! and usage, all as one agent, all against one snapshot when the mount shows one. Errors
//! keep what a caller must tell apart (missing, not a directory, unreachable, changed).

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use super::meta::Entry;
use crate::client::http::{self, ApiError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one read or write on the connection: a filesystem request waits this
/// long at most for a server that stopped answering.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest listing or stat answer accepted.
const MAX_JSON_BYTES: u64 = 512 * 1024 * 1024;
const USER_AGENT: &str = concat!("agentbox-mount/", env!("CARGO_PKG_VERSION"));

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("{}", api_message(*.status, .code.as_deref(), .message))]
    Api {
        status: u16,
        /// The machine-readable code, absent when the body was not an agentbox error.
        code: Option<String>,
        message: String,
    },
    /// The server could not be reached, or the connection failed part way.
    #[error("cannot reach the agentbox server at {base}: {detail}")]
    Transport { base: String, detail: String },
    /// The server answered something this client does not understand.
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
    /// The file's content on the server is no longer the version being read.
    #[error("the file changed on the server while it was being read")]
    Changed,
    /// The bytes received do not hash to the file's content hash.
    #[error("the server sent bytes that do not match the file's hash")]
    Corrupt,
}

fn api_message(status: u16, code: Option<&str>, message: &str) -> String {
    match code {
        Some(code) if message.is_empty() => code.to_owned(),
        Some(code) => format!("{code}: {message}"),
        None => format!("HTTP {status}: {message}"),
    }
}

impl From<ApiError> for Error {
    /// The server's error as the client reads it, without the hint for people: the mount
    /// says what to do where it reports the error.
    fn from(error: ApiError) -> Error {
        Error::Api {
            status: error.status,
            code: error.code,
            message: error.message,
        }
    }
}

impl Error {
    /// The errno a filesystem request that failed this way answers.
    pub fn to_errno(&self) -> i32 {
        match self {
            Error::Api { status, code, .. } => match (status, code.as_deref()) {
                (404, _) => libc::ENOENT,
                (_, Some("not_a_directory")) => libc::ENOTDIR,
                (_, Some("is_a_directory")) => libc::EISDIR,
                (401, _) => libc::EACCES,
                (400, _) => libc::EINVAL,
                _ => libc::EIO,
            },
            Error::Transport { .. } | Error::Protocol(_) | Error::Changed | Error::Corrupt => {
                libc::EIO
            }
        }
    }

    /// True if the error comes from the server refusing the key.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Api { status: 401, .. })
    }
}

/// The bytes of a read and the content hash the server says they are of.
#[derive(Debug)]
pub struct Fetched {
    pub etag: Option<blake3::Hash>,
    pub body: Vec<u8>,
}

/// Where file contents come from; the server in use, a table in tests.
pub trait Source: Send + Sync {
    /// Bytes `range` (inclusive; the whole file when `None`) of the file at `path`.
    fn fetch(&self, path: &str, range: Option<(u64, u64)>, len: u64) -> Result<Fetched, Error>;
}

#[derive(Debug, Deserialize)]
struct Listing {
    entries: Vec<Entry>,
}

/// `GET /v1/compute/usage`.
#[derive(Debug, Clone, Deserialize)]
pub struct Usage {
    pub agent: String,
    pub storage: Storage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Storage {
    pub logical_bytes: u64,
    pub files: u64,
    pub directories: u64,
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
}

/// One agent on one server, seen live or as of a snapshot.
pub struct Remote {
    agent: ureq::Agent,
    base: String,
    key: String,
    snapshot: Option<String>,
}

impl Remote {
    /// A client for the server at `base` (a normalised `http://` URL), acting with `key`.
    pub fn new(base: String, key: String, snapshot: Option<String>) -> Remote {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(IO_TIMEOUT)
            .timeout_write(IO_TIMEOUT)
            .user_agent(USER_AGENT)
            .redirects(0)
            .build();
        Remote {
            agent,
            base,
            key,
            snapshot,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The attributes of `path`.
    pub fn stat(&self, path: &str) -> Result<Entry, Error> {
        let response = self.call(self.get("/v1/compute/fs/stat", Some(path)))?;
        json(response)
    }

    /// The entries of directory `path`, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, Error> {
        let response = self.call(self.get("/v1/compute/fs", Some(path)))?;
        Ok(json::<Listing>(response)?.entries)
    }

    /// The agent's name and storage figures (of the live tree).
    pub fn usage(&self) -> Result<Usage, Error> {
        let request = self.authorized(self.agent.get(&format!("{}/v1/compute/usage", self.base)));
        json(self.call(request)?)
    }

    fn get(&self, route: &str, path: Option<&str>) -> ureq::Request {
        let mut request = self.agent.get(&format!("{}{route}", self.base));
        if let Some(path) = path {
            request = request.query("path", path);
        }
        if let Some(snapshot) = &self.snapshot {
            request = request.query("snapshot", snapshot);
        }
        self.authorized(request)
    }

    fn authorized(&self, request: ureq::Request) -> ureq::Request {
        request.set("Authorization", &format!("Bearer {}", self.key))
    }

    fn call(&self, request: ureq::Request) -> Result<ureq::Response, Error> {
        match request.call() {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                Err(http::error_response(status, response).into())
            }
            Err(ureq::Error::Transport(transport)) => Err(self.transport(&transport)),
        }
    }

    fn transport(&self, transport: &ureq::Transport) -> Error {
        Error::Transport {
            base: self.base.clone(),
            detail: http::transport_detail(transport),
        }
    }

    fn read_error(&self, error: &std::io::Error) -> Error {
        Error::Transport {
            base: self.base.clone(),
            detail: format!("reading a response: {error}"),
        }
    }
}

impl Source for Remote {
    fn fetch(&self, path: &str, range: Option<(u64, u64)>, len: u64) -> Result<Fetched, Error> {
        let mut request = self.get("/v1/compute/fs/content", Some(path));
        if let Some((first, last)) = range {
            request = request.set("Range", &format!("bytes={first}-{last}"));
        }
        let response = self.call(request)?;
        let expected_status = if range.is_some() { 206 } else { 200 };
        if response.status() != expected_status {
            return Err(Error::Protocol(format!(
                "status {} for a read of {path} (expected {expected_status})",
                response.status()
            )));
        }
        let etag = response.header("ETag").and_then(|tag| {
            blake3::Hash::from_hex(tag.trim_start_matches("W/").trim_matches('"')).ok()
        });
        let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        response
            .into_reader()
            .take(len + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.read_error(&e))?;
        Ok(Fetched { etag, body })
    }
}

fn json<T: serde::de::DeserializeOwned>(response: ureq::Response) -> Result<T, Error> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_JSON_BYTES)
        .read_to_end(&mut body)
        .map_err(|e| Error::Protocol(format!("reading a response: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        Error::Protocol(format!("{e}: {start}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(status: u16, status_text: &str, body: &str) -> Error {
        http::parse_error_body(status, status_text, body).into()
    }

    #[test]
    fn server_errors_map_to_errno() {
        let body = r#"{"error":{"code":"not_found","message":"no such file or directory: /x"}}"#;
        let error = parse_error(404, "Not Found", body);
        assert_eq!(error.to_errno(), libc::ENOENT);
        assert_eq!(
            error.to_string(),
            "not_found: no such file or directory: /x"
        );
        let body = r#"{"error":{"code":"not_a_directory","message":"/f"}}"#;
        assert_eq!(parse_error(409, "", body).to_errno(), libc::ENOTDIR);
        let body = r#"{"error":{"code":"unauthorized","message":"unknown key"}}"#;
        let error = parse_error(401, "", body);
        assert!(error.is_unauthorized());
        assert_eq!(error.to_errno(), libc::EACCES);
        assert_eq!(parse_error(500, "", "{}").to_errno(), libc::EIO);
    }

    #[test]
    fn other_bodies_fall_back_to_their_first_line_or_the_status() {
        assert_eq!(
            parse_error(502, "Bad Gateway", "<html>down</html>\nmore").to_string(),
            "HTTP 502: <html>down</html>"
        );
        assert_eq!(
            parse_error(404, "Not Found", "").to_string(),
            "HTTP 404: Not Found"
        );
    }

    #[test]
    fn a_refused_connection_is_a_transport_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let remote = Remote::new(format!("http://127.0.0.1:{port}"), "k".into(), None);
        let error = remote.usage().unwrap_err();
        assert!(matches!(error, Error::Transport { .. }), "{error}");
        assert!(error.to_string().contains(&port.to_string()), "{error}");
        assert_eq!(error.to_errno(), libc::EIO);
    }
}
