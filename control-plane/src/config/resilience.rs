//! `timeout`, `retries` and `fault` on HTTP routes.
//!
//! The proxy enforces all three. What Remora does not implement (some
//! `retries` and `fault` fields, a few `retryOn` conditions) is an error
//! naming it, never silently ignored.

use super::cursor::{Ctx, Map, Node, Schema, TransposeNone, list};
use super::model::{AbortStatus, Fault, FaultAbort, FaultDelay, Retries};
use super::suggest::closest;
use super::values;
use std::time::Duration;

const RETRIES: Schema = Schema {
    known: &["attempts", "perTryTimeout", "retryOn"],
    unsupported: &[
        "retryRemoteLocalities",
        "retryIgnorePreviousHosts",
        "backoff",
    ],
};

const FAULT: Schema = Schema {
    known: &["delay", "abort"],
    unsupported: &[],
};

const DELAY: Schema = Schema {
    known: &["fixedDelay", "percentage"],
    unsupported: &["percent", "exponentialDelay"],
};

const ABORT: Schema = Schema {
    known: &["httpStatus", "grpcStatus", "percentage"],
    unsupported: &["http2Error"],
};

const PERCENTAGE: Schema = Schema {
    known: &["value"],
    unsupported: &[],
};

/// The `retryOn` conditions the proxy implements, with Envoy's meanings:
/// the names of the table the proxies share ([`remora_route::retry`]).
fn retry_on_names() -> Vec<&'static str> {
    remora_route::retry::ISTIO_CONDITIONS
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

/// Envoy conditions Istio passes through that Remora does not implement.
const RETRY_ON_UNSUPPORTED: &[&str] = &[
    "envoy-ratelimited",
    "retriable-headers",
    "http3-post-connect-failure",
];

/// gRPC status names, by code: the table the proxies read too.
const GRPC_STATUSES: &[&str] = &remora_route::grpc::STATUS_NAMES;

/// What a route's resilience fields parsed to.
pub(crate) struct RouteResilience {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<Retries>,
    pub(crate) fault: Option<Fault>,
}

/// Reads `timeout`, `retries` and `fault`; `None` when one of them is invalid
/// (the errors are recorded).
pub(crate) fn parse_route_fields(ctx: &mut Ctx, route: &Map<'_>) -> Option<RouteResilience> {
    let timeout = route
        .get("timeout")
        .map(|n| optional_timeout(ctx, n))
        .transpose_none();
    let retries = route
        .get("retries")
        .map(|n| retries(ctx, n))
        .transpose_none();
    let fault = route.get("fault").map(|n| fault(ctx, n)).transpose_none();
    Some(RouteResilience {
        timeout: timeout?.flatten(),
        retries: retries?,
        fault: fault?,
    })
}

/// A timeout where `0s` means none, as in Istio: `Some(None)`.
fn optional_timeout(ctx: &mut Ctx, node: &Node<'_>) -> Option<Option<Duration>> {
    values::duration_or_zero(ctx, node).map(|d| (!d.is_zero()).then_some(d))
}

fn retries(ctx: &mut Ctx, node: &Node<'_>) -> Option<Retries> {
    let r = node.map(ctx, &RETRIES)?;
    let attempts = r.required(ctx, "attempts").and_then(|n| n.u32(ctx));
    let per_try_timeout = r
        .get("perTryTimeout")
        .map(|n| optional_timeout(ctx, n))
        .transpose_none();
    let retry_on = match r.get("retryOn") {
        None => Some((Vec::new(), Vec::new())),
        Some(n) => retry_on(ctx, n),
    };
    let (retry_on, retriable_status_codes) = retry_on?;
    Some(Retries {
        attempts: attempts?,
        per_try_timeout: per_try_timeout?.flatten(),
        retry_on,
        retriable_status_codes,
    })
}

