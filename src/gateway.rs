//! The request pipeline: route → authorize → rewrite headers → forward.
//! Errors become responses in `response`; each request logs one line via
//! `access_log`.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth::{self, AuthError, Verification};
use crate::config::Config;
use crate::headers::{self, ClaimHeader, HostError, Identity};
use crate::jwks::Keyring;
use crate::jwt::{Provider, Verified};
use crate::metrics::{Gauge, Metrics, Outcome, Readiness, ReadyFlag, Series};
use crate::revocation::Revocations;
use crate::routes::{self, PathError, RouteError, RouteTable};
use crate::upstream::{self, Body, Upstream, UpstreamError};

mod access_log;
mod response;

use access_log::AccessLine;
pub use access_log::Logged;
use response::error_response;

/// What the gateway answers with: a body that writes its request's access
/// line when it has been sent (or abandoned).
pub type ResponseBody = Logged<Body>;

/// Everything a request needs, built once from the config and shared.
pub struct Gateway {
    routes: RouteTable,
    keys: Arc<Keyring>,
    providers: Vec<Provider>,
    /// Per provider, the claim headers its tokens send upstream.
    provider_headers: Vec<Vec<ClaimHeader>>,
    /// Every configured claim header: client copies are always removed.
    claim_header_names: Vec<http::HeaderName>,
    revocations: Arc<Revocations>,
    /// The revocation list in force, for upgraded connections that outlive
    /// the config they opened under (shared across reloads).
    revocation_feed: Arc<tokio::sync::watch::Sender<Arc<Revocations>>>,
    /// The files besides the config file this gateway was built from.
    files: Vec<std::path::PathBuf>,
    /// `[reload]`: how often those files are checked; `None`: SIGHUP only.
    watch: Option<Duration>,
    upstreams: Vec<Upstream>,
    /// Each upstream's configured address, for the access log.
    upstream_addrs: Vec<Arc<str>>,
    /// Each route's prefix, for the access log.
    route_labels: Vec<Arc<str>>,
    token_query_param: Option<String>,
    limits: RequestLimits,
    request_ids: headers::RequestIds,
    server_timing: bool,
    /// `[server] forward_override_headers`: the override headers clients
    /// may send on; every other one is removed.
    forward_overrides: Vec<http::HeaderName>,
    /// `[admin] ready_needs_upstreams`.
    ready_needs_upstreams: bool,
    /// Shared with the gateways a reload replaces and the admin listener.
    metrics: Arc<Metrics>,
    /// This config's routes and upstreams within `metrics`.
    series: Series,
    readiness: Arc<Readiness>,
    serving: ReadyFlag,
}

/// Per-request limits from `[server]`. hyper enforces the header limits on
/// HTTP/1.1 while parsing; they are checked here again for HTTP/2 and for
/// head sizes below hyper's 8 KiB buffer floor.
#[derive(Clone, Copy, Debug)]
struct RequestLimits {
    header_bytes: usize,
    headers: usize,
    uri_bytes: usize,
    body_bytes: u64,
}

/// A request over a configured limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("request target of {length} bytes, limit {limit}")]
    UriTooLong { length: usize, limit: usize },
    #[error("{count} header fields, limit {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("{bytes} bytes of header fields, limit {limit}")]
    HeadersTooLarge { bytes: usize, limit: usize },
    #[error("Content-Length {length}, limit {limit}")]
    BodyTooLarge { length: u64, limit: u64 },
}

/// What one request did, gathered along the pipeline for metrics and the log.
#[derive(Default)]
struct Trace {
    /// Index of the matched route in the route table.
    route: Option<usize>,
    verification: Option<Verification>,
    /// Time from sending to the upstream until its response head arrived.
    upstream: Option<Duration>,
    /// The verified user of a request the upstream then failed.
    user: Option<String>,
}

