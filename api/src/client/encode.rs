//! Percent-encoding for the parts of a request URL the client fills in: query values
//! (paths, snapshot ids) and single path segments (a snapshot id or name in a route).

/// Characters that never need escaping anywhere in a URL (RFC 3986 "unreserved").
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn encode(value: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        if is_unreserved(byte) || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// Encodes a query parameter value. `/` is kept as is (it is legal in a query and keeps
/// paths readable); everything else outside the unreserved set is escaped, byte by byte
/// of its UTF-8 form, so spaces, `#`, `&`, `+`, `=` and non-ASCII text arrive intact.
pub fn query_value(value: &str) -> String {
    encode(value, true)
}

/// Encodes one path segment: like [`query_value`] but `/` is escaped too.
pub fn path_segment(value: &str) -> String {
    encode(value, false)
}

/// `base` + `route` + a query string built from the pairs whose value is present.
pub fn url(base: &str, route: &str, query: &[(&str, Option<&str>)]) -> String {
    let mut out = format!("{base}{route}");
    let mut separator = '?';
    for (name, value) in query {
        if let Some(value) = value {
            out.push(separator);
            out.push_str(&query_value(name));
            out.push('=');
            out.push_str(&query_value(value));
            separator = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_and_slashes_pass_through() {
        assert_eq!(
            query_value("/reports/Q3_v1.2~final-x"),
            "/reports/Q3_v1.2~final-x"
        );
    }

    #[test]
    fn reserved_and_special_characters_are_escaped() {
        assert_eq!(query_value("/a b"), "/a%20b");
        assert_eq!(query_value("/a#b&c=d+e?f"), "/a%23b%26c%3Dd%2Be%3Ff");
        assert_eq!(query_value("/100%"), "/100%25");
        assert_eq!(query_value("/tab\there\n"), "/tab%09here%0A");
        assert_eq!(query_value(""), "");
    }

    #[test]
    fn unicode_is_escaped_as_utf8_bytes() {
        assert_eq!(query_value("/é"), "/%C3%A9");
        assert_eq!(query_value("/日本"), "/%E6%97%A5%E6%9C%AC");
        assert_eq!(query_value("🦀"), "%F0%9F%A6%80");
    }

    #[test]
    fn path_segments_escape_slashes() {
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("before-upgrade"), "before-upgrade");
    }

    #[test]
    fn urls_skip_absent_parameters() {
        assert_eq!(url("http://h:1", "/v1/x", &[]), "http://h:1/v1/x");
        assert_eq!(
            url(
                "http://h:1",
                "/v1/x",
                &[("path", Some("/a b")), ("snapshot", None)]
            ),
            "http://h:1/v1/x?path=/a%20b"
        );
        assert_eq!(
            url(
                "http://h:1",
                "/v1/x",
                &[("path", Some("/a&b")), ("recursive", Some("true"))]
            ),
            "http://h:1/v1/x?path=/a%26b&recursive=true"
        );
    }
}
