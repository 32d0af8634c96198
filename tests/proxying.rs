//! Transparency: what the client sends reaches the upstream and back, minus
//! what must not cross the gateway; HTTP/1.1 and HTTP/2 clients alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use support::{Protocol, Reply, TestGateway, Upstream, token};

async fn setup() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    (upstream, gateway)
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", token("user")))
}

async fn both(gateway: &TestGateway, build: impl Fn() -> Request<Full<Bytes>>) -> [Reply; 2] {
    [
        gateway.client().send(build()).await,
        gateway.h2_client().send(build()).await,
    ]
}

#[tokio::test]
async fn method_path_query_and_body_pass_through_on_http1_and_http2() {
    let (upstream, gateway) = setup().await;
    let replies = both(&gateway, || {
        request(Method::PUT, "/orders/7?expand=items&x=%20y")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"qty\":3}")))
            .unwrap()
    })
    .await;
    assert_eq!(replies[0].version, Version::HTTP_11);
    assert_eq!(replies[1].version, Version::HTTP_2);
    for (reply, seen) in replies.iter().zip(upstream.seen()) {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(&reply.body[..], b"ok");
        assert_eq!(seen.method, Method::PUT);
        assert_eq!(seen.target, "/orders/7?expand=items&x=%20y");
        assert_eq!(&seen.body[..], b"{\"qty\":3}");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("x-user-id"), Some("42"));
    }
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_the_upstream_in_any_spelling() {
    let (upstream, gateway) = setup().await;
    for path in ["/public/x", "/maybe", "/orders"] {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let client = match protocol {
                Protocol::Http1 => gateway.client(),
                Protocol::Http2 => gateway.h2_client(),
            };
            let mut builder = Request::builder()
                .method(Method::OPTIONS)
                .uri(path)
                .header("X-User-Id", "1")
                .header("x-role", "admin")
                .header("X_User_Id", "1")
                .header("X_ROLE", "admin");
            if path == "/orders" {
                builder = builder.header("authorization", format!("Bearer {}", token("user")));
            }
            if protocol == Protocol::Http1 {
                builder = builder.header("connection", "X-User-Id, X-Role");
            }
            let reply = client.send(builder.body(Full::default()).unwrap()).await;
            assert_eq!(reply.status, StatusCode::OK, "{path} {protocol:?}");
            let seen = upstream.last();
            let ids: Vec<_> = seen.headers.get_all("x-user-id").iter().collect();
            let roles: Vec<_> = seen.headers.get_all("x-role").iter().collect();
            if path == "/orders" {
                assert_eq!(ids, ["42"], "{path} {protocol:?}");
                assert_eq!(roles, ["user"], "{path} {protocol:?}");
            } else {
                assert!(ids.is_empty() && roles.is_empty(), "{path} {protocol:?}");
            }
            assert!(seen.header("x_user_id").is_none() && seen.header("x_role").is_none());
            assert!(seen.header("authorization").is_none());
        }
    }
}

