//! `jwtgate demo --web`: the playground started on 127.0.0.1:0, each act's
//! requests sent over real TLS exactly as the page's script sends them (same
//! paths, same headers, same helper calls), and the gateway's answers and
//! what the echo upstream saw checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{Client, Protocol, Reply, TestGateway, Upstream};

use jwtgate::demo::{CONTENT_SECURITY_POLICY, Playground};

async fn start() -> (Playground, Client) {
    let playground = Playground::start(0).await.unwrap();
    let client = Client::with_roots(
        playground.addr(),
        vec![playground.ca_cert().clone()],
        Protocol::Http1,
    );
    (playground, client)
}

/// `send(path, headers)` in app.js: a GET with only the headers the act sets.
async fn send(client: &Client, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client.send(request.body(Full::default()).unwrap()).await
}

async fn send_token(client: &Client, path: &str, token: &str) -> Reply {
    send(
        client,
        path,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// `helper(path, body)` in app.js: a JSON POST to `/playground/<path>`.
async fn helper(client: &Client, path: &str, body: Value) -> Reply {
    let request = Request::post(format!("/playground/{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client.send(request).await
}

/// `mint(sub, role, ttl)` in app.js; returns the token and its claims.
async fn mint(client: &Client, sub: &str, role: &str, ttl: i64) -> (String, Value) {
    let reply = helper(
        client,
        "mint",
        json!({ "sub": sub, "role": role, "ttl": ttl }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let json = reply.json();
    (
        json["token"].as_str().unwrap().to_owned(),
        json["claims"].clone(),
    )
}

/// What the echo upstream received, from a forwarded reply.
fn seen(reply: &Reply) -> Value {
    reply.json()["headers"].clone()
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn challenge(reply: &Reply) -> &str {
    reply.header("www-authenticate").unwrap_or_default()
}

#[tokio::test]
async fn the_page_is_embedded_small_and_served_under_a_strict_content_security_policy() {
    let (_playground, client) = start().await;
    let mut total = 0;
    for (path, kind) in [
        ("/", "text/html"),
        ("/playground/app.js", "text/javascript"),
        ("/playground/style.css", "text/css"),
    ] {
        let reply = send(&client, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.header("content-type").unwrap().starts_with(kind));
        assert_eq!(
            reply.header("content-security-policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        let text = std::str::from_utf8(&reply.body).unwrap();
        // Nothing from another origin: no CDN, no fonts, no trackers.
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path}"
        );
        total += reply.body.len();
    }
    assert!(total < 200 * 1024, "page and assets are {total} bytes");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    // Nothing inline that the policy would block.
    let page = send(&client, "/", &[]).await;
    let html = std::str::from_utf8(&page.body).unwrap();
    for inline in [
        "<style",
        " style=",
        "onclick=",
        "onload=",
        "oninput=",
        "javascript:",
    ] {
        assert!(!html.contains(inline), "{inline}");
    }
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count()
    );
}

#[tokio::test]
async fn act_1_a_request_without_a_token_is_refused_at_the_edge() {
    let (_playground, client) = start().await;
    let reply = send(&client, "/orders", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&reply), "Bearer realm=\"jwtgate\"");
    assert_eq!(reply.json()["error"], "missing_token");
}

#[tokio::test]
async fn act_2_an_edited_identity_card_never_reaches_the_upstream() {
    let (_playground, client) = start().await;
    let card = [("x-user-id", "1"), ("x-role", "admin")];

    let reply = send(&client, "/public/profile", &card).await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = seen(&reply);
    assert!(headers.get("x-user-id").is_none() && headers.get("x-role").is_none());

    let (token, _) = mint(&client, "42", "user", 900).await;
    let bearer = format!("Bearer {token}");
    let reply = send(
        &client,
        "/orders",
        &[("authorization", &bearer), card[0], card[1]],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = seen(&reply);
    assert_eq!(headers["x-user-id"], "42");
    assert_eq!(headers["x-role"], "user");
    assert!(headers.get("authorization").is_none());

    let exp = jwtgate::gateway::unix_now() + 900;
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({ "sub": "1", "role": "admin", "exp": exp }).to_string())
    );
    let reply = send_token(&client, "/orders", &unsigned).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&reply).contains("invalid_token"));
}

#[tokio::test]
async fn act_3_a_fingerprint_made_with_the_demo_key_passes_and_one_edit_breaks_it() {
    let (_playground, client) = start().await;
    let session = send(&client, "/playground/session", &[]).await.json();
    let secret = session["secret"].as_str().unwrap().to_owned();
    // As the page builds it: its own header, the message as typed, WebCrypto's HMAC.
    let header = b64(r#"{"alg":"HS256","kid":"demo","typ":"JWT"}"#);
    let exp = jwtgate::gateway::unix_now() + 3600;
    let message = format!(r#"{{"sub":"42","role":"user","exp":{exp}}}"#);
    let sign = |secret: &str, input: &str| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, input.as_bytes()))
    };
    let input = format!("{header}.{}", b64(&message));
    let token = format!("{input}.{}", sign(&secret, &input));

    let reply = send_token(&client, "/orders", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header("server-timing")
            .unwrap()
            .starts_with("jwt;dur=")
    );
    assert_eq!(seen(&reply)["x-user-id"], "42");

    // One character of the message edited, the old fingerprint kept.
    let edited = format!("{header}.{}", b64(&message.replace("42", "43")));
    let stale = format!("{edited}.{}", sign(&secret, &input));
    let reply = send_token(&client, "/orders", &stale).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&reply).contains("invalid_token"));

    // One character of the key edited.
    let wrong_key = format!("{input}.{}", sign(&format!("{secret}x"), &input));
    let reply = send_token(&client, "/orders", &wrong_key).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn act_4_a_minted_token_is_three_readable_parts_and_is_accepted() {
    let (_playground, client) = start().await;
    let (token, claims) = mint(&client, "42", "user", 900).await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({ "alg": "HS256", "kid": "demo", "typ": "JWT" })
    );
    let readable: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(readable, claims);
    assert_eq!(readable["sub"], "42");
    assert_eq!(readable["role"], "user");

    let reply = send_token(&client, "/orders?id=7", &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["path"], "/orders?id=7");
    assert!(
        reply
            .header("server-timing")
            .unwrap()
            .starts_with("jwt;dur=")
    );
}

