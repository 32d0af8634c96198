//! The TOML configuration: raw serde structs mirror the file (unknown keys
//! are refused), then validation builds typed values. Every error names the
//! file, the line and the key path.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, Uri};
use serde::Deserialize;
use toml::Spanned;

use crate::jwks::{self, Location, Source};
use crate::jwt::{Alg, Validation};
use crate::keys::{Key, KeyError, KeySet};
use crate::revocation::Revocations;
use crate::routes::{AuthMode, Route, RouteTable};

/// A validated configuration. Nothing after start-up reads a raw string.
#[derive(Debug)]
pub struct Config {
    pub server: Server,
    /// The admin listener; `None` (the default): not started.
    pub admin: Option<Admin>,
    pub validation: Validation,
    /// Static keys and the keys of local JWKS files, loaded at start-up.
    pub keys: KeySet,
    /// Every `[[jwt.jwks]]` source (URL sources are fetched by the gateway).
    pub jwks: Vec<Source>,
    /// Verified public-key tokens remembered (`jwt.verified_cache`);
    /// 0 disables the cache. Defaults to 10 000.
    pub verified_cache: usize,
    pub upstreams: Vec<Upstream>,
    pub routes: RouteTable,
    /// `[jwt] query_param`: a query parameter that may carry the token
    /// (RFC 6750 §2.3). `None` (the default): tokens in the query are ignored.
    pub token_query_param: Option<String>,
    pub log: Log,
    /// `[reload] watch` / `watch_interval`: how often the config file and
    /// the files it names are checked for changes; `None`: only SIGHUP
    /// reloads. Defaults to every second.
    pub watch: Option<Duration>,
    /// `[revocation] file`, if configured.
    pub revocation_file: Option<PathBuf>,
    /// The revocation list read from it (empty without one).
    pub revocations: Revocations,
    /// Every file this config was built from besides the config itself
    /// (certificate, key files, JWKS files, revocation list): a change to
    /// any of them triggers a reload.
    pub files: Vec<PathBuf>,
}

/// `[log]`: where the access log and the rest go (stderr) and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// `error`, `warn`, `info` (the default: one access line per request),
    /// `debug` or `trace`. The `JWTGATE_LOG` environment variable overrides it.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    Json,
    /// Human-readable `key=value` lines.
    Text,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".to_owned(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Runtime worker threads. Defaults to the number of cores.
    pub workers: Option<usize>,
    /// Time allowed for the TLS handshake. Defaults to 10 s.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (HTTP/1.1). Defaults to 10 s.
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait in the kernel's backlog. Defaults to 10 000.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests. Defaults to 30 s.
    pub shutdown_grace: Duration,
    /// Request head size (start line and header fields) at most; more: 431.
    /// Defaults to 16 KiB.
    pub max_header_bytes: usize,
    /// Request header fields at most; more: 431. Defaults to 100.
    pub max_headers: usize,
    /// Request target (path and query) length at most; more: 414. Defaults to 8 KiB.
    pub max_uri_bytes: usize,
    /// Request body size at most; more: 413. Defaults to 10 MiB.
    pub max_body_bytes: u64,
    /// Add `Server-Timing: jwt;dur=<ms>` to responses whose token was
    /// verified. Defaults to true.
    pub server_timing: bool,
}

/// `[admin]`: plaintext `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port`, with an optional path prefix prepended to every request.
    pub url: Uri,
    /// Time allowed for the response headers. Defaults to 30 s.
    pub timeout: Duration,
    /// Time allowed to connect. Defaults to 5 s.
    pub connect_timeout: Duration,
}

/// A configuration error: `file:line: key: message`.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A validation error before the file name is known.
struct Invalid {
    span: Option<Range<usize>>,
    key: String,
    message: String,
}

fn invalid<T>(span: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        span: Some(span.span()),
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates a config file; secrets come from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {err}"),
        })?;
        Config::from_toml_str(&text, &file, &|name| std::env::var(name).ok())
    }

    /// Validates config text. `file` names it in errors; `env` looks up the
    /// environment variables that `secret_env` names.
    pub fn from_toml_str(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let located = |invalid: Invalid| ConfigError {
            file: file.to_owned(),
            line: invalid.span.map(|span| line_of(text, span.start)),
            key: invalid.key,
            message: invalid.message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let key = err
                .span()
                .map(|span| key_path_at(text, span.start))
                .unwrap_or_default();
            located(Invalid {
                span: err.span(),
                key,
                message: err.message().trim().to_owned(),
            })
        })?;
        let mut config = validate(raw, env).map_err(located)?;
        if let Some(path) = &config.revocation_file {
            config.revocations = Revocations::load(path)?;
        }
        Ok(config)
    }
}

