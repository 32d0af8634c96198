//! One structured access-log line per request, written when its response
//! body ends or is abandoned: what was sent, not what was meant to be.

use std::error::Error;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::header::HeaderValue;
use http::{Method, StatusCode, Uri};
use hyper::body::{Body, Frame, SizeHint};

use super::{GatewayError, Trace};
use crate::auth::AuthError;
use crate::routes::RouteError;
use crate::upstream::UpstreamError;

/// One access-log line, waiting for its response body to end. The log gets
/// everything the client is not told (the precise reason, the kid,
/// timings); never the token or the query string, which may carry one.
pub(super) struct AccessLine {
    pub(super) request_id: HeaderValue,
    pub(super) client: SocketAddr,
    pub(super) method: Method,
    /// Only its path is logged.
    pub(super) uri: Uri,
    pub(super) route: Option<Arc<str>>,
    /// The configured address of the upstream the request was sent to.
    pub(super) upstream_addr: Option<Arc<str>>,
    pub(super) status: StatusCode,
    pub(super) user: Option<String>,
    pub(super) auth: &'static str,
    pub(super) reason: &'static str,
    /// The failure with its whole `source()` chain (the OS error of a
    /// refused upstream connection is three levels down).
    pub(super) error: Option<String>,
    pub(super) jwt: Option<Duration>,
    pub(super) upstream: Option<Duration>,
    pub(super) started: Instant,
}

impl AccessLine {
    /// The verdict fields of a request's line: auth outcome, reason, error.
    pub(super) fn verdict(
        trace: &Trace,
        failure: Option<&GatewayError>,
    ) -> (&'static str, &'static str, Option<String>) {
        let auth = match (trace.verification, failure) {
            (
                _,
                Some(GatewayError::Auth(AuthError::Forbidden { .. } | AuthError::ClaimRule { .. })),
            ) => "forbidden",
            (_, Some(GatewayError::Auth(_))) => "rejected",
            (Some(v), _) if v.accepted => "verified",
            _ => "none",
        };
        let reason = match failure {
            Some(GatewayError::Auth(err)) => err.reason(),
            Some(GatewayError::Path(_)) => "bad_path",
            Some(GatewayError::Host(_)) => "bad_host",
            Some(GatewayError::Route(RouteError::NotFound)) => "no_route",
            Some(GatewayError::Route(RouteError::MethodNotAllowed { .. })) => "method_not_allowed",
            Some(GatewayError::Limit(_)) => "limit",
            Some(GatewayError::Connect) => "connect",
            Some(GatewayError::TransferCoding) => "transfer_coding",
            Some(GatewayError::Upstream(UpstreamError::Timeout { .. })) => "upstream_timeout",
            Some(GatewayError::Upstream(UpstreamError::ClientBody { .. })) => "bad_body",
            Some(GatewayError::Upstream(UpstreamError::Tls { .. })) => "upstream_tls",
            Some(GatewayError::Upstream(UpstreamError::Unavailable { .. })) => {
                "upstream_unavailable"
            }
            Some(GatewayError::Upstream(_)) => "upstream_error",
            None => "",
        };
        (auth, reason, failure.map(|e| with_sources(e)))
    }

    /// Writes the line: `bytes` of body were sent, and the body `completed`
    /// or was cut short (`body_error`, when the upstream's body failed).
    fn log(&self, bytes: u64, completed: bool, body_error: Option<String>) {
        let error = self.error.as_deref().or(body_error.as_deref());
        tracing::info!(
            target: "access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            client = %self.client.ip(),
            method = %self.method,
            path = self.uri.path(),
            route = self.route.as_deref().unwrap_or("-"),
            status = self.status.as_u16(),
            user = self.user.as_deref().unwrap_or("-"),
            auth = self.auth,
            reason = self.reason,
            error = error.unwrap_or(""),
            upstream_addr = self.upstream_addr.as_deref(),
            jwt_us = self.jwt.map(micros),
            upstream_ms = self.upstream.map(millis),
            bytes,
            completed,
            total_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
    }
}

/// Microseconds with nanosecond digits. One division of the exact count, so
/// the JSON number is the decimal (`14.743744`, not `14.743744000000001`).
fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

/// Milliseconds with nanosecond digits, the same way.
fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// `err` and every `source()` below it, joined with ": ", each message
/// written once (a wrapper whose text already quotes its source adds
/// nothing).
fn with_sources(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let message = err.to_string();
        if !text.contains(&message) {
            let _ = write!(text, ": {message}");
        }
        cause = err.source();
    }
    text
}

/// A response body that writes its request's access line when it ends,
/// fails or is dropped unfinished (the client went away), with the bytes
/// hyper took from it and whether that was all of it.
pub struct Logged<B: Body> {
    body: B,
    line: Option<AccessLine>,
    /// Data bytes hyper came back for more after (or ended the message on).
    sent: u64,
    /// The last data frame handed to hyper, not yet known to be taken.
    held: u64,
}

impl<B: Body> Logged<B> {
    pub(super) fn new(body: B, line: AccessLine) -> Logged<B> {
        Logged {
            body,
            line: Some(line),
            sent: 0,
            held: 0,
        }
    }

    /// A body with no access line: for answers that are not the gateway's
    /// (the demo playground's own pages).
    pub fn unlogged(body: B) -> Logged<B> {
        Logged {
            body,
            line: None,
            sent: 0,
            held: 0,
        }
    }

    fn finish(&mut self, completed: bool, body_error: Option<String>) {
        if let Some(line) = self.line.take() {
            line.log(self.sent, completed, body_error);
        }
    }
}

impl<B: Body + Unpin> Body for Logged<B>
where
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // Asked again: the previous frame was taken.
        this.sent += std::mem::take(&mut this.held);
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.held = data.remaining() as u64;
                }
            }
            Poll::Ready(Some(Err(err))) => {
                let error = format!("response body failed: {err}");
                this.finish(false, Some(error));
            }
            Poll::Ready(None) => this.finish(true, None),
            Poll::Pending => {}
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

impl<B: Body> Drop for Logged<B> {
    fn drop(&mut self) {
        if self.line.is_none() {
            return;
        }
        // hyper ends a message without polling again once the body says it
        // is at its end; dropped before that, the client got less.
        let completed = self.body.is_end_stream();
        if completed {
            self.sent += std::mem::take(&mut self.held);
        }
        self.finish(completed, None);
    }
}

/// The access line of a request hyper refused unparsed: no method, path or
/// request id is known, only who sent it and what hyper answered.
pub(super) fn log_unparsed(client: SocketAddr, status: StatusCode, error: &dyn fmt::Display) {
    tracing::info!(
        target: "access",
        request_id = "-",
        client = %client.ip(),
        method = "-",
        path = "-",
        route = "-",
        status = status.as_u16(),
        user = "-",
        auth = "none",
        reason = if status == StatusCode::BAD_REQUEST { "unparsed" } else { "limit" },
        error = %error,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_written_as_their_decimals() {
        assert_eq!(micros(Duration::from_nanos(431)), 0.431);
        assert_eq!(micros(Duration::from_micros(1_500)), 1_500.0);
        assert_eq!(
            millis(Duration::from_nanos(14_743_744)).to_string(),
            "14.743744"
        );
    }

    #[test]
    fn an_error_is_written_with_each_source_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect: {0}")]
        struct Outer(#[source] Connect);
        assert_eq!(
            with_sources(&Outer(Connect(refused))),
            "cannot connect: tcp connect error: refused"
        );
    }
}
