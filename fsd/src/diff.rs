//! Comparing two versions of a tree path by path.

use crate::index::{InodeRow, Tree};
use crate::{Change, DiffEntry, FileType, FsPath, Result};

const ROOT: u64 = 1;

/// Paths added, removed or modified going from `old` to `new`, in path order. A file is
/// modified when its content, mode or type changed, a symlink when its target did.
pub(crate) fn diff(old: &Tree<'_>, new: &Tree<'_>) -> Result<Vec<DiffEntry>> {
    let mut out = Vec::new();
    walk(old, new, Some(ROOT), Some(ROOT), &FsPath::root(), &mut out)?;
    Ok(out)
}

fn walk(
    old: &Tree<'_>,
    new: &Tree<'_>,
    old_dir: Option<u64>,
    new_dir: Option<u64>,
    path: &FsPath,
    out: &mut Vec<DiffEntry>,
) -> Result<()> {
    let old_children = match old_dir {
        Some(dir) => old.children(dir)?,
        None => Vec::new(),
    };
    let new_children = match new_dir {
        Some(dir) => new.children(dir)?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < old_children.len() || j < new_children.len() {
        let order = match (old_children.get(i), new_children.get(j)) {
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let (name, row) = &old_children[i];
                let child = path.join(name);
                out.push(entry(&child, Change::Removed, row));
                if row.kind == FileType::Directory {
                    walk(old, new, Some(row.ino), None, &child, out)?;
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, row) = &new_children[j];
                let child = path.join(name);
                out.push(entry(&child, Change::Added, row));
                if row.kind == FileType::Directory {
                    walk(old, new, None, Some(row.ino), &child, out)?;
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (name, a) = &old_children[i];
                let b = &new_children[j].1;
                let child = path.join(name);
                if a.kind != b.kind
                    || a.mode != b.mode
                    || a.content != b.content
                    || a.target != b.target
                {
                    out.push(entry(&child, Change::Modified, b));
                }
                let sub = |row: &InodeRow| (row.kind == FileType::Directory).then_some(row.ino);
                if a.kind == FileType::Directory || b.kind == FileType::Directory {
                    walk(old, new, sub(a), sub(b), &child, out)?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn entry(path: &FsPath, change: Change, row: &InodeRow) -> DiffEntry {
    DiffEntry {
        path: path.to_string(),
        change,
        kind: row.kind,
    }
}
