//! `agentbox-bench browser`: browser sessions through the API next to the same Chromium
//! launched by hand in the same run.
//!
//! - session create through the API, served by the warm browser (default viewport) and
//!   launched on demand (another viewport: HTTP, profile, cgroup, bubblewrap, launch, the
//!   server's own DevTools connection), next to a cold launch of the same binary with the
//!   same flags, as the same user, until DevTools is ready;
//! - screenshot through the API of a simple page served on loopback;
//! - memory per idle session with several sessions open (proportional set size, so shared
//!   pages are split between the processes that share them), next to one browser launched
//!   alone on the same page.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::filesystem::process::{self, Pid};
use crate::report::{self, Table, mib, millis, ratio};
use crate::server::Server;
use crate::stats::Summary;

/// The user browsers run as (the server's default `--sandbox-uid`).
const SANDBOX_ID: u32 = 61000;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Directory for the server's data directory and the baseline's profiles.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The agentbox binary to start [default: `agentbox` next to this binary].
    #[arg(long)]
    agentbox: Option<PathBuf>,
    /// Repetitions of each timed operation.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Sessions open at once for the memory figure.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Keep the temporary directory (and the server's log).
    #[arg(long)]
    keep: bool,
}

pub fn run(options: Options) -> Result<()> {
    let binary = browser::flags::default_binary(browser::Flavor::HeadlessShell);
    if !binary.exists() {
        bail!("{} is missing: run scripts/setup.sh", binary.display());
    }
    let agentbox = crate::server::agentbox_binary(options.agentbox.as_deref())?;
    let work = tempfile::Builder::new()
        .prefix("agentbox-bench-browser-")
        .tempdir_in(&options.dir)
        .with_context(|| format!("creating a directory in {}", options.dir.display()))?;
    // The browsers' user reaches profiles and mounts through here.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711))?;
    let page = serve_simple_page()?;
    let data_dir = work.path().join("server-data");
    eprintln!(
        "starting {} serve in {}",
        agentbox.display(),
        data_dir.display()
    );
    let server = Server::start(&agentbox, &data_dir, &work.path().join("server.log"))?;
    let api = Api::new(&server);
    let result = measure(&options, &binary, &api, &page, work.path(), &data_dir);
    if result.is_err() {
        eprintln!("the server's log ends with:\n{}\n", server.log_tail());
    }
    server.stop()?;
    let tables = result?;
    report::print_title("browser ", false);
    println!(
        "  browser    {} ({}), as uid {SANDBOX_ID}",
        binary.display(),
        chromium_version(&binary)
    );
    println!("  machine    {}", report::machine());
    for table in tables {
        println!();
        print!("{table}");
    }
    if options.keep {
        eprintln!("kept {}", work.keep().display());
    }
    Ok(())
}

