//! `timeout`, `retries` and `fault` on HTTP routes.
//!
//! They are read and validated into the model so that nothing in a file is
//! silently ignored, but each one is reported as an error until the
//! resilience issue makes the proxy enforce them.

use super::cursor::{Ctx, Map, Node, Schema, TransposeNone};
use super::model::{AbortStatus, Fault, FaultAbort, FaultDelay, Retries};
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

/// Envoy's `retry_on` conditions that Istio passes through.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const NOT_YET: &str = "is not supported by Remora yet (arrives with the resilience issue)";

/// What a route's resilience fields parsed to.
pub(crate) struct RouteResilience {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<Retries>,
    pub(crate) fault: Option<Fault>,
}

/// Reads `timeout`, `retries` and `fault`, and reports each one present as not supported yet.
pub(crate) fn parse_route_fields(ctx: &mut Ctx, route: &Map<'_>) -> RouteResilience {
    for key in ["timeout", "retries", "fault"] {
        if let Some(line) = route.key_line(key) {
            ctx.error(
                line,
                &route.node().field_path(key),
                format!("`{key}` {NOT_YET}"),
            );
        }
    }
    RouteResilience {
        timeout: route.get("timeout").and_then(|n| values::duration(ctx, n)),
        retries: route.get("retries").and_then(|n| retries(ctx, n)),
        fault: route.get("fault").and_then(|n| fault(ctx, n)),
    }
}

fn retries(ctx: &mut Ctx, node: &Node<'_>) -> Option<Retries> {
    let r = node.map(ctx, &RETRIES)?;
    let attempts = r.required(ctx, "attempts").and_then(|n| n.u32(ctx));
    let per_try_timeout = r
        .get("perTryTimeout")
        .map(|n| values::duration(ctx, n))
        .transpose_none();
    let retry_on = match r.get("retryOn") {
        None => Some(Vec::new()),
        Some(n) => retry_on(ctx, n),
    };
    Some(Retries {
        attempts: attempts?,
        per_try_timeout: per_try_timeout?,
        retry_on: retry_on?,
    })
}

fn retry_on(ctx: &mut Ctx, node: &Node<'_>) -> Option<Vec<String>> {
    let text = node.str(ctx)?;
    let mut out = Vec::new();
    for condition in text.split(',').map(str::trim) {
        let is_status = condition.len() == 3 && condition.parse::<u16>().is_ok();
        if !(RETRY_ON.contains(&condition) || is_status) {
            ctx.error(
                node.line(),
                node.path(),
                format!(
                    "unknown retry condition `{condition}`; expected an HTTP status code or one of {}",
                    super::cursor::list(RETRY_ON)
                ),
            );
            return None;
        }
        out.push(condition.to_owned());
    }
    Some(out)
}

fn fault(ctx: &mut Ctx, node: &Node<'_>) -> Option<Fault> {
    let f = node.map(ctx, &FAULT)?;
    let delay = f.get("delay").map(|n| delay(ctx, n)).transpose_none();
    let abort = f.get("abort").map(|n| abort(ctx, n)).transpose_none();
    Some(Fault {
        delay: delay?,
        abort: abort?,
    })
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
        (None, Some(grpc)) => grpc
            .non_empty_str(ctx)
            .map(|s| AbortStatus::Grpc(s.to_owned())),
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
