//! [`Browsers`]: the server's browser sessions. Creates them (profile, confined Chromium,
//! the server's own DevTools connection), finds them only for their owner, ends them
//! (explicitly, when idle, or when the browser dies) and reports their time to the meter.

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cdp;
use crate::flags::{self, Flavor, Viewport};
use crate::launch;
use crate::session::{NewSession, Owner, Phase, Session, SessionInfo, lock, random_hex};
use crate::{Error, Result};

mod checks;
mod ready;

use checks::{check_url, check_viewport};
use ready::{Ready, kill_tree};

/// Reports browser time: the owner, milliseconds since the last report for the session, and
/// whether this is the session's first report.
pub type Meter = Arc<dyn Fn(Owner, u64, bool) + Send + Sync>;

/// The limits of one browser's process tree, by default: 1 GiB, 1024 tasks (threads count:
/// a browser with a few tabs runs about a hundred), one core.
pub fn default_limits() -> confine::Limits {
    confine::Limits {
        memory_bytes: Some(1 << 30),
        max_processes: Some(1024),
        cpu_millicores: Some(1000),
    }
}

/// How the server runs browsers.
#[derive(Debug, Clone)]
pub struct BrowsersOptions {
    pub flavor: Flavor,
    pub binary: PathBuf,
    /// Where the sessions' profile directories live (emptied at start).
    pub profiles_dir: PathBuf,
    /// The unprivileged user browsers run as; `None` keeps the server's own user (only
    /// where the server itself is unprivileged).
    pub credentials: Option<confine::Credentials>,
    /// Keep Chromium's own renderer sandbox (needs unprivileged user namespaces).
    pub chromium_sandbox: bool,
    /// Lay a filesystem view for each browser with bubblewrap: `None` runs browsers on the
    /// host's view (only where bubblewrap is unavailable).
    pub view: Option<View>,
    /// The cgroup tree (a `confine` purpose) each browser gets a group in; emptied at start.
    /// `None` runs browsers without cgroups (only where the host has none to give).
    pub cgroup_tree: Option<String>,
    pub limits: confine::Limits,
    pub default_idle_timeout: Duration,
    pub max_idle_timeout: Duration,
    /// Sessions running at once, across agents.
    pub max_sessions: usize,
    /// Browsers kept launched ahead of time (default viewport, blank page), handed to new
    /// sessions at once; 0 launches each on demand.
    pub warm: usize,
    pub launch_timeout: Duration,
    /// How often a live session's time is reported to the meter.
    pub meter_interval: Duration,
    /// How long an ended session can still be looked up (to read why it ended).
    pub ended_retention: Duration,
}

impl Default for BrowsersOptions {
    fn default() -> Self {
        BrowsersOptions {
            flavor: Flavor::HeadlessShell,
            binary: flags::default_binary(Flavor::HeadlessShell),
            profiles_dir: PathBuf::from("browsers"),
            credentials: None,
            chromium_sandbox: true,
            view: None,
            cgroup_tree: None,
            limits: default_limits(),
            default_idle_timeout: Duration::from_secs(3600),
            max_idle_timeout: Duration::from_secs(24 * 3600),
            max_sessions: 32,
            warm: 0,
            launch_timeout: Duration::from_secs(20),
            meter_interval: Duration::from_secs(60),
            ended_retention: Duration::from_secs(3600),
        }
    }
}

/// How browsers' filesystem views are made.
#[derive(Debug, Clone)]
pub struct View {
    pub bwrap: PathBuf,
    /// Directories no browser sees (the server's data, every agent's mount) but for its own
    /// profile and downloads directory.
    pub hidden: Vec<PathBuf>,
}

/// What a new session asks for.
pub struct SessionRequest {
    /// A page to open at once: `http(s)://...` or `about:blank`.
    pub url: Option<String>,
    pub viewport: Option<Viewport>,
    pub idle_timeout: Option<Duration>,
    /// The agent's `/downloads`, where finished downloads are copied (created if missing).
    pub downloads_dir: PathBuf,
    /// Kept until the session has ended, then dropped (the agent's mount lease).
    pub held: Box<dyn Any + Send + Sync>,
}