/// The dotted key path at `offset`, for errors the TOML parser reports
/// without one: the innermost table header above it (`[[route]]` counted
/// into `route[2]`) and the key the offset's line assigns, if any.
pub(crate) fn key_path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut line_start = 0;
    for line in text[..offset].split_inclusive('\n') {
        let trimmed = line.trim();
        if line_start + line.len() <= offset && line.ends_with('\n') {
            if let Some(name) = trimmed
                .strip_prefix("[[")
                .and_then(|t| t.split("]]").next())
            {
                let name = name.trim().to_owned();
                let n = match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        counts.push((name.clone(), 0));
                        0
                    }
                };
                table = format!("{name}[{n}]");
            } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
                table = name.trim().to_owned();
            }
        }
        line_start += line.len();
    }
    let line = text[..offset].rsplit('\n').next().unwrap_or("");
    let rest = text[offset..].split('\n').next().unwrap_or("");
    let full_line = format!("{line}{rest}");
    let key = full_line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(key)) => key.to_owned(),
        (false, Some(key)) => format!("{table}.{key}"),
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    admin: Option<RawAdmin>,
    log: Option<RawLog>,
    #[serde(default)]
    jwt: RawJwt,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    #[serde(default)]
    route: Vec<RawRoute>,
    revocation: Option<RawRevocation>,
    reload: Option<RawReload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    watch: Option<bool>,
    watch_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    workers: Option<Spanned<usize>>,
    handshake_timeout: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<usize>>,
    shutdown_grace: Option<Spanned<String>>,
    max_header_bytes: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    max_uri_bytes: Option<Spanned<usize>>,
    max_body_bytes: Option<Spanned<u64>>,
    server_timing: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    #[serde(default)]
    issuers: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    leeway: Option<Spanned<String>>,
    require: Option<Spanned<Vec<String>>>,
    user_claim: Option<Spanned<String>>,
    role_claim: Option<Spanned<String>>,
    query_param: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    jwks: Vec<Spanned<RawJwks>>,
    verified_cache: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<Spanned<String>>,
    alg: Spanned<String>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    public_key_file: Option<Spanned<PathBuf>>,
    issuer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    file: Option<Spanned<PathBuf>>,
    url: Option<Spanned<String>>,
    issuer: Option<String>,
    ca_file: Option<Spanned<PathBuf>>,
    alg: Option<Spanned<String>>,
    refresh: Option<Spanned<String>>,
    cooldown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Spanned<String>,
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    upstream: Spanned<String>,
    #[serde(default)]
    auth: Option<Spanned<String>>,
    methods: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    roles: Option<Spanned<Vec<String>>>,
}

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Invalid> {
    let revocation_file = raw.revocation.as_ref().map(|r| r.file.clone());
    let files = watched_files(&raw, revocation_file.as_deref());
    let server = validate_server(raw.server)?;
    let admin = raw.admin.map(validate_admin).transpose()?;
    let verified_cache = raw
        .jwt
        .verified_cache
        .unwrap_or(crate::cache::DEFAULT_CAPACITY);
    let token_query_param = match raw.jwt.query_param.clone() {
        Some(name)
            if name.get_ref().is_empty()
                || !name.get_ref().bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                }) =>
        {
            return Err(invalid(
                &name,
                "jwt.query_param",
                "must be a non-empty name of letters, digits, '-', '.', '_' or '~'",
            ));
        }
        name => name.map(Spanned::into_inner),
    };
    let (validation, keys, jwks) = validate_jwt(raw.jwt, env)?;
    let upstreams = validate_upstreams(raw.upstream)?;
    let routes = validate_routes(raw.route, &upstreams)?;
    if keys.first().is_none()
        && jwks.is_empty()
        && let Some(route) = routes.routes().iter().find(|r| r.auth != AuthMode::None)
    {
        return Err(Invalid {
            span: None,
            key: "jwt.keys".to_owned(),
            message: format!(
                "route {} checks tokens but no [[jwt.keys]] or [[jwt.jwks]] is configured",
                route.prefix
            ),
        });
    }
    let log = raw.log.map(validate_log).transpose()?.unwrap_or_default();
    let watch = match raw.reload {
        Some(RawReload {
            watch: Some(false), ..
        }) => None,
        Some(RawReload { watch_interval, .. }) => Some(duration_at_least(
            watch_interval,
            "reload.watch_interval",
            1,
            100 * MILLISECOND,
        )?),
        None => Some(SECOND),
    };
    Ok(Config {
        watch,
        log,
        server,
        admin,
        validation,
        keys,
        jwks,
        verified_cache,
        upstreams,
        routes,
        token_query_param,
        revocation_file,
        revocations: Revocations::default(),
        files,
    })
}

