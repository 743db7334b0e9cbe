//! Change notification: what each committed transaction changed in an agent's live tree,
//! delivered to watchers (a mount invalidates the kernel's caches with it).
//!
//! A change carries the *origin* of the code that made it (a thread-local set with
//! [`with_origin`]), so a mount can skip the changes it made itself: the kernel already
//! knows about those.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AgentId;

/// Who made a change; 0 for anything but a mount.
pub type Origin = u64;

/// One thing a transaction changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An inode's attributes or content (or its removal).
    Inode(u64),
    /// The entry `name` in directory `parent` appeared, disappeared or points elsewhere.
    Entry { parent: u64, name: Vec<u8> },
}

thread_local! {
    static ORIGIN: Cell<Origin> = const { Cell::new(0) };
}

static NEXT_ORIGIN: AtomicU64 = AtomicU64::new(1);

/// A fresh origin for a new mount.
pub fn new_origin() -> Origin {
    NEXT_ORIGIN.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` with its store changes attributed to `origin`.
pub fn with_origin<T>(origin: Origin, f: impl FnOnce() -> T) -> T {
    let previous = ORIGIN.with(|o| o.replace(origin));
    let value = f();
    ORIGIN.with(|o| o.set(previous));
    value
}

pub(crate) fn current_origin() -> Origin {
    ORIGIN.with(Cell::get)
}

/// Identifies a registered watcher, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchId(u64);

type Callback = Box<dyn Fn(&[Change]) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Watchers {
    next: AtomicU64,
    list: Mutex<Vec<(WatchId, AgentId, Origin, Callback)>>,
}

impl Watchers {
    pub fn add(&self, agent: AgentId, origin: Origin, callback: Callback) -> WatchId {
        let id = WatchId(self.next.fetch_add(1, Ordering::Relaxed));
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, agent, origin, callback));
        id
    }

    pub fn remove(&self, id: WatchId) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(w, ..)| *w != id);
    }

    /// Hands `changes` of `agent`, made by `origin`, to every other interested watcher.
    /// Callbacks must not block (a mount's callback only queues the work).
    pub fn publish(&self, agent: AgentId, origin: Origin, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        for (_, watched, watcher_origin, callback) in list.iter() {
            if *watched == agent && (*watcher_origin != origin || origin == 0) {
                callback(changes);
            }
        }
    }
}
