//! The changes a mount makes by the thousand, written as intent-log records so they can
//! join the index's open batch (see [`crate::index`]): an entry created (file, directory,
//! symlink), removed or renamed, an inode's mode and times changed or a file emptied, and a
//! file's content replaced when a handle commits what it wrote from the start. Each is one
//! function of the tree used twice, when the change is made and when its record is replayed
//! after a killed process, so both give the same result (the record carries the change's
//! time; inode numbers come from the agent's row in the same order; a change whose outcome
//! depends on which files are open is never batched, see [`Store::change_logged`]).
//!
//! A record is a tag byte and the agent, followed by the change's fields: integers
//! little-endian, byte strings and lists prefixed with their u32 length, an absent hash as
//! a zero byte.

use super::inodes::{
    apply_attrs, check_name_length, check_new_name, directory, regular_file, shown,
};
use crate::chunker::Manifest;
use crate::index::{InodeRow, NewContent, Tree, Tx};
use crate::rename::Place;
use crate::store::{NewNode, Store, file_row};
use crate::{AgentId, Attr, Error, FileType, Hash, RenameMode, Result, SetAttr};

const CREATE: u8 = 1;
const REPLACE_CONTENT: u8 = 2;
const REMOVE: u8 = 3;
const RENAME: u8 = 4;
const SET_ATTRS: u8 = 5;

impl Store {
    /// Creates `name` in directory `parent`; [`Error::AlreadyExists`] if it exists.
    /// Returns the new node's attributes and the directory's after the change.
    pub fn create_at(
        &self,
        agent: AgentId,
        parent: u64,
        name: &[u8],
        node: NewNode<'_>,
    ) -> Result<(Attr, Attr)> {
        check_new_name(parent, name)?;
        let (kind, mode, target): (u8, u32, &[u8]) = match node {
            NewNode::File { mode } => (1, mode, b""),
            NewNode::Directory { mode } => (2, mode, b""),
            NewNode::Symlink { target } => (3, 0, target),
        };
        let mut record = start_record(CREATE, agent);
        put_u64(&mut record, parent);
        put_bytes(&mut record, name);
        record.push(kind);
        put_u64(&mut record, u64::from(mode));
        put_bytes(&mut record, target);
        self.change_logged(agent, &record, |tree| create(tree, parent, name, node))
    }

    /// Removes entry `name` of `parent`: a non-directory (`unlink`) or an empty directory
    /// (`rmdir`), as `directory` says.
    pub fn remove_at(
        &self,
        agent: AgentId,
        parent: u64,
        name: &[u8],
        directory_wanted: bool,
    ) -> Result<()> {
        check_name_length(name)?;
        let mut record = start_record(REMOVE, agent);
        put_u64(&mut record, parent);
        put_bytes(&mut record, name);
        record.push(u8::from(directory_wanted));
        self.change_logged(agent, &record, |tree| {
            remove(tree, parent, name, directory_wanted)
        })
    }

    /// Renames entry `name` of `parent` to `new_name` of `new_parent`, as `mode` says.
    pub fn rename_at(
        &self,
        agent: AgentId,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        check_name_length(name)?;
        check_new_name(new_parent, new_name)?;
        let mut record = start_record(RENAME, agent);
        put_u64(&mut record, parent);
        put_bytes(&mut record, name);
        put_u64(&mut record, new_parent);
        put_bytes(&mut record, new_name);
        record.push(rename_code(mode));
        self.change_logged(agent, &record, |tree| {
            rename(tree, parent, name, new_parent, new_name, mode)
        })
    }

    /// Changes the mode and times of inode `ino`, or empties it (see [`Store::set_attr_ino`],
    /// which calls this once any other change of size is made).
    pub(super) fn set_attrs_logged(
        &self,
        agent: AgentId,
        ino: u64,
        changes: &SetAttr,
    ) -> Result<Attr> {
        let mut record = start_record(SET_ATTRS, agent);
        put_u64(&mut record, ino);
        for value in [
            changes.mode.map(u64::from),
            changes.size,
            changes.atime_ns.map(|t| t as u64),
            changes.mtime_ns.map(|t| t as u64),
        ] {
            put_option(&mut record, value);
        }
        self.change_logged(agent, &record, |tree| set_attrs(tree, ino, changes))
    }

