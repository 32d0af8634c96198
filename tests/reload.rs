//! Hot reload and revocation, end to end: the real gateway serving TLS from
//! files in a scratch directory, a real upstream and real HTTPS clients; the
//! config, certificate, key files and revocation list are edited on disk and
//! reloaded with the gateway's own `Reloader` (the SIGHUP path is in
//! tests/cli.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use jwtgate::config::Config;
use jwtgate::gateway::{Gateway, unix_now};
use jwtgate::reload::{Live, Reloader};
use jwtgate::server::{self, Limits};
use jwtgate::tls::{self, DevPki};
use support::{Client, Protocol, SECRET, Upstream};

const SECRET_2: &str = "second-secret-0123456789abcdef-0123456789";

/// The config every test starts from; `ROUTES` is where tests add routes.
fn config(upstream: std::net::SocketAddr, extra_keys: &str, routes: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"
shutdown_grace = "5s"

[revocation]
file = "revoked.toml"

[reload]
watch_interval = "100ms"

[[jwt.keys]]
kid = "k1"
alg = "HS256"
secret_file = "k1.secret"
{extra_keys}

[[upstream]]
name = "app"
url = "http://{upstream}"
timeout = "5s"

[[route]]
path = "/api"
upstream = "app"
{routes}
"#
    )
}

const K2: &str = r#"
[[jwt.keys]]
kid = "k2"
alg = "HS256"
secret_file = "k2.secret"
"#;

const PUBLIC_NEW: &str = r#"
[[route]]
path = "/new"
upstream = "app"
auth = "none"
"#;

/// A gateway serving from files in its own directory.
struct Site {
    dir: PathBuf,
    addr: std::net::SocketAddr,
    live: Arc<Live>,
    reloader: Arc<Reloader>,
    /// CA certificates of every certificate the site served so far.
    roots: Vec<CertificateDer<'static>>,
}

impl Site {
    async fn start(name: &str, config_text: &str, watch: bool) -> Site {
        let dir =
            std::env::temp_dir().join(format!("jwtgate-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = DevPki::generate().unwrap();
        let ca = pki
            .write(&dir.join("cert.pem"), &dir.join("key.pem"))
            .unwrap();
        std::fs::write(dir.join("k1.secret"), SECRET).unwrap();
        std::fs::write(dir.join("k2.secret"), SECRET_2).unwrap();
        std::fs::write(dir.join("revoked.toml"), "").unwrap();
        let path = dir.join("jwtgate.toml");
        // Paths in a config are relative to the working directory, which
        // parallel tests share: each site's are made absolute.
        std::fs::write(&path, absolutize(config_text, &dir)).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let tls_config =
            tls::load_server_config(&config.server.tls_cert, &config.server.tls_key).unwrap();
        let limits = Limits::from(&config.server);
        let fixed = Reloader::fixed_settings(&config);
        let live = Arc::new(Live::new(Gateway::new(config), tls_config));
        let reloader = Arc::new(Reloader::new(&path, live.clone(), fixed));
        if watch {
            tokio::spawn(reloader.clone().run(jwtgate::reload::hangup_signal()));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            listener,
            live.clone(),
            limits,
            std::future::pending(),
        ));
        let roots = vec![CertificateDer::from_pem_file(&ca).unwrap()];
        Site {
            dir,
            addr,
            live,
            reloader,
            roots,
        }
    }

    /// Replaces the config file (paths made absolute).
    fn write_config(&self, text: &str) {
        let tmp = self.dir.join("jwtgate.toml.tmp");
        std::fs::write(&tmp, absolutize(text, &self.dir)).unwrap();
        std::fs::rename(tmp, self.dir.join("jwtgate.toml")).unwrap();
    }

    fn write(&self, file: &str, text: &str) {
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.join(file)).unwrap();
    }

