//! The access line, read as JSON from the gateway's own log: written when
//! the response body has been sent or abandoned, numbers as numbers, and
//! upstream failures that say which address failed and why.
//!
//! Each test runs on one thread (`#[tokio::test]`), so the subscriber it
//! sets sees the gateway's tasks too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::{CONFIG, TestGateway, Upstream, tls_connect, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::fmt::MakeWriter;

/// Log lines written while it is set, as the binary writes them (JSON, one
/// object per line, fields at the top level).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(captured.clone())
            .json()
            .flatten_event(true)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn access_lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["target"] == "access")
            .collect()
    }

    /// Waits up to 5 s for the `n`th access line.
    async fn access_line(&self, n: usize) -> Value {
        for _ in 0..500 {
            if let Some(line) = self.access_lines().get(n) {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no access line {n}: {:?}", self.access_lines());
    }
}

const BIG: usize = 64 * 1024 * 1024;

#[tokio::test]
async fn an_aborted_download_is_logged_with_the_bytes_sent_and_not_completed() {
    let (log, _guard) = Captured::start();
    let big = Bytes::from(vec![b'a'; BIG]);
    let upstream = Upstream::with(move |_| {
        let big = big.clone();
        async move { Response::new(Full::new(big)) }
    })
    .await;
    let gateway = TestGateway::default(&upstream).await;

    let mut tls = tls_connect(gateway.addr, &gateway.pki, b"http/1.1").await;
    tls.write_all(b"GET /public/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut read = 0;
    let mut buf = vec![0; 64 * 1024];
    while read < 1024 * 1024 {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {read} bytes");
        read += n;
    }
    // The line waits for the body: nothing is logged while it streams.
    assert!(log.access_lines().is_empty(), "{:?}", log.access_lines());
    drop(tls);

    let line = log.access_line(0).await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["completed"], false, "{line}");
    let bytes = line["bytes"].as_u64().expect("bytes is a number");
    assert!(
        bytes >= (read as u64).saturating_sub(64 * 1024) && bytes < BIG as u64,
        "{bytes} logged, {read} read: {line}"
    );
    assert!(line["total_us"].is_u64(), "{line}");

    // HTTP/2: the client resets the stream after 1 MiB.
    let tls = tls_connect(gateway.addr, &gateway.pki, b"h2").await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get("https://localhost/public/big")
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let mut read = 0;
    while read < 1024 * 1024 {
        let data = body.data().await.unwrap().unwrap();
        read += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    drop(body);
    let line = log.access_line(1).await;
    assert_eq!(line["completed"], false, "{line}");
    let bytes = line["bytes"].as_u64().expect("bytes is a number");
    assert!(
        bytes >= read as u64 && bytes < BIG as u64,
        "{bytes} logged, {read} read"
    );
}

#[tokio::test]
async fn a_finished_response_is_logged_with_numbers_as_numbers() {
    let (log, _guard) = Captured::start();
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    for protocol in [support::Protocol::Http1, support::Protocol::Http2] {
        let client = match protocol {
            support::Protocol::Http1 => gateway.client(),
            support::Protocol::Http2 => gateway.h2_client(),
        };
        let reply = client.get("/orders", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for n in 0..2 {
        let line = log.access_line(n).await;
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["bytes"], 2, "{line}");
        assert_eq!(line["completed"], true, "{line}");
        for number in ["jwt_us", "upstream_ms"] {
            assert!(line[number].as_f64().is_some(), "{number}: {line}");
        }
        assert!(line["total_us"].is_u64(), "{line}");
        assert_eq!(line["upstream_addr"], upstream.addr.to_string(), "{line}");
    }
    // No token checked: no jwt_us at all, rather than a placeholder string.
    gateway.client().get("/public/x", None).await;
    let line = log.access_line(2).await;
    assert!(line.get("jwt_us").is_none(), "{line}");
}

#[tokio::test]
async fn a_refused_upstream_is_logged_with_its_address_and_the_os_error() {
    let (log, _guard) = Captured::start();
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gateway = TestGateway::start(CONFIG, closed).await;
    let reply = gateway.client().get("/orders", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let line = log.access_line(0).await;
    assert_eq!(line["status"], 502, "{line}");
    assert_eq!(line["upstream_addr"], closed.to_string(), "{line}");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("cannot connect to upstream app") && error.contains("Connection refused"),
        "{line}"
    );
}
