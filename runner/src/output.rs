//! Reading a run's standard output and error: each stream read to its end concurrently
//! with the other (a full pipe never stalls the run), kept up to a cap with a flag saying
//! whether more was discarded, and optionally forwarded as text chunks while it happens.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A piece of output as it happened, always whole UTF-8 characters (invalid bytes are
/// replaced with U+FFFD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    pub text: String,
}

/// One stream, read whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes of the stream, at most the cap.
    pub bytes: Vec<u8>,
    /// Whether the stream went on past the cap.
    pub truncated: bool,
}

/// Reads `reader` to its end, keeping at most `cap` bytes and forwarding what it keeps to
/// `events` (if any, and while anyone listens).
pub async fn capture<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    cap: usize,
    events: Option<mpsc::Sender<OutputChunk>>,
) -> std::io::Result<Captured> {
    let mut captured = Captured::default();
    let mut events = events;
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let room = cap - captured.bytes.len();
        let kept = n.min(room);
        if kept < n {
            captured.truncated = true;
        }
        if kept == 0 {
            continue;
        }
        let piece = &buffer[..kept];
        captured.bytes.extend_from_slice(piece);
        if let Some(sender) = &events {
            pending.extend_from_slice(piece);
            let text = take_whole_characters(&mut pending);
            if !text.is_empty() && sender.send(OutputChunk { stream, text }).await.is_err() {
                // Nobody listens any more; keep reading so the run is never blocked.
                events = None;
            }
        }
    }
    if let Some(sender) = &events
        && !pending.is_empty()
    {
        let text = String::from_utf8_lossy(&pending).into_owned();
        let _ = sender.send(OutputChunk { stream, text }).await;
    }
    Ok(captured)
}

/// Removes and returns the longest prefix of `pending` that does not end inside a UTF-8
/// character, as text; an incomplete character at the end stays for the next read.
fn take_whole_characters(pending: &mut Vec<u8>) -> String {
    let keep_from = match std::str::from_utf8(pending) {
        Ok(_) => pending.len(),
        Err(error) => {
            // Invalid bytes in the middle are replaced; only an unfinished tail waits.
            let tail = pending.len() - error.valid_up_to();
            if error.error_len().is_none() && tail < 4 {
                error.valid_up_to()
            } else {
                last_boundary(pending)
            }
        }
    };
    let rest = pending.split_off(keep_from);
    let text = String::from_utf8_lossy(pending).into_owned();
    *pending = rest;
    text
}

/// The start of a possibly unfinished character at the end of `bytes` (at most three
/// bytes back), or the end.
fn last_boundary(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=3.min(n) {
        let b = bytes[n - back];
        if b & 0xc0 != 0x80 {
            // A lead byte: is the character it starts complete?
            let width = match b {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            return if back < width { n - back } else { n };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_up_to_the_cap_and_flags_the_rest() {
        let data = vec![b'x'; 10_000];
        let captured = capture(&data[..], Stream::Stdout, 4096, None)
            .await
            .unwrap();
        assert_eq!(captured.bytes.len(), 4096);
        assert!(captured.truncated);
        let captured = capture(&data[..], Stream::Stdout, 10_000, None)
            .await
            .unwrap();
        assert_eq!(captured.bytes.len(), 10_000);
        assert!(!captured.truncated);
    }

    #[tokio::test]
    async fn a_silent_listener_does_not_stop_the_reading() {
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        let data = vec![b'y'; 200_000];
        let captured = capture(&data[..], Stream::Stderr, 1 << 20, Some(sender))
            .await
            .unwrap();
        assert_eq!(captured.bytes.len(), 200_000);
    }

    #[tokio::test]
    async fn chunks_never_split_a_character() {
        // A reader that returns one byte at a time.
        let (mut writer, reader) = tokio::io::duplex(1);
        let text = "héllo → wörld 🎉";
        let producer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(text.as_bytes()).await.unwrap();
        });
        let (sender, mut receiver) = mpsc::channel(1024);
        let captured = capture(reader, Stream::Stdout, 1 << 20, Some(sender))
            .await
            .unwrap();
        producer.await.unwrap();
        let mut joined = String::new();
        while let Some(chunk) = receiver.recv().await {
            assert!(!chunk.text.contains('\u{fffd}'), "{:?}", chunk.text);
            joined.push_str(&chunk.text);
        }
        assert_eq!(joined, text);
        assert_eq!(captured.bytes, text.as_bytes());
    }

    #[test]
    fn invalid_bytes_are_replaced_not_held() {
        let mut pending = b"ab\xffcd".to_vec();
        assert_eq!(take_whole_characters(&mut pending), "ab\u{fffd}cd");
        assert!(pending.is_empty());
        let mut pending = b"ab\xe2\x86".to_vec();
        assert_eq!(take_whole_characters(&mut pending), "ab");
        assert_eq!(pending, b"\xe2\x86");
    }
}