    /// Writes a certificate from a new CA as `name.pem` / `name.key`, and
    /// trusts that CA from now on.
    fn spare_certificate(&mut self, name: &str) -> CertificateDer<'static> {
        let pki = DevPki::generate().unwrap();
        let ca = pki
            .write(
                &self.dir.join(format!("{name}.pem")),
                &self.dir.join(format!("{name}.key")),
            )
            .unwrap();
        let ca = CertificateDer::from_pem_file(ca).unwrap();
        self.roots.push(ca.clone());
        ca
    }

    /// Puts certificate `name` (see above) in place as cert.pem / key.pem.
    fn install_certificate(&self, name: &str) {
        for (from, to) in [("key", "key.pem"), ("pem", "cert.pem")] {
            let tmp = self.dir.join(format!("{to}.tmp"));
            std::fs::copy(self.dir.join(format!("{name}.{from}")), &tmp).unwrap();
            std::fs::rename(tmp, self.dir.join(to)).unwrap();
        }
    }

    /// Puts a certificate from a new CA in place; returns the new CA.
    fn new_certificate(&mut self) -> CertificateDer<'static> {
        let ca = self.spare_certificate("next");
        self.install_certificate("next");
        ca
    }

    fn client(&self, protocol: Protocol) -> Client {
        Client::with_roots(self.addr, self.roots.clone(), protocol)
    }

    fn metrics(&self) -> String {
        self.live.gateway().metrics().render()
    }
}

fn absolutize(config: &str, dir: &Path) -> String {
    let mut text = config.to_owned();
    for file in [
        "cert.pem",
        "key.pem",
        "k1.secret",
        "k2.secret",
        "revoked.toml",
    ] {
        text = text.replace(
            &format!("\"{file}\""),
            &format!("{:?}", dir.join(file).display().to_string()),
        );
    }
    text
}

fn token_signed(secret: &str, kid: &str, claims: serde_json::Value) -> String {
    support::mint_with(secret, Some(kid), claims)
}

fn user_token(extra: serde_json::Value) -> String {
    let mut claims = json!({"sub": "42", "role": "user", "exp": unix_now() + 600});
    if let (Some(map), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    token_signed(SECRET, "k1", claims)
}

/// One HTTP/1.1 keep-alive connection, for requests that must share it.
async fn keep_alive(site: &Site) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let config = tls::client_config(&site.roots, &[b"http/1.1"]).unwrap();
    let tcp = TcpStream::connect(site.addr).await.unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    token: Option<&str>,
) -> StatusCode {
    let mut request = Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    sender.ready().await.unwrap();
    let response = sender
        .send_request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_new_route_takes_effect_on_an_open_keep_alive_connection() {
    let upstream = Upstream::start().await;
    let site = Site::start("route", &config(upstream.addr, "", ""), false).await;
    let mut conn = keep_alive(&site).await;
    assert_eq!(
        send_on(&mut conn, "/new", None).await,
        StatusCode::NOT_FOUND
    );

    site.write_config(&config(upstream.addr, "", PUBLIC_NEW));
    let done = site.reloader.reload().await.unwrap();
    assert_eq!(done.routes, 2);
    assert_eq!(send_on(&mut conn, "/new", None).await, StatusCode::OK);
    assert_eq!(upstream.last().target, "/new");
    assert!(
        site.metrics()
            .contains("jwtgate_config_reloads_total{result=\"success\"} 1\n")
    );
}

#[tokio::test]
async fn an_invalid_config_changes_nothing_and_is_counted() {
    let upstream = Upstream::start().await;
    let site = Site::start("invalid", &config(upstream.addr, "", PUBLIC_NEW), false).await;
    let client = site.client(Protocol::Http1);
    let token = user_token(json!({}));
    let broken = [
        // TOML syntax
        config(upstream.addr, "", PUBLIC_NEW)
            .replace("[[route]]\npath = \"/new\"", "[[route]\npath = \"/new\""),
        // an upstream that does not exist
        config(upstream.addr, "", PUBLIC_NEW)
            .replace("upstream = \"app\"\nauth", "upstream = \"nope\"\nauth"),
        // a key file that does not exist
        config(upstream.addr, K2, PUBLIC_NEW).replace("k2.secret", "missing.secret"),
    ];
    let expected = [
        "jwtgate.toml:",
        "route[1].upstream: no upstream named \"nope\"",
        "missing.secret",
    ];
    for (text, expected) in broken.iter().zip(expected) {
        site.write_config(text);
        let err = site.reloader.reload().await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("jwtgate.toml"), "{err}");
        // Still the old config: both routes, the old key.
        assert_eq!(client.get("/new", None).await.status, StatusCode::OK);
        assert_eq!(
            client.get("/api/x", Some(&token)).await.status,
            StatusCode::OK
        );
    }
    // A broken revocation list is refused the same way, naming its own file.
    site.write_config(&config(upstream.addr, "", PUBLIC_NEW));
    site.write(
        "revoked.toml",
        "[[revoke]]\nsub = \"42\"\nbefore = \"soon\"\n",
    );
    let err = site.reloader.reload().await.unwrap_err().to_string();
    assert!(err.contains("revoked.toml:3: revoke[0].before:"), "{err}");
    assert_eq!(
        client.get("/api/x", Some(&token)).await.status,
        StatusCode::OK
    );

    let metrics = site.metrics();
    assert!(
        metrics.contains("jwtgate_config_reloads_total{result=\"failure\"} 4\n"),
        "{metrics}"
    );
    assert!(metrics.contains("jwtgate_config_reloads_total{result=\"success\"} 0\n"));
}

