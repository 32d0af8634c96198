//! Hostile clients, end to end: token and header tricks, path tricks, HTTP
//! framing and limits. Each case says what the client gets and what the
//! upstream saw. Verifier internals are unit-tested in `src/jwt/tests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::{
    CONFIG, Protocol, TestGateway, Upstream, raw_tls_closed, statuses, tls_connect, token,
};

async fn setup() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    (upstream, gateway)
}

fn client(gateway: &TestGateway, protocol: Protocol) -> support::Client {
    match protocol {
        Protocol::Http1 => gateway.client(),
        Protocol::Http2 => gateway.h2_client(),
    }
}

const BOTH: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

// ---- 1. tokens in headers and the query -------------------------------------

#[tokio::test]
async fn authorization_header_shapes_get_their_answer_and_only_valid_bearers_pass() {
    let (upstream, gateway) = setup().await;
    let user = token("user");
    let ok = StatusCode::OK;
    let cases: Vec<(&str, Vec<String>, StatusCode)> = vec![
        ("lower-case scheme", vec![format!("bearer {user}")], ok),
        ("upper-case scheme", vec![format!("BEARER {user}")], ok),
        ("mixed-case scheme", vec![format!("bEaReR {user}")], ok),
        ("two spaces", vec![format!("Bearer  {user}")], ok),
        (
            "two identical headers",
            vec![format!("Bearer {user}"), format!("Bearer {user}")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "bearer and basic",
            vec![format!("Bearer {user}"), "Basic dXNlcjpwYXNz".into()],
            StatusCode::BAD_REQUEST,
        ),
        (
            "basic scheme",
            vec!["Basic dXNlcjpwYXNz".into()],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "token scheme",
            vec![format!("Token {user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "digest scheme",
            vec![format!("Digest {user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "scheme glued to token",
            vec![format!("Bearer{user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tab separator",
            vec![format!("Bearer\t{user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "bare scheme",
            vec!["Bearer".into()],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "empty token",
            vec!["Bearer ".into()],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "empty header",
            vec![String::new()],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "two tokens",
            vec![format!("Bearer {user} {user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "comma list",
            vec![format!("Bearer {user}, Bearer {user}")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "quoted token",
            vec![format!("Bearer \"{user}\"")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "token68 padding",
            vec![format!("Bearer {user}==")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "UTF-8 beyond ASCII: a malformed token",
            vec!["Bearer \u{e9}.a.b".into()],
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for protocol in BOTH {
        for (name, values, want) in &cases {
            let mut request = Request::get("/orders");
            for v in values {
                request = request.header(
                    "authorization",
                    http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
            let reply = client(&gateway, protocol)
                .send(request.body(Full::default()).unwrap())
                .await;
            assert_eq!(reply.status, *want, "{name} over {protocol:?}");
            if *want == StatusCode::OK {
                assert!(upstream.last().header("authorization").is_none());
            }
        }
        // Octets that are not UTF-8: a Bearer credential cannot be read
        // (400); another scheme's is simply no token (401 on this route).
        for (value, want) in [
            (&b"Bearer \xe9.a.b"[..], StatusCode::BAD_REQUEST),
            (b"Digest username=\"\xe9\"", StatusCode::UNAUTHORIZED),
        ] {
            let request = Request::get("/orders")
                .header(
                    "authorization",
                    http::HeaderValue::from_bytes(value).unwrap(),
                )
                .body(Full::default())
                .unwrap();
            let reply = client(&gateway, protocol).send(request).await;
            assert_eq!(reply.status, want, "{value:?} over {protocol:?}");
        }
    }
    let passed = cases.iter().filter(|c| c.2 == StatusCode::OK).count();
    assert_eq!(upstream.count(), 2 * passed);
}

#[tokio::test]
async fn token_in_the_query_is_ignored_unless_configured_and_then_forwarded_untouched() {
    let (upstream, gateway) = setup().await;
    let user = token("user");
    let reply = gateway
        .client()
        .get(&format!("/orders?access_token={user}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 0);
    // Not a credential here, so not ours to edit: the query passes as sent.
    let reply = gateway
        .client()
        .get("/public/x?access_token=abc&x=1", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().target, "/public/x?access_token=abc&x=1");
}

#[tokio::test]
async fn configured_query_token_is_accepted_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace("[jwt]\n", "[jwt]\nquery_param = \"access_token\"\n");
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let user = token("user");
    let bad = format!("{user}x");
    let cases: Vec<(String, Option<&str>, StatusCode, Option<&str>)> = vec![
        (
            format!("/orders?access_token={user}"),
            None,
            StatusCode::OK,
            Some("/orders"),
        ),
        (
            format!("/orders?a=1&access_token={user}&b=2"),
            None,
            StatusCode::OK,
            Some("/orders?a=1&b=2"),
        ),
        (
            format!("/orders?access%5Ftoken={user}"),
            None,
            StatusCode::OK,
            Some("/orders"),
        ),
        (
            format!("/public/x?access_token={bad}&keep=1"),
            None,
            StatusCode::OK,
            Some("/public/x?keep=1"),
        ),
        (
            format!("/orders?access_token={bad}"),
            None,
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            format!("/orders?access_token={user}&access_token={user}"),
            None,
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            format!("/orders?access_token={user}"),
            Some(user.as_str()),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/orders?access_token=".to_owned(),
            None,
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "/orders?x=1".to_owned(),
            Some(user.as_str()),
            StatusCode::OK,
            Some("/orders?x=1"),
        ),
        (
            format!("/admin?access_token={user}"),
            None,
            StatusCode::FORBIDDEN,
            None,
        ),
    ];
    for protocol in BOTH {
        for (path, header, want, forwarded) in &cases {
            let before = upstream.count();
            let reply = client(&gateway, protocol).get(path, *header).await;
            assert_eq!(reply.status, *want, "{path} over {protocol:?}");
            match forwarded {
                Some(target) => assert_eq!(upstream.last().target, *target, "{path}"),
                None => assert_eq!(upstream.count(), before, "{path} reached the upstream"),
            }
        }
    }
}

// ---- 2. header hygiene --------------------------------------------------------

#[tokio::test]
async fn identity_headers_are_stripped_for_every_method_route_and_spelling() {
    let (upstream, gateway) = setup().await;
    let admin = token("admin");
    let spoofs = [
        ("X-USER-ID", "1"),
        ("x-user-id", "2"),
        ("X-uSeR-iD", "3"),
        ("X_User_Id", "4"),
        ("x_user_id", "5"),
        ("X-Role", "root"),
        ("X_ROLE", "root"),
        ("x-rOLE", "root"),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    for protocol in BOTH {
        for path in ["/public/x", "/maybe", "/orders", "/admin"] {
            for method in &methods {
                let mut builder = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("authorization", format!("Bearer {admin}"));
                for (name, value) in spoofs {
                    builder = builder.header(name, value);
                }
                if protocol == Protocol::Http1 {
                    builder = builder.header("connection", "x-user-id, X_Role, x-role");
                }
                let case = format!("{method} {path} {protocol:?}");
                let reply = client(&gateway, protocol)
                    .try_send(builder.body(Full::default()).unwrap())
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                // HEAD is allowed wherever GET is (RFC 9110 §9.3.2).
                if path == "/admin" && !matches!(*method, Method::GET | Method::HEAD | Method::POST)
                {
                    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{case}");
                    continue;
                }
                assert_eq!(reply.status, StatusCode::OK, "{case}");
                let seen = upstream.last();
                let ids: Vec<_> = seen.headers.get_all("x-user-id").iter().collect();
                let roles: Vec<_> = seen.headers.get_all("x-role").iter().collect();
                if path == "/public/x" {
                    assert!(ids.is_empty() && roles.is_empty(), "{case}");
                } else {
                    assert_eq!(ids, ["42"], "{case}");
                    assert_eq!(roles, ["admin"], "{case}");
                }
                for (name, _) in seen.headers.iter() {
                    let n = name.as_str().replace('_', "-");
                    assert!(
                        !(name.as_str().contains('_') && (n == "x-user-id" || n == "x-role")),
                        "{case}: {name} reached the upstream"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn url_and_method_override_headers_never_reach_the_upstream_unless_configured() {
    let overrides = [
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin/users"),
        ("X_Original_URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("X-Method-Override", "PUT"),
        ("x_http_method_override", "DELETE"),
    ];
    let send = |gateway: &TestGateway, protocol, path: &str| {
        let mut builder =
            Request::get(path).header("authorization", format!("Bearer {}", token("user")));
        for (name, value) in overrides {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::default()).unwrap();
        let client = client(gateway, protocol);
        async move { client.send(request).await }
    };
    let (upstream, gateway) = setup().await;
    for protocol in BOTH {
        for path in ["/public/x", "/maybe", "/orders"] {
            let reply = send(&gateway, protocol, path).await;
            assert_eq!(reply.status, StatusCode::OK, "{path} {protocol:?}");
            let seen = upstream.last();
            assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", path));
            for (name, _) in seen.headers.iter() {
                let n = name.as_str().replace('_', "-");
                assert!(
                    !(n.contains("original-url")
                        || n.contains("rewrite-url")
                        || n.contains("method")),
                    "{path} {protocol:?}: {name} reached the upstream"
                );
            }
        }
    }

    // An operator whose backend needs one lets just that one through.
    let config = CONFIG.replace(
        "[server]\n",
        "[server]\nforward_override_headers = [\"X-HTTP-Method-Override\"]\n",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    for protocol in BOTH {
        send(&gateway, protocol, "/orders").await;
        let seen = upstream.last();
        let kept: Vec<_> = seen
            .headers
            .keys()
            .filter(|n| n.as_str().contains("method") || n.as_str().contains("url"))
            .map(|n| n.as_str())
            .collect();
        assert_eq!(kept, ["x-http-method-override"], "{protocol:?}");
        assert_eq!(seen.header("x-http-method-override"), Some("DELETE"));
    }
}

// ---- 3. path tricks -------------------------------------------------------------

#[tokio::test]
async fn raw_request_targets_cannot_bypass_a_route_rule() {
    let (upstream, gateway) = setup().await;
    let user = token("user");
    let long = format!("/public/{}", "a".repeat(9000));
    let cases: Vec<(String, u16)> = vec![
        // Absolute-form: only the path is routed.
        (
            format!(
                "GET https://evil.example/admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user}"
            ),
            403,
        ),
        (
            format!(
                "GET http://localhost/admin/../admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user}"
            ),
            403,
        ),
        ("OPTIONS * HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET admin HTTP/1.1\r\nHost: x".to_owned(), 400),
        // CONNECT is a tunnel, not a resource: refused whatever its target,
        // on a public route too.
        (
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443".to_owned(),
            501,
        ),
        ("CONNECT /public/x HTTP/1.1\r\nHost: x".to_owned(), 501),
        (
            format!("CONNECT /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user}"),
            501,
        ),
        (
            format!("GET /admin\\..\\public HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user}"),
            400,
        ),
        ("GET /public\\..\\admin HTTP/1.1\r\nHost: x".to_owned(), 400),
        (
            "GET /public/%2e%2e/admin HTTP/1.1\r\nHost: x".to_owned(),
            401,
        ),
        ("GET /public/..%5cadmin HTTP/1.1\r\nHost: x".to_owned(), 400),
        (
            "GET /public/%00/../admin HTTP/1.1\r\nHost: x".to_owned(),
            400,
        ),
        ("GET /public/%0a HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET /public/%g0 HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET /public/%%32%65 HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET /public/%2 HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET /public/..;/admin HTTP/1.1\r\nHost: x".to_owned(), 400),
        ("GET /ADMIN HTTP/1.1\r\nHost: x".to_owned(), 401),
        (format!("GET {long} HTTP/1.1\r\nHost: x"), 414),
    ];
    for (head, want) in &cases {
        let raw = format!("{head}\r\nConnection: close\r\n\r\n");
        let (reply, _) = raw_tls_closed(
            gateway.addr,
            &gateway.pki,
            raw.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(statuses(&reply).first(), Some(want), "{head:.60}");
    }
    assert_eq!(upstream.count(), 0);
    // Case is kept: /ADMIN is not /admin, and the upstream sees /ADMIN.
    let reply = gateway.client().get("/ADMIN", Some(&user)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().target, "/ADMIN");
    // An absolute-form target on a public route forwards just the path.
    let raw = b"GET https://evil.example/public/../public/x?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (reply, _) = raw_tls_closed(gateway.addr, &gateway.pki, raw, Duration::from_secs(5)).await;
    assert_eq!(statuses(&reply).first(), Some(&200));
    assert_eq!(upstream.last().target, "/public/x?q=1");
}

// ---- 4. framing and limits ----------------------------------------------------

/// The status of the first answer to raw HTTP/1.1 bytes over TLS.
async fn first_status(gateway: &TestGateway, raw: &str) -> Option<u16> {
    let wait = Duration::from_secs(1);
    let (reply, _) = raw_tls_closed(gateway.addr, &gateway.pki, raw.as_bytes(), wait).await;
    statuses(&reply).first().copied()
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_400_not_502() {
    let (_upstream, gateway) = setup().await;
    for chunks in [
        "zz\r\nhi\r\n0\r\n\r\n",
        "FFFFFFFFFFFFFFFFF2\r\nhi\r\n0\r\n\r\n",
    ] {
        let raw = format!(
            "POST /public/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
        );
        assert_eq!(first_status(&gateway, &raw).await, Some(400), "{chunks:?}");
    }
}

#[tokio::test]
async fn a_transfer_coding_besides_chunked_is_501_and_not_forwarded() {
    // hyper undoes only `chunked`: the gzip-coded body would reach the
    // upstream with its coding's name dropped.
    let (upstream, gateway) = setup().await;
    for codings in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let raw = format!(
            "POST /public/x HTTP/1.1\r\nHost: localhost\r\n{codings}\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(first_status(&gateway, &raw).await, Some(501), "{codings}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_the_connection_closes() {
    let (upstream, gateway) = setup().await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        (
            "two different Content-Lengths",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd{smuggled}"
            ),
        ),
        (
            "Content-Length list",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcd{smuggled}"
            ),
        ),
        (
            "signed Content-Length",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd{smuggled}"
            ),
        ),
        (
            "negative Content-Length",
            format!("POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{smuggled}"),
        ),
        (
            "chunked then identity",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "chunked not last",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "xchunked",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "space before colon",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "HTTP/1.0 chunked",
            format!(
                "POST /public/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "obs-fold",
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n{smuggled}"),
        ),
        (
            "NUL in a header",
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n{smuggled}"),
        ),
        (
            "bare CR in a header",
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n{smuggled}"),
        ),
        (
            "space in the target",
            format!("GET /public/x y HTTP/1.1\r\nHost: x\r\n\r\n{smuggled}"),
        ),
        (
            "bad version",
            format!("GET /public/x HTTP/1.2x\r\nHost: x\r\n\r\n{smuggled}"),
        ),
        (
            "bad chunk size",
            format!(
                "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (name, raw) in &cases {
        let started = Instant::now();
        let (reply, closed) = raw_tls_closed(
            gateway.addr,
            &gateway.pki,
            raw.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        let got = statuses(&reply);
        assert!(
            closed && started.elapsed() < Duration::from_secs(4),
            "{name}: left open"
        );
        // A bad chunk size is only seen once the head was forwarded: the
        // upstream then never gets a complete request, and the client a 4xx/5xx.
        assert!(
            got == [400] || (*name == "bad chunk size" && got.len() == 1 && got[0] >= 400),
            "{name}: {got:?}"
        );
    }
    assert!(
        upstream
            .seen()
            .iter()
            .all(|s| s.target != "/public/smuggled")
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_read_as_chunked_and_the_connection_closes() {
    // RFC 9112 §6.1 lets a server either reject this or let chunked win and
    // close the connection after the response; hyper does the latter and
    // drops Content-Length before the gateway sees it. Either way nothing
    // after the chunked body is read as a second request.
    let (upstream, gateway) = setup().await;
    for order in [
        "Content-Length: 30\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 30",
    ] {
        let raw = format!(
            "POST /public/x HTTP/1.1\r\nHost: x\r\n{order}\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (reply, closed) = raw_tls_closed(
            gateway.addr,
            &gateway.pki,
            raw.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(closed, "{order}: left open");
        assert_eq!(statuses(&reply).len(), 1, "{order}");
        let seen = upstream.last();
        assert_eq!(&seen.body[..], b"abc", "{order}");
        assert!(
            upstream
                .seen()
                .iter()
                .all(|s| s.target != "/public/smuggled")
        );
    }
}

const LIMITS: &str =
    "max_header_bytes = 4096\nmax_headers = 20\nmax_uri_bytes = 256\nmax_body_bytes = 1024\n";

async fn limited() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace("[server]\n", &format!("[server]\n{LIMITS}"));
    let gateway = TestGateway::start(&config, upstream.addr).await;
    (upstream, gateway)
}

#[tokio::test]
async fn max_headers_counts_the_clients_fields_only() {
    // The gateway's own X-Request-Id is not the client's: exactly
    // max_headers (20) fields pass, one more is 431.
    let (_upstream, gateway) = limited().await;
    for (fields, want) in [(20, 200), (21, 431)] {
        let extra: String = (1..fields).map(|i| format!("x-h{i}: v\r\n")).collect();
        let raw = format!("GET /public/x HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        assert_eq!(
            first_status(&gateway, &raw).await,
            Some(want),
            "{fields} fields"
        );
    }
}

#[tokio::test]
async fn over_limit_heads_get_431_or_414_on_http1_and_http2() {
    let (upstream, gateway) = limited().await;
    for protocol in BOTH {
        let many = (0..30).fold(Request::get("/public/x"), |r, i| {
            r.header(format!("x-h{i}"), "v")
        });
        let big = Request::get("/public/x").header("x-big", "a".repeat(5000));
        let long = Request::get(format!("/public/{}", "a".repeat(300)));
        let at_limit =
            Request::get(format!("/public/{}", "a".repeat(200))).header("x-ok", "a".repeat(2000));
        for (name, request, want) in [
            (
                "30 headers",
                many,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            (
                "5000-byte header",
                big,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            ("300-byte target", long, StatusCode::URI_TOO_LONG),
            ("within limits", at_limit, StatusCode::OK),
        ] {
            let reply = client(&gateway, protocol)
                .try_send(request.body(Full::default()).unwrap())
                .await;
            // HTTP/2 may refuse an oversized header block at the frame layer
            // (h2 answers 431 itself or resets the stream); both keep it out.
            match reply {
                Ok(reply) => assert_eq!(reply.status, want, "{name} over {protocol:?}"),
                Err(err) => assert!(
                    protocol == Protocol::Http2 && name == "5000-byte header",
                    "{name} over {protocol:?}: {err}"
                ),
            }
        }
    }
    assert_eq!(upstream.count(), 2);
    // hyper's own limit on HTTP/1.1: a head far over the limit never gets parsed.
    let raw = format!(
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (reply, closed) = raw_tls_closed(
        gateway.addr,
        &gateway.pki,
        raw.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&reply), [431]);
    assert!(closed);
}

#[tokio::test]
async fn heads_far_over_the_limit_are_answered_not_reset_while_the_client_still_sends() {
    // The client sends its whole head before it reads, as curl does: the
    // gateway refuses after reading a fraction of it, and must not close
    // (which would reset the connection and lose the answer) before the
    // client has sent the rest.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (upstream, gateway) = setup().await;
    let fields: String = (0..5000).map(|i| format!("x-f{i}: v\r\n")).collect();
    let cases = [
        (
            "64 KiB header",
            format!(
                "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            ),
            [431, 431],
        ),
        (
            "5000 fields",
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{fields}\r\n"),
            [431, 431],
        ),
        // hyper's 414 is for targets it could buffer whole; one longer than
        // the head limit is refused as a head too large.
        (
            "64 KiB target",
            format!(
                "GET /public/{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(64 * 1024)
            ),
            [414, 431],
        ),
        (
            "95 KB Authorization",
            format!(
                "GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                "a".repeat(95_000)
            ),
            [431, 431],
        ),
    ];
    for (name, raw, want) in &cases {
        let mut tls = tls_connect(gateway.addr, &gateway.pki, b"http/1.1").await;
        // In pieces, as over a real network: most of the head is still to
        // come when the gateway has read enough to refuse it.
        for piece in raw.as_bytes().chunks(8 * 1024) {
            let sent = tls.write_all(piece).await;
            assert!(sent.is_ok(), "{name}: sending failed: {sent:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
        let got = statuses(&reply);
        assert!(
            got.len() == 1 && want.contains(&got[0]),
            "{name}: {:?} {read:?}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            matches!(read, Ok(Ok(_))),
            "{name}: not closed cleanly: {read:?}"
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn heads_far_over_the_limit_are_answered_over_http2_not_sent_away() {
    // h2 itself ends the whole connection (GOAWAY) for a header list over
    // 4× the list size it advertises; every one of these gets a status.
    let (upstream, gateway) = setup().await;
    let base = "https://localhost";
    let many = (0..5000).fold(Request::get(format!("{base}/public/x")), |r, i| {
        r.header(format!("x-f{i}"), "v")
    });
    let cases = [
        (
            "64 KiB header",
            Request::get(format!("{base}/public/x")).header("x-big", "a".repeat(64 * 1024)),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "5000 fields",
            many,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "60 KiB path",
            Request::get(format!("{base}/public/{}", "a".repeat(60 * 1024))),
            StatusCode::URI_TOO_LONG,
        ),
        (
            "95 KB Authorization",
            Request::get(format!("{base}/orders"))
                .header("authorization", format!("Bearer {}", "a".repeat(95_000))),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    for (name, request, want) in cases {
        let tls = tls_connect(gateway.addr, &gateway.pki, b"h2").await;
        let (send, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(connection);
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(request.body(()).unwrap(), true).unwrap();
        match response.await {
            Ok(response) => assert_eq!(response.status(), want, "{name}"),
            Err(err) => panic!("{name}: no answer: {err:?}"),
        }
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn over_limit_bodies_get_413_up_front_or_while_streaming() {
    let (upstream, gateway) = limited().await;
    for protocol in BOTH {
        let before = upstream.count();
        let reply = client(&gateway, protocol)
            .send(
                Request::post("/public/x")
                    .body(Full::new(Bytes::from(vec![b'a'; 2000])))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{protocol:?}");
        assert_eq!(
            upstream.count(),
            before,
            "declared too large: never forwarded"
        );
        let reply = client(&gateway, protocol)
            .send(
                Request::post("/public/x")
                    .body(Full::new(Bytes::from(vec![b'a'; 1024])))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{protocol:?}");
    }
    assert_eq!(upstream.count(), 2);
    // No Content-Length: counted as it streams; the connection then closes.
    let chunk = "a".repeat(600);
    let raw = format!(
        "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (reply, closed) = raw_tls_closed(
        gateway.addr,
        &gateway.pki,
        raw.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&reply), [413]);
    assert!(closed);
    assert!(upstream.seen().iter().all(|s| s.body.len() <= 1024));
}
