//! The one place errors become responses: status, RFC 6750 challenge and a
//! small JSON body.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::{GatewayError, LimitError};
use crate::auth::AuthError;
use crate::jwt::JwtError;
use crate::routes::RouteError;
use crate::upstream::{Body, UpstreamError};

pub(super) const REALM: &str = "Bearer realm=\"jwtgate\"";

/// The status follows who is at fault. Adding a variant anywhere below
/// fails to compile until someone decides its answer. A `grpc` request gets
/// the same answer in gRPC's shape ([`grpc_shaped`]).
pub(super) fn error_response(err: &GatewayError, grpc: bool) -> Response<Body> {
    use GatewayError as E;
    let (status, code, description, challenge): (StatusCode, &str, &str, Option<String>) = match err
    {
        E::Path(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request path is not acceptable",
            None,
        ),
        E::Host(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request host is missing, ambiguous or malformed",
            None,
        ),
        E::Connect => (
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "CONNECT is not supported",
            None,
        ),
        E::TransferCoding => (
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "only the chunked transfer coding is supported",
            None,
        ),
        E::Route(RouteError::NotFound) => (
            StatusCode::NOT_FOUND,
            "not_found",
            "no route for this path",
            None,
        ),
        E::Route(RouteError::MethodNotAllowed { .. }) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
            None,
        ),
        E::Auth(AuthError::Missing) => (
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "a bearer token is required",
            // RFC 6750 §3.1: no error code when the request had no credentials.
            Some(REALM.to_owned()),
        ),
        E::Auth(AuthError::InvalidRequest(why)) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            why,
            Some(format!(
                "{REALM}, error=\"invalid_request\", error_description=\"{why}\""
            )),
        ),
        // The gateway cannot reach the keys that would decide: our fault
        // (or the identity provider's), not the client's; it may retry.
        E::Auth(AuthError::Token(JwtError::KeysUnavailable { .. })) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "keys_unavailable",
            "the signing keys are not available yet; retry later",
            None,
        ),
        E::Auth(
            auth @ (AuthError::Token(_)
            | AuthError::Revoked { .. }
            | AuthError::WrongProvider { .. }),
        ) => {
            let why = match auth {
                AuthError::Token(jwt) => jwt.client_description(),
                AuthError::WrongProvider { .. } => "the token is not for this service",
                _ => "the token has been revoked",
            };
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                why,
                Some(format!(
                    "{REALM}, error=\"invalid_token\", error_description=\"{why}\""
                )),
            )
        }
        E::Auth(auth @ (AuthError::Forbidden { .. } | AuthError::ClaimRule { .. })) => {
            let why = match auth {
                AuthError::Forbidden { .. } => "the token lacks a role this route requires",
                _ => "the token lacks a claim this route requires",
            };
            (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                why,
                Some(format!(
                    "{REALM}, error=\"insufficient_scope\", error_description=\"{why}\""
                )),
            )
        }
        E::Limit(LimitError::UriTooLong { .. }) => (
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "the request target is too long",
            None,
        ),
        E::Limit(LimitError::TooManyHeaders { .. } | LimitError::HeadersTooLarge { .. }) => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request header fields are too large",
            None,
        ),
        E::Limit(LimitError::BodyTooLarge { .. })
        | E::Upstream(UpstreamError::BodyTooLarge { .. }) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is too large",
            None,
        ),
        E::Upstream(UpstreamError::ClientBody { .. }) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body is malformed or incomplete",
            None,
        ),
        E::Upstream(UpstreamError::Unavailable { .. }) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            "no healthy upstream endpoint; retry later",
            None,
        ),
        E::Upstream(UpstreamError::Timeout { .. }) => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the upstream did not answer in time",
            None,
        ),
        E::Upstream(
            UpstreamError::Connect { .. }
            | UpstreamError::Tls { .. }
            | UpstreamError::Failed { .. }
            | UpstreamError::BadTarget { .. }
            | UpstreamError::TransferCoding { .. },
        ) => (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the upstream could not be reached",
            None,
        ),
    };
    let body = format!("{{\"error\":\"{code}\",\"error_description\":\"{description}\"}}\n");
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    // RFC 9110 §10.2.3: when to try again, in whole seconds.
    if let E::Upstream(UpstreamError::Unavailable { retry_after, .. }) = err {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let E::Route(RouteError::MethodNotAllowed { allowed, .. }) = err {
        let allow = allowed
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(allow) = HeaderValue::from_str(&allow) {
            headers.insert(header::ALLOW, allow);
        }
    }
    if grpc {
        grpc_shaped(&mut response, description);
    }
    response
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`,
/// …): its client reads the status from `grpc-status`, not the HTTP one.
pub(super) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Turns a local error reply into gRPC's shape, as Envoy does: HTTP 200,
/// trailers-only (`grpc-status` and `grpc-message` in the only HEADERS
/// frame, no body), the code following the HTTP status: 401
/// UNAUTHENTICATED, 403 PERMISSION_DENIED, 502/503 UNAVAILABLE, 504
/// DEADLINE_EXCEEDED, and the gRPC spec's HTTP mapping for the rest.
fn grpc_shaped(response: &mut Response<Body>, message: &str) {
    let code: u16 = match response.status().as_u16() {
        400 => 13,             // INTERNAL (the spec's mapping)
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 | 405 | 501 => 12, // UNIMPLEMENTED
        413 | 414 | 431 => 8,  // RESOURCE_EXHAUSTED
        429 | 502 | 503 => 14, // UNAVAILABLE
        504 => 4,              // DEADLINE_EXCEEDED
        _ => 2,                // UNKNOWN
    };
    *response.status_mut() = StatusCode::OK;
    *response.body_mut() = Either::Right(Full::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
}

const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and
/// `%` itself (gRPC over HTTP/2 spec, "Responses").
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
