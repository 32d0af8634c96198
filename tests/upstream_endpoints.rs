//! Upstreams with several endpoints: balancing, passive ejection and
//! recovery, active checks, the fast 503 when none is healthy, and a
//! request that could not connect going to another endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{CONFIG, TestGateway, Upstream, plain_get, token};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The test config with `url = [urls]`, the upstream keys `extra` and an
/// admin listener for `/metrics`.
fn config(urls: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = urls.iter().map(|a| format!("\"http://{a}\"")).collect();
    CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!("url = [{}]\n{extra}", list.join(", ")),
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n"
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A replica that can be stopped for real: its open connections close too
/// (the kit's upstream keeps serving the connections it has).
struct Replica {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    /// Whether `/healthz` answers 200 (else 503).
    healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start() -> Replica {
        Replica::on(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            Arc::default(),
        )
    }

    fn on(listener: TcpListener, served: Arc<AtomicUsize>) -> Replica {
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let (count, up) = (served.clone(), healthy.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection ends with it.
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (count, up) = (count.clone(), up.clone());
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (count, up) = (count.clone(), up.clone());
                        async move {
                            if request.uri().path() == "/healthz" {
                                let status = match up.load(Ordering::Relaxed) {
                                    true => StatusCode::OK,
                                    false => StatusCode::SERVICE_UNAVAILABLE,
                                };
                                let mut response = Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = status;
                                return Ok::<_, Infallible>(response);
                            }
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            count.fetch_add(1, Ordering::Relaxed);
                            Ok(Response::new(Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Replica {
            addr,
            served,
            healthy,
            task,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops accepting and closes every connection.
    async fn stop(&self) {
        self.task.abort();
        while !self.task.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Serves again on the same port, counting on.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        *self = Replica::on(listener, self.served.clone());
    }
}

async fn metrics(gateway: &TestGateway) -> String {
    plain_get(gateway.admin.unwrap(), "/metrics").await.2
}

/// The value of the series `name{upstream="app",endpoint="addr"}`.
fn endpoint_series(metrics: &str, name: &str, addr: SocketAddr) -> Option<u64> {
    let prefix = format!("{name}{{upstream=\"app\",endpoint=\"{addr}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn requests_take_turns_over_the_listed_urls() {
    let replicas = [
        Replica::start().await,
        Replica::start().await,
        Replica::start().await,
    ];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let gateway = TestGateway::start(&config(&addrs, ""), addrs[0]).await;

    for _ in 0..9 {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for replica in &replicas {
        assert_eq!(replica.served(), 3);
    }
    let metrics = metrics(&gateway).await;
    for addr in &addrs {
        let requests = endpoint_series(&metrics, "jwtgate_upstream_endpoint_requests_total", *addr);
        assert_eq!(requests, Some(3), "{metrics}");
        let healthy = endpoint_series(&metrics, "jwtgate_upstream_endpoint_healthy", *addr);
        assert_eq!(healthy, Some(1));
    }
}

#[tokio::test]
async fn least_outstanding_sends_new_requests_past_a_slow_endpoint() {
    let slow = Upstream::with(|_| async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Response::new(Full::new(Bytes::from_static(b"slow")))
    })
    .await;
    let fast = Upstream::start().await;
    let text = config(&[slow.addr, fast.addr], "balance = \"least_outstanding\"");
    let gateway = Arc::new(TestGateway::start(&text, slow.addr).await);

    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let gateway = gateway.clone();
        requests.spawn(async move { gateway.client().get("/", Some(&token("user"))).await.status });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    // Round robin would have sent the slow one 10.
    assert!(
        slow.count() <= 3,
        "slow {} fast {}",
        slow.count(),
        fast.count()
    );
    assert_eq!(slow.count() + fast.count(), 20);
}

#[tokio::test]
async fn a_replica_stopped_mid_test_fails_no_get_and_is_ejected_then_recovers() {
    let mut replicas = [
        Replica::start().await,
        Replica::start().await,
        Replica::start().await,
    ];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let text = config(&addrs, "eject_after = 2\neject_for = \"200ms\"");
    let gateway = TestGateway::start(&text, addrs[0]).await;
    let get = async || gateway.client().get("/", Some(&token("user"))).await;

    for _ in 0..6 {
        assert_eq!(get().await.status, StatusCode::OK);
    }
    replicas[1].stop().await;
    let before = replicas[1].served();
    for i in 0..30 {
        assert_eq!(get().await.status, StatusCode::OK, "GET {i} after the stop");
    }
    assert_eq!(replicas[1].served(), before);
    let metrics_now = metrics(&gateway).await;
    let ejections = endpoint_series(&metrics_now, "jwtgate_upstream_ejections_total", addrs[1]);
    assert!(ejections.is_some_and(|n| n >= 1), "{metrics_now}");
    let failures = endpoint_series(
        &metrics_now,
        "jwtgate_upstream_endpoint_failures_total",
        addrs[1],
    );
    assert!(failures.is_some_and(|n| n >= 2), "{metrics_now}");

    replicas[1].restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while replicas[1].served() == before {
        assert!(
            Instant::now() < deadline,
            "the restarted replica got no request"
        );
        assert_eq!(get().await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics_now = metrics(&gateway).await;
    let healthy = endpoint_series(&metrics_now, "jwtgate_upstream_endpoint_healthy", addrs[1]);
    assert_eq!(healthy, Some(1), "{metrics_now}");
}

#[tokio::test]
async fn with_every_endpoint_down_the_answer_is_a_fast_503_with_retry_after() {
    let addrs = [closed_port().await, closed_port().await];
    let text = config(&addrs, "eject_after = 1\neject_for = \"10s\"");
    let gateway = TestGateway::start(&text, addrs[0]).await;

    // The first request finds both refusing (one try each) and ejects them.
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let started = Instant::now();
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "upstream_unavailable");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((9..=10).contains(&retry_after), "{retry_after}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_post_that_could_not_connect_goes_to_another_endpoint_with_its_body() {
    let live = Upstream::start().await;
    let dead = closed_port().await;
    // Never ejected: every other request tries the dead endpoint first.
    let text = config(&[dead, live.addr], "eject_after = 0");
    let gateway = TestGateway::start(&text, live.addr).await;

    for i in 0..4 {
        let body = format!("payload {i}");
        let request = Request::post("/")
            .header("authorization", format!("Bearer {}", token("user")))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let reply = gateway.client().send(request).await;
        assert_eq!(reply.status, StatusCode::OK, "POST {i}");
        assert_eq!(live.last().body, body);
    }
    assert_eq!(live.count(), 4);
}

#[tokio::test]
async fn active_checks_take_a_failing_endpoint_out_and_bring_it_back() {
    let replicas = [Replica::start().await, Replica::start().await];
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let text = config(
        &addrs,
        "health_path = \"/healthz\"\nhealth_interval = \"30ms\"\nhealth_timeout = \"500ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1",
    );
    let gateway = TestGateway::start(&text, addrs[0]).await;

    replicas[0].healthy.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics_now = metrics(&gateway).await;
    let healthy = endpoint_series(&metrics_now, "jwtgate_upstream_endpoint_healthy", addrs[0]);
    assert_eq!(healthy, Some(0), "{metrics_now}");
    for _ in 0..4 {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(replicas[0].served(), 0);
    assert_eq!(replicas[1].served(), 4);

    replicas[0].healthy.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..4 {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(replicas[0].served(), 2);
}

#[tokio::test]
async fn dns_refresh_makes_an_endpoint_of_each_address_of_the_name() {
    let replica = Replica::start().await;
    let text = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        &format!(
            "url = \"http://localhost:{}\"\ndns_refresh = \"1s\"",
            replica.addr.port()
        ),
    ) + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gateway = TestGateway::start(&text, replica.addr).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = gateway.client().get("/", Some(&token("user"))).await;
        assert_eq!(reply.status, StatusCode::OK);
        let metrics_now = metrics(&gateway).await;
        let resolved = format!("127.0.0.1:{}", replica.addr.port())
            .parse()
            .unwrap();
        if endpoint_series(
            &metrics_now,
            "jwtgate_upstream_endpoint_requests_total",
            resolved,
        )
        .is_some_and(|n| n >= 1)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics_now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_can_require_an_endpoint_in_rotation_for_every_upstream() {
    let addrs = [closed_port().await, closed_port().await];
    let text =
        config(&addrs, "eject_after = 1\neject_for = \"10s\"") + "ready_needs_upstreams = true\n";
    let gateway = TestGateway::start(&text, addrs[0]).await;
    let admin = gateway.admin.unwrap();
    assert_eq!(plain_get(admin, "/readyz").await.0, StatusCode::OK);

    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _, body) = plain_get(admin, "/readyz").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body.contains("upstreams"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_ignores_upstream_health_unless_asked() {
    let addrs = [closed_port().await, closed_port().await];
    let text = config(&addrs, "eject_after = 1\neject_for = \"10s\"");
    let gateway = TestGateway::start(&text, addrs[0]).await;
    let reply = gateway.client().get("/", Some(&token("user"))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        plain_get(gateway.admin.unwrap(), "/readyz").await.0,
        StatusCode::OK
    );
}
