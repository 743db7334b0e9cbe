//! What the mount knows about one entry of the agent's tree, converted from the server's
//! JSON entry (`GET /v1/compute/fs` rows and `GET /v1/compute/fs/stat`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// The kinds of entry the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
}

/// An entry's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    pub mtime: SystemTime,
    /// The content hash (files only): names the bytes, so anything cached under it is valid.
    pub hash: Option<blake3::Hash>,
    /// The link's target (symlinks only).
    pub target: Option<String>,
}

/// An entry as the server sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    pub modified_at: String,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
}

impl Entry {
    /// The entry's attributes, or why they make no sense.
    pub fn meta(&self) -> Result<Meta, String> {
        let kind = match self.kind.as_str() {
            "file" => Kind::File,
            "directory" => Kind::Directory,
            "symlink" => Kind::Symlink,
            other => return Err(format!("{} has an unknown type {other:?}", self.path)),
        };
        let hash = match (&self.hash, kind) {
            (Some(hex), Kind::File) => Some(
                blake3::Hash::from_hex(hex)
                    .map_err(|_| format!("{} has a malformed hash {hex:?}", self.path))?,
            ),
            (None, Kind::File) if self.size > 0 => {
                return Err(format!("{} is a file without a hash", self.path));
            }
            _ => None,
        };
        Ok(Meta {
            kind,
            size: self.size,
            mode: self.mode & 0o7777,
            // A time that cannot be read should not make the file unreadable.
            mtime: parse_rfc3339(&self.modified_at).unwrap_or(UNIX_EPOCH),
            hash,
            target: self.target.clone(),
        })
    }
}

/// Reads an RFC 3339 timestamp in UTC (`2026-12-04T15:38:02.123456789Z`, fraction optional,
/// `Z` or `+00:00`).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let rest = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = rest.split_once('T')?;
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, fraction),
        None => (time, ""),
    };
    let mut clock = clock.splitn(3, ':');
    let hour: i64 = clock.next()?.parse().ok()?;
    let minute: i64 = clock.next()?.parse().ok()?;
    let second: i64 = clock.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let whole = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        Some(UNIX_EPOCH + whole + Duration::from_nanos(u64::from(nanos)))
    } else {
        Some(UNIX_EPOCH - whole + Duration::from_nanos(u64::from(nanos)))
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos)
    }

    #[test]
    fn parses_the_servers_timestamps() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.000000000Z"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_rfc3339("2026-12-04T15:38:02.123456789Z"),
            Some(at(1_796_398_682, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00+00:00"),
            Some(at(951_782_400, 0))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.5Z"),
            Some(at(951_782_400, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.999999999Z"),
            Some(UNIX_EPOCH - Duration::from_nanos(1))
        );
    }

    #[test]
    fn refuses_what_is_not_a_utc_timestamp() {
        for bad in [
            "",
            "2026-12-04",
            "2026-12-04T15:38:02+01:00",
            "2026-13-04T15:38:02Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T15:38:02.1234567890Z",
            "2026-12-04T15:38:02.x Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    fn entry(kind: &str, hash: Option<&str>) -> Entry {
        Entry {
            name: "x".into(),
            path: "/x".into(),
            kind: kind.into(),
            size: 3,
            mode: 0o100644,
            modified_at: "2026-12-04T15:38:02.123456789Z".into(),
            hash: hash.map(str::to_owned),
            target: None,
        }
    }

    #[test]
    fn entries_become_attributes() {
        let hex = blake3::hash(b"abc").to_hex().to_string();
        let meta = entry("file", Some(&hex)).meta().unwrap();
        assert_eq!(meta.kind, Kind::File);
        assert_eq!(meta.mode, 0o644);
        assert_eq!(meta.hash, Some(blake3::hash(b"abc")));
        assert_eq!(meta.mtime, at(1_796_398_682, 123_456_789));
        assert_eq!(
            entry("directory", None).meta().unwrap().kind,
            Kind::Directory
        );
    }

    #[test]
    fn hashes_must_be_well_formed() {
        // A hash names a file in the cache directory: nothing but 64 hex digits will do.
        assert!(entry("file", Some("../../etc/passwd")).meta().is_err());
        assert!(entry("file", None).meta().is_err());
        assert!(entry("socket", None).meta().is_err());
    }
}
