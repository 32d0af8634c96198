//! `cargo bench --bench proxy`: one request's round trip on loopback over a
//! kept-alive HTTP/1.1 connection, five ways in one run:
//!
//! - `direct`: plain HTTP straight to the upstream (the floor);
//! - `gateway/auth_none`: TLS + gateway, route with `auth = "none"`;
//! - `gateway/auth_required`: TLS + gateway, HS256 token verified;
//! - `gateway/https_upstream`: as `auth_required`, but the gateway reaches
//!   its upstream over TLS (HTTP/1.1, verified against a `ca_file`);
//! - `gateway/h2_upstream`: as `auth_required`, but the gateway speaks
//!   HTTP/2 to its upstream (`protocol = "h2"`, cleartext by prior
//!   knowledge), so the difference is HTTP/2's framing alone.
//!
//! Every request carries the same `Authorization` header, so the wire work
//! is identical and `auth_required / auth_none` is the verification share.
//!
//! Client, gateway and upstream are tasks on one single-threaded runtime on
//! the bench thread, talking over loopback TCP. A round trip is then the CPU
//! work of all three plus the kernel's, with no thread waking another: with
//! each on its own thread, as before, this 2-core VM's wake-up latency
//! (tens to hundreds of µs, varying run to run) swamped a difference of a
//! microsecond. After the three benchmarks, `auth_required / auth_none` is
//! also measured in alternating batches and printed (see the end of
//! `benches`). `PROXY_ROUND_TRIPS` (below) runs a fixed number of round
//! trips for instruction counts. `benches/load.sh` measures throughput and
//! CPU per request against HAProxy and nginx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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

[[upstream]]
name = "tls"
url = "https://localhost:TLS_PORT"
ca_file = "CA_FILE"

[[upstream]]
name = "h2"
url = "http://H2_UPSTREAM"
protocol = "h2"

[[route]]
path = "/tls"
upstream = "tls"

[[route]]
path = "/h2"
upstream = "h2"

[[route]]
path = "/none"
upstream = "app"
auth = "none"

[[route]]
path = "/"
upstream = "app"
"#;

/// How an upstream is spoken to.
#[derive(Clone, Copy)]
enum Wire {
    Http1,
    Https,
    H2c,
}

/// An upstream answering `ok` to everything, over `wire`; `Https` serves
/// the dev PKI's `localhost` certificate.
async fn start_upstream(wire: Wire, pki: &DevPki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = matches!(wire, Wire::Https).then(|| {
        let config =
            tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
        TlsAcceptor::from(config)
    });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = match (wire, acceptor) {
                    (Wire::H2c, _) => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    (_, Some(acceptor)) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await
                    }
                    (_, None) => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    addr
}

/// Upstreams of the gateway: plain HTTP/1.1, HTTPS and h2c.
struct Upstreams {
    plain: SocketAddr,
    https: SocketAddr,
    h2c: SocketAddr,
    /// The CA the gateway trusts for `https`.
    ca_file: PathBuf,
}

