//! JSON Web Key Sets (RFC 7517): parsing JWKs into verification keys, and
//! the live key set: static keys plus JWKS sources, fetched over HTTPS at
//! start-up, refreshed in the background and on an unknown `kid`, swapped in
//! atomically so the request path never takes a lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cache::{CacheStats, TokenCache};
use crate::jwt::{self, Alg, JwtError, Provider, Verified};
use crate::keys::{Key, KeyError, KeySet};
use crate::metrics::ReadyFlag;

/// Largest JWKS document accepted; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time allowed for one fetch: connect, handshake, response.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS: {0}")]
    Json(String),
    #[error("key {index} (kid {}): {problem}", kid.as_deref().unwrap_or("-"))]
    Key {
        index: usize,
        kid: Option<String>,
        problem: String,
    },
    #[error("no usable signature key in the set")]
    Empty,
    #[error("fetch failed: {0}")]
    Fetch(String),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<RawJwk>,
}

/// The members of a JWK this gateway reads (RFC 7517 §4, RFC 7518 §6,
/// RFC 8037 §2). Others (`x5c`, `x5t`, …) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<String>,
}

/// Parses a JWKS into keys, each bound to `issuer` when given.
///
/// Keys not meant for verifying signatures (`use` other than `sig`,
/// `key_ops` without `verify`, an `alg` that is not a signature algorithm
/// supported here, `kty: oct`, X25519) are skipped: identity providers
/// publish encryption keys in the same set. A signature key that is broken,
/// carries private parts, or whose algorithm cannot be told is an error for
/// the whole set: a half-loaded set would fail in confusing ways later.
///
/// `default_alg` (the source's `alg` setting) names the algorithm of JWKs
/// that carry none; without it, only key types that imply one algorithm
/// (EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) are accepted.
pub fn parse_jwks(
    text: &[u8],
    issuer: Option<&str>,
    default_alg: Option<Alg>,
) -> Result<Vec<Key>, JwksError> {
    let set: RawSet = serde_json::from_slice(text).map_err(|e| JwksError::Json(e.to_string()))?;
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.into_iter().enumerate() {
        let kid = jwk.kid.clone();
        let refuse = |problem: String| JwksError::Key {
            index,
            kid: kid.clone(),
            problem,
        };
        match parse_jwk(jwk, default_alg) {
            Ok(Some(key)) => keys.push(key.for_issuer(issuer.map(str::to_owned))),
            Ok(None) => tracing::debug!(index, ?kid, "JWK skipped: not a signature key"),
            Err(problem) => return Err(refuse(problem)),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::Empty);
    }
    Ok(keys)
}

fn parse_jwk(jwk: RawJwk, default_alg: Option<Alg>) -> Result<Option<Key>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Ok(None);
    }
    if jwk.d.is_some() {
        return Err("holds a private key (\"d\"); publish only public keys".to_owned());
    }
    let alg = match jwk.alg.as_deref() {
        Some(name) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            // RSA-OAEP, ECDH-ES and the like: not for signatures.
            None => return Ok(None),
        },
        None => None,
    };
    let b64 = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
        let value = value.as_deref().ok_or(format!("missing \"{name}\""))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let kid = jwk.kid.clone();
    let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let alg = alg.or(default_alg).ok_or(
                "RSA key without \"alg\" could be RS256..PS512; set alg on the JWK or on the [[jwt.jwks]] source",
            )?;
            Key::rsa(kid, alg, &b64("n", &jwk.n)?, &b64("e", &jwk.e)?)
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let implied = if crv == "P-256" {
                Alg::ES256
            } else {
                Alg::ES384
            };
            let alg = alg.unwrap_or(implied);
            if alg != implied {
                return Err(format!("alg {alg} does not match curve {crv}"));
            }
            Key::ec(kid, alg, &b64("x", &jwk.x)?, &b64("y", &jwk.y)?)
        }
        ("EC", crv) => return Err(format!("EC curve {crv:?} is not supported")),
        ("OKP", Some("Ed25519")) => {
            let alg = alg.unwrap_or(Alg::EdDSA);
            Key::ed25519(kid, alg, &b64("x", &jwk.x)?)
        }
        // X25519/X448 are key-agreement keys.
        ("OKP", Some("X25519" | "X448")) => return Ok(None),
        ("OKP", crv) => return Err(format!("OKP curve {crv:?} is not supported")),
        // A shared secret has no business in a key set fetched or stored
        // beside public keys; configure it as a [[jwt.keys]] secret.
        ("oct", _) => return Ok(None),
        (kty, _) => return Err(format!("kty {kty:?} is not supported")),
    };
    key.map(Some).map_err(|err: KeyError| err.to_string())
}