#[tokio::test]
async fn act_5_tampered_expired_and_wrong_role_tokens_fail_and_a_proper_admin_passes() {
    let (_playground, client) = start().await;

    let (token, mut claims) = mint(&client, "42", "user", 900).await;
    claims["role"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&claims.to_string()), parts[2]);
    let reply = send_token(&client, "/admin/reports", &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&reply).contains("invalid_token"));
    assert!(
        challenge(&reply).contains("signature"),
        "{}",
        challenge(&reply)
    );

    let (expired, _) = mint(&client, "42", "user", -120).await;
    let reply = send_token(&client, "/orders", &expired).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&reply).contains("expired"),
        "{}",
        challenge(&reply)
    );

    let reply = send_token(&client, "/admin/reports", &token).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(challenge(&reply).contains("insufficient_scope"));

    let (admin, _) = mint(&client, "7", "admin", 900).await;
    let reply = send_token(&client, "/admin/reports", &admin).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(seen(&reply)["x-role"], "admin");
    assert_eq!(seen(&reply)["x-user-id"], "7");
}

#[tokio::test]
async fn act_6_a_short_lived_token_turns_401_once_exp_and_the_leeway_pass() {
    let (_playground, client) = start().await;
    let session = send(&client, "/playground/session", &[]).await.json();
    let leeway = session["leeway"].as_i64().unwrap();
    let (token, claims) = mint(&client, "42", "user", 1).await;
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(
        send_token(&client, "/orders", &token).await.status,
        StatusCode::OK
    );
    // As the page does: the same token once a second until it is refused.
    let started = Instant::now();
    let refused = loop {
        let reply = send_token(&client, "/orders", &token).await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&refused).contains("expired"));
    assert!(jwtgate::gateway::unix_now() >= exp + leeway);
}

