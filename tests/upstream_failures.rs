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

#[tokio::test]
async fn an_upstream_that_accepts_and_never_answers_is_504_after_its_timeout() {
    let addr = raw_upstream(b"", false).await;
    let gateway = TestGateway::start(CONFIG, addr).await; // timeout = "1s"
    for client in [gateway.client(), gateway.h2_client()] {
        let started = Instant::now();
        let reply = client.get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(reply.json()["error"], "upstream_timeout");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_millis(2500),
            "{waited:?}"
        );
    }
}

#[tokio::test]
async fn a_response_cut_off_mid_body_is_an_error_for_the_client_not_a_short_success() {
    // Headers promise 100 bytes; the upstream sends 3 and closes. The status
    // is already on its way, so the gateway must end the client's message
    // abnormally (HTTP/1.1: close before the length; HTTP/2: RST_STREAM).
    let addr = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", true).await;
    let gateway = TestGateway::start(CONFIG, addr).await;
    for client in [gateway.client(), gateway.h2_client()] {
        let result = client
            .try_send(
                http::Request::get("/")
                    .header("authorization", format!("Bearer {}", token("user")))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert!(
            result.is_err(),
            "a truncated body was delivered as complete: {result:?}"
        );
    }
    // The gateway itself is unharmed.
    let reply = gateway.client().get("/nothing-here/..", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_content_length_beside_chunked_coding_is_not_forwarded() {
    // RFC 9112 §6.3: the chunked coding framed the body; the stale
    // Content-Length (1, 50) must not frame it again for the client.
    for length in ["1", "50"] {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        );
        let addr = raw_upstream(response.leak().as_bytes(), true).await;
        let gateway = TestGateway::start(CONFIG, addr).await;
        for client in [gateway.client(), gateway.h2_client()] {
            let reply = client.get("/", Some(&token("user"))).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.header("content-length"), None, "{length}");
            assert_eq!(reply.body, "hello world", "{length}");
        }
    }
}

#[tokio::test]
async fn a_response_coded_besides_chunked_is_502() {
    // hyper undoes only `chunked`: the client would get gzip bytes with no
    // coding named.
    let response =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let addr = raw_upstream(response, true).await;
    let gateway = TestGateway::start(CONFIG, addr).await;
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

/// An HTTP/1.1 keep-alive upstream that closes connections idle for `idle`,
/// the way nginx (`keepalive_timeout`) and Node (`keepAliveTimeout`) do.
async fn upstream_closing_idle_connections(idle: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let read = tokio::time::timeout(idle, stream.read(&mut buf)).await;
                    match read {
                        Ok(Ok(n)) if n > 0 => {
                            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                        // Idle too long, or the peer went away: close.
                        _ => return,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_closing_idle_keep_alive_connections_never_causes_a_502() {
    let addr = upstream_closing_idle_connections(Duration::from_millis(50)).await;
    let gateway = TestGateway::start(CONFIG, addr).await;
    let user = token("user");
    let client = gateway.client();
    // Pauses around the upstream's idle timeout, so some requests find their
    // pooled connection just closed.
    let mut statuses = Vec::new();
    for pause in [0u64, 10, 30, 45, 48, 50, 52, 55, 60, 80, 120].repeat(3) {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        statuses.push(client.get("/orders", Some(&user)).await.status);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_slow_response_body_streams_to_the_end_while_others_are_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let slow = String::from_utf8_lossy(&buf[..n]).contains("/slow");
                if slow {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
                        .await;
                    for byte in b"0123456789" {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        let _ = stream.write_all(&[*byte]).await;
                    }
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfast")
                        .await;
                }
            });
        }
    });
    let gateway = TestGateway::start(CONFIG, addr).await; // timeout = "1s": headers only
    let user = token("user");
    let slow = {
        let client = gateway.h2_client();
        let user = user.clone();
        tokio::spawn(async move { client.get("/slow", Some(&user)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let fast = gateway.client().get("/fast", Some(&user)).await;
    assert_eq!(&fast.body[..], b"fast");
    assert!(started.elapsed() < Duration::from_millis(500));
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(
        &slow.body[..],
        b"0123456789",
        "1.5 s of body outlives the 1 s header timeout"
    );
}

/// An upstream that answers the first request on each connection and
/// closes the connection when a second one arrives on it: the race where a
/// keep-alive close crosses the gateway's next request on the wire.
async fn upstream_closing_on_reuse() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                if !matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                let _ = stream.write_all(answer).await;
                let _ = stream.read(&mut buf).await;
                // Dropped: closed with the second request unanswered.
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_bodiless_idempotent_request_lost_to_a_closing_connection_is_retried_once() {
    let addr = upstream_closing_on_reuse().await;
    let gateway = TestGateway::start(CONFIG, addr).await;
    let user = token("user");
    let client = gateway.client();
    for method in [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::DELETE,
        http::Method::GET,
    ] {
        let reply = client
            .send(
                http::Request::builder()
                    .method(method.clone())
                    .uri("/orders")
                    .header("authorization", format!("Bearer {user}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{method}");
    }
    // A request with a body is not replayed: its body is already spent.
    let reply = client
        .send(
            http::Request::post("/orders")
                .header("authorization", format!("Bearer {user}"))
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}
