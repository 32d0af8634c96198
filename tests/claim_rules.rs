//! Several token issuers in one gateway: `iss` picks the provider, whose
//! keys alone verify the token; routes limit providers, audiences and
//! claims; claims travel to the upstream as headers, encoded one way, and
//! client copies of those headers never pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use jwtgate::gateway::unix_now;
use jwtgate::jwt::Alg;
use jwtgate::keys::Key;
use serde_json::{Value, json};
use support::{SECRET, TestGateway, Upstream};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"

[[provider]]
name = "realm"
issuers = ["https://kc.test/realms/acme"]
role_claim = ["realm_access", "roles"]
user_claim = "preferred_username"
headers = { X-Email = "email", X-Groups = "groups" }
payload_header = "X-Jwt-Payload"
[[provider.keys]]
alg = "HS256"
secret_env = "SECRET"

[[provider]]
name = "entra"
issuers = ["https://login.test/{tenant}/v2.0"]
tenants = ["t1", "t2"]
audiences = ["api://orders"]
typ = ["JWT"]
user_claim = "oid"
role_claim = "roles"
headers = { X-Tenant-Id = "tid" }
[[provider.keys]]
alg = "HS256"
secret_env = "SECRET2"

[[upstream]]
name = "app"
url = "http://UPSTREAM"

[[route]]
path = "/public"
upstream = "app"
auth = "none"

[[route]]
path = "/realm-only"
upstream = "app"
providers = ["realm"]

[[route]]
path = "/orders-admin"
upstream = "app"
audiences = ["api://orders-admin"]

[[route]]
path = "/scoped"
upstream = "app"
[[route.claims]]
claim = "scp"
space_separated = true
all_of = ["orders.read", "orders.write"]

[[route]]
path = "/deploy"
upstream = "app"
headers = { X-Repository = "repository" }
[[route.claims]]
claim = "repository"
equals = "acme/api"
[[route.claims]]
claim = "ref"
glob = "refs/heads/main"
[[route.claims]]
claim = ["kubernetes.io", "namespace"]
any_of = ["prod", "staging"]

[[route]]
path = "/"
upstream = "app"
"#;

fn second_secret() -> String {
    format!("{SECRET}-second")
}

/// A token with this header's `typ` and these claims, signed with `secret`.
fn sign(secret: &str, typ: Option<&str>, claims: Value) -> String {
    let key = Key::hmac(None, Alg::HS256, secret.as_bytes()).unwrap();
    let mut header = json!({ "alg": "HS256" });
    if let Some(typ) = typ {
        header["typ"] = json!(typ);
    }
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    format!("{input}.{}", B64.encode(key.sign(input.as_bytes())))
}

fn realm_token(extra: Value) -> String {
    let mut claims = json!({
        "iss": "https://kc.test/realms/acme", "exp": unix_now() + 600,
        "preferred_username": "alice", "email": "alice@example.com",
        "realm_access": { "roles": ["user", "Développeurs"] },
        "groups": ["CN=Admins,OU=Groups", "ops"],
    });
    merge(&mut claims, extra);
    sign(SECRET, Some("JWT"), claims)
}

fn entra_token(tenant: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": format!("https://login.test/{tenant}/v2.0"), "exp": unix_now() + 600,
        "aud": "api://orders", "oid": "00000000-0000-0000-0000-000000000042",
        "tid": tenant, "roles": ["Orders.Admin"], "scp": "orders.read orders.write",
    });
    merge(&mut claims, extra);
    sign(&second_secret(), Some("JWT"), claims)
}

fn merge(claims: &mut Value, extra: Value) {
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
}

async fn setup() -> (Upstream, TestGateway) {
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(CONFIG, upstream.addr).await;
    (upstream, gateway)
}

#[tokio::test]
async fn each_provider_s_token_is_verified_and_mapped_its_own_way() {
    let (upstream, gateway) = setup().await;
    let reply = gateway
        .client()
        .get("/x", Some(&realm_token(json!({}))))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-id"), Some("alice"));
    assert_eq!(seen.header("x-role"), Some("user,D%C3%A9veloppeurs"));
    assert_eq!(seen.header("x-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-groups"), Some("CN=Admins%2COU=Groups,ops"));
    assert_eq!(seen.header("x-tenant-id"), None);
    let payload = B64.decode(seen.header("x-jwt-payload").unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["preferred_username"], "alice");

    let reply = gateway
        .client()
        .get("/x", Some(&entra_token("t2", json!({}))))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-user-id"),
        Some("00000000-0000-0000-0000-000000000042")
    );
    assert_eq!(seen.header("x-role"), Some("Orders.Admin"));
    assert_eq!(seen.header("x-tenant-id"), Some("t2"));
    assert_eq!(seen.header("x-email"), None);
}

