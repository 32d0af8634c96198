//! The recipes of docs/providers.md, run as written. Each test reads its
//! recipe's `toml` config, JOSE header, payload and the headers the upstream
//! is documented to receive from the page itself, so the page and the
//! gateway cannot drift apart. Only addresses are changed: the key set's
//! host becomes an HTTPS server on 127.0.0.1 (its CA made here, given as
//! `ca_file`) and the upstream's address the recording upstream's.
//!
//! Keys are generated per test (RSA by `openssl`, EC P-256 by ring) under
//! the kid the documented header names, published in the provider's JWKS
//! shape; tokens are the documented payloads with fresh times, and the
//! refusals of each recipe's table are variations of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use jwtgate::gateway::unix_now;
use support::idp::{IdpServer, SigningKey};
use support::{Client, Protocol, Reply, TestGateway, Upstream};

/// One recipe of docs/providers.md: the text under its `## ` heading.
struct Recipe {
    config: String,
    header: Value,
    payload: Value,
    /// The documented request line of the ```http upstream block.
    method: Method,
    path: String,
    /// The identity headers the upstream is documented to receive.
    receives: Vec<(String, String)>,
}

const PAGE: &str = include_str!("../docs/providers.md");

/// The text under the heading `## {name}` of docs/providers.md.
fn section(name: &str) -> &'static str {
    let heading = format!("\n## {name}\n");
    let start = PAGE
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/providers.md has no section \"## {name}\""));
    let section = &PAGE[start + heading.len()..];
    &section[..section.find("\n## ").unwrap_or(section.len())]
}

impl Recipe {
    fn read(name: &str) -> Recipe {
        let section = section(name);
        let config = block(section, "toml");
        let header = serde_json::from_str(&block(section, "json header"))
            .unwrap_or_else(|e| panic!("{name}: the JOSE header is not JSON: {e}"));
        let payload = serde_json::from_str(&block(section, "json payload"))
            .unwrap_or_else(|e| panic!("{name}: the payload is not JSON: {e}"));
        let upstream = block(section, "http upstream");
        let mut lines = upstream.lines();
        let request_line = lines.next().expect("a request line");
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap().parse().unwrap();
        let path = parts.next().unwrap().to_owned();
        let receives = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("Name: value");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Recipe {
            config,
            header,
            payload,
            method,
            path,
            receives,
        }
    }
}

/// The one fenced block of `section` whose info string is `info`.
fn block(section: &str, info: &str) -> String {
    let fence = format!("```{info}\n");
    let mut found = section.match_indices(&fence);
    let (at, _) = found
        .next()
        .unwrap_or_else(|| panic!("no ```{info} block in the section"));
    assert!(
        found.next().is_none(),
        "two ```{info} blocks in the section"
    );
    let body = &section[at + fence.len()..];
    body[..body.find("```").expect("a closing fence")].to_owned()
}

