//! Section 3: snapshot create and restore times for trees of 1,000 and 10,000 files, over
//! HTTP and directly on [`fsd::Store`] in-process, which separates what HTTP adds from
//! what the store costs.
//!
//! Each tree belongs to an agent of its own, so it holds exactly the files counted. A tree
//! is populated from several threads, snapshotted several times (each create timed), then,
//! several times over, about 1% of its files are rewritten and the tree is restored to the
//! first snapshot (each restore timed). After the last restore a rewritten file must read
//! back as it was in the snapshot. Targets: create in at most 20 ms and restore in at most
//! 100 ms at 10,000 files.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use fsd::{AgentId, FsPath, Store, StoreOptions, View, WriteOptions};

use super::Context;
use crate::http::{self, Client};
use crate::parallel;
use crate::random::RandomBytes;
use crate::report::{self, Table};
use crate::stats::Summary;

/// Create target, in seconds.
const CREATE_TARGET: f64 = 0.020;
/// Restore target, in seconds.
const RESTORE_TARGET: f64 = 0.100;

/// An agent's tree that can be written, read, snapshotted and restored.
trait Tree: Sync {
    fn write(&self, path: &str, data: &[u8]) -> Result<()>;
    fn read(&self, path: &str) -> Result<Vec<u8>>;
    /// Returns the snapshot's id and, if it says, the number of files it holds.
    fn snapshot(&self) -> Result<(String, Option<u64>)>;
    fn restore(&self, id: &str) -> Result<()>;
}

/// The tree of an agent on the server, over HTTP.
struct HttpTree {
    client: Client,
}

impl Tree for HttpTree {
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        self.client.put_raw(path, data).map(drop)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.client.get_raw_into(path, &mut buf)?;
        Ok(buf)
    }

    fn snapshot(&self) -> Result<(String, Option<u64>)> {
        let snapshot = self.client.create_snapshot()?;
        let files = snapshot.get("files").and_then(serde_json::Value::as_u64);
        Ok((http::snapshot_id(&snapshot)?, files))
    }

    fn restore(&self, id: &str) -> Result<()> {
        self.client.restore_snapshot(id)
    }
}

/// The tree of an agent in a store opened in this process.
struct StoreTree {
    store: Store,
    agent: AgentId,
}

impl Tree for StoreTree {
    fn write(&self, path: &str, data: &[u8]) -> Result<()> {
        let path = FsPath::parse(path)?;
        self.store
            .write_file(self.agent, &path, &mut &data[..], &WriteOptions::default())?;
        Ok(())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self
            .store
            .read_file(self.agent, &FsPath::parse(path)?, &View::Live, 0, u64::MAX)?)
    }

    fn snapshot(&self) -> Result<(String, Option<u64>)> {
        let snapshot = self.store.create_snapshot(self.agent, None)?;
        Ok((snapshot.id, Some(snapshot.files)))
    }

    fn restore(&self, id: &str) -> Result<()> {
        Ok(self.store.restore_snapshot(self.agent, id)?)
    }
}

/// Timings on one tree, in seconds.
#[derive(Debug)]
struct Outcome {
    populate: f64,
    creates: Vec<f64>,
    restores: Vec<f64>,
    snapshot_files: Option<u64>,
}

