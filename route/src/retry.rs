//! A route's retry policy, compiled once from the snapshot, and the one
//! function that decides whether a failed try may be retried.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use remora_proto::pb;

/// Retries when the route has no `retries` block: Istio's default count.
pub const DEFAULT_ATTEMPTS: u32 = 2;

/// Istio's default retriable status when `retries` names no `retryOn`.
const DEFAULT_RETRIABLE_STATUS: u16 = 503;

/// One `retryOn` condition as Istio writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IstioCondition {
    /// An HTTP condition.
    Http(pb::RetryCondition),
    /// A gRPC condition: this status code.
    Grpc(u32),
}

/// The `retryOn` names Remora implements, Envoy's meanings, with what each
/// travels as: the one table the control plane parses with and `remora
/// describe` prints with.
pub const ISTIO_CONDITIONS: [(&str, IstioCondition); 13] = [
    ("5xx", IstioCondition::Http(pb::RetryCondition::ServerError)),
    (
        "gateway-error",
        IstioCondition::Http(pb::RetryCondition::GatewayError),
    ),
    ("reset", IstioCondition::Http(pb::RetryCondition::Reset)),
    (
        "reset-before-request",
        IstioCondition::Http(pb::RetryCondition::ResetBeforeRequest),
    ),
    (
        "connect-failure",
        IstioCondition::Http(pb::RetryCondition::ConnectFailure),
    ),
    (
        "retriable-4xx",
        IstioCondition::Http(pb::RetryCondition::Retriable4xx),
    ),
    (
        "refused-stream",
        IstioCondition::Http(pb::RetryCondition::RefusedStream),
    ),
    (
        "retriable-status-codes",
        IstioCondition::Http(pb::RetryCondition::RetriableStatusCodes),
    ),
    ("cancelled", IstioCondition::Grpc(1)),
    ("deadline-exceeded", IstioCondition::Grpc(4)),
    ("internal", IstioCondition::Grpc(13)),
    ("resource-exhausted", IstioCondition::Grpc(8)),
    ("unavailable", IstioCondition::Grpc(14)),
];

/// The condition an Istio `retryOn` name stands for.
pub fn istio_condition(name: &str) -> Option<IstioCondition> {
    ISTIO_CONDITIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

/// The Istio name of a condition (for `remora describe`).
pub fn istio_name(condition: IstioCondition) -> Option<&'static str> {
    ISTIO_CONDITIONS
        .iter()
        .find(|(_, c)| *c == condition)
        .map(|(n, _)| *n)
}

/// The `retryOn` conditions, Envoy's meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `5xx`: any 5xx, or no response at all (connect failure, reset,
    /// refused stream, per-try timeout).
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504, or no response at all.
    pub gateway_error: bool,
    /// `reset`: the connection broke or timed out before the response.
    pub reset: bool,
    /// `connect-failure`.
    pub connect_failure: bool,
    /// `refused-stream`: the h2 stream was refused (never processed).
    pub refused_stream: bool,
    /// `retriable-4xx`: 409.
    pub retriable_4xx: bool,
    /// `retriable-status-codes` and bare codes: these statuses.
    pub status_codes: Vec<u16>,
    /// `reset-before-request`: failures where the request never reached
    /// the app. Always on: such failures are safe for every method.
    pub reset_before_request: bool,
    /// gRPC statuses read from `grpc-status` in the response headers
    /// (trailers-only responses): `cancelled` 1, `deadline-exceeded` 4,
    /// `resource-exhausted` 8, `internal` 13, `unavailable` 14.
    pub grpc_codes: Vec<u32>,
}

/// A route's compiled retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// Bounds each try until its response headers.
    pub per_try_timeout: Option<Duration>,
    /// The conditions.
    pub on: RetryOn,
    /// The user listed `retryOn`: status conditions then apply to every
    /// method. Otherwise non-idempotent methods are retried only when the
    /// request never reached the app (istio#50506).
    pub explicit: bool,
}

impl Default for RetryPolicy {
    /// No `retries` block: up to two retries of failures where the request
    /// never reached the app, for any method.
    fn default() -> Self {
        Self {
            attempts: DEFAULT_ATTEMPTS,
            per_try_timeout: None,
            on: RetryOn {
                reset_before_request: true,
                connect_failure: true,
                refused_stream: true,
                ..RetryOn::default()
            },
            explicit: false,
        }
    }
}

/// What the retry decision needs to know about an error of a try: the
/// proxy's upstream error answers it, and tests can make up their own.
pub trait AttemptError {
    /// A circuit-breaker limit refused the try (never retried).
    fn is_overflow(&self) -> bool;
    /// The request provably never reached the app.
    fn never_reached_app(&self) -> bool;
    /// A reused connection the upstream had closed while idle.
    fn is_stale(&self) -> bool;
    /// `connect-failure`.
    fn is_connect_failure(&self) -> bool;
    /// `refused-stream`: the h2 stream was refused.
    fn is_refused_stream(&self) -> bool;
    /// `reset`: the connection broke before the response.
    fn is_reset(&self) -> bool;
}

