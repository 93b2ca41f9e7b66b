//! Which requests are traced: the caller's decision when it made one, else
//! a ratio of trace ids (Istio's default is 1%).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use super::config::SamplingRatio;

/// The sampling ratio in force, changeable while the proxy runs: the
/// control plane may set it per mesh (`Snapshot.mesh.trace_sampling_percent`),
/// unless the operator pinned it with the proxy's `--trace-sampling`.
///
/// Cheap to clone; clones share one ratio. The tracer reads it on every
/// sampling decision, the discovery client writes it on every applied
/// snapshot ([`SamplingControl::apply_mesh`]).
///
/// # Concurrency
///
/// The ratio is one atomic (the bits of an `f64`), read and written with
/// relaxed ordering: a request that races a snapshot is sampled at the old
/// ratio or the new one, either of which is fine.
#[derive(Debug, Clone)]
pub struct SamplingControl {
    bits: Arc<AtomicU64>,
    /// Set by the operator: the mesh's ratio is ignored.
    pinned: bool,
}

impl SamplingControl {
    /// The ratio from the proxy's flag: `Some` pins it (the control plane
    /// cannot change it); `None` starts at Istio's default (1%) and follows
    /// the mesh.
    pub fn new(flag: Option<SamplingRatio>) -> Self {
        match flag {
            Some(ratio) => Self::pinned(ratio),
            None => Self {
                bits: Arc::new(AtomicU64::new(SamplingRatio::default().get().to_bits())),
                pinned: false,
            },
        }
    }

    /// A ratio no snapshot changes.
    pub(crate) fn pinned(ratio: SamplingRatio) -> Self {
        Self {
            bits: Arc::new(AtomicU64::new(ratio.get().to_bits())),
            pinned: true,
        }
    }

    /// Whether the operator fixed the ratio on the command line.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The ratio in force.
    pub fn ratio(&self) -> SamplingRatio {
        // Only in-range ratios are ever stored, so this cannot fail; the
        // default is a safe answer anyway.
        SamplingRatio::new(f64::from_bits(self.bits.load(Ordering::Relaxed))).unwrap_or_default()
    }

    /// Follows the mesh's setting from an applied snapshot: its ratio when
    /// the snapshot has one, else back to the default (1%). Does nothing
    /// when the ratio is pinned. Returns the ratio in force afterwards.
    pub(crate) fn apply_mesh(&self, mesh: Option<SamplingRatio>) -> SamplingRatio {
        if !self.pinned {
            let ratio = mesh.unwrap_or_default();
            self.bits.store(ratio.get().to_bits(), Ordering::Relaxed);
        }
        self.ratio()
    }
}

impl Default for SamplingControl {
    /// Not pinned, at Istio's default (1%).
    fn default() -> Self {
        Self::new(None)
    }
}

/// A decision made before the span exists, for a request that carried a
/// decision but no ids (`b3: 0`, `b3: d`): put into the parent context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForcedSampling(pub(crate) bool);

/// Parent-based sampling: a remote parent's sampled flag is followed; a
/// [`ForcedSampling`] in the context is obeyed; anything else is sampled by
/// [`ratio_keeps`] on the trace id.
///
/// The proxy resolves a B3 "deferred" parent (ids without a decision)
/// itself, with the same ratio, before the span is built; so every parent
/// that reaches this sampler has its flag set.
#[derive(Debug, Clone)]
pub(crate) struct MeshSampler {
    pub(crate) ratio: SamplingControl,
}

impl ShouldSample for MeshSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let sampled = match parent_context {
            Some(cx) if cx.span().span_context().is_valid() => {
                cx.span().span_context().is_sampled()
            }
            Some(cx) => match cx.get::<ForcedSampling>() {
                Some(forced) => forced.0,
                None => ratio_keeps(self.ratio.ratio(), trace_id),
            },
            None => ratio_keeps(self.ratio.ratio(), trace_id),
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: TraceState::NONE,
        }
    }
}

/// Whether a trace of this id is kept at `ratio`: the id's low 63 bits
/// below `ratio * 2^63`, as OpenTelemetry's `TraceIdRatioBased` does; so
/// every proxy at the same ratio decides the same way for one trace.
pub(crate) fn ratio_keeps(ratio: SamplingRatio, trace_id: TraceId) -> bool {
    let ratio = ratio.get();
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let rnd = u64::from_be_bytes(low) >> 1;
    // `ratio` is in (0, 1), so the bound fits in 63 bits.
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    rnd < bound
}

#[cfg(test)]
mod tests;
