//! Conditional and partial downloads: the `Range` header (one byte range) and entity tags
//! for `If-None-Match`. Pure functions of the header values and the file's length.

/// Bytes `start..=end` of a file; never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive, as in `Content-Range`.
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// The `Content-Range` value for this range of a file of `total` bytes.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// The header is malformed or asks for something not supported (400).
    Invalid(String),
    /// The range lies past the end of the file (416).
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes. An end past
/// the file is clamped to its last byte; a suffix longer than the file is the whole file.
pub fn parse_range(value: &str, len: u64) -> Result<ByteRange, RangeError> {
    let invalid = |why: &str| RangeError::Invalid(format!("invalid Range header {value:?}: {why}"));
    let (unit, spec) = value
        .trim()
        .split_once('=')
        .ok_or_else(|| invalid("expected `bytes=...`"))?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Err(invalid("only `bytes` ranges are supported"));
    }
    if spec.contains(',') {
        return Err(invalid("only a single range is supported"));
    }
    let (first, last) = spec
        .trim()
        .split_once('-')
        .ok_or_else(|| invalid("expected `a-b`, `a-` or `-n`"))?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix = number(last).ok_or_else(|| invalid("expected a byte count after `-`"))?;
        if suffix == 0 || len == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        return Ok(ByteRange {
            start: len.saturating_sub(suffix),
            end: len - 1,
        });
    }
    let start = number(first).ok_or_else(|| invalid("the first byte is not a number"))?;
    let end = if last.is_empty() {
        None
    } else {
        let end = number(last).ok_or_else(|| invalid("the last byte is not a number"))?;
        if end < start {
            return Err(invalid("the last byte is before the first"));
        }
        Some(end)
    };
    if start >= len {
        return Err(RangeError::Unsatisfiable);
    }
    let end = end.map_or(len - 1, |end| end.min(len - 1));
    Ok(ByteRange { start, end })
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The entity tag of a file's content: its hash, quoted.
pub fn etag(hash: &fsd::Hash) -> String {
    format!("\"{}\"", hash.to_hex())
}

/// True if an `If-None-Match` value matches `etag` (weak comparison, as the header asks).
pub fn if_none_match(value: &str, etag: &str) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> Result<ByteRange, RangeError> {
        Ok(ByteRange { start, end })
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse_range("bytes=0-9", 100), range(0, 9));
        assert_eq!(parse_range("bytes=10-", 100), range(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), range(90, 99));
        assert_eq!(parse_range(" Bytes = 5 - 5 ", 100), range(5, 5));
        assert_eq!(parse_range("bytes=0-0", 1), range(0, 0));
    }

    #[test]
    fn clamps_to_the_file() {
        assert_eq!(parse_range("bytes=90-1000", 100), range(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), range(0, 99));
        assert_eq!(parse_range("bytes=0-", 1), range(0, 0));
    }

    #[test]
    fn refuses_ranges_past_the_end() {
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=100-200", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=-5", 0), Err(RangeError::Unsatisfiable));
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=0-1,3-4",
            "bytes=+1-2",
            "bytes=1",
            "bytes=--1",
            "bytes=99999999999999999999-",
        ] {
            assert!(
                matches!(parse_range(bad, 100), Err(RangeError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn formats_content_range() {
        assert_eq!(
            ByteRange { start: 0, end: 9 }.content_range(100),
            "bytes 0-9/100"
        );
        assert_eq!(ByteRange { start: 0, end: 9 }.len(), 10);
    }

    #[test]
    fn matches_entity_tags() {
        let tag = etag(&fsd::Hash([0xab; 32]));
        assert_eq!(tag.len(), 66);
        assert!(tag.starts_with("\"abab"));
        assert!(if_none_match(&tag, &tag));
        assert!(if_none_match("*", &tag));
        assert!(if_none_match(&format!("\"other\", W/{tag}"), &tag));
        assert!(!if_none_match("\"other\"", &tag));
        assert!(!if_none_match("", &tag));
    }
}
