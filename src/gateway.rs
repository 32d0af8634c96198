//! The request pipeline, and the one place errors become responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth::{self, AuthError};
use crate::config::Config;
use crate::headers::{self, Identity};
use crate::jwks::Keyring;
use crate::jwt::{JwtError, Validation, Verified};
use crate::routes::{self, PathError, RouteError, RouteTable};
use crate::upstream::{Body, Upstream, UpstreamError};

/// Everything a request needs, built once from the config and shared.
pub struct Gateway {
    routes: RouteTable,
    keys: Arc<Keyring>,
    validation: Validation,
    upstreams: Vec<Upstream>,
}

/// Why a request was not forwarded, or not answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Gateway {
    /// Builds the gateway. Inside a Tokio runtime this also starts fetching
    /// the `[[jwt.jwks]]` URLs in the background (see [`Gateway::ready`]).
    pub fn new(config: Config) -> Gateway {
        let keys = Keyring::new(config.keys, &config.jwks);
        keys.spawn_refresh();
        Gateway {
            upstreams: config.upstreams.iter().map(Upstream::new).collect(),
            routes: config.routes,
            keys,
            validation: config.validation,
        }
    }

    /// True once every key source has loaded at least once; until then
    /// tokens whose key may be in a missing source are answered 503.
    pub fn ready(&self) -> bool {
        self.keys.ready()
    }

    /// The live key set, for readiness and metrics.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Serves one request. Cannot fail: every error is answered here.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let target = request.uri().path().to_owned();
        let (response, user) = match self.forward(request, client).await {
            Ok((response, user)) => (response.map(Either::Left), user),
            Err(err) => {
                let response = error_response(&err);
                log_rejection(&err, &method, &target, client, response.status());
                (response, None)
            }
        };
        tracing::info!(
            target: "access",
            client = %client.ip(),
            %method,
            path = %target,
            status = response.status().as_u16(),
            user = user.as_deref().unwrap_or("-"),
            micros = started.elapsed().as_micros() as u64,
        );
        Ok(response)
    }

    /// route → authorize → rewrite headers → forward.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<(Response<Incoming>, Option<String>), GatewayError> {
        let path = routes::normalize(request.uri().path())?.into_owned();
        let route = self.routes.lookup(request.method(), &path)?;
        let verified = auth::authorize(
            route,
            request.headers(),
            &self.keys,
            &self.validation,
            unix_now(),
        )
        .await?;
        rewrite_request_headers(&mut request, verified.as_ref(), client);
        let upstream = &self.upstreams[route.upstream];
        let mut response = upstream.forward(request, &path).await?;
        headers::remove_hop_by_hop(response.headers_mut());
        Ok((response, verified.and_then(|v| v.user)))
    }
}

fn rewrite_request_headers(
    request: &mut Request<Incoming>,
    verified: Option<&Verified>,
    client: SocketAddr,
) {
    // HTTP/2 carries the host in :authority, HTTP/1.1 in Host.
    let host = request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let identity = verified.map(|v| Identity {
        user: v.user.as_deref(),
        roles: &v.roles,
    });
    let headers = request.headers_mut();
    headers::remove_hop_by_hop(headers);
    headers::prepare_request(headers, identity, client.ip(), host);
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    // A clock before 1970 is a broken host; treat it as the epoch.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

const REALM: &str = "Bearer realm=\"jwtgate\"";

/// The status follows who is at fault. Adding a variant anywhere below
/// fails to compile until someone decides its answer.
fn error_response(err: &GatewayError) -> Response<Body> {
    use GatewayError as E;
    let (status, code, description, challenge): (StatusCode, &str, &str, Option<String>) = match err
    {
        E::Path(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request path is not acceptable",
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
            "invalid_token",
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
        E::Auth(AuthError::Token(jwt)) => {
            let why = jwt.client_description();
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                why,
                Some(format!(
                    "{REALM}, error=\"invalid_token\", error_description=\"{why}\""
                )),
            )
        }
        E::Auth(AuthError::Forbidden { .. }) => {
            let why = "the token lacks a role this route requires";
            (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                why,
                Some(format!(
                    "{REALM}, error=\"insufficient_scope\", error_description=\"{why}\""
                )),
            )
        }
        E::Upstream(UpstreamError::Timeout { .. }) => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the upstream did not answer in time",
            None,
        ),
        E::Upstream(
            UpstreamError::Connect { .. }
            | UpstreamError::Failed { .. }
            | UpstreamError::BadTarget { .. },
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
    response
}

/// The log gets everything the client is not told.
fn log_rejection(
    err: &GatewayError,
    method: &http::Method,
    path: &str,
    client: SocketAddr,
    status: StatusCode,
) {
    let status = status.as_u16();
    match err {
        GatewayError::Upstream(err) => {
            tracing::warn!(%method, path, client = %client.ip(), status, error = %err, "upstream failure")
        }
        GatewayError::Auth(AuthError::Token(jwt @ JwtError::KeysUnavailable { .. })) => {
            tracing::warn!(%method, path, client = %client.ip(), status, reason = jwt.reason(), error = %jwt, "token not checked: keys unavailable")
        }
        GatewayError::Auth(AuthError::Token(jwt)) => {
            tracing::info!(%method, path, client = %client.ip(), status, reason = jwt.reason(), error = %jwt, "token refused")
        }
        err => {
            tracing::info!(%method, path, client = %client.ip(), status, error = %err, "request refused")
        }
    }
}