fn watched_files(raw: &RawConfig, revocation: Option<&Path>) -> Vec<PathBuf> {
    let mut files = vec![raw.server.tls_cert.clone(), raw.server.tls_key.clone()];
    for key in &raw.jwt.keys {
        let key = key.get_ref();
        let paths = [&key.secret_file, &key.public_key_file];
        files.extend(paths.into_iter().flatten().map(|p| p.get_ref().clone()));
    }
    for source in &raw.jwt.jwks {
        let source = source.get_ref();
        let paths = [&source.file, &source.ca_file];
        files.extend(paths.into_iter().flatten().map(|p| p.get_ref().clone()));
    }
    files.extend(revocation.map(Path::to_path_buf));
    files
}

fn validate_server(raw: RawServer) -> Result<Server, Invalid> {
    let listen = raw.listen.get_ref().parse().map_err(|_| {
        invalid(
            &raw.listen,
            "server.listen",
            format!("{:?} is not an address:port", raw.listen.get_ref()),
        )
    })?;
    let workers = match raw.workers {
        Some(w) if *w.get_ref() == 0 => {
            return Err(invalid(&w, "server.workers", "must be at least 1"));
        }
        w => w.map(Spanned::into_inner),
    };
    let max_connections = match raw.max_connections {
        Some(m) if *m.get_ref() == 0 => {
            return Err(invalid(&m, "server.max_connections", "must be at least 1"));
        }
        m => m.map_or(10_000, Spanned::into_inner),
    };
    let at_least = |raw: Option<Spanned<usize>>, key: &str, min: usize, default: usize| match raw {
        Some(v) if *v.get_ref() < min => Err(invalid(&v, key, format!("must be at least {min}"))),
        v => Ok(v.map_or(default, Spanned::into_inner)),
    };
    // Below these a browser's ordinary request would already be refused.
    let max_header_bytes = at_least(
        raw.max_header_bytes,
        "server.max_header_bytes",
        1024,
        16 * 1024,
    )?;
    let max_headers = at_least(raw.max_headers, "server.max_headers", 8, 100)?;
    let max_uri_bytes = at_least(raw.max_uri_bytes, "server.max_uri_bytes", 64, 8 * 1024)?;
    let max_body_bytes = raw
        .max_body_bytes
        .map_or(10 * 1024 * 1024, Spanned::into_inner);
    Ok(Server {
        listen,
        tls_cert: raw.tls_cert,
        tls_key: raw.tls_key,
        workers,
        handshake_timeout: duration_or(raw.handshake_timeout, "server.handshake_timeout", 10)?,
        header_read_timeout: duration_or(
            raw.header_read_timeout,
            "server.header_read_timeout",
            10,
        )?,
        max_connections,
        shutdown_grace: duration_or(raw.shutdown_grace, "server.shutdown_grace", 30)?,
        server_timing: raw.server_timing.unwrap_or(true),
        max_header_bytes,
        max_headers,
        max_uri_bytes,
        max_body_bytes,
    })
}

fn validate_admin(raw: RawAdmin) -> Result<Admin, Invalid> {
    let listen = raw.listen.get_ref().parse().map_err(|_| {
        invalid(
            &raw.listen,
            "admin.listen",
            format!("{:?} is not an address:port", raw.listen.get_ref()),
        )
    })?;
    Ok(Admin { listen })
}

