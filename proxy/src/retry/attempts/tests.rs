//! The attempt loop on paused time, with scripted tries: each try is
//! logged (endpoint, when, the body it carried), and the script says what
//! it comes to. The cluster, its picker, `maxRetries` and the budget are
//! the real ones.

use std::io;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use remora_proto::pb;
use remora_route::retry::{IstioCondition, istio_condition};

use super::*;
use crate::retry::{Backoff, BudgetSettings};
use crate::upstream::EndpointRegistry;

/// What a scripted try does.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Answers with this status at once (the body is not read).
    Status(u16),
    /// Reads the whole request body, then answers with this status.
    ReadThen(u16),
    /// The connection is refused.
    Refused,
    /// A circuit-breaker limit refuses the try.
    Overflow,
    /// Never answers.
    Hang,
}

/// One try as the upstream saw it.
#[derive(Debug)]
struct Seen {
    address: String,
    /// Since the request started.
    at: Duration,
    /// The request body, when the step read it.
    body: Option<Bytes>,
}

/// The scripted upstream and what it heard.
struct Scripted<F> {
    script: F,
    start: Instant,
    tries: Vec<Seen>,
    retries: Vec<(u32, String)>,
    flags: Vec<&'static str>,
}

impl<F: FnMut(usize, &str) -> Step> Upstream<Full<Bytes>> for Scripted<F> {
    type Body = ();

    async fn send(
        &mut self,
        endpoint: &Arc<Endpoint>,
        _parts: Parts,
        body: AttemptBody<Full<Bytes>>,
    ) -> Result<Response<()>, ProxyError> {
        let address = endpoint.address().to_owned();
        let step = (self.script)(self.tries.len(), &address);
        self.tries.push(Seen {
            address: address.clone(),
            at: self.start.elapsed(),
            body: None,
        });
        let status = match step {
            Step::Status(status) => status,
            Step::ReadThen(status) => {
                let read = body.collect().await.expect("the body").to_bytes();
                if let Some(seen) = self.tries.last_mut() {
                    seen.body = Some(read);
                }
                status
            }
            Step::Refused => {
                let source = io::Error::from(io::ErrorKind::ConnectionRefused);
                return Err(UpstreamError::Connect { address, source }.into());
            }
            Step::Overflow => {
                let limit = "http2MaxRequests (1)".to_owned();
                return Err(UpstreamError::Overflow { address, limit }.into());
            }
            Step::Hang => std::future::pending().await,
        };
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).expect("a status");
        Ok(resp)
    }

    fn retrying(&mut self, n: u32, reason: &str) {
        self.retries.push((n, reason.to_owned()));
    }

    fn flag(&mut self, flag: &'static str) {
        self.flags.push(flag);
    }
}

impl<F> Scripted<F> {
    fn addresses(&self) -> Vec<&str> {
        self.tries.iter().map(|t| t.address.as_str()).collect()
    }

    fn times(&self) -> Vec<Duration> {
        self.tries.iter().map(|t| t.at).collect()
    }
}

/// A destination of `n` endpoints and a request's settings.
struct Setup {
    cluster: Cluster,
    policy: RetryPolicy,
    budget: RetryBudget,
    retries: Retries,
    timeout: Option<Duration>,
}

/// A retry policy as a `retries` block with these `retryOn` names.
fn policy(attempts: u32, retry_on: &[&str]) -> RetryPolicy {
    let mut p = pb::RetryPolicy {
        attempts,
        ..Default::default()
    };
    for name in retry_on {
        match istio_condition(name) {
            Some(IstioCondition::Http(c)) => p.retry_on.push(c as i32),
            Some(IstioCondition::Grpc(code)) => p.retriable_grpc_codes.push(code),
            None => panic!("{name} is no retryOn condition"),
        }
    }
    RetryPolicy::compile(Some(&p)).expect("a valid policy")
}

