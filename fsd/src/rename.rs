//! Rename: move, replace and exchange, atomically, with the POSIX rules for directories.

use crate::index::Tree;
use crate::{Error, FileType, FsPath, RenameMode, Result};

pub(crate) fn rename(tree: &Tree<'_>, from: &FsPath, to: &FsPath, mode: RenameMode) -> Result<()> {
    let (from_dir, from_name) = tree.resolve_parent(from)?;
    let source_ino = tree
        .lookup(from_dir.ino, from_name)?
        .ok_or_else(|| Error::NotFound(from.to_string()))?;
    let (to_dir, to_name) = tree.resolve_parent(to)?;
    let source = tree.get(source_ino)?;
    if source.kind == FileType::Directory && tree.is_ancestor(source_ino, to_dir.ino)? {
        return Err(Error::InvalidArgument(format!(
            "cannot move {from} inside itself"
        )));
    }
    let dest = tree
        .lookup(to_dir.ino, to_name)?
        .map(|ino| tree.get(ino))
        .transpose()?;
    let now = tree.tx.now;
    match (mode, dest) {
        (RenameMode::Exchange, None) => return Err(Error::NotFound(to.to_string())),
        (RenameMode::Exchange, Some(dest)) => {
            if dest.ino == source.ino {
                return Ok(());
            }
            if dest.kind == FileType::Directory && tree.is_ancestor(dest.ino, from_dir.ino)? {
                return Err(Error::InvalidArgument(format!(
                    "cannot move {to} inside itself"
                )));
            }
            tree.end_dentry(from_dir.ino, from_name)?;
            tree.end_dentry(to_dir.ino, to_name)?;
            tree.insert_dentry(from_dir.ino, from_name, dest.ino)?;
            tree.insert_dentry(to_dir.ino, to_name, source.ino)?;
            if from_dir.ino != to_dir.ino {
                let moved_dirs = |kind: FileType| i64::from(kind == FileType::Directory);
                let delta = moved_dirs(source.kind) - moved_dirs(dest.kind);
                touch_dir(tree, from_dir.ino, -delta)?;
                touch_dir(tree, to_dir.ino, delta)?;
            } else {
                touch_dir(tree, from_dir.ino, 0)?;
            }
            for ino in [source.ino, dest.ino] {
                tree.modify(ino, |r| r.ctime = now)?;
            }
            return Ok(());
        }
        (RenameMode::NoReplace, Some(_)) => return Err(Error::AlreadyExists(to.to_string())),
        (RenameMode::Replace, Some(dest)) => {
            if dest.ino == source.ino {
                return Ok(());
            }
            match (
                source.kind == FileType::Directory,
                dest.kind == FileType::Directory,
            ) {
                (true, false) => return Err(Error::NotADirectory(to.to_string())),
                (false, true) => return Err(Error::IsADirectory(to.to_string())),
                (true, true) if tree.has_children(dest.ino)? => {
                    return Err(Error::DirectoryNotEmpty(to.to_string()));
                }
                _ => {}
            }
            tree.unlink(to_dir.ino, to_name, dest.ino)?;
        }
        (_, None) => {}
    }
    tree.end_dentry(from_dir.ino, from_name)?;
    tree.insert_dentry(to_dir.ino, to_name, source.ino)?;
    let is_dir = i64::from(source.kind == FileType::Directory);
    if from_dir.ino != to_dir.ino {
        touch_dir(tree, from_dir.ino, -is_dir)?;
        touch_dir(tree, to_dir.ino, is_dir)?;
    } else {
        touch_dir(tree, from_dir.ino, 0)?;
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
