//! One endpoint of an upstream: an address and the connection pool to it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::RequestBody;

/// How long an idle pooled connection is kept. Upstreams commonly close idle
/// keep-alive connections after 60 s or more; closing ours first avoids
/// sending a request on a connection the upstream is closing.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// One address requests are sent to, with a keep-alive pool of its own.
pub(super) struct Endpoint {
    client: Client<Direct, RequestBody>,
}

impl Endpoint {
    /// An endpoint dialling `address` (scheme and authority are used).
    pub(super) fn new(address: Uri, connect_timeout: Duration) -> Endpoint {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .timer(TokioTimer::new())
            .build(Direct {
                http: connector,
                address,
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

/// Connects to one configured address, whatever URI it is asked for.
#[derive(Clone)]
struct Direct {
    http: HttpConnector,
    /// The configured URL's scheme and authority.
    address: Uri,
}

impl tower_service::Service<Uri> for Direct {
    type Response = TokioIo<TcpStream>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, _pool_key: Uri) -> Self::Future {
        Box::pin(self.http.call(self.address.clone()))
    }
}
