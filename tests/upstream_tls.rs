//! TLS to upstreams: certificates made here by a test CA; the gateway
//! verifies them (or refuses with 502 and `upstream_tls` in the access log),
//! presents a client certificate to an upstream that demands one, and
//! picks up a changed CA file on reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::Value;
use support::{CONFIG, Client, Protocol, TestGateway, token};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use jwtgate::config::Config;
use jwtgate::gateway::Gateway;
use jwtgate::reload::{Live, Reloader};
use jwtgate::server::{self, Limits};
use jwtgate::tls::{self, DevPki};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its key, as PEM and as rustls wants them.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`; `expired`: valid only during 2020.
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// An HTTPS upstream serving `leaf`; with `clients`, it demands a client
/// certificate from that CA. It answers 200 "secure" and says whether the
/// gateway presented a certificate.
async fn https_upstream(leaf: &Leaf, clients: Option<&Ca>) -> SocketAddr {
    let builder = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls.get_ref().1.peer_certificates().is_some();
                let service = service_fn(move |_: Request<Incoming>| async move {
                    let response = Response::builder()
                        .header("x-client-cert", if client_cert { "yes" } else { "no" })
                        .body(Full::new(Bytes::from_static(b"secure")))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A directory of this test's files.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtgate-up-tls-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test config with an https upstream and `extra` upstream keys.
fn https_config(extra: &str) -> String {
    CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!("url = \"https://UPSTREAM\"\n{extra}"),
    )
}

/// Everything this test binary logs. One global subscriber: thread-local
/// ones miss events when tests on other threads race to register the
/// same call sites. Tests tell their lines apart by request path.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn capture() -> Logs {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer(logs.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        })
        .clone()
    }

    /// The fields of the access-log line of the request for `path`.
    fn access(&self, path: &str) -> Value {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["target"] == "access" && l["fields"]["path"] == path)
            .map(|l| l["fields"].clone())
            .next_back()
            .unwrap_or_else(|| panic!("no access line for {path}"))
    }
}

#[tokio::test]
async fn an_https_upstream_signed_by_the_configured_ca_is_proxied() {
    let ca = Ca::new("upstream CA");
    let dir = dir("good");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let upstream = https_upstream(&ca.leaf(&["127.0.0.1"], false), None).await;
    let config = https_config(&format!("ca_file = {:?}", dir.join("ca.pem")));
    let gateway = TestGateway::start(&config, upstream).await;

    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "secure");
    assert_eq!(reply.header("x-client-cert"), Some("no"));
}

#[tokio::test]
async fn tls_server_name_is_the_name_sent_and_verified() {
    let ca = Ca::new("upstream CA");
    let dir = dir("name");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let upstream = https_upstream(&ca.leaf(&["app.internal"], false), None).await;
    let config = https_config(&format!(
        "ca_file = {:?}\ntls_server_name = \"app.internal\"",
        dir.join("ca.pem")
    ));
    let gateway = TestGateway::start(&config, upstream).await;

    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "secure");
}

#[tokio::test]
async fn certificate_errors_are_502_with_reason_upstream_tls() {
    let logs = Logs::capture();
    let ca = Ca::new("upstream CA");
    let stranger = Ca::new("someone else's CA");
    let dir = dir("bad");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let cases = [
        (
            "/wrong-name",
            ca.leaf(&["elsewhere.example"], false),
            "not valid for name",
        ),
        ("/expired", ca.leaf(&["127.0.0.1"], true), "expired"),
        (
            "/unknown-ca",
            stranger.leaf(&["127.0.0.1"], false),
            "UnknownIssuer",
        ),
    ];
    for (case, leaf, cause) in cases {
        let upstream = https_upstream(&leaf, None).await;
        let config = https_config(&format!("ca_file = {:?}", dir.join("ca.pem")));
        let gateway = TestGateway::start(&config, upstream).await;

        let reply = gateway.client().get(case, Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{case}");
        assert_eq!(reply.json()["error"], "bad_gateway", "{case}");
        let line = logs.access(case);
        assert_eq!(line["reason"], "upstream_tls", "{case}: {line}");
        let error = line["error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "{case}: {error}");
    }
}

#[tokio::test]
async fn a_mutual_tls_upstream_gets_the_configured_client_certificate() {
    let logs = Logs::capture();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("client CA");
    let dir = dir("mtls");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let client = clients.leaf(&["jwtgate"], false);
    std::fs::write(dir.join("client.pem"), &client.cert_pem).unwrap();
    std::fs::write(dir.join("client.key"), &client.key_pem).unwrap();
    let upstream = https_upstream(&ca.leaf(&["127.0.0.1"], false), Some(&clients)).await;

    let with_cert = https_config(&format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}",
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    ));
    let gateway = TestGateway::start(&with_cert, upstream).await;
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-client-cert"), Some("yes"));

    let without = https_config(&format!("ca_file = {:?}", dir.join("ca.pem")));
    let gateway = TestGateway::start(&without, upstream).await;
    let reply = gateway
        .client()
        .get("/no-client-cert", Some(&token("user")))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let line = logs.access("/no-client-cert");
    assert_eq!(line["reason"], "upstream_tls", "{line}");
}

#[tokio::test]
async fn a_reload_picks_up_a_changed_ca_file() {
    let old_ca = Ca::new("retired CA");
    let new_ca = Ca::new("current CA");
    let dir = dir("reload");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &old_ca.pem).unwrap();
    let upstream = https_upstream(&new_ca.leaf(&["127.0.0.1"], false), None).await;
    let pki = DevPki::generate().unwrap();
    pki.write(&dir.join("cert.pem"), &dir.join("key.pem"))
        .unwrap();
    let text = https_config(&format!("ca_file = {ca_file:?}"))
        .replace("UPSTREAM", &upstream.to_string())
        .replace(
            "tls_cert = \"unused\"",
            &format!("tls_cert = {:?}", dir.join("cert.pem")),
        )
        .replace(
            "tls_key = \"unused\"",
            &format!("tls_key = {:?}", dir.join("key.pem")),
        )
        .replace("secret_env = \"SECRET\"", "secret_file = \"SECRET_FILE\"")
        .replace("SECRET_FILE", &dir.join("k1.secret").display().to_string());
    std::fs::write(dir.join("k1.secret"), support::SECRET).unwrap();
    let path = dir.join("jwtgate.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls_config =
        tls::load_server_config(&config.server.tls_cert, &config.server.tls_key).unwrap();
    let limits = Limits::from(&config.server);
    let fixed = Reloader::fixed_settings(&config);
    let live = Arc::new(Live::new(Gateway::new(config), tls_config));
    assert!(live.gateway().files().contains(&ca_file));
    let reloader = Reloader::new(&path, live.clone(), fixed);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        live.clone(),
        limits,
        std::future::pending(),
    ));
    let client = Client::new(addr, &pki, Protocol::Http1);

    let reply = client.get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    std::fs::write(&ca_file, &new_ca.pem).unwrap();
    reloader.reload().await.unwrap();
    let reply = client.get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "secure");
}

/// A Kubernetes headless Service: `dns_refresh` turns the name into one
/// endpoint per address, and each is still verified as the name in the URL
/// (a pod's certificate names the Service, not the pod's IP).
#[tokio::test]
async fn resolved_endpoints_are_verified_for_the_urls_name_not_their_address() {
    let ca = Ca::new("upstream CA");
    let dir = dir("resolved");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let upstream = https_upstream(&ca.leaf(&["localhost"], false), None).await;
    let config = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!(
            "url = \"https://localhost:{}\"\ndns_refresh = \"1s\"\nca_file = {:?}",
            upstream.port(),
            dir.join("ca.pem")
        ),
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gateway = TestGateway::start(&config, upstream).await;

    let resolved = format!("endpoint=\"127.0.0.1:{}\"", upstream.port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
        let (_, _, metrics) = support::plain_get(gateway.admin.unwrap(), "/metrics").await;
        let served = metrics.lines().any(|line| {
            line.starts_with("jwtgate_upstream_endpoint_requests_total{")
                && line.contains(&resolved)
                && line.rsplit(' ').next().is_some_and(|n| n != "0")
        });
        if served {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
