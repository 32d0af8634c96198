//! `jwtgate demo --web`: the walkthrough as a page in the browser.
//!
//! The page is served over the real gateway's own HTTPS on loopback, and
//! every act on it sends real requests to that gateway. Its few helpers
//! (`/playground/…`: mint with the demo key, revoke, describe this TLS
//! connection, show a request's bytes on the wire: `wire`) are answered by
//! [`Front`], a layer in front of the gateway that only this module builds:
//! `jwtgate serve` runs [`server::GatewayOnly`] and has no way to reach them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::{DemoError, Stack, random_secret};
use crate::config::Config;
use crate::gateway::{Gateway, Logged, ResponseBody, unix_now};
use crate::keys::Key;
use crate::reload::{Live, ReloadError, Reloader};
use crate::server::{self, Connection, Limits, Respond};
use crate::tls;
use crate::token;
use crate::upstream::Body;

mod wire;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// Everything the page loads comes from this origin; nothing inline, no
/// framing, no forms posting elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Short, so the lifetime act's countdown reaches 401 soon after `exp`.
const LEEWAY: &str = "5s";
const LEEWAY_SECONDS: i64 = 5;

/// Bounds on what the helpers accept: small requests, a small file.
const MAX_BODY: usize = 16 * 1024;
const MAX_REVOCATIONS: usize = 100;
const MAX_TTL: i64 = 24 * 3600;

/// The running playground. Dropping it also stops it (without waiting for
/// the drain, as [`Playground::stop`] does) and removes its files.
pub struct Playground {
    url: String,
    addr: SocketAddr,
    ca_cert: CertificateDer<'static>,
    dir: Workspace,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Playground {
    /// Starts the echo upstream and the gateway on 127.0.0.1:`port` (0: any
    /// free port). Loopback only: the helpers mint tokens with the demo key.
    pub async fn start(port: u16) -> Result<Playground, DemoError> {
        let stack = Stack::start(port).await?;
        let dir = Workspace::create()?;
        // On disk, so that revoking is what it is in production: the
        // revocation file is rewritten and the config reloaded.
        let cert = dir.0.join("server.crt");
        let key_file = dir.0.join("server.key");
        stack.pki.write(&cert, &key_file)?;
        let secret_file = dir.0.join("demo.secret");
        std::fs::write(&secret_file, &stack.secret)?;
        let revocation_file = dir.0.join("revoked.toml");
        std::fs::write(&revocation_file, "")?;
        let text = format!(
            "{}\n[revocation]\nfile = {}\n",
            stack.config(
                &format!(
                    "tls_cert = {}\ntls_key = {}",
                    toml_string(&cert),
                    toml_string(&key_file)
                ),
                &format!("secret_file = {}", toml_string(&secret_file)),
                LEEWAY,
            ),
            toml_string(&revocation_file),
        );
        let config_file = dir.0.join("jwtgate.toml");
        std::fs::write(&config_file, text)?;
        let config = Config::load(&config_file)?;
        let limits = Limits::from(&config.server);
        let settings = Reloader::fixed_settings(&config);
        let tls_config = tls::server_config(
            stack.pki.server_chain.clone(),
            stack.pki.server_key.clone_key(),
        )?;
        let live = Arc::new(Live::new(Gateway::new(config), tls_config));
        let state = State {
            key: stack.key()?,
            secret: stack.secret.clone(),
            gateway: stack.gateway_addr,
            client_tls: TlsConnector::from(stack.client_tls()?),
            server_sha256: stack
                .pki
                .server_chain
                .first()
                .map(fingerprint)
                .unwrap_or_default(),
            ca_sha256: fingerprint(&stack.pki.ca_cert),
            revocation_file,
            revoked: Mutex::new(Vec::new()),
            reloader: Reloader::new(&config_file, live.clone(), settings),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve_with(
            stack.listener,
            live,
            limits,
            async {
                let _ = stopped.await;
            },
            Front(Arc::new(state)),
        ));
        Ok(Playground {
            url: format!("https://localhost:{}/", stack.gateway_addr.port()),
            addr: stack.gateway_addr,
            ca_cert: stack.pki.ca_cert.clone(),
            dir,
            stop,
            server,
        })
    }

    /// The page's address, `https://localhost:<port>/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The throwaway CA that signed the gateway's certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    /// The CA certificate as a file, for `curl --cacert`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.crt")
    }

