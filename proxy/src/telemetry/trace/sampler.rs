//! Which requests are traced: the caller's decision when it made one, else
//! a ratio of trace ids (Istio's default is 1%).

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use super::config::SamplingRatio;

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
    pub(crate) ratio: SamplingRatio,
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
                None => ratio_keeps(self.ratio, trace_id),
            },
            None => ratio_keeps(self.ratio, trace_id),
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
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};

    fn sample(sampler: &MeshSampler, cx: Option<&Context>, trace_id: TraceId) -> bool {
        sampler
            .should_sample(cx, trace_id, "GET", &SpanKind::Server, &[], &[])
            .decision
            == SamplingDecision::RecordAndSample
    }

    fn remote(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes([7; 16]),
            SpanId::from_bytes([9; 8]),
            flags,
            true,
            TraceState::NONE,
        ))
    }

    fn ratio(r: f64) -> MeshSampler {
        MeshSampler {
            ratio: SamplingRatio::new(r).expect("valid ratio"),
        }
    }

    #[test]
    fn sampled_parent_is_followed_at_any_ratio() {
        let id = TraceId::from_bytes([0xff; 16]);
        assert!(sample(&ratio(0.0001), Some(&remote(true)), id));
        assert!(!sample(&ratio(1.0), Some(&remote(false)), id));
    }

    #[test]
    fn forced_decision_without_parent_is_obeyed() {
        let id = TraceId::from_bytes([0xff; 16]);
        let keep = Context::new().with_value(ForcedSampling(true));
        let drop = Context::new().with_value(ForcedSampling(false));
        assert!(sample(&ratio(0.0001), Some(&keep), id));
        assert!(!sample(&ratio(1.0), Some(&drop), id));
    }

    #[test]
    fn root_is_sampled_by_ratio_of_trace_ids() {
        let sampler = ratio(0.25);
        let kept = (0u64..4000)
            .filter(|i| {
                let id = u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                sample(
                    &sampler,
                    Some(&Context::new()),
                    TraceId::from_bytes(id.to_be_bytes()),
                )
            })
            .count();
        assert!((800..1200).contains(&kept), "kept {kept} of 4000 at 25%");
    }

    #[test]
    fn ratio_bounds_keep_all_or_nothing() {
        let id = TraceId::from_bytes([0xff; 16]);
        assert!(ratio_keeps(SamplingRatio::new(1.0).expect("valid"), id));
        assert!(!ratio_keeps(
            SamplingRatio::new(0.0).expect("valid"),
            TraceId::from_bytes([0; 16])
        ));
    }
}
