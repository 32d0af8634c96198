//! The TOML configuration: raw serde structs mirror the file (unknown keys
//! are refused), then validation builds typed values. Every error names the
//! file, the line and the key path.

mod duration;
mod error;
mod keys;
mod raw;
mod routes;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use toml::Spanned;

use crate::headers::{self, ClaimHeader};
use crate::jwks::Source;
use crate::jwt::Provider;
use crate::keys::KeySet;
use crate::revocation::Revocations;
use crate::routes::{AuthMode, RouteTable};
use crate::upstream::tls::UpstreamTls;

pub use duration::parse_duration;
pub(crate) use error::parse_toml;
pub use error::{ConfigError, tls_error};

use duration::{MILLISECOND, SECOND, duration_at_least, duration_or};
use error::{Invalid, invalid};
use keys::validate_providers;
use raw::{RawAdmin, RawConfig, RawLog, RawReload, RawServer};
use routes::{validate_routes, validate_upstreams};

/// A validated configuration. Nothing after start-up reads a raw string.
#[derive(Debug)]
pub struct Config {
    pub server: Server,
    /// The admin listener; `None` (the default): not started.
    pub admin: Option<Admin>,
    /// Who issues tokens: `[jwt]` and every `[[provider]]`, in config order;
    /// a key's `provider` is an index into this.
    pub providers: Vec<Provider>,
    /// Per provider, the claim headers its tokens send upstream.
    pub provider_headers: Vec<Vec<ClaimHeader>>,
    /// Every configured claim header name (providers' and routes'): removed
    /// from client requests on every route.
    pub claim_header_names: Vec<http::HeaderName>,
    /// Static keys and the keys of local JWKS files, loaded at start-up.
    pub keys: KeySet,
    /// Every `[[jwt.jwks]]` and `[[provider.jwks]]` source (URL sources are
    /// fetched by the gateway).
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
    /// Which of [`headers::OVERRIDE_HEADERS`] a client may send on to the
    /// upstream. Defaults to none: all are removed.
    pub forward_override_headers: Vec<http::HeaderName>,
}

/// `[admin]`: plaintext `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    /// `ready_needs_upstreams`: `/readyz` also waits for every upstream to
    /// have an endpoint in rotation. Defaults to false.
    pub ready_needs_upstreams: bool,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port` or `https://host:port`, with an optional path
    /// prefix prepended to every request: one per endpoint (`url` may be a
    /// list). All share the scheme and the prefix; never empty.
    pub urls: Vec<Uri>,
    /// Time allowed for the response headers. Defaults to 30 s.
    pub timeout: Duration,
    /// Time allowed to connect (the TLS handshake included). Defaults to 5 s.
    pub connect_timeout: Duration,
    /// For an https URL: how its connections are made (`ca_file`,
    /// `tls_server_name`, `client_cert`/`client_key`). `None` for http.
    pub tls: Option<UpstreamTls>,
    /// `protocol`: what the endpoints speak. Defaults to HTTP/1.1.
    pub protocol: Protocol,
    /// How a request picks its endpoint. Defaults to round robin.
    pub balance: Balance,
    /// `dns_refresh`: resolve each URL's host to all its addresses (one
    /// endpoint each) this often. `None` (the default): one endpoint per
    /// URL, its host resolved when a connection is made.
    pub dns_refresh: Option<Duration>,
    pub health: Health,
}