fn measure(
    options: &Options,
    binary: &Path,
    api: &Api,
    page: &str,
    work: &Path,
    data_dir: &Path,
) -> Result<Vec<Table>> {
    // Warm up: the agent's mount, the binary's pages in the page cache.
    let first = api.create(json!({}))?;
    api.delete(&first)?;
    cold_launch(binary, work, "about:blank")?.stop();

    eprintln!(
        "create: {} API creates (warm, on demand) and cold launches, alternating",
        options.runs
    );
    let mut creates = Vec::new();
    let mut on_demand = Vec::new();
    let mut launches = Vec::new();
    // Each step starts on a quiet machine: the server's pool refill (a launch) is done.
    let settle = || std::thread::sleep(Duration::from_millis(700));
    for _ in 0..options.runs {
        settle();
        let started = Instant::now();
        let id = api.create(json!({}))?;
        creates.push(started.elapsed().as_secs_f64());
        api.delete(&id)?;
        settle();
        let started = Instant::now();
        let id = api.create(json!({"viewport": {"width": 1024, "height": 768}}))?;
        on_demand.push(started.elapsed().as_secs_f64());
        api.delete(&id)?;
        settle();
        let launched = cold_launch(binary, work, "about:blank")?;
        launches.push(launched.ready_after.as_secs_f64());
        launched.stop();
    }
    let create = Summary::of(&creates);
    let on_demand = Summary::of(&on_demand);
    let launch = Summary::of(&launches);
    let mut startup = Table::new(
        "Session start: create through the API vs cold launch to DevTools ready",
        &["operation", "p50", "min", "max", "runs"],
    );
    for (name, summary) in [
        ("POST .../sessions (warm browser)", create),
        ("POST .../sessions (other viewport: launched)", on_demand),
        ("cold launch, same binary and flags", launch),
    ] {
        startup.row(vec![
            name.to_string(),
            millis(summary.median),
            millis(summary.min),
            millis(summary.max),
            summary.n.to_string(),
        ]);
    }
    let above = |summary: Summary| ((summary.median - launch.median) * 1000.0).round();
    startup.note(format!(
        "create p50 minus cold launch p50: {} ms with the warm browser, {} ms launched on \
         demand (target: at most 30 ms); ratios {} and {}",
        above(create),
        above(on_demand),
        ratio(create.median, launch.median),
        ratio(on_demand.median, launch.median)
    ));
    startup.note(
        "a launch on demand adds the server's own work: bubblewrap view, cgroup, profile and \
         download directories, its DevTools connection",
    );

    eprintln!("screenshot: {} captures of a simple page", options.runs);
    let id = api.create(json!({"url": page, "viewport": {"width": 1280, "height": 720}}))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut shots = Vec::new();
    for _ in 0..options.runs {
        let started = Instant::now();
        let shot = api.call(
            "GET",
            &format!("/v1/compute/browser/sessions/{id}/screenshot"),
            None,
        )?;
        shots.push(started.elapsed().as_secs_f64());
        if shot["width"] != 1280 {
            bail!(
                "unexpected screenshot: {}x{}",
                shot["width"],
                shot["height"]
            );
        }
    }
    api.delete(&id)?;
    let shot = Summary::of(&shots);
    let mut screenshot = Table::new(
        "Screenshot through the API (1280x720 PNG, simple page)",
        &["operation", "p50", "min", "max", "runs"],
    );
    screenshot.row(vec![
        "GET .../screenshot".into(),
        millis(shot.median),
        millis(shot.min),
        millis(shot.max),
        shot.n.to_string(),
    ]);
    screenshot.note("target: p50 at most 60 ms");

    eprintln!(
        "memory: {} idle sessions on the simple page",
        options.sessions
    );
    let mut ids = Vec::new();
    for _ in 0..options.sessions {
        ids.push(api.create(json!({"url": page}))?);
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut pss = 0u64;
    let mut rss = 0u64;
    let mut processes = 0;
    for id in &ids {
        let pids = pids_using(&data_dir.join("browsers").join(id));
        let (p, r) = memory_of(&pids);
        pss += p;
        rss += r;
        processes += pids.len();
    }
    for id in &ids {
        api.delete(id)?;
    }
    let alone = cold_launch(binary, work, page)?;
    std::thread::sleep(Duration::from_secs(3));
    let alone_pids = pids_using(&alone.profile);
    let (alone_pss, alone_rss) = memory_of(&alone_pids);
    alone.stop();
    let sessions = options.sessions as f64;
    let mut memory = Table::new(
        format!(
            "Memory per idle session, {} sessions open",
            options.sessions
        ),
        &["what", "PSS", "RSS (shared counted in each)", "processes"],
    );
    memory.row(vec![
        "agentbox session (mean)".into(),
        mib(pss as f64 / sessions),
        mib(rss as f64 / sessions),
        format!("{:.1}", processes as f64 / sessions),
    ]);
    memory.row(vec![
        "one browser launched alone".into(),
        mib(alone_pss as f64),
        mib(alone_rss as f64),
        alone_pids.len().to_string(),
    ]);
    memory.note("target: at most 120 MB per idle headless-shell session");
    Ok(vec![startup, screenshot, memory])
}

/// The routes the benchmark calls.
struct Api {
    http: ureq::Agent,
    base: String,
    authorization: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            http: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            base: server.url.clone(),
            authorization: format!("Bearer {}", server.key),
        }
    }

    fn call(&self, method: &str, route: &str, body: Option<&Value>) -> Result<Value> {
        let request = self
            .http
            .request(method, &format!("{}{route}", self.base))
            .set("Authorization", &self.authorization);
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match response {
            Ok(response) => Ok(response.into_json()?),
            Err(ureq::Error::Status(status, response)) => {
                bail!("{method} {route}: {status} {}", response.into_string()?)
            }
            Err(error) => Err(error).with_context(|| format!("{method} {route}")),
        }
    }

    /// Creates a session; returns its id.
    fn create(&self, body: Value) -> Result<String> {
        let created = self.call("POST", "/v1/compute/browser/sessions", Some(&body))?;
        created["session_id"]
            .as_str()
            .map(str::to_string)
            .context("no session_id in the answer")
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.call(
            "DELETE",
            &format!("/v1/compute/browser/sessions/{id}"),
            None,
        )?;
        Ok(())
    }
}

