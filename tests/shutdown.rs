//! Graceful shutdown: stop accepting, let in-flight requests finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use http_body_util::Full;
use support::{TestGateway, Upstream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

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

#[tokio::test]
async fn an_open_websocket_holds_the_drain_until_the_grace_and_is_then_closed() {
    let (upstream, _seen) = support::ws_upstream().await;
    let config = support::CONFIG.replace("shutdown_grace = \"5s\"", "shutdown_grace = \"2s\"");
    let mut gateway = TestGateway::start(&config, upstream).await;
    let mut ws = support::ws_connect(
        gateway.addr,
        std::slice::from_ref(&gateway.pki.ca_cert),
        "/ws/chat",
        Some(&support::token("user")),
    )
    .await
    .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let started = Instant::now();
    gateway.shutdown();
    // The drain waits for the tunnel, which keeps working meanwhile.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !gateway.task.is_finished(),
        "the drain did not wait for the WebSocket"
    );
    ws.send(Message::text("draining")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("draining"));

    // At the end of the grace the gateway closes it and stops.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => {}
                Some(Ok(_)) | None | Some(Err(_)) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the WebSocket outlived the grace");
    tokio::time::timeout(Duration::from_secs(2), &mut gateway.task)
        .await
        .unwrap()
        .unwrap();
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(1900) && lasted < Duration::from_secs(4),
        "{lasted:?}"
    );
}
