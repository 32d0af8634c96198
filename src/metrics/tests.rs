use super::*;

fn bucket_lines(text: &str, prefix: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains("_bucket"))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let n = l.rsplit(' ').next().unwrap().parse().unwrap();
            (le.to_owned(), n)
        })
        .collect()
}

#[test]
fn observation_on_a_bound_falls_in_that_bucket() {
    let h = Histogram::new(&[100, 200]);
    h.observe(Duration::from_nanos(100));
    h.observe(Duration::from_nanos(101));
    h.observe(Duration::from_nanos(200));
    h.observe(Duration::from_nanos(5_000));
    let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts, [1, 2, 1]);
    assert_eq!(h.count(), 4);
}

#[test]
fn zero_and_huge_durations_are_counted() {
    let h = Histogram::new(&[100]);
    h.observe(Duration::ZERO);
    h.observe(Duration::MAX);
    let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(counts, [1, 1]);
}

#[test]
fn histogram_renders_cumulative_buckets_sum_and_count() {
    let h = Histogram::new(&[250, 1_000, 1_500_000_000]);
    h.observe(Duration::from_nanos(200));
    h.observe(Duration::from_nanos(300));
    h.observe(Duration::from_secs(2));
    let mut out = String::new();
    h.render(&mut out, "x_seconds", "alg=\"HS256\"");
    assert_eq!(
        out,
        "x_seconds_bucket{alg=\"HS256\",le=\"0.00000025\"} 1\n\
         x_seconds_bucket{alg=\"HS256\",le=\"0.000001\"} 2\n\
         x_seconds_bucket{alg=\"HS256\",le=\"1.5\"} 2\n\
         x_seconds_bucket{alg=\"HS256\",le=\"+Inf\"} 3\n\
         x_seconds_sum{alg=\"HS256\"} 2.0000005\n\
         x_seconds_count{alg=\"HS256\"} 3\n"
    );
}

#[test]
fn unlabelled_histogram_has_no_empty_braces_on_sum_and_count() {
    let h = Histogram::new(&[1_000]);
    let mut out = String::new();
    h.render(&mut out, "y", "");
    assert!(out.contains("y_bucket{le=\"0.000001\"} 0\n"), "{out}");
    assert!(out.contains("y_sum 0\ny_count 0\n"), "{out}");
}

#[test]
fn seconds_are_exact_decimals() {
    assert_eq!(seconds(0), "0");
    assert_eq!(seconds(100), "0.0000001");
    assert_eq!(seconds(1_000_000), "0.001");
    assert_eq!(seconds(30_000_000_000), "30");
    assert_eq!(seconds(1_250_000_000), "1.25");
}

#[test]
fn bounds_are_strictly_increasing_and_resolve_sub_microsecond() {
    for bounds in [VERIFY_BOUNDS_NS, UPSTREAM_BOUNDS_NS] {
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }
    assert!(VERIFY_BOUNDS_NS.iter().filter(|&&b| b < 1_000).count() >= 6);
    assert!(VERIFY_BOUNDS_NS.last().is_some_and(|&b| b >= 10_000_000));
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::default())
}

fn series(m: &Metrics) -> Series {
    m.series(
        &["/api".to_owned(), "/api".to_owned(), "/".to_owned()],
        &["app".to_owned()],
    )
}

#[test]
fn verify_histogram_is_labelled_by_alg_and_outcome() {
    let m = metrics();
    m.observe_verify(
        Some(Alg::HS384),
        Outcome::Accepted,
        Duration::from_nanos(400),
    );
    m.observe_verify(None, Outcome::Rejected, Duration::from_nanos(90));
    let text = m.render();
    let hs384 = bucket_lines(
        &text,
        "jwtgate_jwt_verify_seconds_bucket{alg=\"HS384\",outcome=\"accepted\"",
    );
    assert_eq!(hs384[0], ("0.0000001".to_owned(), 0));
    assert!(hs384.contains(&("0.0000004".to_owned(), 1)));
    assert_eq!(hs384.last(), Some(&("+Inf".to_owned(), 1)));
    assert!(
        text.contains("jwtgate_jwt_verify_seconds_count{alg=\"unknown\",outcome=\"rejected\"} 1\n")
    );
    assert!(
        text.contains("jwtgate_jwt_verify_seconds_count{alg=\"HS256\",outcome=\"accepted\"} 0\n")
    );
    assert_eq!(m.verify_count(Some(Alg::HS384), Outcome::Accepted), 1);
}

#[test]
fn routes_sharing_a_prefix_share_a_label() {
    let m = metrics();
    let s = series(&m);
    s.count_request(Some(0), 200);
    s.count_request(Some(1), 200);
    s.count_request(Some(2), 401);
    s.count_request(None, 404);
    s.count_request(None, 404);
    let text = m.render();
    assert!(text.contains("jwtgate_requests_total{route=\"/api\",status=\"200\"} 2\n"));
    assert!(text.contains("jwtgate_requests_total{route=\"/\",status=\"401\"} 1\n"));
    assert!(text.contains("jwtgate_requests_total{route=\"unmatched\",status=\"404\"} 2\n"));
    assert_eq!(text.matches("jwtgate_requests_total{").count(), 3);
}

