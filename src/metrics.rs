//! Counters, gauges and latency histograms, rendered in the Prometheus text
//! exposition format (version 0.0.4).
//!
//! Recording is on every request's path, so it must not cost measurably:
//! every series lives in an array allocated once at start-up and indexed by
//! a closed set (algorithm, outcome, reason, route, status code, upstream);
//! an observation is one or two relaxed atomic additions, with no lock and
//! no allocation. Only rendering (a scrape) allocates.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::jwt::Alg;

/// Upper bounds (nanoseconds) of the verification histogram. HMAC verification
/// of a typical token takes well under a microsecond and public-key algorithms
/// tens of microseconds to a millisecond, so the buckets are fine below 1 µs
/// and coarser above.
pub const VERIFY_BOUNDS_NS: &[u64] = &[
    100, 150, 200, 250, 300, 400, 500, 750, // sub-microsecond
    1_000, 1_500, 2_000, 3_000, 5_000, 7_500, // microseconds
    10_000, 25_000, 50_000, 100_000, 250_000, 500_000, // tens to hundreds of µs
    1_000_000, 2_500_000, 5_000_000, 10_000_000, // milliseconds
];

/// Upper bounds (nanoseconds) of the upstream histogram: a loopback
/// upstream answers in tens of microseconds, a slow one in seconds.
pub const UPSTREAM_BOUNDS_NS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// A cumulative histogram over fixed bounds. `observe` is two relaxed atomic
/// additions after a binary search of a few dozen bounds.
pub struct Histogram {
    bounds: &'static [u64],
    /// One count per bound plus the overflow (`+Inf`) bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        // Saturates after 584 years, which no request lasts.
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // Prometheus buckets are "less than or equal": the first bound >= ns.
        let bucket = self.bounds.partition_point(|&bound| bound < ns);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Appends `name_bucket`, `name_sum` and `name_count` lines. `labels` is
    /// `""` or `k="v",…` without braces.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let _ = match self.bounds.get(i) {
                Some(&bound) => writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                    seconds(bound)
                ),
                None => writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        let sum = seconds(self.sum_ns.load(Ordering::Relaxed));
        let braces = |labels: &str| match labels {
            "" => String::new(),
            l => format!("{{{l}}}"),
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        // The count is the +Inf bucket, so a scrape never sees them disagree.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// Nanoseconds as a decimal number of seconds, exactly (no float rounding):
/// `250` → `0.00000025`, `1_500_000_000` → `1.5`.
fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// How a verification ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Rejected,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Accepted, Outcome::Rejected];

    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Every reason `jwtgate_auth_failures_total` can carry; a closed set so the
/// counters are a fixed array. `AuthError::reason` and `JwtError::reason`
/// return these names; a name not listed is counted as `other` (a unit test
/// keeps the lists in step).
pub const AUTH_FAILURE_REASONS: &[&str] = &[
    "missing",
    "invalid_request",
    "malformed",
    "alg_not_allowed",
    "crit",
    "unknown_kid",
    "keys_unavailable",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "bad_typ",
    "wrong_provider",
    "invalid_claims",
    "revoked",
    "forbidden_role",
    "forbidden_claim",
    "other",
];

/// Every reason `jwtgate_jwks_keys_skipped_total` can carry: the labels
/// of `jwks::SkipReason` (a unit test keeps the lists in step); a name not
/// listed counts as `other`.
pub const JWKS_SKIP_REASONS: &[&str] = &[
    "unsupported_kty",
    "unsupported_curve",
    "unsupported_alg",
    "no_alg",
    "alg_mismatch",
    "invalid_key",
    "other",
];

/// Label of requests that matched no route (bad path, 404).
const UNMATCHED: &str = "unmatched";

/// Status codes 100–599 each have a counter; anything else counts as 599's
/// neighbour slot `other` (hyper does not produce them).
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500;

/// All of the gateway's metrics. One per process: a reloaded config
/// records into the same counters (see [`Metrics::series`]).
pub struct Metrics {
    /// `[alg index][outcome]`; the last alg index is `unknown` (the token was
    /// refused before its algorithm was known).
    verify: Box<[[Histogram; 2]]>,
    auth_failures: Box<[AtomicU64]>,
    /// Per-route and per-upstream series by label, in order of first use.
    /// Only configs (start-up, reload) and scrapes take the lock.
    labelled: Mutex<Labelled>,
    in_flight: AtomicI64,
    connections: AtomicI64,
    connections_total: AtomicU64,
    /// `[succeeded, failed]` config reloads.
    reloads: [AtomicU64; 2],
    /// Unix time of the config in force (start-up or last good reload).
    config_loaded: AtomicI64,
    /// Reads the verified-token cache's counters at scrape time.
    verified_cache: Mutex<Option<Box<CacheReader>>>,
    /// Cache hits and misses of the caches that reloads replaced.
    retired_cache: [AtomicU64; 2],
    /// JWKs skipped from key sets put in force, by [`JWKS_SKIP_REASONS`].
    jwks_skipped: Box<[AtomicU64]>,
}

type CacheReader = dyn Fn() -> crate::cache::CacheStats + Send + Sync;

/// One request counter per status code.
pub struct StatusCounts([AtomicU64; STATUS_SLOTS]);

#[derive(Default)]
struct Labelled {
    routes: Vec<(String, Arc<StatusCounts>)>,
    upstreams: Vec<(String, Arc<Histogram>)>,
    /// By (upstream, endpoint address).
    endpoints: Vec<(String, String, Arc<EndpointStats>)>,
}

/// One upstream endpoint's series, kept across reloads and re-resolutions
/// by upstream name and address.
pub struct EndpointStats {
    /// Requests sent to it (retries included).
    pub requests: AtomicU64,
    /// Of those, failed: no response, or a 5xx one.
    pub failures: AtomicU64,
    /// Times it was taken out of rotation by failures.
    pub ejections: AtomicU64,
    /// Whether it is in rotation, as its health last saw it. Reported only
    /// while an upstream of the config in force has the endpoint.
    pub healthy: AtomicBool,
}

impl Labelled {
    fn endpoint(&mut self, upstream: &str, endpoint: &str) -> Arc<EndpointStats> {
        let found = self
            .endpoints
            .iter()
            .find(|(u, e, _)| u == upstream && e == endpoint);
        if let Some((_, _, stats)) = found {
            return stats.clone();
        }
        let stats = Arc::new(EndpointStats {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        });
        self.endpoints
            .push((upstream.to_owned(), endpoint.to_owned(), stats.clone()));
        stats
    }

    fn route(&mut self, label: &str) -> Arc<StatusCounts> {
        if let Some((_, counts)) = self.routes.iter().find(|(l, _)| l == label) {
            return counts.clone();
        }
        let counts = Arc::new(StatusCounts(std::array::from_fn(|_| AtomicU64::new(0))));
        self.routes.push((label.to_owned(), counts.clone()));
        counts
    }

    fn upstream(&mut self, name: &str) -> Arc<Histogram> {
        if let Some((_, h)) = self.upstreams.iter().find(|(n, _)| n == name) {
            return h.clone();
        }
        let h = Arc::new(Histogram::new(UPSTREAM_BOUNDS_NS));
        self.upstreams.push((name.to_owned(), h.clone()));
        h
    }
}

/// The per-route and per-upstream series one config records into, indexed
/// like its route table and upstream list: no lookup by name per request.
pub struct Series {
    routes: Vec<Arc<StatusCounts>>,
    unmatched: Arc<StatusCounts>,
    upstreams: Vec<Arc<Histogram>>,
}

impl Series {
    /// One answered request; `route` is its index in the route table, `None`
    /// when no route matched.
    pub fn count_request(&self, route: Option<usize>, status: u16) {
        let counts = route
            .and_then(|r| self.routes.get(r))
            .unwrap_or(&self.unmatched);
        let code = usize::from(status.saturating_sub(STATUS_MIN)).min(STATUS_SLOTS - 1);
        if let Some(counter) = counts.0.get(code) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Time from sending a request upstream to its response headers.
    pub fn observe_upstream(&self, upstream: usize, elapsed: Duration) {
        if let Some(h) = self.upstreams.get(upstream) {
            h.observe(elapsed);
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            verify: (0..=Alg::ALL.len())
                .map(|_| {
                    [
                        Histogram::new(VERIFY_BOUNDS_NS),
                        Histogram::new(VERIFY_BOUNDS_NS),
                    ]
                })
                .collect(),
            auth_failures: AUTH_FAILURE_REASONS
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            labelled: Mutex::default(),
            in_flight: AtomicI64::new(0),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            config_loaded: AtomicI64::new(0),
            verified_cache: Mutex::default(),
            retired_cache: [AtomicU64::new(0), AtomicU64::new(0)],
            jwks_skipped: JWKS_SKIP_REASONS
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Metrics {
    /// The series of one endpoint of `upstream` (its address as label).
    pub fn endpoint(&self, upstream: &str, endpoint: &str) -> Arc<EndpointStats> {
        let mut labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        labelled.endpoint(upstream, endpoint)
    }

    /// The series for a config's routes (each labelled by its prefix, in
    /// route-table order; routes sharing a prefix share a series) and
    /// upstreams (by name, in config order). A label an earlier config
    /// already had keeps its counts, so a reload does not reset them.
    pub fn series(&self, routes: &[String], upstreams: &[String]) -> Series {
        let mut labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        Series {
            routes: routes.iter().map(|label| labelled.route(label)).collect(),
            unmatched: labelled.route(UNMATCHED),
            upstreams: upstreams
                .iter()
                .map(|name| labelled.upstream(name))
                .collect(),
        }
    }

    /// One config reload attempt; `loaded_at` (Unix seconds) when it succeeded.
    pub fn count_reload(&self, loaded_at: Option<i64>) {
        self.reloads[usize::from(loaded_at.is_none())].fetch_add(1, Ordering::Relaxed);
        if let Some(at) = loaded_at {
            self.config_loaded.store(at, Ordering::Relaxed);
        }
    }

    /// Records when the config in force was loaded (Unix seconds).
    pub fn config_loaded(&self, at: i64) {
        self.config_loaded.store(at, Ordering::Relaxed);
    }

    /// Config reloads so far: `(succeeded, failed)`.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    /// One token verification: `alg` is `None` when the token was refused
    /// before its header named a supported algorithm.
    pub fn observe_verify(&self, alg: Option<Alg>, outcome: Outcome, elapsed: Duration) {
        let alg = alg
            .and_then(|alg| Alg::ALL.iter().position(|a| *a == alg))
            .unwrap_or(Alg::ALL.len());
        let outcome = match outcome {
            Outcome::Accepted => 0,
            Outcome::Rejected => 1,
        };
        if let Some(h) = self.verify.get(alg).and_then(|pair| pair.get(outcome)) {
            h.observe(elapsed);
        }
    }

    /// One refused request, by a reason from [`AUTH_FAILURE_REASONS`].
    pub fn count_auth_failure(&self, reason: &str) {
        // Failures are the cold path; a dozen string comparisons are noise.
        let i = AUTH_FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(AUTH_FAILURE_REASONS.len() - 1);
        if let Some(counter) = self.auth_failures.get(i) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One JWK skipped from a key set, by a reason from [`JWKS_SKIP_REASONS`].
    pub fn count_jwks_key_skipped(&self, reason: &str) {
        let i = JWKS_SKIP_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(JWKS_SKIP_REASONS.len() - 1);
        if let Some(counter) = self.jwks_skipped.get(i) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// JWKs skipped so far for `reason`.
    pub fn jwks_keys_skipped(&self, reason: &str) -> u64 {
        JWKS_SKIP_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.jwks_skipped.get(i))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Counts a request as in flight until the guard is dropped (also when
    /// the client goes away and the request future is dropped mid-way).
    pub fn request_started(self: &Arc<Self>) -> Gauge {
        Gauge::enter(self.clone(), Which::InFlight)
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> Gauge {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        Gauge::enter(self.clone(), Which::Connections)
    }

    /// Verifications recorded for `alg` (`None`: unknown) and `outcome`.
    pub fn verify_count(&self, alg: Option<Alg>, outcome: Outcome) -> u64 {
        let alg = alg
            .and_then(|alg| Alg::ALL.iter().position(|a| *a == alg))
            .unwrap_or(Alg::ALL.len());
        let outcome = usize::from(outcome == Outcome::Rejected);
        self.verify
            .get(alg)
            .and_then(|pair| pair.get(outcome))
            .map_or(0, Histogram::count)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let alg_label = |i: usize| Alg::ALL.get(i).map_or("unknown", |a| a.name());

        header(
            &mut out,
            "jwtgate_jwt_verify_seconds",
            "histogram",
            "Time to verify a request's token, from extracting it to a verified identity.",
        );
        for (i, pair) in self.verify.iter().enumerate() {
            for (outcome, h) in Outcome::ALL.iter().zip(pair) {
                let labels = format!("alg=\"{}\",outcome=\"{}\"", alg_label(i), outcome.label());
                h.render(&mut out, "jwtgate_jwt_verify_seconds", &labels);
            }
        }

        header(
            &mut out,
            "jwtgate_requests_total",
            "counter",
            "Requests answered, by route prefix and status code.",
        );
        let labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        for (label, counts) in &labelled.routes {
            let route = escape(label);
            for (code, counter) in counts.0.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let status = usize::from(STATUS_MIN) + code;
                    let _ = writeln!(
                        out,
                        "jwtgate_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }

        header(
            &mut out,
            "jwtgate_auth_failures_total",
            "counter",
            "Requests refused by authentication or authorisation, by reason.",
        );
        for (reason, counter) in AUTH_FAILURE_REASONS.iter().zip(self.auth_failures.iter()) {
            let n = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jwtgate_auth_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }

        header(
            &mut out,
            "jwtgate_upstream_seconds",
            "histogram",
            "Time from forwarding a request to the upstream's response headers.",
        );
        for (name, h) in &labelled.upstreams {
            let labels = format!("upstream=\"{}\"", escape(name));
            h.render(&mut out, "jwtgate_upstream_seconds", &labels);
        }
        render_endpoints(&mut out, &labelled.endpoints);
        drop(labelled);

        scalar(
            &mut out,
            "jwtgate_requests_in_flight",
            "gauge",
            "Requests being handled now.",
            self.in_flight.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "jwtgate_connections_open",
            "gauge",
            "Client connections open now (TLS handshake included).",
            self.connections.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "jwtgate_connections_total",
            "counter",
            "Client connections accepted.",
            self.connections_total.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "jwtgate_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP or a changed file), by result.",
        );
        let (ok, failed) = self.reload_counts();
        let _ = writeln!(
            out,
            "jwtgate_config_reloads_total{{result=\"success\"}} {ok}"
        );
        let _ = writeln!(
            out,
            "jwtgate_config_reloads_total{{result=\"failure\"}} {failed}"
        );
        scalar(
            &mut out,
            "jwtgate_config_loaded_timestamp_seconds",
            "gauge",
            "Unix time the config in force was loaded.",
            self.config_loaded.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "jwtgate_jwks_keys_skipped_total",
            "counter",
            "JWKs left out of a key set put in force (unusable here; the set's other keys serve), by reason.",
        );
        for (reason, counter) in JWKS_SKIP_REASONS.iter().zip(self.jwks_skipped.iter()) {
            let n = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "jwtgate_jwks_keys_skipped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let reader = self
            .verified_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = reader.as_ref() {
            let mut stats = stats();
            stats.hits += self.retired_cache[0].load(Ordering::Relaxed);
            stats.misses += self.retired_cache[1].load(Ordering::Relaxed);
            header(
                &mut out,
                "jwtgate_verified_cache_lookups_total",
                "counter",
                "Verified-token cache lookups (public-key tokens), by result.",
            );
            let _ = writeln!(
                out,
                "jwtgate_verified_cache_lookups_total{{result=\"hit\"}} {}",
                stats.hits
            );
            let _ = writeln!(
                out,
                "jwtgate_verified_cache_lookups_total{{result=\"miss\"}} {}",
                stats.misses
            );
            header(
                &mut out,
                "jwtgate_verified_cache_entries",
                "gauge",
                "Tokens in the verified-token cache.",
            );
            let _ = writeln!(out, "jwtgate_verified_cache_entries {}", stats.entries);
        }
        out
    }

    /// Makes `/metrics` report the verified-token cache, read by `stats`.
    /// A reload replaces the cache: the old one's lookups stay counted.
    pub fn report_verified_cache(
        &self,
        stats: impl Fn() -> crate::cache::CacheStats + Send + Sync + 'static,
    ) {
        let mut reader = self
            .verified_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = reader.replace(Box::new(stats)) {
            self.retire_cache(&*old);
        }
    }

    /// Stops reporting the verified-token cache (a reload to a config that
    /// cannot use one): its series go, and its lookups stay counted for a
    /// cache reported later, so the counters never go back.
    pub fn stop_reporting_verified_cache(&self) {
        let mut reader = self
            .verified_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = reader.take() {
            self.retire_cache(&*old);
        }
    }

    fn retire_cache(&self, stats: &CacheReader) {
        let old = stats();
        self.retired_cache[0].fetch_add(old.hits, Ordering::Relaxed);
        self.retired_cache[1].fetch_add(old.misses, Ordering::Relaxed);
    }
}

fn render_endpoints(out: &mut String, endpoints: &[(String, String, Arc<EndpointStats>)]) {
    type Read = fn(&EndpointStats) -> u64;
    let series: [(&str, &str, &str, Read); 4] = [
        (
            "jwtgate_upstream_endpoint_healthy",
            "gauge",
            "1 while the endpoint is in rotation, 0 while ejected or failing its checks.",
            |s| u64::from(s.healthy.load(Ordering::Relaxed)),
        ),
        (
            "jwtgate_upstream_endpoint_requests_total",
            "counter",
            "Requests sent to the endpoint, retries included.",
            |s| s.requests.load(Ordering::Relaxed),
        ),
        (
            "jwtgate_upstream_endpoint_failures_total",
            "counter",
            "Requests to the endpoint that got no response or a 5xx one.",
            |s| s.failures.load(Ordering::Relaxed),
        ),
        (
            "jwtgate_upstream_ejections_total",
            "counter",
            "Times the endpoint was taken out of rotation after failures.",
            |s| s.ejections.load(Ordering::Relaxed),
        ),
    ];
    for (i, (name, kind, help, read)) in series.into_iter().enumerate() {
        header(out, name, kind, help);
        for (upstream, endpoint, stats) in endpoints {
            // The health of an endpoint no config has any more means nothing.
            if i == 0 && Arc::strong_count(stats) == 1 {
                continue;
            }
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\",endpoint=\"{}\"}} {}",
                escape(upstream),
                escape(endpoint),
                read(stats)
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric with one unlabelled value.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Label values escape `\`, `"` and newline (exposition format spec).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Clone, Copy)]
enum Which {
    InFlight,
    Connections,
}

/// Holds one unit of a gauge; dropping it gives the unit back.
pub struct Gauge {
    metrics: Arc<Metrics>,
    which: Which,
}

impl Gauge {
    fn enter(metrics: Arc<Metrics>, which: Which) -> Gauge {
        metrics.gauge(which).fetch_add(1, Ordering::Relaxed);
        Gauge { metrics, which }
    }
}

impl Metrics {
    fn gauge(&self, which: Which) -> &AtomicI64 {
        match which {
            Which::InFlight => &self.in_flight,
            Which::Connections => &self.connections,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.which)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Readiness: a list of named checks that must all pass before `/readyz`
/// answers 200. The gateway registers `serving` (set while the accept loop
/// runs); other start-up work (e.g. loading remote key sets) registers its
/// own check and sets it when done. Not on the request path, so a mutex is fine.
#[derive(Default)]
pub struct Readiness {
    checks: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
}

/// One readiness check; cheap to clone and set from any task. A default
/// flag is not ready and not registered anywhere yet.
#[derive(Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
}

impl Readiness {
    /// Registers a check, initially not ready. A check of the same name
    /// registered before (by the config a reload replaced) is dropped.
    pub fn check(&self, name: &'static str) -> ReadyFlag {
        let flag = ReadyFlag::default();
        self.register(name, &flag);
        flag
    }

    /// Registers an existing flag as check `name`, replacing any check of
    /// that name.
    pub fn register(&self, name: &'static str, flag: &ReadyFlag) {
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        checks.retain(|(n, _)| *n != name);
        checks.push((name, flag.0.clone()));
    }

    /// The names of the checks not passed yet; empty when ready.
    pub fn pending(&self) -> Vec<&'static str> {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, flag)| !flag.load(Ordering::Acquire))
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests;
