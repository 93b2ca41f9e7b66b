//! The attempt loop: one request's tries on its destination.
//!
//! [`Attempts::run`] makes the client's body replayable (when a retry can
//! follow), picks an endpoint, sends a try through an [`Upstream`] (the
//! outbound listener's sends over the pool; tests script theirs), bounds
//! it by `perTryTimeout`, records its outcome for outlier detection, and
//! decides whether to retry: the policy's `retryOn`, the attempts left,
//! whether the body can still be replayed, `maxRetries` and the retry
//! budget. A retry waits a jittered backoff and goes to another endpoint
//! than those that already failed, when the cluster has one. The route
//! `timeout` bounds it all.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;

use super::body::{AttemptBody, replayable};
use super::{Retries, RetryBudget, RetryPolicy, TryFailure};
use crate::config::Cluster;
use crate::error::ProxyError;
use crate::telemetry::stats;
use crate::upstream::{Endpoint, Outcome, UpstreamError};

/// The error type a client body may fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response flag of a request whose retries were all spent, or whose
/// next retry `maxRetries` refused (Envoy's `URX`).
pub(crate) const RETRIES_EXHAUSTED: &str = "URX";

/// The response flag of a request whose retry the retry budget refused
/// (Remora's own: Envoy has no retry budget of this kind).
pub(crate) const RETRY_BUDGET_REFUSED: &str = "URB";

/// What the attempt loop asks of the request path: send one try to an
/// endpoint, and note retries and flags for the access log and the span.
/// `B` is the client's body type.
pub(crate) trait Upstream<B> {
    /// The response body.
    type Body;

    /// Sends one try to `endpoint`. A [`ProxyError::Upstream`] is the try's
    /// failure, which the loop may retry; any other error ends the request
    /// at once.
    fn send(
        &mut self,
        endpoint: &Arc<Endpoint>,
        parts: Parts,
        body: AttemptBody<B>,
    ) -> impl Future<Output = Result<Response<Self::Body>, ProxyError>>;

    /// Retry `n` (1-based) is about to be made, for `reason`.
    fn retrying(&mut self, n: u32, reason: &str);

    /// The request earns a response flag ([`RETRIES_EXHAUSTED`],
    /// [`RETRY_BUDGET_REFUSED`]).
    fn flag(&mut self, flag: &'static str);
}

/// The route `timeout`: when it passes, and its length for the error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTimeout {
    /// When it passes.
    pub(crate) at: Instant,
    /// The route's `timeout`.
    pub(crate) after: Duration,
}

impl RouteTimeout {
    /// A route timeout of `after`, starting now.
    pub(crate) fn from_now(after: Duration) -> Self {
        Self {
            at: Instant::now() + after,
            after,
        }
    }
}

/// One request's tries: where they go, under which policy and budget.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    /// The destination: its endpoints, `maxRetries`, outlier detection.
    pub(crate) cluster: &'a Cluster,
    /// The route's `retries`.
    pub(crate) policy: &'a RetryPolicy,
    /// The destination service's retry budget.
    pub(crate) budget: &'a RetryBudget,
    /// The proxy's body bound, backoff and jitter.
    pub(crate) retries: &'a Retries,
    /// The route's name, for the log.
    pub(crate) route: &'a str,
    /// The route's `timeout`, if it has one.
    pub(crate) timeout: Option<RouteTimeout>,
}

/// How one try ended, when it did not end with a response.
#[derive(Debug)]
enum TryError {
    Upstream(UpstreamError),
    PerTryTimeout { after: Duration, address: String },
}

impl TryError {
    fn into_proxy_error(self) -> ProxyError {
        match self {
            Self::Upstream(e) => ProxyError::Upstream(e),
            Self::PerTryTimeout { after, address } => ProxyError::PerTryTimeout { after, address },
        }
    }
}

type TryResult<R> = Result<Response<R>, TryError>;