#[tokio::test]
async fn act_6_a_revoked_jti_is_refused_while_a_fresh_token_still_passes() {
    let (_playground, client) = start().await;
    let (a, a_claims) = mint(&client, "42", "user", 900).await;
    let (b, _) = mint(&client, "42", "user", 900).await;
    let jti = a_claims["jti"].as_str().unwrap();

    let reply = helper(&client, "revoke", json!({ "jti": jti })).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json()["entries"], 1);
    assert!(reply.json()["file"].as_str().unwrap().contains(jti));

    let reply = send_token(&client, "/orders", &a).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&reply).contains("revoked"),
        "{}",
        challenge(&reply)
    );
    let reply = send_token(&client, "/orders", &b).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Revoking it again changes nothing.
    let reply = helper(&client, "revoke", json!({ "jti": jti })).await;
    assert_eq!(reply.json()["entries"], 1);
}

#[tokio::test]
async fn act_7_the_connection_is_tls_1_3_and_the_token_is_readable_only_without_it() {
    let (_playground, client) = start().await;
    let connection = send(&client, "/playground/connection", &[]).await.json();
    assert_eq!(connection["tls_version"], "TLSv1_3");
    assert!(
        connection["cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_")
    );
    assert_eq!(connection["http_version"], "HTTP/1.1");
    assert_eq!(
        connection["certificate"]["sha256"].as_str().unwrap().len(),
        32 * 3 - 1
    );

    let (token, _) = mint(&client, "42", "user", 900).await;
    let reply = helper(
        &client,
        "wire",
        json!({ "path": "/orders", "token": token }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let wire = reply.json();
    assert_eq!(wire["status"], 200);
    assert!(
        wire["plaintext"]
            .as_str()
            .unwrap()
            .contains(&format!("Authorization: Bearer {token}\r\n"))
    );
    assert_eq!(wire["token_in_plaintext"], true);
    assert_eq!(wire["token_in_records"], false);
    let records = wire["records"].as_array().unwrap();
    assert_eq!(records[0]["type"], "handshake");
    assert!(records.iter().any(|r| r["type"] == "application_data"));
}

#[tokio::test]
async fn the_helpers_refuse_what_the_page_never_sends() {
    let (_playground, client) = start().await;
    // Not JSON: a form on another origin could send this without a preflight.
    let request = Request::post("/playground/mint")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(
            r#"{"sub":"1","role":"admin","ttl":60}"#,
        )))
        .unwrap();
    assert_eq!(
        client.send(request).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Only the demo key: there is no field to choose another.
    for body in [
        json!({ "sub": "1", "role": "admin", "ttl": 60, "kid": "other" }),
        json!({ "sub": "1", "role": "admin", "ttl": 1_000_000_000 }),
        json!({ "sub": "", "role": "admin", "ttl": 60 }),
    ] {
        let reply = helper(&client, "mint", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let reply = helper(
        &client,
        "revoke",
        json!({ "jti": "a\"\n[[revoke]]\nsub = \"42" }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = helper(&client, "wire", json!({ "path": "orders", "token": "" })).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(&client, "/playground/mint", &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = send(&client, "/playground/secrets", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn serve_has_no_playground_paths_they_are_routed_like_any_other() {
    let upstream = Upstream::start().await;
    let config = r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"

[[jwt.keys]]
kid = "k1"
alg = "HS256"
secret_env = "SECRET"

[[upstream]]
name = "app"
url = "http://UPSTREAM"

[[route]]
path = "/"
upstream = "app"
auth = "none"
"#;
    let gateway = TestGateway::start(config, upstream.addr).await;
    let client = gateway.client();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/playground/mint")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"sub":"1","role":"admin","ttl":60}"#,
        )))
        .unwrap();
    let reply = client.send(request).await;
    // Forwarded to the upstream like any request: nothing minted it.
    assert_eq!(reply.body, "ok");
    assert_eq!(upstream.last().target, "/playground/mint");
    let reply = send(&client, "/", &[]).await;
    assert_eq!(reply.body, "ok");
    assert_eq!(upstream.count(), 2);
}