impl Upstream {
    /// The first URL: the one named when a single address is shown.
    pub fn url(&self) -> &Uri {
        // Validation refuses an empty list.
        &self.urls[0]
    }
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http1` (the default): HTTP/1.1 keep-alive connections.
    Http1,
    /// `h2`: HTTP/2, negotiated by ALPN over TLS, by prior knowledge in
    /// cleartext (h2c); requests share few connections.
    Http2,
}

/// How an upstream's requests are spread over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each endpoint in turn (`round_robin`, the default).
    RoundRobin,
    /// The one with fewer requests in flight of two picked at random
    /// (`least_outstanding`: power of two choices).
    LeastOutstanding,
}

/// When an endpoint is taken out of rotation, and how it comes back.
#[derive(Debug, Clone)]
pub struct Health {
    /// `eject_after`: consecutive failures (connect errors, TLS failures,
    /// 5xx answers) that eject an endpoint; 0 never ejects. Defaults to 5
    /// with several URLs or `dns_refresh`, else to 0 (a lone endpoint is
    /// tried by every request, as before endpoints had health).
    pub eject_after: u32,
    /// `eject_for`: the first ejection's back-off, doubled for each
    /// ejection in a row up to 8 times; back in rotation on probation
    /// after it (one failure ejects again). Defaults to 30 s.
    pub eject_for: Duration,
    /// Active checks, when `health_path` is set.
    pub active: Option<ActiveHealth>,
}

/// `health_path` and friends: a GET to each endpoint every `interval`.
#[derive(Debug, Clone)]
pub struct ActiveHealth {
    /// Absolute path (and query) requested; a 2xx answer passes.
    pub path: http::uri::PathAndQuery,
    /// Defaults to 10 s.
    pub interval: Duration,
    /// Defaults to 2 s.
    pub timeout: Duration,
    /// Passes in a row that bring an endpoint back. Defaults to 2.
    pub healthy_threshold: u32,
    /// Failures in a row that take it out. Defaults to 3.
    pub unhealthy_threshold: u32,
}

impl Config {
    /// Reads and validates a config file; secrets come from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = error::read_text(path)?;
        Config::from_toml_str(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// Validates config text. `file` names it in errors; `env` looks up the
    /// environment variables that `secret_env` names.
    pub fn from_toml_str(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let located = |invalid: Invalid| {
            ConfigError::at(file, text, invalid.span, invalid.key, invalid.message)
        };
        let raw: RawConfig = error::parse_toml(text, file)?;
        let revocation_span = raw.revocation.as_ref().map(|r| r.file.span());
        let mut config = validate(raw, env).map_err(located)?;
        if let Some(path) = &config.revocation_file {
            let text_of_list = error::read_text(path).map_err(|err| {
                // A list that cannot be read is this config's line at fault.
                let message = format!("{}: {}", path.display(), err.message);
                ConfigError::at(file, text, revocation_span, "revocation.file", message)
            })?;
            config.revocations =
                Revocations::from_toml_str(&text_of_list, &path.display().to_string())?;
        }
        Ok(config)
    }
}

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Invalid> {
    let revocation_file = raw.revocation.as_ref().map(|r| r.file.get_ref().clone());
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
    let all = validate_providers(raw.jwt, raw.provider, env)?;
    let (providers, provider_headers, jwks) = (all.providers, all.headers, all.sources);
    let keys = KeySet::new(all.keys);
    let upstreams = validate_upstreams(raw.upstream)?;
    let routes = validate_routes(raw.route, &upstreams, &providers)?;
    let mut claim_header_names: Vec<http::HeaderName> = (provider_headers.iter().flatten())
        .chain(
            routes
                .routes()
                .iter()
                .flat_map(|route| route.headers.iter()),
        )
        .map(|header| header.name.clone())
        .collect();
    claim_header_names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    claim_header_names.dedup();
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
        providers,
        provider_headers,
        claim_header_names,
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

/// The files a config file names, read without validating it (for
/// watching the files a refused config is waiting for). Empty when the file
/// cannot be read or is not TOML of the right shape.
pub fn files_named(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    match toml::from_str::<RawConfig>(&text) {
        Ok(raw) => {
            let revocation = raw.revocation.as_ref().map(|r| r.file.get_ref().clone());
            watched_files(&raw, revocation.as_deref())
        }
        Err(_) => Vec::new(),
    }
}

fn watched_files(raw: &RawConfig, revocation: Option<&Path>) -> Vec<PathBuf> {
    let mut files = vec![raw.server.tls_cert.clone(), raw.server.tls_key.clone()];
    for key in &raw.jwt.keys {
        let key = key.get_ref();
        let paths = [&key.secret_file, &key.public_key_file];
        files.extend(paths.into_iter().flatten().map(|p| p.get_ref().clone()));
    }
    let provider_keys = raw.provider.iter().flat_map(|p| p.get_ref().keys.iter());
    for key in provider_keys {
        let key = key.get_ref();
        let paths = [&key.secret_file, &key.public_key_file];
        files.extend(paths.into_iter().flatten().map(|p| p.get_ref().clone()));
    }
    let provider_jwks = raw.provider.iter().flat_map(|p| p.get_ref().jwks.iter());
    for source in raw.jwt.jwks.iter().chain(provider_jwks) {
        let source = source.get_ref();
        let paths = [&source.file, &source.ca_file];
        files.extend(paths.into_iter().flatten().map(|p| p.get_ref().clone()));
    }
    for upstream in &raw.upstream {
        let paths = [
            &upstream.ca_file,
            &upstream.client_cert,
            &upstream.client_key,
        ];
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
    let forward_override_headers = match raw.forward_override_headers {
        None => Vec::new(),
        Some(names) => names
            .get_ref()
            .iter()
            .map(|name| {
                headers::OVERRIDE_HEADERS
                    .iter()
                    .find(|o| o.as_str().eq_ignore_ascii_case(name))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(
                            &names,
                            "server.forward_override_headers",
                            format!(
                                "{name:?} is not one of X-Original-URL, X-Rewrite-URL, \
                                 X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override"
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Server {
        listen,
        tls_cert: raw.tls_cert,
        tls_key: raw.tls_key,
        workers,
        // Zero would refuse every connection, request or answer: a typo, not
        // a setting. (A zero shutdown_grace is one: close at once.)
        handshake_timeout: duration_at_least(
            raw.handshake_timeout,
            "server.handshake_timeout",
            10,
            100 * MILLISECOND,
        )?,
        header_read_timeout: duration_at_least(
            raw.header_read_timeout,
            "server.header_read_timeout",
            10,
            100 * MILLISECOND,
        )?,
        max_connections,
        shutdown_grace: duration_or(raw.shutdown_grace, "server.shutdown_grace", 30)?,
        server_timing: raw.server_timing.unwrap_or(true),
        forward_override_headers,
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
    Ok(Admin {
        listen,
        ready_needs_upstreams: raw.ready_needs_upstreams.unwrap_or(false),
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
