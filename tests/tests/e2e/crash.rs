//! Crash safety: no acknowledged write is ever lost. A writer puts, overwrites, moves and
//! deletes files through the API while the server is killed with SIGKILL at random
//! moments; after each restart every acknowledged write reads back exactly, the one
//! request in flight at the kill is either wholly done or not at all, nothing that was
//! never written appears, and `agentbox fsck` finds the store clean.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Body, Client, Rng, Server, b64};

/// How many times the server is killed.
const KILLS: usize = 60;
/// Files are spread over this many directories ...
const DIRS: u64 = 4;
/// ... with this many names in each, so paths are overwritten and deleted often.
const NAMES: u64 = 12;

/// What the store must hold: the content of every file that exists, by path.
type Model = BTreeMap<String, Vec<u8>>;

/// One request: its effect on each path it touches (`None`: the path no longer exists).
#[derive(Clone)]
struct Op {
    what: String,
    changes: Vec<(String, Option<Vec<u8>>)>,
}

/// What a writer did before the server went away.
struct Outcome {
    model: Model,
    /// The request that got no answer, if any: it may or may not have happened.
    in_flight: Option<Op>,
    acknowledged: usize,
}

fn random_path(rng: &mut Rng) -> String {
    format!(
        "/crash/d{}/f{}.bin",
        rng.range(0, DIRS),
        rng.range(0, NAMES)
    )
}

fn random_size(rng: &mut Rng) -> usize {
    (match rng.range(0, 100) {
        0..10 => 0,
        10..50 => rng.range(1, 4096),
        50..80 => rng.range(4096, 64 * 1024),
        _ => rng.range(64 * 1024, 1_100_000),
    }) as usize
}

/// Whether some path in `existing` lies in the same directory as `path`.
fn has_directory_of(existing: &[String], path: &str) -> bool {
    let directory = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_owned());
    let wanted = directory(path);
    existing.iter().any(|p| directory(p) == wanted)
}

/// Writes until a request fails to get an answer (the server was killed).
fn write_until_killed(client: Client, mut model: Model, mut rng: Rng) -> Result<Outcome, String> {
    let mut acknowledged = 0;
    loop {
        let roll = rng.range(0, 100);
        let path = random_path(&mut rng);
        let existing: Vec<String> = model.keys().cloned().collect();
        let (op, result) = if roll < 12 && !existing.is_empty() {
            let victim = existing[rng.range(0, existing.len() as u64) as usize].clone();
            let op = Op {
                what: format!("DELETE {victim}"),
                changes: vec![(victim.clone(), None)],
            };
            let result = client
                .req("DELETE", "/v1/compute/fs")
                .query("path", &victim)
                .try_send(Body::Empty);
            (op, result)
        } else if roll < 20 && !existing.is_empty() && has_directory_of(&existing, &path) {
            // A move does not create the destination's directory: only move into one that
            // holds a file the model knows, so it surely exists.
            let from = existing[rng.range(0, existing.len() as u64) as usize].clone();
            if from == path {
                continue;
            }
            let content = model[&from].clone();
            let op = Op {
                what: format!("move {from} to {path}"),
                changes: vec![(from.clone(), None), (path.clone(), Some(content))],
            };
            let result = client
                .req("POST", "/v1/compute/fs/move")
                .try_send(Body::Json(&json!({"from": from, "to": path})));
            (op, result)
        } else {
            let size = random_size(&mut rng);
            let content = rng.bytes(size);
            let raw = rng.range(0, 2) == 0;
            let op = Op {
                what: format!(
                    "PUT {path} ({} bytes, {})",
                    content.len(),
                    if raw { "raw" } else { "base64" }
                ),
                changes: vec![(path.clone(), Some(content.clone()))],
            };
            let result = if raw {
                client
                    .req("PUT", "/v1/compute/fs/content")
                    .query("path", &path)
                    .try_send(Body::Raw(&content))
            } else {
                client
                    .req("PUT", "/v1/compute/fs")
                    .try_send(Body::Json(&json!({"path": path, "content": b64(&content)})))
            };
            (op, result)
        };
        match result {
            Ok(resp) if (200..300).contains(&resp.status) => {
                for (path, content) in op.changes {
                    match content {
                        Some(bytes) => model.insert(path, bytes),
                        None => model.remove(&path),
                    };
                }
                acknowledged += 1;
            }
            Ok(resp) => {
                return Err(format!(
                    "{} answered {}: {}",
                    op.what,
                    resp.status,
                    resp.text()
                ));
            }
            Err(_) => {
                return Ok(Outcome {
                    model,
                    in_flight: Some(op),
                    acknowledged,
                });
            }
        }
    }
}