/// Where a JWKS source reads its keys, validated from `[[jwt.jwks]]`.
#[derive(Debug, Clone)]
pub enum Location {
    /// Read once at start-up (config load); errors stop start-up.
    File(PathBuf),
    /// Fetched over HTTPS at start-up and refreshed.
    Url {
        url: Uri,
        /// Trusts `ca_file`'s certificates, else the Mozilla roots.
        tls: Arc<ClientConfig>,
    },
}

/// One `[[jwt.jwks]]` entry.
#[derive(Debug, Clone)]
pub struct Source {
    pub location: Location,
    pub issuer: Option<String>,
    pub default_alg: Option<Alg>,
    /// Background refresh period. Defaults to 5 minutes.
    pub refresh: Duration,
    /// Least time between two fetches triggered by unknown `kid`s (and
    /// between retries after a failure). Defaults to 30 s.
    pub cooldown: Duration,
    /// The provider whose tokens its keys verify (see `Key::provider`).
    pub provider: usize,
}

/// State of one remote source.
struct Remote {
    source: Source,
    connector: TlsConnector,
    /// The document of its last successful fetch and its keys; `None`
    /// until the first.
    keys: std::sync::Mutex<Option<(Bytes, Vec<Arc<Key>>)>>,
    /// Single flight: held by whoever is fetching.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started; readable while one runs.
    started: std::sync::Mutex<Option<Instant>>,
}

impl Remote {
    /// When the last fetch started (`None`: never).
    fn last_fetch(&self) -> Option<Instant> {
        self.started.lock().ok().and_then(|at| *at)
    }

    fn set_last_fetch(&self, at: Option<Instant>) {
        if let Ok(mut started) = self.started.lock() {
            *started = at;
        }
    }

    fn same_source(&self, other: &Remote) -> bool {
        let url = |r: &Remote| match &r.source.location {
            Location::Url { url, .. } => Some(url.clone()),
            Location::File(_) => None,
        };
        url(self) == url(other)
            && self.source.issuer == other.source.issuer
            && self.source.default_alg == other.source.default_alg
    }
}

/// The live key set and everything that keeps it fresh.
pub struct Keyring {
    current: ArcSwap<KeySet>,
    fixed: Vec<Arc<Key>>,
    remotes: Vec<Remote>,
    generation: AtomicU64,
    /// Serialises rebuilding `current` from the parts.
    rebuild: std::sync::Mutex<()>,
    loaded_all: AtomicBool,
    /// The `/readyz` check this keyring passes once every source loaded.
    ready: ReadyFlag,
    cache: TokenCache,
    /// Dropped with the keyring: its refresh tasks end at once instead of
    /// sleeping out their period (a reload replaces the keyring).
    alive: tokio::sync::watch::Sender<()>,
}

impl Keyring {
    /// `fixed`: static keys and keys from JWKS files. `sources`: the URL
    /// sources (file sources are ignored here; the config loaded them).
    /// `cache_size`: verified public-key tokens remembered (0: no cache).
    pub fn new(
        fixed: KeySet,
        sources: &[Source],
        ready: ReadyFlag,
        cache_size: usize,
    ) -> Arc<Keyring> {
        let fixed: Vec<Arc<Key>> = fixed.iter().cloned().collect();
        let mut remotes = Vec::new();
        for source in sources {
            if let Location::Url { tls, .. } = &source.location {
                remotes.push(Remote {
                    source: source.clone(),
                    connector: TlsConnector::from(tls.clone()),
                    keys: std::sync::Mutex::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                    started: std::sync::Mutex::new(None),
                });
            }
        }
        let pending = remotes.len();
        ready.set(pending == 0);
        let ring = Keyring {
            ready,
            cache: TokenCache::new(cache_size),
            current: ArcSwap::from_pointee(KeySet::from_shared(fixed.clone(), pending, 0)),
            fixed,
            loaded_all: AtomicBool::new(pending == 0),
            remotes,
            generation: AtomicU64::new(0),
            rebuild: std::sync::Mutex::new(()),
            alive: tokio::sync::watch::channel(()).0,
        };
        Arc::new(ring)
    }

