//! Base64 `content` of `PUT /v1/compute/fs`, decoded inside the request's own buffer so a
//! 100 MiB upload costs one buffer of its base64, not that plus a decoded copy.
//!
//! Standard alphabet; padding optional; ASCII whitespace (line breaks from `base64`
//! tools) ignored.

use std::ops::Range;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::error::ApiError;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 characters decoded per step; a multiple of 4.
const STEP: usize = 64 * 1024;

fn invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_base64",
        format!("`content` is not valid base64: {message}"),
    )
}

fn describe(error: base64::DecodeSliceError, base: usize) -> ApiError {
    use base64::DecodeError as E;
    match error {
        base64::DecodeSliceError::DecodeError(
            E::InvalidByte(at, byte) | E::InvalidLastSymbol(at, byte),
        ) => invalid(format!(
            "unexpected {:?} at character {}",
            char::from(byte),
            base + at
        )),
        base64::DecodeSliceError::DecodeError(E::InvalidLength(_)) => {
            invalid("its length is not a valid base64 length".into())
        }
        base64::DecodeSliceError::DecodeError(E::InvalidPadding) => {
            invalid("misplaced padding".into())
        }
        base64::DecodeSliceError::OutputSliceTooSmall => {
            invalid("it does not decode in place".into())
        }
    }
}

/// Decodes the base64 text at `text` inside `buf` into the front of `buf` and returns the
/// buffer holding exactly the decoded bytes. Refuses more than `max` decoded bytes.
///
/// Decoded bytes never overtake the text still to be read (every 4 characters become at
/// most 3 bytes), so each step decodes into a small scratch buffer and copies it down.
pub fn decode_in_place(
    mut buf: Vec<u8>,
    text: Range<usize>,
    max: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut chars = vec![0u8; STEP];
    let mut decoded = vec![0u8; STEP / 4 * 3 + 3];
    let (mut read, mut written, mut seen) = (text.start, 0usize, 0usize);
    let mut padded = false;
    loop {
        // Gather the next STEP characters, skipping whitespace.
        let mut n = 0;
        while read < text.end && n < STEP {
            let byte = buf[read];
            read += 1;
            if !byte.is_ascii_whitespace() {
                chars[n] = byte;
                n += 1;
            }
        }
        if n == 0 {
            break;
        }
        if padded {
            return Err(invalid("characters after the padding".into()));
        }
        padded = chars[n - 1] == b'=';
        let out = ENGINE
            .decode_slice(&chars[..n], &mut decoded)
            .map_err(|e| describe(e, seen))?;
        seen += n;
        if (written + out) as u64 > max {
            return Err(ApiError::too_large(max));
        }
        buf[written..written + out].copy_from_slice(&decoded[..out]);
        written += out;
    }
    buf.truncate(written);
    Ok(buf)
}

/// Decodes base64 held apart from the request buffer (a JSON string with escapes), reusing
/// its allocation.
pub fn decode(text: impl Into<Vec<u8>>, max: u64) -> Result<Vec<u8>, ApiError> {
    let buf = text.into();
    let len = buf.len();
    decode_in_place(buf, 0..len, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_place(json_like: &str, max: u64) -> Result<Vec<u8>, ApiError> {
        // The text is the last JSON string.
        let end = json_like.rfind('"').unwrap();
        let start = json_like[..end].rfind('"').unwrap() + 1;
        decode_in_place(json_like.as_bytes().to_vec(), start..end, max)
    }

    #[test]
    fn decodes_leniently_but_refuses_garbage() {
        assert_eq!(decode("aGVsbG8=", 100).unwrap(), b"hello");
        assert_eq!(decode("aGVsbG8", 100).unwrap(), b"hello");
        assert_eq!(decode("aGVs\nbG8=\n", 100).unwrap(), b"hello");
        assert_eq!(decode("", 100).unwrap(), b"");
        assert_eq!(
            decode("not base64!", 100).unwrap_err().code,
            "invalid_base64"
        );
        assert_eq!(
            decode("aGVsbG8=aGVs", 100).unwrap_err().code,
            "invalid_base64"
        );
        assert_eq!(decode("a", 100).unwrap_err().code, "invalid_base64");
        assert_eq!(decode("aGVsbG8=", 4).unwrap_err().code, "too_large");
        assert_eq!(decode("aGVsbG8=", 5).unwrap(), b"hello");
    }

    #[test]
    fn decodes_inside_a_larger_buffer() {
        assert_eq!(
            in_place(r#"{"content": "aGVsbG8gd29ybGQ="}"#, 100).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn large_inputs_round_trip_across_steps() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let text = ENGINE.encode(&data);
        assert_eq!(
            in_place(&format!("{{\"content\":\"{text}\"}}"), 2_000_000).unwrap(),
            data
        );
        // Wrapped at 76 columns, as `base64` prints it.
        let wrapped: Vec<String> = text
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert_eq!(decode(wrapped.join("\n"), 2_000_000).unwrap(), data);
        assert_eq!(
            decode(text.as_str(), 999_999).unwrap_err().code,
            "too_large"
        );
    }

    #[test]
    fn padding_at_a_step_boundary_ends_the_content() {
        let first = format!("{}QQ==", "A".repeat(STEP - 4));
        assert_eq!(
            decode(first.as_str(), 1 << 20).unwrap().len(),
            STEP / 4 * 3 - 2
        );
        let error = decode(format!("{first}QUJD"), 1 << 20).unwrap_err();
        assert_eq!(error.code, "invalid_base64");
    }

    #[test]
    fn errors_name_the_offending_character() {
        let error = decode(format!("{}!", "A".repeat(STEP + 3)), 1 << 20).unwrap_err();
        assert!(
            error
                .message
                .contains(&format!("'!' at character {}", STEP + 3)),
            "{}",
            error.message
        );
    }
}
