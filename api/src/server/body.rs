//! Streaming request and response bodies between async HTTP and the blocking store.
//!
//! Uploads: [`pump`] forwards the request body's frames through a bounded channel to a
//! [`ChannelReader`], the `std::io::Read` the store's `write_file` consumes on a blocking
//! thread, so only a few frames are ever in memory. The reader reports end of data only
//! when the whole body arrived; a client that goes away mid-body makes it fail, and a failed
//! read makes the store change nothing.
//!
//! Whole bodies: [`collect`] reads a body into one buffer, sized from `Content-Length`,
//! refusing it as soon as it passes its limit.
//!
//! Downloads: [`file_body`] reads a file 256 KiB at a time, each read a short blocking
//! task, one chunk ahead of the connection.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::error::ApiError;

/// Frames buffered between the connection and the store while uploading.
const UPLOAD_FRAMES: usize = 16;
/// Bytes read from the store per response frame.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// One message from the connection to the store.
#[derive(Debug)]
pub enum Frame {
    Data(Bytes),
    /// The body is complete.
    End,
}

/// Why an upload's body was not read to its end; shared between the reader and the
/// handler so the handler can tell a broken upload from a store failure.
pub type BodyFailure = Arc<OnceLock<String>>;

/// The blocking side of an upload: reads frames until [`Frame::End`].
pub struct ChannelReader {
    rx: mpsc::Receiver<Frame>,
    current: Bytes,
    done: bool,
    failure: BodyFailure,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Frame>, failure: BodyFailure) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
            done: false,
            failure,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Frame::Data(bytes)) => self.current = bytes,
                Some(Frame::End) => self.done = true,
                None => {
                    let why = self
                        .failure
                        .get_or_init(|| "the request body ended before it was complete".into());
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why.clone()));
                }
            }
        }
    }
}

/// Forwards `body` into `tx` until the body ends, fails, or the reader stops listening.
/// A failed body is recorded in `failure` and closes the channel without [`Frame::End`].
pub async fn pump(body: Body, tx: mpsc::Sender<Frame>, failure: BodyFailure) {
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                if tx.send(Frame::Data(bytes)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = failure.set(format!("the request body could not be read: {error}"));
                return;
            }
        }
    }
    let _ = tx.send(Frame::End).await;
}

/// A channel pair sized for one upload.
pub fn upload_channel() -> (mpsc::Sender<Frame>, mpsc::Receiver<Frame>) {
    mpsc::channel(UPLOAD_FRAMES)
}

/// The request's `Content-Length`, if it gives a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads `body` into one buffer of at most `limit` bytes; `declared` is its
/// `Content-Length`, if given. Over the limit, answers `too_large()`.
pub async fn collect(
    body: Body,
    limit: usize,
    declared: Option<u64>,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let declared = declared.map(|d| usize::try_from(d).unwrap_or(usize::MAX));
    if declared.is_some_and(|declared| declared > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let bytes = frame.map_err(|error| {
            ApiError::invalid_request(format!("the request body could not be read: {error}"))
        })?;
        if buf.len() + bytes.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&bytes);
    }
    Ok(buf)
}

/// Where a download is: the reader, where to seek before the first read, bytes to go.
struct Progress<R> {
    reader: R,
    start: Option<u64>,
    remaining: u64,
}

type NextChunk<R> = tokio::task::JoinHandle<io::Result<(Bytes, Progress<R>)>>;

/// Reads the next chunk of a download on a short blocking task.
fn read_next<R: Read + Seek + Send + 'static>(mut progress: Progress<R>) -> NextChunk<R> {
    tokio::task::spawn_blocking(move || {
        if let Some(start) = progress.start.take() {
            progress.reader.seek(SeekFrom::Start(start))?;
        }
        let want = progress.remaining.min(DOWNLOAD_CHUNK as u64) as usize;
        let chunk = read_up_to(&mut progress.reader, want)?;
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before its recorded length",
            ));
        }
        progress.remaining -= chunk.len() as u64;
        Ok((Bytes::from(chunk), progress))
    })
}

/// A response body of `len` bytes of `reader` from `start`. Each 256 KiB is read by its
/// own short blocking task, one chunk ahead of the connection, so a slow client holds no
/// thread, and reading stops as soon as the client goes away.
pub fn file_body<R>(reader: R, start: u64, len: u64) -> Body
where
    R: Read + Seek + Send + 'static,
{
    if len == 0 {
        return Body::empty();
    }
    let first = read_next(Progress {
        reader,
        start: Some(start),
        remaining: len,
    });
    let stream = futures_util::stream::unfold(Some(first), |next| async move {
        let step = next?
            .await
            .unwrap_or_else(|error| Err(io::Error::other(error)));
        match step {
            Ok((chunk, progress)) => {
                let next = (progress.remaining > 0).then(|| read_next(progress));
                Some((Ok(chunk), next))
            }
            Err(error) => {
                tracing::error!(%error, "reading a file for download failed");
                Some((Err(error), None))
            }
        }
    });
    Body::from_stream(stream)
}

/// Reads until `want` bytes or the end of the data.
fn read_up_to(reader: &mut impl Read, want: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_for(frames: Vec<Frame>, close: bool) -> (ChannelReader, BodyFailure) {
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        for frame in frames {
            tx.try_send(frame).unwrap();
        }
        if !close {
            std::mem::forget(tx);
        }
        let failure = BodyFailure::default();
        (ChannelReader::new(rx, failure.clone()), failure)
    }

    #[test]
    fn reads_frames_until_the_end_marker() {
        let frames = vec![
            Frame::Data("hello ".into()),
            Frame::Data("world".into()),
            Frame::End,
        ];
        let (mut reader, failure) = reader_for(frames, true);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        assert!(failure.get().is_none());
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let (mut reader, failure) = reader_for(vec![Frame::Data("partial".into())], true);
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(failure.get().is_some());
    }

    #[tokio::test]
    async fn streams_a_slice_of_a_file() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let body = file_body(io::Cursor::new(data.clone()), 10, 600_000);
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(&bytes[..], &data[10..600_010]);
    }

    #[tokio::test]
    async fn a_short_file_fails_the_stream() {
        let body = file_body(io::Cursor::new(vec![1u8; 10]), 0, 20);
        assert!(axum::body::to_bytes(body, usize::MAX).await.is_err());
    }

    #[tokio::test]
    async fn collects_bodies_up_to_their_limit() {
        let too_large = || ApiError::too_large(4);
        assert_eq!(
            collect(Body::from("abcd"), 4, Some(4), too_large)
                .await
                .unwrap(),
            b"abcd"
        );
        assert_eq!(
            collect(Body::from("abcde"), 4, None, too_large)
                .await
                .unwrap_err()
                .code,
            "too_large"
        );
        assert_eq!(
            collect(Body::from("a"), 4, Some(5), too_large)
                .await
                .unwrap_err()
                .code,
            "too_large"
        );
    }

    #[tokio::test]
    async fn pumps_a_body_through_the_channel() {
        let (tx, rx) = upload_channel();
        let failure = BodyFailure::default();
        let reader_failure = failure.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            ChannelReader::new(rx, reader_failure)
                .read_to_end(&mut out)
                .map(|_| out)
        });
        pump(Body::from("some bytes"), tx, failure).await;
        assert_eq!(read.await.unwrap().unwrap(), b"some bytes");
    }
}
