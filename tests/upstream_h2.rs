//! HTTP/2 to upstreams (`protocol = "h2"`): by ALPN over TLS, by prior
//! knowledge in cleartext; whatever the client speaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use support::{CONFIG, TestGateway, token};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use jwtgate::tls::{self, DevPki};

/// An upstream that speaks only HTTP/2 (over TLS offering only `h2` when
/// `tls` is given) and answers with the version, authority, user and body
/// it received.
async fn h2_upstream(tls: Option<&DevPki>) -> SocketAddr {
    let acceptor = tls.map(|pki| {
        let mut config = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let header = |name| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    let seen = format!(
                        "{:?} {} user={}",
                        request.version(),
                        request.uri().authority().map_or("-", |a| a.as_str()),
                        header("x-user-id"),
                    );
                    let te = header("te");
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let response = Response::builder()
                        .header("x-seen", seen)
                        .header("x-te", te)
                        .body(Full::new(body))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                });
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        builder.serve_connection(TokioIo::new(tls), service).await
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_h2c_upstream_gets_http2_by_prior_knowledge_from_http1_clients() {
    let upstream = h2_upstream(None).await;
    let config = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        "url = \"http://UPSTREAM\"\nprotocol = \"h2\"",
    );
    let gateway = TestGateway::start(&config, upstream).await;

    for _ in 0..3 {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("x-seen").unwrap(),
            format!("HTTP/2.0 {upstream} user=42")
        );
    }
    let request = Request::post("/")
        .header("authorization", format!("Bearer {}", token("user")))
        .body(Full::new(Bytes::from_static(b"a body")))
        .unwrap();
    let reply = gateway.h2_client().send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "a body");
}

#[tokio::test]
async fn an_https_h2_upstream_is_reached_by_alpn() {
    let pki = DevPki::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("jwtgate-up-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let upstream = h2_upstream(Some(&pki)).await;
    let config = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!(
            "url = \"https://localhost:{}\"\nprotocol = \"h2\"\nca_file = {:?}",
            upstream.port(),
            dir.join("ca.pem")
        ),
    );
    let gateway = TestGateway::start(&config, upstream).await;

    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("x-seen").unwrap(),
        format!("HTTP/2.0 localhost:{} user=42", upstream.port())
    );
}

/// A gRPC-looking unary call over HTTP/2 (framing is not checked by the
/// gateway): POST with `content-type: application/grpc`.
fn grpc_call(path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // One empty message: the compressed flag and a zero length.
    request
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap()
}

#[tokio::test]
async fn refused_grpc_calls_get_grpc_status_codes_not_http_ones() {
    let upstream = h2_upstream(None).await;
    let config = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        "url = \"http://UPSTREAM\"\nprotocol = \"h2\"",
    );
    let gateway = TestGateway::start(&config, upstream).await;
    let client = gateway.h2_client();

    let cases = [
        ("/pkg.Svc/Call", None, "16"),
        ("/admin/pkg.Svc/Call", Some(token("user")), "7"),
        ("/nowhere", Some("not-a-token".to_owned()), "16"),
    ];
    for (path, token, code) in cases {
        let reply = client.send(grpc_call(path, token.as_deref())).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/grpc"));
        assert_eq!(reply.header("grpc-status"), Some(code), "{path}");
        assert!(reply.header("grpc-message").is_some_and(|m| !m.is_empty()));
        assert!(reply.body.is_empty());
    }
    // The same refusal without gRPC's content type stays an HTTP 401.
    let reply = client.get("/pkg.Svc/Call", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A passing call reaches the upstream.
    let reply = client
        .send(grpc_call("/pkg.Svc/Call", Some(&token("user"))))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("grpc-status"), None);
}

#[tokio::test]
async fn a_grpc_call_to_a_down_upstream_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let gateway = TestGateway::start(CONFIG, closed).await;
    let reply = gateway
        .h2_client()
        .send(grpc_call("/pkg.Svc/Call", Some(&token("user"))))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("grpc-status"), Some("14"));
}
