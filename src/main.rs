//! The `jwtgate` command line: parse arguments, call the library, print one
//! error line and exit non-zero on failure.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value};

use jwtgate::config::{self, Config};
use jwtgate::gateway::{Gateway, unix_now};
use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet, SecretEncoding};
use jwtgate::reload::{self, Baseline, Live, Reloader};
use jwtgate::server::{self, Limits};
use jwtgate::{admin, demo, explain, jwks, tls, token};

/// A TLS-terminating reverse proxy that verifies the JWT on every request.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a TOML config. SIGHUP (and, with `[reload] watch`,
    /// a change to the config or a file it names) reloads it without dropping
    /// a request; SIGINT/SIGTERM stop accepting and drain in-flight requests.
    Serve {
        /// Path to the config file.
        #[arg(long, short, default_value = "config/jwtgate.toml")]
        config: PathBuf,
        #[command(flatten)]
        dev_cert: DevCert,
    },
    /// Walk through the product on an embedded upstream: real TLS, real tokens,
    /// every outcome checked. Needs no files, secrets or backend.
    Demo {
        /// Serve the walkthrough as a page instead (on loopback, until
        /// Ctrl-C): each act sends real requests to the real gateway.
        #[arg(long)]
        web: bool,
        /// Port for --web on 127.0.0.1 (default: any free port).
        #[arg(long, requires = "web")]
        port: Option<u16>,
    },
    /// Validate a config file and print the route table.
    Check {
        #[arg(long, short, default_value = "config/jwtgate.toml")]
        config: PathBuf,
        #[command(flatten)]
        dev_cert: DevCert,
    },
    /// Show what the gateway would do with one request, without sending it:
    /// the matched route, the token's verdict and every failing check, the
    /// decision, and the headers the upstream would receive.
    Explain {
        #[arg(long, short, default_value = "config/jwtgate.toml")]
        config: PathBuf,
        /// The bearer token the request would carry.
        #[arg(long)]
        token: Option<String>,
        /// HTTP method, e.g. GET.
        method: String,
        /// Request target: path and optional query, e.g. /admin/users?page=2.
        target: String,
    },
    /// Mint and read tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args, Clone, Copy)]
struct DevCert {
    /// Where neither `tls_cert` nor `tls_key` exists, generate a development
    /// CA and a certificate for localhost/127.0.0.1 there (and `ca.crt`
    /// beside the certificate). Without it a missing file is an error: a
    /// production gateway never falls back to a self-signed certificate.
    #[arg(long)]
    dev_cert: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed token.
    Mint {
        #[command(flatten)]
        key: KeyArgs,
        /// A string claim, `name=value` (repeatable).
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// A JSON claim, `name=json` (repeatable), e.g. `roles=["a","b"]`.
        #[arg(long = "claim-json", value_name = "NAME=JSON")]
        json_claims: Vec<String>,
        /// Lifetime: sets `iat` to now and `exp` to now + TTL.
        #[arg(long, default_value = "15m")]
        ttl: String,
    },
    /// Decode a token; given a key, also verify it.
    Inspect {
        token: String,
        #[command(flatten)]
        key: OptionalKeyArgs,
    },
}

#[derive(Args)]
struct KeyArgs {
    /// Environment variable holding the HMAC secret.
    #[arg(
        long,
        conflicts_with_all = ["secret_file", "key_file"],
        required_unless_present_any = ["secret_file", "key_file"]
    )]
    secret_env: Option<String>,
    /// File holding the HMAC secret (its exact bytes).
    #[arg(long, conflicts_with = "key_file")]
    secret_file: Option<PathBuf>,
    /// How the secret is written: raw (its bytes as they are) or base64.
    #[arg(long, default_value = "raw", value_parser = parse_encoding)]
    secret_encoding: SecretEncoding,
    /// PEM private key (PKCS#8; RSA also PKCS#1) for RS*/PS*/ES256/ES384/EdDSA.
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[arg(long, default_value = "HS256")]
    alg: String,
    /// Key id to put in (mint) or expect from (inspect) the header.
    #[arg(long)]
    kid: Option<String>,
}

