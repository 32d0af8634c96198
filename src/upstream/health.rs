//! Endpoint health: passive ejection on failures seen by requests, and
//! active checks (a GET of `health_path`) run in the background.
//!
//! Passive: `eject_after` consecutive failures (no connection, failed TLS,
//! a connection closed or reset before the response head, a 5xx answer)
//! take an endpoint out for `eject_for`, doubled for each ejection in a row
//! (at most 8 times). After the back-off it is back on probation: its first
//! failure ejects it again at once, its first success ends the streak. Active: `unhealthy_threshold` failed checks in a
//! row take it out until `healthy_threshold` passes in a row.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use super::Shared;
use super::endpoint::Endpoint;
use crate::config;
use crate::metrics::EndpointStats;

/// Most doublings of `eject_for`: 2³ = 8 times the first back-off.
const MAX_DOUBLINGS: u32 = 3;

/// Milliseconds on a process-wide monotonic clock, never 0 (0 marks "not
/// ejected").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX).saturating_add(1)
}

/// One endpoint's health. Relaxed atomics: a race between two requests
/// at worst ejects one failure early or late.
#[derive(Default)]
pub(super) struct Health {
    /// Consecutive failures seen by requests.
    failures: AtomicU32,
    /// When the current ejection ends (`now_ms`); 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row; non-zero once back means on probation.
    streak: AtomicU32,
    /// Taken out by active checks.
    down: AtomicBool,
    /// Active checks passed / failed in a row (the checker alone writes).
    passes: AtomicU32,
    fails: AtomicU32,
}

impl Health {
    /// Whether the endpoint may get a new request now.
    pub(super) fn available(&self, stats: &EndpointStats) -> bool {
        if self.down.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now_ms() < until {
            return false;
        }
        // The back-off is over: in rotation again, on probation.
        if !stats.healthy.load(Ordering::Relaxed) {
            stats.healthy.store(true, Ordering::Relaxed);
        }
        true
    }

