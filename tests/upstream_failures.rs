//! Upstream faults get precise statuses, fast, and the gateway keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use support::{CONFIG, TestGateway, Upstream, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn refused_connection_is_502_in_milliseconds_and_recovers_when_the_upstream_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let gateway = TestGateway::start(CONFIG, addr).await;
    let started = Instant::now();
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.json()["error"], "bad_gateway");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let upstream = Upstream::on(TcpListener::bind(addr).await.unwrap(), |_| async {
        Response::new(Full::new(Bytes::from_static(b"back")))
    });
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn slow_upstream_is_504_after_its_timeout_and_the_gateway_keeps_serving() {
    let upstream = Upstream::with(|seen| {
        let slow = seen.target.starts_with("/slow");
        async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Response::new(Full::new(Bytes::from_static(b"ok")))
        }
    })
    .await;
    let gateway = TestGateway::default(&upstream).await; // upstream timeout = "1s"
    let user = token("user");
    let client = gateway.client();
    let started = Instant::now();
    let (slow, fast) = tokio::join!(client.get("/slow", Some(&user)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.get("/fast", Some(&user)).await
    });
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    assert_eq!(fast.status, StatusCode::OK);
}

/// An upstream speaking raw bytes: `respond` gets each accepted socket.
async fn raw_upstream(respond: &'static [u8], then_close: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(respond).await;
                if then_close {
                    let _ = stream.shutdown().await;
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn garbage_or_a_reset_before_the_response_is_502() {
    for (respond, name) in [
        (&b"this is not http\r\n\r\n"[..], "garbage"),
        (&b""[..], "closed without answering"),
    ] {
        let addr = raw_upstream(respond, true).await;
        let gateway = TestGateway::start(CONFIG, addr).await;
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{name}");
    }
}

#[tokio::test]
async fn response_bodies_stream_before_the_upstream_finishes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stream.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
    });
    let gateway = TestGateway::start(CONFIG, addr).await;

    // A raw TLS client sees the first chunk long before the last.
    let started = Instant::now();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("user")
    );
    let first = support::raw_tls(
        gateway.addr,
        &gateway.pki,
        request.as_bytes(),
        Duration::from_millis(1000),
    )
    .await;
    let text = String::from_utf8_lossy(&first);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first") && !text.contains("last"), "{text}");
    assert!(started.elapsed() < Duration::from_millis(1900));
}
