//! The integration-test kit: a recording upstream, the real gateway from a
//! TOML string behind TLS with a CA generated at test time, an HTTPS client
//! (HTTP/1.1 or HTTP/2) that trusts only that CA, and a token minter.
//! Everything binds 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod idp;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use jwtgate::config::Config;
use jwtgate::gateway::{Gateway, unix_now};
use jwtgate::jwt::Alg;
use jwtgate::keys::Key;
use jwtgate::reload::Live;
use jwtgate::server::{self, Limits};
use jwtgate::tls::{self, DevPki};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// What the upstream received for one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query as sent by the gateway.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Handler =
    Arc<dyn Fn(&Seen) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync>;

/// A real HTTP/1.1 upstream that records every request.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Answers 200 with body "ok" and two Set-Cookie headers.
    pub async fn start() -> Upstream {
        Upstream::with(|_| async {
            Response::builder()
                .header("set-cookie", "a=1")
                .header("set-cookie", "b=2")
                .header("x-upstream", "yes")
                .body(Full::new(Bytes::from_static(b"ok")))
                .unwrap()
        })
        .await
    }

    pub async fn with<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(&Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::on(listener, handler)
    }

    /// Serves on an existing listener (to restart on the same port).
    pub fn on<F, Fut>(listener: TcpListener, handler: F) -> Upstream
    where
        F: Fn(&Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let record = record.clone();
                        let handler = handler.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                target: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("", |p| p.as_str())
                                    .to_owned(),
                                headers: parts.headers,
                                body,
                            };
                            record.lock().unwrap().push(seen.clone());
                            Ok::<_, Infallible>(handler(&seen).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// The default route table used by most tests; `UPSTREAM` is replaced.
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"
handshake_timeout = "2s"
header_read_timeout = "2s"
shutdown_grace = "5s"

[jwt]
leeway = "30s"

[[jwt.keys]]
kid = "k1"
alg = "HS256"
secret_env = "SECRET"

[[upstream]]
name = "app"
url = "http://UPSTREAM"
timeout = "1s"
connect_timeout = "1s"

[[route]]
path = "/public"
upstream = "app"
auth = "none"

[[route]]
path = "/maybe"
upstream = "app"
auth = "optional"

[[route]]
path = "/admin"
upstream = "app"
methods = ["GET", "POST"]
roles = ["admin"]

[[route]]
path = "/"
upstream = "app"
"#;

/// The real gateway, serving TLS on 127.0.0.1:0.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin listener, when the config has `[admin]` (bound to port 0).
    pub admin: Option<SocketAddr>,
    pub pki: Arc<DevPki>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl TestGateway {
    /// Starts the gateway from `config` (with `UPSTREAM` replaced by `upstream`).
    pub async fn start(config: &str, upstream: SocketAddr) -> TestGateway {
        let text = config.replace("UPSTREAM", &upstream.to_string());
        let config = Config::from_toml_str(&text, "test.toml", &|name| match name {
            "SECRET" => Some(SECRET.to_owned()),
            "SECRET2" => Some(format!("{SECRET}-second")),
            _ => None,
        })
        .unwrap_or_else(|err| panic!("test config: {err}"));
        let pki = Arc::new(DevPki::generate().unwrap());
        let tls_config =
            tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
        let limits = Limits::from(&config.server);
        let admin_listen = config.admin.as_ref().map(|a| a.listen);
        let live = Arc::new(Live::new(Gateway::new(config), tls_config));
        let gateway = live.gateway();
        let admin = match admin_listen {
            Some(listen) => {
                let listener = TcpListener::bind(listen).await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(jwtgate::admin::serve(
                    listener,
                    gateway.metrics().clone(),
                    gateway.readiness().clone(),
                    std::future::pending(),
                ));
                Some(addr)
            }
            None => None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, live, limits, async {
            let _ = stopped.await;
        }));
        TestGateway {
            addr,
            admin,
            pki,
            stop: Some(stop),
            task,
        }
    }

    pub async fn default(upstream: &Upstream) -> TestGateway {
        TestGateway::start(CONFIG, upstream.addr).await
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.pki, Protocol::Http1)
    }

    pub fn h2_client(&self) -> Client {
        Client::new(self.addr, &self.pki, Protocol::Http2)
    }

    /// Sends the shutdown signal; the server task then drains and ends.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A real HTTPS client trusting only the test CA; one connection per request.