    /// Starts one background task per URL source: first load, then refresh
    /// every `refresh` (retrying every `cooldown` while failing). Does
    /// nothing outside a Tokio runtime or without URL sources.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (index, remote) in self.remotes.iter().enumerate() {
            // A source inherited from the config before a reload is due
            // when its refresh period since the last fetch is over.
            let mut wait = remote.last_fetch().map_or(Duration::ZERO, |at| {
                remote.source.refresh.saturating_sub(at.elapsed())
            });
            let ring = Arc::downgrade(self);
            let mut alive = self.alive.subscribe();
            runtime.spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        // The keyring is gone: so is this task's work.
                        _ = alive.changed() => return,
                    }
                    // Holding only a weak reference lets the keyring (and
                    // this task) go away with the gateway.
                    let Some(ring) = ring.upgrade() else { return };
                    let ok = ring.fetch(index, Duration::ZERO).await;
                    let remote = &ring.remotes[index];
                    wait = if ok {
                        remote.source.refresh
                    } else {
                        remote.source.cooldown.max(Duration::from_millis(200))
                    };
                }
            });
        }
    }

    /// Takes over the keys (and fetch times) of `previous`'s sources that
    /// this keyring has too (same URL, issuer and default algorithm), so a
    /// reload neither waits for nor depends on the identity provider: a
    /// reload that only revokes a token works while the IdP is down.
    pub fn inherit(&self, previous: &Keyring) {
        for remote in &self.remotes {
            let Some(old) = previous.remotes.iter().find(|old| old.same_source(remote)) else {
                continue;
            };
            let keys = old.keys.lock().ok().and_then(|keys| keys.clone());
            if let (Some(keys), Ok(mut slot)) = (keys, remote.keys.lock()) {
                *slot = Some(keys);
            }
            remote.set_last_fetch(old.last_fetch());
        }
        self.publish();
    }

    /// The URLs of sources that have never loaded.
    pub fn pending_urls(&self) -> Vec<String> {
        self.remotes
            .iter()
            .filter(|r| r.keys.lock().map_or(true, |k| k.is_none()))
            .filter_map(|r| match &r.source.location {
                Location::Url { url, .. } => Some(url.to_string()),
                Location::File(_) => None,
            })
            .collect()
    }

    /// The keys in force now. Lock-free: one atomic load.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// The flag set once every key source has loaded.
    pub fn ready_flag(&self) -> &ReadyFlag {
        &self.ready
    }

    /// True once every key source has loaded at least once (`/readyz`).
    pub fn ready(&self) -> bool {
        self.loaded_all.load(Ordering::Acquire)
    }

    /// Fetches source `index` unless another fetch is running (then waits
    /// for it) or one finished less than `min_gap` ago. Returns whether the
    /// source now holds keys from a fetch that succeeded.
    async fn fetch(&self, index: usize, min_gap: Duration) -> bool {
        let remote = &self.remotes[index];
        let _flight = remote.fetching.lock().await;
        if let Some(at) = remote.last_fetch()
            && at.elapsed() < min_gap
        {
            return false;
        }
        remote.set_last_fetch(Some(Instant::now()));
        let url = match &remote.source.location {
            Location::Url { url, .. } => url.clone(),
            Location::File(_) => return false,
        };
        let result = tokio::time::timeout(FETCH_TIMEOUT, get(&remote.connector, &url))
            .await
            .unwrap_or_else(|_| Err(JwksError::Fetch("timed out".to_owned())))
            .and_then(|body| {
                let keys = parse_jwks(
                    &body,
                    remote.source.issuer.as_deref(),
                    remote.source.default_alg,
                )?;
                let provider = remote.source.provider;
                let keys = keys.into_iter().map(|key| key.for_provider(provider));
                Ok((body, keys.collect::<Vec<_>>()))
            });
        match result {
            Ok((body, keys)) => {
                let Ok(mut slot) = remote.keys.lock() else {
                    return false;
                };
                // The same document again (every refresh, mostly): the key
                // set and its generation stay, and so do cached tokens.
                if slot.as_ref().is_some_and(|(last, _)| *last == body) {
                    tracing::debug!(%url, "JWKS unchanged");
                    return true;
                }
                tracing::info!(%url, keys = keys.len(), "JWKS loaded");
                *slot = Some((body, keys.into_iter().map(Arc::new).collect()));
                drop(slot);
                self.publish();
                true
            }
            Err(err) => {
                // The previous keys keep serving.
                tracing::warn!(%url, error = %err, "JWKS refresh failed; keeping the previous keys");
                false
            }
        }
    }

    /// Rebuilds the key set from the static keys and every source's last
    /// keys, and swaps it in.
    fn publish(&self) {
        let Ok(_guard) = self.rebuild.lock() else {
            return;
        };
        let mut keys = self.fixed.clone();
        let mut pending = 0;
        for remote in &self.remotes {
            match remote.keys.lock().ok().and_then(|k| k.clone()) {
                Some((_, loaded)) => keys.extend(loaded),
                None => pending += 1,
            }
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.current
            .store(Arc::new(KeySet::from_shared(keys, pending, generation)));
        if pending == 0 {
            self.loaded_all.store(true, Ordering::Release);
            self.ready.set(true);
        }
    }

    /// Verifies a token against the current keys. On an unknown `kid`,
    /// refreshes the URL sources (single flight, at most once per cooldown)
    /// and tries once more: an identity provider's new key is accepted
    /// without a restart.
    /// `alg_seen` receives the token's algorithm once its header named one.
    pub async fn verify(
        &self,
        token: &str,
        providers: &[Provider],
        now: i64,
        alg_seen: &mut Option<Alg>,
    ) -> Result<Verified, JwtError> {
        let (public, generation) = {
            let keys = self.current();
            (keys.has_public_keys(), keys.generation())
        };
        // Only worth a hash and a lock when a public key could be involved;
        // an HMAC-only deployment never touches the cache.
        if !self.cache.enabled() || !public {
            return self.verify_uncached(token, providers, now, alg_seen).await;
        }
        let cache_key = TokenCache::key(token);
        if let Some(verified) = self.cache.get(&cache_key, generation, now) {
            *alg_seen = Some(verified.alg);
            return Ok(verified);
        }
        let verified = self.verify_uncached(token, providers, now, alg_seen).await;
        if alg_seen.is_some_and(|alg| !alg.is_hmac()) {
            self.cache.count_miss();
        }
        let verified = verified?;
        if let (false, Some(exp)) = (verified.alg.is_hmac(), verified.exp) {
            // The verifier refuses from exp + leeway on; so does the cache.
            let leeway = (providers.get(verified.provider)).map_or(0, |p| p.validation.leeway);
            let dies_at = exp.saturating_add(leeway);
            // Keyed to the generation seen before verifying: a refresh
            // meanwhile makes the entry dead on arrival, which is safe.
            self.cache
                .insert(cache_key, verified.clone(), dies_at, generation, now);
        }
        Ok(verified)
    }

    /// Whether the verified-token cache is on and could ever be used: a
    /// public key is configured or may come from a JWKS URL.
    pub fn caches(&self) -> bool {
        self.cache.enabled()
            && (!self.remotes.is_empty() || self.fixed.iter().any(|key| !key.alg.is_hmac()))
    }

    /// Hits and misses of the verified-token cache, for `/metrics`.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    async fn verify_uncached(
        &self,
        token: &str,
        providers: &[Provider],
        now: i64,
        alg_seen: &mut Option<Alg>,
    ) -> Result<Verified, JwtError> {
        let first = jwt::verify_among(token, &self.current(), providers, now, alg_seen);
        if !matches!(first, Err(JwtError::UnknownKid { .. })) || self.remotes.is_empty() {
            return first;
        }
        let before = self.current().generation();
        for index in 0..self.remotes.len() {
            let cooldown = self.remotes[index].source.cooldown;
            self.fetch(index, cooldown).await;
        }
        if self.current().generation() == before {
            return first;
        }
        jwt::verify_among(token, &self.current(), providers, now, &mut None)
    }
}

