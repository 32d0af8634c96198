//! The accept loop: TLS in the connection's own task under a timeout,
//! HTTP/1.1 or HTTP/2 (ALPN offers both), a cap on open connections
//! (upgraded tunnels and HTTP/2 stream tasks included), closing connections
//! left unused (`idle`), lingering close (`socket`), graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::gateway::{Gateway, ResponseBody};
use crate::metrics::Gauge;
use crate::reload::Live;

mod idle;
mod socket;

use idle::{Activity, Tracked};
use socket::Socket;

/// Connection-level limits, from `[server]`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl From<&config::Server> for Limits {
    fn from(server: &config::Server) -> Limits {
        Limits {
            handshake_timeout: server.handshake_timeout,
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
            shutdown_grace: server.shutdown_grace,
            max_header_bytes: server.max_header_bytes,
            max_headers: server.max_headers,
        }
    }
}

/// Concurrent HTTP/2 streams per connection (RFC 9113 §5.1.2 suggests ≥ 100).
const H2_MAX_STREAMS: u32 = 128;

/// Streams a client may open and reset before the server has accepted them
/// (the "rapid reset" attack, CVE-2023-44487); more: GOAWAY ENHANCE_YOUR_CALM.
const H2_MAX_PENDING_RESETS: usize = 32;

/// Streams the server itself may reset for protocol errors on one
/// connection before it sends GOAWAY (CVE-2024-2653 and its kin).
const H2_MAX_LOCAL_RESETS: usize = 256;

/// The HTTP/2 header list h2 decodes, as a multiple of `max_header_bytes`:
/// with h2's own abuse limit at 4× that, a list up to 16× the configured
/// limit is answered 431 rather than with GOAWAY.
const H2_HEADER_LIST_FACTOR: usize = 4;

/// hyper refuses a read buffer below 8 KiB (it asserts); header bytes beyond
/// the configured limit but under this floor are refused by the gateway.
const H1_MIN_BUF: usize = 8192;

/// Facts about one client connection, fixed by its TLS handshake.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub client: SocketAddr,
    pub tls_version: Option<rustls::ProtocolVersion>,
    pub cipher_suite: Option<rustls::CipherSuite>,
    pub key_exchange: Option<rustls::NamedGroup>,
}

/// What answers a connection's requests. [`serve`] uses [`GatewayOnly`];
/// a type, not a setting, so nothing in a config can put anything else in
/// front of the gateway (the demo's playground is the other implementor).
pub trait Respond: Clone + Send + Sync + 'static {
    /// Answers one request; `gateway` is the one in force when it arrived.
    /// By value: the answer outlives the call (HTTP/2 spawns it).
    fn respond(
        self,
        gateway: Arc<Gateway>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;
}

/// Every request goes to the gateway: what `jwtgate serve` runs.
#[derive(Clone, Copy, Debug)]
pub struct GatewayOnly;

impl Respond for GatewayOnly {
    async fn respond(
        self,
        gateway: Arc<Gateway>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> Response<ResponseBody> {
        match gateway.handle(request, connection.client).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and waits up to
/// `limits.shutdown_grace` for open connections to finish their requests,
/// upgraded tunnels included; then cuts those still open.
///
/// Each connection handshakes with the TLS config in force when it was
/// accepted, and each request runs on the gateway in force when it arrived
/// (to its end, even if a reload swaps in another meanwhile).
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, live, limits, shutdown, GatewayOnly).await
}

/// [`serve`], with `respond` answering each request.
pub async fn serve_with<R: Respond>(
    listener: TcpListener,
    live: Arc<Live>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    respond: R,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Flipped once on shutdown; every connection then finishes its
    // in-flight requests and closes (HTTP/2 sends GOAWAY).
    let (draining, drain) = tokio::sync::watch::channel(false);
    // Fired when the grace is over: whatever is still open is closed.
    let cut = CancellationToken::new();
    tokio::pin!(shutdown);
    live.gateway().set_serving(true);

    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = Arc::new(Slot {
            _permit: permit,
            _open: live.gateway().connection_opened(),
        });
        let accepted = Accepted {
            client,
            live: live.clone(),
            limits: limits.clone(),
            drain: drain.clone(),
            cut: cut.clone(),
            slot,
            respond: respond.clone(),
        };
        tokio::spawn(accepted.run(stream));
    }

    // Draining: tell load balancers to stop sending before connections close.
    live.gateway().set_serving(false);
    // Closed first, so new clients are refused at once rather than left in
    // the kernel's backlog until the drain ends.
    drop(listener);
    let open = limits.max_connections - permits.available_permits();
    tracing::info!(connections = open, "shutting down; draining connections");
    let _ = draining.send(true);
    // Every connection holds a permit until it ends, shared with its HTTP/2
    // stream tasks and held while its stream is upgraded: all permits back
    // means all connections, streams and tunnels are closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            let open = limits.max_connections - permits.available_permits();
            tracing::warn!(grace = ?limits.shutdown_grace, connections = open, "grace period over; closing remaining connections");
            cut.cancel();
        }
    }
}

/// One connection's place among `max_connections` and in the open
/// connections gauge, held by its task, its HTTP/2 stream tasks and its
/// upgraded tunnel until the last of them ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _open: Gauge,
}

