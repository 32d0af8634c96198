//! Connection-level abuse: slow header senders, HTTP/2 stream limits and
//! reset floods. The gateway bounds each and keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use support::{CONFIG, TestGateway, Upstream, tls_connect, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_byte_at_a_time_clients_are_cut_off_and_a_normal_client_is_served() {
    let upstream = Upstream::start().await;
    let config = CONFIG
        .replace(
            "header_read_timeout = \"2s\"",
            "header_read_timeout = \"1s\"",
        )
        .replace("handshake_timeout = \"2s\"", "handshake_timeout = \"10s\"");
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let head = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut slow = Vec::new();
    // Connect in batches so the test measures the header timeout, not a
    // handshake storm on a debug build.
    for _ in 0..10 {
        for _ in 0..50 {
            let tls = tls_connect(gateway.addr, &gateway.pki, b"http/1.1").await;
            slow.push(tokio::spawn(async move {
                let started = Instant::now();
                let (mut read, mut write) = tokio::io::split(tls);
                let trickle = async {
                    for byte in head {
                        if write.write_all(&[*byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    std::future::pending::<()>().await;
                };
                let mut answer = Vec::new();
                tokio::select! {
                    () = trickle => unreachable!(),
                    _ = read.read_to_end(&mut answer) => {}
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                (started.elapsed(), answer)
            }));
        }
    }
    // All 500 are mid-header now; an ordinary client is served promptly.
    let started = Instant::now();
    let reply = gateway.client().get("/public/x", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    for task in slow {
        let (lasted, answer) = task.await.unwrap();
        assert!(
            lasted < Duration::from_secs(4),
            "a slow client lasted {lasted:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert_eq!(upstream.count(), 1, "no slow request was ever forwarded");
}

#[tokio::test]
async fn connections_without_a_request_are_closed_at_the_header_timeout() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "header_read_timeout = \"2s\"",
        "header_read_timeout = \"1s\"",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    // Silent after the handshake, or one byte of the HTTP/2 preface (its
    // handshake has no timeout of its own).
    for (alpn, sent) in [(&b"http/1.1"[..], &b""[..]), (b"h2", b""), (b"h2", b"P")] {
        let mut client = tls_connect(gateway.addr, &gateway.pki, alpn).await;
        client.write_all(sent).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        assert!(closed.is_ok(), "still open after 5 s ({alpn:?}, {sent:?})");
        let lasted = started.elapsed();
        assert!(
            lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(3),
            "{lasted:?}"
        );
    }

    // An HTTP/2 connection idle after a request is closed (GOAWAY) too,
    // one to two header timeouts after its last response.
    let (_send, connection, _) = h2_client(&gateway).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");

    // A client that speaks at once is served as before.
    let reply = gateway.client().get("/public/x", None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_never_reads_its_response_is_cut_off() {
    // HTTP/2 with a flow-control window of 0 that is never opened: the
    // gateway's 401 body can never be sent.
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "header_read_timeout = \"2s\"",
        "header_read_timeout = \"1s\"",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let tls = tls_connect(gateway.addr, &gateway.pki, b"h2").await;
    let (mut send, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("https://localhost:{}/orders", gateway.addr.port()))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), connection).await;
    assert!(ended.is_ok(), "a stalled reader kept its connection");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Everyone else is served.
    let reply = gateway.client().get("/public/x", None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// An HTTP/2 connection driven by the `h2` crate, so the test can see the
/// server's settings and send frames a polite client would not.
async fn h2_client(
    gateway: &TestGateway,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
    usize,
) {
    let tls = tls_connect(gateway.addr, &gateway.pki, b"h2").await;
    let (mut send, mut connection) = h2::client::handshake(tls).await.unwrap();
    // One request, so the server's SETTINGS have certainly arrived.
    let request = Request::get(format!(
        "https://localhost:{}/public/x",
        gateway.addr.port()
    ))
    .body(())
    .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let status = tokio::select! {
        response = response => response.unwrap().status(),
        result = &mut connection => panic!("connection ended: {result:?}"),
    };
    assert_eq!(status, StatusCode::OK);
    let max_streams = connection.max_concurrent_send_streams();
    (send, tokio::spawn(connection), max_streams)
}

#[tokio::test]
async fn http2_concurrent_streams_are_bounded() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    let (_send, _connection, max_streams) = h2_client(&gateway).await;
    assert_eq!(max_streams, 128);
}

#[tokio::test]
async fn http2_rapid_reset_flood_ends_that_connection_and_others_are_served() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    let (mut send, connection, _) = h2_client(&gateway).await;
    let uri = format!("https://localhost:{}/orders", gateway.addr.port());
    let auth = format!("Bearer {}", token("user"));
    let mut sent = 0;
    for _ in 0..10_000 {
        let request = Request::post(&uri)
            .header("authorization", &auth)
            .body(())
            .unwrap();
        let ready = match tokio::time::timeout(Duration::from_secs(5), send.ready()).await {
            Ok(Ok(ready)) => ready,
            _ => break,
        };
        send = ready;
        let Ok((_, mut stream)) = send.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    // The client queues faster than the server reads; the server answers the
    // flood with GOAWAY ENHANCE_YOUR_CALM (h2's pending-accept reset limit).
    match ended {
        // GOAWAY, or the socket closed under a client still writing.
        Ok(Ok(Err(err))) => assert!(
            err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
            "after {sent} resets: {err}"
        ),
        other => panic!("after {sent} resets the connection is still open: {other:?}"),
    }
    // Other clients never noticed.
    let started = Instant::now();
    let reply = gateway.h2_client().get("/public/x", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        upstream.count() < sent,
        "{} of {sent} reset requests reached the upstream",
        upstream.count()
    );
}