/// Why a try failed, as the retry decision sees it.
#[derive(Debug)]
pub enum TryFailure<'a, E> {
    /// The upstream answered with this status and headers.
    Response(StatusCode, &'a HeaderMap),
    /// The upstream failed before answering.
    Error(&'a E),
    /// The per-try timeout fired before the response headers.
    PerTryTimeout,
}

impl<E> Clone for TryFailure<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for TryFailure<'_, E> {}

impl RetryPolicy {
    /// Compiles `retries`; `None` gives the safe default. Errors name the
    /// field; the caller adds the route.
    pub fn compile(p: Option<&pb::RetryPolicy>) -> Result<Self, String> {
        let Some(p) = p else {
            return Ok(Self::default());
        };
        let mut on = RetryOn {
            reset_before_request: true,
            ..RetryOn::default()
        };
        for code in &p.retriable_status_codes {
            on.status_codes.push(status_code(*code)?);
        }
        for &value in &p.retry_on {
            match pb::RetryCondition::try_from(value) {
                Ok(pb::RetryCondition::ServerError) => on.server_error = true,
                Ok(pb::RetryCondition::GatewayError) => on.gateway_error = true,
                Ok(pb::RetryCondition::Reset) => on.reset = true,
                Ok(pb::RetryCondition::ConnectFailure) => on.connect_failure = true,
                Ok(pb::RetryCondition::RefusedStream) => on.refused_stream = true,
                Ok(pb::RetryCondition::Retriable4xx) => on.retriable_4xx = true,
                Ok(
                    pb::RetryCondition::RetriableStatusCodes
                    | pb::RetryCondition::ResetBeforeRequest,
                ) => {}
                Ok(pb::RetryCondition::Unspecified) | Err(_) => {
                    return Err(format!("retries.retryOn: unknown condition {value}"));
                }
            }
        }
        for &code in &p.retriable_grpc_codes {
            if code as usize >= crate::grpc::STATUS_NAMES.len() {
                return Err(format!(
                    "retries.retryOn: gRPC status {code} is not in 0..=16"
                ));
            }
            on.grpc_codes.push(code);
        }
        let explicit = !p.retry_on.is_empty() || !p.retriable_grpc_codes.is_empty();
        if !explicit {
            // Istio's default retryOn when a `retries` block names none.
            on.connect_failure = true;
            on.refused_stream = true;
            on.grpc_codes.extend([1, 14]);
            on.status_codes.push(DEFAULT_RETRIABLE_STATUS);
        }
        on.status_codes.sort_unstable();
        on.status_codes.dedup();
        on.grpc_codes.sort_unstable();
        on.grpc_codes.dedup();
        Ok(Self {
            attempts: p.attempts,
            per_try_timeout: crate::duration::zero_is_none(
                "retries.perTryTimeout",
                p.per_try_timeout.as_ref(),
            )?,
            on,
            explicit,
        })
    }

    /// Whether a try that failed this way may be retried for `method`
    /// (attempts left and the budget are the caller's to check).
    ///
    /// Overflow (a circuit-breaker limit) is never retried. A failure where
    /// the request never reached the app is always retried, and so is an
    /// idempotent request on a pooled connection the upstream had closed
    /// while idle. Any other
    /// condition applies to a non-idempotent method only when the user
    /// listed `retryOn` explicitly.
    pub fn should_retry<E: AttemptError>(
        &self,
        method: &Method,
        failure: TryFailure<'_, E>,
    ) -> bool {
        if let TryFailure::Error(e) = failure {
            if e.is_overflow() {
                return false;
            }
            if e.never_reached_app() {
                return true;
            }
            // A reused connection the upstream had closed while idle: the
            // app almost surely never saw the request, but that cannot be
            // proven, so only methods that may be repeated are retried
            // without being asked (as browsers and Go's net/http do).
            if e.is_stale() && is_idempotent(method) {
                return true;
            }
        }
        if !self.explicit && !is_idempotent(method) {
            return false;
        }
        let on = &self.on;
        let no_response = on.server_error || on.gateway_error;
        match failure {
            TryFailure::Error(e) => {
                (e.is_connect_failure() && on.connect_failure)
                    || (e.is_refused_stream() && on.refused_stream)
                    || (e.is_reset() && on.reset)
                    || no_response
            }
            TryFailure::PerTryTimeout => on.reset || no_response,
            TryFailure::Response(status, headers) => {
                let code = status.as_u16();
                (on.server_error && status.is_server_error())
                    || (on.gateway_error && matches!(code, 502..=504))
                    || (on.retriable_4xx && code == 409)
                    || on.status_codes.contains(&code)
                    || grpc_status(headers).is_some_and(|g| on.grpc_codes.contains(&g))
            }
        }
    }
}

/// Methods RFC 9110 calls idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The `grpc-status` of a trailers-only response (in the headers).
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn status_code(code: u32) -> Result<u16, String> {
    match u16::try_from(code) {
        Ok(c @ 100..=599) => Ok(c),
        _ => Err(format!(
            "retries.retryOn: status code {code} is not in 100..=599"
        )),
    }
}