/// Why a request was not forwarded, or not answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    #[error("bad host: {0}")]
    Host(#[from] HostError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("over a limit: {0}")]
    Limit(#[from] LimitError),
    /// CONNECT asks for a tunnel to an authority of the client's choosing,
    /// not for a resource; a reverse proxy has nothing to forward (and
    /// hyper-util's client would send the upstream only an authority).
    #[error("CONNECT is not supported")]
    Connect,
    /// A transfer coding besides `chunked` (`gzip, chunked`): hyper undoes
    /// only `chunked`, so the body would go on still coded with the
    /// coding's name dropped (RFC 9112 §6.1: 501).
    #[error("transfer coding other than chunked")]
    TransferCoding,
}

impl Gateway {
    /// A gateway with fresh metrics and readiness checks, in force at once.
    pub fn new(config: Config) -> Gateway {
        let readiness = Arc::new(Readiness::default());
        let serving = readiness.check("serving");
        let gateway = Gateway::build(
            config,
            Arc::new(Metrics::default()),
            readiness,
            serving,
            None,
        );
        gateway.take_over();
        gateway
    }

    /// A gateway for a reloaded config, sharing `previous`'s metrics and
    /// readiness so counters and `/readyz` carry over. It reports its key
    /// sources and cache only once [`Gateway::take_over`] is called: a
    /// reload that is abandoned leaves no trace.
    pub fn reloaded(config: Config, previous: &Gateway) -> Gateway {
        Gateway::build(
            config,
            previous.metrics.clone(),
            previous.readiness.clone(),
            previous.serving.clone(),
            Some(previous),
        )
    }

    fn build(
        config: Config,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        serving: ReadyFlag,
        previous: Option<&Gateway>,
    ) -> Gateway {
        let revocations = Arc::new(config.revocations);
        let route_labels: Vec<String> = config
            .routes
            .routes()
            .iter()
            .map(|r| r.prefix.clone())
            .collect();
        let upstream_names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
        let keys = Keyring::new(
            config.keys,
            &config.jwks,
            ReadyFlag::default(),
            config.verified_cache,
            metrics.clone(),
        );
        if let Some(previous) = previous {
            keys.inherit(&previous.keys);
        }
        keys.spawn_refresh();
        Gateway {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Upstream::new(u, &metrics))
                .collect(),
            upstream_addrs: config
                .upstreams
                .iter()
                .map(|u| u.url().authority().map_or("-", |a| a.as_str()).into())
                .collect(),
            route_labels: route_labels.iter().map(|r| r.as_str().into()).collect(),
            series: metrics.series(&route_labels, &upstream_names),
            routes: config.routes,
            keys,
            providers: config.providers,
            provider_headers: config.provider_headers,
            claim_header_names: config.claim_header_names,
            revocation_feed: match previous {
                Some(previous) => previous.revocation_feed.clone(),
                None => Arc::new(tokio::sync::watch::Sender::new(revocations.clone())),
            },
            revocations,
            files: config.files,
            watch: config.watch,
            server_timing: config.server.server_timing,
            forward_overrides: config.server.forward_override_headers.clone(),
            ready_needs_upstreams: config
                .admin
                .as_ref()
                .is_some_and(|a| a.ready_needs_upstreams),
            metrics,
            serving,
            readiness,
            token_query_param: config.token_query_param,
            request_ids: headers::RequestIds::new(),
            limits: RequestLimits {
                header_bytes: config.server.max_header_bytes,
                headers: config.server.max_headers,
                uri_bytes: config.server.max_uri_bytes,
                body_bytes: config.server.max_body_bytes,
            },
        }
    }

    /// Makes this gateway's key sources the `/readyz` check `key_sources`
    /// (ready once every JWKS URL has loaded) and its verified-token cache,
    /// if it can have one, the one `/metrics` reports.
    pub fn take_over(&self) {
        // Upgraded connections re-check their identity against this list.
        self.revocation_feed.send_replace(self.revocations.clone());
        self.watch_upstreams();
        self.readiness
            .register("key_sources", self.keys.ready_flag());
        if !self.keys.caches() {
            self.metrics.stop_reporting_verified_cache();
            return;
        }
        let cache_source = Arc::downgrade(&self.keys);
        self.metrics.report_verified_cache(move || {
            cache_source
                .upgrade()
                .map(|keys| keys.cache_stats())
                .unwrap_or_default()
        });
    }

    /// Makes `/readyz` check `upstreams`: with `ready_needs_upstreams`,
    /// ready while every upstream has an endpoint in rotation, re-checked
    /// four times a second until this gateway's upstreams are replaced;
    /// without, always passed.
    fn watch_upstreams(&self) {
        let flag = ReadyFlag::default();
        self.readiness.register("upstreams", &flag);
        let rotations: Vec<_> = self.upstreams.iter().map(Upstream::rotation).collect();
        let ready = move || {
            rotations
                .iter()
                .map(upstream::Rotation::any)
                .try_fold(true, |all, any| any.map(|any| all && any))
        };
        flag.set(!self.ready_needs_upstreams || ready().unwrap_or(true));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.ready_needs_upstreams {
            runtime.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    match ready() {
                        Some(ready) => flag.set(ready),
                        None => return,
                    }
                }
            });
        }
    }

    /// The files besides the config file this gateway was built from
    /// (certificate, keys, JWKS files, revocation list).
    pub fn files(&self) -> &[std::path::PathBuf] {
        &self.files
    }

    /// How often the config's files are checked for changes (`None`: not).
    pub fn watch(&self) -> Option<Duration> {
        self.watch
    }

    /// True once every key source has loaded at least once; until then
    /// tokens whose key may be in a missing source are answered 503.
    pub fn keys_ready(&self) -> bool {
        self.keys.ready()
    }

    /// The live key set and its verified-token cache.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// The counters and histograms this gateway records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The checks `/readyz` reports; start-up work may register more.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Marks the gateway as accepting connections (or, on shutdown, not).
    pub fn set_serving(&self, serving: bool) {
        self.serving.set(serving);
    }

    /// Counts an open client connection until the guard drops.
    pub fn connection_opened(&self) -> Gauge {
        self.metrics.connection_opened()
    }

    /// Counts and logs a request hyper answered itself because it could not
    /// parse its head (HTTP/1.1: `status` is 400 for bad framing, 431 or 414
    /// for an oversized head), so it reached no [`Gateway::handle`].
    pub fn record_unparsed(
        &self,
        client: SocketAddr,
        status: StatusCode,
        error: &dyn fmt::Display,
    ) {
        self.series.count_request(None, status.as_u16());
        access_log::log_unparsed(client, status, error);
    }

    /// Serves one request. Cannot fail: every error is answered here.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let _in_flight = self.metrics.request_started();
        let method = request.method().clone();
        // A clone shares the URI's bytes: no copy of the path per request.
        let uri = request.uri().clone();
        let http1 = request.version() < http::Version::HTTP_2;
        let head = method == http::Method::HEAD;
        let grpc = response::is_grpc(request.headers());
        let mut trace = Trace::default();
        let request_id = headers::request_id(request.headers(), &self.request_ids);
        let mut failure = None;
        let forwarded = self.forward(request, &uri, client, &request_id, &mut trace);
        let (mut response, user) = match forwarded.await {
            Ok((response, user)) => {
                let mut response = response.map(Either::Left);
                if self.server_timing
                    && let Some(v) = &trace.verification
                {
                    let value = server_timing(v.elapsed);
                    // Appended: the upstream's own Server-Timing entries stay.
                    response.headers_mut().append(SERVER_TIMING, value);
                }
                (response, user)
            }
            Err(err) => {
                let mut response = error_response(&err, grpc);
                if let GatewayError::Auth(auth) = &err {
                    self.metrics.count_auth_failure(auth.reason());
                }
                // RFC 9110 §9.3.2: no content in a response to HEAD. hyper
                // drops it on HTTP/1.1 but would send it as DATA on HTTP/2.
                if head {
                    *response.body_mut() = Either::Right(Full::default());
                }
                // After a refused head or body the rest of the HTTP/1.1 stream
                // cannot be trusted to be framed as the client meant: close it.
                if http1
                    && matches!(
                        err,
                        GatewayError::Limit(_)
                            | GatewayError::Upstream(
                                UpstreamError::BodyTooLarge { .. }
                                    | UpstreamError::ClientBody { .. }
                            )
                    )
                {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                let user = match &err {
                    GatewayError::Auth(auth) => auth.user().map(str::to_owned),
                    _ => trace.user.take(),
                };
                failure = Some(err);
                (response, user)
            }
        };
        if let Some(v) = &trace.verification {
            let outcome = match v.accepted {
                true => Outcome::Accepted,
                false => Outcome::Rejected,
            };
            self.metrics.observe_verify(v.alg, outcome, v.elapsed);
        }
        self.series
            .count_request(trace.route, response.status().as_u16());
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID, request_id.clone());
        let (auth, reason, error) = AccessLine::verdict(&trace, failure.as_ref());
        let upstream_addr = match (trace.upstream, trace.route) {
            (Some(_), Some(route)) => self
                .routes
                .routes()
                .get(route)
                .and_then(|r| self.upstream_addrs.get(r.upstream))
                .cloned(),
            _ => None,
        };
        let access = AccessLine {
            request_id,
            client,
            method,
            uri,
            route: trace.route.and_then(|i| self.route_labels.get(i)).cloned(),
            upstream_addr,
            status: response.status(),
            user,
            auth,
            reason,
            error,
            jwt: trace.verification.map(|v| v.elapsed),
            upstream: trace.upstream,
            started,
        };
        Ok(response.map(|body| Logged::new(body, access)))
    }

    /// route → authorize → rewrite headers → forward.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        uri: &Uri,
        client: SocketAddr,
        request_id: &HeaderValue,
        trace: &mut Trace,
    ) -> Result<(Response<Incoming>, Option<String>), GatewayError> {
        if request.method() == http::Method::CONNECT {
            return Err(GatewayError::Connect);
        }
        if headers::names_other_transfer_coding(request.headers()) {
            return Err(GatewayError::TransferCoding);
        }
        self.limits.check(&request)?;
        let host = headers::client_host(&request)?;
        let path = routes::normalize(uri.path())?;
        let route = self.routes.lookup(request.method(), &path)?;
        trace.route = self
            .routes
            .routes()
            .iter()
            .position(|r| std::ptr::eq(r, route));
        let query = match (&self.token_query_param, uri.query()) {
            (Some(param), Some(query)) => Some(auth::split_query_token(query, param)),
            _ => None,
        };
        let token = auth::find_token(request.headers(), query.as_ref())?;
        let verified = auth::authorize_live(
            route,
            token,
            &self.keys,
            &self.providers,
            &self.revocations,
            unix_now(),
            &mut trace.verification,
        )
        .await?;
        // The token parameter, like the Authorization header, is not forwarded.
        let forward_query = match &query {
            Some(split) => split.rest.as_deref(),
            None => uri.query(),
        };
        // A WebSocket (or other) upgrade goes through only after the checks above.
        let upgrade = headers::requested_upgrade(&request);
        let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        // Client-sent only: before the gateway adds its own headers.
        headers::remove_override_headers(request.headers_mut(), &self.forward_overrides);
        let upstream = &self.upstreams[route.upstream];
        // RFC 9113 §8.2.2: `TE: trailers` is the one TE HTTP/2 carries, and
        // gRPC servers want it; it goes on to an HTTP/2 upstream only.
        let te_trailers = upstream.speaks_h2() && asks_for_trailers(request.headers());
        let provider_headers = verified
            .as_ref()
            .and_then(|v| self.provider_headers.get(v.provider))
            .map_or(&[][..], Vec::as_slice);
        let forwarded = Forwarded {
            verified: verified.as_ref(),
            claim_headers: [provider_headers, route.headers.as_slice()],
            claim_header_names: &self.claim_header_names,
            client,
            host,
            request_id,
        };
        rewrite_request_headers(&mut request, forwarded);
        if let Some(protocol) = &upgrade {
            headers::keep_upgrade(request.headers_mut(), protocol.clone());
        }
        if te_trailers {
            request
                .headers_mut()
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let sent = Instant::now();
        let response = upstream
            .forward(request, &path, forward_query, self.limits.body_bytes)
            .await;
        trace.upstream = Some(sent.elapsed());
        self.series.observe_upstream(route.upstream, sent.elapsed());
        let mut response = match response {
            Ok(response) => response,
            Err(err) => {
                // The request was authenticated: its log line names the user.
                trace.user = verified.and_then(|v| v.user);
                return Err(err.into());
            }
        };
        let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upstream_protocol = response.headers().get(header::UPGRADE).cloned();
        headers::remove_hop_by_hop(response.headers_mut());
        if let (true, Some(client_side), Some(protocol)) =
            (switched, client_side, upstream_protocol)
        {
            headers::keep_upgrade(response.headers_mut(), protocol);
            let lapse = identity_lapses(
                verified.clone(),
                (verified.as_ref())
                    .and_then(|v| self.providers.get(v.provider))
                    .map_or(0, |p| p.validation.leeway),
                self.revocation_feed.subscribe(),
            );
            tokio::spawn(upstream::tunnel(
                client_side,
                hyper::upgrade::on(&mut response),
                lapse,
            ));
        }
        Ok((response, verified.and_then(|v| v.user)))
    }
}