/// A browser started by hand, the way the server starts one, minus the server.
struct Launched {
    child: Child,
    profile: PathBuf,
    ready_after: Duration,
}

impl Launched {
    fn stop(mut self) {
        // SAFETY: signals the process group of a browser this benchmark started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn cold_launch(binary: &Path, work: &Path, url: &str) -> Result<Launched> {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = work.join(format!("baseline-profile-{n}"));
    std::fs::create_dir(&profile)?;
    std::os::unix::fs::chown(&profile, Some(SANDBOX_ID), Some(SANDBOX_ID))?;
    let args = browser::flags::chromium_args(&browser::flags::LaunchSpec {
        flavor: browser::Flavor::HeadlessShell,
        profile_dir: &profile,
        viewport: browser::Viewport::default(),
        url: Some(url),
        chromium_sandbox: true,
    });
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(&args)
        .env_clear()
        .env("HOME", &profile)
        .env("PATH", "/usr/bin:/bin")
        .uid(SANDBOX_ID)
        .gid(SANDBOX_ID)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("DevTools listening on ") => break,
            Some(Ok(_)) => {}
            _ => bail!("{} exited before DevTools was ready", binary.display()),
        }
    }
    let ready_after = started.elapsed();
    // Keep draining stderr so the browser never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Launched {
        child,
        profile,
        ready_after,
    })
}

/// The browser started with `--user-data-dir=<profile>` and every process below it (its
/// zygotes, renderers and utilities do not repeat the flag).
fn pids_using(profile: &Path) -> Vec<Pid> {
    let needle = format!("--user-data-dir={}", profile.display());
    let mut parents = Vec::new();
    let mut tree = Vec::new();
    for pid in process::pids() {
        let Some((_, ppid)) = process::stat(pid) else {
            continue;
        };
        parents.push((pid, ppid));
        if process::arguments(pid).is_some_and(|args| args.contains(&needle)) {
            tree.push(pid);
        }
    }
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, ppid) in &parents {
            if *ppid == parent && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        i += 1;
    }
    tree
}

/// Total proportional and resident set sizes of `pids`, in bytes.
fn memory_of(pids: &[Pid]) -> (u64, u64) {
    let mut pss = 0;
    let mut rss = 0;
    for pid in pids {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        for line in rollup.lines() {
            let field = |name: &str| {
                line.strip_prefix(name).and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            };
            if let Some(kib) = field("Pss:") {
                pss += kib * 1024;
            } else if let Some(kib) = field("Rss:") {
                rss += kib * 1024;
            }
        }
    }
    (pss, rss)
}

fn chromium_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Serves one simple page (a heading and a paragraph) on a loopback port; returns its URL.
fn serve_simple_page() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "<!doctype html><title>agentbox</title><h1>agentbox</h1>\
                        <p>A simple page for the browser benchmark.</p>";
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(url)
}