/// The recipe's config with only its addresses changed: each key-set `url`
/// (the only `https://` URLs) to the test's IdP server under the same path
/// plus its `ca_file`, and the upstream to the recording upstream. Returns
/// the config and the key-set paths.
fn localise(config: &str, idp: &IdpServer) -> (String, Vec<String>) {
    let mut out = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"unused\"\ntls_key = \"unused\"\n\n",
    );
    let mut paths = Vec::new();
    for line in config.lines() {
        if let Some(rest) = line.strip_prefix("url = \"https://") {
            let url = rest.strip_suffix('"').expect("url = \"…\"");
            let path = &url[url.find('/').expect("a path")..];
            out.push_str(&format!(
                "url = \"{}\"\nca_file = {:?}\n",
                idp.url(path),
                idp.ca_file
            ));
            paths.push(path.to_owned());
        } else if line == "url = \"http://127.0.0.1:8080\"" {
            out.push_str("url = \"http://UPSTREAM\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!paths.is_empty(), "the recipe names no key set URL");
    (out, paths)
}

/// A recipe running: its provider's key and key set, the gateway started
/// from the documented config, the recording upstream.
struct Run {
    recipe: Recipe,
    key: SigningKey,
    upstream: Upstream,
    gateway: TestGateway,
    _idp: IdpServer,
}

impl Run {
    /// Starts `name`'s recipe; `jwks` shapes the provider's key set around
    /// the signing key (the kid and algorithm the documented header names).
    async fn start(name: &str, jwks: impl FnOnce(&SigningKey) -> Value) -> Run {
        let recipe = Recipe::read(name);
        let kid = recipe.header["kid"]
            .as_str()
            .expect("the header names a kid");
        let key = match recipe.header["alg"].as_str() {
            Some("RS256") => SigningKey::rsa(kid),
            Some("ES256") => SigningKey::ec(kid),
            other => panic!("{name}: no test key for alg {other:?}"),
        };
        let idp = IdpServer::start().await;
        let (config, paths) = localise(&recipe.config, &idp);
        let document = jwks(&key);
        for path in &paths {
            idp.publish(path, &document);
        }
        let upstream = Upstream::start().await;
        let gateway = TestGateway::start(&config, upstream.addr).await;
        let run = Run {
            recipe,
            key,
            upstream,
            gateway,
            _idp: idp,
        };
        run.wait_for_keys().await;
        run
    }

    /// The gateway fetches the key set after start-up: until then a signed
    /// token is 503.
    async fn wait_for_keys(&self) {
        let token = self.token(&self.recipe.payload);
        for _ in 0..100 {
            let reply = self.client().get(&self.recipe.path, Some(&token)).await;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the key set never loaded");
    }

    fn client(&self) -> Client {
        self.gateway.client()
    }

    /// `payload` with fresh times, signed under the documented header.
    fn token(&self, payload: &Value) -> String {
        self.token_with_header(&self.recipe.header, payload)
    }

    fn token_with_header(&self, header: &Value, payload: &Value) -> String {
        signed(&self.key, header, payload)
    }

    /// The documented payload changed by `change`, signed.
    fn variant(&self, change: impl FnOnce(&mut Value)) -> String {
        let mut payload = self.recipe.payload.clone();
        change(&mut payload);
        self.token(&payload)
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.client().get(path, Some(token)).await
    }

    /// The documented request with the documented token, each documented
    /// header also sent by the client (spoofed): the upstream must see
    /// exactly the documented values, once each.
    async fn receives_what_the_page_says(&self, protocol: Protocol) {
        let token = self.token(&self.recipe.payload);
        let mut request = Request::builder()
            .method(self.recipe.method.clone())
            .uri(self.recipe.path.as_str())
            .header("authorization", format!("Bearer {token}"));
        for (name, _) in &self.recipe.receives {
            request = request.header(name.as_str(), "spoofed");
        }
        let client = Client::new(self.gateway.addr, &self.gateway.pki, protocol);
        let before = self.upstream.count();
        let reply = client
            .send(request.body(Full::<Bytes>::default()).unwrap())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{} {}: {}",
            self.recipe.method,
            self.recipe.path,
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(self.upstream.count(), before + 1);
        let seen = self.upstream.last();
        for (name, value) in &self.recipe.receives {
            let values: Vec<_> = seen
                .headers
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            assert_eq!(
                values,
                std::slice::from_ref(value),
                "{name} as the upstream saw it"
            );
        }
    }

    /// `token` on `path` is refused with `status`, and the upstream sees
    /// nothing of it.
    async fn refuses(&self, path: &str, token: &str, status: StatusCode, why: &str) {
        let before = self.upstream.count();
        let reply = self.get(path, token).await;
        assert_eq!(
            reply.status,
            status,
            "{why} on {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let code = match status {
            StatusCode::FORBIDDEN => "insufficient_scope",
            _ => "invalid_token",
        };
        assert_eq!(reply.json()["error"], code, "{why} on {path}");
        assert_eq!(
            self.upstream.count(),
            before,
            "{why}: the upstream was called"
        );
    }

    async fn admits(&self, path: &str, token: &str, why: &str) {
        let reply = self.get(path, token).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{why} on {path}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}

/// `payload` with its times made current, signed by `key` under `header`.
fn signed(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let now = unix_now();
    let mut payload = payload.clone();
    for (claim, at) in [
        ("iat", now - 5),
        ("nbf", now - 5),
        ("auth_time", now - 15),
        ("exp", now + 600),
    ] {
        if payload.get(claim).is_some() {
            payload[claim] = at.into();
        }
    }
    key.sign(header, &payload)
}

fn with_alg(key: &SigningKey) -> Value {
    json!({ "keys": [key.jwk(true)] })
}

#[tokio::test]
async fn keycloak_recipe_reads_realm_and_client_roles_and_refuses_id_tokens() {
    // Keycloak's set also lists the realm's encryption key (RSA-OAEP).
    let run = Run::start("Keycloak", |key| {
        let mut enc = key.jwk(false);
        enc["kid"] = "enc-Yt7wqP3mR9s".into();
        enc["use"] = "enc".into();
        enc["alg"] = "RSA-OAEP".into();
        json!({ "keys": [key.jwk(true), enc] })
    })
    .await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/admin", &full, "the realm role orders-admin")
        .await;

    let no_client_role = run.variant(|p| {
        p["resource_access"]["orders-api"]["roles"] = json!(["orders-auditor"]);
    });
    run.refuses(
        "/orders",
        &no_client_role,
        StatusCode::FORBIDDEN,
        "no orders-api client role",
    )
    .await;
    let no_realm_role = run.variant(|p| {
        p["realm_access"]["roles"] = json!(["default-roles-acme", "offline_access"]);
    });
    run.refuses(
        "/admin",
        &no_realm_role,
        StatusCode::FORBIDDEN,
        "no realm role orders-admin",
    )
    .await;
    // Client roles are not realm roles: orders-admin as a client role of
    // orders-api does not open /admin.
    let admin_as_client_role = run.variant(|p| {
        p["realm_access"]["roles"] = json!(["default-roles-acme"]);
        p["resource_access"]["orders-api"]["roles"] = json!(["orders-admin"]);
    });
    run.refuses(
        "/admin",
        &admin_as_client_role,
        StatusCode::FORBIDDEN,
        "orders-admin as a client role",
    )
    .await;
    let id_token_same_client = run.variant(|p| {
        p["typ"] = "ID".into();
        p["aud"] = "orders-api".into();
        p["azp"] = "orders-api".into();
    });
    run.refuses(
        "/orders",
        &id_token_same_client,
        StatusCode::FORBIDDEN,
        "an ID token issued to orders-api",
    )
    .await;
    let id_token = run.variant(|p| {
        p["typ"] = "ID".into();
        p["aud"] = "orders-web".into();
    });
    run.refuses(
        "/orders",
        &id_token,
        StatusCode::UNAUTHORIZED,
        "an ID token of orders-web",
    )
    .await;
    let other_realm = run.variant(|p| {
        p["iss"] = "https://sso.example.com/realms/other".into();
    });
    run.refuses(
        "/orders",
        &other_realm,
        StatusCode::UNAUTHORIZED,
        "another realm",
    )
    .await;
}

#[tokio::test]
async fn auth0_recipe_checks_scope_permissions_and_namespaced_roles_and_refuses_id_tokens() {
    let run = Run::start("Auth0", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/refunds", &full, "orders:read and orders:refund")
        .await;
    run.admits("/support", &full, "the namespaced role support")
        .await;

    let no_read_scope = run.variant(|p| p["scope"] = "openid profile orders:write".into());
    run.refuses(
        "/orders",
        &no_read_scope,
        StatusCode::FORBIDDEN,
        "scope without orders:read",
    )
    .await;
    // A scope that merely contains the text is not the scope.
    let lookalike = run.variant(|p| p["scope"] = "openid orders:read-all".into());
    run.refuses(
        "/orders",
        &lookalike,
        StatusCode::FORBIDDEN,
        "scope orders:read-all",
    )
    .await;
    let no_refund = run.variant(|p| p["permissions"] = json!(["orders:read"]));
    run.refuses(
        "/refunds",
        &no_refund,
        StatusCode::FORBIDDEN,
        "permissions without orders:refund",
    )
    .await;
    let no_role = run.variant(|p| p["https://example.com/roles"] = json!(["sales"]));
    run.refuses(
        "/support",
        &no_role,
        StatusCode::FORBIDDEN,
        "no role support",
    )
    .await;

    // An ID token: typ JWT. Even with the API's audience it is refused.
    let id_header = json!({ "alg": "RS256", "typ": "JWT", "kid": run.key.kid() });
    let mut id_payload = run.recipe.payload.clone();
    id_payload["aud"] = "Xq9Qp2Lm4Nb7Vc1Zx3Sd5Fg8Hj0Kl6Pw".into();
    let id_token = run.token_with_header(&id_header, &id_payload);
    run.refuses(
        "/orders",
        &id_token,
        StatusCode::UNAUTHORIZED,
        "an ID token",
    )
    .await;
    let id_token_api_audience = run.token_with_header(&id_header, &run.recipe.payload);
    run.refuses(
        "/orders",
        &id_token_api_audience,
        StatusCode::UNAUTHORIZED,
        "typ JWT with the API's audience",
    )
    .await;
    // RFC 9068 §4: "application/at+jwt" and any case are the same type.
    let long_typ = json!({ "alg": "RS256", "typ": "application/AT+JWT", "kid": run.key.kid() });
    run.admits(
        "/orders",
        &run.token_with_header(&long_typ, &run.recipe.payload),
        "typ application/AT+JWT",
    )
    .await;
    let other_api = run.variant(|p| {
        p["aud"] = json!([
            "https://billing.example.com",
            "https://acme.us.auth0.com/userinfo"
        ]);
    });
    run.refuses(
        "/orders",
        &other_api,
        StatusCode::UNAUTHORIZED,
        "another API's token",
    )
    .await;
}

#[tokio::test]
async fn okta_recipe_forwards_non_ascii_and_comma_groups_encoded_and_matches_them_decoded() {
    let run = Run::start("Okta", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    run.receives_what_the_page_says(Protocol::Http2).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/dev", &full, "the group Développeurs").await;
    run.admits("/admin", &full, "the group CN=Admins,OU=…")
        .await;

    let no_scope = run.variant(|p| p["scp"] = json!(["openid", "email"]));
    run.refuses(
        "/orders",
        &no_scope,
        StatusCode::FORBIDDEN,
        "scp without orders.read",
    )
    .await;
    // "CN=Admins" and "OU=Groups" as two groups are not the one group.
    let split_group = run.variant(|p| {
        p["groups"] = json!(["Everyone", "CN=Admins", "OU=Groups", "DC=example", "DC=com"]);
    });
    run.refuses(
        "/admin",
        &split_group,
        StatusCode::FORBIDDEN,
        "the DN's parts as separate groups",
    )
    .await;
    let undecoded = run.variant(|p| p["groups"] = json!(["D%C3%A9veloppeurs"]));
    run.refuses(
        "/dev",
        &undecoded,
        StatusCode::FORBIDDEN,
        "the encoded spelling as a group name",
    )
    .await;
    let id_token = run.variant(|p| {
        p["aud"] = "0oa1b2c3d4e5F6g7H8i9".into();
        p.as_object_mut().unwrap().remove("scp");
    });
    run.refuses(
        "/orders",
        &id_token,
        StatusCode::UNAUTHORIZED,
        "an ID token",
    )
    .await;
}

#[tokio::test]
async fn entra_recipe_admits_listed_tenants_only_with_alg_less_keys_and_large_group_claims() {
    let run = Run::start("Microsoft Entra ID (v2, multi-tenant)", |key| {
        // Entra's keys: no alg, an issuer template, an x5t.
        let mut jwk = key.jwk(false);
        jwk["x5t"] = key.kid().into();
        jwk["issuer"] = "https://login.microsoftonline.com/{tenantid}/v2.0".into();
        assert!(jwk.get("alg").is_none());
        json!({ "keys": [jwk] })
    })
    .await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/admin", &full, "the app role Orders.Admin")
        .await;

    let second = "3c1e4b2a-8f7d-4e6c-9a5b-0d2f1e3c4b5a";
    let second_tenant = run.variant(|p| {
        p["iss"] = format!("https://login.microsoftonline.com/{second}/v2.0").into();
        p["tid"] = second.into();
    });
    run.admits("/orders", &second_tenant, "the second listed tenant")
        .await;
    assert_eq!(run.upstream.last().header("x-tenant-id"), Some(second));

    let stranger = "0b9a8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d";
    let other_tenant = run.variant(|p| {
        p["iss"] = format!("https://login.microsoftonline.com/{stranger}/v2.0").into();
        p["tid"] = stranger.into();
    });
    run.refuses(
        "/orders",
        &other_tenant,
        StatusCode::UNAUTHORIZED,
        "a tenant not listed",
    )
    .await;
    let no_scope = run.variant(|p| p["scp"] = "User.Read".into());
    run.refuses(
        "/orders",
        &no_scope,
        StatusCode::FORBIDDEN,
        "scp without Orders.Read",
    )
    .await;
    let app_only = run.variant(|p| {
        let p = p.as_object_mut().unwrap();
        p.remove("scp");
        p.remove("name");
        p.remove("preferred_username");
    });
    run.refuses(
        "/orders",
        &app_only,
        StatusCode::FORBIDDEN,
        "an app-only token",
    )
    .await;
    run.admits("/admin", &app_only, "an app-only token with Orders.Admin")
        .await;
    let id_token = run.variant(|p| {
        p["aud"] = "d3590ed6-52b3-4102-aeff-aad2292ab01c".into();
        p.as_object_mut().unwrap().remove("scp");
    });
    run.refuses(
        "/orders",
        &id_token,
        StatusCode::UNAUTHORIZED,
        "an ID token",
    )
    .await;

    // 200 group object IDs, the most Entra puts in a token.
    let many_groups = run.variant(|p| {
        p["groups"] = (0..200)
            .map(|i| format!("{i:08x}-4b3c-4d5e-8f9a-0b1c2d3e4f5a"))
            .collect();
    });
    assert!(many_groups.len() > 8 * 1024, "{}", many_groups.len());
    run.admits("/orders", &many_groups, "a token with 200 groups")
        .await;
}

#[tokio::test]
async fn google_recipe_accepts_both_issuer_spellings_and_only_the_workspace_domain() {
    let run = Run::start("Google", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let short_issuer = run.variant(|p| p["iss"] = "accounts.google.com".into());
    run.admits("/orders", &short_issuer, "iss accounts.google.com")
        .await;
    assert_eq!(
        run.upstream.last().header("x-user-id"),
        Some("jane@example.com")
    );

    let consumer = run.variant(|p| {
        p.as_object_mut().unwrap().remove("hd");
        p["email"] = "jane.doe@gmail.com".into();
    });
    run.refuses(
        "/orders",
        &consumer,
        StatusCode::FORBIDDEN,
        "a consumer account",
    )
    .await;
    let other_domain = run.variant(|p| p["hd"] = "example.org".into());
    run.refuses(
        "/orders",
        &other_domain,
        StatusCode::FORBIDDEN,
        "another Workspace domain",
    )
    .await;
    let unverified = run.variant(|p| p["email_verified"] = false.into());
    run.refuses(
        "/orders",
        &unverified,
        StatusCode::FORBIDDEN,
        "email_verified false",
    )
    .await;
    let other_client = run.variant(|p| {
        p["aud"] = "999999999-other.apps.googleusercontent.com".into();
    });
    run.refuses(
        "/orders",
        &other_client,
        StatusCode::UNAUTHORIZED,
        "another client's ID token",
    )
    .await;
    let lookalike_issuer = run.variant(|p| p["iss"] = "https://accounts.google.com.evil".into());
    run.refuses(
        "/orders",
        &lookalike_issuer,
        StatusCode::UNAUTHORIZED,
        "a lookalike issuer",
    )
    .await;
}

#[tokio::test]
async fn cognito_recipe_takes_access_tokens_of_its_app_client_and_refuses_id_tokens() {
    let run = Run::start("AWS Cognito", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/admin", &full, "the group admins").await;

    // The pool's ID token: aud, token_use id, no client_id nor scope.
    let id_token = run.variant(|p| {
        let p = p.as_object_mut().unwrap();
        for claim in ["client_id", "scope", "version", "jti", "username"] {
            p.remove(claim);
        }
        p.insert("aud".into(), "5r4a1b2c3d4e5f6g7h8i9j0k1l".into());
        p.insert("token_use".into(), "id".into());
        p.insert("cognito:username".into(), "jane".into());
        p.insert("email".into(), "jane@example.com".into());
        p.insert("email_verified".into(), true.into());
    });
    for path in ["/orders", "/admin"] {
        run.refuses(path, &id_token, StatusCode::FORBIDDEN, "an ID token")
            .await;
    }
    // token_use is checked on its own, not only through client_id.
    let id_use = run.variant(|p| p["token_use"] = "id".into());
    for path in ["/orders", "/admin"] {
        run.refuses(
            path,
            &id_use,
            StatusCode::FORBIDDEN,
            "token_use id with a client_id",
        )
        .await;
    }
    let other_client = run.variant(|p| p["client_id"] = "7abcdefghijklmnopqrstuvwx".into());
    for path in ["/orders", "/admin"] {
        run.refuses(
            path,
            &other_client,
            StatusCode::FORBIDDEN,
            "another app client",
        )
        .await;
    }
    let no_scope = run.variant(|p| p["scope"] = "aws.cognito.signin.user.admin".into());
    run.refuses(
        "/orders",
        &no_scope,
        StatusCode::FORBIDDEN,
        "scope without orders/read",
    )
    .await;
    let not_admin = run.variant(|p| p["cognito:groups"] = json!(["orders-staff"]));
    run.refuses("/admin", &not_admin, StatusCode::FORBIDDEN, "not in admins")
        .await;
    let other_pool = run.variant(|p| {
        p["iss"] = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_ZzZzZz999".into();
    });
    run.refuses(
        "/orders",
        &other_pool,
        StatusCode::UNAUTHORIZED,
        "another user pool",
    )
    .await;
}

#[tokio::test]
async fn kubernetes_recipe_authorizes_by_nested_namespace_and_by_subject() {
    let run = Run::start("Kubernetes service accounts", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/ledger", &full, "the billing service account")
        .await;

    let other_namespace = run.variant(|p| {
        p["kubernetes.io"]["namespace"] = "default".into();
        p["kubernetes.io"]["serviceaccount"]["name"] = "default".into();
        p["sub"] = "system:serviceaccount:default:default".into();
    });
    run.refuses(
        "/charges",
        &other_namespace,
        StatusCode::FORBIDDEN,
        "another namespace",
    )
    .await;
    // A top-level claim literally named "kubernetes.io.namespace" is not
    // the nested value.
    let flat_name = run.variant(|p| {
        p["kubernetes.io"]["namespace"] = "default".into();
        p["kubernetes.io.namespace"] = "payments".into();
    });
    run.refuses(
        "/charges",
        &flat_name,
        StatusCode::FORBIDDEN,
        "a flat claim named kubernetes.io.namespace",
    )
    .await;
    let other_account = run.variant(|p| {
        p["kubernetes.io"]["serviceaccount"]["name"] = "reports".into();
        p["sub"] = "system:serviceaccount:payments:reports".into();
    });
    run.admits("/charges", &other_account, "another account of payments")
        .await;
    run.refuses(
        "/ledger",
        &other_account,
        StatusCode::FORBIDDEN,
        "another service account",
    )
    .await;
    let api_server_token = run.variant(|p| {
        p["aud"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    });
    run.refuses(
        "/charges",
        &api_server_token,
        StatusCode::UNAUTHORIZED,
        "the default audience",
    )
    .await;
}

#[tokio::test]
async fn github_actions_recipe_needs_repository_and_ref_and_refuses_other_repositories_main() {
    let run = Run::start("GitHub Actions OIDC", with_alg).await;
    run.receives_what_the_page_says(Protocol::Http1).await;
    let full = run.token(&run.recipe.payload);
    run.admits("/artifacts", &full, "an octo-org repository's main")
        .await;
    let seen = run.upstream.last();
    assert_eq!(
        seen.header("x-workflow"),
        Some("octo-org/orders/.github/workflows/deploy.yml@refs/heads/main")
    );
    // The route's header is the route's alone.
    run.admits("/deploy/orders", &full, "this repository's main")
        .await;
    assert_eq!(run.upstream.last().header("x-workflow"), None);

    let for_repo = |repo: &str, git_ref: &str| {
        let repo = repo.to_owned();
        let git_ref = git_ref.to_owned();
        run.variant(move |p| {
            p["sub"] = format!("repo:{repo}:ref:{git_ref}").into();
            p["repository"] = repo.clone().into();
            p["repository_owner"] = repo.split('/').next().unwrap().into();
            p["ref"] = git_ref.into();
        })
    };
    let website_main = for_repo("octo-org/website", "refs/heads/main");
    run.refuses(
        "/deploy/orders",
        &website_main,
        StatusCode::FORBIDDEN,
        "another repository's main",
    )
    .await;
    run.admits("/artifacts", &website_main, "another octo-org repository")
        .await;
    let feature = for_repo("octo-org/orders", "refs/heads/feature");
    for path in ["/deploy/orders", "/artifacts"] {
        run.refuses(path, &feature, StatusCode::FORBIDDEN, "a feature branch")
            .await;
    }
    let other_org = for_repo("evil-org/orders", "refs/heads/main");
    for path in ["/deploy/orders", "/artifacts"] {
        run.refuses(
            path,
            &other_org,
            StatusCode::FORBIDDEN,
            "another organisation's main",
        )
        .await;
    }
    let environment = run.variant(|p| p["sub"] = "repo:octo-org/orders:environment:prod".into());
    run.refuses(
        "/artifacts",
        &environment,
        StatusCode::FORBIDDEN,
        "a job with an environment",
    )
    .await;
    let default_audience = run.variant(|p| p["aud"] = "https://github.com/octo-org".into());
    run.refuses(
        "/deploy/orders",
        &default_audience,
        StatusCode::UNAUTHORIZED,
        "GitHub's default audience",
    )
    .await;
}

#[tokio::test]
async fn several_providers_recipe_keeps_each_route_to_its_provider_and_its_keys() {
    let people = Recipe::read("Keycloak");
    let ci = Recipe::read("GitHub Actions OIDC");
    let kid = |recipe: &Recipe| recipe.header["kid"].as_str().unwrap().to_owned();
    let (people_key, ci_key) = (SigningKey::rsa(&kid(&people)), SigningKey::rsa(&kid(&ci)));
    let idp = IdpServer::start().await;
    let (config, paths) = localise(
        &block(section("Several providers in one gateway"), "toml"),
        &idp,
    );
    for path in &paths {
        let key = if path.starts_with("/realms/") {
            &people_key
        } else {
            &ci_key
        };
        idp.publish(path, &with_alg(key));
    }
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let person = signed(&people_key, &people.header, &people.payload);
    let workflow = signed(&ci_key, &ci.header, &ci.payload);
    let send = async |path: &str, token: &str, spoof: &str| {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .header(spoof, "spoofed")
            .body(Full::<Bytes>::default())
            .unwrap();
        gateway.client().send(request).await
    };
    for (path, token) in [("/orders", &person), ("/deploy/orders", &workflow)] {
        let mut loaded = false;
        for _ in 0..100 {
            if gateway.client().get(path, Some(token)).await.status
                != StatusCode::SERVICE_UNAVAILABLE
            {
                loaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(loaded, "the key set of {path}'s provider never loaded");
    }

    let reply = send("/orders", &person, "x-repository").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let seen = upstream.last();
    assert_eq!(seen.header("x-email"), Some("jane.doe@example.com"));
    assert_eq!(
        seen.header("x-repository"),
        None,
        "a client-sent X-Repository"
    );
    let reply = send("/deploy/orders", &workflow, "x-email").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let seen = upstream.last();
    assert_eq!(seen.header("x-repository"), Some("octo-org/orders"));
    assert_eq!(seen.header("x-email"), None, "a client-sent X-Email");

    let before = upstream.count();
    for (path, token, why) in [
        ("/orders", &workflow, "the workflow's token"),
        ("/deploy/orders", &person, "a person's token"),
    ] {
        let reply = gateway.client().get(path, Some(token)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{why} on {path}");
    }
    // Keycloak's issuer, GitHub's key: only Keycloak's keys may decide.
    let mut header = people.header.clone();
    header["kid"] = ci_key.kid().into();
    let forged = signed(&ci_key, &header, &people.payload);
    let reply = gateway.client().get("/orders", Some(&forged)).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "another provider's key"
    );
    assert_eq!(upstream.count(), before);
}

#[test]
fn every_recipe_on_the_page_has_a_test() {
    let tested = [
        "Keycloak",
        "Auth0",
        "Okta",
        "Microsoft Entra ID (v2, multi-tenant)",
        "Google",
        "AWS Cognito",
        "Kubernetes service accounts",
        "GitHub Actions OIDC",
        "Several providers in one gateway",
    ];
    let recipes: Vec<&str> = PAGE
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter(|heading| *heading != "Before the recipes")
        .collect();
    assert_eq!(recipes, tested);
    for name in &tested[..tested.len() - 1] {
        let recipe = Recipe::read(name);
        assert!(!recipe.receives.is_empty(), "{name}");
    }
}