    /// Stops accepting, drains, and removes the demo's files.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// The playground's files (config, certificate and key, secret,
/// revocation list) in a fresh private directory, removed on drop.
struct Workspace(PathBuf);

impl Workspace {
    fn create() -> Result<Workspace, DemoError> {
        let name = format!("jwtgate-playground-{}", &random_secret()?[..16]);
        let path = std::env::temp_dir().join(name);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create`, not `create_all`: an existing directory is not ours.
        builder.create(&path)?;
        Ok(Workspace(path))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Colon-separated SHA-256 of a certificate, as browsers show it.
fn fingerprint(der: &CertificateDer<'_>) -> String {
    Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

struct State {
    /// The only key the mint helper signs with.
    key: Key,
    secret: String,
    gateway: SocketAddr,
    client_tls: TlsConnector,
    server_sha256: String,
    ca_sha256: String,
    revocation_file: PathBuf,
    /// The token ids revoked so far; also one revocation at a time.
    revoked: Mutex<Vec<String>>,
    reloader: Reloader,
}

/// The page and its helpers in front of the gateway; every other request
/// goes to the gateway as it would under `serve`.
#[derive(Clone)]
struct Front(Arc<State>);

impl Respond for Front {
    fn respond(
        self,
        gateway: Arc<Gateway>,
        request: Request<Incoming>,
        connection: Connection,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static {
        let state = self.0;
        async move {
            match Endpoint::of(request.uri().path()) {
                Some(endpoint) => {
                    (state.answer(endpoint, request, connection).await).map(Logged::unlogged)
                }
                None => match gateway.handle(request, connection.client).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
            }
        }
    }
}

/// The page's own paths: `/` and everything under `/playground/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Index,
    Script,
    Style,
    Session,
    Mint,
    Revoke,
    Connection,
    Wire,
    Unknown,
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        if path == "/" {
            return Some(Endpoint::Index);
        }
        let rest = path.strip_prefix("/playground/")?;
        Some(match rest {
            "app.js" => Endpoint::Script,
            "style.css" => Endpoint::Style,
            "session" => Endpoint::Session,
            "mint" => Endpoint::Mint,
            "revoke" => Endpoint::Revoke,
            "connection" => Endpoint::Connection,
            "wire" => Endpoint::Wire,
            _ => Endpoint::Unknown,
        })
    }

