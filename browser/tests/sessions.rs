//! Browser sessions against a real `chromium-headless-shell` (installed by
//! `scripts/setup.sh`), run as the sandbox user when the tests run as root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use browser::{Browsers, BrowsersOptions, Credentials, Error, SessionRequest, Viewport};

const SANDBOX_ID: u32 = 61000;

fn bwrap() -> PathBuf {
    let bwrap = PathBuf::from("/usr/bin/bwrap");
    assert!(
        bwrap.exists(),
        "/usr/bin/bwrap is missing: run scripts/setup.sh to install bubblewrap"
    );
    bwrap
}

struct Fixture {
    browsers: Arc<Browsers>,
    metered: Arc<Mutex<Vec<(i64, u64, bool)>>>,
    dir: tempfile::TempDir,
}

fn fixture(idle: Duration) -> Fixture {
    let binary = browser::flags::default_binary(browser::Flavor::HeadlessShell);
    assert!(
        binary.exists(),
        "{} is missing: run scripts/setup.sh to install chromium-headless-shell",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // The browser's user must be able to reach its profile and downloads directories.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let credentials = root.then_some(Credentials {
        uid: SANDBOX_ID,
        gid: SANDBOX_ID,
    });
    let metered: Arc<Mutex<Vec<(i64, u64, bool)>>> = Arc::default();
    let record = metered.clone();
    let options = BrowsersOptions {
        binary,
        profiles_dir: dir.path().join("browsers"),
        credentials,
        view: Some(browser::View {
            bwrap: bwrap(),
            hidden: vec![dir.path().to_path_buf()],
        }),
        cgroup_tree: Some(cgroup_tree()),
        default_idle_timeout: idle,
        ..BrowsersOptions::default()
    };
    let browsers = Browsers::new(
        options,
        Arc::new(move |owner, ms, new| record.lock().unwrap().push((owner, ms, new))),
    )
    .unwrap();
    Fixture {
        browsers,
        metered,
        dir,
    }
}

/// The cgroup tree of this test process's browsers.
fn cgroup_tree() -> String {
    format!("browsers-test-{}", std::process::id())
}

impl Drop for Fixture {
    /// Removes the test's cgroup tree, and whatever a failed test left in it.
    fn drop(&mut self) {
        match confine::CgroupTree::open(&cgroup_tree()) {
            Ok(tree) => {
                if let Err(error) = tree.remove() {
                    eprintln!("removing the test's cgroup tree: {error}");
                }
            }
            Err(error) => eprintln!("opening the test's cgroup tree: {error}"),
        }
    }
}

impl Fixture {
    fn downloads(&self) -> PathBuf {
        let path = self.dir.path().join("downloads");
        if !path.exists() {
            std::fs::create_dir(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(SANDBOX_ID), Some(SANDBOX_ID)).unwrap();
        }
        path
    }

    fn request(&self) -> SessionRequest {
        SessionRequest {
            url: None,
            viewport: Some(Viewport {
                width: 640,
                height: 400,
            }),
            idle_timeout: None,
            downloads_dir: self.downloads(),
            held: Box::new(()),
        }
    }

    fn profile(&self, id: &str) -> PathBuf {
        self.dir.path().join("browsers").join(id)
    }
}

