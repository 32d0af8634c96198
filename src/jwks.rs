//! JSON Web Key Sets (RFC 7517): the live key set, made of static keys
//! plus key sources (JWKS files, JWKS URLs, OpenID Connect discovery),
//! fetched over HTTPS at start-up, refreshed in the background and on an
//! unknown `kid`, swapped in atomically so the request path never takes a
//! lock. Parsing JWKs lives in `jwks/parse.rs`, HTTPS and discovery in
//! `jwks/fetch.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use tokio_rustls::TlsConnector;

use crate::cache::{CacheStats, TokenCache};
use crate::jwt::{self, Alg, JwtError, Provider, Verified};
use crate::keys::{Key, KeySet};
use crate::metrics::{Metrics, ReadyFlag};

mod fetch;
mod parse;

pub use fetch::{Trust, client_config, discovery_url, jwks_uri};
pub use parse::{ParsedJwks, SkipReason, SkippedKey, log_skipped, parse_jwks};

/// Time allowed for one fetch: connect, handshake, response (for a
/// discovery source, both documents).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS: {0}")]
    Json(String),
    /// RFC 7517 §4 does not forbid it, but a set published for verifiers
    /// that holds a private key is a leak: the whole set is refused.
    #[error(
        "key {index} (kid {}) holds a private key (\"d\"); publish only public keys (the whole set is refused)",
        kid.as_deref().unwrap_or("-")
    )]
    PrivateKey { index: usize, kid: Option<String> },
    #[error("no usable signature key in the set{}", list_skipped(skipped))]
    Empty { skipped: Vec<SkippedKey> },
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error(
        "fetch failed: TLS: {0}: the server's certificate is not from a trusted CA; for a private CA, name its certificate with ca_file"
    )]
    UntrustedCertificate(String),
    #[error("discovery: {0}")]
    Discovery(String),
}

fn list_skipped(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let each: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    format!(" (skipped: {})", each.join("; "))
}

/// Where a key source reads its keys, validated from `[[jwt.jwks]]`.
#[derive(Debug, Clone)]
pub enum Location {
    /// Read once at start-up (config load); errors stop start-up.
    File(PathBuf),
    /// A JWKS fetched over HTTPS at start-up and refreshed.
    Url { url: Uri, trust: Trust },
    /// OpenID Connect discovery: `url` is `<issuer>/.well-known/openid-configuration`;
    /// each fetch reads it, checks that it names `issuer` exactly, then
    /// fetches its `jwks_uri` as a [`Location::Url`] would.
    Discovery {
        issuer: String,
        url: Uri,
        trust: Trust,
    },
}

impl Location {
    /// Whether both name the same document, fetched with the same trust.
    fn same(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::File(a), Location::File(b)) => a == b,
            (Location::Url { url: a, trust: ta }, Location::Url { url: b, trust: tb }) => {
                a == b && ta.same_roots(tb)
            }
            (
                Location::Discovery {
                    url: a, trust: ta, ..
                },
                Location::Discovery {
                    url: b, trust: tb, ..
                },
            ) => a == b && ta.same_roots(tb),
            _ => false,
        }
    }
}

/// One key source: a `[[jwt.jwks]]` entry.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it sits in the config (`jwt.jwks[2]`), for messages.
    pub name: String,
    pub location: Location,
    /// Tokens verified with this source's keys must carry this `iss`. A
    /// discovery source's issuer is the one it discovers.
    pub issuer: Option<String>,
    /// The algorithm of RSA JWKs that carry none (RS256 when `None`).
    pub default_alg: Option<Alg>,
    /// Background refresh period. Defaults to 5 minutes.
    pub refresh: Duration,
    /// Least time between two fetches triggered by unknown `kid`s (and
    /// between retries after a failure). Defaults to 30 s.
    pub cooldown: Duration,
    /// The provider whose tokens its keys verify (see `Key::provider`).
    pub provider: usize,
    /// A file source's JWKs skipped when the config read it; each keyring
    /// built from the config logs and counts them.
    pub skipped: Vec<SkippedKey>,
}

impl Source {
    /// What it fetches or reads, for messages: the URL, the discovery
    /// document's URL, or the file.
    pub fn endpoint(&self) -> String {
        match &self.location {
            Location::File(path) => path.display().to_string(),
            Location::Url { url, .. } | Location::Discovery { url, .. } => url.to_string(),
        }
    }

    /// Whether the gateway fetches it (a file is read with the config).
    pub fn is_remote(&self) -> bool {
        !matches!(self.location, Location::File(_))
    }

    /// Fetches the source's JWKS document once; `None` for a file source.
    async fn download(&self, connector: &TlsConnector) -> Option<Result<Bytes, JwksError>> {
        let fetched = match &self.location {
            Location::File(_) => return None,
            Location::Url { url, .. } => {
                tokio::time::timeout(FETCH_TIMEOUT, fetch::get(connector, url)).await
            }
            Location::Discovery { issuer, url, .. } => {
                tokio::time::timeout(FETCH_TIMEOUT, async {
                    let document = fetch::get(connector, url).await?;
                    let jwks_uri = fetch::jwks_uri(&document, issuer)?;
                    fetch::get(connector, &jwks_uri).await
                })
                .await
            }
        };
        Some(fetched.unwrap_or_else(|_| Err(JwksError::Fetch("timed out".to_owned()))))
    }

    /// Fetches and parses a remote source once, as `jwtgate check` and
    /// `explain` do; `None` for a file source. Skipped JWKs are in the result.
    pub async fn load_once(&self) -> Option<Result<ParsedJwks, JwksError>> {
        let connector = match &self.location {
            Location::File(_) => return None,
            Location::Url { trust, .. } | Location::Discovery { trust, .. } => trust.connector(),
        };
        let body = self.download(&connector).await?;
        Some(body.and_then(|body| self.parse(&body)))
    }

