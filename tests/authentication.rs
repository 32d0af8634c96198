//! Trust the edge: nothing reaches the upstream on a required route without
//! a token that passed every check; failures answer per RFC 6750 §3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{Request, StatusCode};
use http_body_util::Full;
use jwtgate::gateway::unix_now;
use serde_json::json;
use support::{CONFIG, SECRET, TestGateway, Upstream, mint, mint_with, token};

async fn setup() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::default(&upstream).await;
    (upstream, gateway)
}

#[tokio::test]
async fn missing_token_gets_401_with_a_bare_challenge_and_upstream_is_not_contacted() {
    let (upstream, gateway) = setup().await;
    let reply = gateway.client().get("/orders", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"jwtgate\"")
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"], "missing_token");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn valid_token_is_forwarded_with_identity_and_without_the_token() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .client()
        .get("/orders/7?x=1", Some(&token("user")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-id"), Some("42"));
    assert_eq!(seen.header("x-role"), Some("user"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.target, "/orders/7?x=1");
}

/// Every rejection rule, end to end: 401, `error="invalid_token"`, and the
/// upstream never contacted.
#[tokio::test]
async fn every_invalid_token_gets_401_invalid_token_and_never_reaches_the_upstream() {
    let (upstream, gateway) = setup().await;
    let now = unix_now();
    let valid = token("user");
    let (header, rest) = valid.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let forged_payload =
        B64.encode(json!({"sub": "42", "role": "admin", "exp": now + 900}).to_string());
    let none_header = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-token".to_owned()),
        (
            "tampered claims",
            format!("{header}.{forged_payload}.{signature}"),
        ),
        (
            "wrong secret",
            mint_with(
                "another-secret-that-is-long-enough-0123",
                Some("k1"),
                json!({"sub": "42", "exp": now + 900}),
            ),
        ),
        (
            "expired beyond leeway",
            mint(json!({"sub": "42", "exp": now - 31})),
        ),
        (
            "not yet valid",
            mint(json!({"sub": "42", "exp": now + 900, "nbf": now + 300})),
        ),
        (
            "issued in the future",
            mint(json!({"sub": "42", "exp": now + 900, "iat": now + 300})),
        ),
        ("no exp", mint(json!({"sub": "42"}))),
        (
            "exp as string",
            mint(json!({"sub": "42", "exp": (now + 900).to_string()})),
        ),
        (
            "alg none, no signature",
            format!("{none_header}.{payload}."),
        ),
        (
            "alg none with signature",
            format!("{none_header}.{payload}.{signature}"),
        ),
        ("stripped signature", format!("{header}.{payload}.")),
        (
            "padded signature",
            format!("{header}.{payload}.{signature}="),
        ),
        ("JWE shape", format!("{header}.{payload}.{signature}.a.b")),
        (
            "unknown kid",
            mint_with(SECRET, Some("nope"), json!({"sub": "42", "exp": now + 900})),
        ),
        ("crit header", {
            let h = B64.encode(r#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#);
            sign(&format!("{h}.{payload}"))
        }),
        ("HS512 header on an HS256 key", {
            let h = B64.encode(r#"{"alg":"HS512","kid":"k1"}"#);
            sign(&format!("{h}.{payload}"))
        }),
    ];
    for (name, bad) in cases {
        let reply = gateway.client().get("/orders", Some(&bad)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\""
            ),
            "{name}: {challenge}"
        );
        assert_eq!(reply.json()["error"], "invalid_token", "{name}");
    }
    assert_eq!(upstream.count(), 0);
}

/// HS256 over `signing_input` with the test secret, appended as the signature.
fn sign(signing_input: &str) -> String {
    let key = jwtgate::keys::Key::hmac(None, jwtgate::jwt::Alg::HS256, SECRET.as_bytes()).unwrap();
    format!(
        "{signing_input}.{}",
        B64.encode(key.sign(signing_input.as_bytes()))
    )
}

#[tokio::test]
async fn expired_token_within_leeway_is_still_accepted() {
    let (upstream, gateway) = setup().await;
    let now = unix_now();
    let reply = gateway
        .client()
        .get("/", Some(&mint(json!({"sub": "42", "exp": now - 5}))))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn wrong_role_gets_403_insufficient_scope() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .client()
        .get("/admin/users", Some(&token("user")))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    assert_eq!(upstream.count(), 0);

    let reply = gateway
        .client()
        .get("/admin/users", Some(&token("admin")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().header("x-role"), Some("admin"));
}

#[tokio::test]
async fn any_of_several_roles_in_an_array_claim_is_enough() {
    let (upstream, gateway) = setup().await;
    let now = unix_now();
    let t = mint(json!({"sub": 7, "role": ["auditor", "admin"], "exp": now + 60}));
    let reply = gateway.client().get("/admin", Some(&t)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-role"), Some("auditor,admin"));
    assert_eq!(seen.header("x-user-id"), Some("7"));
}

#[tokio::test]
async fn method_not_listed_on_a_route_gets_405_and_does_not_fall_through() {
    let (upstream, gateway) = setup().await;
    let request = Request::delete("/admin/users")
        .header("authorization", format!("Bearer {}", token("user")))
        .body(Full::default())
        .unwrap();
    let reply = gateway.client().send(request).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, POST, HEAD"));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn public_route_needs_no_token_and_still_strips_one() {
    let (upstream, gateway) = setup().await;
    assert_eq!(
        gateway.client().get("/public/info", None).await.status,
        StatusCode::OK
    );
    let reply = gateway.client().get("/public/info", Some("garbage")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-user-id"), None);
}

#[tokio::test]
async fn optional_route_forwards_anonymous_requests_but_refuses_bad_tokens() {
    let (upstream, gateway) = setup().await;
    assert_eq!(
        gateway.client().get("/maybe", None).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.last().header("x-user-id"), None);

    assert_eq!(
        gateway
            .client()
            .get("/maybe", Some(&token("user")))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.last().header("x-user-id"), Some("42"));

    assert_eq!(
        gateway
            .client()
            .get("/maybe", Some("bad.token.here"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_other_schemes_are_no_token() {
    let (_upstream, gateway) = setup().await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let request = Request::get("/")
            .header("authorization", format!("{scheme} {}", token("user")))
            .body(Full::default())
            .unwrap();
        assert_eq!(
            gateway.client().send(request).await.status,
            StatusCode::OK,
            "{scheme}"
        );
    }
    let request = Request::get("/")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Full::default())
        .unwrap();
    let reply = gateway.client().send(request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"jwtgate\"")
    );
}

#[tokio::test]
async fn two_authorization_headers_are_an_invalid_request() {
    let (upstream, gateway) = setup().await;
    let t = token("user");
    let request = Request::get("/")
        .header("authorization", format!("Bearer {t}"))
        .header("authorization", format!("Bearer {t}"))
        .body(Full::default())
        .unwrap();
    let reply = gateway.client().send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\"")
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn rotated_keys_accept_tokens_by_kid_and_without_kid() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "[[upstream]]",
        "[[jwt.keys]]\nkid = \"k2\"\nalg = \"HS256\"\nsecret_env = \"SECRET2\"\n\n[[upstream]]",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let now = unix_now();
    let second = format!("{SECRET}-second");
    let claims = json!({"sub": "42", "exp": now + 60});
    for (kid, secret, status) in [
        (Some("k2"), second.as_str(), StatusCode::OK),
        (None, second.as_str(), StatusCode::OK),
        (None, SECRET, StatusCode::OK),
        // kid selects exactly one key: the other key's signature does not count.
        (Some("k1"), second.as_str(), StatusCode::UNAUTHORIZED),
    ] {
        let t = mint_with(secret, kid, claims.clone());
        assert_eq!(
            gateway.client().get("/", Some(&t)).await.status,
            status,
            "{kid:?}"
        );
    }
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "leeway = \"30s\"",
        "leeway = \"30s\"\nissuers = [\"https://login.example.com\"]\naudiences = [\"orders-api\"]",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let now = unix_now();
    let cases = [
        (
            json!({"iss": "https://login.example.com", "aud": "orders-api", "exp": now + 60}),
            StatusCode::OK,
        ),
        (
            json!({"iss": "https://login.example.com", "aud": ["x", "orders-api"], "exp": now + 60}),
            StatusCode::OK,
        ),
        (
            json!({"iss": "https://evil.example.com", "aud": "orders-api", "exp": now + 60}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"iss": "https://login.example.com", "aud": "billing", "exp": now + 60}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"aud": "orders-api", "exp": now + 60}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"iss": "https://login.example.com", "exp": now + 60}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"iss": ["https://login.example.com"], "aud": "orders-api", "exp": now + 60}),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (claims, status) in cases {
        let reply = gateway.client().get("/", Some(&mint(claims.clone()))).await;
        assert_eq!(reply.status, status, "{claims}");
    }
    assert_eq!(upstream.count(), 2);
}

/// A claim holding CR/LF is not a reason to refuse the token on routes
/// that do not look at it; it arrives percent-encoded, one header, no
/// injected line.
#[tokio::test]
async fn a_role_with_crlf_arrives_encoded_and_injects_nothing() {
    let (upstream, gateway) = setup().await;
    let now = unix_now();
    let token =
        mint(json!({"sub": "4\n2", "role": ["user\r\nX-Role: admin", "a,b"], "exp": now + 900}));
    let reply = gateway.client().get("/orders", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-id"), Some("4%0A2"));
    assert_eq!(seen.header("x-role"), Some("user%0D%0AX-Role: admin,a%2Cb"));
    assert_eq!(seen.headers.get_all("x-role").iter().count(), 1);
    // Not an admin: the smuggled text is one role, and not "admin".
    let admin = gateway.client().get("/admin", Some(&token)).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);
}