    /// How long until an ejected endpoint is back; `None` when it is not
    /// ejected (or out because its active checks fail).
    pub(super) fn back_in(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until != 0).then(|| Duration::from_millis(until.saturating_sub(now_ms())))
    }

    /// A request got a response that was not 5xx.
    pub(super) fn succeeded(&self) {
        // Loads first: the common case writes nothing shared.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && now_ms() >= until {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed at this endpoint (no response head, or a 5xx one). Returns whether this ejected it.
    pub(super) fn failed(&self, policy: &config::Health, stats: &EndpointStats) -> bool {
        if policy.eject_after == 0 {
            return false;
        }
        let now = now_ms();
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until != 0 && now < until {
            // Already out: a request sent before the ejection.
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let on_probation = until != 0;
        if !on_probation && failures < policy.eject_after {
            return false;
        }
        let doublings = self
            .streak
            .fetch_add(1, Ordering::Relaxed)
            .min(MAX_DOUBLINGS);
        let back_off = policy.eject_for.saturating_mul(1 << doublings);
        let back_off = u64::try_from(back_off.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(back_off), Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        stats.healthy.store(false, Ordering::Relaxed);
        stats.ejections.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The outcome of one active check. Returns the new state when it
    /// changed (`Some(true)`: back in rotation).
    pub(super) fn checked(
        &self,
        passed: bool,
        active: &config::ActiveHealth,
        stats: &EndpointStats,
    ) -> Option<bool> {
        let down = self.down.load(Ordering::Relaxed);
        if passed {
            self.fails.store(0, Ordering::Relaxed);
            let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if down && passes >= active.healthy_threshold {
                self.down.store(false, Ordering::Relaxed);
                // A passing check also ends a passive ejection.
                self.ejected_until.store(0, Ordering::Relaxed);
                self.streak.store(0, Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                stats.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if !down && fails >= active.unhealthy_threshold {
                self.down.store(true, Ordering::Relaxed);
                stats.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// Checks every endpoint of an upstream each `interval` while it lives.
pub(super) async fn check_actively(
    upstream: String,
    shared: Weak<Shared>,
    active: config::ActiveHealth,
) {
    loop {
        tokio::time::sleep(active.interval).await;
        let Some(endpoints) = shared.upgrade().map(|s| s.endpoints.load_full()) else {
            return;
        };
        let mut checks = tokio::task::JoinSet::new();
        for endpoint in endpoints.iter().cloned() {
            let active = active.clone();
            checks.spawn(async move {
                let passed = probe(&endpoint, &active).await;
                (endpoint, passed)
            });
        }
        while let Some(Ok((endpoint, passed))) = checks.join_next().await {
            match endpoint.health.checked(passed, &active, &endpoint.stats) {
                Some(true) => {
                    tracing::info!(upstream, endpoint = %endpoint.label, "endpoint passes its health checks again")
                }
                Some(false) => {
                    tracing::warn!(upstream, endpoint = %endpoint.label, "endpoint fails its health checks")
                }
                None => {}
            }
        }
    }
}

/// One check: a GET of the health path answered 2xx within the timeout.
async fn probe(endpoint: &Endpoint, active: &config::ActiveHealth) -> bool {
    let request = endpoint.probe_request(&active.path);
    match tokio::time::timeout(active.timeout, endpoint.probe(request)).await {
        Ok(Ok(response)) => response.status().is_success(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> EndpointStats {
        EndpointStats {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    fn policy(eject_after: u32, eject_for: Duration) -> config::Health {
        config::Health {
            eject_after,
            eject_for,
            active: None,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_in_between_resets_the_count() {
        let (health, stats) = (Health::default(), stats());
        let policy = policy(3, Duration::from_secs(60));
        assert!(!health.failed(&policy, &stats));
        assert!(!health.failed(&policy, &stats));
        health.succeeded();
        assert!(!health.failed(&policy, &stats));
        assert!(!health.failed(&policy, &stats));
        assert!(health.available(&stats));
        assert!(health.failed(&policy, &stats));
        assert!(!health.available(&stats));
        assert!(!stats.healthy.load(Ordering::Relaxed));
        assert_eq!(stats.ejections.load(Ordering::Relaxed), 1);
        assert!(
            health
                .back_in()
                .is_some_and(|d| d > Duration::from_secs(59))
        );
    }

    #[test]
    fn after_the_back_off_one_failure_on_probation_ejects_for_twice_as_long() {
        let (health, stats) = (Health::default(), stats());
        let policy = policy(2, Duration::from_millis(20));
        health.failed(&policy, &stats);
        assert!(health.failed(&policy, &stats));
        std::thread::sleep(Duration::from_millis(30));
        assert!(health.available(&stats));
        assert!(stats.healthy.load(Ordering::Relaxed));
        assert!(health.failed(&policy, &stats), "probation");
        assert!(
            health
                .back_in()
                .is_some_and(|d| d > Duration::from_millis(25))
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(health.available(&stats));
        health.succeeded();
        // The streak is over: it takes eject_after failures again.
        assert!(!health.failed(&policy, &stats));
        assert_eq!(health.back_in(), None);
    }

    #[test]
    fn zero_eject_after_never_ejects() {
        let (health, stats) = (Health::default(), stats());
        let policy = policy(0, Duration::from_secs(1));
        for _ in 0..100 {
            assert!(!health.failed(&policy, &stats));
        }
        assert!(health.available(&stats));
    }

    #[test]
    fn active_checks_take_out_and_bring_back_by_their_thresholds() {
        let (health, stats) = (Health::default(), stats());
        let active = config::ActiveHealth {
            path: http::uri::PathAndQuery::from_static("/healthz"),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        };
        assert_eq!(health.checked(false, &active, &stats), None);
        assert_eq!(health.checked(false, &active, &stats), Some(false));
        assert!(!health.available(&stats));
        assert_eq!(health.checked(true, &active, &stats), None);
        assert_eq!(health.checked(true, &active, &stats), Some(true));
        assert!(health.available(&stats));
    }
}