#[test]
fn a_reloaded_config_keeps_counting_into_the_series_it_shares() {
    let m = metrics();
    let before = series(&m);
    before.count_request(Some(0), 200);
    before.observe_upstream(0, Duration::from_millis(1));
    let after = m.series(&["/".to_owned(), "/new".to_owned()], &["app".to_owned()]);
    after.count_request(Some(1), 200);
    after.count_request(Some(0), 401);
    after.observe_upstream(0, Duration::from_millis(1));
    m.count_reload(Some(1_800_000_000));
    m.count_reload(None);
    let text = m.render();
    assert!(text.contains("jwtgate_requests_total{route=\"/api\",status=\"200\"} 1\n"));
    assert!(text.contains("jwtgate_requests_total{route=\"/new\",status=\"200\"} 1\n"));
    assert!(text.contains("jwtgate_requests_total{route=\"/\",status=\"401\"} 1\n"));
    assert!(text.contains("jwtgate_upstream_seconds_count{upstream=\"app\"} 2\n"));
    assert!(text.contains("jwtgate_config_reloads_total{result=\"success\"} 1\n"));
    assert!(text.contains("jwtgate_config_reloads_total{result=\"failure\"} 1\n"));
    assert!(text.contains("jwtgate_config_loaded_timestamp_seconds 1800000000\n"));
}

#[test]
fn a_check_registered_again_replaces_the_old_one() {
    let r = Readiness::default();
    let _old = r.check("key_sources");
    let new = r.check("key_sources");
    assert_eq!(r.pending(), ["key_sources"]);
    new.set(true);
    assert!(r.pending().is_empty());
}

#[test]
fn unknown_failure_reasons_count_as_other() {
    let m = metrics();
    m.count_auth_failure("expired");
    m.count_auth_failure("no_such_reason");
    let text = m.render();
    assert!(text.contains("jwtgate_auth_failures_total{reason=\"expired\"} 1\n"));
    assert!(text.contains("jwtgate_auth_failures_total{reason=\"other\"} 1\n"));
    assert!(text.contains("jwtgate_auth_failures_total{reason=\"missing\"} 0\n"));
}

#[test]
fn gauges_go_back_down_when_the_guard_drops() {
    let m = metrics();
    let a = m.request_started();
    let b = m.connection_opened();
    assert!(m.render().contains("jwtgate_requests_in_flight 1\n"));
    drop(a);
    drop(b);
    let text = m.render();
    assert!(text.contains("jwtgate_requests_in_flight 0\n"));
    assert!(text.contains("jwtgate_connections_open 0\n"));
    assert!(text.contains("jwtgate_connections_total 1\n"));
}

#[test]
fn every_metric_has_help_and_type_once() {
    let text = metrics().render();
    for name in [
        "jwtgate_jwt_verify_seconds",
        "jwtgate_requests_total",
        "jwtgate_auth_failures_total",
        "jwtgate_upstream_seconds",
        "jwtgate_requests_in_flight",
        "jwtgate_connections_open",
        "jwtgate_connections_total",
    ] {
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{name}"
        );
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

#[test]
fn readiness_waits_for_every_check() {
    let r = Readiness::default();
    assert!(r.pending().is_empty());
    let serving = r.check("serving");
    let keys = r.check("keys");
    assert_eq!(r.pending(), ["serving", "keys"]);
    serving.set(true);
    keys.set(true);
    assert!(r.pending().is_empty());
    serving.set(false);
    assert_eq!(r.pending(), ["serving"]);
}

#[test]
fn verified_cache_counters_never_go_back_across_reloads() {
    use crate::cache::CacheStats;
    let m = metrics();
    let lookups = |m: &Metrics| {
        let text = m.render();
        let hit = text
            .lines()
            .find_map(|l| l.strip_prefix("jwtgate_verified_cache_lookups_total{result=\"hit\"} "));
        hit.map(|n| n.parse::<u64>().unwrap())
    };
    assert_eq!(lookups(&m), None, "no cache reported yet");
    m.report_verified_cache(|| CacheStats {
        hits: 5,
        misses: 1,
        entries: 1,
    });
    assert_eq!(lookups(&m), Some(5));
    // A reload to a config that cannot cache: the series go.
    m.stop_reporting_verified_cache();
    assert_eq!(lookups(&m), None);
    // A later cache counts on from what the first one counted.
    m.report_verified_cache(|| CacheStats {
        hits: 2,
        misses: 0,
        entries: 1,
    });
    assert_eq!(lookups(&m), Some(7));
}
