//! JWKS over real HTTPS: an identity provider's key set served by a TLS
//! server inside the test (its own CA), the real gateway fetching it.
//! Rotation without restart, removal after refresh, an endpoint that goes
//! down, one that never came up (503), and a flood of unknown kids that
//! must not become a flood of fetches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use jwtgate::config::Config;
use jwtgate::gateway::{Gateway, unix_now};
use jwtgate::tls::{self, DevPki};
use support::{TestGateway, Upstream, plain_get};

/// An identity provider's signing key (ES256, generated per test).
struct IdpKey {
    kid: String,
    pair: EcdsaKeyPair,
}

impl IdpKey {
    fn new(kid: &str) -> IdpKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        IdpKey {
            kid: kid.to_owned(),
            pair,
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        })
    }

    fn token(&self) -> String {
        self.token_with_kid(&self.kid)
    }

    fn token_with_kid(&self, kid: &str) -> String {
        let now = unix_now();
        let header = json!({ "alg": "ES256", "kid": kid }).to_string();
        let claims =
            json!({ "sub": "42", "role": "user", "iss": "https://idp.test", "exp": now + 600 })
                .to_string();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// An identity provider's RSA signing key, published as Entra ID and
/// Google do: a JWK without `alg`. Generated with the openssl command.
struct RsaIdpKey {
    kid: String,
    signer: jwtgate::token::Signer,
    n: String,
}

impl RsaIdpKey {
    fn new(kid: &str, alg: jwtgate::jwt::Alg) -> RsaIdpKey {
        let dir = std::env::temp_dir().join(format!("jwtgate-rsa-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-out", "rsa.key"])
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command generates test keys");
        assert!(status.success());
        let pem = std::fs::read(dir.join("rsa.key")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let signer = jwtgate::token::Signer::from_pem(Some(kid.to_owned()), alg, &pem).unwrap();
        let public = signer.public_key().unwrap();
        let (n, _) = jwtgate::keys::der::rsa_public_key(&public).unwrap();
        RsaIdpKey {
            kid: kid.to_owned(),
            n: URL_SAFE_NO_PAD.encode(n),
            signer,
        }
    }

    /// Entra ID's shape: `use`, `kid`, `x5t`, `n`, `e`, `issuer`; no `alg`.
    fn jwk(&self) -> serde_json::Value {
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": self.n, "e": "AQAB",
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        })
    }

    fn token(&self, iss: &str) -> String {
        let claims = json!({ "sub": "42", "role": "user", "iss": iss, "exp": unix_now() + 600 });
        jwtgate::token::mint_with(&self.signer, claims.as_object().unwrap()).unwrap()
    }
}

/// JWKs no verifier here can use, as providers publish them beside their
/// signing keys: P-521, Ed448, a post-quantum `AKP` key, broken numbers.
fn unusable_jwks() -> Vec<serde_json::Value> {
    vec![
        json!({"kty": "EC", "crv": "P-521", "kid": "p521", "use": "sig",
               "x": "AWBvGl6BEFR9j1pLQYGCDSvzHXkkBwfB3cJMkkkNcYSf", "y": "ARGSWTdW5Ek7sgaXlE4H0g"}),
        json!({"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": "X9dEm1m0Yf0s"}),
        json!({"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq", "pub": "AAAA"}),
        json!({"kty": "RSA", "alg": "RS256", "kid": "broken", "n": "not base64!", "e": "AQAB"}),
    ]
}