pub struct Client {
    addr: SocketAddr,
    connector: TlsConnector,
    protocol: Protocol,
}

/// A buffered response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Client {
    pub fn new(addr: SocketAddr, pki: &DevPki, protocol: Protocol) -> Client {
        Client::with_roots(addr, vec![pki.ca_cert.clone()], protocol)
    }

    pub fn with_roots(
        addr: SocketAddr,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
        protocol: Protocol,
    ) -> Client {
        let alpn: &[&[u8]] = match protocol {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::Http2 => &[b"h2"],
        };
        let config = tls::client_config(&roots, alpn).unwrap();
        Client {
            addr,
            connector: TlsConnector::from(config),
            protocol,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Full::default()).unwrap()).await
    }

    /// Sends `request` (its URI is a path; the authority is added for HTTP/2).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        self.try_send(request)
            .await
            .unwrap_or_else(|err| panic!("request failed: {err}"))
    }

    pub async fn try_send(&self, mut request: Request<Full<Bytes>>) -> Result<Reply, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let io = TokioIo::new(tls);
        let response = match self.protocol {
            Protocol::Http1 => {
                if !request.headers().contains_key("host") {
                    request
                        .headers_mut()
                        .insert("host", "localhost".parse().unwrap());
                }
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Protocol::Http2 => {
                let uri = format!("https://localhost:{}{}", self.addr.port(), request.uri());
                *request.uri_mut() = uri.parse().unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}

/// Signs `claims` with the test secret under kid `k1`.
pub fn mint(claims: Value) -> String {
    mint_with(SECRET, Some("k1"), claims)
}

pub fn mint_with(secret: &str, kid: Option<&str>, claims: Value) -> String {
    let key = Key::hmac(kid.map(str::to_owned), Alg::HS256, secret.as_bytes()).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    jwtgate::token::mint(&key, &claims)
}

/// A valid token for user 42 with `role`, expiring in 15 minutes.
pub fn token(role: &str) -> String {
    let now = unix_now();
    mint(json!({ "sub": "42", "role": role, "iat": now, "exp": now + 900 }))
}

/// Raw bytes over TLS (for hostile framing); returns what came back until
/// the server closed or `wait` passed.
pub async fn raw_tls(addr: SocketAddr, pki: &DevPki, bytes: &[u8], wait: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tls::client_config(std::slice::from_ref(&pki.ca_cert), &[b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut out)).await;
    out
}

/// A plaintext HTTP/1.1 GET (for the admin listener): status and body.
pub async fn plain_get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", addr.to_string())
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Like [`raw_tls`], and also says whether the server closed the connection
/// (end of stream or an error) before `wait` passed.
pub async fn raw_tls_closed(
    addr: SocketAddr,
    pki: &DevPki,
    bytes: &[u8],
    wait: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tls::client_config(std::slice::from_ref(&pki.ca_cert), &[b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The server may refuse and close before it has read everything.
    let _ = tls.write_all(bytes).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, tls.read_to_end(&mut out))
        .await
        .is_ok();
    (out, closed)
}

/// The status codes of every response in a raw HTTP/1.1 byte stream.
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(raw)
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, m)| {
            let text = String::from_utf8_lossy(raw);
            text.get(i + m.len()..i + m.len() + 3)
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// A TLS connection to the gateway offering only `alpn`, for clients that
/// drive the protocol themselves.
pub async fn tls_connect(
    addr: SocketAddr,
    pki: &DevPki,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls::client_config(std::slice::from_ref(&pki.ca_cert), &[alpn]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// A WebSocket client connection over the test TLS.
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A WebSocket echo upstream; reports the identity headers of each handshake.
#[allow(clippy::result_large_err)]
pub async fn ws_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let callback =
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        let user = request
                            .headers()
                            .get("x-user-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let _ = seen.send(user);
                        Ok(response)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Opens a WebSocket to `path` through the gateway at `addr` (trusting
/// `roots`), with an optional bearer token and a spoofed `X-User-Id`.
#[allow(clippy::result_large_err)]
pub async fn ws_connect(
    addr: SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    path: &str,
    token: Option<&str>,
) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let config = tls::client_config(roots, &[b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
        .headers_mut()
        .insert("x-user-id", "spoofed".parse().unwrap());
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(ws, _)| ws)
}