async fn start_gateway(upstreams: &Upstreams, pki: &DevPki) -> SocketAddr {
    let text = CONFIG
        .replace("H2_UPSTREAM", &upstreams.h2c.to_string())
        .replace("UPSTREAM", &upstreams.plain.to_string())
        .replace("TLS_PORT", &upstreams.https.port().to_string())
        .replace("CA_FILE", &upstreams.ca_file.display().to_string());
    let config = Config::from_toml_str(&text, "bench.toml", &|_| Some(SECRET.to_owned())).unwrap();
    let tls_config =
        tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits::from(&config.server);
    let live = Arc::new(Live::new(Gateway::new(config), tls_config));
    tokio::spawn(server::serve(
        listener,
        live,
        limits,
        std::future::pending(),
    ));
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca_file = std::env::temp_dir().join(format!("jwtgate-bench-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let upstreams = Upstreams {
        plain: rt.block_on(start_upstream(Wire::Http1, &pki)),
        https: rt.block_on(start_upstream(Wire::Https, &pki)),
        h2c: rt.block_on(start_upstream(Wire::H2c, &pki)),
        ca_file,
    };
    let gateway = rt.block_on(start_gateway(&upstreams, &pki));
    let upstream = upstreams.plain;

    let key = Key::hmac(None, Alg::HS256, SECRET.as_bytes()).unwrap();
    let now = unix_now();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "sub": "42", "role": "user", "iat": now, "exp": now + 24 * 3600,
    }))
    .unwrap();
    let authorization = format!("Bearer {}", jwtgate::token::mint(&key, &claims));

    // `PROXY_ROUND_TRIPS=N PROXY_PATH=/none` (or `/`, `/tls`, `/h2`): only
    // N round trips on that path, for instruction counts (`valgrind
    // --tool=callgrind`, N minus a smaller N cancels the set-up), then exit.
    if let Some(n) = std::env::var("PROXY_ROUND_TRIPS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        let path = std::env::var("PROXY_PATH").unwrap_or_else(|_| "/".to_owned());
        let mut sender = rt.block_on(connect_tls(gateway, &pki));
        rt.block_on(round_trips(&mut sender, &path, &authorization, n));
        let _ = std::fs::remove_file(&upstreams.ca_file);
        return;
    }

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
    let mut https = rt.block_on(connect_tls(gateway, &pki));
    group.bench_function("gateway/https_upstream", |b| {
        b.iter_custom(|iters| rt.block_on(round_trips(&mut https, "/tls", &authorization, iters)))
    });
    let mut h2 = rt.block_on(connect_tls(gateway, &pki));
    group.bench_function("gateway/h2_upstream", |b| {
        b.iter_custom(|iters| rt.block_on(round_trips(&mut h2, "/h2", &authorization, iters)))
    });
    group.finish();
    drop((https, h2));

    // Benchmarks run one after another, and this host's speed drifts
    // between them by more than the difference sought. So the ratio is also
    // measured in alternating batches on fresh connections. Printed: the
    // median of the per-pair ratios, and the ratio of each side's fastest
    // batch (interference only ever slows a batch down).
    drop((none, required));
    let mut none = rt.block_on(connect_tls(gateway, &pki));
    let mut required = rt.block_on(connect_tls(gateway, &pki));
    let mut times = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        let batch = |sender: &mut _, path| {
            rt.block_on(round_trips(sender, path, &authorization, BATCH))
                .as_secs_f64()
        };
        // Alternate which goes first: a steady drift then biases even and
        // odd pairs in opposite directions, and the median sees both.
        if pair % 2 == 0 {
            times.0.push(batch(&mut none, "/none"));
            times.1.push(batch(&mut required, "/"));
        } else {
            times.1.push(batch(&mut required, "/"));
            times.0.push(batch(&mut none, "/none"));
        }
    }
    let mut ratios: Vec<f64> = times.0.iter().zip(&times.1).map(|(n, r)| r / n).collect();
    ratios.sort_by(f64::total_cmp);
    let best = |t: &[f64]| t.iter().copied().fold(f64::MAX, f64::min) / BATCH as f64 * 1e6;
    let (none_us, required_us) = (best(&times.0), best(&times.1));
    eprintln!(
        "proxy: auth_required / auth_none over {PAIRS} alternating batches of {BATCH}: \
         median ratio {:.3} (range {:.3}-{:.3}); fastest batches {none_us:.1} vs \
         {required_us:.1} µs per round trip, ratio {:.3}",
        ratios[PAIRS / 2],
        ratios[0],
        ratios[PAIRS - 1],
        required_us / none_us,
    );
    let _ = std::fs::remove_file(&upstreams.ca_file);
}

/// Batches for the paired ratio: ~9 s in all at ~85 µs a round trip. Many
/// short batches: on this host a batch of 40 ms varies by ±40 %.
const PAIRS: usize = 101;
// Odd, so `ratios[PAIRS / 2]` is the median.
const _: () = assert!(PAIRS % 2 == 1);
const BATCH: u64 = 500;

criterion_group!(proxy, benches);
criterion_main!(proxy);
