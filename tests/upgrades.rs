//! WebSocket upgrades pass through after authentication, with real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures_util::{SinkExt, StreamExt};
use support::{CONFIG, TestGateway, token};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

async fn connect(
    gateway: &TestGateway,
    token: Option<&str>,
) -> Result<support::WebSocket, WsError> {
    support::ws_connect(
        gateway.addr,
        std::slice::from_ref(&gateway.pki.ca_cert),
        "/ws/chat",
        token,
    )
    .await
}

#[tokio::test]
async fn authenticated_websocket_is_proxied_both_ways_with_verified_identity() {
    let (upstream, mut seen) = support::ws_upstream().await;
    let gateway = TestGateway::start(CONFIG, upstream).await;
    let mut ws = connect(&gateway, Some(&token("user"))).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().as_deref(), Some("42"));
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_without_a_valid_token_is_refused_before_the_upstream() {
    let (upstream, mut seen) = support::ws_upstream().await;
    let gateway = TestGateway::start(CONFIG, upstream).await;
    for token in [None, Some("not.a.token")] {
        match connect(&gateway, token).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
    assert!(seen.try_recv().is_err(), "the upstream saw a handshake");
}

#[tokio::test]
async fn websocket_is_closed_when_its_token_expires() {
    let (upstream, _seen) = support::ws_upstream().await;
    let config = CONFIG.replace("leeway = \"30s\"", "leeway = \"0s\"");
    let gateway = TestGateway::start(&config, upstream).await;
    let short = support::mint(serde_json::json!({
        "sub": "42", "role": "user", "exp": jwtgate::gateway::unix_now() + 2
    }));
    let mut ws = connect(&gateway, Some(&short)).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));
    // Within 3 s the token expires and the gateway closes both sides.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => {}
                Some(Ok(_)) | None | Some(Err(_)) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the tunnel outlived its token");
}

#[tokio::test]
async fn an_upgrade_to_h2c_goes_on_as_a_plain_request() {
    // A tunnel to the upstream's own HTTP/2 would carry requests past
    // routing and authentication ("h2c smuggling").
    let upstream = support::Upstream::start().await;
    let gateway = TestGateway::start(CONFIG, upstream.addr).await;
    let request = http::Request::get("/ws/chat")
        .header("authorization", format!("Bearer {}", token("user")))
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(http_body_util::Full::default())
        .unwrap();
    let reply = gateway.client().send(request).await;
    assert_eq!(reply.status, http::StatusCode::OK);
    let seen = upstream.last();
    for hop in ["upgrade", "http2-settings", "connection"] {
        assert_eq!(seen.header(hop), None, "{hop}");
    }
}

#[tokio::test]
async fn an_open_websocket_counts_against_max_connections() {
    let (upstream, _seen) = support::ws_upstream().await;
    let config = CONFIG.replace("[server]\n", "[server]\nmax_connections = 1\n");
    let gateway = TestGateway::start(&config, upstream).await;
    let mut ws = connect(&gateway, Some(&token("user"))).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    // The one connection is taken: another client waits in the backlog.
    let client = gateway.client();
    let waiting = tokio::spawn(async move { client.get("/public/x", None).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "served while the WebSocket was open"
    );
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    // The upstream is a WebSocket server: any HTTP answer will do.
    assert!(reply.status.as_u16() >= 200);
}