/// Checks the restarted server against the model and brings the model up to date with
/// what the in-flight request did.
fn verify(client: &Client, model: &mut Model, in_flight: Option<&Op>, round: usize) {
    let tree = client.tree();
    let mut actual: Model = BTreeMap::new();
    for (path, entry) in &tree {
        match entry["type"].as_str() {
            Some("file") => {
                actual.insert(path.clone(), client.read(path));
            }
            Some("directory") => {}
            other => panic!("round {round}: {path} is a {other:?}"),
        }
    }

    let mut in_flight_paths = Vec::new();
    if let Some(op) = in_flight {
        let old_matches = op
            .changes
            .iter()
            .all(|(path, _)| actual.get(path) == model.get(path));
        let new_matches = op
            .changes
            .iter()
            .all(|(path, new)| actual.get(path) == new.as_ref());
        assert!(
            old_matches || new_matches,
            "round {round}: the request in flight at the kill ({}) was neither done nor \
             undone: the store holds a mix or something else",
            op.what
        );
        for (path, _) in &op.changes {
            in_flight_paths.push(path.clone());
            match actual.get(path) {
                Some(bytes) => model.insert(path.clone(), bytes.clone()),
                None => model.remove(path),
            };
        }
    }

    for (path, expected) in model.iter() {
        match actual.get(path) {
            None => panic!(
                "round {round}: acknowledged write lost: {path} ({} bytes) is gone",
                expected.len()
            ),
            Some(bytes) => assert!(
                bytes == expected,
                "round {round}: {path} reads back {} bytes, not the {} acknowledged",
                bytes.len(),
                expected.len()
            ),
        }
    }
    for path in actual.keys() {
        assert!(
            model.contains_key(path),
            "round {round}: {path} exists but was never acknowledged (in flight: {in_flight_paths:?})"
        );
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let started = Instant::now();
    let mut server = Server::start();
    let mut rng = Rng::new("crash");
    let mut model = Model::new();
    let mut acknowledged = 0;
    let mut uncertain = 0;

    for round in 0..KILLS {
        let client = server.client();
        let writer_rng = Rng::from_seed(rng.next_u64());
        let writer = thread::spawn(move || write_until_killed(client, model, writer_rng));
        thread::sleep(Duration::from_millis(rng.range(20, 301)));
        server.kill9();
        let outcome = writer
            .join()
            .expect("the writer thread panicked")
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        model = outcome.model;
        acknowledged += outcome.acknowledged;
        uncertain += usize::from(outcome.in_flight.is_some());

        // fsck on the store as the kill left it, on every other round before the server
        // opens it again.
        if round % 2 == 0 {
            server.fsck_clean();
        }
        server.restart();
        verify(
            &server.client(),
            &mut model,
            outcome.in_flight.as_ref(),
            round,
        );
        if round % 2 == 1 {
            server.fsck_clean();
        }
    }

    server.fsck_clean();
    eprintln!(
        "{KILLS} kills, {acknowledged} acknowledged writes, {uncertain} in flight at a kill, \
         {} files at the end, {:.1}s",
        model.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acknowledged >= KILLS,
        "only {acknowledged} writes were acknowledged in {KILLS} rounds: the test did not \
         exercise the store"
    );
}