    fn method(self) -> Method {
        match self {
            Endpoint::Mint | Endpoint::Revoke | Endpoint::Wire => Method::POST,
            Endpoint::Index
            | Endpoint::Script
            | Endpoint::Style
            | Endpoint::Session
            | Endpoint::Connection
            | Endpoint::Unknown => Method::GET,
        }
    }
}

/// Why a helper refused a request.
#[derive(Debug, thiserror::Error)]
enum HelperError {
    #[error("no such playground path")]
    NotFound,
    #[error("use {0}")]
    Method(Method),
    #[error("send Content-Type: application/json")]
    ContentType,
    #[error("the request body is not what this helper takes: {0}")]
    Body(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("the demo's revocation list is full ({MAX_REVOCATIONS} entries)")]
    Full,
    #[error("cannot write the revocation list: {0}")]
    Write(#[from] std::io::Error),
    #[error("reload failed: {0}")]
    Reload(#[from] ReloadError),
    #[error("the request to the gateway failed: {0}")]
    Wire(String),
    #[error("no secure random source")]
    Random,
}

impl HelperError {
    fn status(&self) -> StatusCode {
        match self {
            HelperError::NotFound => StatusCode::NOT_FOUND,
            HelperError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            HelperError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HelperError::Body(_) | HelperError::Invalid(_) => StatusCode::BAD_REQUEST,
            HelperError::Full => StatusCode::CONFLICT,
            HelperError::Write(_) | HelperError::Reload(_) | HelperError::Random => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HelperError::Wire(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    sub: String,
    role: String,
    /// Seconds from now to `exp`; negative mints an expired token.
    ttl: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    path: String,
    token: String,
}

impl State {
    async fn answer(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        connection: Connection,
    ) -> Response<Body> {
        let result = match (endpoint, request.method() == endpoint.method()) {
            (Endpoint::Unknown, _) => Err(HelperError::NotFound),
            (_, false) => Err(HelperError::Method(endpoint.method())),
            (Endpoint::Index, true) => Ok(asset("text/html; charset=utf-8", INDEX)),
            (Endpoint::Script, true) => Ok(asset("text/javascript; charset=utf-8", SCRIPT)),
            (Endpoint::Style, true) => Ok(asset("text/css; charset=utf-8", STYLE)),
            (Endpoint::Session, true) => Ok(json_reply(&self.session())),
            (Endpoint::Connection, true) => {
                Ok(json_reply(&self.connection(&connection, request.version())))
            }
            (Endpoint::Mint, true) => match read_json(request).await {
                Ok(body) => self.mint(body).map(|v| json_reply(&v)),
                Err(err) => Err(err),
            },
            (Endpoint::Revoke, true) => match read_json(request).await {
                Ok(body) => self.revoke(body).await.map(|v| json_reply(&v)),
                Err(err) => Err(err),
            },
            (Endpoint::Wire, true) => match read_json(request).await {
                Ok(body) => self.wire(body).await.map(|v| json_reply(&v)),
                Err(err) => Err(err),
            },
        };
        result.unwrap_or_else(|err| {
            let mut response = reply(
                err.status(),
                "application/json",
                json!({ "error": err.to_string() }).to_string(),
            );
            if let HelperError::Method(allowed) = &err
                && let Ok(allow) = HeaderValue::from_str(allowed.as_str())
            {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            response
        })
    }

    /// What the page shows about this run: the demo key in full (it lives
    /// as long as this process and signs nothing else), the leeway, the routes.
    fn session(&self) -> Value {
        json!({
            "kid": "demo",
            "alg": "HS256",
            "secret": self.secret,
            "leeway": LEEWAY_SECONDS,
            "routes": [
                { "prefix": "/public", "auth": "none" },
                { "prefix": "/admin", "auth": "required", "roles": ["admin"] },
                { "prefix": "/", "auth": "required" },
            ],
        })
    }

    /// The connection this request came on, as the gateway negotiated it.
    fn connection(&self, connection: &Connection, version: http::Version) -> Value {
        json!({
            "tls_version": connection.tls_version.and_then(|v| v.as_str()),
            "cipher_suite": connection.cipher_suite.and_then(|s| s.as_str()),
            "key_exchange": connection.key_exchange.and_then(|g| g.as_str()),
            "http_version": format!("{version:?}"),
            "client": connection.client.to_string(),
            "certificate": {
                "subject": format!("CN={}", tls::DEV_SERVER_NAME),
                "names": tls::DEV_SERVER_NAMES,
                "issuer": format!("CN={} (made at start, its key discarded)", tls::DEV_CA_NAME),
                "sha256": self.server_sha256,
                "issuer_sha256": self.ca_sha256,
            },
        })
    }

    /// Signs `sub`, `role`, `iat`, `exp` and a fresh `jti` with the demo key.
    fn mint(&self, body: Bytes) -> Result<Value, HelperError> {
        let request: MintRequest =
            serde_json::from_slice(&body).map_err(|e| HelperError::Body(e.to_string()))?;
        let short_text =
            |s: &str| !s.is_empty() && s.chars().count() <= 64 && !s.chars().any(char::is_control);
        if !short_text(&request.sub) || !short_text(&request.role) {
            return Err(HelperError::Invalid(
                "sub and role are 1 to 64 characters, no control characters",
            ));
        }
        if !(-MAX_TTL..=MAX_TTL).contains(&request.ttl) {
            return Err(HelperError::Invalid("ttl is at most one day either way"));
        }
        let now = unix_now();
        let exp = now + request.ttl;
        let jti = random_secret().map_err(|_| HelperError::Random)?;
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(request.sub));
        claims.insert("role".into(), json!(request.role));
        claims.insert("iat".into(), json!(now.min(exp)));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(&jti[..16]));
        let token = token::mint(&self.key, &claims);
        Ok(json!({ "token": token, "claims": claims }))
    }

    /// Adds `jti` to the demo's revocation file and reloads the config, as
    /// an operator would (`[revocation] file`, then SIGHUP).
    async fn revoke(&self, body: Bytes) -> Result<Value, HelperError> {
        let request: RevokeRequest =
            serde_json::from_slice(&body).map_err(|e| HelperError::Body(e.to_string()))?;
        let jti = request.jti;
        // Only characters that need no quoting in TOML: the file is written by hand.
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if jti.is_empty() || jti.len() > 64 || !jti.chars().all(plain) {
            return Err(HelperError::Invalid(
                "jti is 1 to 64 characters of A-Z, a-z, 0-9, - and _",
            ));
        }
        let mut revoked = self.revoked.lock().await;
        if !revoked.contains(&jti) {
            if revoked.len() >= MAX_REVOCATIONS {
                return Err(HelperError::Full);
            }
            revoked.push(jti.clone());
        }
        let text: String = revoked
            .iter()
            .map(|jti| {
                format!("[[revoke]]\njti = \"{jti}\"\nnote = \"revoked in the playground\"\n\n")
            })
            .collect();
        std::fs::write(&self.revocation_file, text)?;
        let reloaded = self.reloader.reload().await?;
        Ok(json!({
            "revoked": jti,
            "entries": reloaded.revocations,
            "file": std::fs::read_to_string(&self.revocation_file)?,
        }))
    }

    /// Sends `GET path` with the token to the gateway over a fresh TLS
    /// connection, recording the bytes that crossed the socket. Returns
    /// them beside the same request as it would cross a plaintext one.
    async fn wire(&self, body: Bytes) -> Result<Value, HelperError> {
        let request: WireRequest =
            serde_json::from_slice(&body).map_err(|e| HelperError::Body(e.to_string()))?;
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !request.path.starts_with('/') || request.path.len() > 512 || !visible(&request.path) {
            return Err(HelperError::Invalid(
                "path starts with / and is at most 512 visible ASCII characters",
            ));
        }
        if request.token.len() > 8192 || !visible(&request.token) {
            return Err(HelperError::Invalid(
                "token is at most 8192 visible ASCII characters",
            ));
        }
        wire::capture(
            &self.client_tls,
            self.gateway,
            &request.path,
            &request.token,
        )
        .await
        .map_err(|e| HelperError::Wire(e.to_string()))
    }
}

/// The body of a helper request: JSON (so a page on another origin cannot
/// post it without a CORS preflight, which is never answered), small.
async fn read_json(request: Request<Incoming>) -> Result<Bytes, HelperError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json {
        return Err(HelperError::ContentType);
    }
    Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|body| body.to_bytes())
        .map_err(|e| HelperError::Body(e.to_string()))
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    reply(StatusCode::OK, content_type, text)
}

fn json_reply(value: &Value) -> Response<Body> {
    reply(StatusCode::OK, "application/json", value.to_string())
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(body.into())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_playground_folder_are_the_pages() {
        assert_eq!(Endpoint::of("/"), Some(Endpoint::Index));
        assert_eq!(Endpoint::of("/playground/mint"), Some(Endpoint::Mint));
        assert_eq!(Endpoint::of("/playground/x"), Some(Endpoint::Unknown));
        assert_eq!(Endpoint::of("/playground"), None);
        assert_eq!(Endpoint::of("/orders"), None);
    }
}
