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

/// A JWKS endpoint over HTTPS whose document and health the test controls.
struct JwksServer {
    addr: SocketAddr,
    ca_file: PathBuf,
    body: Arc<Mutex<String>>,
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
            down: Arc::new(AtomicBool::new(false)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        server.publish(keys);
        let (body, down, fetches) = (
            server.body.clone(),
            server.down.clone(),
            server.fetches.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, body, down, fetches) = (
                    acceptor.clone(),
                    body.clone(),
                    down.clone(),
                    fetches.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |_request| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let response = if down.load(Ordering::SeqCst) {
                            Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::new()))
                                .unwrap()
                        } else {
                            let text = body.lock().unwrap().clone();
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
        let jwks = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
        *self.body.lock().unwrap() = jwks.to_string();
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
