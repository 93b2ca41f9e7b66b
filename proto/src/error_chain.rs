//! One line for an error and its causes, as both sides print them.

/// An error and its sources, `: `-separated, each source left out when the
/// text so far already says it: tonic's and hyper's errors say little at
/// the top ("transport error", "client error (Connect)") and the cause
/// below ("Connection refused"), and many of ours already name their cause,
/// which a plain walk down the sources would print again.
///
/// Here because the control plane and the proxy both report tonic's and
/// hyper's errors with it, and this is the crate they share for the wire.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests;
