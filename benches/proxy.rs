//! `cargo bench --bench proxy`: one request's round trip on loopback over a
//! kept-alive HTTP/1.1 connection, three ways in one run:
//!
//! - `direct`: plain HTTP straight to the upstream (the floor);
//! - `gateway/auth_none`: TLS + gateway, route with `auth = "none"`;
//! - `gateway/auth_required`: TLS + gateway, HS256 token verified.
//!
//! Every request carries the same `Authorization` header, so the wire work
//! is identical and `auth_required / auth_none` is the verification share.
//! The upstream and the gateway each run a one-thread runtime on their own
//! thread; the client runs on the bench thread. Latency here includes the
//! client's own work; `benches/load.sh` measures throughput and CPU per
//! request against HAProxy and nginx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

use jwtgate::config::Config;
use jwtgate::gateway::{Gateway, unix_now};
use jwtgate::jwt::Alg;
use jwtgate::keys::Key;
use jwtgate::reload::Live;
use jwtgate::server::{self, Limits};
use jwtgate::tls::{self, DevPki};

const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"
workers = 1

[[jwt.keys]]
alg = "HS256"
secret_env = "SECRET"

[[upstream]]
name = "app"
url = "http://UPSTREAM"

[[route]]
path = "/none"
upstream = "app"
auth = "none"

[[route]]
path = "/"
upstream = "app"
"#;

/// A one-thread runtime on its own OS thread, like a pinned single-worker server.
fn server_thread(
    start: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Send + 'static,
) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(start());
    });
}

fn start_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    server_thread(move || {
        Box::pin(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    });
    addr
}

fn start_gateway(upstream: SocketAddr, pki: &DevPki) -> SocketAddr {
    let text = CONFIG.replace("UPSTREAM", &upstream.to_string());
    let config = Config::from_toml_str(&text, "bench.toml", &|_| Some(SECRET.to_owned())).unwrap();
    let tls_config =
        tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    server_thread(move || {
        Box::pin(async move {
            let limits = Limits::from(&config.server);
            let live = Arc::new(Live::new(Gateway::new(config), tls_config));
            let listener = TcpListener::from_std(listener).unwrap();
            server::serve(listener, live, limits, std::future::pending()).await;
        })
    });
    addr
}

async fn connect_plain(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn connect_tls(addr: SocketAddr, pki: &DevPki) -> SendRequest<Full<Bytes>> {
    let config = tls::client_config(std::slice::from_ref(&pki.ca_cert), &[b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `iters` requests one after the other on one connection.
async fn round_trips(
    sender: &mut SendRequest<Full<Bytes>>,
    path: &str,
    authorization: &str,
    iters: u64,
) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        sender.ready().await.unwrap();
        let request = Request::get(path)
            .header("host", "localhost")
            .header("authorization", authorization)
            .body(Full::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let _ = response.into_body().collect().await.unwrap();
    }
    started.elapsed()
}

fn benches(c: &mut Criterion) {
    let pki = DevPki::generate().unwrap();
    let upstream = start_upstream();
    let gateway = start_gateway(upstream, &pki);

    let key = Key::hmac(None, Alg::HS256, SECRET.as_bytes()).unwrap();
    let now = unix_now();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "sub": "42", "role": "user", "iat": now, "exp": now + 24 * 3600,
    }))
    .unwrap();
    let authorization = format!("Bearer {}", jwtgate::token::mint(&key, &claims));

    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("proxy");
    // Each connection is opened right before its benchmark: an idle one
    // would be closed by the gateway's header read timeout meanwhile.
    let mut direct = rt.block_on(connect_plain(upstream));
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| rt.block_on(round_trips(&mut direct, "/", &authorization, iters)))
    });
    let mut none = rt.block_on(connect_tls(gateway, &pki));
    group.bench_function("gateway/auth_none", |b| {
        b.iter_custom(|iters| rt.block_on(round_trips(&mut none, "/none", &authorization, iters)))
    });
    let mut required = rt.block_on(connect_tls(gateway, &pki));
    group.bench_function("gateway/auth_required", |b| {
        b.iter_custom(|iters| rt.block_on(round_trips(&mut required, "/", &authorization, iters)))
    });
    group.finish();
}

criterion_group!(proxy, benches);
criterion_main!(proxy);
