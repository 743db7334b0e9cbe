//! Commands that work directly on a data directory: agents, keys, fsck, gc. They open the
//! same index a running server uses (SQLite serialises the two), so they work while it runs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use fsd::{Quota, Store, StoreOptions};
use serde_json::json;

use crate::cli::{AgentsArgs, AgentsCommand, DataDirArg, FsckArgs, GcArgs, KeysArgs, KeysCommand};
use crate::keys;

fn open(data: &DataDirArg, sweep_grace: Duration) -> anyhow::Result<Store> {
    if !data.data_dir.join("index.db").exists() {
        bail!(
            "{} is not an agentbox data directory (no index.db); start `agentbox serve --data-dir {}` once to create it",
            data.data_dir.display(),
            data.data_dir.display()
        );
    }
    Store::open(
        &data.data_dir,
        StoreOptions {
            durable: true,
            sweep_grace,
            batch_window: None,
        },
    )
    .with_context(|| format!("opening {}", data.data_dir.display()))
}

fn open_default(data: &DataDirArg) -> anyhow::Result<Store> {
    open(data, StoreOptions::default().sweep_grace)
}

/// Creates a key for `agent`, records its hash and returns the key itself.
pub fn issue_key(store: &Store, agent: fsd::AgentId) -> anyhow::Result<String> {
    let key = keys::generate();
    store.add_key(agent, &key.id, keys::hash(&key.key))?;
    Ok(key.key)
}

fn print_key(agent: &str, key: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({ "agent": agent, "key": key }));
    } else {
        println!("agent: {agent}");
        println!("key:   {key}");
        eprintln!("The key is shown only now; agentbox keeps only its hash.");
    }
}

fn agent_id(store: &Store, name: &str) -> anyhow::Result<fsd::AgentId> {
    Ok(store
        .agent(name)?
        .with_context(|| format!("no agent named {name}"))?
        .id)
}

pub fn agents(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let store = open_default(&args.data)?;
    match args.command {
        AgentsCommand::Create {
            name,
            json,
            quota_bytes,
            quota_files,
        } => {
            let agent = store.create_agent(&name)?;
            if quota_bytes.is_some() || quota_files.is_some() {
                store.set_quota(
                    agent.id,
                    Quota {
                        max_bytes: quota_bytes,
                        max_files: quota_files,
                    },
                )?;
            }
            let key = issue_key(&store, agent.id)?;
            print_key(&agent.name, &key, json);
        }
        AgentsCommand::List { json } => {
            let agents = store.list_agents()?;
            if json {
                let list: Vec<_> = agents
                    .iter()
                    .map(|a| {
                        let stats = store.agent_stats(a.id).ok();
                        json!({
                            "agent": a.name,
                            "created_at": crate::server::rfc3339_ns(a.created_at_ns),
                            "forked_from": a.forked_from,
                            "files": stats.as_ref().map(|s| s.files),
                            "logical_bytes": stats.as_ref().map(|s| s.logical_bytes),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:>10} {:>14}  FORKED FROM",
                    "AGENT", "FILES", "BYTES"
                );
                for a in agents {
                    let stats = store.agent_stats(a.id)?;
                    println!(
                        "{:<24} {:>10} {:>14}  {}",
                        a.name,
                        stats.files,
                        stats.logical_bytes,
                        a.forked_from.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        AgentsCommand::Fork {
            source,
            new,
            snapshot,
            json,
        } => {
            let source_id = agent_id(&store, &source)?;
            let agent = store.fork_agent(source_id, &snapshot, &new)?;
            let key = issue_key(&store, agent.id)?;
            print_key(&agent.name, &key, json);
        }
        AgentsCommand::Quota { name, bytes, files } => {
            let id = agent_id(&store, &name)?;
            store.set_quota(
                id,
                Quota {
                    max_bytes: bytes,
                    max_files: files,
                },
            )?;
            println!(
                "quota of {name}: bytes {}, files {}",
                show(bytes),
                show(files)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let store = open_default(&args.data)?;
    match args.command {
        KeysCommand::Create { agent, json } => {
            let id = agent_id(&store, &agent)?;
            let key = issue_key(&store, id)?;
            print_key(&agent, &key, json);
        }
        KeysCommand::List { agent, json } => {
            let id = agent
                .as_deref()
                .map(|name| agent_id(&store, name))
                .transpose()?;
            let keys = store.list_keys(id)?;
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id,
                            "agent": k.agent,
                            "created_at": crate::server::rfc3339_ns(k.created_at_ns),
                            "revoked_at": k.revoked_at_ns.map(crate::server::rfc3339_ns),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<10} {:<24} STATUS", "ID", "AGENT");
                for k in keys {
                    let status = if k.revoked_at_ns.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!("{:<10} {:<24} {status}", k.id, k.agent);
                }
            }
        }
        KeysCommand::Revoke { key } => {
            let id = keys::id_of(&key).unwrap_or(&key);
            if !store.revoke_key(id)? {
                bail!("no active key with id {id}");
            }
            println!("revoked key {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let store = open_default(&args.data)?;
    let report = store.fsck()?;
    if args.json {
        println!(
            "{}",
            json!({
                "clean": report.is_clean(),
                "blobs_checked": report.blobs_checked,
                "bytes_checked": report.bytes_checked,
                "contents_checked": report.contents_checked,
                "inodes_checked": report.inodes_checked,
                "orphan_files": report.orphan_files,
                "problems": report.problems,
            })
        );
    } else {
        println!(
            "checked {} blobs ({} bytes), {} contents, {} inode versions",
            report.blobs_checked,
            report.bytes_checked,
            report.contents_checked,
            report.inodes_checked
        );
        if report.orphan_files > 0 {
            println!(
                "{} blob files are not indexed (left by interrupted writes; `agentbox gc` removes them)",
                report.orphan_files
            );
        }
        for problem in &report.problems {
            println!("PROBLEM: {problem}");
        }
        println!(
            "{}",
            if report.is_clean() {
                "clean"
            } else {
                "NOT CLEAN"
            }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let store = open(&args.data, Duration::from_secs(args.grace_seconds))?;
    let report = store.sweep()?;
    println!(
        "removed {} unreferenced blobs and {} unindexed blob files, {} bytes",
        report.blobs_removed, report.orphan_files_removed, report.bytes_removed
    );
    Ok(ExitCode::SUCCESS)
}