pub fn run(ctx: &Context) -> Result<Table> {
    let plan = &ctx.plan;
    let store = Store::open(&ctx.store_dir, StoreOptions::default())
        .with_context(|| format!("opening a store in {}", ctx.store_dir.display()))?;
    let mut table = Table::new(
        "3. Snapshots: POST /v1/compute/snapshots[/{id}/restore] vs fsd::Store in-process",
        &[
            "files",
            "operation",
            "runs",
            "via HTTP",
            "(min - max)",
            "in-process",
            "HTTP / in-process",
            "target",
            "HTTP result",
            "in-process result",
        ],
    );
    let mut notes = Vec::new();
    for &files in &plan.snapshot_scales {
        let name = format!("snapshots-{files}");
        eprintln!("snapshots: {files} files over HTTP");
        let key = ctx.server.create_agent(&name)?;
        let http = measure(
            &HttpTree {
                client: ctx.client.with_key(&key),
            },
            ctx,
            files,
        )?;
        eprintln!("snapshots: {files} files in-process");
        let agent = store.create_agent(&name)?.id;
        let local = measure(
            &StoreTree {
                store: store.clone(),
                agent,
            },
            ctx,
            files,
        )?;

        for (operation, target, over_http, in_process) in [
            ("create", CREATE_TARGET, &http.creates, &local.creates),
            (
                "restore (~1% changed)",
                RESTORE_TARGET,
                &http.restores,
                &local.restores,
            ),
        ] {
            let a = Summary::of(over_http);
            let b = Summary::of(in_process);
            table.row(vec![
                report::thousands(files as i64),
                operation.to_string(),
                a.n.to_string(),
                report::millis(a.median),
                format!(
                    "({} - {})",
                    report::number(a.min * 1e3),
                    report::number(a.max * 1e3)
                ),
                report::millis(b.median),
                report::ratio(a.median, b.median),
                format!("<= {}", report::millis(target)),
                verdict(a.median, target).to_string(),
                verdict(b.median, target).to_string(),
            ]);
        }
        let count = |n: Option<u64>| match n {
            Some(n) if n == files as u64 => report::thousands(n as i64),
            Some(n) => format!("{} (WRONG)", report::thousands(n as i64)),
            None => "?".to_string(),
        };
        notes.push(format!(
            "{} files: populated at {} files/s over HTTP, {} files/s in-process ({} clients); \
             snapshots report {} / {} files",
            report::thousands(files as i64),
            report::number(files as f64 / http.populate),
            report::number(files as f64 / local.populate),
            plan.threads,
            count(http.snapshot_files),
            count(local.snapshot_files),
        ));
    }
    for note in notes {
        table.note(note);
    }
    table.note(format!(
        "medians; {}-byte random files, 100 per directory; targets (from the issue) are for 10,000 files",
        plan.snapshot_file_size
    ));
    table.note("the in-process store is opened with the server's default options (durable writes)");
    Ok(table)
}

fn verdict(seconds: f64, target: f64) -> &'static str {
    if seconds <= target { "PASS" } else { "MISS" }
}

fn path_of(i: usize) -> String {
    format!("/tree/d{:03}/f{i:05}.bin", i / 100)
}

fn measure(tree: &dyn Tree, ctx: &Context, files: usize) -> Result<Outcome> {
    let plan = &ctx.plan;
    let size = plan.snapshot_file_size;
    // Every tree size gets its own content, so one tree never deduplicates against another.
    let seed = ctx.seed ^ 0x736e_6170 ^ (files as u64).rotate_left(32);
    let original = |i: usize| RandomBytes::seeded(seed.wrapping_add(i as u64)).bytes(size);

    let start = Instant::now();
    parallel::for_each_index(plan.threads, files, |i| {
        tree.write(&path_of(i), &original(i))
    })?;
    let populate = start.elapsed().as_secs_f64();

    let mut creates = Vec::new();
    let mut base = None;
    let mut snapshot_files = None;
    for _ in 0..plan.snapshot_runs {
        let start = Instant::now();
        let (id, count) = tree.snapshot()?;
        creates.push(start.elapsed().as_secs_f64());
        snapshot_files = snapshot_files.or(count);
        base.get_or_insert(id);
    }
    let base = base.context("no snapshot was taken")?;

    // Round r rewrites the files whose number is r modulo 100: about 1% of the tree.
    let mut restores = Vec::new();
    let mut changed = 0;
    for round in 0..plan.snapshot_runs {
        let change_seed = RandomBytes::seeded(seed ^ !(round as u64)).next_u64();
        let indices: Vec<usize> = (round % 100..files).step_by(100).collect();
        parallel::for_each_index(plan.threads, indices.len(), |k| {
            let content = RandomBytes::seeded(change_seed.wrapping_add(k as u64)).bytes(size);
            tree.write(&path_of(indices[k]), &content)
        })?;
        changed = indices[0];
        let start = Instant::now();
        tree.restore(&base)?;
        restores.push(start.elapsed().as_secs_f64());
    }

    let path = path_of(changed);
    if tree.read(&path)? != original(changed) {
        bail!("after restoring snapshot {base}, {path} does not hold its content in the snapshot");
    }
    Ok(Outcome {
        populate,
        creates,
        restores,
        snapshot_files,
    })
}