fn validate_jwt(
    raw: RawJwt,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Validation, KeySet, Vec<Source>), Invalid> {
    let defaults = Validation::default();
    let leeway = duration_or(raw.leeway, "jwt.leeway", 30)?;
    let required = match raw.require {
        Some(require) if require.get_ref().len() > 64 => {
            return Err(invalid(
                &require,
                "jwt.require",
                "at most 64 claims can be required",
            ));
        }
        Some(require) => require.into_inner(),
        None => defaults.required,
    };
    let validation = Validation {
        leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
        issuers: raw.issuers,
        audiences: raw.audiences,
        required,
        user_claim: identity_claim(raw.user_claim, "jwt.user_claim", defaults.user_claim)?,
        role_claim: identity_claim(
            raw.role_claim.clone(),
            "jwt.role_claim",
            defaults.role_claim,
        )?,
    };
    if validation.user_claim == validation.role_claim {
        let span = raw.role_claim.as_ref().map(Spanned::span);
        return Err(Invalid {
            span,
            key: "jwt.role_claim".to_owned(),
            message: format!(
                "{:?} is also the user_claim; one claim cannot be both",
                validation.role_claim
            ),
        });
    }

    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for (i, raw_key) in raw.keys.into_iter().enumerate() {
        let span = raw_key.span();
        let raw_key = raw_key.into_inner();
        let at = |field: &str| format!("jwt.keys[{i}].{field}");
        let alg = parse_alg(&raw_key.alg, &at("alg"))?;
        let whole = |message: String| Invalid {
            span: Some(span.clone()),
            key: format!("jwt.keys[{i}]"),
            message,
        };
        let material = match (
            raw_key.secret_env,
            raw_key.secret_file,
            raw_key.public_key_file,
        ) {
            (Some(var), None, None) => KeyMaterial::Secret(
                env(var.get_ref())
                    .filter(|s| !s.is_empty())
                    .map(String::into_bytes)
                    .ok_or_else(|| {
                        invalid(
                            &var,
                            at("secret_env"),
                            format!("environment variable {} is not set", var.get_ref()),
                        )
                    })?,
            ),
            (None, Some(path), None) => {
                KeyMaterial::Secret(std::fs::read(path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("secret_file"),
                        format!("cannot read {}: {err}", path.get_ref().display()),
                    )
                })?)
            }
            (None, None, Some(path)) => KeyMaterial::PublicKey(path),
            _ => {
                return Err(whole(
                    "set exactly one of secret_env, secret_file or public_key_file (inline secrets are not accepted)".to_owned(),
                ));
            }
        };
        if let Some(kid) = &raw_key.kid
            && !kids.insert(kid.get_ref().clone())
        {
            return Err(invalid(
                kid,
                at("kid"),
                format!("kid {:?} is used twice", kid.get_ref()),
            ));
        }
        let kid = raw_key.kid.map(Spanned::into_inner);
        // The algorithm decides what the material may be: a public key can
        // never become an HMAC secret, nor a secret a public key.
        let key = match material {
            KeyMaterial::Secret(secret) => {
                Key::hmac(kid, alg, &secret).map_err(|err| whole(err.to_string()))?
            }
            // Refused before the file is read: the algorithm decides.
            KeyMaterial::PublicKey(path) if alg.is_hmac() => {
                return Err(invalid(
                    &path,
                    at("public_key_file"),
                    KeyError::PublicKeyForHmac { alg }.to_string(),
                ));
            }
            KeyMaterial::PublicKey(path) => {
                Key::from_pem_file(kid, alg, path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("public_key_file"),
                        format!("{}: {err}", path.get_ref().display()),
                    )
                })?
            }
        };
        keys.push(key.for_issuer(raw_key.issuer));
    }
    let mut sources = Vec::new();
    for (i, raw_source) in raw.jwks.into_iter().enumerate() {
        let span = raw_source.span();
        let raw_source = raw_source.into_inner();
        let at = |field: &str| format!("jwt.jwks[{i}].{field}");
        let default_alg = match &raw_source.alg {
            Some(alg) => Some(parse_alg(alg, &at("alg"))?),
            None => None,
        };
        // Floors keep "0s" from turning refreshes into a hot loop against
        // the identity provider (an unknown-kid flood fetches once per cooldown).
        let refresh = duration_at_least(raw_source.refresh, &at("refresh"), 300, SECOND)?;
        let cooldown =
            duration_at_least(raw_source.cooldown, &at("cooldown"), 30, 100 * MILLISECOND)?;
        let location = match (raw_source.file, raw_source.url) {
            (Some(path), None) => {
                if let Some(ca) = &raw_source.ca_file {
                    return Err(invalid(ca, at("ca_file"), "only a url source uses ca_file"));
                }
                let text = std::fs::read(path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("file"),
                        format!("cannot read {}: {err}", path.get_ref().display()),
                    )
                })?;
                let loaded = jwks::parse_jwks(&text, raw_source.issuer.as_deref(), default_alg)
                    .map_err(|err| {
                        invalid(
                            &path,
                            at("file"),
                            format!("{}: {err}", path.get_ref().display()),
                        )
                    })?;
                keys.extend(loaded);
                Location::File(path.into_inner())
            }
            (None, Some(url)) => {
                let parsed: Uri = url
                    .get_ref()
                    .parse()
                    .ok()
                    .filter(|u: &Uri| u.scheme_str() == Some("https") && u.host().is_some())
                    .ok_or_else(|| {
                        invalid(
                            &url,
                            at("url"),
                            format!("{:?} is not an https:// URL", url.get_ref()),
                        )
                    })?;
                let roots = match &raw_source.ca_file {
                    None => None,
                    Some(ca) => {
                        use rustls::pki_types::pem::PemObject;
                        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca.get_ref())
                            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                            .map_err(|err| {
                                invalid(
                                    ca,
                                    at("ca_file"),
                                    format!("cannot read {}: {err}", ca.get_ref().display()),
                                )
                            })?;
                        if certs.is_empty() {
                            return Err(invalid(ca, at("ca_file"), "holds no certificate"));
                        }
                        Some(certs)
                    }
                };
                let tls = jwks::client_config(roots.as_deref()).map_err(|err| {
                    invalid(
                        &url,
                        at("ca_file"),
                        format!("unusable CA certificate: {err}"),
                    )
                })?;
                Location::Url { url: parsed, tls }
            }
            _ => {
                return Err(Invalid {
                    span: Some(span),
                    key: format!("jwt.jwks[{i}]"),
                    message: "set exactly one of file or url".to_owned(),
                });
            }
        };
        sources.push(Source {
            location,
            issuer: raw_source.issuer,
            default_alg,
            refresh,
            cooldown,
        });
    }
    Ok((validation, KeySet::new(keys), sources))
}

