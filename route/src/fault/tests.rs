use super::*;

fn fault(delay: Option<f64>, abort: Option<f64>) -> pb::Fault {
    pb::Fault {
        delay: Some(pb::FaultDelay {
            fixed_delay: Some(Duration::from_millis(100).into()),
            percentage: delay,
        }),
        abort: Some(pb::FaultAbort {
            status: Some(pb::fault_abort::Status::HttpStatus(503)),
            percentage: abort,
        }),
    }
}

#[test]
fn absent_percentage_is_never() {
    let f = FaultPolicy::compile(Some(&fault(None, None))).expect("valid");
    assert!(!f.is_active());
    assert_eq!((f.delay(0), f.abort(0)), (None, None));
}

#[test]
fn percentages_select_that_share_of_rolls() {
    let f = FaultPolicy::compile(Some(&fault(Some(100.0), Some(50.0)))).expect("valid");
    assert_eq!(f.delay(MILLION - 1), Some(Duration::from_millis(100)));
    assert_eq!(
        f.abort(499_999),
        Some(Abort::Http(StatusCode::SERVICE_UNAVAILABLE))
    );
    assert_eq!(f.abort(500_000), None);
    let share = |p: f64| {
        let p = Percentage::from_percent(p).expect("in range");
        (0..MILLION).step_by(100).filter(|r| p.applies(*r)).count()
    };
    assert_eq!(share(0.0), 0);
    assert_eq!(share(0.1), 10);
    assert_eq!(share(12.5), 1_250);
    assert_eq!(share(100.0), 10_000);
}

#[test]
fn delay_and_abort_are_independent() {
    let f = FaultPolicy::compile(Some(&fault(Some(30.0), None))).expect("valid");
    assert!(f.delay(0).is_some() && f.abort(0).is_none());
    let f = FaultPolicy::compile(Some(&fault(None, Some(30.0)))).expect("valid");
    assert!(f.delay(0).is_none() && f.abort(0).is_some());
}

#[test]
fn real_rolls_land_near_the_percentage() {
    let p = Percentage::from_percent(50.0).expect("in range");
    let hits = (0..10_000)
        .filter(|_| p.applies(Percentage::roll()))
        .count();
    // 10,000 × 0.5 ± 5 sigma (sigma = 50).
    assert!((4_750..=5_250).contains(&hits), "{hits}");
}

#[test]
fn invalid_faults_are_rejected_with_the_field() {
    let err = FaultPolicy::compile(Some(&fault(Some(100.5), None))).expect_err("out of range");
    assert!(
        err.contains("fault.delay.percentage") && err.contains("100.5"),
        "{err}"
    );
    assert!(FaultPolicy::compile(Some(&fault(None, Some(-1.0)))).is_err());
    assert!(FaultPolicy::compile(Some(&fault(None, Some(f64::NAN)))).is_err());
    let mut f = fault(None, Some(10.0));
    f.abort.as_mut().expect("abort").status = Some(pb::fault_abort::Status::HttpStatus(99));
    assert!(
        FaultPolicy::compile(Some(&f))
            .expect_err("bad")
            .contains("httpStatus")
    );
    f.abort.as_mut().expect("abort").status = Some(pb::fault_abort::Status::GrpcStatus(17));
    assert!(
        FaultPolicy::compile(Some(&f))
            .expect_err("bad")
            .contains("grpcStatus: 17")
    );
    f.abort.as_mut().expect("abort").status = Some(pb::fault_abort::Status::GrpcStatus(14));
    assert_eq!(
        FaultPolicy::compile(Some(&f)).expect("valid").abort(0),
        Some(Abort::Grpc(14))
    );
}
