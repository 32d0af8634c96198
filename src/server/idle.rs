//! Closing connections that hold a slot without using it: hyper's header
//! timeout does not cover a client that never completes a first request (a
//! silent TLS connection, a partial HTTP/2 preface), HTTP/2 has no idle
//! timeout, and neither protocol has a send timeout for a client that asks
//! and then stops reading (or, over HTTP/2, never opens its flow-control
//! window). Each would hold one of `max_connections` for good.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};

/// What one connection's requests are doing, in counters that only grow,
/// so the watchdog can tell whether anything happened between two looks.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests the service was called for.
    started: AtomicU64,
    /// Requests whose response body was sent (or dropped).
    ended: AtomicU64,
    /// Response frames handed to hyper to send.
    sent: AtomicU64,
    /// Frames hyper took and came back for the next one after: while a
    /// body's last frame is not yet "taken", hyper is waiting to send it.
    taken: AtomicU64,
}

/// Why the watchdog closes a connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unused {
    /// No request in flight, and none began or ended, for a whole timeout.
    Idle,
    /// A response frame waited a whole timeout to be sent: the client does
    /// not read.
    Stalled,
}

impl Activity {
    /// Counts a request until the guard drops: with its response body,
    /// once that is sent (or abandoned).
    pub(super) fn begin(self: &Arc<Activity>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves once the connection is [`Unused`] for a whole `limit`.
    /// Checked every `limit`, so that takes one to two `limit`s (one for a
    /// connection that never had a request), and no clock is read per
    /// request or frame.
    pub(super) async fn unused_for(&self, limit: Duration) -> Unused {
        let mut last = [0; 4];
        loop {
            tokio::time::sleep(limit).await;
            // `ended` before `started`: a request ending between the two
            // reads then shows as still in flight, never as idle.
            let now = [&self.ended, &self.started, &self.sent, &self.taken]
                .map(|counter| counter.load(Ordering::Relaxed));
            let [ended, started, sent, taken] = now;
            if now == last && started == ended {
                return Unused::Idle;
            }
            if sent > taken && sent == last[2] && taken == last[3] {
                return Unused::Stalled;
            }
            last = now;
        }
    }
}

/// A request in flight on its connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is done, and
/// notes when hyper takes a frame and when it comes back for the next.
pub(super) struct Tracked<B> {
    body: B,
    in_flight: InFlight,
    /// Handed a frame that hyper has not come back after yet.
    holding: bool,
}

impl<B> Tracked<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Tracked<B> {
        Tracked {
            body,
            in_flight,
            holding: false,
        }
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.holding) {
            self.in_flight.0.taken.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.release();
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.holding = true;
            self.in_flight.0.sent.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
