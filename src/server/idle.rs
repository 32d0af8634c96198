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

/// The requests in flight on one connection, and how many have ended.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    ended: AtomicU64,
}

impl Activity {
    /// Counts a request in flight until the guard drops: with its response
    /// body, once that is sent (or abandoned).
    pub(super) fn begin(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has carried no request for a whole
    /// `limit`: checked every `limit`, so an idle connection goes between
    /// one and two `limit`s after its last response, one that never had a
    /// request after one. No clock is read per request.
    pub(super) async fn idle_for(&self, limit: Duration) {
        let mut seen = 0;
        loop {
            tokio::time::sleep(limit).await;
            let ended = self.ended.load(Ordering::Acquire);
            if self.in_flight.load(Ordering::Acquire) == 0 && ended == seen {
                return;
            }
            seen = ended;
        }
    }
}

/// A request in flight on its connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