/// A screenshot of a session's current page.
#[derive(Debug, Clone)]
pub struct Screenshot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The server's browser sessions.
pub struct Browsers {
    options: BrowsersOptions,
    /// Taken at shutdown, when the tree is removed.
    cgroups: Mutex<Option<confine::CgroupTree>>,
    meter: Meter,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions being launched, counted against `max_sessions`.
    launching: Mutex<usize>,
    /// Browsers launched ahead of time, and how many are being launched.
    warm: Mutex<Vec<Ready>>,
    filling: Mutex<usize>,
    /// Set at shutdown: no browser is launched or pooled any more.
    closed: Mutex<bool>,
}

impl Browsers {
    /// Prepares the profiles directory, removing what a previous process left there.
    pub fn new(mut options: BrowsersOptions, meter: Meter) -> Result<Arc<Browsers>> {
        options.profiles_dir = std::path::absolute(&options.profiles_dir)
            .map_err(Error::io("resolving the profiles directory".into()))?;
        if options.profiles_dir.exists() {
            std::fs::remove_dir_all(&options.profiles_dir).map_err(Error::io(format!(
                "removing old profiles in {}",
                options.profiles_dir.display()
            )))?;
        }
        launch::create_profiles_root(&options.profiles_dir)?;
        let cgroups = match &options.cgroup_tree {
            Some(purpose) => {
                let tree = confine::CgroupTree::open(purpose)
                    .map_err(Error::io(format!("opening the cgroup tree {purpose}")))?;
                let left = tree
                    .remove_leftovers()
                    .map_err(Error::io(format!("removing old browsers in {purpose}")))?;
                if left > 0 {
                    tracing::info!(left, "killed browsers a previous server left running");
                }
                Some(tree)
            }
            None => None,
        };
        Ok(Arc::new(Browsers {
            options,
            cgroups: Mutex::new(cgroups),
            meter,
            sessions: Mutex::default(),
            launching: Mutex::new(0),
            warm: Mutex::default(),
            filling: Mutex::new(0),
            closed: Mutex::new(false),
        }))
    }

    pub fn options(&self) -> &BrowsersOptions {
        &self.options
    }

    /// Starts a session for `owner`; returns once the browser answers. A browser from the
    /// warm pool serves a session with the default viewport; otherwise one is launched.
    pub async fn create(
        self: &Arc<Self>,
        owner: Owner,
        request: SessionRequest,
    ) -> Result<SessionInfo> {
        let url = request.url.as_deref().map(check_url).transpose()?;
        let destination = std::path::absolute(&request.downloads_dir)
            .map_err(Error::io("resolving the downloads directory".into()))?;
        let viewport = request.viewport.unwrap_or_default();
        check_viewport(viewport)?;
        let idle_timeout = request
            .idle_timeout
            .unwrap_or(self.options.default_idle_timeout);
        if idle_timeout.is_zero() || idle_timeout > self.options.max_idle_timeout {
            return Err(Error::InvalidRequest(format!(
                "idle_timeout_seconds must be between 1 and {}",
                self.options.max_idle_timeout.as_secs()
            )));
        }
        launch::check_reachable(
            &self.options.profiles_dir.join("profile"),
            self.options.credentials,
        )?;
        let _slot = self.reserve_slot()?;
        let started = Instant::now();
        let pooled = if viewport == Viewport::default() {
            self.take_warm()
        } else {
            None
        };
        let ready = match pooled {
            Some(ready) => {
                self.fill_pool();
                if let Some(url) = url
                    && let Err(error) = ready.control.navigate(url).await
                {
                    ready.discard().await;
                    return Err(error);
                }
                ready
            }
            None => self.launch_ready(viewport, url).await?,
        };
        ready.downloads.deliver_to(destination);
        let id = ready.id.clone();
        let session = Arc::new(Session::new(NewSession {
            id: ready.id,
            owner,
            token: random_hex(32),
            idle_timeout,
            viewport,
            profile_dir: ready.profile_dir,
            devtools_url: ready.devtools_url,
            control: ready.control,
            downloads: ready.downloads,
            held: request.held,
            started,
            cgroup: ready.cgroup,
        }));
        lock(&self.sessions).insert(id.clone(), session.clone());
        (self.meter)(owner, 0, true);
        tracing::info!(session = %id, owner, ms = started.elapsed().as_millis() as u64, "browser session started");
        tokio::spawn(supervise(self.clone(), session.clone(), ready.child));
        Ok(session.info())
    }