/// A JWKS endpoint over HTTPS whose document and health the test controls.
/// It also answers `…/.well-known/openid-configuration` with `discovery`.
struct JwksServer {
    addr: SocketAddr,
    ca_file: PathBuf,
    body: Arc<Mutex<String>>,
    discovery: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: &[&IdpKey]) -> JwksServer {
        let pki = DevPki::generate().unwrap();
        let ca_file = std::env::temp_dir().join(format!(
            "jwtgate-jwks-ca-{}-{}.pem",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();
        let config =
            tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
        let acceptor = TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            addr,
            ca_file,
            body: Arc::new(Mutex::new(String::new())),
            discovery: Arc::new(Mutex::new(String::new())),
            down: Arc::new(AtomicBool::new(false)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        server.publish(keys);
        let (body, discovery, down, fetches) = (
            server.body.clone(),
            server.discovery.clone(),
            server.down.clone(),
            server.fetches.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, body, discovery, down, fetches) = (
                    acceptor.clone(),
                    body.clone(),
                    discovery.clone(),
                    down.clone(),
                    fetches.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: http::Request<_>| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let document = match request.uri().path() {
                            p if p.ends_with("/.well-known/openid-configuration") => &discovery,
                            _ => &body,
                        };
                        let response = if down.load(Ordering::SeqCst) {
                            Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::new()))
                                .unwrap()
                        } else {
                            let text = document.lock().unwrap().clone();
                            Response::new(Full::new(Bytes::from(text)))
                        };
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        server
    }

    fn publish(&self, keys: &[&IdpKey]) {
        self.publish_jwks(keys.iter().map(|k| k.jwk()).collect());
    }

    fn publish_jwks(&self, jwks: Vec<serde_json::Value>) {
        *self.body.lock().unwrap() = json!({ "keys": jwks }).to_string();
    }

    /// `https://127.0.0.1:<port><path>`.
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// Serves a discovery document naming `issuer` and this server's JWKS.
    fn publish_discovery(&self, issuer: &str) {
        *self.discovery.lock().unwrap() = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
            "jwks_uri": self.url("/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })
        .to_string();
    }

    fn config(&self, refresh: &str, cooldown: &str) -> String {
        jwks_config(
            &format!(
                "https://127.0.0.1:{}/.well-known/jwks.json",
                self.addr.port()
            ),
            &self.ca_file,
            refresh,
            cooldown,
        )
    }
}

fn rand_suffix() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

fn jwks_config(url: &str, ca_file: &std::path::Path, refresh: &str, cooldown: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"

[[jwt.keys]]
kid = "k1"
alg = "HS256"
secret_env = "SECRET"

[[jwt.jwks]]
url = "{url}"
ca_file = "{}"
issuer = "https://idp.test"
refresh = "{refresh}"
cooldown = "{cooldown}"

[[upstream]]
name = "app"
url = "http://UPSTREAM"
timeout = "2s"

[[route]]
path = "/"
upstream = "app"
"#,
        ca_file.display()
    )
}

/// Polls `check` every 50 ms for up to 5 s.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn jwks_token_is_accepted_and_forwards_its_identity() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("5m", "100ms"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    assert_eq!(upstream.last().header("x-user-id"), Some("42"));
    // HMAC keys keep working beside the JWKS.
    assert_eq!(
        client.get("/x", Some(&support::token("user"))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn new_kid_is_accepted_without_restart_and_removed_kid_is_refused_after_refresh() {
    let (a, b) = (IdpKey::new("a"), IdpKey::new("b"));
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("1s", "100ms"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    // The IdP rotates: b appears. Its first token triggers a refresh (once
    // the 100 ms cooldown since the last fetch has passed).
    idp.publish(&[&a, &b]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        client.get("/x", Some(&b.token())).await.status,
        StatusCode::OK
    );
    // a is retired; after the next background refresh its tokens fail.
    idp.publish(&[&b]);
    assert!(
        eventually(async || {
            client.get("/x", Some(&a.token())).await.status == StatusCode::UNAUTHORIZED
        })
        .await
    );
    assert_eq!(
        client.get("/x", Some(&b.token())).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_endpoint_is_down() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("1s", "100ms"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    idp.down.store(true, Ordering::SeqCst);
    let failures_from = idp.fetches.load(Ordering::SeqCst);
    // Several refreshes fail meanwhile.
    assert!(eventually(async || idp.fetches.load(Ordering::SeqCst) >= failures_from + 3).await);
    assert_eq!(
        client.get("/x", Some(&a.token())).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn source_that_never_loaded_answers_503_and_is_not_ready() {
    // A port with nothing listening: the JWKS never loads.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/jwks",
        dead.local_addr().unwrap().port()
    );
    drop(dead);
    let pki = DevPki::generate().unwrap();
    let ca_file = std::env::temp_dir().join(format!("jwtgate-dead-ca-{}.pem", rand_suffix()));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let config = jwks_config(&url, &ca_file, "5m", "100ms");

    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let a = IdpKey::new("a");
    let reply = gateway.client().get("/x", Some(&a.token())).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "keys_unavailable");
    assert_eq!(upstream.count(), 0);
    // An HMAC token is decided by its own key: 200, keys or no keys.
    let reply = gateway
        .client()
        .get("/x", Some(&support::token("user")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let text = config.replace("UPSTREAM", &upstream.addr.to_string());
    let direct = Gateway::new(
        Config::from_toml_str(&text, "t.toml", &|_| Some(support::SECRET.to_owned())).unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!direct.keys_ready());
    assert!(direct.readiness().pending().contains(&"key_sources"));
}

#[tokio::test]
async fn gateway_becomes_ready_once_every_source_loaded() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let text = idp.config("5m", "100ms").replace("UPSTREAM", "127.0.0.1:9");
    let gateway = Gateway::new(
        Config::from_toml_str(&text, "t.toml", &|_| Some(support::SECRET.to_owned())).unwrap(),
    );
    assert!(eventually(async || gateway.keys_ready()).await);
    assert!(!gateway.readiness().pending().contains(&"key_sources"));
}

#[tokio::test]
async fn flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("5m", "10s"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    let before = idp.fetches.load(Ordering::SeqCst);
    for i in 0..30 {
        let reply = client
            .get("/x", Some(&a.token_with_kid(&format!("random-{i}"))))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let fetched = idp.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 1, "{fetched} fetches for 30 unknown kids");
}

#[tokio::test]
async fn refetching_an_unchanged_jwks_keeps_cached_tokens_and_a_changed_one_drops_them() {
    let (a, b) = (IdpKey::new("a"), IdpKey::new("b"));
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let config = idp.config("5m", "100ms").replace(
        "[[jwt.keys]]",
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[jwt.keys]]",
    );
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let admin = gateway.admin.unwrap();
    let client = gateway.client();
    let cache = async |result: &str| {
        let text = plain_get(admin, "/metrics").await.2;
        let series = format!("jwtgate_verified_cache_lookups_total{{result=\"{result}\"}} ");
        let line = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
        line.unwrap().parse::<u64>().unwrap()
    };
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    let token = a.token();
    let ok = async || client.get("/x", Some(&token)).await.status == StatusCode::OK;
    assert!(ok().await);

    // An unknown kid after the cooldown fetches the same document again
    // (the unknown token itself is a miss).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let fetches = idp.fetches.load(Ordering::SeqCst);
    let unknown = a.token_with_kid("nope");
    assert_eq!(
        client.get("/x", Some(&unknown)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetches + 1);
    let misses = cache("miss").await;
    assert!(ok().await);
    assert_eq!(
        cache("miss").await,
        misses,
        "unchanged keys dropped the cache"
    );

    // A changed document is a new key set: cached tokens are verified again.
    idp.publish(&[&a, &b]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        client.get("/x", Some(&b.token())).await.status,
        StatusCode::OK
    );
    assert!(ok().await);
    assert_eq!(cache("miss").await, misses + 2);
}

#[tokio::test]
async fn token_of_another_issuer_is_refused_by_the_bound_jwks_keys() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("5m", "100ms"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    let now = unix_now();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg":"ES256","kid":"a"}).to_string());
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"sub":"1","iss":"https://evil.test","exp":now + 600}).to_string());
    let input = format!("{header}.{claims}");
    let sig = a.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert_eq!(
        client.get("/x", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn repeated_public_key_token_is_answered_from_the_cache_and_counted() {
    let a = IdpKey::new("a");
    let jwks_file = std::env::temp_dir().join(format!("jwtgate-jwks-{}.json", rand_suffix()));
    std::fs::write(&jwks_file, json!({ "keys": [a.jwk()] }).to_string()).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"
[[jwt.jwks]]
file = "{}"
issuer = "https://idp.test"
[[upstream]]
name = "app"
url = "http://127.0.0.1:9"
[[route]]
path = "/"
upstream = "app"
"#,
        jwks_file.display()
    );
    let gateway = Gateway::new(Config::from_toml_str(&text, "t.toml", &|_| None).unwrap());
    assert!(
        gateway.keys_ready(),
        "a file source is loaded with the config"
    );
    let token = a.token();
    let validation = [jwtgate::jwt::Provider {
        name: "jwt".to_owned(),
        validation: jwtgate::jwt::Validation::default(),
    }];
    for _ in 0..3 {
        let verified = gateway
            .keyring()
            .verify(&token, &validation, unix_now(), &mut None)
            .await
            .unwrap();
        assert_eq!(verified.user.as_deref(), Some("42"));
    }
    let stats = gateway.keyring().cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 1, 1));
    let rendered = gateway.metrics().render();
    assert!(rendered.contains("jwtgate_verified_cache_lookups_total{result=\"hit\"} 2"));
    // A tampered copy is a different token: a miss, and refused.
    let tampered = jwtgate::token::tamper(&token, |c| {
        c.insert("role".into(), "admin".into());
    })
    .unwrap();
    assert!(
        gateway
            .keyring()
            .verify(&tampered, &validation, unix_now(), &mut None)
            .await
            .is_err()
    );
    assert_eq!(gateway.keyring().cache_stats().misses, 2);
    // HMAC and malformed tokens are never cached: no lookup is counted.
    for never_cached in [support::token("user"), "not.a.token".to_owned()] {
        let _ = gateway
            .keyring()
            .verify(&never_cached, &validation, unix_now(), &mut None)
            .await;
    }
    assert_eq!(gateway.keyring().cache_stats().misses, 2);
}

#[tokio::test]
async fn a_reload_keeps_loaded_keys_without_fetching_even_while_the_idp_is_down() {
    use jwtgate::reload::{Live, Reloader};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("jwtgate-jwks-reload-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = DevPki::generate().unwrap();
    let ca = pki
        .write(&dir.join("cert.pem"), &dir.join("key.pem"))
        .unwrap();
    std::fs::write(dir.join("secret"), support::SECRET).unwrap();
    let text = idp
        .config("5m", "100ms")
        .replace("UPSTREAM", &upstream.addr.to_string())
        .replace(
            "\"unused\"\ntls_key",
            &format!("{:?}\ntls_key", dir.join("cert.pem")),
        )
        .replace(
            "tls_key = \"unused\"",
            &format!("tls_key = {:?}", dir.join("key.pem")),
        )
        .replace(
            "secret_env = \"SECRET\"",
            &format!("secret_file = {:?}", dir.join("secret")),
        );
    let path = dir.join("jwtgate.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls_config =
        tls::load_server_config(&config.server.tls_cert, &config.server.tls_key).unwrap();
    let limits = jwtgate::server::Limits::from(&config.server);
    let fixed = Reloader::fixed_settings(&config);
    let live = Arc::new(Live::new(Gateway::new(config), tls_config));
    let reloader = Reloader::new(&path, live.clone(), fixed);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(jwtgate::server::serve(
        listener,
        live,
        limits,
        std::future::pending(),
    ));
    let roots = vec![CertificateDer::from_pem_file(ca).unwrap()];
    let client = support::Client::with_roots(addr, roots, support::Protocol::Http1);
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );

    // The IdP goes down; the operator reloads (say, to revoke a token).
    idp.down.store(true, Ordering::SeqCst);
    let fetches = idp.fetches.load(Ordering::SeqCst);
    let route = "\n[[route]]\npath = \"/new\"\nupstream = \"app\"\nauth = \"none\"\n";
    std::fs::write(&path, format!("{text}{route}")).unwrap();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        reloader.reload().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a reload waited for the IdP"
        );
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        fetches,
        "a reload fetched the JWKS"
    );
    assert_eq!(client.get("/new", None).await.status, StatusCode::OK);
    assert_eq!(
        client.get("/x", Some(&a.token())).await.status,
        StatusCode::OK
    );
}

/// `[jwt]` with its defaults, as the one provider.
fn default_provider() -> [jwtgate::jwt::Provider; 1] {
    [jwtgate::jwt::Provider {
        name: "jwt".to_owned(),
        validation: jwtgate::jwt::Validation::default(),
    }]
}

fn with_admin(config: &str) -> String {
    config.replace(
        "[[jwt.keys]]",
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[jwt.keys]]",
    )
}

/// `name{reason="…"} n` for each reason, as `/metrics` renders it.
fn skipped_counts(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("jwtgate_jwks_keys_skipped_total{reason=\""))
        .filter_map(|rest| {
            let (reason, n) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), n.parse().ok()?))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn set_with_unusable_jwks_serves_its_usable_keys_and_counts_the_rest() {
    // Entra ID's shape: RSA signing keys without alg, beside keys no
    // verifier here can use.
    let entra = RsaIdpKey::new("entra-1", jwtgate::jwt::Alg::RS256);
    let idp = JwksServer::start(&[]).await;
    let mut jwks = unusable_jwks();
    jwks.push(entra.jwk());
    idp.publish_jwks(jwks);
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&with_admin(&idp.config("5m", "100ms")), upstream.addr).await;
    let client = gateway.client();
    let token = entra.token("https://idp.test");
    assert!(
        eventually(async || client.get("/x", Some(&token)).await.status == StatusCode::OK).await,
        "the set's usable RSA key never served"
    );
    assert_eq!(upstream.last().header("x-user-id"), Some("42"));
    let metrics = plain_get(gateway.admin.unwrap(), "/metrics").await.2;
    assert_eq!(
        skipped_counts(&metrics),
        [
            ("unsupported_kty".to_owned(), 1),
            ("unsupported_curve".to_owned(), 2),
            ("invalid_key".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn refresh_that_adds_an_unusable_jwk_still_brings_the_new_signing_key() {
    let (a, b) = (IdpKey::new("a"), IdpKey::new("b"));
    let idp = JwksServer::start(&[&a]).await;
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&idp.config("5m", "100ms"), upstream.addr).await;
    let client = gateway.client();
    assert!(
        eventually(async || client.get("/x", Some(&a.token())).await.status == StatusCode::OK)
            .await
    );
    // The provider rotates in b and, in the same document, publishes keys
    // of kinds this gateway does not know.
    let mut jwks = vec![a.jwk()];
    jwks.extend(unusable_jwks());
    jwks.push(b.jwk());
    idp.publish_jwks(jwks);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        client.get("/x", Some(&b.token())).await.status,
        StatusCode::OK,
        "b's first token did not bring b in"
    );
    assert_eq!(
        client.get("/x", Some(&a.token())).await.status,
        StatusCode::OK
    );
}

/// A config whose one key source is the discovery of `issuer`.
fn discovery_config(issuer: &str, ca_file: &std::path::Path) -> String {
    jwks_config("URL", ca_file, "5m", "100ms")
        .replace("url = \"URL\"", &format!("discovery = \"{issuer}\""))
        .replace("issuer = \"https://idp.test\"\n", "")
}

#[tokio::test]
async fn discovery_source_verifies_with_the_jwks_its_issuers_document_names() {
    let key = RsaIdpKey::new("kc-1", jwtgate::jwt::Alg::RS256);
    let idp = JwksServer::start(&[]).await;
    idp.publish_jwks(vec![key.jwk()]);
    let issuer = idp.url("/realms/x");
    idp.publish_discovery(&issuer);
    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&discovery_config(&issuer, &idp.ca_file), upstream.addr).await;
    let client = gateway.client();
    let token = key.token(&issuer);
    assert!(
        eventually(async || client.get("/x", Some(&token)).await.status == StatusCode::OK).await
    );
    // The keys are bound to the discovered issuer.
    let other = key.token(&idp.url("/realms/y"));
    assert_eq!(
        client.get("/x", Some(&other)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn discovery_document_naming_another_issuer_never_loads() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let issuer = idp.url("/realms/x");
    // A document that claims another issuer (a mix-up, or another tenant's).
    idp.publish_discovery(&idp.url("/realms/other"));
    let text = discovery_config(&issuer, &idp.ca_file).replace("UPSTREAM", "127.0.0.1:9");
    let gateway = Gateway::new(
        Config::from_toml_str(&text, "t.toml", &|_| Some(support::SECRET.to_owned())).unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!gateway.keys_ready());
    let pending = gateway.keyring().pending().join("\n");
    assert!(
        pending.contains("jwt.jwks[0]")
            && pending.contains("realms/other")
            && pending.contains("discovery"),
        "{pending}"
    );
}

/// A config file for `idp`'s JWKS with real certificate and secret files,
/// first written as `initial` makes it; the gateway it starts and a reloader
/// over it (a new key source gets 2 s to load). Returns the file's path and
/// its text as `idp.config` writes it.
fn reload_rig(
    idp: &JwksServer,
    initial: impl FnOnce(&str) -> String,
) -> (
    PathBuf,
    String,
    Arc<jwtgate::reload::Live>,
    jwtgate::reload::Reloader,
) {
    use jwtgate::reload::{Live, Reloader};

    let dir = std::env::temp_dir().join(format!("jwtgate-jwks-rig-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = DevPki::generate().unwrap();
    pki.write(&dir.join("cert.pem"), &dir.join("key.pem"))
        .unwrap();
    std::fs::write(dir.join("secret"), support::SECRET).unwrap();
    let text = idp
        .config("5m", "100ms")
        .replace("UPSTREAM", "127.0.0.1:9")
        .replace(
            "tls_cert = \"unused\"",
            &format!("tls_cert = {:?}", dir.join("cert.pem")),
        )
        .replace(
            "tls_key = \"unused\"",
            &format!("tls_key = {:?}", dir.join("key.pem")),
        )
        .replace(
            "secret_env = \"SECRET\"",
            &format!("secret_file = {:?}", dir.join("secret")),
        );
    let path = dir.join("jwtgate.toml");
    std::fs::write(&path, initial(&text)).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls_config =
        tls::load_server_config(&config.server.tls_cert, &config.server.tls_key).unwrap();
    let settings = Reloader::fixed_settings(&config);
    let live = Arc::new(Live::new(Gateway::new(config), tls_config));
    let reloader = Reloader::new(&path, live.clone(), settings).key_wait(Duration::from_secs(2));
    (path, text, live, reloader)
}

#[tokio::test]
async fn reload_that_adds_ca_file_repairs_a_source_that_never_loaded() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    // First written without ca_file: the private CA is not trusted.
    let ca_line = format!("ca_file = \"{}\"\n", idp.ca_file.display());
    let (path, fixed, live, reloader) = reload_rig(&idp, |text| {
        let broken = text.replace(&ca_line, "");
        assert_ne!(broken, text);
        broken
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!live.gateway().keys_ready());

    // Reloading the same file fails, and says why.
    let err = reloader.reload().await.unwrap_err().to_string();
    assert!(err.contains("ca_file"), "{err}");
    assert!(!err.contains("warning above"), "{err}");

    // The operator adds ca_file and reloads: the source loads at once.
    std::fs::write(&path, &fixed).unwrap();
    let reloaded = reloader.reload().await;
    assert!(reloaded.is_ok(), "{}", reloaded.unwrap_err());
    assert!(live.gateway().keys_ready());
    let verified = live
        .gateway()
        .keyring()
        .verify(&a.token(), &default_provider(), unix_now(), &mut None)
        .await;
    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn reload_that_changes_the_trusted_ca_fetches_with_it_before_taking_over() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let (path, text, live, reloader) = reload_rig(&idp, str::to_owned);
    assert!(eventually(async || live.gateway().keys_ready()).await);

    // The same URL, now trusting a CA that did not sign the IdP's
    // certificate: a new source, which must load before the reload counts.
    let other_ca = DevPki::generate().unwrap();
    let other_ca_file = path.with_file_name("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca.ca_pem).unwrap();
    let changed = text.replace(
        &idp.ca_file.display().to_string(),
        &other_ca_file.display().to_string(),
    );
    std::fs::write(&path, changed).unwrap();
    let err = reloader.reload().await.unwrap_err().to_string();
    assert!(err.contains("ca_file"), "{err}");
}

/// Runs the jwtgate binary in `dir` off the runtime's threads, so the test's
/// JWKS server keeps answering meanwhile.
async fn jwtgate_cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(&args)
            .current_dir(&dir)
            .env("SECRET", support::SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn cli_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtgate-cli-{name}-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fetches_key_sources_and_fails_when_one_cannot_load() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let dir = cli_dir("check");
    let good = idp.config("5m", "100ms").replace("UPSTREAM", "127.0.0.1:9");
    std::fs::write(dir.join("good.toml"), &good).unwrap();
    let ok = jwtgate_cli(&["check", "--config", "good.toml", "--dev-cert"], &dir).await;
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains(&format!(
            "jwt.jwks[0] ({}): 1 keys loaded",
            idp.url("/.well-known/jwks.json")
        )),
        "{}",
        text(&ok.stdout)
    );

    // Without ca_file the private CA is not trusted: serve would never load
    // this source, so check fails, and says what to set.
    let ca_line = format!("ca_file = \"{}\"\n", idp.ca_file.display());
    std::fs::write(dir.join("no-ca.toml"), good.replace(&ca_line, "")).unwrap();
    let refused = jwtgate_cli(&["check", "--config", "no-ca.toml", "--dev-cert"], &dir).await;
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(err.starts_with("error: no-ca.toml: jwt.jwks[0] ("), "{err}");
    assert!(err.contains("ca_file"), "{err}");

    // A discovery document that names another issuer fails check too.
    idp.publish_discovery(&idp.url("/realms/other"));
    let discovery =
        discovery_config(&idp.url("/realms/x"), &idp.ca_file).replace("UPSTREAM", "127.0.0.1:9");
    std::fs::write(dir.join("discovery.toml"), discovery).unwrap();
    let refused = jwtgate_cli(&["check", "--config", "discovery.toml", "--dev-cert"], &dir).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("discovery: the document's issuer"),
        "{}",
        text(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_verifies_with_keys_fetched_from_url_sources_as_serve_does() {
    let a = IdpKey::new("a");
    let idp = JwksServer::start(&[&a]).await;
    let dir = cli_dir("explain");
    let config = idp.config("5m", "100ms").replace("UPSTREAM", "127.0.0.1:9");
    std::fs::write(dir.join("jwtgate.toml"), &config).unwrap();
    let token = a.token();
    let args = [
        "explain",
        "--config",
        "jwtgate.toml",
        "--token",
        &token,
        "GET",
        "/x",
    ];
    let explained = jwtgate_cli(&args, &dir).await;
    let out = text(&explained.stdout);
    assert!(out.contains("keys: jwt.jwks[0] ("), "{out}");
    assert!(out.contains("decision: forward to the upstream"), "{out}");

    // A source that cannot load: serve answers 503 for its tokens, so does explain.
    let ca_line = format!("ca_file = \"{}\"\n", idp.ca_file.display());
    std::fs::write(dir.join("jwtgate.toml"), config.replace(&ca_line, "")).unwrap();
    let explained = jwtgate_cli(&args, &dir).await;
    let out = text(&explained.stdout);
    assert!(out.contains("not loaded: "), "{out}");
    assert!(
        out.contains("decision: answer 503 Service Unavailable"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_inspect_trusts_ca_file_and_takes_alg_for_jwks_without_one() {
    let key = RsaIdpKey::new("ps", jwtgate::jwt::Alg::PS256);
    let idp = JwksServer::start(&[]).await;
    idp.publish_jwks(vec![key.jwk()]);
    let dir = cli_dir("inspect");
    let token = key.token("https://idp.test");
    let url = idp.url("/.well-known/jwks.json");
    let ca = idp.ca_file.display().to_string();
    let inspect = |extra: &'static [&'static str]| {
        let mut args = vec![
            "token",
            "inspect",
            token.as_str(),
            "--jwks-url",
            url.as_str(),
        ];
        args.extend_from_slice(extra);
        let dir = dir.clone();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jwtgate_cli(&args, &dir).await
        }
    };
    // No --ca-file: the private CA is not trusted, and the error says what to give.
    let untrusted = inspect(&[]).await;
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("ca_file"),
        "{}",
        text(&untrusted.stderr)
    );

    let with_ca = |alg: Option<&'static str>| {
        let mut args = vec![
            "token",
            "inspect",
            token.as_str(),
            "--jwks-url",
            url.as_str(),
            "--ca-file",
            ca.as_str(),
        ];
        if let Some(alg) = alg {
            args.extend(["--alg", alg]);
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let dir = dir.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            jwtgate_cli(&args, &dir).await
        }
    };
    // The JWK carries no alg: --alg names it.
    let valid = with_ca(Some("PS256")).await;
    assert!(
        text(&valid.stdout).contains("signature: valid"),
        "{}{}",
        text(&valid.stdout),
        text(&valid.stderr)
    );
    assert!(valid.status.success());
    // Without --alg, an RSA JWK without alg is RS256, as in serve: a PS256 token fails.
    let default = with_ca(None).await;
    assert!(!default.status.success());
    assert!(
        text(&default.stdout).contains("verification: failed"),
        "{}",
        text(&default.stdout)
    );
}

#[tokio::test]
async fn jwks_file_with_unusable_jwks_starts_with_its_usable_keys_and_counts_the_rest() {
    let a = IdpKey::new("a");
    let mut jwks = unusable_jwks();
    jwks.push(a.jwk());
    let file = std::env::temp_dir().join(format!("jwtgate-jwks-mixed-{}.json", rand_suffix()));
    std::fs::write(&file, json!({ "keys": jwks }).to_string()).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"unused\"\ntls_key = \"unused\"\n\
         [[jwt.jwks]]\nfile = \"{}\"\n\
         [[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:9\"\n\
         [[route]]\npath = \"/\"\nupstream = \"app\"\n",
        file.display()
    );
    let config =
        Config::from_toml_str(&text, "t.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.jwks[0].skipped.len(), 4);
    let gateway = Gateway::new(config);
    let verified = gateway
        .keyring()
        .verify(&a.token(), &default_provider(), unix_now(), &mut None)
        .await;
    assert!(verified.is_ok(), "{verified:?}");
    let metrics = gateway.metrics();
    assert_eq!(metrics.jwks_keys_skipped("unsupported_curve"), 2);
    assert_eq!(metrics.jwks_keys_skipped("unsupported_kty"), 1);
    assert_eq!(metrics.jwks_keys_skipped("invalid_key"), 1);
}

#[tokio::test]
async fn provider_whose_keys_come_from_discovery_verifies_its_tokens() {
    let key = RsaIdpKey::new("kc-1", jwtgate::jwt::Alg::RS256);
    let idp = JwksServer::start(&[]).await;
    idp.publish_jwks(vec![key.jwk()]);
    let issuer = idp.url("/realms/acme");
    idp.publish_discovery(&issuer);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "unused"
tls_key = "unused"

[[provider]]
name = "keycloak"
issuers = ["{issuer}"]
role_claim = ["realm_access", "roles"]
[[provider.jwks]]
discovery = "{issuer}"
ca_file = "{}"

[[upstream]]
name = "app"
url = "http://UPSTREAM"

[[route]]
path = "/"
upstream = "app"
roles = ["user"]
"#,
        idp.ca_file.display()
    );
    let parsed = Config::from_toml_str(
        &config.replace("UPSTREAM", "127.0.0.1:9"),
        "t.toml",
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.jwks[0].name, "provider[0].jwks[0]");

    let upstream = Upstream::start().await;
    let gateway = TestGateway::start(&config, upstream.addr).await;
    let client = gateway.client();
    let mint = |roles: serde_json::Value| {
        let claims = json!({ "sub": "42", "iss": issuer, "exp": unix_now() + 600,
            "realm_access": { "roles": roles } });
        jwtgate::token::mint_with(&key.signer, claims.as_object().unwrap()).unwrap()
    };
    let user = mint(json!(["user"]));
    assert!(
        eventually(async || client.get("/x", Some(&user)).await.status == StatusCode::OK).await
    );
    assert_eq!(
        client.get("/x", Some(&mint(json!(["guest"])))).await.status,
        StatusCode::FORBIDDEN
    );
}
