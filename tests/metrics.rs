//! The admin listener and what it exports: counters move by exactly the
//! requests sent, failures carry their reason, the verification histogram
//! is labelled by algorithm and outcome, and proxied responses carry
//! `Server-Timing` unless it is switched off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

use jwtgate::config::Config;
use jwtgate::gateway::{Gateway, unix_now};
use support::{CONFIG, SECRET, TestGateway, Upstream, mint, mint_with, plain_get, raw_tls, token};

fn with_admin(config: &str) -> String {
    config.replace("[jwt]", "[admin]\nlisten = \"127.0.0.1:0\"\n\n[jwt]")
}

/// The value of the one sample line `series` (name with labels), e.g.
/// `jwtgate_requests_total{route="/",status="200"}`.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    })
}

fn is_server_timing(value: &str) -> bool {
    let Some(ms) = value.strip_prefix("jwt;dur=") else {
        return false;
    };
    !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[tokio::test]
async fn metrics_count_exactly_the_requests_sent_with_their_reasons() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&with_admin(CONFIG), upstream.addr).await;
    let admin = gateway.admin.unwrap();
    let client = gateway.client();
    let now = unix_now();
    let expired = mint(json!({ "sub": "42", "role": "user", "exp": now - 3600 }));
    let forged = mint_with(
        "another-secret-0123456789abcdef-0123",
        Some("k1"),
        json!({ "sub": "42", "role": "user", "exp": now + 900 }),
    );
    let user = token("user");

    for _ in 0..3 {
        let reply = client.get("/orders", Some(&user)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let timing = reply.header("server-timing").unwrap_or_default();
        assert!(is_server_timing(timing), "{timing:?}");
    }
    for _ in 0..2 {
        let reply = client.get("/orders", Some(&expired)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header("server-timing"), None);
    }
    let reply = client.get("/orders", Some(&forged)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        assert_eq!(
            client.get("/orders", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        client.get("/orders", Some("not-a-jwt")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = client.get("/admin", Some(&user)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let reply = client.get("/public/x", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        // No token was checked on a public route: nothing to time.
        assert_eq!(reply.header("server-timing"), None);
    }

    let (status, headers, text) = plain_get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );

    let requests = |route: &str, status: u16| {
        sample(
            &text,
            &format!("jwtgate_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(requests("/", 200), Some(3));
    assert_eq!(requests("/", 401), Some(2 + 1 + 2 + 1));
    assert_eq!(requests("/admin", 403), Some(1));
    assert_eq!(requests("/public", 200), Some(2));
    assert_eq!(text.matches("jwtgate_requests_total{").count(), 4, "{text}");

    let failures = |reason: &str| {
        sample(
            &text,
            &format!("jwtgate_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failures("expired"), Some(2));
    assert_eq!(failures("bad_signature"), Some(1));
    assert_eq!(failures("missing"), Some(2));
    assert_eq!(failures("malformed"), Some(1));
    assert_eq!(failures("forbidden_role"), Some(1));
    for reason in ["unknown_kid", "alg_not_allowed", "not_yet_valid", "other"] {
        assert_eq!(failures(reason), Some(0), "{reason}");
    }

    let verified = |alg: &str, outcome: &str| {
        sample(
            &text,
            &format!("jwtgate_jwt_verify_seconds_count{{alg=\"{alg}\",outcome=\"{outcome}\"}}"),
        )
    };
    // The forbidden request's token verified; the role policy refused it.
    assert_eq!(verified("HS256", "accepted"), Some(3 + 1));
    assert_eq!(verified("HS256", "rejected"), Some(2 + 1));
    assert_eq!(verified("unknown", "rejected"), Some(1));
    assert_eq!(verified("HS512", "accepted"), Some(0));
    assert_eq!(
        sample(
            &text,
            "jwtgate_jwt_verify_seconds_bucket{alg=\"HS256\",outcome=\"accepted\",le=\"+Inf\"}"
        ),
        Some(4)
    );
    assert_eq!(
        sample(&text, "jwtgate_upstream_seconds_count{upstream=\"app\"}"),
        Some(3 + 2)
    );
    // An HMAC-only deployment has no verified-token cache to report.
    assert!(!text.contains("jwtgate_verified_cache"), "{text}");
    assert_eq!(sample(&text, "jwtgate_connections_total"), Some(12));
    assert_eq!(sample(&text, "jwtgate_requests_in_flight"), Some(0));
    assert_eq!(upstream.count(), 5);
}

#[tokio::test]
async fn requests_hyper_answers_unparsed_are_counted_too() {
    let upstream = Upstream::start().await;
    // A head limit above hyper's own 64 KiB cap on the target, so that a
    // longer target gets hyper's 414.
    let config = with_admin(CONFIG).replace("[server]\n", "[server]\nmax_header_bytes = 131072\n");
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let admin = gateway.admin.unwrap();
    let oversized = format!(
        "GET / HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nhost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    let two_lengths = "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1\r\n\
                       content-length: 2\r\n\r\nab";
    let cases = [
        (oversized.as_str(), "431"),
        (long_target.as_str(), "414"),
        (two_lengths, "400"),
    ];
    for (request, status) in cases {
        let wait = Duration::from_secs(5);
        let reply = raw_tls(gateway.addr, &gateway.pki, request.as_bytes(), wait).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
    }

    // Counted when the connection ends, just after the client read the answer.
    let counted = |text: &str, status: u16| {
        let series = format!("jwtgate_requests_total{{route=\"unmatched\",status=\"{status}\"}}");
        sample(text, &series)
    };
    let mut text = String::new();
    for _ in 0..50 {
        text = plain_get(admin, "/metrics").await.2;
        if [431, 414, 400].iter().all(|&s| counted(&text, s).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for status in [431, 414, 400] {
        assert_eq!(counted(&text, status), Some(1), "{status}: {text}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn server_timing_can_be_switched_off() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\nserver_timing = false",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let reply = gateway.client().get("/orders", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("server-timing"), None);
}

#[tokio::test]
async fn upstream_server_timing_is_kept_beside_ours() {
    let upstream = Upstream::with(|_| async {
        http::Response::builder()
            .header("server-timing", "db;dur=12")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await;
    let gateway = TestGateway::default(&upstream).await;
    let reply = gateway.client().get("/orders", Some(&token("user"))).await;
    let values: Vec<&str> = reply
        .headers
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values[0], "db;dur=12");
    assert!(is_server_timing(values[1]), "{values:?}");
}

#[tokio::test]
async fn health_and_readiness_answer_once_serving() {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&with_admin(CONFIG), upstream.addr).await;
    let admin = gateway.admin.unwrap();
    // Serving is flagged as the accept loop starts; one request proves it ran.
    let _ = gateway.client().get("/public", None).await;
    assert_eq!(plain_get(admin, "/healthz").await.0, StatusCode::OK);
    let (status, _, body) = plain_get(admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    assert_eq!(plain_get(admin, "/nope").await.0, StatusCode::NOT_FOUND);
    // Another method: 405 where the path exists, 404 where it does not.
    for (path, status) in [("/metrics", "405"), ("/nope", "404")] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        let request = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
    }
}

#[tokio::test]
async fn readiness_is_503_until_the_gateway_serves() {
    let text = CONFIG.replace("UPSTREAM", "127.0.0.1:9");
    let config = Config::from_toml_str(&text, "test.toml", &|_| Some(SECRET.to_owned())).unwrap();
    let gateway = Arc::new(Gateway::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    tokio::spawn(jwtgate::admin::serve(
        listener,
        gateway.metrics().clone(),
        gateway.readiness().clone(),
        std::future::pending(),
    ));
    let (status, _, body) = plain_get(admin, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: serving\n");
    assert_eq!(plain_get(admin, "/healthz").await.0, StatusCode::OK);
    gateway.set_serving(true);
    assert_eq!(plain_get(admin, "/readyz").await.0, StatusCode::OK);
}
