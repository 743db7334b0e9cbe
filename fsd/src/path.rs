//! Validated absolute paths inside an agent's tree.
//!
//! A path is `/` or `/seg/seg/...`. Segments are any bytes but `/` and NUL, at most
//! [`MAX_NAME_LEN`] bytes; empty segments, `.` and `..` are rejected rather than resolved,
//! so a path always names exactly what it spells.

use std::fmt;

use crate::{Error, Result};

/// Top-level names a sandbox lays the host's system trees (or fresh ones) over. Nothing
/// can be created under them in an agent's tree.
pub const RESERVED_NAMES: &[&str] = &[
    "usr", "bin", "lib", "lib64", "sbin", "etc", "proc", "dev", "sys", "tmp", "run",
];

/// The longest name a directory entry may have, in bytes.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FsPath {
    segments: Vec<Vec<u8>>,
}

impl FsPath {
    pub fn root() -> FsPath {
        FsPath {
            segments: Vec::new(),
        }
    }

    /// Parses an absolute path. A single trailing `/` is accepted (`/a/` is `/a`).
    pub fn parse(path: &str) -> Result<FsPath> {
        Self::parse_bytes(path.as_bytes())
    }

    pub fn parse_bytes(path: &[u8]) -> Result<FsPath> {
        let shown = String::from_utf8_lossy(path);
        if path.first() != Some(&b'/') {
            return Err(Error::InvalidPath(format!("{shown:?} is not absolute")));
        }
        if path.contains(&0) {
            return Err(Error::InvalidPath(format!("{shown:?} contains a NUL byte")));
        }
        let mut body = &path[1..];
        if body.is_empty() {
            return Ok(FsPath::root());
        }
        if body.last() == Some(&b'/') {
            body = &body[..body.len() - 1];
        }
        let mut segments = Vec::new();
        for segment in body.split(|b| *b == b'/') {
            validate_name(segment)
                .map_err(|reason| Error::InvalidPath(format!("{shown:?}: {reason}")))?;
            segments.push(segment.to_vec());
        }
        Ok(FsPath { segments })
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[Vec<u8>] {
        &self.segments
    }

    /// The parent path and the last segment; `None` for the root.
    pub fn split_last(&self) -> Option<(FsPath, &[u8])> {
        let (last, parent) = self.segments.split_last()?;
        Some((
            FsPath {
                segments: parent.to_vec(),
            },
            last,
        ))
    }

    pub fn join(&self, name: &[u8]) -> FsPath {
        let mut segments = self.segments.clone();
        segments.push(name.to_vec());
        FsPath { segments }
    }

    /// True if the path is or lies beneath one of the [`RESERVED_NAMES`].
    pub fn is_reserved(&self) -> bool {
        self.segments.first().is_some_and(|first| {
            RESERVED_NAMES
                .iter()
                .any(|r| r.as_bytes() == first.as_slice())
        })
    }

    /// Fails with [`Error::Reserved`] for a reserved path.
    pub fn check_writable(&self) -> Result<()> {
        if self.is_reserved() {
            return Err(Error::Reserved(self.to_string()));
        }
        Ok(())
    }

    /// True if `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &FsPath) -> bool {
        self.segments.starts_with(&other.segments)
    }
}

/// Checks one directory entry name; the error says why it is refused.
pub fn validate_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty path segment");
    }
    if name == b"." || name == b".." {
        return Err("'.' and '..' segments are not allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("a name is longer than 255 bytes");
    }
    if name.contains(&0) || name.contains(&b'/') {
        return Err("a name contains NUL or '/'");
    }
    Ok(())
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{}", String::from_utf8_lossy(segment))?;
        }
        Ok(())
    }
}

impl fmt::Debug for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FsPath({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(FsPath::parse("/").unwrap().to_string(), "/");
        assert_eq!(FsPath::parse("/a/b.txt").unwrap().to_string(), "/a/b.txt");
        assert_eq!(FsPath::parse("/a/").unwrap().to_string(), "/a");
        assert!(FsPath::parse("/").unwrap().is_root());
    }

    #[test]
    fn rejects_what_it_cannot_name_exactly() {
        for bad in ["", "a/b", "/a/../b", "/..", "/a//b", "/./a", "/a\0b", "//"] {
            assert!(FsPath::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("/{}", "x".repeat(256));
        assert!(FsPath::parse(&long).is_err());
        let ok = format!("/{}", "x".repeat(255));
        assert!(FsPath::parse(&ok).is_ok());
    }

    #[test]
    fn reserved_names_are_only_reserved_at_the_top() {
        assert!(FsPath::parse("/etc").unwrap().is_reserved());
        assert!(FsPath::parse("/tmp/x").unwrap().is_reserved());
        assert!(!FsPath::parse("/data/etc").unwrap().is_reserved());
        assert!(!FsPath::parse("/etcetera").unwrap().is_reserved());
        assert!(!FsPath::root().is_reserved());
    }
}