#[derive(Args)]
struct OptionalKeyArgs {
    /// Environment variable holding the HMAC secret.
    #[arg(long, conflicts_with = "secret_file")]
    secret_env: Option<String>,
    /// File holding the HMAC secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// How the secret is written: raw (its bytes as they are) or base64.
    #[arg(long, default_value = "raw", value_parser = parse_encoding)]
    secret_encoding: SecretEncoding,
    /// PEM public key or certificate (with --alg).
    #[arg(long, conflicts_with_all = ["secret_env", "secret_file"])]
    public_key_file: Option<PathBuf>,
    /// Local JWKS file to verify against (the token's kid/alg pick the key).
    #[arg(long, conflicts_with_all = ["secret_env", "secret_file", "public_key_file"])]
    jwks_file: Option<PathBuf>,
    /// JWKS URL (https://) to fetch and verify against.
    #[arg(long, conflicts_with_all = ["secret_env", "secret_file", "public_key_file", "jwks_file"])]
    jwks_url: Option<String>,
    /// PEM file of the CA(s) to trust for --jwks-url (default: the Mozilla
    /// roots built in), as a source's ca_file.
    #[arg(long, requires = "jwks_url")]
    ca_file: Option<PathBuf>,
    /// The key's algorithm (default HS256); with --jwks-file or --jwks-url,
    /// the algorithm of RSA JWKs that carry none (default RS256), as a
    /// source's alg.
    #[arg(long)]
    alg: Option<String>,
    #[arg(long)]
    kid: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let early_hangup = match cli.command {
        Command::Serve { .. } => catch_hangup_early(),
        _ => None,
    };
    match run(cli.command, early_hangup) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, early_hangup: Option<EarlyHangup>) -> Result<ExitCode, String> {
    match command {
        Command::Serve { config, dev_cert } => {
            serve(&config, dev_cert, early_hangup).map(|()| ExitCode::SUCCESS)
        }
        Command::Demo { web: true, port } => {
            init_logging(&config::Log {
                level: "warn".to_owned(),
                format: config::LogFormat::Text,
            });
            runtime(None)?.block_on(async {
                let playground = demo::Playground::start(port.unwrap_or(0))
                    .await
                    .map_err(|e| e.to_string())?;
                println!("jwtgate playground: {}", playground.url());
                println!(
                    "the certificate is signed by a CA made for this run (your browser will warn; \
                     for curl: --cacert {}); Ctrl-C stops it",
                    playground.ca_file().display()
                );
                shutdown_signal().await;
                playground.stop().await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo { web: false, .. } => {
            init_logging(&config::Log {
                level: "warn".to_owned(),
                format: config::LogFormat::Text,
            });
            let runtime = runtime(None)?;
            let passed = runtime.block_on(demo::run()).map_err(|e| e.to_string())?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check {
            config: path,
            dev_cert,
        } => {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            check_key_sources(&path, &config)?;
            let server = &config.server;
            if dev_cert.applies(server) {
                println!(
                    "certificate: neither {} nor {} exists; serve --dev-cert would generate a development certificate",
                    server.tls_cert.display(),
                    server.tls_key.display()
                );
            } else {
                load_tls(&path, server)?;
            }
            print_routes(&config);
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            config,
            token,
            method,
            target,
        } => {
            let mut config = Config::load(&config).map_err(|e| e.to_string())?;
            let method = http::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("{method:?} is not an HTTP method"))?;
            with_remote_keys(&mut config)?;
            let explanation =
                explain::explain(&config, &method, &target, token.as_deref(), unix_now());
            print!("{}", explanation.report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Mint {
            key,
            claims,
            json_claims,
            ttl,
        }) => {
            let signer = match key.key_file {
                Some(path) => {
                    let alg = parse_alg(&key.alg)?;
                    let pem = std::fs::read(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    token::Signer::from_pem(key.kid, alg, &pem)
                        .map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => token::Signer::Hmac(load_key(
                    key.secret_env,
                    key.secret_file,
                    key.secret_encoding,
                    &key.alg,
                    key.kid,
                )?),
            };
            // Beyond ~285 million years exp would pass 2^53, which verifiers refuse.
            let ttl = config::parse_duration(&ttl)
                .filter(|ttl| ttl.as_secs() < 1 << 52)
                .ok_or_else(|| format!("--ttl {ttl:?} is not a duration like 30s, 1m30s or 15m"))?;
            let now = unix_now();
            let mut map = Map::new();
            map.insert("iat".into(), Value::from(now));
            map.insert(
                "exp".into(),
                Value::from(now.saturating_add(ttl.as_secs() as i64)),
            );
            for claim in claims {
                let (name, value) = split_claim(&claim)?;
                if ["exp", "nbf", "iat"].contains(&name) {
                    return Err(format!(
                        "--claim {name}: time claims are numbers; use --ttl or --claim-json {name}=<seconds>"
                    ));
                }
                map.insert(name.to_owned(), Value::from(value));
            }
            for claim in json_claims {
                let (name, value) = split_claim(&claim)?;
                let value = serde_json::from_str(value)
                    .map_err(|e| format!("--claim-json {name}: not JSON: {e}"))?;
                map.insert(name.to_owned(), value);
            }
            println!(
                "{}",
                token::mint_with(&signer, &map).map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Inspect { token, key }) => inspect(&token, key),
    }
}

impl DevCert {
    /// Whether a development certificate is to be generated: asked for, and
    /// neither file is there (one file alone is a mistake to report).
    fn applies(self, server: &config::Server) -> bool {
        self.dev_cert && !server.tls_cert.exists() && !server.tls_key.exists()
    }
}

fn serve(
    path: &std::path::Path,
    dev_cert: DevCert,
    early_hangup: Option<EarlyHangup>,
) -> Result<(), String> {
    // Before reading: an edit made while starting counts as a change.
    let mut baseline = Baseline::of(path);
    let config = Config::load(path).map_err(|e| e.to_string())?;
    init_logging(&config.log);
    let server = config.server.clone();
    if dev_cert.applies(&server) {
        let ca = tls::DevPki::generate()
            .and_then(|pki| pki.write(&server.tls_cert, &server.tls_key))
            .map_err(|e| e.to_string())?;
        tracing::warn!(
            cert = %server.tls_cert.display(),
            key = %server.tls_key.display(),
            ca = %ca.display(),
            "--dev-cert: generated a development certificate; configure a real one for production"
        );
        baseline = baseline.written(&[&server.tls_cert, &server.tls_key]);
    }
    let tls = load_tls(path, &server)?;
    let runtime = runtime(server.workers)?;
    // The reloader's listener first, then the early one is asked: no SIGHUP
    // can fall between them.
    let hangup = runtime.block_on(async { reload::hangup_signal() });
    let hangup_while_starting = early_hangup.is_some_and(EarlyHangup::arrived);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(server.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
        // Bound before serving starts, so a taken admin port fails the start-up.
        let admin_listener = match &config.admin {
            Some(admin) => Some(
                tokio::net::TcpListener::bind(admin.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {} (admin): {e}", admin.listen))?,
            ),
            None => None,
        };
        tracing::info!(listen = %server.listen, routes = config.routes.routes().len(), revocations = config.revocations.len(), "jwtgate serving HTTPS");
        let reloader_config = Reloader::fixed_settings(&config);
        let live = Arc::new(Live::new(Gateway::new(config), tls));
        let gateway = live.gateway();
        gateway.metrics().config_loaded(unix_now());
        let reloader = Arc::new(Reloader::new(path, live.clone(), reloader_config).since(baseline));
        if hangup_while_starting {
            reloader.reload_and_log("SIGHUP during start-up").await;
        }
        let reloads = tokio::spawn(reloader.run(hangup));
        // The admin listener outlives the drain: /readyz says "not ready"
        // while connections drain, and /metrics shows them.
        let (drained, admin_stop) = tokio::sync::oneshot::channel::<()>();
        let admin = admin_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(listen = %addr, "admin listener serving /metrics, /healthz, /readyz");
            }
            tokio::spawn(admin::serve(
                listener,
                gateway.metrics().clone(),
                gateway.readiness().clone(),
                async {
                    let _ = admin_stop.await;
                },
            ))
        });
        drop(gateway);
        server::serve(listener, live, Limits::from(&server), shutdown_signal()).await;
        reloads.abort();
        let _ = drained.send(());
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        Ok(())
    })
}

/// The certificate and key `[server]` names, errors as `file:line: key: message`.
fn load_tls(
    path: &std::path::Path,
    server: &config::Server,
) -> Result<Arc<rustls::ServerConfig>, String> {
    tls::load_server_config(&server.tls_cert, &server.tls_key).map_err(|e| {
        let message = config::tls_error(path, &e);
        let neither = !server.tls_cert.exists() && !server.tls_key.exists();
        match e {
            tls::TlsError::MissingCert { .. } if neither => {
                format!("{message} (for a development certificate there, run serve --dev-cert)")
            }
            _ => message,
        }
    })
}

/// SIGHUP's default action ends the process, and the reloader only listens
/// once the config is loaded and the runtime runs. Registering tokio's
/// handler first replaces that action for the life of the process, so a
/// reload requested during start-up is never fatal; it is remembered and
/// done once serving starts.
#[cfg(unix)]
struct EarlyHangup {
    runtime: tokio::runtime::Runtime,
    signal: tokio::signal::unix::Signal,
}

#[cfg(not(unix))]
struct EarlyHangup;

#[cfg(unix)]
fn catch_hangup_early() -> Option<EarlyHangup> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let signal = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    })?;
    Some(EarlyHangup { runtime, signal })
}

#[cfg(not(unix))]
fn catch_hangup_early() -> Option<EarlyHangup> {
    None
}

impl EarlyHangup {
    /// Whether a SIGHUP arrived since [`catch_hangup_early`]. Call it once
    /// the reloader's own listener exists, so none falls between the two.
    #[cfg(unix)]
    fn arrived(self) -> bool {
        let EarlyHangup {
            runtime,
            mut signal,
        } = self;
        // Its runtime must run for its signal driver to deliver.
        runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(10), signal.recv())
                .await
                .is_ok()
        })
    }

    #[cfg(not(unix))]
    fn arrived(self) -> bool {
        false
    }
}