/// A budget that never runs out.
const PLENTY: BudgetSettings = BudgetSettings {
    ratio: 0.0,
    min_per_sec: 1_000_000,
    ttl: Duration::from_secs(10),
};

impl Setup {
    /// `n` endpoints picked at random (round robin would step past a
    /// failed endpoint even without avoidance), the default retry policy,
    /// a budget that never runs out, no route timeout, the backoff's
    /// jitter fixed at half its range.
    fn new(n: usize) -> Self {
        let cluster = pb::Cluster {
            name: "|reviews.default.svc.cluster.local".into(),
            service: "reviews.default.svc.cluster.local".into(),
            load_balancer: pb::LoadBalancer::Random as i32,
            endpoints: (0..n)
                .map(|i| pb::Endpoint {
                    address: format!("10.0.0.{}:9080", i + 1),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Self::of(cluster)
    }

    fn of(cluster: pb::Cluster) -> Self {
        let cluster = Cluster::from_proto(&cluster, &EndpointRegistry::default(), None)
            .expect("a valid cluster");
        let mut retries = Retries::new(PLENTY, 64 * 1024);
        retries.jitter = || 0.5;
        Self {
            cluster,
            policy: RetryPolicy::default(),
            budget: RetryBudget::new(PLENTY, clock()),
            retries,
            timeout: None,
        }
    }

    fn policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn per_try_timeout(mut self, after: Duration) -> Self {
        self.policy.per_try_timeout = Some(after);
        self
    }

    fn budget(mut self, settings: BudgetSettings) -> Self {
        self.budget = RetryBudget::new(settings, clock());
        self
    }

    fn jitter(mut self, unit: fn() -> f64) -> Self {
        self.retries.jitter = unit;
        self
    }

    /// Runs `req` through the loop with `script`; fails the test if the
    /// loop has not ended after an hour (of paused time).
    async fn run<F>(
        &self,
        req: Request<Full<Bytes>>,
        script: F,
    ) -> (Result<Response<()>, ProxyError>, Scripted<F>)
    where
        F: FnMut(usize, &str) -> Step,
    {
        let attempts = Attempts {
            cluster: &self.cluster,
            policy: &self.policy,
            budget: &self.budget,
            retries: &self.retries,
            route: "test",
            timeout: self.timeout.map(RouteTimeout::from_now),
        };
        let mut upstream = Scripted {
            script,
            start: Instant::now(),
            tries: Vec::new(),
            retries: Vec::new(),
            flags: Vec::new(),
        };
        let (parts, body) = req.into_parts();
        let result = tokio::time::timeout(
            Duration::from_secs(3600),
            attempts.run(parts, body, &mut upstream),
        )
        .await
        .expect("the tries never ended");
        (result, upstream)
    }

    /// [`Self::run`] of a `GET /` with no body.
    async fn get<F>(&self, script: F) -> (Result<Response<()>, ProxyError>, Scripted<F>)
    where
        F: FnMut(usize, &str) -> Step,
    {
        self.run(request(Method::GET, Bytes::new(), false), script)
            .await
    }
}

/// A request with `body`, which announces its length if `length`.
fn request(method: Method, body: Bytes, length: bool) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri("/");
    if length {
        builder = builder.header(CONTENT_LENGTH, body.len());
    }
    builder.body(Full::new(body)).expect("a request")
}

/// The same step for every try.
fn always(step: Step) -> impl FnMut(usize, &str) -> Step {
    move |_, _| step
}

/// `steps[n]` for try `n`, the last one for any later try.
fn in_turn(steps: &'static [Step]) -> impl FnMut(usize, &str) -> Step {
    move |n, _| steps[n.min(steps.len() - 1)]
}

fn status(result: &Result<Response<()>, ProxyError>) -> u16 {
    match result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status().as_u16(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// When each try starts, by `backoff` at `jitter`, rounded up to tokio's
/// timer tick of a millisecond as each sleep is.
fn paced(backoff: Backoff, jitter: f64, retries: u32) -> Vec<Duration> {
    let tick = |d: Duration| ms(d.as_nanos().div_ceil(1_000_000) as u64);
    let mut at = Duration::ZERO;
    let mut times = vec![at];
    for n in 1..=retries {
        at += tick(backoff.wait(n, jitter));
        times.push(at);
    }
    times
}

#[tokio::test(start_paused = true)]
async fn a_try_past_its_per_try_timeout_is_cut_off_and_retried() {
    let setup = Setup::new(2)
        .policy(policy(1, &["reset"]))
        .per_try_timeout(ms(100))
        .jitter(|| 0.0);
    let (result, up) = setup.get(in_turn(&[Step::Hang, Step::Status(200)])).await;
    assert_eq!(status(&result), 200);
    assert_eq!(up.times(), [ms(0), ms(100)]);
    assert_eq!(up.retries, [(1, "per-try-timeout".to_owned())]);
    assert!(up.flags.is_empty(), "{:?}", up.flags);
}

#[tokio::test(start_paused = true)]
async fn a_last_try_past_its_per_try_timeout_answers_504() {
    let setup = Setup::new(2)
        .policy(policy(1, &["reset"]))
        .per_try_timeout(ms(100))
        .jitter(|| 0.0);
    let started = Instant::now();
    let (result, up) = setup.get(always(Step::Hang)).await;
    let Err(ProxyError::PerTryTimeout { after, address }) = &result else {
        panic!("a per-try timeout expected: {result:?}");
    };
    assert_eq!(*after, ms(100));
    assert_eq!(address, up.addresses()[1], "the last try's endpoint");
    assert_eq!(status(&result), 504);
    assert_eq!(started.elapsed(), ms(200), "two tries of 100 ms");
    assert_eq!(up.flags, [RETRIES_EXHAUSTED]);
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_cuts_retries_short() {
    let mut setup = Setup::new(2)
        .policy(policy(5, &["reset"]))
        .per_try_timeout(ms(100))
        .jitter(|| 0.0);
    setup.timeout = Some(ms(250));
    let started = Instant::now();
    let (result, up) = setup.get(always(Step::Hang)).await;
    assert!(
        matches!(result, Err(ProxyError::Timeout { after }) if after == ms(250)),
        "the route timeout expected: {result:?}"
    );
    assert_eq!(status(&result), 504);
    assert_eq!(
        up.times(),
        [ms(0), ms(100), ms(200)],
        "the third try is cut"
    );
    assert_eq!(started.elapsed(), ms(250));
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_leaves_a_quick_answer_alone() {
    let mut setup = Setup::new(2).policy(policy(2, &["5xx"]));
    setup.timeout = Some(ms(250));
    let (result, up) = setup
        .get(in_turn(&[Step::Status(503), Step::Status(200)]))
        .await;
    assert_eq!(status(&result), 200);
    assert_eq!(up.tries.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_the_budget_refuses_returns_the_failed_answer() {
    // One retry per second and nothing per request: the first request
    // gets one retry, and its second retry is refused, as is the next
    // request's first.
    let setup = Setup::new(3)
        .policy(policy(2, &["5xx"]))
        .budget(BudgetSettings {
            ratio: 0.0,
            min_per_sec: 1,
            ttl: Duration::from_secs(10),
        });
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(status(&result), 503, "the upstream's own answer");
    assert!(result.is_ok());
    assert_eq!(up.tries.len(), 2);
    assert_eq!(up.flags, [RETRY_BUDGET_REFUSED]);
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(status(&result), 503);
    assert_eq!(up.tries.len(), 1);
    assert!(up.retries.is_empty());
    assert_eq!(up.flags, [RETRY_BUDGET_REFUSED]);
    assert_eq!(setup.budget.counts(clock()), (2, 1));
    // A second later, the budget has one more.
    tokio::time::advance(Duration::from_secs(1)).await;
    let (_, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(up.tries.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_bound_the_retries() {
    let setup = Setup::new(3).policy(policy(3, &["5xx"]));
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(status(&result), 503);
    assert_eq!(up.tries.len(), 4, "the first try and three retries");
    let reasons: Vec<_> = up.retries.iter().map(|(n, r)| (*n, r.as_str())).collect();
    assert_eq!(reasons, [(1, "503"), (2, "503"), (3, "503")]);
    assert_eq!(up.flags, [RETRIES_EXHAUSTED]);
}

#[tokio::test(start_paused = true)]
async fn a_success_on_the_last_try_is_not_flagged() {
    let setup = Setup::new(3).policy(policy(1, &["5xx"]));
    let (result, up) = setup
        .get(in_turn(&[Step::Status(503), Step::Status(200)]))
        .await;
    assert_eq!(status(&result), 200);
    assert!(up.flags.is_empty(), "{:?}", up.flags);
}

#[tokio::test(start_paused = true)]
async fn max_retries_caps_the_retries_in_flight_to_the_cluster() {
    let mut cluster = pb::Cluster {
        name: "|reviews.default.svc.cluster.local".into(),
        service: "reviews.default.svc.cluster.local".into(),
        endpoints: vec![pb::Endpoint {
            address: "10.0.0.1:9080".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    cluster.connection_pool = Some(pb::ConnectionPool {
        max_retries: 1,
        ..Default::default()
    });
    let setup = Setup::of(cluster).policy(policy(2, &["5xx"]));
    // Another request's retry is in flight: no room for this one's.
    let other = setup.cluster.try_start_retry().expect("the only retry");
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(status(&result), 503);
    assert_eq!(up.tries.len(), 1);
    assert_eq!(up.flags, [RETRIES_EXHAUSTED]);
    drop(other);
    // Alone, the request may retry; it holds its retry until it ends.
    let (_, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!(up.tries.len(), 3);
    assert!(
        setup.cluster.try_start_retry().is_some(),
        "the ended request gave its retry back"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_half_the_ceiling_at_half_jitter() {
    let setup = Setup::new(2).policy(policy(4, &["5xx"]));
    let (_, up) = setup.get(always(Step::Status(503))).await;
    // Ceilings of 25, 75, 175 and 250 ms: waits of 12.5, 37.5, 87.5, 125.
    assert_eq!(up.times(), paced(Backoff::default(), 0.5, 4));
    assert_eq!(up.times(), [ms(0), ms(13), ms(51), ms(139), ms(264)]);
}

#[tokio::test(start_paused = true)]
async fn backoff_with_a_random_jitter_stays_below_each_ceiling() {
    let setup = Setup::new(2)
        .policy(policy(4, &["5xx"]))
        .jitter(rand::random);
    let backoff = Backoff::default();
    let mut total = Duration::ZERO;
    for _ in 0..20 {
        let (_, up) = setup.get(always(Step::Status(503))).await;
        let times = up.times();
        for (n, pair) in (1..).zip(times.windows(2)) {
            let wait = pair[1] - pair[0];
            // At most: a wait just below the ceiling sleeps to its tick.
            assert!(wait <= backoff.ceiling(n), "retry {n} waited {wait:?}");
            total += wait;
        }
    }
    assert!(total > Duration::ZERO, "retries were paced at all");
}

#[tokio::test(start_paused = true)]
async fn the_backoff_base_scales_the_waits() {
    let mut setup = Setup::new(2).policy(policy(3, &["5xx"]));
    setup.retries = Retries::new(PLENTY, 64 * 1024).with_backoff(Backoff::new(ms(1)));
    setup.retries.jitter = || 0.5;
    let (_, up) = setup.get(always(Step::Status(503))).await;
    // Ceilings of 1, 3 and 7 ms: waits of 0.5, 1.5 and 3.5 ms.
    assert_eq!(up.times(), paced(Backoff::new(ms(1)), 0.5, 3));
    assert_eq!(up.times(), [ms(0), ms(1), ms(3), ms(7)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_another_endpoint_when_one_exists() {
    // Two of three endpoints refuse connections; with two retries that
    // each avoid the endpoints that failed, every request gets through.
    let setup = Setup::new(3);
    for i in 0..30 {
        let (result, up) = setup
            .get(|_, address: &str| {
                if address == "10.0.0.3:9080" {
                    Step::Status(200)
                } else {
                    Step::Refused
                }
            })
            .await;
        assert_eq!(status(&result), 200, "request {i}: {:?}", up.addresses());
        let mut seen = up.addresses();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), up.tries.len(), "request {i}: {:?}", up.tries);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_the_same_endpoint_when_it_is_the_only_one() {
    let setup = Setup::new(1);
    let (result, up) = setup
        .get(in_turn(&[Step::Refused, Step::Status(200)]))
        .await;
    assert_eq!(status(&result), 200);
    assert_eq!(up.addresses(), ["10.0.0.1:9080", "10.0.0.1:9080"]);
}

#[tokio::test(start_paused = true)]
async fn a_cluster_without_endpoints_answers_no_healthy_upstream() {
    let setup = Setup::new(0);
    let (result, up) = setup.get(always(Step::Status(200))).await;
    let Err(e) = &result else {
        panic!("no endpoint, yet {result:?}");
    };
    assert!(matches!(e, ProxyError::NoEndpoint { .. }), "{e}");
    assert_eq!((e.status().as_u16(), e.flag()), (503, "UH"));
    assert!(up.tries.is_empty());
}

#[tokio::test(start_paused = true)]
async fn statuses_outside_retry_on_are_not_retried() {
    // retryOn 5xx: a 404 is the answer.
    let setup = Setup::new(2).policy(policy(2, &["5xx"]));
    let (result, up) = setup.get(always(Step::Status(404))).await;
    assert_eq!((status(&result), up.tries.len()), (404, 1));
    // No retries block: no status is retried.
    let setup = Setup::new(2);
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!((status(&result), up.tries.len()), (503, 1));
    assert!(up.flags.is_empty(), "{:?}", up.flags);
    // A retries block without retryOn: 503 for GET, not for POST.
    let setup = Setup::new(2).policy(policy(2, &[]));
    let post = request(Method::POST, Bytes::new(), false);
    let (result, up) = setup.run(post, always(Step::Status(503))).await;
    assert_eq!((status(&result), up.tries.len()), (503, 1), "POST");
    let (result, up) = setup.get(always(Step::Status(503))).await;
    assert_eq!((status(&result), up.tries.len()), (503, 3), "GET");
}

#[tokio::test(start_paused = true)]
async fn connect_failures_are_retried_for_any_method_by_default() {
    let setup = Setup::new(2);
    for method in [Method::GET, Method::POST] {
        let req = request(method.clone(), Bytes::from_static(b"order"), true);
        let (result, up) = setup
            .run(req, in_turn(&[Step::Refused, Step::ReadThen(200)]))
            .await;
        assert_eq!(status(&result), 200, "{method}");
        assert_eq!(up.retries, [(1, "connect-failure".to_owned())], "{method}");
        assert_eq!(up.tries[1].body.as_deref(), Some(&b"order"[..]), "{method}");
    }
    // Spent retries answer the connect failure: 503 UF.
    let (result, up) = setup.get(always(Step::Refused)).await;
    let Err(e) = &result else {
        panic!("a connect failure expected: {result:?}");
    };
    assert_eq!((e.status().as_u16(), e.flag()), (503, "UF"));
    assert_eq!(up.tries.len(), 3);
    assert_eq!(up.flags, [RETRIES_EXHAUSTED]);
}

#[tokio::test(start_paused = true)]
async fn overflow_is_never_retried() {
    let setup = Setup::new(2).policy(policy(2, &["5xx", "connect-failure", "reset"]));
    let (result, up) = setup.get(always(Step::Overflow)).await;
    let Err(e) = &result else {
        panic!("an overflow expected: {result:?}");
    };
    assert_eq!((e.status().as_u16(), e.flag()), (503, "UO"));
    assert_eq!(up.tries.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_with_a_fitting_length_is_replayed_whole() {
    let setup = Setup::new(2).policy(policy(2, &["5xx"]));
    let body = Bytes::from(vec![b'x'; 64 * 1024]);
    let req = request(Method::POST, body.clone(), true);
    let (_, up) = setup.run(req, always(Step::ReadThen(503))).await;
    assert_eq!(up.tries.len(), 3);
    for seen in &up.tries {
        assert_eq!(seen.body.as_ref(), Some(&body), "{}", seen.address);
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_without_a_length_is_replayed_up_to_the_bound() {
    let setup = Setup::new(2).policy(policy(2, &["5xx"]));
    let body = Bytes::from(vec![b'x'; 64 * 1024]);
    let req = request(Method::POST, body.clone(), false);
    let (_, up) = setup.run(req, always(Step::ReadThen(503))).await;
    assert_eq!(up.tries.len(), 3, "64 KiB fits the bound");
    assert!(up.tries.iter().all(|t| t.body.as_ref() == Some(&body)));
}

#[tokio::test(start_paused = true)]
async fn a_body_past_the_bound_is_not_replayed() {
    let setup = Setup::new(2).policy(policy(2, &["5xx"]));
    for length in [false, true] {
        let body = Bytes::from(vec![b'x'; 64 * 1024 + 1]);
        let req = request(Method::POST, body.clone(), length);
        let (result, up) = setup.run(req, always(Step::ReadThen(503))).await;
        assert_eq!(status(&result), 503, "length {length}");
        assert_eq!(up.tries.len(), 1, "length {length}: the copy was dropped");
        assert_eq!(up.tries[0].body.as_ref(), Some(&body), "streamed whole");
        assert!(up.flags.is_empty(), "{:?}", up.flags);
        assert_eq!(setup.budget.counts(clock()).1, 0, "no retry was spent");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_past_the_bound_is_still_retried_after_a_connect_failure() {
    let setup = Setup::new(2).policy(policy(2, &["5xx"]));
    let body = Bytes::from(vec![b'x'; 300 * 1024]);
    let req = request(Method::POST, body.clone(), false);
    let (result, up) = setup
        .run(req, in_turn(&[Step::Refused, Step::ReadThen(200)]))
        .await;
    assert_eq!(status(&result), 200);
    assert_eq!(
        up.tries[1].body.as_ref(),
        Some(&body),
        "nothing was read before"
    );
}

#[tokio::test(start_paused = true)]
async fn without_retries_the_body_is_streamed_untouched() {
    let setup = Setup::new(2).policy(policy(0, &["5xx"]));
    let body = Bytes::from(vec![b'x'; 300 * 1024]);
    let req = request(Method::POST, body.clone(), true);
    let (result, up) = setup.run(req, always(Step::ReadThen(503))).await;
    assert_eq!(status(&result), 503);
    assert_eq!(up.tries.len(), 1);
    assert_eq!(up.tries[0].body.as_ref(), Some(&body));
    assert!(up.flags.is_empty(), "attempts 0 spends no retries");
}

#[tokio::test(start_paused = true)]
async fn every_try_counts_for_outlier_detection() {
    // Without `outlierDetection`, five connect failures in a row eject a
    // host (failure accrual). One endpoint and two retries: the first
    // request's three tries count three, the second's two more eject it.
    let setup = Setup::new(1);
    let host = &setup.cluster.endpoints()[0];
    let ejected = || host.is_ejected(std::time::Instant::now(), setup.cluster.ejection());
    let (_, up) = setup.get(always(Step::Refused)).await;
    assert_eq!(up.tries.len(), 3);
    assert!(!ejected(), "three failures so far");
    let _ = setup.get(always(Step::Refused)).await;
    assert!(ejected(), "the fifth failure, a retry's, ejects it");
}