/// What a `[[jwt.keys]]` entry names: a secret's bytes, or a PEM file.
enum KeyMaterial {
    Secret(Vec<u8>),
    PublicKey(Spanned<PathBuf>),
}

fn parse_alg(alg: &Spanned<String>, key: &str) -> Result<Alg, Invalid> {
    Alg::from_name(alg.get_ref()).ok_or_else(|| {
        let names: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
        invalid(
            alg,
            key,
            format!("{:?} is not one of {}", alg.get_ref(), names.join(", ")),
        )
    })
}

fn validate_log(raw: RawLog) -> Result<Log, Invalid> {
    let defaults = Log::default();
    let level = match raw.level {
        None => defaults.level,
        Some(level)
            if ["error", "warn", "info", "debug", "trace"].contains(&level.get_ref().as_str()) =>
        {
            level.into_inner()
        }
        Some(level) => {
            return Err(invalid(
                &level,
                "log.level",
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    level.get_ref()
                ),
            ));
        }
    };
    let format = match raw.format.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            let span = raw.format.as_ref().map(Spanned::span);
            return Err(Invalid {
                span,
                key: "log.format".to_owned(),
                message: format!("{other:?} is not one of json, text"),
            });
        }
    };
    Ok(Log { level, format })
}

/// The user and role claims must not be claims the verifier checks itself:
/// `user_claim = "exp"` would switch off expiry.
fn identity_claim(
    raw: Option<Spanned<String>>,
    key: &str,
    default: String,
) -> Result<String, Invalid> {
    match raw {
        None => Ok(default),
        Some(name)
            if ["exp", "nbf", "iat", "iss", "aud", ""].contains(&name.get_ref().as_str()) =>
        {
            Err(invalid(
                &name,
                key,
                format!(
                    "{:?} is checked by the verifier; name another claim",
                    name.get_ref()
                ),
            ))
        }
        Some(name) => Ok(name.into_inner()),
    }
}

fn validate_upstreams(raw: Vec<RawUpstream>) -> Result<Vec<Upstream>, Invalid> {
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(raw.len());
    for (i, up) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("upstream[{i}].{field}");
        if upstreams.iter().any(|u| u.name == *up.name.get_ref()) {
            return Err(invalid(
                &up.name,
                at("name"),
                format!("upstream {:?} is defined twice", up.name.get_ref()),
            ));
        }
        let url: Uri = up.url.get_ref().parse().map_err(|err| {
            invalid(
                &up.url,
                at("url"),
                format!("{:?} is not a URL: {err}", up.url.get_ref()),
            )
        })?;
        if url.scheme_str() != Some("http") || url.authority().is_none() {
            return Err(invalid(
                &up.url,
                at("url"),
                "must be http://host:port[/prefix] (TLS to upstreams is not supported yet)",
            ));
        }
        if url.query().is_some() {
            return Err(invalid(&up.url, at("url"), "must not have a query"));
        }
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid(
                &up.url,
                at("url"),
                "must not carry credentials (user:password@)",
            ));
        }
        upstreams.push(Upstream {
            name: up.name.into_inner(),
            url,
            timeout: duration_or(up.timeout, &at("timeout"), 30)?,
            connect_timeout: duration_or(up.connect_timeout, &at("connect_timeout"), 5)?,
        });
    }
    Ok(upstreams)
}

