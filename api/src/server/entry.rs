//! The JSON shapes shared by the file routes: an entry (stat result or listing row) and
//! the result of a write.

use serde::Serialize;

use super::time::rfc3339_ns;

/// A directory entry or stat result, as documented under "Entries".
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    pub modified_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    /// The entry for `attr` found at `path`; `target` is the link's target for symlinks.
    pub fn new(path: &fsd::FsPath, attr: &fsd::Attr, target: Option<Vec<u8>>) -> Entry {
        let name = match path.split_last() {
            Some((_, last)) => String::from_utf8_lossy(last).into_owned(),
            None => "/".to_string(),
        };
        Entry {
            name,
            path: path.to_string(),
            kind: attr.kind.as_str(),
            size: attr.size,
            mode: attr.mode,
            modified_at: rfc3339_ns(attr.mtime_ns),
            hash: attr.hash.as_ref().map(fsd::Hash::to_hex),
            target: target.map(|t| String::from_utf8_lossy(&t).into_owned()),
        }
    }

    /// Stats `path` and reads its target if it is a symlink, in one blocking call.
    pub fn load(
        store: &fsd::Store,
        agent: fsd::AgentId,
        path: &fsd::FsPath,
        view: &fsd::View,
    ) -> fsd::Result<Entry> {
        let attr = store.stat(agent, path, view)?;
        let target = match attr.kind {
            fsd::FileType::Symlink => Some(store.readlink(agent, path, view)?),
            _ => None,
        };
        Ok(Entry::new(path, &attr, target))
    }
}

/// What an upload answers: `{"path", "size", "hash"}`.
#[derive(Debug, Serialize)]
pub struct Written {
    pub path: String,
    pub size: u64,
    pub hash: Option<String>,
}

impl Written {
    pub fn new(path: &fsd::FsPath, attr: &fsd::Attr) -> Written {
        Written {
            path: path.to_string(),
            size: attr.size,
            hash: attr.hash.as_ref().map(fsd::Hash::to_hex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: fsd::FileType, hash: Option<fsd::Hash>) -> fsd::Attr {
        fsd::Attr {
            ino: 7,
            kind,
            mode: 0o644,
            size: 12,
            nlink: 1,
            atime_ns: 0,
            mtime_ns: 1_000_000_001,
            ctime_ns: 0,
            hash,
        }
    }

    #[test]
    fn serialises_files_with_their_hash() {
        let path = fsd::FsPath::parse("/reports/summary.txt").unwrap();
        let entry = Entry::new(
            &path,
            &attr(fsd::FileType::File, Some(fsd::Hash([1; 32]))),
            None,
        );
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["name"], "summary.txt");
        assert_eq!(value["path"], "/reports/summary.txt");
        assert_eq!(value["type"], "file");
        assert_eq!(value["mode"], 420);
        assert_eq!(value["modified_at"], "1970-01-01T00:00:01.000000001Z");
        assert_eq!(value["hash"].as_str().unwrap().len(), 64);
        assert!(value.get("target").is_none());
    }

    #[test]
    fn serialises_symlinks_with_their_target_and_the_root_by_its_name() {
        let link = fsd::FsPath::parse("/l").unwrap();
        let entry = Entry::new(
            &link,
            &attr(fsd::FileType::Symlink, None),
            Some(b"/t".to_vec()),
        );
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["target"], "/t");
        assert!(value.get("hash").is_none());
        let root = Entry::new(
            &fsd::FsPath::root(),
            &attr(fsd::FileType::Directory, None),
            None,
        );
        assert_eq!((root.name.as_str(), root.path.as_str()), ("/", "/"));
    }
}
