use std::path::Path;

use super::*;
use crate::config::parse_str;

fn resources(yaml: &str) -> Vec<Resource> {
    let outcome = parse_str(Path::new("test.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    outcome.resources
}

fn node(service: &str, inbound: &str) -> pb::Node {
    pb::Node {
        id: format!("{service}-1.default"),
        service: service.to_owned(),
        namespace: "default".to_owned(),
        labels: [("version".to_owned(), "v1".to_owned())].into(),
        service_account: String::new(),
        inbound_address: inbound.to_owned(),
        mtls: true,
        app_port: 9080,
        app_health: None,
        accepts_incremental: false,
        accepts_resource_increments: false,
        protocol: remora_proto::PROTOCOL,
    }
}

fn proven(sa: &str) -> Caller {
    Caller {
        identity: Some(
            SpiffeId::parse(&format!("spiffe://cluster.local/ns/default/sa/{sa}")).expect("id"),
        ),
        remote: Some("127.0.0.1:50000".parse().expect("addr")),
    }
}

fn anonymous() -> Caller {
    Caller {
        identity: None,
        remote: Some("127.0.0.1:50000".parse().expect("addr")),
    }
}

fn admit_with(
    node: &pb::Node,
    caller: &Caller,
    resources: &[Resource],
) -> Result<pb::Node, Refusal> {
    admit(
        node,
        caller,
        resources,
        &MeshSettings::default(),
        &AdmissionPolicy::default(),
    )
}

fn development() -> AdmissionPolicy {
    AdmissionPolicy {
        allow_plaintext: true,
        ..AdmissionPolicy::default()
    }
}

#[test]
fn a_proxy_older_than_the_protocol_is_refused_naming_both_revisions() {
    let mut old = node("reviews", "127.0.0.1:15006");
    old.protocol = 0;
    let err = admit_with(&old, &proven("reviews"), &[]).expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let message = Status::from(err).message().to_owned();
    assert!(
        message.contains("node.protocol 0")
            && message.contains(&format!("serves (1 to {})", remora_proto::PROTOCOL))
            && message.contains("upgrade the proxy"),
        "{message}"
    );
    let current = node("reviews", "127.0.0.1:15006");
    admit_with(&current, &proven("reviews"), &[]).expect("the current revision is admitted");
}

#[test]
fn the_registration_takes_namespace_and_account_from_the_certificate() {
    let mut claimed = node("reviews", "127.0.0.1:15006");
    claimed.namespace.clear();
    claimed.mtls = false;
    let registered = admit_with(&claimed, &proven("reviews"), &[]).expect("admitted");
    assert_eq!(registered.namespace, "default");
    assert_eq!(registered.service_account, "reviews");
    assert!(registered.mtls, "a proven identity serves mTLS");
}

#[test]
fn another_services_identity_may_not_serve_it() {
    let err = admit_with(
        &node("reviews", "127.0.0.1:15006"),
        &proven("productpage"),
        &[],
    )
    .expect_err("productpage's identity registering as reviews");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.to_string().contains(
            "spiffe://cluster.local/ns/default/sa/productpage may not serve reviews.default: \
             its service accounts are [reviews]"
        ),
        "{err}"
    );
    // As a client it is welcome.
    admit_with(&node("reviews", ""), &proven("productpage"), &[]).expect("client only");
}

#[test]
fn claims_that_contradict_the_certificate_are_refused() {
    let mut claimed = node("reviews", "127.0.0.1:15006");
    claimed.namespace = "payments".to_owned();
    let err = admit_with(&claimed, &proven("reviews"), &[]).expect_err("namespace");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.to_string().contains("node.namespace `payments`"),
        "{err}"
    );

    let mut claimed = node("reviews", "127.0.0.1:15006");
    claimed.service_account = "admin".to_owned();
    let err = admit_with(&claimed, &proven("reviews"), &[]).expect_err("account");
    assert!(
        err.to_string().contains("node.service_account `admin`"),
        "{err}"
    );
}

#[test]
fn a_service_entry_names_the_accounts_that_serve_its_host() {
    let config = resources(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: default}
spec:
  address: 10.0.0.9
  labels: {app: reviews}
  serviceAccount: bookinfo-reviews
",
    );
    let (accounts, _) = allowed_accounts("reviews", "default", &config);
    assert_eq!(accounts, BTreeSet::from(["bookinfo-reviews".to_owned()]));
    admit_with(
        &node("reviews", "127.0.0.1:15006"),
        &proven("bookinfo-reviews"),
        &config,
    )
    .expect("the account the config names");
    let err = admit_with(
        &node("reviews", "127.0.0.1:15006"),
        &proven("reviews"),
        &config,
    )
    .expect_err("the convention no longer applies");
    assert!(
        err.to_string()
            .contains("its service accounts are [bookinfo-reviews] (the serviceAccounts"),
        "{err}"
    );
}

