//! Graceful shutdown: stop accepting, let in-flight requests finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use support::{TestGateway, Upstream};
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_and_new_connections_are_refused() {
    let upstream = Upstream::with(|_| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        Response::new(Full::new(Bytes::from_static(b"done")))
    })
    .await;
    let mut gateway = TestGateway::default(&upstream).await;
    let client = gateway.client();
    let in_flight = tokio::spawn(async move { client.get("/public/slow", None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.shutdown();
    // While the in-flight request drains, new clients are refused at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(gateway.addr).await.is_err());

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], b"done");
    tokio::time::timeout(Duration::from_secs(5), &mut gateway.task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(gateway.addr).await.is_err());
}
