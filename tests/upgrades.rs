//! WebSocket upgrades pass through after authentication, with real clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

mod support;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use support::{CONFIG, TestGateway, token};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A WebSocket echo upstream; reports the identity headers of each handshake.
async fn ws_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let callback =
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        let user = request
                            .headers()
                            .get("x-user-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let _ = seen.send(user);
                        Ok(response)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn connect(
    gateway: &TestGateway,
    token: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, WsError>
{
    let config =
        jwtgate::tls::client_config(std::slice::from_ref(&gateway.pki.ca_cert), &[b"http/1.1"])
            .unwrap();
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/ws/chat", gateway.addr.port())
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
        .headers_mut()
        .insert("x-user-id", "spoofed".parse().unwrap());
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn authenticated_websocket_is_proxied_both_ways_with_verified_identity() {
    let (upstream, mut seen) = ws_upstream().await;
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
    let (upstream, mut seen) = ws_upstream().await;
    let gateway = TestGateway::start(CONFIG, upstream).await;
    for token in [None, Some("not.a.token")] {
        match connect(&gateway, token).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
    assert!(seen.try_recv().is_err(), "the upstream saw a handshake");
}