#[test]
fn without_a_certificate_only_the_development_flag_admits_and_never_as_mtls() {
    let err = admit_with(&node("reviews", "127.0.0.1:15006"), &anonymous(), &[])
        .expect_err("plaintext by default");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.to_string().contains("--allow-plaintext-discovery"),
        "{err}"
    );

    let registered = admit(
        &node("reviews", "127.0.0.1:15006"),
        &anonymous(),
        &[],
        &MeshSettings::default(),
        &development(),
    )
    .expect("development");
    assert!(!registered.mtls, "claims mtls, proves nothing");
}

#[test]
fn an_address_that_is_not_the_callers_is_refused_unless_trusted() {
    let claimed = node("reviews", "10.1.2.3:15006");
    let err = admit_with(&claimed, &proven("reviews"), &[]).expect_err("another pod's IP");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.to_string()
            .contains("10.1.2.3:15006 is not on the address this stream comes from (127.0.0.1)"),
        "{err}"
    );
    let trusting = AdmissionPolicy {
        bind_inbound_ip: false,
        ..AdmissionPolicy::default()
    };
    admit(
        &claimed,
        &proven("reviews"),
        &[],
        &MeshSettings::default(),
        &trusting,
    )
    .expect("behind NAT");
    // An IPv4-mapped source is the same address.
    let mut mapped = proven("reviews");
    mapped.remote = Some("[::ffff:10.1.2.3]:4000".parse().expect("addr"));
    admit_with(&claimed, &mapped, &[]).expect("same IP");
}

#[test]
fn poisoned_registrations_are_refused_naming_the_field() {
    type Poison = Box<dyn Fn(&mut pb::Node)>;
    let cases: Vec<(&str, Poison, &str)> = vec![
        (
            "unspecified address, port 0",
            Box::new(|n| n.inbound_address = "0.0.0.0:0".into()),
            "node.inbound_address `0.0.0.0:0` has port 0",
        ),
        (
            "unspecified address",
            Box::new(|n| n.inbound_address = "0.0.0.0:15006".into()),
            "is not a unicast address",
        ),
        (
            "not an address",
            Box::new(|n| n.inbound_address = "reviews".into()),
            "is not ip:port",
        ),
        (
            "a path in the service account",
            Box::new(|n| n.service_account = "a/../../b?c#d".into()),
            "node.service_account",
        ),
        (
            "a space in the namespace",
            Box::new(|n| n.namespace = "n s".into()),
            "node.namespace `n s` is not a DNS label",
        ),
        (
            "a dotted service",
            Box::new(|n| n.service = "reviews.default".into()),
            "node.service `reviews.default` is not a DNS label",
        ),
        (
            "a label key with a space",
            Box::new(|n| {
                n.labels.insert("bad key".into(), "v".into());
            }),
            "`bad key` is not a label key",
        ),
        (
            "a label value with a slash",
            Box::new(|n| {
                n.labels.insert("version".into(), "v1/../x".into());
            }),
            "node.labels[version]",
        ),
        (
            "too many labels",
            Box::new(|n| {
                for i in 0..=MAX_LABELS {
                    n.labels.insert(format!("k{i}"), "v".into());
                }
            }),
            "at most 64",
        ),
        (
            "app port",
            Box::new(|n| n.app_port = 70_000),
            "node.app_port 70000",
        ),
        ("empty id", Box::new(|n| n.id.clear()), "node.id is empty"),
    ];
    for (what, poison, expected) in cases {
        let mut claimed = node("reviews", "127.0.0.1:15006");
        poison(&mut claimed);
        // Over plaintext (development): the claims are all the control plane has.
        let err = admit(
            &claimed,
            &anonymous(),
            &[],
            &MeshSettings::default(),
            &development(),
        )
        .expect_err(what);
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::PermissionDenied),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
}

#[test]
fn a_certificate_namespace_that_cannot_name_services_is_refused() {
    let caller = Caller {
        identity: Some(
            SpiffeId::parse("spiffe://cluster.local/ns/Default_ns/sa/reviews").expect("id"),
        ),
        remote: None,
    };
    let mut claimed = node("reviews", "127.0.0.1:15006");
    claimed.namespace.clear();
    let err = admit_with(&claimed, &caller, &[]).expect_err("not a DNS label");
    assert!(err.to_string().contains("`Default_ns`"), "{err}");
}

#[test]
fn messages_quote_at_most_a_line_of_the_input() {
    let mut claimed = node("reviews", "127.0.0.1:15006");
    claimed.service = "x".repeat(100_000);
    let err = admit(
        &claimed,
        &anonymous(),
        &[],
        &MeshSettings::default(),
        &development(),
    )
    .expect_err("long");
    assert!(err.to_string().len() < 600, "{}", err.to_string().len());
}