/// Splits `retryOn` into named conditions and bare status codes, checking each.
fn retry_on(ctx: &mut Ctx, node: &Node<'_>) -> Option<(Vec<String>, Vec<u16>)> {
    let text = node.str(ctx)?;
    let mut names = Vec::new();
    let mut codes = Vec::new();
    let mut ok = true;
    for condition in text.split(',').map(str::trim) {
        let problem = if !condition.is_empty() && condition.bytes().all(|b| b.is_ascii_digit()) {
            match condition.parse::<u16>() {
                Ok(code @ 100..=599) => {
                    codes.push(code);
                    continue;
                }
                _ => {
                    format!("retry condition `{condition}` is not an HTTP status code (100 to 599)")
                }
            }
        } else if remora_route::retry::istio_condition(condition).is_some() {
            names.push(condition.to_owned());
            continue;
        } else if RETRY_ON_UNSUPPORTED.contains(&condition) {
            format!(
                "retry condition `{condition}` is not supported by Remora; use an HTTP status \
                 code or one of {}",
                list(&retry_on_names())
            )
        } else {
            let names = retry_on_names();
            let hint = match closest(condition, names.iter().copied()) {
                Some(name) => format!("did you mean `{name}`?"),
                None => format!("expected an HTTP status code or one of {}", list(&names)),
            };
            format!("unknown retry condition `{condition}`; {hint}")
        };
        ctx.error(node.line(), node.path(), problem);
        ok = false;
    }
    ok.then_some((names, codes))
}

fn fault(ctx: &mut Ctx, node: &Node<'_>) -> Option<Fault> {
    let f = node.map(ctx, &FAULT)?;
    let delay = f.get("delay").map(|n| delay(ctx, n)).transpose_none();
    let abort = f.get("abort").map(|n| abort(ctx, n)).transpose_none();
    let (delay, abort) = (delay?, abort?);
    if delay.is_none() && abort.is_none() {
        ctx.error(f.line(), node.path(), "needs `delay`, `abort` or both");
        return None;
    }
    Some(Fault { delay, abort })
}

fn delay(ctx: &mut Ctx, node: &Node<'_>) -> Option<FaultDelay> {
    let d = node.map(ctx, &DELAY)?;
    let fixed_delay = d
        .required(ctx, "fixedDelay")
        .and_then(|n| values::duration(ctx, n));
    let percentage = d
        .get("percentage")
        .map(|n| percentage(ctx, n))
        .transpose_none();
    Some(FaultDelay {
        fixed_delay: fixed_delay?,
        percentage: percentage?,
    })
}

fn abort(ctx: &mut Ctx, node: &Node<'_>) -> Option<FaultAbort> {
    let a = node.map(ctx, &ABORT)?;
    let status = match (a.get("httpStatus"), a.get("grpcStatus")) {
        (Some(http), None) => http
            .int_in(ctx, 200..=599)
            .and_then(|s| u16::try_from(s).ok())
            .map(AbortStatus::Http),
        (None, Some(grpc)) => grpc_status(ctx, grpc).map(AbortStatus::Grpc),
        (Some(_), Some(_)) => {
            ctx.error(
                a.line(),
                node.path(),
                "has both `httpStatus` and `grpcStatus`; give one",
            );
            None
        }
        (None, None) => {
            ctx.error(a.line(), node.path(), "needs `httpStatus` or `grpcStatus`");
            None
        }
    };
    let percentage = a
        .get("percentage")
        .map(|n| percentage(ctx, n))
        .transpose_none();
    Some(FaultAbort {
        status: status?,
        percentage: percentage?,
    })
}

/// A gRPC status name, upper case as Istio requires (`UNAVAILABLE`).
fn grpc_status(ctx: &mut Ctx, node: &Node<'_>) -> Option<String> {
    let name = node.non_empty_str(ctx)?;
    if GRPC_STATUSES.contains(&name) {
        return Some(name.to_owned());
    }
    let by_number = name
        .parse::<usize>()
        .ok()
        .and_then(|code| GRPC_STATUSES.get(code));
    let normalized = name.trim().to_ascii_uppercase().replace('-', "_");
    let hint = if let Some(known) = by_number {
        format!("write the status name, `{known}`, not its number")
    } else if let Some(known) = GRPC_STATUSES.iter().find(|s| **s == normalized) {
        format!("gRPC status names are upper case: `{known}`")
    } else if let Some(known) = closest(&normalized, GRPC_STATUSES.iter().copied()) {
        format!("did you mean `{known}`?")
    } else {
        format!("expected one of {}", list(GRPC_STATUSES))
    };
    ctx.error(
        node.line(),
        node.path(),
        format!("unknown gRPC status `{name}`; {hint}"),
    );
    None
}

fn percentage(ctx: &mut Ctx, node: &Node<'_>) -> Option<f64> {
    let p = node.map(ctx, &PERCENTAGE)?;
    let value_node = p.required(ctx, "value")?;
    let value = value_node.number(ctx)?;
    if !(0.0..=100.0).contains(&value) {
        ctx.error(
            value_node.line(),
            value_node.path(),
            format!("must be between 0 and 100, got {value}"),
        );
        return None;
    }
    Some(value)
}
