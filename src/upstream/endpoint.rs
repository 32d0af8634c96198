//! One endpoint of an upstream: an address and the connection pool to it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::RequestBody;
use super::tls::{ConnectError, Stream, UpstreamTls};

/// How long an idle pooled connection is kept. Upstreams commonly close idle
/// keep-alive connections after 60 s or more; closing ours first avoids
/// sending a request on a connection the upstream is closing.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// One address requests are sent to, with a keep-alive pool of its own.
pub(super) struct Endpoint {
    client: Client<Direct, RequestBody>,
}

impl Endpoint {
    /// An endpoint dialling `address` (scheme and authority are used),
    /// through TLS when `tls` is given.
    pub(super) fn new(
        address: Uri,
        connect_timeout: Duration,
        tls: Option<&UpstreamTls>,
    ) -> Endpoint {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        // HttpConnector refuses https URIs unless told the caller handles TLS.
        connector.enforce_http(false);
        let tls = tls.map(|tls| {
            let name = tls
                .server_name
                .clone()
                .unwrap_or_else(|| host_name(&address));
            (TlsConnector::from(tls.config.clone()), name)
        });
        // The handshake is part of connecting: the same limit covers both.
        let tls = tls.map(|(connector, name)| (connector, name, connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .timer(TokioTimer::new())
            .build(Direct {
                http: connector,
                address,
                tls,
            });
        Endpoint { client }
    }

    /// Sends `request` on a pooled connection (or a new one).
    pub(super) fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }
}

/// The name a URL's host stands for in TLS: a DNS name or an IP address
/// (IPv6 literals lose their brackets). Validated at load.
fn host_name(address: &Uri) -> ServerName<'static> {
    let host = address.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

/// Connects to one configured address, whatever URI it is asked for.
#[derive(Clone)]
struct Direct {
    http: HttpConnector,
    /// The configured URL's scheme and authority.
    address: Uri,
    /// For an https URL: the handshake's config and the name it verifies.
    /// For an https URL: the handshake's config, the name it verifies and
    /// the time it may take.
    tls: Option<(TlsConnector, ServerName<'static>, Duration)>,
}

impl tower_service::Service<Uri> for Direct {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(ConnectError::Tcp)
    }

    fn call(&mut self, _pool_key: Uri) -> Self::Future {
        let tcp = self.http.call(self.address.clone());
        match self.tls.clone() {
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
