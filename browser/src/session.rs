//! One browser session: its identity and token, its activity clock, its lifecycle
//! (running, then ended with a reason), and what the proxy and the API read of it.

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::cdp::{Connection, PageTarget};
use crate::downloads::Downloads;
use crate::flags::Viewport;

/// Whoever a session belongs to (the agent's id); sessions are only ever found by it.
pub type Owner = i64;

/// Where a session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Ending was decided (for `reason`); its processes may still be going.
    Ending {
        reason: String,
        at: SystemTime,
    },
    /// Its processes are gone and its profile removed.
    Ended {
        reason: String,
        at: SystemTime,
    },
}

/// What the API shows of a session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub token: String,
    pub running: bool,
    pub ended_reason: Option<String>,
    pub ended_at: Option<SystemTime>,
    pub created_at: SystemTime,
    pub last_activity_at: SystemTime,
    pub expires_at: Option<SystemTime>,
    pub idle_timeout: Duration,
    pub viewport: Viewport,
    pub connections: usize,
    pub downloads_in_progress: usize,
    /// Filled by calls that ask the browser (`Browsers::describe`).
    pub pages: Option<Vec<PageTarget>>,
}

struct Activity {
    at: Instant,
    wall: SystemTime,
}

pub struct Session {
    pub id: String,
    pub owner: Owner,
    token: String,
    pub created_at: SystemTime,
    pub idle_timeout: Duration,
    pub viewport: Viewport,
    pub(crate) profile_dir: PathBuf,
    devtools_url: String,
    /// The server's own DevTools connection.
    control: Connection,
    pub(crate) downloads: Arc<Downloads>,
    activity: Mutex<Activity>,
    connections: AtomicUsize,
    phase: watch::Sender<Phase>,
    /// Released when the session has ended (the agent's mount lease, for one).
    pub(crate) held: Mutex<Option<Box<dyn Any + Send + Sync>>>,
    /// Browser time not yet reported to the meter runs from here.
    pub(crate) metered_until: Mutex<Instant>,
    /// The browser's process tree; taken at teardown.
    pub(crate) cgroup: Mutex<Option<confine::Cgroup>>,
}

pub(crate) struct NewSession {
    pub id: String,
    pub owner: Owner,
    pub token: String,
    pub idle_timeout: Duration,
    pub viewport: Viewport,
    pub profile_dir: PathBuf,
    pub devtools_url: String,
    pub control: Connection,
    pub downloads: Arc<Downloads>,
    pub held: Box<dyn Any + Send + Sync>,
    pub started: Instant,
    pub cgroup: Option<confine::Cgroup>,
}

impl Session {
    pub(crate) fn new(new: NewSession) -> Session {
        let now = SystemTime::now();
        Session {
            id: new.id,
            owner: new.owner,
            token: new.token,
            created_at: now,
            idle_timeout: new.idle_timeout,
            viewport: new.viewport,
            profile_dir: new.profile_dir,
            devtools_url: new.devtools_url,
            control: new.control,
            downloads: new.downloads,
            activity: Mutex::new(Activity {
                at: Instant::now(),
                wall: now,
            }),
            connections: AtomicUsize::new(0),
            phase: watch::channel(Phase::Running).0,
            held: Mutex::new(Some(new.held)),
            metered_until: Mutex::new(new.started),
            cgroup: Mutex::new(new.cgroup),
        }
    }

    /// True when `presented` is this session's token (compared in constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.token.as_bytes(), presented.as_bytes())
    }

    /// The server's own DevTools connection.
    pub fn control(&self) -> &Connection {
        &self.control
    }

    /// The directory the browser saves downloads into; a client's own download behaviour
    /// is kept to it.
    pub fn download_dir(&self) -> &std::path::Path {
        self.downloads.staging()
    }

    /// Chromium's own browser endpoint, for the proxy's upstream connection only.
    pub fn devtools_url(&self) -> &str {
        &self.devtools_url
    }

    /// Marks the session active now: a client message, an API call on it, a download.
    pub fn touch(&self) {
        let mut activity = lock(&self.activity);
        activity.at = Instant::now();
        activity.wall = SystemTime::now();
    }

    /// How long since the last activity.
    pub(crate) fn idle_for(&self) -> Duration {
        lock(&self.activity).at.elapsed()
    }

    pub fn is_running(&self) -> bool {
        matches!(*self.phase.borrow(), Phase::Running)
    }

    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Resolves once the session stops running (at once if it already has).
    pub async fn ending(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|p| !matches!(p, Phase::Running)).await;
    }

    /// Resolves once the session's processes are gone and its profile removed.
    pub(crate) async fn ended(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|p| matches!(p, Phase::Ended { .. })).await;
    }

    /// Decides that the session ends, for `reason`; the first reason wins. True when this
    /// call decided it.
    pub(crate) fn begin_ending(&self, reason: &str) -> bool {
        self.phase.send_if_modified(|phase| {
            if matches!(phase, Phase::Running) {
                *phase = Phase::Ending {
                    reason: reason.to_string(),
                    at: SystemTime::now(),
                };
                true
            } else {
                false
            }
        })
    }

    pub(crate) fn mark_ended(&self) {
        self.phase.send_modify(|phase| {
            let (reason, at) = match phase {
                Phase::Running => ("ended".to_string(), SystemTime::now()),
                Phase::Ending { reason, at } | Phase::Ended { reason, at } => (reason.clone(), *at),
            };
            *phase = Phase::Ended { reason, at };
        });
    }

    /// A client connection opened; dropping the guard closes it.
    pub fn connect(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.touch();
        ConnectionGuard {
            session: self.clone(),
        }
    }

    /// Follows a message from the browser to a client (download events).
    pub fn observe_browser_message(&self, text: &str) {
        if self.downloads.observe_message(text) {
            self.touch();
        }
    }

    /// What Chromium's `/json/version` reports, without its `webSocketDebuggerUrl` (which
    /// only the proxy can give).
    pub async fn version(&self) -> crate::Result<serde_json::Value> {
        let version = self
            .control
            .call("Browser.getVersion", serde_json::json!({}), None)
            .await?;
        Ok(serde_json::json!({
            "Browser": version["product"],
            "Protocol-Version": version["protocolVersion"],
            "User-Agent": version["userAgent"],
            "V8-Version": version["jsVersion"],
            "WebKit-Version": version["revision"],
        }))
    }

    pub fn info(&self) -> SessionInfo {
        let (last_activity_at, idle_deadline) = {
            let activity = lock(&self.activity);
            (activity.wall, activity.wall + self.idle_timeout)
        };
        let phase = self.phase();
        let (running, ended_reason, ended_at) = match phase {
            Phase::Running => (true, None, None),
            Phase::Ending { reason, at } | Phase::Ended { reason, at } => {
                (false, Some(reason), Some(at))
            }
        };
        SessionInfo {
            id: self.id.clone(),
            token: self.token.clone(),
            running,
            ended_reason,
            ended_at,
            created_at: self.created_at,
            last_activity_at,
            expires_at: running.then_some(idle_deadline),
            idle_timeout: self.idle_timeout,
            viewport: self.viewport,
            connections: self.connections.load(Ordering::Relaxed),
            downloads_in_progress: self.downloads.active(),
            pages: None,
        }
    }
}

/// One open client connection to a session.
pub struct ConnectionGuard {
    session: Arc<Session>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.session.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system's random source is unavailable");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn random_ids_are_hex_and_distinct() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16));
    }
}