/// Runs a connection's HTTP/2 streams as tasks that keep its [`Slot`].
#[derive(Clone)]
struct Streams(Arc<Slot>);

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        let slot = self.0.clone();
        tokio::spawn(async move {
            let _slot = slot;
            stream.await;
        });
    }
}

/// hyper's HTTP/1.1 and HTTP/2 settings for one connection, whose streams
/// run on `streams`.
fn protocols(limits: &Limits, streams: Streams) -> auto::Builder<Streams> {
    let mut http = auto::Builder::new(streams);
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Over either limit hyper answers 431 itself and closes the connection.
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(H1_MIN_BUF));
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // The decoded header list (RFC 9113 §6.5.2). The gateway answers
        // lists over `max_header_bytes` 431 itself; h2 answers 431 to lists
        // over this, and ends the whole connection (GOAWAY) past 4× this.
        // Set above the limit so that heads far over it still get an answer.
        .max_header_list_size(
            u32::try_from(
                limits
                    .max_header_bytes
                    .saturating_mul(H2_HEADER_LIST_FACTOR),
            )
            .unwrap_or(u32::MAX),
        );
    http
}

/// An accepted client connection and what its task needs.
struct Accepted<R> {
    client: SocketAddr,
    live: Arc<Live>,
    limits: Limits,
    drain: tokio::sync::watch::Receiver<bool>,
    cut: CancellationToken,
    slot: Arc<Slot>,
    respond: R,
}

impl<R: Respond> Accepted<R> {
    /// TLS handshake, HTTP until the connection ends (or is upgraded and
    /// the tunnel ends), then a lingering close.
    async fn run(self, stream: TcpStream) {
        let client = self.client;
        let acceptor = TlsAcceptor::from(self.live.tls());
        let handshake =
            tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::debug!(%client, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%client, "TLS handshake timed out");
                return;
            }
        };
        let session = tls.get_ref().1;
        let connection = Connection {
            client,
            tls_version: session.protocol_version(),
            cipher_suite: session.negotiated_cipher_suite().map(|s| s.suite()),
            key_exchange: session.negotiated_key_exchange_group().map(|g| g.name()),
        };
        let (socket, returned) = Socket::new(tls, self.cut.clone());
        self.serve_http(socket, connection).await;
        // hyper has let go of the socket, unless a tunnel took it over:
        // the connection stays open (and counted) until that ends.
        let stream = tokio::select! {
            stream = returned => stream.ok(),
            () = self.cut.cancelled() => None,
        };
        if let Some(stream) = stream {
            tokio::select! {
                () = socket::linger(stream) => {}
                () = self.cut.cancelled() => {}
            }
        }
    }

    /// Serves requests until the connection ends, is drained, or sits
    /// unused for `header_read_timeout`; the hyper connection (and with it
    /// the socket, unless upgraded) is dropped on return.
    async fn serve_http(&self, socket: Socket, connection: Connection) {
        let client = self.client;
        let serving = self.live.clone();
        let activity = Arc::new(Activity::default());
        let requests = activity.clone();
        let respond = self.respond.clone();
        let service = service_fn(move |request| {
            let answer = (respond.clone()).respond(serving.gateway(), request, connection);
            let in_flight = requests.begin();
            async move {
                let response = answer.await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        });
        let http = protocols(&self.limits, Streams(self.slot.clone()));
        // HTTP/1.1 or HTTP/2 is told from the first bytes (hyper-util
        // ignores `http1_only`/`http2_only` with upgrades). With
        // upgrades: a WebSocket handshake the gateway authenticated
        // takes the connection over (HTTP/1.1 only).
        let connection = http.serve_connection_with_upgrades(TokioIo::new(socket), service);
        tokio::pin!(connection);
        let mut drain = self.drain.clone();
        let header_read_timeout = self.limits.header_read_timeout;
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            // Also when the sender is gone: the server has stopped.
            _ = drain.changed() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    ended = connection.as_mut() => ended,
                    () = self.cut.cancelled() => return,
                }
            }
            unused = activity.unused_for(header_read_timeout) => {
                tracing::debug!(%client, ?unused, "connection unused for header_read_timeout; closing");
                // Requests it accepted meanwhile may finish, as long as
                // the connection is in use.
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = activity.unused_for(header_read_timeout) => {}
                    () = self.cut.cancelled() => {}
                }
                return;
            }
        };
        if let Err(err) = ended {
            match answered_by_hyper(&*err) {
                Some(status) => self.live.gateway().record_unparsed(client, status, &err),
                None => {
                    tracing::debug!(%client, error = %err, "connection ended with an error")
                }
            }
        }
    }
}

/// The status hyper sent by itself for an HTTP/1.1 request head it could not
/// parse (its `Server::on_error`), ending the connection with this error.
fn answered_by_hyper(err: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    let err = err.downcast_ref::<hyper::Error>()?;
    if err.is_parse_too_large() {
        // One flag covers both; only the message tells apart a URI over
        // hyper's own 64 KiB cap (414) from an oversized head (431).
        return Some(match err.to_string().starts_with("URI too long") {
            true => StatusCode::URI_TOO_LONG,
            false => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        });
    }
    // An HTTP/2 preface on an HTTP/1.1 connection gets no answer.
    (err.is_parse() && !err.is_parse_version_h2()).then_some(StatusCode::BAD_REQUEST)
}