/// Fetches a JWKS document once, trusting the Mozilla roots (for
/// `jwtgate token inspect --jwks-url`).
pub async fn fetch_once(url: &Uri) -> Result<Bytes, JwksError> {
    let tls = client_config(None).map_err(JwksError::Fetch)?;
    tokio::time::timeout(FETCH_TIMEOUT, get(&TlsConnector::from(tls), url))
        .await
        .unwrap_or_else(|_| Err(JwksError::Fetch("timed out".to_owned())))
}

/// A TLS client config for fetching a JWKS, with ring as the provider,
/// trusting `roots`, or when `None` the Mozilla roots compiled in
/// (webpki-roots): the same on every host, whatever its CA bundle.
pub fn client_config(
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Some(roots) => {
            for root in roots {
                store.add(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// GET `url` over HTTPS; the body of a 200 answer, at most 1 MiB.
async fn get(connector: &TlsConnector, url: &Uri) -> Result<Bytes, JwksError> {
    let fail = |what: &str, err: &dyn std::fmt::Display| JwksError::Fetch(format!("{what}: {err}"));
    let host = url
        .host()
        .ok_or_else(|| JwksError::Fetch("URL has no host".to_owned()))?;
    // An IPv6 literal is bracketed in a URL but not in a server name.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| fail("connect", &e))?;
    let name = ServerName::try_from(bare_host.to_owned()).map_err(|e| fail("server name", &e))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| fail("TLS", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail("HTTP", &e))?;
    tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let authority = url.authority().map_or(host, |a| a.as_str());
    let request = Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail("HTTP", &e))?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Fetch(format!("status {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| fail("body", &e))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A3: &str = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

    fn parse(keys: &str, default_alg: Option<Alg>) -> Result<Vec<Key>, JwksError> {
        parse_jwks(
            format!(r#"{{"keys":[{keys}]}}"#).as_bytes(),
            None,
            default_alg,
        )
    }

    #[test]
    fn ec_jwk_without_alg_takes_the_algorithm_its_curve_implies() {
        let keys = parse(&format!(r#"{{"kid":"a",{A3}}}"#), None).unwrap();
        assert_eq!(keys[0].alg, Alg::ES256);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
    }

    #[test]
    fn rsa_jwk_without_alg_is_refused_unless_the_source_names_one() {
        let jwk = format!(r#"{{"kty":"RSA","kid":"r","n":"{A2_N}","e":"AQAB"}}"#);
        assert!(matches!(
            parse(&jwk, None),
            Err(JwksError::Key { index: 0, .. })
        ));
        assert_eq!(parse(&jwk, Some(Alg::PS256)).unwrap()[0].alg, Alg::PS256);
    }

    #[test]
    fn encryption_keys_are_skipped_and_signature_keys_kept() {
        let jwks = format!(
            r#"{{"use":"enc",{A3}}},{{"key_ops":["encrypt"],{A3}}},{{"alg":"RSA-OAEP","kty":"RSA","n":"{A2_N}","e":"AQAB"}},{{"kty":"oct","k":"c2VjcmV0"}},{{"use":"sig","alg":"ES256",{A3}}}"#
        );
        let keys = parse(&jwks, None).unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn jwk_whose_alg_contradicts_its_key_type_is_refused() {
        assert!(parse(&format!(r#"{{"alg":"ES384",{A3}}}"#), None).is_err());
        assert!(parse(&format!(r#"{{"alg":"RS256",{A3}}}"#), None).is_err());
        assert!(parse(&format!(r#"{{"alg":"HS256",{A3}}}"#), None).is_err());
    }

    #[test]
    fn jwk_with_private_parts_is_refused() {
        let jwk = format!(r#"{{"d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",{A3}}}"#);
        assert!(parse(&jwk, None).is_err());
    }

    #[test]
    fn set_without_any_signature_key_is_an_error() {
        assert!(matches!(parse("", None), Err(JwksError::Empty)));
        assert!(matches!(
            parse_jwks(b"[1,2]", None, None),
            Err(JwksError::Json(_))
        ));
    }

    #[test]
    fn short_rsa_jwk_is_refused() {
        let short = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let jwk = format!(r#"{{"kty":"RSA","alg":"RS256","n":"{short}","e":"AQAB"}}"#);
        let err = parse(&jwk, None).unwrap_err().to_string();
        assert!(err.contains("1024 bits"), "{err}");
    }
}
