//! The store's one error type, and its mapping to errno for the FUSE adapter.

use std::io;

/// Result alias used across the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the store can fail with. Messages name the path or object involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("no such attribute: {0}")]
    NoSuchAttribute(String),
    #[error("no such snapshot: {0}")]
    NoSuchSnapshot(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not a directory: {0}")]
    NotADirectory(String),
    #[error("is a directory: {0}")]
    IsADirectory(String),
    #[error("directory not empty: {0}")]
    DirectoryNotEmpty(String),
    #[error("name too long: {0}")]
    NameTooLong(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("{0} is reserved for the sandbox's system directories")]
    Reserved(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("file too large: the limit is {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error("data directory is in use: {0}")]
    Locked(String),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("index error")]
    Index(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The errno a POSIX caller should see for this error.
    pub fn to_errno(&self) -> i32 {
        match self {
            Error::NotFound(_) | Error::NoSuchSnapshot(_) => libc::ENOENT,
            Error::NoSuchAttribute(_) => libc::ENODATA,
            Error::AlreadyExists(_) => libc::EEXIST,
            Error::NotADirectory(_) => libc::ENOTDIR,
            Error::IsADirectory(_) => libc::EISDIR,
            Error::DirectoryNotEmpty(_) => libc::ENOTEMPTY,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::InvalidPath(_) => libc::EINVAL,
            Error::Reserved(_) => libc::EACCES,
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::TooLarge { .. } => libc::EFBIG,
            Error::QuotaExceeded(_) => libc::EDQUOT,
            Error::ReadOnly(_) => libc::EROFS,
            Error::Locked(_) => libc::EBUSY,
            Error::Corrupt(_) => libc::EIO,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Index(_) => libc::EIO,
        }
    }
}
