//! [`FileReader`]: streams a file's bytes chunk by chunk.

/// Reads one version of a file; implements [`std::io::Read`].
pub struct FileReader {}
