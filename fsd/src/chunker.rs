//! Splitting file content into blobs.

pub const CHUNK_MIN: usize = 16 * 1024;
pub const CHUNK_AVG: usize = 64 * 1024;
pub const CHUNK_MAX: usize = 256 * 1024;
pub const WHOLE_FILE_MAX: usize = CHUNK_MAX;
pub const INLINE_MAX: usize = 16 * 1024;
