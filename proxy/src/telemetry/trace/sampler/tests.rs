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
        ratio: SamplingControl::pinned(SamplingRatio::new(r).expect("valid ratio")),
    }
}

fn root_sampled(sampler: &MeshSampler) -> bool {
    // The lowest id: kept at any ratio above 0, dropped at 0.
    sample(sampler, Some(&Context::new()), TraceId::from_bytes([0; 16]))
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

#[test]
fn mesh_ratio_changes_the_running_sampler_unless_the_flag_pinned_it() {
    let control = SamplingControl::new(None);
    let sampler = MeshSampler {
        ratio: control.clone(),
    };
    assert_eq!(control.ratio(), SamplingRatio::ISTIO_DEFAULT);
    assert_eq!(
        control.apply_mesh(Some(SamplingRatio::NEVER)),
        SamplingRatio::NEVER
    );
    assert!(!root_sampled(&sampler), "the mesh set 0: nothing is kept");
    assert_eq!(
        control.apply_mesh(Some(SamplingRatio::ALWAYS)),
        SamplingRatio::ALWAYS
    );
    assert!(
        root_sampled(&sampler),
        "the mesh set 100%: everything is kept"
    );
    assert_eq!(
        control.apply_mesh(None),
        SamplingRatio::ISTIO_DEFAULT,
        "a snapshot without the setting restores the default"
    );

    let pinned = SamplingControl::new(Some(SamplingRatio::NEVER));
    let sampler = MeshSampler {
        ratio: pinned.clone(),
    };
    assert!(pinned.is_pinned());
    assert_eq!(
        pinned.apply_mesh(Some(SamplingRatio::ALWAYS)),
        SamplingRatio::NEVER
    );
    assert!(
        !root_sampled(&sampler),
        "the operator's 0 wins over the mesh"
    );
    let pinned = SamplingControl::new(Some(SamplingRatio::ALWAYS));
    assert_eq!(
        pinned.apply_mesh(Some(SamplingRatio::NEVER)),
        SamplingRatio::ALWAYS
    );
    assert_eq!(pinned.apply_mesh(None), SamplingRatio::ALWAYS);
}
