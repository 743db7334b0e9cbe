//! The server's browser sessions as it runs them: options from the command line, browser
//! time reported to the agent's usage, and the sweeper that ends idle sessions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{BrowserFlavor, ServeArgs};

/// Lays each browser's filesystem view.
const BWRAP: &str = "/usr/bin/bwrap";

/// The browser sessions this server offers, or `None` (with a warning) when the Chromium
/// binary or bubblewrap is missing.
pub fn browsers(
    store: &fsd::Store,
    args: &ServeArgs,
) -> anyhow::Result<Option<Arc<browser::Browsers>>> {
    let flavor = match args.browser {
        BrowserFlavor::HeadlessShell => browser::Flavor::HeadlessShell,
        BrowserFlavor::Chromium => browser::Flavor::Full,
    };
    let binary = args
        .browser_binary
        .clone()
        .unwrap_or_else(|| browser::flags::default_binary(flavor));
    if !binary.exists() {
        tracing::warn!(
            binary = %binary.display(),
            "the browser is missing: browser sessions are unavailable (run scripts/setup.sh)"
        );
        return Ok(None);
    }
    // SAFETY: getuid cannot fail and touches no memory.
    let root = unsafe { libc::getuid() } == 0;
    let data_dir = std::path::absolute(&args.data.data_dir)?;
    let mut hidden = vec![data_dir.clone()];
    if let Some(mounts) = &args.mount_dir {
        hidden.push(std::path::absolute(mounts)?);
    }
    // Without its view a browser would see the host's filesystem, the data directory and
    // every agent's mount included: no view, no browsers.
    let bwrap = Path::new(BWRAP);
    if !bwrap.exists() {
        tracing::warn!(
            "{BWRAP} is missing: browser sessions are unavailable (run scripts/setup.sh)"
        );
        return Ok(None);
    }
    let view = Some(browser::View {
        bwrap: bwrap.to_path_buf(),
        hidden,
    });
    let options = browser::BrowsersOptions {
        flavor,
        binary,
        profiles_dir: data_dir.join("browsers"),
        // Root drops to the sandbox user; an unprivileged server runs browsers as itself.
        credentials: root.then_some(browser::Credentials {
            uid: args.sandbox_uid,
            gid: args.sandbox_gid,
        }),
        // Chromium's own renderer sandbox works as the sandbox user: it needs only
        // unprivileged user namespaces.
        chromium_sandbox: true,
        view,
        cgroup_tree: Some(super::startup::cgroup_purpose(
            "browsers",
            &args.data.data_dir,
        )),
        limits: confine::Limits {
            memory_bytes: Some(args.browser_memory_bytes),
            cpu_millicores: Some(args.browser_cpu_millicores).filter(|m| *m > 0),
            ..browser::default_limits()
        },
        default_idle_timeout: Duration::from_secs(args.browser_idle_seconds),
        max_idle_timeout: Duration::from_secs(args.browser_max_idle_seconds),
        max_sessions: args.browser_max_sessions,
        warm: args.browser_warm,
        ..browser::BrowsersOptions::default()
    };
    let meter = meter(store.clone());
    let browsers = browser::Browsers::new(options, meter)?;
    browsers.fill_pool();
    Ok(Some(browsers))
}

/// Adds browser time to the agent's usage in the store.
fn meter(store: fsd::Store) -> browser::Meter {
    Arc::new(move |agent, ms, new_session| {
        if ms == 0 && !new_session {
            return;
        }
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.record_browser_time(agent, ms, new_session) {
                tracing::warn!(%error, agent, ms, "recording browser time failed");
            }
        });
    })
}

/// Ends idle sessions and reports browser time, once a second.
pub fn spawn_sweeper(browsers: Arc<browser::Browsers>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            browsers.sweep();
        }
    })
}
