//! Rename: move, replace and exchange, atomically, with the POSIX rules for directories.

use crate::index::Tree;
use crate::{Error, FileType, RenameMode, Result};

/// One side of a rename: an entry `name` in directory `dir`, and how to show it in errors.
pub(crate) struct Place<'a> {
    pub dir: u64,
    pub name: &'a [u8],
    pub shown: String,
}

pub(crate) fn rename(
    tree: &Tree<'_>,
    from: &Place<'_>,
    to: &Place<'_>,
    mode: RenameMode,
) -> Result<()> {
    for place in [from, to] {
        if tree.get(place.dir)?.kind != FileType::Directory {
            return Err(Error::NotADirectory(place.shown.clone()));
        }
    }
    let source_ino = tree
        .lookup(from.dir, from.name)?
        .ok_or_else(|| Error::NotFound(from.shown.clone()))?;
    let source = tree.get(source_ino)?;
    if source.kind == FileType::Directory && tree.is_ancestor(source_ino, to.dir)? {
        return Err(Error::InvalidArgument(format!(
            "cannot move {} inside itself",
            from.shown
        )));
    }
    let dest = tree
        .lookup(to.dir, to.name)?
        .map(|ino| tree.get(ino))
        .transpose()?;
    let now = tree.tx.now;
    match (mode, dest) {
        (RenameMode::Exchange, None) => return Err(Error::NotFound(to.shown.clone())),
        (RenameMode::Exchange, Some(dest)) => {
            if dest.ino == source.ino {
                return Ok(());
            }
            if dest.kind == FileType::Directory && tree.is_ancestor(dest.ino, from.dir)? {
                return Err(Error::InvalidArgument(format!(
                    "cannot move {} inside itself",
                    to.shown
                )));
            }
            tree.end_dentry(from.dir, from.name)?;
            tree.end_dentry(to.dir, to.name)?;
            tree.insert_dentry(from.dir, from.name, dest.ino)?;
            tree.insert_dentry(to.dir, to.name, source.ino)?;
            if from.dir != to.dir {
                let moved_dirs = |kind: FileType| i64::from(kind == FileType::Directory);
                let delta = moved_dirs(source.kind) - moved_dirs(dest.kind);
                touch_dir(tree, from.dir, -delta)?;
                touch_dir(tree, to.dir, delta)?;
            } else {
                touch_dir(tree, from.dir, 0)?;
            }
            for ino in [source.ino, dest.ino] {
                tree.modify(ino, |r| r.ctime = now)?;
            }
            return Ok(());
        }
        (RenameMode::NoReplace, Some(_)) => return Err(Error::AlreadyExists(to.shown.clone())),
        (RenameMode::Replace, Some(dest)) => {
            if dest.ino == source.ino {
                return Ok(());
            }
            match (
                source.kind == FileType::Directory,
                dest.kind == FileType::Directory,
            ) {
                (true, false) => return Err(Error::NotADirectory(to.shown.clone())),
                (false, true) => return Err(Error::IsADirectory(to.shown.clone())),
                (true, true) if tree.has_children(dest.ino)? => {
                    return Err(Error::DirectoryNotEmpty(to.shown.clone()));
                }
                _ => {}
            }
            tree.unlink(to.dir, to.name, dest.ino)?;
        }
        (_, None) => {}
    }
    tree.end_dentry(from.dir, from.name)?;
    tree.insert_dentry(to.dir, to.name, source.ino)?;
    let is_dir = i64::from(source.kind == FileType::Directory);
    if from.dir != to.dir {
        touch_dir(tree, from.dir, -is_dir)?;
        touch_dir(tree, to.dir, is_dir)?;
    } else {
        touch_dir(tree, from.dir, 0)?;
    }
    tree.modify(source.ino, |r| r.ctime = now)?;
    Ok(())
}

/// Updates a directory's times after an entry change, and its link count by `subdirs`.
fn touch_dir(tree: &Tree<'_>, dir: u64, subdirs: i64) -> Result<()> {
    let now = tree.tx.now;
    tree.modify(dir, |d| {
        d.mtime = now;
        d.ctime = now;
        d.nlink = (i64::from(d.nlink) + subdirs).max(2) as u32;
    })?;
    Ok(())
}
