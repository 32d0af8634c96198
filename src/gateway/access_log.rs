//! One structured access-log line per request.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderValue;

use super::{GatewayError, Trace};
use crate::auth::AuthError;
use crate::routes::RouteError;
use crate::upstream::UpstreamError;

/// One access-log line per request. The log gets everything the client is
/// not told (the precise reason, the kid, timings); never the token or the
/// query string, which may carry one.
pub(super) struct AccessLine<'a> {
    pub(super) request_id: &'a HeaderValue,
    pub(super) client: SocketAddr,
    pub(super) method: &'a http::Method,
    pub(super) path: &'a str,
    pub(super) route: Option<&'a str>,
    pub(super) status: StatusCode,
    pub(super) user: Option<&'a str>,
    pub(super) trace: &'a Trace,
    pub(super) failure: Option<&'a GatewayError>,
    /// The response's Content-Length, when it has one (bodies stream).
    pub(super) bytes: Option<&'a str>,
    pub(super) elapsed: Duration,
}

impl AccessLine<'_> {
    pub(super) fn log(&self) {
        let auth = match (self.trace.verification, self.failure) {
            (
                _,
                Some(GatewayError::Auth(AuthError::Forbidden { .. } | AuthError::ClaimRule { .. })),
            ) => "forbidden",
            (_, Some(GatewayError::Auth(_))) => "rejected",
            (Some(v), _) if v.accepted => "verified",
            _ => "none",
        };
        let reason = match self.failure {
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
            Some(GatewayError::Upstream(_)) => "upstream_error",
            None => "",
        };
        let error = self.failure.map(|e| e.to_string());
        tracing::info!(
            target: "access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            client = %self.client.ip(),
            method = %self.method,
            path = self.path,
            route = self.route.unwrap_or("-"),
            status = self.status.as_u16(),
            user = self.user.unwrap_or("-"),
            auth,
            reason,
            error = error.as_deref().unwrap_or(""),
            jwt_us = %JwtMicros(self.trace.verification.map(|v| v.elapsed)),
            upstream_ms = %Millis(self.trace.upstream),
            bytes = self.bytes.unwrap_or("-"),
            total_us = self.elapsed.as_micros() as u64,
        );
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
        jwt_us = "-",
        upstream_ms = "-",
        bytes = "-",
    );
}

/// Milliseconds with microsecond precision, `-` when absent.
pub(super) struct Millis(Option<Duration>);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{:.3}", d.as_secs_f64() * 1_000.0),
            None => f.write_str("-"),
        }
    }
}

/// Verification time in microseconds for the access log, `-` when no token
/// was checked.
struct JwtMicros(Option<Duration>);

impl fmt::Display for JwtMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{:.3}", d.as_nanos() as f64 / 1_000.0),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_shows_in_microseconds() {
        assert_eq!(
            JwtMicros(Some(Duration::from_nanos(431))).to_string(),
            "0.431"
        );
        assert_eq!(JwtMicros(None).to_string(), "-");
    }
}
