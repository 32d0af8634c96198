//! One endpoint of an upstream: an address and the connection pool to it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::RequestBody;
use super::health::Health;
use super::tls::{ConnectError, Stream};
use crate::config;
use crate::metrics::EndpointStats;

/// How long an idle pooled connection is kept. Upstreams commonly close idle
/// keep-alive connections after 60 s or more; closing ours first avoids
/// sending a request on a connection the upstream is closing.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How often an idle HTTP/2 connection is pinged, and how long the answer
/// may take: a connection the network dropped silently is noticed.
const H2_PING: Duration = Duration::from_secs(20);

/// One address requests are sent to, with a keep-alive pool of its own
/// and its health.
pub(super) struct Endpoint {
    client: Client<Direct, RequestBody>,
    /// The Host header its requests carry: its URL's authority.
    pub(super) host: HeaderValue,
    /// Its address in metrics and logs: the address dialled.
    pub(super) label: String,
    /// Which configured URL it came from and, for a resolved one, its
    /// address: what a re-resolution matches endpoints by.
    pub(super) key: (usize, Option<SocketAddr>),
    pub(super) health: Health,
    /// Requests sent and not yet answered with a response head.
    outstanding: AtomicUsize,
    pub(super) stats: Arc<EndpointStats>,
    /// For an `h2` upstream: the scheme and authority of its requests'
    /// URIs (HTTP/2 sends them as `:scheme` and `:authority`, no Host).
    http2: Option<(http::uri::Scheme, http::uri::Authority)>,
}

impl Endpoint {
    /// An endpoint for `url` dialling `address` (scheme and authority are
    /// used), through TLS when `tls` is given; the Host header and the TLS
    /// name come from `url`.
    pub(super) fn new(
        url: &Uri,
        address: Uri,
        key: (usize, Option<SocketAddr>),
        config: &config::Upstream,
        stats: Arc<EndpointStats>,
    ) -> Endpoint {
        let (connect_timeout, tls) = (config.connect_timeout, config.tls.as_ref());
        // Validated at load: a URL with an authority.
        let host = url
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("invalid"));
        let label = address
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // HttpConnector refuses https URIs unless told the caller handles TLS.
        connector.enforce_http(false);
        let tls = tls.map(|tls| {
            let name = tls.server_name.clone().unwrap_or_else(|| host_name(url));
            (TlsConnector::from(tls.config.clone()), name)
        });
        // The handshake is part of connecting: the same limit covers both.
        let tls = tls.map(|(connector, name)| (connector, name, connect_timeout));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .timer(TokioTimer::new());
        let http2 = match config.protocol {
            config::Protocol::Http1 => None,
            config::Protocol::Http2 => {
                // One multiplexed connection; the upstream's own
                // SETTINGS_MAX_CONCURRENT_STREAMS caps the streams on it
                // (requests beyond wait, within their timeout), and its
                // flow-control windows bound what is buffered per stream.
                builder
                    .http2_only(true)
                    .http2_keep_alive_interval(H2_PING)
                    .http2_keep_alive_timeout(H2_PING);
                let scheme = url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
                url.authority()
                    .cloned()
                    .map(|authority| (scheme, authority))
            }
        };
        let client = builder.build(Direct(Arc::new(Dialling {
            http: connector,
            address,
            tls,
        })));
        Endpoint {
            client,
            host,
            label,
            key,
            health: Health::default(),
            outstanding: AtomicUsize::new(0),
            stats,
            http2,
        }
    }

    /// Sends `request` on a pooled connection (or a new one); counted in
    /// flight until the response head arrives or the attempt is dropped.
    pub(super) async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let _answered = Answered(&self.outstanding);
        self.client.request(request).await
    }

    /// Addresses `request` (its URI's authority a pool key, its path
    /// final) to this endpoint: HTTP/1.1 with its Host header, or HTTP/2
    /// with its scheme and authority.
    pub(super) fn address<B>(&self, request: &mut http::Request<B>) {
        match &self.http2 {
            None => {
                *request.version_mut() = http::Version::HTTP_11;
                request
                    .headers_mut()
                    .insert(http::header::HOST, self.host.clone());
            }
            Some((scheme, authority)) => {
                let mut parts = request.uri().clone().into_parts();
                parts.scheme = Some(scheme.clone());
                parts.authority = Some(authority.clone());
                if let Ok(uri) = Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
                *request.version_mut() = http::Version::HTTP_2;
                request.headers_mut().remove(http::header::HOST);
            }
        }
    }

    /// A health check's request: GET `path`, no body, addressed to this
    /// endpoint.
    pub(super) fn probe_request(
        &self,
        path: &http::uri::PathAndQuery,
    ) -> http::Request<RequestBody> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(super::POOL_KEY);
        parts.path_and_query = Some(path.clone());
        let mut request = http::Request::new(RequestBody::Right(http_body_util::Either::Left(
            http_body_util::Empty::new(),
        )));
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        self.address(&mut request);
        request
    }

    /// Sends a health check: not counted as a request.
    pub(super) fn probe(
        &self,
        request: http::Request<RequestBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }

    /// Requests in flight, for least-outstanding balancing.
    pub(super) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Whether it is in rotation now.
    pub(super) fn available(&self) -> bool {
        self.health.available(&self.stats)
    }

    /// Records a response that was not 5xx.
    pub(super) fn succeeded(&self) {
        self.health.succeeded();
    }

    /// Records a failure that is the endpoint's (no response, a 5xx one).
    pub(super) fn failed(&self, upstream: &str, policy: &config::Health) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if self.health.failed(policy, &self.stats) {
            tracing::warn!(
                upstream,
                endpoint = %self.label,
                back_in_ms = self.health.back_in().map_or(0, |d| d.as_millis() as u64),
                "endpoint ejected after consecutive failures"
            );
        }
    }
}

/// Decrements the in-flight count when an attempt ends, however it ends.
struct Answered<'a>(&'a AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The name a URL's host stands for in TLS: a DNS name or an IP address
/// (IPv6 literals lose their brackets). Validated at load.
fn host_name(url: &Uri) -> ServerName<'static> {
    let host = url.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

/// Connects to one configured address, whatever URI it is asked for.
/// hyper-util's client clones its connector for every request, pooled
/// connection or not: one reference count, not a server name's `String`.
#[derive(Clone)]
struct Direct(Arc<Dialling>);

struct Dialling {
    http: HttpConnector,
    /// The configured URL's scheme and authority.
    address: Uri,
    /// For an https URL: the handshake's config, the name it verifies and
    /// the time it may take.
    tls: Option<(TlsConnector, ServerName<'static>, Duration)>,
}

impl tower_service::Service<Uri> for Direct {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // HttpConnector on the system resolver is always ready: its
        // poll_ready asks GaiResolver's, which is.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _pool_key: Uri) -> Self::Future {
        let dialling = &self.0;
        let tcp = dialling.http.clone().call(dialling.address.clone());
        match dialling.tls.clone() {
            None => {
                Box::pin(async move { tcp.await.map(Stream::Plain).map_err(ConnectError::Tcp) })
            }
            Some((connector, name, limit)) => Box::pin(async move {
                let tcp = tcp.await.map_err(ConnectError::Tcp)?.into_inner();
                let tls = tokio::time::timeout(limit, connector.connect(name, tcp))
                    .await
                    .unwrap_or_else(|_| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the handshake took longer than connect_timeout",
                        ))
                    })
                    .map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(TokioIo::new(tls))))
            }),
        }
    }
}