/// `workers = 1` runs everything on the calling thread (tokio's
/// `current_thread` scheduler): the accept loop and every connection share
/// one thread, with no work-stealing queues or cross-thread wake-ups, as a
/// single pinned HAProxy/nginx worker does.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}

/// Logs to stderr; `JWTGATE_LOG` (e.g. `debug`, `access=off`) overrides the level.
fn init_logging(log: &config::Log) {
    let configured = || tracing_subscriber::EnvFilter::new(quiet_client_quirks(&log.level));
    let filter = match std::env::var("JWTGATE_LOG") {
        Ok(spec) => tracing_subscriber::EnvFilter::try_new(quiet_client_quirks(&spec))
            .unwrap_or_else(|error| {
                eprintln!(
                    "warning: JWTGATE_LOG ignored ({error}); using level {}",
                    log.level
                );
                configured()
            }),
        Err(_) => configured(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        config::LogFormat::Json => builder.json().flatten_event(true).init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// rustls warns, once per handshake, about the SNI a client sends (wrk and
/// some TLS stacks send an IP address): noise an operator cannot act on, and
/// a line any client can make the gateway write. Its target is turned off
/// unless the filter names a rustls target itself (`info,rustls=debug`).
fn quiet_client_quirks(spec: &str) -> String {
    let names_rustls = spec.split(',').any(|directive| {
        let target = directive
            .split(['=', '['])
            .next()
            .unwrap_or_default()
            .trim();
        target == "rustls" || target.starts_with("rustls::")
    });
    match names_rustls {
        true => spec.to_owned(),
        false => format!("{spec},rustls::msgs::handshake=off"),
    }
}

fn print_routes(config: &Config) {
    println!(
        "{:<24} {:<16} {:<9} {:<16} upstream",
        "prefix", "methods", "auth", "roles"
    );
    for route in config.routes.routes() {
        let methods = match &route.methods {
            None => "*".to_owned(),
            Some(m) => m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        };
        let roles = if route.roles.is_empty() {
            "-".to_owned()
        } else {
            route.roles.join(",")
        };
        let auth = format!("{:?}", route.auth).to_lowercase();
        let upstream = &config.upstreams[route.upstream];
        println!(
            "{:<24} {:<16} {:<9} {:<16} {} ({})",
            route.prefix,
            methods,
            auth,
            roles,
            upstream.name,
            upstream.url()
        );
    }
    if let Some(file) = &config.revocation_file {
        let entries = match config.revocations.len() {
            1 => "1 entry".to_owned(),
            n => format!("{n} entries"),
        };
        println!("revocation list: {} ({entries})", file.display());
    }
    match config.watch {
        Some(every) => println!("reload: on SIGHUP and on file changes (checked every {every:?})"),
        None => println!("reload: on SIGHUP"),
    }
}

fn load_key(
    env: Option<String>,
    file: Option<PathBuf>,
    encoding: SecretEncoding,
    alg: &str,
    kid: Option<String>,
) -> Result<Key, String> {
    let alg = parse_alg(alg)?;
    let (stored, from) = match (env, file) {
        (Some(var), _) => (
            std::env::var(&var)
                .map(String::into_bytes)
                .map_err(|_| format!("environment variable {var} is not set"))?,
            var,
        ),
        (None, Some(path)) => (
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Err("give --secret-env or --secret-file".to_owned()),
    };
    let secret = encoding
        .decode(stored)
        .map_err(|e| format!("{from}: {e}"))?;
    Key::hmac(kid, alg, &secret).map_err(|e| e.to_string())
}

fn parse_encoding(name: &str) -> Result<SecretEncoding, String> {
    SecretEncoding::from_name(name).ok_or_else(|| format!("{name:?} is not one of raw, base64"))
}

fn parse_alg(alg: &str) -> Result<Alg, String> {
    Alg::from_name(alg).ok_or_else(|| {
        let names: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
        format!("--alg {alg:?} is not one of {}", names.join(", "))
    })
}

fn split_claim(claim: &str) -> Result<(&str, &str), String> {
    claim
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("claim {claim:?} is not NAME=VALUE"))
}

fn inspect(token: &str, key: OptionalKeyArgs) -> Result<ExitCode, String> {
    let (header, claims) = token::decode_unverified(token).map_err(|e| e.to_string())?;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    println!("header: {}", pretty(&header));
    println!("claims: {}", pretty(&claims));
    for name in token::duplicate_members(token) {
        println!(
            "warning: {name:?} appears more than once (shown: the last copy); the gateway refuses this token"
        );
    }
    let now = unix_now();
    if let Some(exp) = claims
        .get("exp")
        .and_then(Value::as_f64)
        .map(|e| e.floor() as i64)
    {
        let delta = exp - now;
        if delta > 0 {
            println!("expires: in {delta}s (exp {exp})");
        } else {
            println!("expired: {}s ago (exp {exp})", -delta);
        }
    }
    // With a key set, --alg is only the default for RSA JWKs without one.
    let jwk_alg = match (&key.alg, key.jwks_file.is_some() || key.jwks_url.is_some()) {
        (Some(alg), true) => Some(parse_alg(alg)?),
        _ => None,
    };
    let alg = key.alg.as_deref().unwrap_or("HS256");
    let keys = if let Some(path) = &key.jwks_file {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let parsed = jwks::parse_jwks(&text, None, jwk_alg)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        print_skipped(&parsed);
        KeySet::new(parsed.keys)
    } else if let Some(url) = &key.jwks_url {
        let uri: http::Uri = url
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme_str() == Some("https"))
            .ok_or_else(|| format!("--jwks-url {url:?} is not an https:// URL"))?;
        let roots = match &key.ca_file {
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        let trust = jwks::Trust::new(roots).map_err(|e| format!("--ca-file: {e}"))?;
        let text = runtime(Some(1))?
            .block_on(jwks::fetch_once(&uri, &trust))
            .map_err(|e| format!("{url}: {e}"))?;
        let parsed = jwks::parse_jwks(&text, None, jwk_alg).map_err(|e| format!("{url}: {e}"))?;
        print_skipped(&parsed);
        KeySet::new(parsed.keys)
    } else if let Some(path) = &key.public_key_file {
        let alg = parse_alg(alg)?;
        // One key was named: it answers to the token's kid unless --kid says otherwise.
        let kid = key
            .kid
            .or_else(|| header.get("kid").and_then(Value::as_str).map(str::to_owned));
        KeySet::new(vec![
            Key::from_pem_file(kid, alg, path).map_err(|e| format!("{}: {e}", path.display()))?,
        ])
    } else if key.secret_env.is_some() || key.secret_file.is_some() {
        // Without --kid, the key takes the token's kid: the point is to check
        // this secret, whatever the token calls it.
        let kid = key
            .kid
            .or_else(|| header.get("kid").and_then(Value::as_str).map(str::to_owned));
        KeySet::new(vec![load_key(
            key.secret_env,
            key.secret_file,
            key.secret_encoding,
            alg,
            kid,
        )?])
    } else {
        println!(
            "signature: not checked (give --secret-env, --secret-file, --public-key-file, --jwks-file or --jwks-url)"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let validation = Validation {
        required: Vec::new(),
        ..Validation::default()
    };
    match jwt::verify(token.trim(), &keys, &validation, now) {
        Ok(_) => {
            println!("signature: valid; token accepted");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("verification: failed: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The certificates of a PEM file, for `--ca-file`.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--ca-file: cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca-file: {} holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn print_skipped(parsed: &jwks::ParsedJwks) {
    for skipped in &parsed.skipped {
        println!("skipped: {skipped}");
    }
}

/// A remote key source and what fetching it once gave.
type Fetched<'c> = (&'c jwks::Source, Result<jwks::ParsedJwks, jwks::JwksError>);

/// Fetches every URL and discovery source once, in config order.
fn fetch_remote_sources(config: &Config) -> Result<Vec<Fetched<'_>>, String> {
    let remote: Vec<&jwks::Source> = config.jwks.iter().filter(|s| s.is_remote()).collect();
    if remote.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = runtime(Some(1))?;
    Ok(remote
        .into_iter()
        .filter_map(|source| {
            let loaded = runtime.block_on(source.load_once())?;
            Some((source, loaded))
        })
        .collect())
}

/// `check`: every key source must load as `serve` would load it; prints
/// each one's keys and skipped JWKs, and fails on the first that cannot.
fn check_key_sources(path: &std::path::Path, config: &Config) -> Result<(), String> {
    for source in config.jwks.iter().filter(|s| !s.is_remote()) {
        for skipped in &source.skipped {
            println!("{}: skipped {skipped}", source.name);
        }
    }
    let mut failed = Vec::new();
    for (source, loaded) in fetch_remote_sources(config)? {
        match loaded {
            Ok(parsed) => {
                println!(
                    "{} ({}): {} keys loaded",
                    source.name,
                    source.endpoint(),
                    parsed.keys.len()
                );
                for skipped in &parsed.skipped {
                    println!("{}: skipped {skipped}", source.name);
                }
            }
            Err(err) => failed.push(format!(
                "{}: {} ({}): {err}",
                path.display(),
                source.name,
                source.endpoint()
            )),
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(failed.join("\nerror: ")),
    }
}

/// `explain`: adds the keys of URL and discovery sources, fetched once, to
/// the config's, as a running gateway would hold them. A source that cannot
/// load stays pending, so a token only its keys could decide is explained
/// as the 503 `serve` answers.
fn with_remote_keys(config: &mut Config) -> Result<(), String> {
    let mut keys: Vec<Arc<Key>> = config.keys.iter().cloned().collect();
    let mut pending = 0;
    for (source, loaded) in fetch_remote_sources(config)? {
        match loaded {
            Ok(parsed) => {
                println!(
                    "keys: {} ({}): {} loaded",
                    source.name,
                    source.endpoint(),
                    parsed.keys.len()
                );
                keys.extend(parsed.keys.into_iter().map(Arc::new));
            }
            Err(err) => {
                println!(
                    "keys: {} ({}): not loaded: {err}",
                    source.name,
                    source.endpoint()
                );
                pending += 1;
            }
        }
    }
    config.keys = KeySet::from_shared(keys, pending, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quiet_client_quirks;

    #[test]
    fn client_quirk_warnings_are_off_unless_the_filter_names_a_rustls_target() {
        let off = |spec: &str| format!("{spec},rustls::msgs::handshake=off");
        assert_eq!(quiet_client_quirks("info"), off("info"));
        assert_eq!(quiet_client_quirks("off"), off("off"));
        assert_eq!(
            quiet_client_quirks("warn,access=off"),
            off("warn,access=off")
        );
        assert_eq!(
            quiet_client_quirks("info,tokio_rustls=debug"),
            off("info,tokio_rustls=debug")
        );
        for named in [
            "info,rustls=debug",
            "rustls::msgs=trace",
            "warn, rustls[conn]=debug",
        ] {
            assert_eq!(quiet_client_quirks(named), named);
        }
    }
}
