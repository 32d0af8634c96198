//! TLS termination: ALPN picks the protocol, plaintext and stalled
//! handshakes are refused without disturbing other clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use support::{TestGateway, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn alpn_negotiates_http2_or_http1() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    let h2 = gateway.h2_client().get("/public/x", None).await;
    assert_eq!((h2.status, h2.version), (StatusCode::OK, Version::HTTP_2));
    let h1 = gateway.client().get("/public/x", None).await;
    assert_eq!((h1.status, h1.version), (StatusCode::OK, Version::HTTP_11));
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_gets_no_http_response() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(b"GET /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .unwrap()
        .ok();
    assert!(
        !reply.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_cut_off_and_others_are_served() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await; // handshake_timeout = "2s"
    let mut idle = TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    // Meanwhile a normal client is served.
    assert_eq!(
        gateway.client().get("/public/x", None).await.status,
        StatusCode::OK
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection should be closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_client_that_sends_headers_too_slowly_is_cut_off() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await; // header_read_timeout = "2s"
    let started = Instant::now();
    let reply = support::raw_tls(
        gateway.addr,
        &gateway.pki,
        b"GET /public/x HTTP/1.1\r\nHost: loc",
        Duration::from_secs(10),
    )
    .await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(upstream.count(), 0);
}