    /// Makes `content` the content of file `ino` if the file still has content `base`
    /// and is no longer than `content`; `None` (and no change) otherwise.
    pub(crate) fn replace_content_logged(
        &self,
        agent: AgentId,
        ino: u64,
        base: Option<Hash>,
        content: &NewContent,
    ) -> Result<Option<Attr>> {
        let mut record = start_record(REPLACE_CONTENT, agent);
        put_u64(&mut record, ino);
        put_hash(&mut record, base);
        put_u64(&mut record, content.manifest.size);
        put_u32(&mut record, content.manifest.chunks.len() as u32);
        for chunk in &content.manifest.chunks {
            put_u64(&mut record, chunk.len);
            put_hash(&mut record, Some(chunk.hash));
        }
        put_u32(&mut record, content.inline.len() as u32);
        for (hash, bytes) in &content.inline {
            put_hash(&mut record, Some(*hash));
            put_bytes(&mut record, bytes);
        }
        self.change_logged(agent, &record, |tree| {
            replace_content(self, tree, ino, base, content)
        })
    }

    /// Applies one record again, in `tx` at the record's time.
    pub(crate) fn replay(&self, tx: &Tx<'_>, record: &[u8]) -> Result<()> {
        let mut fields = Fields(record);
        let tag = fields.u8()?;
        let agent = fields.u64()? as AgentId;
        match tag {
            CREATE => {
                let parent = fields.u64()?;
                let name = fields.bytes()?;
                let kind = fields.u8()?;
                let mode = fields.u64()? as u32;
                let target = fields.bytes()?;
                fields.end()?;
                let node = match kind {
                    1 => NewNode::File { mode },
                    2 => NewNode::Directory { mode },
                    3 => NewNode::Symlink { target },
                    _ => return Err(damaged()),
                };
                self.change_in(tx, agent, |tree| create(tree, parent, name, node))?;
            }
            REMOVE => {
                let parent = fields.u64()?;
                let name = fields.bytes()?;
                let directory_wanted = fields.u8()? != 0;
                fields.end()?;
                self.change_in(tx, agent, |tree| {
                    remove(tree, parent, name, directory_wanted)
                })?;
            }
            RENAME => {
                let parent = fields.u64()?;
                let name = fields.bytes()?;
                let new_parent = fields.u64()?;
                let new_name = fields.bytes()?;
                let mode = match fields.u8()? {
                    0 => RenameMode::Replace,
                    1 => RenameMode::NoReplace,
                    2 => RenameMode::Exchange,
                    _ => return Err(damaged()),
                };
                fields.end()?;
                self.change_in(tx, agent, |tree| {
                    rename(tree, parent, name, new_parent, new_name, mode)
                })?;
            }
            SET_ATTRS => {
                let ino = fields.u64()?;
                let changes = SetAttr {
                    mode: fields.option()?.map(|mode| mode as u32),
                    size: fields.option()?,
                    atime_ns: fields.option()?.map(|t| t as i64),
                    mtime_ns: fields.option()?.map(|t| t as i64),
                };
                fields.end()?;
                self.change_in(tx, agent, |tree| set_attrs(tree, ino, &changes))?;
            }
            REPLACE_CONTENT => {
                let ino = fields.u64()?;
                let base = fields.hash()?;
                let mut content = NewContent {
                    manifest: Manifest::default(),
                    inline: Vec::new(),
                };
                let size = fields.u64()?;
                for _ in 0..fields.u32()? {
                    let len = fields.u64()?;
                    let hash = fields.hash()?.ok_or_else(damaged)?;
                    content.manifest.push(hash, len);
                }
                if content.manifest.size != size {
                    return Err(damaged());
                }
                for _ in 0..fields.u32()? {
                    let hash = fields.hash()?.ok_or_else(damaged)?;
                    content.inline.push((hash, fields.bytes()?.to_vec()));
                }
                fields.end()?;
                self.change_in(tx, agent, |tree| {
                    replace_content(self, tree, ino, base, &content)
                })?;
            }
            _ => return Err(damaged()),
        }
        Ok(())
    }
}

fn rename_code(mode: RenameMode) -> u8 {
    match mode {
        RenameMode::Replace => 0,
        RenameMode::NoReplace => 1,
        RenameMode::Exchange => 2,
    }
}