    /// The document's keys, bound to the source's issuer and provider.
    fn parse(&self, body: &[u8]) -> Result<ParsedJwks, JwksError> {
        let mut parsed = parse_jwks(body, self.issuer.as_deref(), self.default_alg)?;
        let provider = self.provider;
        parsed.keys = (parsed.keys.into_iter())
            .map(|key| key.for_provider(provider))
            .collect();
        Ok(parsed)
    }
}

/// Logs and counts the JWKs a source skipped.
fn report_skipped(metrics: &Metrics, source: &Source, skipped: &[SkippedKey]) {
    log_skipped(&format!("{} ({})", source.name, source.endpoint()), skipped);
    for skipped in skipped {
        metrics.count_jwks_key_skipped(skipped.reason.label());
    }
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
    /// Why the last fetch failed; `None` after a success or before any.
    last_error: std::sync::Mutex<Option<String>>,
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

    /// Same document, same trusted roots, same issuer binding and default
    /// algorithm: the keys one would load are the keys the other has.
    fn same_source(&self, other: &Remote) -> bool {
        self.source.location.same(&other.source.location)
            && self.source.issuer == other.source.issuer
            && self.source.default_alg == other.source.default_alg
    }

    fn loaded(&self) -> bool {
        self.keys.lock().is_ok_and(|keys| keys.is_some())
    }

    fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error;
        }
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
    /// Where skipped JWKs are counted.
    metrics: Arc<Metrics>,
}

impl Keyring {
    /// `fixed`: static keys and keys from JWKS files. `sources`: every key
    /// source; the remote ones are fetched here, the file ones (which the
    /// config loaded into `fixed`) only have their skipped JWKs reported.
    /// `cache_size`: verified public-key tokens remembered (0: no cache).
    /// `metrics`: where skipped JWKs are counted.
    pub fn new(
        fixed: KeySet,
        sources: &[Source],
        ready: ReadyFlag,
        cache_size: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Keyring> {
        let fixed: Vec<Arc<Key>> = fixed.iter().cloned().collect();
        let mut remotes = Vec::new();
        for source in sources {
            let connector = match &source.location {
                Location::File(_) => {
                    report_skipped(&metrics, source, &source.skipped);
                    continue;
                }
                Location::Url { trust, .. } | Location::Discovery { trust, .. } => {
                    trust.connector()
                }
            };
            remotes.push(Remote {
                source: source.clone(),
                connector,
                keys: std::sync::Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                started: std::sync::Mutex::new(None),
                last_error: std::sync::Mutex::new(None),
            });
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
            metrics,
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
    /// this keyring has too (same URL, trusted roots, issuer and default
    /// algorithm) and that have loaded, so a reload neither waits for nor
    /// depends on the identity provider: a reload that only revokes a token
    /// works while the IdP is down. A source that never loaded hands over
    /// nothing: the new one fetches at once, so a reload can repair it.
    pub fn inherit(&self, previous: &Keyring) {
        for remote in &self.remotes {
            let Some(old) = previous
                .remotes
                .iter()
                .find(|old| old.same_source(remote) && old.loaded())
            else {
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

    /// The sources that have never loaded, each as `name (endpoint): why`.
    pub fn pending(&self) -> Vec<String> {
        self.remotes
            .iter()
            .filter(|remote| !remote.loaded())
            .map(|remote| {
                let why = remote
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|error| error.clone())
                    .unwrap_or_else(|| "no fetch has finished yet".to_owned());
                format!(
                    "{} ({}): {why}",
                    remote.source.name,
                    remote.source.endpoint()
                )
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
        let source = &remote.source;
        let url = source.endpoint();
        let Some(fetched) = source.download(&remote.connector).await else {
            return false;
        };
        let result = fetched.and_then(|body| {
            // The same document again (every refresh, mostly): the key set
            // and its generation stay, and so do cached tokens; its skipped
            // JWKs were reported when it was new.
            let unchanged = remote
                .keys
                .lock()
                .is_ok_and(|slot| slot.as_ref().is_some_and(|(last, _)| *last == body));
            if unchanged {
                return Ok(None);
            }
            let parsed = source.parse(&body)?;
            Ok(Some((body, parsed)))
        });
        match result {
            Ok(None) => {
                tracing::debug!(%url, "JWKS unchanged");
                remote.set_last_error(None);
                true
            }
            Ok(Some((body, parsed))) => {
                report_skipped(&self.metrics, source, &parsed.skipped);
                let Ok(mut slot) = remote.keys.lock() else {
                    return false;
                };
                tracing::info!(%url, keys = parsed.keys.len(), skipped = parsed.skipped.len(), "JWKS loaded");
                *slot = Some((body, parsed.keys.into_iter().map(Arc::new).collect()));
                drop(slot);
                remote.set_last_error(None);
                self.publish();
                true
            }
            Err(err) => {
                // The previous keys keep serving.
                tracing::warn!(source = %source.name, %url, error = %err, "JWKS fetch failed; keeping the previous keys");
                remote.set_last_error(Some(err.to_string()));
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

/// Fetches a JWKS document once (for `jwtgate token inspect --jwks-url`).
pub async fn fetch_once(url: &Uri, trust: &Trust) -> Result<Bytes, JwksError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch::get(&trust.connector(), url))
        .await
        .unwrap_or_else(|_| Err(JwksError::Fetch("timed out".to_owned())))
}
