//! gRPC status names (Istio's `grpcStatus`, the gRPC `retryOn`
//! conditions): the one table both the control plane and the proxy read.

/// The gRPC status names, by code (0 to 16), as gRPC and Istio spell them.
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status by its name (`UNAVAILABLE`, any case, `-` or `_`) or
/// number; `None` for anything else.
pub fn code(name: &str) -> Option<u32> {
    if let Ok(n) = name.trim().parse::<u32>() {
        return (n < STATUS_NAMES.len() as u32).then_some(n);
    }
    let wanted = name.trim().to_ascii_uppercase().replace('-', "_");
    STATUS_NAMES
        .iter()
        .position(|n| *n == wanted)
        .map(|i| i as u32)
}

#[cfg(test)]
mod tests;