fn validate_routes(raw: Vec<RawRoute>, upstreams: &[Upstream]) -> Result<RouteTable, Invalid> {
    if raw.is_empty() {
        return Err(Invalid {
            span: None,
            key: "route".to_owned(),
            message: "no [[route]] is configured; every request would be a 404".to_owned(),
        });
    }
    let mut routes: Vec<(Route, Spanned<String>)> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("route[{i}].{field}");
        let prefix =
            route_prefix(r.path.get_ref()).map_err(|msg| invalid(&r.path, at("path"), msg))?;
        let upstream = upstreams
            .iter()
            .position(|u| u.name == *r.upstream.get_ref())
            .ok_or_else(|| {
                invalid(
                    &r.upstream,
                    at("upstream"),
                    format!("no upstream named {:?}", r.upstream.get_ref()),
                )
            })?;
        let auth = match r.auth.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("required") => AuthMode::Required,
            Some("optional") => AuthMode::Optional,
            Some("none") => AuthMode::None,
            Some(other) => {
                let span = r.auth.as_ref().map(Spanned::span);
                return Err(Invalid {
                    span,
                    key: at("auth"),
                    message: format!("{other:?} is not one of none, optional, required"),
                });
            }
        };
        let methods = match &r.methods {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(invalid(
                    list,
                    at("methods"),
                    "an empty list allows nothing; omit it to allow every method",
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|m| match Method::from_bytes(m.as_bytes()) {
                        Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => Ok(method),
                        _ => Err(invalid(
                            list,
                            at("methods"),
                            format!("{m:?} is not an upper-case HTTP method"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let roles = match r.roles {
            None => Vec::new(),
            Some(roles) if auth == AuthMode::None => {
                return Err(invalid(
                    &roles,
                    at("roles"),
                    "roles need auth = \"required\" or \"optional\"",
                ));
            }
            Some(roles)
                if roles
                    .get_ref()
                    .iter()
                    .any(|r| r.is_empty() || r.contains(',')) =>
            {
                return Err(invalid(
                    &roles,
                    at("roles"),
                    "roles must be non-empty and contain no comma",
                ));
            }
            Some(roles) => roles.into_inner(),
        };
        let route = Route {
            prefix,
            methods,
            auth,
            roles,
            upstream,
        };
        if let Some(j) = routes.iter().position(|(other, _)| overlaps(other, &route)) {
            return Err(invalid(
                &r.path,
                at("path"),
                format!(
                    "overlaps route[{j}] ({:?}): same prefix, some method in common",
                    routes[j].1.get_ref()
                ),
            ));
        }
        routes.push((route, r.path));
    }
    Ok(RouteTable::new(
        routes.into_iter().map(|(route, _)| route).collect(),
    ))
}

/// Two routes with one prefix must not both accept a method.
fn overlaps(a: &Route, b: &Route) -> bool {
    a.prefix == b.prefix
        && match (&a.methods, &b.methods) {
            (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
            _ => true,
        }
}

/// A route path must already be normal; a trailing slash is dropped.
fn route_prefix(path: &str) -> Result<String, String> {
    match crate::routes::normalize(path) {
        Ok(normal) if normal == path => {
            let trimmed = path.trim_end_matches('/');
            Ok(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        Ok(normal) => Err(format!("{path:?} is not in normal form; write {normal:?}")),
        Err(err) => Err(format!("{path:?}: {err}")),
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);

/// [`duration_or`], refusing values below `min`.
fn duration_at_least(
    raw: Option<Spanned<String>>,
    key: &str,
    default_secs: u64,
    min: Duration,
) -> Result<Duration, Invalid> {
    let span = raw.as_ref().map(Spanned::span);
    let value = duration_or(raw, key, default_secs)?;
    if value < min {
        return Err(Invalid {
            span,
            key: key.to_owned(),
            message: format!("must be at least {}", humanize(min)),
        });
    }
    Ok(value)
}

fn humanize(duration: Duration) -> String {
    match duration.subsec_millis() {
        0 => format!("{}s", duration.as_secs()),
        _ => format!("{}ms", duration.as_millis()),
    }
}

fn duration_or(
    raw: Option<Spanned<String>>,
    key: &str,
    default_secs: u64,
) -> Result<Duration, Invalid> {
    match raw {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => parse_duration(text.get_ref()).ok_or_else(|| {
            invalid(
                &text,
                key,
                format!(
                    "{:?} is not a duration like \"500ms\", \"30s\", \"15m\", \"1h\"",
                    text.get_ref()
                ),
            )
        }),
    }
}

/// Parses `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml", &|name| {
            (name == "SECRET").then(|| SECRET.to_owned())
        })
    }

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8443"
tls_cert = "c.pem"
tls_key = "k.pem"
[[jwt.keys]]
alg = "HS256"
secret_env = "SECRET"
[[upstream]]
name = "app"
url = "http://127.0.0.1:8080"
"#;

    const ROUTE: &str = "[[route]]\npath = \"/\"\nupstream = \"app\"\n";

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("config was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../config/jwtgate.toml");
        let config =
            Config::from_toml_str(text, "config/jwtgate.toml", &|_| Some(SECRET.to_owned()));
        assert!(config.is_ok(), "{:?}", config.err());
    }

    #[test]
    fn unknown_upstream_names_file_line_and_key() {
        let text = format!(
            "{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n[[route]]\npath = \"/x\"\nupstream = \"ap\"\n"
        );
        assert_eq!(
            error(&text),
            "test.toml:17: route[1].upstream: no upstream named \"ap\""
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text =
            format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\nrole = [\"admin\"]\n");
        let err = error(&text);
        assert!(err.starts_with("test.toml:15: "), "{err}");
        assert!(err.contains("unknown field `role`"), "{err}");
    }

    #[test]
    fn missing_secret_env_is_named() {
        let text = BASE.replace("\"SECRET\"", "\"NOPE\"")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert_eq!(
            error(&text),
            "test.toml:8: jwt.keys[0].secret_env: environment variable NOPE is not set"
        );
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        let text = BASE.replace("HS256", "HS512") + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert!(error(&text).contains("HS512 needs a secret of at least 64 bytes"));
    }

    #[test]
    fn unreadable_public_key_file_names_line_and_key() {
        let text = BASE.replace(
            "secret_env = \"SECRET\"",
            "public_key_file = \"/nonexistent/idp.pem\"",
        ) + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        let text = text.replace("alg = \"HS256\"", "alg = \"RS256\"");
        let err = error(&text);
        assert!(
            err.starts_with("test.toml:8: jwt.keys[0].public_key_file: /nonexistent/idp.pem: "),
            "{err}"
        );
    }

    #[test]
    fn hmac_key_with_a_public_key_file_is_refused() {
        let text = BASE.replace("secret_env = \"SECRET\"", "public_key_file = \"k.pem\"")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        let err = error(&text);
        assert!(
            err.contains("HS256 takes a shared secret, not a public key"),
            "{err}"
        );
    }

    #[test]
    fn jwks_url_must_be_https_and_names_its_line() {
        let text = format!(
            "{BASE}[[jwt.jwks]]\nurl = \"http://idp/jwks\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n"
        );
        let err = error(&text);
        assert!(err.starts_with("test.toml:13: jwt.jwks[0].url: "), "{err}");
        assert!(err.contains("is not an https:// URL"), "{err}");
    }

    #[test]
    fn jwks_refresh_and_cooldown_have_floors() {
        let source = |refresh: &str, cooldown: &str| {
            format!(
                "{BASE}[[jwt.jwks]]\nurl = \"https://idp/jwks\"\nrefresh = \"{refresh}\"\ncooldown = \"{cooldown}\"\n{ROUTE}"
            )
        };
        assert_eq!(
            error(&source("0s", "30s")),
            "test.toml:14: jwt.jwks[0].refresh: must be at least 1s"
        );
        assert_eq!(
            error(&source("5m", "0s")),
            "test.toml:15: jwt.jwks[0].cooldown: must be at least 100ms"
        );
        assert!(parse(&source("1s", "100ms")).is_ok());
    }

    #[test]
    fn reload_watches_every_second_unless_told_otherwise() {
        let base = format!("{BASE}{ROUTE}");
        assert_eq!(parse(&base).unwrap().watch, Some(Duration::from_secs(1)));
        let off = format!("{BASE}[reload]\nwatch = false\nwatch_interval = \"5s\"\n{ROUTE}");
        assert_eq!(parse(&off).unwrap().watch, None);
        let fast = format!("{BASE}[reload]\nwatch_interval = \"250ms\"\n{ROUTE}");
        assert_eq!(
            parse(&fast).unwrap().watch,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            error(&format!(
                "{BASE}[reload]\nwatch_interval = \"10ms\"\n{ROUTE}"
            )),
            "test.toml:13: reload.watch_interval: must be at least 100ms"
        );
    }

    #[test]
    fn revocation_file_errors_name_that_file() {
        let text = format!("{BASE}[revocation]\nfile = \"/nonexistent/revoked.toml\"\n{ROUTE}");
        let err = error(&text);
        assert!(
            err.starts_with("/nonexistent/revoked.toml: cannot read: "),
            "{err}"
        );
    }

    #[test]
    fn jwks_source_needs_exactly_one_of_file_or_url() {
        let text = format!(
            "{BASE}[[jwt.jwks]]\nissuer = \"x\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n"
        );
        assert!(error(&text).contains("jwt.jwks[0]: set exactly one of file or url"));
    }

    #[test]
    fn jwks_file_with_an_ambiguous_rsa_key_is_refused_naming_the_file() {
        let path = std::env::temp_dir().join(format!("jwtgate-cfg-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
        )
        .unwrap();
        let text = format!(
            "{BASE}[[jwt.jwks]]\nfile = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n",
            path.display()
        );
        let err = error(&text);
        assert!(err.starts_with("test.toml:13: jwt.jwks[0].file: "), "{err}");
        assert!(err.contains("key 0 (kid Some(\"r\"))"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error("[server]\nlisten = \n");
        assert!(err.starts_with("test.toml:2"), "{err}");
    }

    #[test]
    fn route_paths_must_be_normal() {
        let text = format!("{BASE}[[route]]\npath = \"/a/../b\"\nupstream = \"app\"\n");
        assert!(error(&text).contains("not in normal form"));
    }

    #[test]
    fn overlapping_routes_are_refused() {
        let text = format!(
            "{BASE}[[route]]\npath = \"/a\"\nupstream = \"app\"\n[[route]]\npath = \"/a/\"\nupstream = \"app\"\n"
        );
        assert!(error(&text).contains("overlaps"));
    }

    #[test]
    fn bad_listen_address_is_named() {
        let err = error(&BASE.replace("127.0.0.1:8443", "localhost"));
        assert!(err.starts_with("test.toml:3: server.listen: "), "{err}");
    }

    #[test]
    fn parser_errors_name_the_key_too() {
        let text = BASE.replace("[[upstream]]", "[[upstream]]\ntimeout = 5")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        let err = error(&text);
        assert!(
            err.starts_with("test.toml:10: upstream[0].timeout: invalid type"),
            "{err}"
        );
        let text = format!(
            "{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n[[route]]\npath = \"/x\"\nupstream = \"app\"\nrole = 1\n"
        );
        let err = error(&text);
        assert!(
            err.starts_with("test.toml:18: route[1].role: unknown field `role`"),
            "{err}"
        );
    }

    #[test]
    fn upstream_credentials_and_shared_identity_claims_are_refused() {
        let text = BASE.replace("http://127.0.0.1:8080", "http://user:pw@127.0.0.1:8080")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert!(error(&text).contains("upstream[0].url: must not carry credentials"));
        let text = BASE.replace("[[jwt.keys]]", "[jwt]\nrole_claim = \"sub\"\n[[jwt.keys]]")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert!(error(&text).contains("jwt.role_claim: \"sub\" is also the user_claim"));
    }

    #[test]
    fn identity_claims_cannot_shadow_checked_claims() {
        let text = BASE.replace("[[jwt.keys]]", "[jwt]\nuser_claim = \"exp\"\n[[jwt.keys]]")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert!(error(&text).contains("jwt.user_claim: \"exp\" is checked by the verifier"));
    }

    #[test]
    fn admin_listener_is_off_unless_configured() {
        let text = format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n");
        let config = parse(&text).unwrap();
        assert!(config.admin.is_none());
        assert!(config.server.server_timing);
        let text = text.replace(
            "[[jwt.keys]]",
            "server_timing = false\n[admin]\nlisten = \"127.0.0.1:9901\"\n[[jwt.keys]]",
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.admin.map(|a| a.listen),
            Some("127.0.0.1:9901".parse().unwrap())
        );
        assert!(!config.server.server_timing);
    }

    #[test]
    fn bad_admin_address_is_named() {
        let text = BASE.replace(
            "[[jwt.keys]]",
            "[admin]\nlisten = \"nowhere\"\n[[jwt.keys]]",
        ) + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert_eq!(
            error(&text),
            "test.toml:7: admin.listen: \"nowhere\" is not an address:port"
        );
    }

    #[test]
    fn limits_have_defaults_and_floors() {
        let text = format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n");
        let server = parse(&text).map(|c| c.server).ok();
        let limits = server.map(|s| {
            (
                s.max_header_bytes,
                s.max_headers,
                s.max_uri_bytes,
                s.max_body_bytes,
            )
        });
        assert_eq!(limits, Some((16 * 1024, 100, 8 * 1024, 10 * 1024 * 1024)));
        let low = text.replace("[server]", "[server]\nmax_headers = 2");
        assert!(error(&low).contains("server.max_headers: must be at least 8"));
    }

    #[test]
    fn query_param_must_be_a_plain_name() {
        let text = BASE.replace("[[jwt.keys]]", "[jwt]\nquery_param = \"a&b\"\n[[jwt.keys]]")
            + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        assert!(error(&text).contains("jwt.query_param"));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