impl Attempts<'_> {
    /// Counts the request in the budget and tries until a try succeeds or
    /// may not be retried; the last try's result is the answer. The route
    /// timeout, if any, bounds the tries and backoffs until the response
    /// headers (its caller bounds the body with [`Self::timeout`]).
    pub(crate) async fn run<B, U>(
        &self,
        parts: Parts,
        body: B,
        upstream: &mut U,
    ) -> Result<Response<U::Body>, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
        U: Upstream<B>,
    {
        self.budget.deposit(clock());
        let tries = self.tries(parts, body, upstream);
        let Some(timeout) = self.timeout else {
            return tries.await;
        };
        match tokio::time::timeout_at(timeout.at, tries).await {
            Ok(result) => result,
            Err(_) => {
                stats::UPSTREAM_TIMEOUT.inc();
                Err(ProxyError::Timeout {
                    after: timeout.after,
                })
            }
        }
    }

    async fn tries<B, U>(
        &self,
        parts: Parts,
        body: B,
        upstream: &mut U,
    ) -> Result<Response<U::Body>, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
        U: Upstream<B>,
    {
        let attempts = self.policy.attempts;
        let (replay, mut body) = replayable(
            &parts.headers,
            body,
            self.retries.buffer_bytes,
            attempts > 0,
        )
        .await?;
        let method = parts.method.clone();
        let mut failed: Vec<Arc<Endpoint>> = Vec::new();
        let mut retry = 0;
        // The retry in flight, under `maxRetries`: held until the request
        // ends or its next retry.
        let mut retry_guard = None;
        loop {
            let endpoint = self.pick(&failed)?;
            if retry == attempts || !replay.is_replayable() {
                // The last possible try takes the head itself.
                let result = self.try_once(upstream, &endpoint, parts, body).await?;
                if retry > 0 && retry == attempts && self.should_retry(&method, &result) {
                    upstream.flag(RETRIES_EXHAUSTED);
                }
                return result.map_err(TryError::into_proxy_error);
            }
            let result = self
                .try_once(upstream, &endpoint, clone_parts(&parts), body)
                .await?;
            // A teed body may have outgrown its copy during the try.
            if !self.should_retry(&method, &result) || !replay.is_replayable() {
                return result.map_err(TryError::into_proxy_error);
            }
            // This request's previous retry, if any, is over: its place
            // under `maxRetries` is free for this one, or for another's.
            drop(retry_guard.take());
            let Some(guard) = self.cluster.try_start_retry() else {
                stats::RETRY_OVERFLOW.inc();
                upstream.flag(RETRIES_EXHAUSTED);
                return result.map_err(TryError::into_proxy_error);
            };
            if !self.budget.try_withdraw(clock()) {
                stats::RETRY_BUDGET_EXHAUSTED.inc();
                upstream.flag(RETRY_BUDGET_REFUSED);
                tracing::debug!(route = self.route, "retry refused by the retry budget");
                return result.map_err(TryError::into_proxy_error);
            }
            // The retry's body is taken now, which stops an earlier try
            // still pulling the client's body from outgrowing the copy
            // during the backoff. If it did so since the check above, that
            // try's answer stands.
            let Some(next) = replay.for_retry() else {
                return result.map_err(TryError::into_proxy_error);
            };
            body = next;
            let reason = retry_reason(failure_of(&result));
            retry_guard = Some(guard);
            drop(result);
            retry += 1;
            stats::RETRY_ATTEMPTS.inc();
            upstream.retrying(retry, &reason);
            failed.push(endpoint);
            let unit = (self.retries.jitter)();
            tokio::time::sleep(self.retries.backoff.wait(retry, unit)).await;
        }
    }

    fn should_retry<R>(&self, method: &Method, result: &TryResult<R>) -> bool {
        self.policy.should_retry(method, failure_of(result))
    }

    /// An endpoint of the cluster, another than those in `failed` if it has
    /// one; the no-healthy-upstream error (`UH`) if it has none at all.
    fn pick(&self, failed: &[Arc<Endpoint>]) -> Result<Arc<Endpoint>, ProxyError> {
        let cluster = self.cluster;
        cluster
            .pick_endpoint_avoiding(failed)
            .cloned()
            .ok_or_else(|| ProxyError::NoEndpoint {
                service: cluster.service().to_owned(),
                subset: if cluster.subset().is_empty() {
                    "(none)".to_owned()
                } else {
                    cluster.subset().to_owned()
                },
            })
    }

    /// One try on `endpoint`, bounded by `perTryTimeout`, its outcome
    /// recorded for outlier detection. `Err` is an error that ends the
    /// request whatever the policy (one that is no try's failure).
    async fn try_once<B, U>(
        &self,
        upstream: &mut U,
        endpoint: &Arc<Endpoint>,
        parts: Parts,
        body: AttemptBody<B>,
    ) -> Result<TryResult<U::Body>, ProxyError>
    where
        U: Upstream<B>,
    {
        let send = upstream.send(endpoint, parts, body);
        let sent = match self.policy.per_try_timeout {
            None => send.await,
            Some(after) => match tokio::time::timeout(after, send).await {
                Ok(sent) => sent,
                Err(_) => {
                    stats::UPSTREAM_PER_TRY_TIMEOUT.inc();
                    let address = endpoint.address().to_owned();
                    let timed_out = Err(TryError::PerTryTimeout { after, address });
                    return Ok(self.recorded(endpoint, timed_out));
                }
            },
        };
        let result = match sent {
            Ok(resp) => Ok(resp),
            Err(ProxyError::Upstream(e)) => Err(TryError::Upstream(e)),
            Err(other) => return Err(other),
        };
        Ok(self.recorded(endpoint, result))
    }

    /// Records what a try on `endpoint` came to, for outlier detection.
    fn recorded<R>(&self, endpoint: &Arc<Endpoint>, result: TryResult<R>) -> TryResult<R> {
        let outcome = match &result {
            Ok(resp) => Some(Outcome::Response(resp.status())),
            Err(TryError::PerTryTimeout { .. }) => Some(Outcome::Reset),
            Err(TryError::Upstream(e)) if e.is_overflow() => {
                stats::UPSTREAM_OVERFLOW.inc();
                None
            }
            // The pool's race with the upstream's idle close, not a sick host.
            Err(TryError::Upstream(e)) if e.is_stale() => None,
            // Our own missing identity says nothing about the host.
            Err(TryError::Upstream(e)) if e.is_missing_identity() => None,
            Err(TryError::Upstream(e)) if e.is_connect_failure() => Some(Outcome::ConnectFailure),
            Err(TryError::Upstream(_)) => Some(Outcome::Reset),
        };
        if let Some(outcome) = outcome {
            self.cluster.record(endpoint, outcome);
        }
        result
    }
}

