//! The intent log: an append-only file beside the index holding the changes of the open
//! batch (see [`crate::index`]), one record each, written before the change is
//! acknowledged. The kernel keeps a written record when the process is killed, so a batch
//! that never committed is applied again from here when the store next opens.
//!
//! A record is `len: u32 LE`, `seq: u64 LE`, `len` bytes of payload (what the store
//! made of the change; the index does not look inside), and the first 8 bytes of the
//! blake3 of `seq` and payload. Reading stops at the first record that is cut short or does
//! not match its checksum: nothing after it was acknowledged as part of a committed order.
//! Records up to `intent_log.applied` in the index are already in it; the log is emptied
//! after each batch commits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Bytes of a record around its payload.
const FRAME: usize = 4 + 8 + 8;

/// Largest payload a record may have (a content change of a file of a few GiB).
const PAYLOAD_MAX: usize = 64 * 1024 * 1024;

/// A record: its sequence number and payload.
pub(crate) type Record = (u64, Vec<u8>);

/// The open intent log of one index.
pub(crate) struct IntentLog {
    file: File,
    path: PathBuf,
    /// Sequence number of the last record written or known.
    last_seq: u64,
    /// Bytes in the file.
    len: u64,
    /// A failed append could not be undone: the file may end in a damaged record, after
    /// which nothing could be read back, so nothing more is appended.
    broken: bool,
}

impl IntentLog {
    /// Opens (creating) the log at `path`, returning it with the records after `applied`,
    /// in order.
    pub fn open(path: &Path, applied: u64) -> Result<(IntentLog, Vec<Record>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        let records = parse(&bytes);
        let last_seq = records
            .last()
            .map_or(applied, |(seq, _)| (*seq).max(applied));
        let pending = records
            .into_iter()
            .filter(|(seq, _)| *seq > applied)
            .collect();
        let log = IntentLog {
            file,
            path: path.to_owned(),
            last_seq,
            len: bytes.len() as u64,
            broken: false,
        };
        Ok((log, pending))
    }

    /// Whether records can be appended (see [`IntentLog::append`]).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Appends one record and returns its sequence number. One `write`: once it returns,
    /// the record outlives the process. A failed write (a full disk) is cut off again; if
    /// even that fails, the log takes no more records.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if self.broken {
            return Err(Error::Corrupt(format!(
                "{} could not be repaired after a failed write",
                self.path.display()
            )));
        }
        if payload.len() > PAYLOAD_MAX {
            return Err(Error::InvalidArgument(format!(
                "a change of {} bytes is too large for the intent log",
                payload.len()
            )));
        }
        let seq = self.last_seq + 1;
        let mut record = Vec::with_capacity(FRAME + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(payload);
        record.extend_from_slice(&checksum(seq, payload));
        if let Err(error) = self.file.write_all(&record) {
            self.broken = self.file.set_len(self.len).is_err();
            return Err(Error::Io {
                context: format!("writing {}", self.path.display()),
                source: error,
            });
        }
        self.len += record.len() as u64;
        self.last_seq = seq;
        Ok(seq)
    }

    /// Sequence number of the last record appended (or known applied).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Empties the log once its records are committed to the index.
    pub fn clear(&mut self) -> Result<()> {
        if self.len > 0 {
            self.file
                .set_len(0)
                .map_err(Error::io(format!("emptying {}", self.path.display())))?;
            self.len = 0;
        }
        Ok(())
    }
}

fn checksum(seq: u64, payload: &[u8]) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    out
}

/// The whole records at the start of `bytes`, in order, up to the first damaged one.
fn parse(mut bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    while bytes.len() >= FRAME {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default()) as usize;
        if len > PAYLOAD_MAX || bytes.len() < FRAME + len {
            break;
        }
        let seq = u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default());
        let payload = &bytes[12..12 + len];
        if bytes[12 + len..FRAME + len] != checksum(seq, payload) {
            break;
        }
        records.push((seq, payload.to_vec()));
        bytes = &bytes[FRAME + len..];
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_after_the_applied_one_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, pending) = IntentLog::open(&path, 0).unwrap();
        assert!(pending.is_empty());
        assert_eq!(log.append(b"one").unwrap(), 1);
        assert_eq!(log.append(b"").unwrap(), 2);
        assert_eq!(log.append(b"three").unwrap(), 3);
        drop(log);
        let (log, pending) = IntentLog::open(&path, 1).unwrap();
        assert_eq!(pending, vec![(2, b"".to_vec()), (3, b"three".to_vec())]);
        assert_eq!(log.last_seq(), 3);
    }

    #[test]
    fn reading_stops_at_a_torn_or_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, _) = IntentLog::open(&path, 0).unwrap();
        log.append(b"kept").unwrap();
        log.append(b"damaged").unwrap();
        log.append(b"after").unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let second = FRAME + 4 + 12;
        bytes[second] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, pending) = IntentLog::open(&path, 0).unwrap();
        assert_eq!(pending, vec![(1, b"kept".to_vec())]);

        bytes.truncate(FRAME + 4 + FRAME);
        std::fs::write(&path, &bytes).unwrap();
        let (log, pending) = IntentLog::open(&path, 0).unwrap();
        assert_eq!(pending, vec![(1, b"kept".to_vec())]);
        assert_eq!(log.last_seq(), 1);
    }

    #[test]
    fn a_cleared_log_numbers_on_from_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, _) = IntentLog::open(&path, 5).unwrap();
        assert_eq!(log.append(b"a").unwrap(), 6);
        log.clear().unwrap();
        assert_eq!(log.append(b"b").unwrap(), 7);
        drop(log);
        let (_, pending) = IntentLog::open(&path, 6).unwrap();
        assert_eq!(pending, vec![(7, b"b".to_vec())]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, FRAME + 1);
    }
}