    fn reserve_slot(self: &Arc<Self>) -> Result<LaunchSlot> {
        let running = lock(&self.sessions)
            .values()
            .filter(|s| s.is_running())
            .count();
        let mut launching = lock(&self.launching);
        if running + *launching >= self.options.max_sessions {
            return Err(Error::TooManySessions(self.options.max_sessions));
        }
        *launching += 1;
        Ok(LaunchSlot {
            browsers: self.clone(),
        })
    }

    /// The owner's session `id`, running or recently ended.
    pub fn find(&self, owner: Owner, id: &str) -> Result<Arc<Session>> {
        lock(&self.sessions)
            .get(id)
            .filter(|s| s.owner == owner)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// The owner's running session `id`, marked active by the call.
    fn running(&self, owner: Owner, id: &str) -> Result<Arc<Session>> {
        let session = self.find(owner, id)?;
        if !session.is_running() {
            return Err(ended_error(&session));
        }
        session.touch();
        Ok(session)
    }

    /// A session as the API shows it, with its open pages when it is running.
    pub async fn describe(&self, owner: Owner, id: &str) -> Result<SessionInfo> {
        let session = self.find(owner, id)?;
        if !session.is_running() {
            return Ok(session.info());
        }
        session.touch();
        match pages_of(&session).await {
            Ok(pages) => {
                let mut info = session.info();
                info.pages = Some(pages);
                Ok(info)
            }
            Err(error) => match explain(&session, error).await {
                Error::Ended { .. } => Ok(session.info()),
                error => Err(error),
            },
        }
    }

    /// The owner's sessions, oldest first.
    pub fn list(&self, owner: Owner) -> Vec<SessionInfo> {
        let mut infos: Vec<SessionInfo> = lock(&self.sessions)
            .values()
            .filter(|s| s.owner == owner)
            .map(|s| s.info())
            .collect();
        infos.sort_by_key(|i| i.created_at);
        infos
    }

    /// Pushes a running session's idle deadline back.
    pub fn keepalive(&self, owner: Owner, id: &str) -> Result<SessionInfo> {
        Ok(self.running(owner, id)?.info())
    }

    /// Ends a session and waits until its processes are gone; ending an ended session
    /// changes nothing.
    pub async fn end(&self, owner: Owner, id: &str) -> Result<SessionInfo> {
        let session = self.find(owner, id)?;
        session.begin_ending("deleted");
        session.ended().await;
        Ok(session.info())
    }

    /// A PNG of the session's most recent page's viewport.
    pub async fn screenshot(&self, owner: Owner, id: &str) -> Result<Screenshot> {
        let session = self.running(owner, id)?;
        let pages = match pages_of(&session).await {
            Ok(pages) => pages,
            Err(error) => return Err(explain(&session, error).await),
        };
        let page = pages
            .first()
            .ok_or_else(|| Error::InvalidRequest("the session has no open page".into()))?;
        let png = match capture(&session, &page.id).await {
            Ok(png) => png,
            Err(error) => return Err(explain(&session, error).await),
        };
        let (width, height) = cdp::png_size(&png)
            .ok_or_else(|| Error::Devtools("the browser's screenshot is not a PNG".into()))?;
        Ok(Screenshot { png, width, height })
    }

    /// The session `id` if `token` is its token and it is running: the check before a CDP
    /// connection is accepted. A wrong token is answered as an unknown session, so a token
    /// tells nothing about sessions it does not open.
    pub fn authorize(&self, id: &str, token: &str) -> Result<Arc<Session>> {
        let session = lock(&self.sessions)
            .get(id)
            .filter(|session| session.token_matches(token))
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        if !session.is_running() {
            return Err(ended_error(&session));
        }
        Ok(session)
    }

    /// One pass of upkeep: ends sessions idle past their timeout (a download in progress
    /// counts as activity), reports live sessions' time, forgets long-ended sessions.
    pub fn sweep(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for session in &sessions {
            if !session.is_running() {
                continue;
            }
            if session.downloads.active() > 0 {
                session.touch();
            } else if session.idle_for() >= session.idle_timeout
                && session.begin_ending(&format!(
                    "idle for {} seconds",
                    session.idle_timeout.as_secs()
                ))
            {
                tracing::info!(session = %session.id, "browser session expired");
            }
            let mut since = lock(&session.metered_until);
            if since.elapsed() >= self.options.meter_interval {
                let ms = since.elapsed().as_millis() as u64;
                *since = Instant::now();
                (self.meter)(session.owner, ms, false);
            }
        }
        let retention = self.options.ended_retention;
        lock(&self.sessions).retain(|_, session| match session.phase() {
            Phase::Ended { at, .. } => at.elapsed().map(|e| e < retention).unwrap_or(true),
            _ => true,
        });
    }

    /// Ends every session and waits for them, then removes the cgroup tree: at shutdown,
    /// after which no session can start.
    pub async fn end_all(&self) {
        *lock(&self.closed) = true;
        // Browsers being launched for the pool discard themselves once they see `closed`.
        while *lock(&self.filling) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pooled: Vec<Ready> = lock(&self.warm).drain(..).collect();
        for ready in pooled {
            ready.discard().await;
        }
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for session in &sessions {
            session.begin_ending("the server stopped");
        }
        for session in &sessions {
            session.ended().await;
        }
        let tree = lock(&self.cgroups).take();
        if let Some(tree) = tree
            && let Err(error) = tree.remove()
        {
            tracing::warn!(%error, "removing the browsers' cgroups failed");
        }
    }
}

/// A place among `max_sessions` held while a browser launches.
struct LaunchSlot {
    browsers: Arc<Browsers>,
}

impl Drop for LaunchSlot {
    fn drop(&mut self) {
        *lock(&self.browsers.launching) -= 1;
    }
}

/// Watches a session's browser until the session ends or the browser exits, then tears the
/// session down: every process killed, profile removed, lease released, time reported.
async fn supervise(
    browsers: Arc<Browsers>,
    session: Arc<Session>,
    mut child: tokio::process::Child,
) {
    tokio::select! {
        status = child.wait() => {
            match status {
                // Chromium exits 0 only when told to: a client's `Browser.close`.
                Ok(status) if status.success() => {
                    if session.begin_ending("the browser was closed (Browser.close)") {
                        tracing::info!(session = %session.id, "browser closed by a client");
                    }
                }
                other => {
                    let status = other.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    if session.begin_ending(&format!("the browser exited unexpectedly ({status})")) {
                        tracing::warn!(session = %session.id, %status, "browser exited");
                    }
                }
            }
        }
        () = session.ending() => {}
    }
    let cgroup = lock(&session.cgroup).take();
    kill_tree(&mut child, cgroup).await;
    let profile = session.profile_dir.clone();
    let staging = session.download_dir().to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        launch::remove_profile(&profile);
        launch::remove_profile(&staging);
    })
    .await;
    drop(lock(&session.held).take());
    let ms = lock(&session.metered_until).elapsed().as_millis() as u64;
    (browsers.meter)(session.owner, ms, false);
    session.mark_ended();
    tracing::info!(session = %session.id, reason = ?session.phase(), "browser session ended");
}

async fn pages_of(session: &Session) -> Result<Vec<cdp::PageTarget>> {
    session.control().pages().await
}

async fn capture(session: &Session, page: &str) -> Result<Vec<u8>> {
    session.control().capture_png(page).await
}

/// A failed DevTools call on a browser that is dying is the session's end, once the
/// supervisor has seen it go (within a second); otherwise the failure itself.
async fn explain(session: &Session, error: Error) -> Error {
    match tokio::time::timeout(Duration::from_secs(1), session.ending()).await {
        Ok(()) => ended_error(session),
        Err(_) => error,
    }
}

fn ended_error(session: &Session) -> Error {
    let reason = match session.phase() {
        Phase::Ending { reason, .. } | Phase::Ended { reason, .. } => reason,
        Phase::Running => "ended".to_string(),
    };
    Error::Ended {
        id: session.id.clone(),
        reason,
    }
}
