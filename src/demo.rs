//! `jwtgate demo`: the product's story, run for real on loopback.
//!
//! An embedded echo upstream, the real gateway behind real TLS with a
//! throwaway CA, and scripted requests whose outcomes are checked. The same
//! parts (`Stack`) serve the browser playground (`playground`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::gateway::{Gateway, unix_now};
use crate::jwt::Alg;
use crate::keys::Key;
use crate::reload::Live;
use crate::server::{self, Limits};
use crate::tls::{self, DevPki};
use crate::token;

mod playground;

pub use playground::{CONTENT_SECURITY_POLICY, Playground};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo setup failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo setup failed: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("demo config is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("demo key is invalid: {0}")]
    Key(#[from] crate::keys::KeyError),
}

/// The demo's gateway; the `@…@` slots are filled in by [`Stack::config`].
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
@TLS@

[jwt]
leeway = "@LEEWAY@"

[[jwt.keys]]
kid = "demo"
alg = "HS256"
@SECRET@

[[upstream]]
name = "echo"
url = "http://@UPSTREAM@"

[[route]]
path = "/public"
upstream = "echo"
auth = "none"

[[route]]
path = "/admin"
upstream = "echo"
roles = ["admin"]

[[route]]
path = "/"
upstream = "echo"
"#;

/// What the walkthrough and the playground both run on: a development
/// PKI, a fresh demo secret, the echo upstream (already serving), and the
/// gateway's listener, bound on loopback.
struct Stack {
    pki: DevPki,
    secret: String,
    upstream_addr: SocketAddr,
    listener: TcpListener,
    gateway_addr: SocketAddr,
}

impl Stack {
    /// Binds the gateway's listener on 127.0.0.1:`port` (0: any free port).
    async fn start(port: u16) -> Result<Stack, DemoError> {
        let pki = DevPki::generate()?;
        let secret = random_secret()?;
        let upstream = TcpListener::bind("127.0.0.1:0").await?;
        let upstream_addr = upstream.local_addr()?;
        tokio::spawn(echo_upstream(upstream));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let gateway_addr = listener.local_addr()?;
        Ok(Stack {
            pki,
            secret,
            upstream_addr,
            listener,
            gateway_addr,
        })
    }

    /// The demo config: `tls` and `secret` are TOML lines naming where the
    /// certificate and the secret come from.
    fn config(&self, tls: &str, secret: &str, leeway: &str) -> String {
        CONFIG
            .replace("@TLS@", tls)
            .replace("@LEEWAY@", leeway)
            .replace("@SECRET@", secret)
            .replace("@UPSTREAM@", &self.upstream_addr.to_string())
    }

    /// The demo key: HS256 under kid `demo`.
    fn key(&self) -> Result<Key, DemoError> {
        Ok(Key::hmac(
            Some("demo".to_owned()),
            Alg::HS256,
            self.secret.as_bytes(),
        )?)
    }

    /// A TLS client trusting only the demo CA.
    fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>, DemoError> {
        Ok(tls::client_config(
            std::slice::from_ref(&self.pki.ca_cert),
            &[b"http/1.1"],
        )?)
    }
}

/// Runs the walkthrough; `Ok(false)` if any step's outcome was wrong.
pub async fn run() -> Result<bool, DemoError> {
    let stack = Stack::start(0).await?;
    let text = stack.config(
        "tls_cert = \"(in memory)\"\ntls_key = \"(in memory)\"",
        "secret_env = \"DEMO_SECRET\"",
        "30s",
    );
    let config = Config::from_toml_str(&text, "(demo config)", &|name| {
        (name == "DEMO_SECRET").then(|| stack.secret.clone())
    })?;
    let limits = Limits::from(&config.server);
    let tls_config = tls::server_config(
        stack.pki.server_chain.clone(),
        stack.pki.server_key.clone_key(),
    )?;
    let key = stack.key()?;
    let client = Client {
        addr: stack.gateway_addr,
        tls: TlsConnector::from(stack.client_tls()?),
    };
    let (gateway_addr, upstream_addr) = (stack.gateway_addr, stack.upstream_addr);
    let live = Arc::new(Live::new(Gateway::new(config), tls_config));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(stack.listener, live, limits, async {
        let _ = stopped.await;
    }));

    let mut demo = Demo {
        passed: 0,
        failed: 0,
    };

    println!("jwtgate demo: gateway https://{gateway_addr} → echo upstream http://{upstream_addr}");
    println!("routes: /public (no auth), /admin (role admin), / (any valid token)\n");

    let reply = client.get("/orders", None).await;
    demo.check("1. no token → 401 at the edge", &reply, |r| {
        r.status == StatusCode::UNAUTHORIZED
            && r.header("www-authenticate") == Some("Bearer realm=\"jwtgate\"")
    });

    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!("42"));
    claims.insert("role".into(), json!("user"));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + 900));
    let valid = token::mint(&key, &claims);
    println!("   minted (HS256, 15 min): {valid}");

    let reply = client.get("/orders?id=7", Some(&valid)).await;
    demo.check(
        "2. fresh token → 200; the upstream saw X-User-Id: 42, X-Role: user and no Authorization",
        &reply,
        |r| {
            let seen = r.echo();
            r.status == StatusCode::OK
                && seen["headers"]["x-user-id"] == json!("42")
                && seen["headers"]["x-role"] == json!("user")
                && seen["headers"].get("authorization").is_none()
                && seen["path"] == json!("/orders?id=7")
        },
    );
    if let Some(seen) = reply.as_ref().ok().map(Reply::echo) {
        println!("   upstream received: {}", seen["headers"]);
    }

    let reply = client.get("/admin/reports", Some(&valid)).await;
    demo.check(
        "3. role user on the admin route → 403 insufficient_scope",
        &reply,
        |r| {
            r.status == StatusCode::FORBIDDEN
                && r.header("www-authenticate")
                    .is_some_and(|h| h.contains("insufficient_scope"))
        },
    );

    let forged = token::tamper(&valid, |claims| {
        claims.insert("role".into(), json!("admin"));
    })
    .unwrap_or_default();
    let reply = client.get("/admin/reports", Some(&forged)).await;
    demo.check(
        "4. same token, role edited to admin, old signature → 401 invalid_token",
        &reply,
        |r| {
            r.status == StatusCode::UNAUTHORIZED
                && r.header("www-authenticate")
                    .is_some_and(|h| h.contains("invalid_token"))
        },
    );

    claims.insert("iat".into(), json!(now - 3600));
    claims.insert("exp".into(), json!(now - 120));
    let expired = token::mint(&key, &claims);
    let reply = client.get("/orders", Some(&expired)).await;
    demo.check(
        "5. correctly signed but expired 2 min ago (leeway 30 s) → 401",
        &reply,
        |r| {
            r.status == StatusCode::UNAUTHORIZED
                && r.header("www-authenticate")
                    .is_some_and(|h| h.contains("expired"))
        },
    );

    let decoded = token::decode_unverified(&valid);
    println!("\n6. anyone can read a token: base64url is an encoding, not encryption");
    if let Ok((header, claims)) = &decoded {
        println!("   header {header}\n   claims {claims}");
    }
    demo.record(
        decoded.is_ok_and(|(_, c)| c["sub"] == json!("42")),
        "   decoded without any key",
    );
    println!("   integrity comes from the signature; confidentiality must come from TLS");

    let reply = client.get("/public/health", None).await;
    demo.check("7. TLS on the wire", &reply, |r| {
        r.status == StatusCode::OK && r.tls.starts_with("TLSv1_3")
    });
    if let Ok(r) = &reply {
        println!("   negotiated {}", r.tls);
    }

    let plaintext = plaintext_request(gateway_addr).await;
    let refused = !plaintext.starts_with(b"HTTP/");
    println!(
        "\n8. plaintext HTTP to the TLS port: {} bytes back, {}",
        plaintext.len(),
        if refused {
            "no HTTP response (the TLS layer refused it)"
        } else {
            "an HTTP response!"
        }
    );
    demo.record(refused, "   plaintext HTTP is refused");

    let _ = stop.send(());
    let _ = server.await;
    println!("\n{} passed, {} failed", demo.passed, demo.failed);
    println!(
        "\nThe demo's certificate lived in memory. In front of your own backend,\n\
         `jwtgate serve --dev-cert` generates one into certs/ (README: \"Put it in front of a backend\")."
    );
    Ok(demo.failed == 0)
}