/// The budget's clock: tokio's, which tests pause and advance.
fn clock() -> std::time::Instant {
    Instant::now().into_std()
}

/// Why a try failed, as the retry decision sees it.
fn failure_of<R>(result: &TryResult<R>) -> TryFailure<'_> {
    match result {
        Ok(resp) => TryFailure::Response(resp.status(), resp.headers()),
        Err(TryError::Upstream(e)) => TryFailure::Error(e),
        Err(TryError::PerTryTimeout { .. }) => TryFailure::PerTryTimeout,
    }
}

/// Why a try is retried, for the span's `retry` event.
fn retry_reason(failure: TryFailure<'_>) -> String {
    match failure {
        TryFailure::Response(status, _) => status.as_u16().to_string(),
        TryFailure::Error(e) if e.is_connect_failure() => "connect-failure".to_owned(),
        TryFailure::Error(e) if e.is_refused_stream() => "refused-stream".to_owned(),
        TryFailure::Error(e) if e.is_stale() => "stale-connection".to_owned(),
        TryFailure::Error(_) => "reset".to_owned(),
        TryFailure::PerTryTimeout => "per-try-timeout".to_owned(),
    }
}

/// A copy of the request head for another try (extensions are not kept:
/// nothing on the outbound path reads them).
fn clone_parts(p: &Parts) -> Parts {
    let mut req = Request::new(());
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.version_mut() = p.version;
    *req.headers_mut() = p.headers.clone();
    req.into_parts().0
}

#[cfg(test)]
mod tests;
