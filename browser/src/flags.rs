//! The Chromium command line: a pure function of the launch options, so what a browser is
//! started with can be read and tested without starting one.

use std::path::{Path, PathBuf};

/// Which Chromium build a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Debian's `chromium-headless-shell`: the headless-only build, faster to start and
    /// about half the memory.
    HeadlessShell,
    /// Full `chromium` in its new headless mode.
    Full,
}

/// A browser window's content area, in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport {
            width: 1280,
            height: 720,
        }
    }
}

/// What a launch depends on.
#[derive(Debug, Clone)]
pub struct LaunchSpec<'a> {
    pub flavor: Flavor,
    /// The session's own profile directory.
    pub profile_dir: &'a Path,
    pub viewport: Viewport,
    /// The first page; `about:blank` when none.
    pub url: Option<&'a str>,
    /// Keep Chromium's own sandbox for its renderers (needs unprivileged user namespaces).
    pub chromium_sandbox: bool,
}

/// The arguments Chromium is started with (without the binary itself).
pub fn chromium_args(spec: &LaunchSpec<'_>) -> Vec<String> {
    let mut args = vec![];
    if spec.flavor == Flavor::Full {
        args.push("--headless=new".to_string());
    }
    args.extend(
        [
            // DevTools on a port the kernel picks, on loopback only; the server reads it
            // from Chromium's stderr and never hands it out.
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            // No first-run UI, no background traffic, no crash uploads, no keyrings.
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--metrics-recording-only",
            "--password-store=basic",
            "--use-mock-keychain",
            "--mute-audio",
            "--hide-scrollbars",
            "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider",
        ]
        .map(String::from),
    );
    if !spec.chromium_sandbox {
        args.push("--no-sandbox".to_string());
    }
    args.push(format!("--user-data-dir={}", spec.profile_dir.display()));
    args.push(format!(
        "--window-size={},{}",
        spec.viewport.width, spec.viewport.height
    ));
    // The page URL last; the caller has checked it is http(s) or about:blank, so it can
    // never be read as a flag.
    args.push(spec.url.unwrap_or("about:blank").to_string());
    args
}

/// The filesystem view a browser gets, laid by bubblewrap: the host read-only, a fresh
/// `/tmp`, `/dev` and `/proc`, the `hidden` directories (the server's data, every agent's
/// mount) replaced by empty ones, and only the session's profile and its agent's downloads
/// directory bound back, at their own paths.
#[derive(Debug, Clone)]
pub struct ViewSpec<'a> {
    pub hidden: &'a [PathBuf],
    pub profile_dir: &'a Path,
    pub downloads_dir: &'a Path,
}

/// The bubblewrap arguments for `view`, ending with `--`: the browser's command follows.
pub fn bwrap_args(view: &ViewSpec<'_>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    .map(String::from)
    .to_vec();
    for hidden in view.hidden {
        args.push("--tmpfs".into());
        args.push(hidden.display().to_string());
    }
    for dir in [view.profile_dir, view.downloads_dir] {
        args.push("--bind".into());
        args.push(dir.display().to_string());
        args.push(dir.display().to_string());
    }
    args.extend(["--unshare-pid", "--die-with-parent", "--"].map(String::from));
    args
}

/// The binary Debian installs for a flavor: the executable itself, not the shell wrapper in
/// `/usr/bin`, so that the process the server supervises is the browser.
pub fn default_binary(flavor: Flavor) -> PathBuf {
    match flavor {
        Flavor::HeadlessShell => PathBuf::from("/usr/lib/chromium/chromium-headless-shell"),
        Flavor::Full => PathBuf::from("/usr/lib/chromium/chromium"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(flavor: Flavor) -> LaunchSpec<'static> {
        LaunchSpec {
            flavor,
            profile_dir: Path::new("/data/browsers/s1"),
            viewport: Viewport {
                width: 800,
                height: 600,
            },
            url: None,
            chromium_sandbox: true,
        }
    }

    #[test]
    fn headless_shell_needs_no_headless_flag() {
        let args = chromium_args(&spec(Flavor::HeadlessShell));
        assert!(!args.iter().any(|a| a.starts_with("--headless")));
        let full = chromium_args(&spec(Flavor::Full));
        assert_eq!(full[0], "--headless=new");
    }

    #[test]
    fn devtools_listens_on_a_kernel_chosen_loopback_port() {
        let args = chromium_args(&spec(Flavor::HeadlessShell));
        assert!(args.contains(&"--remote-debugging-port=0".to_string()));
        assert!(args.contains(&"--remote-debugging-address=127.0.0.1".to_string()));
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--remote-debugging-pipe"))
        );
    }

    #[test]
    fn profile_viewport_and_page_follow_the_options() {
        let mut spec = spec(Flavor::HeadlessShell);
        let args = chromium_args(&spec);
        assert!(args.contains(&"--user-data-dir=/data/browsers/s1".to_string()));
        assert!(args.contains(&"--window-size=800,600".to_string()));
        assert_eq!(args.last().unwrap(), "about:blank");
        spec.url = Some("https://example.com/a?b=c");
        assert_eq!(
            chromium_args(&spec).last().unwrap(),
            "https://example.com/a?b=c"
        );
    }

    #[test]
    fn sandbox_is_kept_unless_disabled() {
        let mut spec = spec(Flavor::HeadlessShell);
        assert!(!chromium_args(&spec).contains(&"--no-sandbox".to_string()));
        spec.chromium_sandbox = false;
        assert!(chromium_args(&spec).contains(&"--no-sandbox".to_string()));
    }

    #[test]
    fn the_view_hides_the_data_and_binds_back_only_the_sessions_directories() {
        let hidden = [PathBuf::from("/srv/data"), PathBuf::from("/srv/mounts")];
        let args = bwrap_args(&ViewSpec {
            hidden: &hidden,
            profile_dir: Path::new("/srv/data/browsers/s1"),
            downloads_dir: Path::new("/srv/mounts/7/downloads"),
        });
        let text = args.join(" ");
        assert!(text.starts_with("--ro-bind / / "), "{text}");
        let position = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing from {text}"))
        };
        // Hidden first, then bound back: bubblewrap applies them in order.
        assert!(position("--tmpfs /srv/data") < position("--bind /srv/data/browsers/s1"));
        assert!(position("--tmpfs /srv/mounts") < position("--bind /srv/mounts/7/downloads"));
        assert!(text.contains("--bind /srv/mounts/7/downloads /srv/mounts/7/downloads"));
        assert!(!text.contains("/srv/mounts/8"));
        assert!(text.contains("--die-with-parent"));
        assert_eq!(args.last().unwrap(), "--");
    }

    #[test]
    fn every_argument_but_the_page_is_a_flag() {
        let args = chromium_args(&spec(Flavor::Full));
        let (page, flags) = args.split_last().unwrap();
        assert!(flags.iter().all(|a| a.starts_with("--")), "{flags:?}");
        assert_eq!(page, "about:blank");
    }
}