#[tokio::test]
async fn keys_are_added_and_removed_by_a_reload() {
    let upstream = Upstream::start().await;
    let site = Site::start("keys", &config(upstream.addr, "", ""), false).await;
    let client = site.client(Protocol::Http2);
    let exp = unix_now() + 600;
    let by_k1 = token_signed(SECRET, "k1", json!({"sub": "1", "exp": exp}));
    let by_k2 = token_signed(SECRET_2, "k2", json!({"sub": "2", "exp": exp}));
    assert_eq!(
        client.get("/api", Some(&by_k2)).await.status,
        StatusCode::UNAUTHORIZED
    );

    site.write_config(&config(upstream.addr, K2, ""));
    site.reloader.reload().await.unwrap();
    assert_eq!(
        client.get("/api", Some(&by_k2)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/api", Some(&by_k1)).await.status,
        StatusCode::OK
    );

    // Rotating k1 out: only k2 left.
    let only_k2 = config(upstream.addr, "", "")
        .replace("kid = \"k1\"", "kid = \"k2\"")
        .replace("k1.secret", "k2.secret");
    site.write_config(&only_k2);
    site.reloader.reload().await.unwrap();
    assert_eq!(
        client.get("/api", Some(&by_k1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client.get("/api", Some(&by_k2)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_new_certificate_is_served_to_new_connections() {
    let upstream = Upstream::start().await;
    let mut site = Site::start("cert", &config(upstream.addr, "", PUBLIC_NEW), false).await;
    let old_ca = site.roots[0].clone();
    let mut old_conn = keep_alive(&site).await;
    let new_ca = site.new_certificate();
    site.reloader.reload().await.unwrap();

    let only_new = Client::with_roots(site.addr, vec![new_ca], Protocol::Http1);
    assert_eq!(only_new.get("/new", None).await.status, StatusCode::OK);
    let only_old = Client::with_roots(site.addr, vec![old_ca], Protocol::Http1);
    let refused = only_old
        .try_send(Request::get("/new").body(Full::default()).unwrap())
        .await
        .unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    // A connection made before the reload keeps working.
    assert_eq!(send_on(&mut old_conn, "/new", None).await, StatusCode::OK);
}

#[tokio::test]
async fn a_certificate_that_does_not_match_its_key_is_refused() {
    let upstream = Upstream::start().await;
    let site = Site::start("mismatch", &config(upstream.addr, "", PUBLIC_NEW), false).await;
    let other = DevPki::generate().unwrap();
    other
        .write(&site.dir.join("other.pem"), &site.dir.join("other.key"))
        .unwrap();
    std::fs::rename(site.dir.join("other.key"), site.dir.join("key.pem")).unwrap();
    let err = site.reloader.reload().await.unwrap_err().to_string();
    assert!(
        err.contains(
            "jwtgate.toml:4: server.tls_cert, server.tls_key: the private key does not belong to the certificate"
        ),
        "{err}"
    );
    let client = site.client(Protocol::Http1);
    assert_eq!(client.get("/new", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let slow = Upstream::with(|_| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        http::Response::new(Full::new(Bytes::from_static(b"slow and old")))
    })
    .await;
    let site = Site::start("inflight", &config(slow.addr, "", ""), false).await;
    let client = site.client(Protocol::Http1);
    let token = user_token(json!({}));
    let in_flight = {
        let token = token.clone();
        tokio::spawn(async move { client.get("/api/slow", Some(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The new config has no /api route at all.
    let fast = Upstream::start().await;
    site.write_config(&config(fast.addr, "", "").replace("path = \"/api\"", "path = \"/other\""));
    site.reloader.reload().await.unwrap();
    let client = site.client(Protocol::Http1);
    assert_eq!(
        client.get("/api/slow", Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow and old");
    assert_eq!(fast.count(), 0);
}

#[tokio::test]
async fn ten_reloads_under_load_fail_no_request() {
    let upstream = Upstream::start().await;
    let mut site = Site::start("load", &config(upstream.addr, "", ""), false).await;
    // Clients trust every CA the site will use: valid reloads alternate
    // between two certificates.
    site.spare_certificate("a");
    site.spare_certificate("b");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let token = user_token(json!({}));
    let mut workers = Vec::new();
    for i in 0..4 {
        let protocol = if i % 2 == 0 {
            Protocol::Http1
        } else {
            Protocol::Http2
        };
        let client = site.client(protocol);
        let (stop, sent, token) = (stop.clone(), sent.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = Request::get("/api/orders")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::default())
                    .unwrap();
                match client.try_send(request).await {
                    Ok(reply) if reply.status == StatusCode::OK => {}
                    Ok(reply) => failures.push(format!("status {}", reply.status)),
                    Err(err) => failures.push(err),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let valid = [
        config(upstream.addr, K2, PUBLIC_NEW),
        config(upstream.addr, "", ""),
        config(upstream.addr, K2, ""),
    ];
    let invalid = [
        config(upstream.addr, "", "").replace("[server]", "[server"),
        config(upstream.addr, "", "").replace("alg = \"HS256\"", "alg = \"none\""),
        config(upstream.addr, "", "").replace("k1.secret", "gone.secret"),
    ];
    let mut outcomes = Vec::new();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if round % 2 == 0 {
            site.write_config(&valid[round / 2 % valid.len()]);
            site.install_certificate(["a", "b"][round / 2 % 2]);
        } else {
            site.write_config(&invalid[round / 2 % invalid.len()]);
        }
        outcomes.push(site.reloader.reload().await.is_ok());
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.unwrap());
    }
    assert_eq!(
        outcomes,
        [
            true, false, true, false, true, false, true, false, true, false
        ]
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let total = sent.load(Ordering::Relaxed);
    assert!(total >= 40, "only {total} requests during the reloads");
    // The last valid reload put certificate "a" in force.
    let only_a = Client::with_roots(site.addr, vec![site.roots[1].clone()], Protocol::Http1);
    assert_eq!(
        only_a.get("/api", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoked_token_ids_and_subjects_are_refused_with_reason_revoked() {
    let upstream = Upstream::start().await;
    let site = Site::start("revoke", &config(upstream.addr, "", ""), true).await;
    let client = site.client(Protocol::Http1);
    let now = unix_now();
    let revoked_jti = user_token(json!({"jti": "t-1", "sub": "7", "iat": now}));
    let other_jti = user_token(json!({"jti": "t-2", "sub": "7", "iat": now}));
    let old_42 = user_token(json!({"iat": now - 120}));
    let new_42 = user_token(json!({"iat": now - 10}));
    let no_iat_42 = user_token(json!({}));
    for token in [&revoked_jti, &other_jti, &old_42, &new_42, &no_iat_42] {
        assert_eq!(client.get("/api", Some(token)).await.status, StatusCode::OK);
    }

    // Written while serving: the watcher reloads it on its own.
    let cut_off = jwtgate::revocation::format_rfc3339(now - 60);
    site.write(
        "revoked.toml",
        &format!(
            "[[revoke]]\njti = \"t-1\"\n\n[[revoke]]\nsub = \"42\"\nbefore = \"{cut_off}\"\nnote = \"laptop stolen\"\n"
        ),
    );
    eventually("the revocation file is picked up", async || {
        client.get("/api", Some(&revoked_jti)).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let before = upstream.count();
    let reply = client.get("/api", Some(&revoked_jti)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            "Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"the token has been revoked\""
        )
    );
    assert_eq!(
        client.get("/api", Some(&old_42)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client.get("/api", Some(&no_iat_42)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upstream.count(),
        before,
        "a revoked token reached the upstream"
    );
    assert_eq!(
        client.get("/api", Some(&other_jti)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/api", Some(&new_42)).await.status,
        StatusCode::OK
    );
    let metrics = site.metrics();
    assert!(
        metrics.contains("jwtgate_auth_failures_total{reason=\"revoked\"} 4\n"),
        "{metrics}"
    );

    // Emptied again: the tokens work again.
    site.write("revoked.toml", "# nothing revoked\n");
    eventually("the emptied file is picked up", async || {
        client.get("/api", Some(&revoked_jti)).await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn the_watcher_reloads_a_changed_config_file_and_skips_a_broken_one() {
    let upstream = Upstream::start().await;
    let site = Site::start("watch", &config(upstream.addr, "", ""), true).await;
    let client = site.client(Protocol::Http1);
    site.write_config(&config(upstream.addr, "", PUBLIC_NEW).replace("[server]", "[server"));
    eventually("the broken file is tried", async || {
        site.metrics()
            .contains("jwtgate_config_reloads_total{result=\"failure\"} 1\n")
    })
    .await;
    assert_eq!(client.get("/new", None).await.status, StatusCode::NOT_FOUND);
    site.write_config(&config(upstream.addr, "", PUBLIC_NEW));
    eventually("the fixed file is loaded", async || {
        client.get("/new", None).await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn a_key_file_that_a_refused_config_names_is_watched_until_it_appears() {
    let upstream = Upstream::start().await;
    let site = Site::start("attempted", &config(upstream.addr, "", ""), true).await;
    std::fs::remove_file(site.dir.join("k2.secret")).unwrap();
    site.write_config(&config(upstream.addr, K2, ""));
    eventually("the config naming a missing file is refused", async || {
        site.metrics()
            .contains("jwtgate_config_reloads_total{result=\"failure\"} 1\n")
    })
    .await;
    let client = site.client(Protocol::Http1);
    let by_k2 = token_signed(SECRET_2, "k2", json!({"sub": "2", "exp": unix_now() + 600}));
    assert_eq!(
        client.get("/api", Some(&by_k2)).await.status,
        StatusCode::UNAUTHORIZED
    );
    site.write("k2.secret", SECRET_2);
    eventually("the key file's arrival triggers a reload", async || {
        client.get("/api", Some(&by_k2)).await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn watching_follows_the_reload_section_of_the_config_in_force() {
    let upstream = Upstream::start().await;
    let site = Site::start("toggle", &config(upstream.addr, "", ""), true).await;
    let client = site.client(Protocol::Http1);
    let no_watch = |routes: &str| {
        config(upstream.addr, "", routes).replace("watch_interval = \"100ms\"", "watch = false")
    };
    site.write_config(&no_watch(""));
    eventually(
        "the watcher loads the config that turns it off",
        async || {
            site.metrics()
                .contains("jwtgate_config_reloads_total{result=\"success\"} 1\n")
        },
    )
    .await;
    site.write_config(&no_watch(PUBLIC_NEW));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(client.get("/new", None).await.status, StatusCode::NOT_FOUND);
    // SIGHUP (here: a direct reload) still works, and turns watching back on.
    site.reloader.reload().await.unwrap();
    assert_eq!(client.get("/new", None).await.status, StatusCode::OK);
    site.write_config(&config(upstream.addr, "", PUBLIC_NEW));
    site.reloader.reload().await.unwrap();
    site.write_config(&config(upstream.addr, "", ""));
    eventually("watching is on again", async || {
        client.get("/new", None).await.status == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test]
async fn revoking_a_token_closes_its_open_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (upstream, _seen) = support::ws_upstream().await;
    let site = Site::start("ws-revoke", &config(upstream, "", ""), false).await;
    let now = unix_now();
    let open = |jti: &str| user_token(json!({"jti": jti, "iat": now}));
    let (doomed, spared) = (open("ws-1"), open("ws-2"));
    let mut revoked = support::ws_connect(site.addr, &site.roots, "/api/ws", Some(&doomed))
        .await
        .unwrap();
    let mut other = support::ws_connect(site.addr, &site.roots, "/api/ws", Some(&spared))
        .await
        .unwrap();
    for ws in [&mut revoked, &mut other] {
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    }
    site.write("revoked.toml", "[[revoke]]\njti = \"ws-1\"\n");
    site.reloader.reload().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let _ = revoked.send(Message::text("still there?")).await;
            match revoked.next().await {
                Some(Ok(Message::Text(_))) => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the revoked token's WebSocket stayed open");
    other.send(Message::text("and you?")).await.unwrap();
    assert_eq!(
        other.next().await.unwrap().unwrap(),
        Message::text("and you?")
    );
}
