//! Closing connections that carry no request: hyper's header timeout does
//! not cover a client that never completes a first request (a silent TLS
//! connection, a partial HTTP/2 preface), and HTTP/2 has no idle timeout.
//! Each would hold one of `max_connections` for good.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The requests in flight on one connection, and since when it has had none.
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the connection last went idle, in milliseconds since `opened`.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    /// Counts a request in flight until the guard drops: with its response
    /// body, once that is sent (or abandoned).
    pub(super) fn begin(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has carried no request for `limit`.
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = match self.in_flight.load(Ordering::Acquire) {
                0 => {
                    let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
                    let deadline = self.opened + since + limit;
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left,
                        _ => return,
                    }
                }
                _ => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in flight on its connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = u64::try_from(activity.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since_ms.store(now, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is done.
pub(super) struct Tracked<B> {
    pub(super) body: B,
    /// Held, not read: dropping it ends the request.
    pub(super) _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