#[tokio::test]
async fn a_token_is_verified_only_with_the_keys_of_the_provider_its_iss_names() {
    let (upstream, gateway) = setup().await;
    let now = unix_now();
    // Claims of the entra provider, signed with the realm provider's key.
    let crossed = sign(
        SECRET,
        Some("JWT"),
        json!({ "iss": "https://login.test/t1/v2.0", "aud": "api://orders", "exp": now + 600, "oid": "x" }),
    );
    let unknown = sign(
        SECRET,
        None,
        json!({ "iss": "https://evil.test", "exp": now + 600 }),
    );
    let no_iss = sign(SECRET, None, json!({ "exp": now + 600, "sub": "x" }));
    let other_tenant = entra_token("t3", json!({}));
    let id_token_typ = sign(
        &second_secret(),
        Some("id+jwt"),
        json!({ "iss": "https://login.test/t1/v2.0", "aud": "api://orders", "exp": now + 600 }),
    );
    let other_audience = entra_token("t1", json!({ "aud": "api://billing" }));
    for (token, reason) in [
        (crossed, "bad_signature"),
        (unknown, "bad_issuer"),
        (no_iss, "invalid_claims"),
        (other_tenant, "bad_issuer"),
        (id_token_typ, "bad_typ"),
        (other_audience, "bad_audience"),
    ] {
        let reply = gateway.client().get("/x", Some(&token)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(reply.json()["error"], "invalid_token", "{reason}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn routes_limit_providers_and_audiences_with_401() {
    let (upstream, gateway) = setup().await;
    let client = gateway.client();
    let entra = entra_token("t1", json!({}));
    assert_eq!(
        client.get("/realm-only", Some(&entra)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let realm = realm_token(json!({}));
    assert_eq!(
        client.get("/realm-only", Some(&realm)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/orders-admin", Some(&entra)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let admin = entra_token(
        "t1",
        json!({ "aud": ["api://orders", "api://orders-admin"] }),
    );
    assert_eq!(
        client.get("/orders-admin", Some(&admin)).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn claim_rules_answer_403_insufficient_scope_naming_nothing_to_the_client() {
    let (upstream, gateway) = setup().await;
    let client = gateway.client();
    let read_only = entra_token("t1", json!({ "scp": "orders.read" }));
    let reply = client.get("/scoped", Some(&read_only)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"], "insufficient_scope");
    let both = entra_token("t1", json!({}));
    assert_eq!(
        client.get("/scoped", Some(&both)).await.status,
        StatusCode::OK
    );

    let deploy = |repository: &str, git_ref: &str, namespace: &str| {
        realm_token(json!({
            "repository": repository, "ref": git_ref,
            "kubernetes.io": { "namespace": namespace },
            // A top-level name with the dots of the nested path: a decoy.
            "kubernetes.io.namespace": "prod",
        }))
    };
    for (token, status) in [
        (
            deploy("acme/api", "refs/heads/main", "prod"),
            StatusCode::OK,
        ),
        (
            deploy("evil/api", "refs/heads/main", "prod"),
            StatusCode::FORBIDDEN,
        ),
        (
            deploy("acme/api", "refs/heads/feature", "prod"),
            StatusCode::FORBIDDEN,
        ),
        (
            deploy("acme/api", "refs/heads/main", "dev"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        assert_eq!(client.get("/deploy/run", Some(&token)).await.status, status);
    }
    let seen = upstream.last();
    assert_eq!(seen.header("x-repository"), Some("acme/api"));
    assert_eq!(upstream.count(), 2);
}

/// Invariant 3 for configured claim headers: whatever the method, the
/// route and the protocol, a client's copy never reaches the upstream.
#[tokio::test]
async fn client_copies_of_claim_headers_never_reach_the_upstream() {
    let (upstream, gateway) = setup().await;
    let realm = realm_token(json!({}));
    for client in [gateway.client(), gateway.h2_client()] {
        for method in [Method::GET, Method::POST, Method::DELETE, Method::PATCH] {
            for (path, token) in [("/public/x", None), ("/x", Some(&realm))] {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("x-tenant-id", "spoofed")
                    .header("X_Tenant_Id", "spoofed")
                    .header("x-repository", "spoofed")
                    .header("x-email", "spoofed")
                    .header("x-jwt-payload", "spoofed");
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let reply = client.send(request.body(Full::default()).unwrap()).await;
                assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
                let seen = upstream.last();
                assert_eq!(seen.header("x-tenant-id"), None, "{method} {path}");
                assert_eq!(seen.header("x_tenant_id"), None, "{method} {path}");
                assert_eq!(seen.header("x-repository"), None, "{method} {path}");
                let spoofed = seen.header("x-jwt-payload") == Some("spoofed");
                assert!(!spoofed, "{method} {path}");
                let email = token.map(|_| "alice@example.com");
                assert_eq!(seen.header("x-email"), email, "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn a_single_jwt_section_still_reads_nested_role_claims() {
    let upstream = Upstream::start().await;
    let config = support::CONFIG.replace(
        "[jwt]\nleeway = \"30s\"",
        "[jwt]\nleeway = \"30s\"\nrole_claim = [\"realm_access\", \"roles\"]",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let now = unix_now();
    let admin = support::mint(
        json!({ "sub": "7", "exp": now + 600, "realm_access": { "roles": ["admin"] } }),
    );
    assert_eq!(
        gateway.client().get("/admin", Some(&admin)).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.last().header("x-role"), Some("admin"));
    let flat = support::mint(json!({ "sub": "7", "exp": now + 600, "role": "admin" }));
    assert_eq!(
        gateway.client().get("/admin", Some(&flat)).await.status,
        StatusCode::FORBIDDEN
    );
}
