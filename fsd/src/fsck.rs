//! The consistency check behind `agentbox fsck`.

/// What fsck found. `problems` is empty for a healthy store.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub contents_checked: u64,
    pub inodes_checked: u64,
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}
