//! Reading the rest of a request body the handler did not want, after answering.
//!
//! A request refused early (no key, upload over the limit, a path that cannot be written)
//! leaves part of its body unread. Closing the connection then would reset it under a
//! client still sending, and many clients only read the answer once they have sent
//! everything: they would see a broken pipe instead of the error. So the answer is sent at
//! once and the rest of the body is read and discarded in the background, up to a byte and
//! time budget, after which the connection is closed after all.
//!
//! A client that asked `Expect: 100-continue` and whose body was never read has sent
//! nothing yet; it gets the answer and no invitation to send.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

use super::state::AppState;

/// How long a refused body may keep being read.
const DRAIN_TIME: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    stream: Option<BodyDataStream>,
    polled: bool,
    finished: bool,
}

/// The request body as the handler sees it: the same frames, read through a handle that
/// the middleware keeps.
struct SharedBody(Arc<Mutex<Shared>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        shared.polled = true;
        let Some(stream) = shared.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let item = ready!(stream.poll_next_unpin(cx));
        if item.is_none() {
            shared.finished = true;
        }
        Poll::Ready(item)
    }
}

/// The least remainder read after an answer, however small the upload limit: reading a few
/// MiB costs nothing, and a client sending a modest body over a tiny limit still gets the
/// answer rather than a reset.
const DRAIN_AT_LEAST: u64 = 8 * 1024 * 1024;

/// The largest remainder read after an answer: twice the largest upload body, and at least
/// [`DRAIN_AT_LEAST`].
pub fn drain_budget(max_file_bytes: u64) -> u64 {
    (super::fs_routes::base64_body_limit(max_file_bytes) as u64)
        .saturating_mul(2)
        .max(DRAIN_AT_LEAST)
}

/// Middleware: answers as the handler does, then reads whatever of the body is left.
pub async fn drain_unread_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Mutex::new(Shared {
        stream: Some(body.into_data_stream()),
        ..Shared::default()
    }));
    let request = Request::from_parts(parts, Body::from_stream(SharedBody(shared.clone())));
    let response = next.run(request).await;

    let rest = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = shared.finished || (expects_continue && !shared.polled);
        let rest = shared.stream.take();
        rest.filter(|_| !skip)
    };
    if let Some(rest) = rest {
        let budget = drain_budget(state.limits.max_file_bytes);
        tokio::spawn(async move {
            let drained = tokio::time::timeout(DRAIN_TIME, discard(rest, budget)).await;
            tracing::debug!(bytes = ?drained.ok(), "read the rest of a refused request body");
        });
    }
    response
}

/// Reads and drops frames until the end, an error or `budget` bytes; returns the count.
async fn discard(mut stream: BodyDataStream, budget: u64) -> u64 {
    let mut total = 0u64;
    while let Some(Ok(bytes)) = stream.next().await {
        total += bytes.len() as u64;
        if total > budget {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handler_sees_the_same_frames_and_the_end_is_recorded() {
        let shared = Arc::new(Mutex::new(Shared {
            stream: Some(Body::from("some bytes").into_data_stream()),
            ..Shared::default()
        }));
        let body = Body::from_stream(SharedBody(shared.clone()));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(&bytes[..], b"some bytes");
        let shared = shared.lock().unwrap();
        assert!(shared.polled && shared.finished);
    }

    #[tokio::test]
    async fn discarding_stops_at_the_budget() {
        let body = Body::from(vec![0u8; 1000]);
        assert_eq!(discard(body.into_data_stream(), 10_000).await, 1000);
        assert!(drain_budget(100) > 2 * 100);
        assert_eq!(drain_budget(100), DRAIN_AT_LEAST);
        assert!(drain_budget(100 << 20) > 2 * (100 << 20));
    }
}
