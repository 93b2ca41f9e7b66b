//! Scalar value rules shared by every kind: durations, names, hosts.

use std::time::Duration;

use super::cursor::{Ctx, Node};

/// Reads an Istio duration (`"30s"`, `"1.5s"`, `"100ms"`, `"1h30m"`); must be > 0.
pub(crate) fn duration(ctx: &mut Ctx, node: &Node<'_>) -> Option<Duration> {
    let d = duration_or_zero(ctx, node)?;
    if d.is_zero() {
        let text = node.str(ctx).unwrap_or_default();
        ctx.error(
            node.line(),
            node.path(),
            format!("duration `{text}` must be greater than 0"),
        );
        return None;
    }
    Some(d)
}

/// Reads an Istio duration that may be 0 (where Istio reads 0 as "none").
///
/// Like Istio, Remora works in whole milliseconds: a duration with a finer
/// part (`1500us`) is an error rather than silently truncated, which could
/// turn a short timeout into none at all. This is where every Istio
/// duration is parsed; it travels as a `google.protobuf.Duration`, which
/// holds at most 10,000 years, so a longer one is an error here too.
pub(crate) fn duration_or_zero(ctx: &mut Ctx, node: &Node<'_>) -> Option<Duration> {
    let text = node.str(ctx)?;
    let longest = Duration::try_from(remora_proto::Duration::MAX).unwrap_or(Duration::MAX);
    match parse_duration(text) {
        Ok(d) if d > longest => {
            ctx.error(
                node.line(),
                node.path(),
                format!("duration `{text}` is over 10000 years, the most the wire carries"),
            );
            None
        }
        Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
            ctx.error(
                node.line(),
                node.path(),
                format!(
                    "duration `{text}` is not a whole number of milliseconds; Remora (like \
                     Istio) supports millisecond precision"
                ),
            );
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            ctx.error(
                node.line(),
                node.path(),
                format!(
                    "invalid duration `{text}`: {why}; write a number and a unit \
                     (h, m, s, ms, us), such as \"30s\", \"1.5s\" or \"100ms\""
                ),
            );
            None
        }
    }
}

const TOO_LARGE: &str = "it is too large";

/// Parses `<number><unit>` repeated, Go style: `1h30m`, `1.5s`, `250ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| "the unit is missing".to_owned())?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            _ if number.is_empty() => return Err("it does not start with a number".to_owned()),
            _ => return Err(format!("unknown unit `{unit}`")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(format!("`{number}` is not a number"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| TOO_LARGE.to_owned())?
        };
        let mut nanos = whole
            .checked_mul(nanos_per_unit)
            .ok_or_else(|| TOO_LARGE.to_owned())?;
        // Fractional digits beyond nanosecond precision are dropped.
        let mut scale = nanos_per_unit;
        for digit in fraction.chars().take(20) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| TOO_LARGE.to_owned())?;
        // The remainder is below 1e9 and fits.
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        total = total
            .checked_add(Duration::new(secs, sub))
            .ok_or_else(|| TOO_LARGE.to_owned())?;
        rest = tail;
    }
    Ok(total)
}

/// A Kubernetes object name: DNS-1123 subdomain (lowercase alphanumerics,
/// `-` and `.`, starting and ending alphanumeric, at most 253 characters).
pub(crate) fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns1123_label_inner)
}

/// A DNS-1123 label: like a subdomain without dots, at most 63 characters.
pub(crate) fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && is_dns1123_label_inner(name)
}

fn is_dns1123_label_inner(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Reads a resource-style name (`metadata.name`, subset names).
pub(crate) fn object_name<'a>(ctx: &mut Ctx, node: &Node<'a>) -> Option<&'a str> {
    let name = node.non_empty_str(ctx)?;
    if !is_dns1123_subdomain(name) {
        ctx.error(
            node.line(),
            node.path(),
            format!(
                "`{name}` is not a valid name: use lowercase letters, digits, `-` and `.`, \
                 starting and ending with a letter or digit"
            ),
        );
        return None;
    }
    Some(name)
}

/// Reads a service host (`reviews`, `reviews.prod.svc.cluster.local`,
/// `api.example.com`, an IP). Wildcards are not supported yet.
pub(crate) fn host<'a>(ctx: &mut Ctx, node: &Node<'a>) -> Option<&'a str> {
    let host = node.non_empty_str(ctx)?;
    if host.contains('*') {
        ctx.error(
            node.line(),
            node.path(),
            format!("wildcard hosts (`{host}`) are not supported by Remora yet"),
        );
        return None;
    }
    let valid = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        ctx.error(
            node.line(),
            node.path(),
            format!("`{host}` is not a valid host name"),
        );
        return None;
    }
    Some(host)
}

#[cfg(test)]
mod tests;
