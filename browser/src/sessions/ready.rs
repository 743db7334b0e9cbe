//! Browsers ready for a session: launched on demand or ahead of time into the warm pool,
//! each with its profile, download directory, cgroup, bubblewrap view and the server's own
//! DevTools connection; and the teardown of one that is not wanted any more.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::Browsers;
use crate::cdp::Connection;
use crate::downloads::{self, Downloads};
use crate::flags::{self, LaunchSpec, Viewport};
use crate::launch;
use crate::session::{lock, random_hex};
use crate::{Error, Result};

impl Browsers {
    /// Launches a browser with its profile, download directory, cgroup and the server's
    /// DevTools connection (downloads set to go to that directory).
    pub(super) async fn launch_ready(
        &self,
        viewport: Viewport,
        url: Option<&str>,
    ) -> Result<Ready> {
        let started = Instant::now();
        let id = random_hex(16);
        let profile_dir = self.options.profiles_dir.join(&id);
        let download_dir = self.options.profiles_dir.join(format!("{id}.downloads"));
        let remove_dirs = || {
            launch::remove_profile(&profile_dir);
            launch::remove_profile(&download_dir);
        };
        launch::create_profile(&profile_dir, self.options.credentials)?;
        downloads::create_staging(&download_dir)
            .map_err(Error::io(format!("creating {}", download_dir.display())))
            .inspect_err(|_| remove_dirs())?;
        let cgroup = lock(&self.cgroups)
            .as_ref()
            .map(|tree| tree.create(&format!("browser-{id}"), &self.options.limits))
            .transpose()
            .map_err(Error::io("creating the browser's cgroup".into()))
            .inspect_err(|_| remove_dirs())?;
        let launched = self
            .launch_browser(&profile_dir, &download_dir, viewport, url, cgroup.as_ref())
            .await
            .inspect_err(|_| remove_dirs())?;
        let downloads = Arc::new(Downloads::new(download_dir.clone()));
        let events = downloads.clone();
        let connected = async {
            let control = Connection::connect(&launched.devtools_url, move |event| {
                events.observe_event(&event.method, &event.params);
            })
            .await?;
            control.set_download_behavior(&download_dir).await?;
            Ok::<_, Error>(control)
        }
        .await;
        let mut child = launched.child;
        let control = match connected {
            Ok(control) => control,
            Err(error) => {
                kill_tree(&mut child, cgroup).await;
                remove_dirs();
                return Err(error);
            }
        };
        tracing::debug!(browser = %id, ms = started.elapsed().as_millis() as u64, "browser ready");
        Ok(Ready {
            id,
            profile_dir,
            child,
            cgroup,
            devtools_url: launched.devtools_url,
            control,
            downloads,
        })
    }

    /// A live browser from the warm pool, if there is one.
    pub(super) fn take_warm(self: &Arc<Self>) -> Option<Ready> {
        loop {
            let mut ready = lock(&self.warm).pop()?;
            if matches!(ready.child.try_wait(), Ok(None)) {
                return Some(ready);
            }
            tokio::spawn(ready.discard());
        }
    }

    /// Starts launching browsers until the warm pool holds `options.warm` (none at
    /// shutdown).
    pub fn fill_pool(self: &Arc<Self>) {
        let missing = {
            let warm = lock(&self.warm).len();
            let mut filling = lock(&self.filling);
            if *lock(&self.closed) {
                return;
            }
            let missing = self.options.warm.saturating_sub(warm + *filling);
            *filling += missing;
            missing
        };
        for _ in 0..missing {
            let browsers = self.clone();
            tokio::spawn(async move {
                let launched = browsers.launch_ready(Viewport::default(), None).await;
                match launched {
                    Ok(ready) => {
                        if *lock(&browsers.closed) {
                            ready.discard().await;
                        } else {
                            lock(&browsers.warm).push(ready);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "starting a warm browser failed"),
                }
                *lock(&browsers.filling) -= 1;
            });
        }
    }

    async fn launch_browser(
        &self,
        profile_dir: &std::path::Path,
        download_dir: &std::path::Path,
        viewport: Viewport,
        url: Option<&str>,
        cgroup: Option<&confine::Cgroup>,
    ) -> Result<launch::Launched> {
        let spec = LaunchSpec {
            flavor: self.options.flavor,
            profile_dir,
            viewport,
            url,
            chromium_sandbox: self.options.chromium_sandbox,
        };
        let chromium = flags::chromium_args(&spec);
        let (program, args) = match &self.options.view {
            Some(view) => {
                let mut args = flags::bwrap_args(&flags::ViewSpec {
                    hidden: &view.hidden,
                    profile_dir,
                    downloads_dir: download_dir,
                });
                args.push(self.options.binary.display().to_string());
                args.extend(chromium);
                (view.bwrap.clone(), args)
            }
            None => (self.options.binary.clone(), chromium),
        };
        let setup = confine::ChildSetup {
            cgroup: cgroup
                .map(confine::Cgroup::joiner)
                .transpose()
                .map_err(Error::io("opening the browser's cgroup".into()))?,
            new_session: true,
            rlimits: vec![(confine::Rlimit::Core, 0)],
            credentials: self.options.credentials,
            no_new_privileges: true,
            // Spawned from a runtime worker, which lives as long as the server.
            parent_death_signal: Some(libc::SIGKILL),
        };
        launch::launch(
            &program,
            &args,
            profile_dir,
            setup,
            self.options.launch_timeout,
        )
        .await
    }
}

/// A launched browser with the server's connection made: about to become a session, or
/// waiting in the warm pool.
pub(super) struct Ready {
    pub(super) id: String,
    pub(super) profile_dir: PathBuf,
    pub(super) child: tokio::process::Child,
    pub(super) cgroup: Option<confine::Cgroup>,
    pub(super) devtools_url: String,
    pub(super) control: Connection,
    pub(super) downloads: Arc<Downloads>,
}

impl Ready {
    /// Kills the browser and removes its directories.
    pub(super) async fn discard(mut self) {
        kill_tree(&mut self.child, self.cgroup.take()).await;
        launch::remove_profile(&self.profile_dir);
        launch::remove_profile(&self.downloads.staging().to_path_buf());
    }
}

/// Kills the browser and everything it started (its whole cgroup, or else its session's
/// process group), reaps it and removes the cgroup.
pub(super) async fn kill_tree(child: &mut tokio::process::Child, cgroup: Option<confine::Cgroup>) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the process group the browser leads
        // (it called setsid).
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    if let Some(cgroup) = cgroup {
        let removed = tokio::task::spawn_blocking(move || cgroup.remove()).await;
        if let Ok(Err(error)) = removed {
            tracing::warn!(%error, "removing a browser's cgroup failed");
        }
    }
}
