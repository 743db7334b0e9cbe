//! The consistency check behind `agentbox fsck`, and the sweep that removes blobs nothing
//! references any more.

use std::time::{Duration, SystemTime};

use crate::blobs::BlobStore;
use crate::index::{Index, LIVE};
use crate::{Hash, Result, SweepReport};

/// What fsck found. `problems` is empty for a healthy store.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub contents_checked: u64,
    pub inodes_checked: u64,
    /// Blob files no index row names: left by writes interrupted by a crash, harmless,
    /// removed by the sweep.
    pub orphan_files: u64,
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Integrity queries: each returns one row per problem, described.
const CHECKS: &[&str] = &[
    "WITH counted AS (SELECT blob, COUNT(*) AS n FROM content_chunks GROUP BY blob) \
     SELECT 'blob ' || hex(b.hash) || ' counts ' || b.refs || ' references but ' || COALESCE(c.n, 0) || \
       ' chunks name it' \
     FROM blobs b LEFT JOIN counted c ON c.blob = b.hash WHERE b.refs != COALESCE(c.n, 0)",
    "WITH counted AS (SELECT content, COUNT(*) AS n FROM inodes WHERE content IS NOT NULL GROUP BY content) \
     SELECT 'content ' || hex(t.hash) || ' counts ' || t.refs || ' references but ' || COALESCE(c.n, 0) || \
       ' inodes name it' \
     FROM contents t LEFT JOIN counted c ON c.content = t.hash WHERE t.refs != COALESCE(c.n, 0)",
    "SELECT 'content ' || hex(cc.content) || ' names blob ' || hex(cc.blob) || ', which is not indexed' \
     FROM content_chunks cc WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = cc.blob)",
    "SELECT 'chunk list of unknown content ' || hex(cc.content) FROM content_chunks cc \
     WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.hash = cc.content) GROUP BY cc.content",
    "WITH covered AS (SELECT content, SUM(len) AS n FROM content_chunks GROUP BY content) \
     SELECT 'content ' || hex(t.hash) || ' has size ' || t.size || ' but its chunks cover ' || COALESCE(c.n, 0) \
     FROM contents t LEFT JOIN covered c ON c.content = t.hash WHERE t.size != COALESCE(c.n, 0)",
    "SELECT 'inode ' || i.ino || ' of agent ' || i.agent_id || ' names unknown content ' || hex(i.content) \
     FROM inodes i WHERE i.content IS NOT NULL AND NOT EXISTS (SELECT 1 FROM contents c WHERE c.hash = i.content)",
    "SELECT 'inode ' || i.ino || ' of agent ' || i.agent_id || ' has size ' || i.size || ' but its content ' || c.size \
     FROM inodes i JOIN contents c ON c.hash = i.content WHERE i.size != c.size",
    "SELECT 'entry ' || quote(d.name) || ' in directory ' || d.parent || ' of agent ' || d.agent_id || \
       ' names missing inode ' || d.ino \
     FROM dentries d WHERE d.gen_to = 9223372036854775807 AND NOT EXISTS (SELECT 1 FROM inodes i \
       WHERE i.agent_id = d.agent_id AND i.ino = d.ino AND +i.gen_to = 9223372036854775807)",
    "SELECT 'entry ' || quote(d.name) || ' of agent ' || d.agent_id || ' is in ' || d.parent || \
       ', which is not a live directory' \
     FROM dentries d WHERE d.gen_to = 9223372036854775807 AND NOT EXISTS (SELECT 1 FROM inodes i \
       WHERE i.agent_id = d.agent_id AND i.ino = d.parent AND i.kind = 2 AND +i.gen_to = 9223372036854775807)",
    "SELECT 'agent ' || a.name || ' counts ' || a.used_bytes || ' bytes but its files hold ' || \
       (SELECT COALESCE(SUM(size), 0) FROM inodes i WHERE i.agent_id = a.id AND i.gen_to = 9223372036854775807 AND i.kind = 1) \
     FROM agents a WHERE a.used_bytes != (SELECT COALESCE(SUM(size), 0) FROM inodes i \
       WHERE i.agent_id = a.id AND i.gen_to = 9223372036854775807 AND i.kind = 1)",
    "SELECT 'agent ' || a.name || ' has no root directory' FROM agents a WHERE NOT EXISTS \
       (SELECT 1 FROM inodes i WHERE i.agent_id = a.id AND i.ino = 1 AND i.kind = 2 AND +i.gen_to = 9223372036854775807)",
];

pub(crate) fn check(index: &Index, blobs: &dyn BlobStore) -> Result<FsckReport> {
    debug_assert_eq!(LIVE, 9223372036854775807);
    index.read(|tx| {
        let mut report = FsckReport::default();
        let mut indexed = std::collections::HashSet::new();
        tx.all_blobs(|hash, size, inline, _refs| {
            report.blobs_checked += 1;
            indexed.insert(hash);
            let bytes = match inline {
                Some(bytes) => bytes,
                None => match blobs.get(&hash) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        report
                            .problems
                            .push(format!("blob {hash} is indexed but unreadable: {error}"));
                        return Ok(());
                    }
                },
            };
            report.bytes_checked += bytes.len() as u64;
            if bytes.len() as u64 != size {
                report.problems.push(format!(
                    "blob {hash} has {} bytes, the index says {size}",
                    bytes.len()
                ));
            } else if Hash::of(&bytes) != hash {
                report
                    .problems
                    .push(format!("blob {hash} does not hash to its name"));
            }
            Ok(())
        })?;
        for sql in CHECKS {
            report.problems.extend(tx.problems(sql)?);
        }
        report.contents_checked = tx.count("SELECT COUNT(*) FROM contents")? as u64;
        report.inodes_checked = tx.count("SELECT COUNT(*) FROM inodes")? as u64;
        report.orphan_files = blobs
            .list()?
            .iter()
            .filter(|(hash, _, _)| !indexed.contains(hash))
            .count() as u64;
        Ok(report)
    })
}

pub(crate) fn sweep(
    index: &Index,
    blobs: &dyn BlobStore,
    grace: Duration,
    held: &dyn Fn(&Hash) -> bool,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let now = SystemTime::now();
    let cutoff = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        - grace.as_secs() as i64;
    let candidates = index.read(|tx| tx.unreferenced_blobs(cutoff))?;
    for batch in candidates.chunks(256) {
        // Files go inside the write transaction: a writer that found one of these blobs
        // on disk checks again, under the same lock, before naming it.
        index.write(|tx| {
            for (hash, size, in_file) in batch {
                if held(hash) {
                    continue;
                }
                if tx.delete_unreferenced_blob(hash)? {
                    if *in_file {
                        blobs.remove(hash)?;
                    }
                    report.blobs_removed += 1;
                    report.bytes_removed += size;
                }
            }
            Ok(())
        })?;
    }
    for (hash, size, modified) in blobs.list()? {
        let old_enough = now.duration_since(modified).is_ok_and(|age| age >= grace);
        if old_enough && !held(&hash) {
            index.write(|tx| {
                if !tx.has_blob(&hash)? {
                    blobs.remove(&hash)?;
                    report.orphan_files_removed += 1;
                    report.bytes_removed += size;
                }
                Ok(())
            })?;
        }
    }
    Ok(report)
}