fn create(tree: &Tree<'_>, parent: u64, name: &[u8], node: NewNode<'_>) -> Result<(Attr, Attr)> {
    directory(tree, parent)?;
    if tree.lookup(parent, name)?.is_some() {
        return Err(Error::AlreadyExists(shown(name)));
    }
    let now = tree.tx.now;
    let row = match node {
        NewNode::File { mode } => file_row(now, mode, 0, None),
        NewNode::Directory { mode } => tree.dir_row(mode),
        NewNode::Symlink { target } => {
            if target.is_empty() || target.contains(&0) || target.len() > 4096 {
                return Err(Error::InvalidArgument(
                    "a symlink target is 1-4096 bytes without NUL".into(),
                ));
            }
            InodeRow {
                kind: FileType::Symlink,
                size: target.len() as u64,
                target: Some(target.to_vec()),
                ..file_row(now, 0o777, 0, None)
            }
        }
    };
    let created = tree.create(parent, name, row)?.attr();
    Ok((created, tree.get(parent)?.attr()))
}

fn remove(tree: &Tree<'_>, parent: u64, name: &[u8], directory_wanted: bool) -> Result<()> {
    directory(tree, parent)?;
    let ino = tree
        .lookup(parent, name)?
        .ok_or_else(|| Error::NotFound(shown(name)))?;
    let row = tree.get(ino)?;
    let is_dir = row.kind == FileType::Directory;
    if directory_wanted && !is_dir {
        return Err(Error::NotADirectory(shown(name)));
    }
    if !directory_wanted && is_dir {
        return Err(Error::IsADirectory(shown(name)));
    }
    if is_dir && tree.has_children(ino)? {
        return Err(Error::DirectoryNotEmpty(shown(name)));
    }
    tree.unlink(parent, name, ino)
}

fn rename(
    tree: &Tree<'_>,
    parent: u64,
    name: &[u8],
    new_parent: u64,
    new_name: &[u8],
    mode: RenameMode,
) -> Result<()> {
    let from = Place {
        dir: parent,
        name,
        shown: shown(name),
    };
    let to = Place {
        dir: new_parent,
        name: new_name,
        shown: shown(new_name),
    };
    crate::rename::rename(tree, &from, &to, mode)
}

fn set_attrs(tree: &Tree<'_>, ino: u64, changes: &SetAttr) -> Result<Attr> {
    let row = tree
        .inode(ino)?
        .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
    if changes.size.is_some() && row.kind == FileType::Directory {
        return Err(Error::IsADirectory(format!("inode {ino}")));
    }
    let now = tree.tx.now;
    Ok(tree
        .modify(row.ino, |r| apply_attrs(r, changes, now))?
        .attr())
}

fn replace_content(
    store: &Store,
    tree: &Tree<'_>,
    ino: u64,
    base: Option<Hash>,
    content: &NewContent,
) -> Result<Option<Attr>> {
    let row = regular_file(tree, ino)?;
    let size = content.manifest.size;
    if row.content != base || row.size > size {
        return Ok(None);
    }
    let hash = tree.tx.add_content(content, store.inner.blobs.as_ref())?;
    let now = tree.tx.now;
    let row = tree.modify(ino, |r| {
        r.content = hash;
        r.size = size;
        r.mtime = now;
        r.ctime = now;
    })?;
    Ok(Some(row.attr()))
}

/// A record's tag and the agent it changes, which every record begins with.
fn start_record(tag: u8, agent: AgentId) -> Vec<u8> {
    let mut record = vec![tag];
    put_i64(&mut record, agent);
    record
}

fn damaged() -> Error {
    Error::Corrupt("a damaged intent log record".into())
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_option(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_u64(out, value);
        }
    }
}

fn put_hash(out: &mut Vec<u8>, hash: Option<Hash>) {
    match hash {
        None => out.push(0),
        Some(hash) => {
            out.push(1);
            out.extend_from_slice(&hash.0);
        }
    }
}

/// The fields of a record, read in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.0.len() < len {
            return Err(damaged());
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| damaged())?,
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| damaged())?,
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn option(&mut self) -> Result<Option<u64>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(damaged()),
        }
    }

    fn hash(&mut self) -> Result<Option<Hash>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Hash(
                self.take(32)?.try_into().map_err(|_| damaged())?,
            ))),
            _ => Err(damaged()),
        }
    }

    fn end(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(damaged())
        }
    }
}