#[tokio::test]
async fn forwarding_headers_are_set_by_the_gateway() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .client()
        .send(
            request(Method::GET, "/")
                .header("host", "api.example.com")
                .header("x-forwarded-for", "6.6.6.6")
                .header("x-forwarded-proto", "http")
                .header("forwarded", "for=6.6.6.6")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.example.com"));
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn repeated_response_headers_survive_and_hop_by_hop_ones_are_dropped() {
    let upstream = Upstream::with(|_| async {
        Response::builder()
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap()
    })
    .await;
    let gateway = TestGateway::default(&upstream).await;
    for reply in both(&gateway, || {
        request(Method::GET, "/").body(Full::default()).unwrap()
    })
    .await
    {
        let cookies: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(reply.header("x-internal").is_none());
        assert!(reply.header("keep-alive").is_none());
    }
}

#[tokio::test]
async fn request_hop_by_hop_headers_are_not_forwarded() {
    let (upstream, gateway) = setup().await;
    gateway
        .client()
        .send(
            request(Method::GET, "/")
                .header("connection", "keep-alive, x-drop-me")
                .header("x-drop-me", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-authorization", "Basic eA==")
                .header("te", "trailers")
                .header("x-keep-me", "1")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    let seen = upstream.last();
    for gone in ["x-drop-me", "keep-alive", "proxy-authorization", "te"] {
        assert!(seen.header(gone).is_none(), "{gone}");
    }
    assert_eq!(seen.header("x-keep-me"), Some("1"));
}

#[tokio::test]
async fn large_bodies_stream_through_both_ways() {
    let upstream = Upstream::with(|seen| {
        let size = seen.body.len();
        async move { Response::new(Full::new(Bytes::from(vec![b'z'; size * 2]))) }
    })
    .await;
    let gateway = TestGateway::default(&upstream).await;
    let body = Bytes::from(vec![b'a'; 3 * 1024 * 1024]);
    for reply in both(&gateway, || {
        request(Method::POST, "/upload")
            .body(Full::new(body.clone()))
            .unwrap()
    })
    .await
    {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 6 * 1024 * 1024);
    }
    assert!(upstream.seen().iter().all(|s| s.body == body));
}

#[tokio::test]
async fn unknown_path_gets_404_at_the_edge() {
    let upstream = Upstream::start().await;
    let config = support::CONFIG.replace("[[route]]\npath = \"/\"\nupstream = \"app\"\n", "");
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let reply = gateway.client().get("/nowhere", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn path_tricks_route_and_forward_the_same_normalised_path() {
    let (upstream, gateway) = setup().await;
    let user = token("user");
    // Each of these is /admin in disguise: the admin rule must apply (403 for a user).
    for path in [
        "/admin/../admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/public/../admin",
        "/admin/x/..",
    ] {
        let reply = gateway.client().get(path, Some(&user)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Ambiguous encodings are refused outright.
    for path in [
        "/admin%2fusers",
        "/public%2f..%2fadmin",
        "/public/..%2fadmin",
        "/admin;x=1",
        "/public/%2e%2e;/admin",
        "/a%00",
        "/a%zz",
    ] {
        let reply = gateway.client().get(path, Some(&user)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
    }
    assert_eq!(upstream.count(), 0);
    // Routes are case-sensitive; the upstream receives the routed path.
    let reply = gateway.client().get("/public/a/./b/../c", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().target, "/public/a/c");
    let reply = gateway.client().get("/PUBLIC/x", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn upstream_base_path_is_prefixed() {
    let upstream = Upstream::start().await;
    let config =
        support::CONFIG.replace("url = \"http://UPSTREAM\"", "url = \"http://UPSTREAM/v1/\"");
    let gateway = TestGateway::start(&config, upstream.addr).await;
    gateway.client().get("/public/x?y=1", None).await;
    assert_eq!(upstream.last().target, "/v1/public/x?y=1");
}

/// Every upstream's requests reach its own configured address, named by IP
/// or by a host name to resolve, with that address as the Host header.
#[tokio::test]
async fn each_upstream_is_reached_at_its_configured_address_by_ip_or_name() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let config = support::CONFIG.replace(
        "[[route]]\npath = \"/public\"",
        &format!(
            "[[upstream]]\nname = \"named\"\nurl = \"http://localhost:{}/named\"\n\n\
             [[route]]\npath = \"/public/named\"\nupstream = \"named\"\nauth = \"none\"\n\n\
             [[route]]\npath = \"/public\"",
            second.addr.port()
        ),
    );
    let gateway = TestGateway::start(&config, first.addr).await;
    let client = gateway.client();
    for _ in 0..3 {
        assert_eq!(client.get("/public/a", None).await.status, StatusCode::OK);
        assert_eq!(
            client.get("/public/named/b", None).await.status,
            StatusCode::OK
        );
    }
    let first_host = first.addr.to_string();
    let second_host = format!("localhost:{}", second.addr.port());
    let (first, second) = (first.seen(), second.seen());
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 3);
    for seen in &first {
        assert_eq!(seen.target, "/public/a");
        assert_eq!(seen.header("host"), Some(first_host.as_str()));
    }
    for seen in &second {
        assert_eq!(seen.target, "/named/public/named/b");
        assert_eq!(seen.header("host"), Some(second_host.as_str()));
    }
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests() {
    // One TLS connection, several requests: the pooled upstream client and
    // the HTTP/1.1 server both keep their connections.
    let (upstream, gateway) = setup().await;
    let reply = support::raw_tls(
        gateway.addr,
        &gateway.pki,
        b"GET /public/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /public/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /public/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn request_ids_are_kept_when_plausible_generated_otherwise_and_echoed() {
    let (upstream, gateway) = setup().await;
    let kept = gateway
        .client()
        .send(
            request(Method::GET, "/")
                .header("x-request-id", "trace-abc.123")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(kept.header("x-request-id"), Some("trace-abc.123"));
    assert_eq!(
        upstream.last().header("x-request-id"),
        Some("trace-abc.123")
    );

    let replaced = gateway
        .client()
        .send(
            request(Method::GET, "/")
                .header("x-request-id", "evil id\t{\"x\":1}")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    let id = replaced.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(upstream.last().header("x-request-id"), Some(id.as_str()));

    // The id is the gateway's header: naming it in `Connection` does not
    // keep it from the upstream.
    let named = gateway
        .client()
        .send(
            request(Method::GET, "/")
                .header("x-request-id", "trace-kept")
                .header("connection", "x-request-id")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(named.header("x-request-id"), Some("trace-kept"));
    assert_eq!(upstream.last().header("x-request-id"), Some("trace-kept"));

    // Refusals at the edge carry an id too, for support tickets.
    let refused = gateway.client().get("/orders", None).await;
    assert_eq!(refused.header("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn http2_cookie_fields_reach_the_upstream_as_one_header() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .h2_client()
        .send(
            request(Method::GET, "/")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookies: Vec<_> = upstream
        .last()
        .headers
        .get_all("cookie")
        .iter()
        .cloned()
        .collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}

#[tokio::test]
async fn missing_or_ambiguous_hosts_are_400_and_absolute_form_authority_wins() {
    let (upstream, gateway) = setup().await;
    let wait = Duration::from_secs(5);
    for (name, raw) in [
        (
            "two Host headers",
            "GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ),
        (
            "no Host",
            "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let reply = support::raw_tls(gateway.addr, &gateway.pki, raw.as_bytes(), wait).await;
        assert!(
            String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
            "{name}"
        );
    }
    assert_eq!(upstream.count(), 0);
    let raw = "GET https://api.example.com/public/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n";
    let reply = support::raw_tls(gateway.addr, &gateway.pki, raw.as_bytes(), wait).await;
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    assert_eq!(
        upstream.last().header("x-forwarded-host"),
        Some("api.example.com")
    );
}

#[tokio::test]
async fn head_is_allowed_where_get_is() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .client()
        .send(
            Request::head("/admin")
                .header("authorization", format!("Bearer {}", token("admin")))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().method, Method::HEAD);
}

#[tokio::test]
async fn raw_utf8_and_its_escaped_form_route_and_forward_the_same() {
    let (upstream, gateway) = setup().await;
    let raw = "GET /public/caf\u{e9}%41 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let reply = support::raw_tls(
        gateway.addr,
        &gateway.pki,
        raw.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(upstream.last().target, "/public/caf%C3%A9A");
    gateway.client().get("/public/caf%c3%a9A", None).await;
    assert_eq!(upstream.last().target, "/public/caf%C3%A9A");
}