/// Resolves when the identity an upgraded connection was opened with stops
/// being good: its token expires (plus leeway), or a reload revokes it.
/// Never, for a connection opened without a token (a public route).
async fn identity_lapses(
    identity: Option<Verified>,
    leeway: i64,
    mut revocations: tokio::sync::watch::Receiver<Arc<Revocations>>,
) {
    let Some(identity) = identity else {
        return std::future::pending().await;
    };
    let expiry = async {
        match identity.exp {
            Some(exp) => {
                let left = exp.saturating_add(leeway).saturating_sub(unix_now());
                tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
                tracing::info!(
                    user = identity.user.as_deref().unwrap_or("-"),
                    "closing an upgraded connection: its token expired"
                );
            }
            None => std::future::pending().await,
        }
    };
    let revoked = async {
        // The list in force now first: a reload may have happened since
        // the request was authorised.
        loop {
            if let Err(why) = revocations.borrow_and_update().check(&identity) {
                tracing::info!(user = identity.user.as_deref().unwrap_or("-"), reason = %why, "closing an upgraded connection: its token was revoked");
                return;
            }
            if revocations.changed().await.is_err() {
                // The feed is gone only when the process ends.
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        () = expiry => {}
        () = revoked => {}
    }
}

/// `Server-Timing` (W3C Server Timing): shown per request in browser
/// devtools; `curl -v` prints it too.
const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// `jwt;dur=<milliseconds>` with nanosecond digits, trailing zeros trimmed:
/// verification is usually well under a microsecond. Written by hand on the
/// stack in 64-bit arithmetic: two `format!`s cost more than the HMAC they
/// report, and dividing the `u128` of `as_nanos` is a library call per digit.
fn server_timing(elapsed: Duration) -> HeaderValue {
    const PREFIX: &[u8] = b"jwt;dur=";
    // The prefix, 20 digits of seconds, 3 of milliseconds, '.', 6 more.
    let mut text = [0u8; 38];
    text[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut len = PREFIX.len();
    let (secs, nanos) = (elapsed.as_secs(), elapsed.subsec_nanos());
    let (millis, fraction) = (nanos / 1_000_000, nanos % 1_000_000);
    if secs > 0 {
        put_decimal(&mut text, &mut len, secs, 1);
        put_decimal(&mut text, &mut len, millis.into(), 3);
    } else {
        put_decimal(&mut text, &mut len, millis.into(), 1);
    }
    if fraction != 0 {
        text[len] = b'.';
        len += 1;
        let (mut fraction, mut places) = (fraction, 6);
        while fraction % 10 == 0 {
            fraction /= 10;
            places -= 1;
        }
        put_decimal(&mut text, &mut len, fraction.into(), places);
    }
    // ASCII digits and punctuation: always a valid header value.
    HeaderValue::from_bytes(&text[..len]).unwrap_or_else(|_| HeaderValue::from_static("jwt"))
}

/// Writes `value` in decimal at `text[*len..]`, zero-padded to `width`
/// digits (at most 20, as many as a u64 has).
fn put_decimal(text: &mut [u8], len: &mut usize, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut count = 0;
    while count < digits.len() && (value > 0 || count < width) {
        digits[count] = b'0' + (value % 10) as u8;
        value /= 10;
        count += 1;
    }
    for digit in digits[..count].iter().rev() {
        text[*len] = *digit;
        *len += 1;
    }
}

impl RequestLimits {
    /// Refuses a request whose head is over a limit, or whose declared body
    /// is, before anything is forwarded. Chunked bodies are cut off while
    /// streaming (see `Upstream::forward`).
    fn check<B>(&self, request: &Request<B>) -> Result<(), LimitError> {
        let uri = request.uri();
        let length = uri.path_and_query().map_or(0, |p| p.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        if length > self.uri_bytes {
            return Err(LimitError::UriTooLong {
                length,
                limit: self.uri_bytes,
            });
        }
        let headers = request.headers();
        if headers.len() > self.headers {
            return Err(LimitError::TooManyHeaders {
                count: headers.len(),
                limit: self.headers,
            });
        }
        // As RFC 9113 §6.5.2 counts a field: name, value and 32 bytes.
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        if bytes > self.header_bytes {
            return Err(LimitError::HeadersTooLarge {
                bytes,
                limit: self.header_bytes,
            });
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|&l| l > self.body_bytes) {
            return Err(LimitError::BodyTooLarge {
                length,
                limit: self.body_bytes,
            });
        }
        Ok(())
    }
}

/// What the upstream is told about a request besides the request itself.
struct Forwarded<'a> {
    verified: Option<&'a Verified>,
    /// The provider's claim headers, then the route's.
    claim_headers: [&'a [ClaimHeader]; 2],
    claim_header_names: &'a [http::HeaderName],
    client: SocketAddr,
    host: Option<HeaderValue>,
    request_id: &'a HeaderValue,
}

fn rewrite_request_headers(request: &mut Request<Incoming>, forwarded: Forwarded<'_>) {
    if request.version() == http::Version::HTTP_2 {
        headers::merge_cookies(request.headers_mut());
    }
    let identity = forwarded.verified.map(|v| Identity {
        user: v.user.as_deref(),
        roles: &v.roles,
        claims: &v.claims,
        claim_headers: &forwarded.claim_headers,
    });
    let headers = request.headers_mut();
    headers::remove_hop_by_hop(headers);
    headers::prepare_request(
        headers,
        identity,
        forwarded.claim_header_names,
        forwarded.client.ip(),
        forwarded.host,
    );
    // Set after the hop-by-hop removal, like the identity headers, so
    // `Connection: X-Request-Id` cannot keep the id from the upstream.
    headers.insert(headers::X_REQUEST_ID, forwarded.request_id.clone());
}

/// Whether the request's `TE` lists `trailers`.
fn asks_for_trailers(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("trailers")
            })
        })
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    // A clock before 1970 is a broken host; treat it as the epoch.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_milliseconds_with_nanosecond_digits() {
        assert_eq!(server_timing(Duration::from_nanos(431)), "jwt;dur=0.000431");
        assert_eq!(server_timing(Duration::from_micros(1_500)), "jwt;dur=1.5");
        assert_eq!(server_timing(Duration::from_millis(2)), "jwt;dur=2");
        assert_eq!(server_timing(Duration::ZERO), "jwt;dur=0");
        assert_eq!(
            server_timing(Duration::from_nanos(12_000_000_050)),
            "jwt;dur=12000.00005"
        );
        assert_eq!(server_timing(Duration::from_nanos(10)), "jwt;dur=0.00001");
        let max = Duration::MAX.as_nanos();
        assert_eq!(
            server_timing(Duration::MAX),
            format!("jwt;dur={}.{:06}", max / 1_000_000, max % 1_000_000).as_str()
        );
    }
}
