//! The renewal schedule on paused time, against an in-memory CA: when renewal happens, what
//! is sent, and how failures are retried up to and past expiry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use remora_certs::{Ca, TrustDomain};
use remora_proto::pb::identity::SignResponse;
use tokio::sync::watch;
use tonic::Code;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::identity::schedule::{RETRY_CAP, RETRY_FLOOR};

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
/// Virtual time the tests may wait; paused time makes it instant.
const PATIENCE: Duration = Duration::from_secs(3600);
/// Tokio's timer resolution.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// One `Sign` call as the CA saw it.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    token: String,
    present_svid: bool,
    csr_pem: String,
}

type Script = Box<dyn Fn(usize, &Call) -> Option<SignError> + Send + Sync>;

/// An in-memory CA whose answers are scripted per call (by index, 0 first).
struct FakeCa {
    ca: Ca,
    lifetime: Duration,
    tls: bool,
    script: Script,
    calls: watch::Sender<Vec<Call>>,
}

impl FakeCa {
    fn new(lifetime: Duration, script: Script) -> Self {
        Self {
            ca: Ca::generate(TrustDomain::new("cluster.local").expect("td")).expect("CA"),
            lifetime,
            tls: true,
            script,
            calls: watch::Sender::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
}

impl Signer for Arc<FakeCa> {
    async fn sign(
        &self,
        request: SignRequest,
        present_svid: bool,
    ) -> Result<SignResponse, SignError> {
        let call = Call {
            at: Instant::now(),
            token: request.token.clone(),
            present_svid,
            csr_pem: request.csr_pem.clone(),
        };
        let index = self.calls.borrow().len();
        let outcome = (self.script)(index, &call);
        self.calls.send_modify(|calls| calls.push(call));
        if let Some(error) = outcome {
            return Err(error);
        }
        let id = SpiffeId::parse(REVIEWS).expect("id");
        let signed = self
            .ca
            .sign_csr(request.csr_pem.as_bytes(), &id, self.lifetime)
            .map_err(|e| SignError::BadResponse(e.to_string()))?;
        let not_after_unix = signed
            .not_after()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(SignResponse {
            cert_chain_pem: signed.cert_chain_pem(),
            trust_bundle_pem: self.ca.trust_bundle_pem(),
            not_after_unix,
            spiffe_id: REVIEWS.to_owned(),
            tls_port: 0,
        })
    }

    fn can_present_svid(&self) -> bool {
        self.tls
    }
}

fn credentials() -> Credentials {
    Credentials {
        id: SpiffeId::parse(REVIEWS).expect("id"),
        token: "v1.default.reviews.mac".to_owned(),
        lifetime_secs: 0,
    }
}

fn unreachable() -> SignError {
    SignError::Unreachable {
        address: "ca:15012".to_owned(),
        reason: "connection refused".to_owned(),
    }
}

fn refused() -> SignError {
    SignError::Refused {
        code: Code::PermissionDenied,
        message: "bootstrap token expired".to_owned(),
    }
}

/// Waits (in virtual time) until the calls satisfy `done`.
async fn wait_calls(ca: &FakeCa, done: impl FnMut(&Vec<Call>) -> bool) {
    let mut rx = ca.calls.subscribe();
    tokio::time::timeout(PATIENCE, rx.wait_for(done))
        .await
        .expect("in time")
        .expect("sender alive");
}

#[tokio::test(start_paused = true)]
async fn renews_half_way_through_the_validity_with_a_new_key() {
    let ca = Arc::new(FakeCa::new(Duration::from_secs(10), Box::new(|_, _| None)));
    let identity = Arc::new(
        first_certificate(&ca, &credentials(), None)
            .await
            .expect("first certificate"),
    );
    let first = identity.current();
    let start = Instant::now();
    // not_after is whole seconds: between 9 and 10 s of validity are left.
    let remaining = first.expires - start;
    assert!(
        remaining > Duration::from_secs(9) && remaining <= Duration::from_secs(10),
        "{remaining:?}"
    );
    assert_eq!(first.renewal, 0);

    let mut renewals = identity.subscribe();
    let task = tokio::spawn(renew_forever(
        Arc::clone(&identity),
        Arc::clone(&ca),
        credentials(),
    ));
    tokio::time::timeout(PATIENCE, renewals.changed())
        .await
        .expect("renewed in time")
        .expect("identity alive");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= remaining.mul_f64(0.45) && elapsed <= remaining.mul_f64(0.55),
        "renewed after {elapsed:?} of {remaining:?}"
    );
    assert!(close(Instant::now(), first.renew_deadline), "on schedule");

    let second = identity.current();
    assert_eq!(second.renewal, 1);
    assert_ne!(second.serial, first.serial);
    let presented = identity.mesh_tls().svid().load().expect("an SVID");
    let (_, leaf) = X509Certificate::from_der(&presented.cert_chain()[0]).expect("leaf");
    assert_eq!(
        crate::identity::hex(leaf.raw_serial()),
        second.serial,
        "new connections present the new certificate"
    );

    let calls = ca.calls();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].csr_pem, calls[1].csr_pem, "a new key each time");
    assert!(calls[1].present_svid, "renewal presents the current SVID");
    assert_eq!(calls[1].token, credentials().token, "and the token");
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_back_off_keep_the_old_certificate_and_never_wait_past_expiry() {
    let ca = Arc::new(FakeCa::new(
        Duration::from_secs(4),
        Box::new(|index, _| (index > 0).then(unreachable)),
    ));
    let identity = Arc::new(
        first_certificate(&ca, &credentials(), None)
            .await
            .expect("first certificate"),
    );
    let first = identity.current();
    let task = tokio::spawn(renew_forever(
        Arc::clone(&identity),
        Arc::clone(&ca),
        credentials(),
    ));
    // Until two attempts after expiry.
    wait_calls(&ca, |calls| {
        calls.iter().filter(|c| c.at > first.expires).count() >= 2
    })
    .await;

    let attempts: Vec<Instant> = ca.calls().iter().skip(1).map(|c| c.at).collect();
    assert!(
        close(attempts[0], first.renew_deadline),
        "the first attempt is on schedule"
    );
    for pair in attempts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap <= RETRY_CAP, "waited {gap:?}");
        if pair[1] < first.expires {
            assert!(gap >= RETRY_FLOOR, "retried after only {gap:?}");
        }
        if pair[0] < first.expires {
            assert!(
                pair[1] <= first.expires + TIMER_TICK,
                "a retry was scheduled past expiry: {:?} after it",
                pair[1] - first.expires
            );
        }
    }
    assert!(
        attempts
            .iter()
            .any(|&at| at >= first.expires && at <= first.expires + TIMER_TICK),
        "an attempt right at expiry: {attempts:?} vs {:?}",
        first.expires
    );
    assert!(attempts.len() >= 4, "{attempts:?}");
    // The old certificate was never replaced; once expired, it no longer makes the proxy ready.
    assert_eq!(identity.current().serial, first.serial);
    assert!(!identity.has_valid_certificate());
    // After expiry the SVID cannot be presented, so the token is sent again.
    let after = ca
        .calls()
        .into_iter()
        .filter(|c| c.at > first.expires)
        .collect::<Vec<_>>();
    assert!(after.iter().all(|c| !c.present_svid && !c.token.is_empty()));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_at_renewal_falls_back_to_the_certificate_at_once() {
    let ca = Arc::new(FakeCa::new(
        Duration::from_secs(60),
        Box::new(|index, call| (index > 0 && !call.token.is_empty()).then(refused)),
    ));
    let identity = Arc::new(
        first_certificate(&ca, &credentials(), None)
            .await
            .expect("first certificate"),
    );
    let deadline = identity.current().renew_deadline;
    let mut renewals = identity.subscribe();
    let task = tokio::spawn(renew_forever(
        Arc::clone(&identity),
        Arc::clone(&ca),
        credentials(),
    ));
    tokio::time::timeout(PATIENCE, renewals.changed())
        .await
        .expect("renewed in time")
        .expect("identity alive");
    let calls = ca.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(!calls[1].token.is_empty() && calls[1].present_svid);
    assert!(calls[2].token.is_empty() && calls[2].present_svid);
    assert!(
        close(calls[2].at, deadline),
        "no backoff after switching to the certificate"
    );

    // The next renewal goes on without the token.
    let second = identity.current();
    tokio::time::timeout(PATIENCE, renewals.changed())
        .await
        .expect("renewed again")
        .expect("identity alive");
    let calls = ca.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[3].token.is_empty());
    assert!(close(calls[3].at, second.renew_deadline));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn the_first_certificate_waits_for_an_unreachable_ca_but_stops_at_a_refusal() {
    let ca = Arc::new(FakeCa::new(
        Duration::from_secs(60),
        Box::new(|index, _| Some(if index < 3 { unreachable() } else { refused() })),
    ));
    let error = first_certificate(&ca, &credentials(), None)
        .await
        .expect_err("refused");
    assert_eq!(error, refused());
    assert!(
        error.to_string().contains("bootstrap token expired"),
        "{error}"
    );
    let calls = ca.calls();
    assert_eq!(calls.len(), 4);
    for (attempt, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let cap = schedule::RETRY_BASE * (1 << attempt);
        assert!(
            gap >= RETRY_FLOOR && gap <= cap + TIMER_TICK,
            "attempt {attempt}: {gap:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_for_another_identity_or_key_is_not_installed() {
    let ca = Ca::generate(TrustDomain::new("cluster.local").expect("td")).expect("CA");
    let key = WorkloadKey::generate().expect("key");
    let ratings = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/ratings").expect("id");
    let signed = ca
        .sign_csr(
            key.csr(&ratings).expect("csr").as_bytes(),
            &ratings,
            Duration::from_secs(60),
        )
        .expect("signed");
    let response = SignResponse {
        cert_chain_pem: signed.cert_chain_pem(),
        trust_bundle_pem: ca.trust_bundle_pem(),
        not_after_unix: 0,
        spiffe_id: ratings.as_str().to_owned(),
        tls_port: 0,
    };
    let error = Issued::check(response.clone(), &key, &credentials().id).expect_err("wrong id");
    assert!(
        error
            .to_string()
            .contains("not spiffe://cluster.local/ns/default/sa/reviews")
    );
    let other_key = WorkloadKey::generate().expect("key");
    let error = Issued::check(response, &other_key, &ratings).expect_err("wrong key");
    assert!(matches!(error, SignError::BadResponse(_)), "{error:?}");
}

/// Whether two instants are the same up to the timer's resolution (sleeps end on a whole
/// millisecond).
fn close(a: Instant, b: Instant) -> bool {
    a.max(b) - a.min(b) <= TIMER_TICK
}