struct Demo {
    passed: usize,
    failed: usize,
}

impl Demo {
    fn check(
        &mut self,
        step: &str,
        reply: &Result<Reply, String>,
        expect: impl FnOnce(&Reply) -> bool,
    ) {
        println!("\n{step}");
        match reply {
            Ok(r) => {
                println!("   → {} {}", r.status.as_u16(), r.body.trim());
                if let Some(challenge) = r.header("www-authenticate") {
                    println!("   WWW-Authenticate: {challenge}");
                }
                self.record(expect(r), "   outcome as expected");
            }
            Err(err) => {
                println!("   request failed: {err}");
                self.record(false, "   outcome as expected");
            }
        }
    }

    fn record(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("{what}: ok");
        } else {
            self.failed += 1;
            println!("{what}: FAILED");
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
    tls: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn echo(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
}

impl Client {
    /// One request on a fresh TLS connection.
    async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, session) = stream.get_ref();
        let tls = format!(
            "{:?} with {:?}",
            session
                .protocol_version()
                .map(|v| v.as_str().unwrap_or("?"))
                .unwrap_or("?"),
            session.negotiated_cipher_suite().map(|s| s.suite())
        );
        let tls = tls.replace('"', "").replace("Some(", "").replace(')', "");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::get(path).header("host", "localhost");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            tls,
        })
    }
}

/// Sends a plaintext HTTP request to the TLS port; returns what came back.
async fn plaintext_request(addr: SocketAddr) -> Vec<u8> {
    let mut reply = Vec::new();
    if let Ok(mut tcp) = TcpStream::connect(addr).await {
        let _ = tcp
            .write_all(b"GET /public/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut reply),
        )
        .await;
    }
    reply
}

/// An upstream that answers with what it received, as JSON.
async fn echo_upstream(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                let headers: Map<String, Value> = request
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value::from(String::from_utf8_lossy(v.as_bytes())),
                        )
                    })
                    .collect();
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                let body = json!({ "method": request.method().as_str(), "path": path, "headers": headers });
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A fresh 256-bit secret, hex-encoded, from the TLS provider's CSPRNG.
fn random_secret() -> Result<String, DemoError> {
    let mut bytes = [0u8; 32];
    tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no secure random source"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