/// The browser processes started with `profile`: their pids.
fn processes_using(profile: &Path) -> Vec<PathBuf> {
    let needle = format!("--user-data-dir={}", profile.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|proc_dir| {
            std::fs::read(proc_dir.join("cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == needle.as_bytes())
            })
        })
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_screenshots_at_its_viewport_and_ends_completely() {
    let f = fixture(Duration::from_secs(600));
    let info = f.browsers.create(7, f.request()).await.unwrap();
    assert!(info.running);
    let profile = f.profile(&info.id);
    assert!(profile.is_dir());
    let processes = processes_using(&profile);
    assert!(!processes.is_empty());
    for process in &processes {
        // Every browser process is in the session's own cgroup, as the sandbox user.
        let cgroups = std::fs::read_to_string(process.join("cgroup")).unwrap_or_default();
        assert!(
            cgroups.contains(&format!("browser-{}", info.id)),
            "{}: {cgroups}",
            process.display()
        );
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            let status = std::fs::read_to_string(process.join("status")).unwrap_or_default();
            let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
            assert!(uid_line.contains(&SANDBOX_ID.to_string()), "{uid_line}");
        }
    }

    let shot = f.browsers.screenshot(7, &info.id).await.unwrap();
    assert_eq!((shot.width, shot.height), (640, 400));
    assert_eq!(&shot.png[1..4], b"PNG");

    // Only the owner finds it.
    assert!(matches!(
        f.browsers.find(8, &info.id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.browsers.screenshot(8, &info.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.browsers.authorize(&info.id, "wrong"),
        Err(Error::NotFound(_))
    ));
    assert!(f.browsers.authorize(&info.id, &info.token).is_ok());

    let ended = f.browsers.end(7, &info.id).await.unwrap();
    assert!(!ended.running);
    assert_eq!(ended.ended_reason.as_deref(), Some("deleted"));
    assert!(!profile.exists(), "the profile outlived its session");
    assert!(
        processes_using(&profile).is_empty(),
        "browser processes outlived their session"
    );
    // Ending again changes nothing.
    let again = f.browsers.end(7, &info.id).await.unwrap();
    assert_eq!(again.ended_reason.as_deref(), Some("deleted"));
    assert!(matches!(
        f.browsers.screenshot(7, &info.id).await,
        Err(Error::Ended { .. })
    ));

    let metered = f.metered.lock().unwrap().clone();
    assert_eq!(metered.iter().filter(|m| m.2).count(), 1, "{metered:?}");
    assert!(metered.iter().all(|m| m.0 == 7));
    assert!(metered.iter().map(|m| m.1).sum::<u64>() > 0, "{metered:?}");
    f.browsers.end_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_browser_ends_its_session_with_the_reason() {
    let f = fixture(Duration::from_secs(600));
    let info = f.browsers.create(1, f.request()).await.unwrap();
    let session = f.browsers.find(1, &info.id).unwrap();
    let port: u16 = session
        .devtools_url()
        .trim_start_matches("ws://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(port > 0);
    // Kill the browser process itself (the group leader).
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    let profile = format!("--user-data-dir={}", f.profile(&info.id).display());
                    args.contains(&profile.as_bytes())
                        && !args.iter().any(|a| a.starts_with(b"--type="))
                })
                .unwrap_or(false)
        })
        .expect("the browser process");
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the session ends", Duration::from_secs(20), || {
        !f.browsers.find(1, &info.id).unwrap().info().running
    })
    .await;
    let ended = f.browsers.find(1, &info.id).unwrap().info();
    let reason = ended.ended_reason.unwrap();
    assert!(reason.contains("exited unexpectedly"), "{reason}");
    wait_until("the profile is removed", Duration::from_secs(20), || {
        !f.profile(&info.id).exists()
    })
    .await;
    f.browsers.end_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_closed_by_a_client_ends_its_session_as_closed() {
    let f = fixture(Duration::from_secs(600));
    let info = f.browsers.create(1, f.request()).await.unwrap();
    let session = f.browsers.find(1, &info.id).unwrap();
    let devtools = browser::cdp::Connection::connect(session.devtools_url(), |_| {})
        .await
        .unwrap();
    // The browser may go before it answers.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        devtools.call("Browser.close", serde_json::json!({}), None),
    )
    .await;
    wait_until("the session ends", Duration::from_secs(20), || {
        !f.browsers.find(1, &info.id).unwrap().info().running
    })
    .await;
    let reason = f
        .browsers
        .find(1, &info.id)
        .unwrap()
        .info()
        .ended_reason
        .unwrap();
    assert_eq!(reason, "the browser was closed (Browser.close)");
    wait_until("the profile is removed", Duration::from_secs(20), || {
        !f.profile(&info.id).exists()
    })
    .await;
    f.browsers.end_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_keepalive_holds_them() {
    let f = fixture(Duration::from_secs(2));
    let idle = f.browsers.create(1, f.request()).await.unwrap();
    let kept = f.browsers.create(1, f.request()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        f.browsers.keepalive(1, &kept.id).unwrap();
        f.browsers.sweep();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let idle = f.browsers.find(1, &idle.id).unwrap().info();
    assert!(!idle.running);
    assert_eq!(idle.ended_reason.as_deref(), Some("idle for 2 seconds"));
    assert!(f.browsers.find(1, &kept.id).unwrap().info().running);
    f.browsers.end_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_start_nothing() {
    let f = fixture(Duration::from_secs(600));
    let mut request = f.request();
    request.url = Some("file:///etc/passwd".into());
    assert!(matches!(
        f.browsers.create(1, request).await,
        Err(Error::InvalidRequest(_))
    ));
    let mut request = f.request();
    request.idle_timeout = Some(Duration::ZERO);
    assert!(matches!(
        f.browsers.create(1, request).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(f.browsers.list(1).is_empty());
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("browsers"))
            .unwrap()
            .count(),
        0
    );
}

/// The text of `url` as the session's browser reads it.
async fn text_of(f: &Fixture, owner: i64, id: &str, url: &str) -> String {
    let session = f.browsers.find(owner, id).unwrap();
    let control = session.control();
    let target = control.open_page(url).await.unwrap();
    let attached = control
        .call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
            None,
        )
        .await
        .unwrap();
    let page = attached["sessionId"].as_str().unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        let evaluated = control
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": "document.readyState !== 'complete' || document.URL.startsWith('about:') ? '' : document.URL + ' ' + (document.body ? document.body.innerText : '')"}),
                Some(page),
            )
            .await;
        // While the page navigates it may have no context to evaluate in yet, and until it
        // has loaded its body may still be empty.
        text = evaluated.ok().map_or(String::new(), |evaluated| {
            evaluated["result"]["value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sees_the_host_but_neither_the_servers_data_nor_the_agents_files() {
    let f = fixture(Duration::from_secs(600));
    let readable = |path: &Path, text: &str| {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let secret = f.dir.path().join("index.db");
    readable(&secret, "other agents' secrets");
    let agents_file = f.downloads().join("agents-file.txt");
    readable(&agents_file, "the agent's own file");
    // A host file outside /tmp (which the browser gets fresh).
    let elsewhere = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let host_file = elsewhere.path().join("host.txt");
    readable(&host_file, "a host file");
    let info = f.browsers.create(1, f.request()).await.unwrap();

    let url = |path: &Path| format!("file://{}", path.display());
    let host = text_of(&f, 1, &info.id, &url(&host_file)).await;
    assert!(host.contains("a host file"), "{host:?}");
    let hidden = text_of(&f, 1, &info.id, &url(&secret)).await;
    assert!(
        !hidden.contains("secrets"),
        "the browser read the data: {hidden:?}"
    );
    let own = text_of(&f, 1, &info.id, &url(&agents_file)).await;
    assert!(
        !own.contains("own file"),
        "the browser read the agent's files: {own:?}"
    );
    f.browsers.end_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warm_pool_serves_default_sessions_and_refills() {
    let binary = browser::flags::default_binary(browser::Flavor::HeadlessShell);
    let f = fixture(Duration::from_secs(600));
    drop(binary);
    let warm = Browsers::new(
        BrowsersOptions {
            warm: 1,
            ..f.browsers.options().clone()
        },
        Arc::new(|_, _, _| {}),
    )
    .unwrap();
    warm.fill_pool();
    let profiles = f.dir.path().join("browsers");
    // One pooled browser: a profile and a download directory.
    wait_until("the pool fills", Duration::from_secs(20), || {
        std::fs::read_dir(&profiles).unwrap().count() == 2
    })
    .await;
    let mut request = f.request();
    request.viewport = None;
    let served = warm.create(3, request).await.unwrap();
    assert!(profiles.join(&served.id).is_dir());
    // The pool refills behind it.
    wait_until("the pool refills", Duration::from_secs(20), || {
        std::fs::read_dir(&profiles).unwrap().count() == 4
    })
    .await;
    let shot = warm.screenshot(3, &served.id).await.unwrap();
    assert_eq!((shot.width, shot.height), (1280, 720));
    warm.end_all().await;
    assert_eq!(std::fs::read_dir(&profiles).unwrap().count(), 0);
}
