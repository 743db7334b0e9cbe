//! The index schema as an ordered list of migrations keyed on `PRAGMA user_version`.
//! Released migrations are never edited or reordered; a change is a new entry.

/// `gen_to` of a row that is still part of the live tree.
pub(crate) const LIVE: i64 = i64::MAX;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: agents, keys, blobs, contents, versioned inodes and directory entries, snapshots.
    r#"
CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    forked_from TEXT,
    gen INTEGER NOT NULL DEFAULT 1,
    next_ino INTEGER NOT NULL DEFAULT 2,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    used_files INTEGER NOT NULL DEFAULT 0,
    used_dirs INTEGER NOT NULL DEFAULT 0,
    quota_bytes INTEGER,
    quota_files INTEGER
) STRICT;

CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    secret_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE TABLE blobs (
    hash BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL DEFAULT 0,
    unreferenced_since INTEGER,
    data BLOB
) STRICT;
CREATE INDEX blobs_unreferenced ON blobs(unreferenced_since) WHERE refs = 0;

CREATE TABLE contents (
    hash BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE TABLE content_chunks (
    content BLOB NOT NULL,
    offset INTEGER NOT NULL,
    len INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (content, offset)
) STRICT, WITHOUT ROWID;

CREATE TABLE inodes (
    agent_id INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    gen_from INTEGER NOT NULL,
    gen_to INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    nlink INTEGER NOT NULL,
    atime INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    content BLOB,
    target BLOB,
    PRIMARY KEY (agent_id, ino, gen_from)
) STRICT, WITHOUT ROWID;

CREATE TABLE dentries (
    agent_id INTEGER NOT NULL,
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    gen_from INTEGER NOT NULL,
    gen_to INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY (agent_id, parent, name, gen_from)
) STRICT, WITHOUT ROWID;
CREATE INDEX dentries_live_by_ino ON dentries(agent_id, ino) WHERE gen_to = 9223372036854775807;

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    name TEXT,
    gen INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    UNIQUE (agent_id, name)
) STRICT;
CREATE INDEX snapshots_by_agent ON snapshots(agent_id, gen);

-- Reference counts follow the rows that hold them, in the same transaction.
CREATE TRIGGER inode_content_added AFTER INSERT ON inodes WHEN NEW.content IS NOT NULL
BEGIN
    UPDATE contents SET refs = refs + 1 WHERE hash = NEW.content;
END;
CREATE TRIGGER inode_content_removed AFTER DELETE ON inodes WHEN OLD.content IS NOT NULL
BEGIN
    UPDATE contents SET refs = refs - 1 WHERE hash = OLD.content;
END;
CREATE TRIGGER inode_content_changed AFTER UPDATE OF content ON inodes
WHEN OLD.content IS NOT NEW.content
BEGIN
    UPDATE contents SET refs = refs + 1 WHERE hash = NEW.content;
    UPDATE contents SET refs = refs - 1 WHERE hash = OLD.content;
END;
CREATE TRIGGER content_unreferenced AFTER UPDATE OF refs ON contents WHEN NEW.refs <= 0
BEGIN
    DELETE FROM contents WHERE hash = NEW.hash;
END;
CREATE TRIGGER content_deleted AFTER DELETE ON contents
BEGIN
    DELETE FROM content_chunks WHERE content = OLD.hash;
END;
CREATE TRIGGER chunk_added AFTER INSERT ON content_chunks
BEGIN
    UPDATE blobs SET refs = refs + 1, unreferenced_since = NULL WHERE hash = NEW.blob;
END;
CREATE TRIGGER chunk_removed AFTER DELETE ON content_chunks
BEGIN
    UPDATE blobs SET refs = refs - 1,
        unreferenced_since = CASE WHEN refs = 1 THEN unixepoch() ELSE unreferenced_since END
    WHERE hash = OLD.blob;
END;
"#,
    // 2: extended attributes, versioned like directory entries.
    r#"
CREATE TABLE xattrs (
    agent_id INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    name BLOB NOT NULL,
    gen_from INTEGER NOT NULL,
    gen_to INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (agent_id, ino, name, gen_from)
) STRICT, WITHOUT ROWID;
"#,
    // 3: compute metered per agent (code runs and browser sessions), in milliseconds.
    r#"
CREATE TABLE compute_usage (
    agent_id INTEGER PRIMARY KEY REFERENCES agents(id),
    runs INTEGER NOT NULL DEFAULT 0,
    run_ms INTEGER NOT NULL DEFAULT 0,
    run_cpu_ms INTEGER NOT NULL DEFAULT 0,
    browser_sessions INTEGER NOT NULL DEFAULT 0,
    browser_ms INTEGER NOT NULL DEFAULT 0
) STRICT;
"#,
    // 4: how far the intent log (index/intents.rs) is applied.
    r#"
CREATE TABLE intent_log (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    applied INTEGER NOT NULL
) STRICT;
INSERT INTO intent_log VALUES (0, 0);
"#,
    // 5: taking a reference leaves `blobs.unreferenced_since` as it is. It keeps the time the
    // count last fell to zero (or the row was made) and means something only while `refs` is
    // 0, so a count going 0 -> 1 -> 0 keeps the row's size, and SQLite rewrites the page
    // holding the count in place instead of the whole row with its inline bytes.
    r#"
DROP TRIGGER chunk_added;
CREATE TRIGGER chunk_added AFTER INSERT ON content_chunks
BEGIN
    UPDATE blobs SET refs = refs + 1 WHERE hash = NEW.blob;
END;
"#,
];
