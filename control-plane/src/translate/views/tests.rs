//! Incremental snapshots per resource, as the control plane builds them:
//! what changed travels, and nothing else.

use std::fmt::Write as _;
use std::path::Path;

use remora_proto::incremental::apply;

use super::*;
use crate::config::parse_str;
use crate::translate::TraceSampling;

const SERVICES: usize = 8;

/// `SERVICES` services, each with a VirtualService (a route with a
/// timeout of `timeouts[i]` seconds to its subset `v1`) and a
/// DestinationRule with subset `v1`, or also `v2` (and the route split to
/// it) where `split[i]`; `skip[i]` leaves service `i` out.
fn yaml(timeouts: [u32; SERVICES], split: [bool; SERVICES], skip: [bool; SERVICES]) -> String {
    let mut y = String::new();
    for i in (0..SERVICES).filter(|&i| !skip[i]) {
        let (route, subsets) = if split[i] {
            (
                format!(
                    "    - destination: {{host: svc-{i}, subset: v1}}\n      weight: 90\n    \
                     - destination: {{host: svc-{i}, subset: v2}}\n      weight: 10\n"
                ),
                "  - name: v1\n    labels: {version: v1}\n  - name: v2\n    labels: {version: v2}\n",
            )
        } else {
            (
                format!("    - destination: {{host: svc-{i}, subset: v1}}\n"),
                "  - name: v1\n    labels: {version: v1}\n",
            )
        };
        let _ = write!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: svc-{i}}}\nspec:\n  hosts: [svc-{i}]\n  http:\n  \
             - timeout: {}s\n    route:\n{route}\
             ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{name: svc-{i}}}\nspec:\n  host: svc-{i}\n  subsets:\n{subsets}",
            timeouts[i]
        );
    }
    y
}

/// One workload per service (`version: v1`), but none for `skip`ped ones.
fn nodes(skip: [bool; SERVICES]) -> Nodes {
    (0..SERVICES)
        .filter(|&i| !skip[i])
        .map(|i| {
            let node = pb::Node {
                id: format!("svc-{i}-1"),
                service: format!("svc-{i}"),
                namespace: "default".into(),
                labels: [("version".to_owned(), "v1".to_owned())].into(),
                service_account: format!("svc-{i}"),
                inbound_address: format!("10.0.0.{i}:15006"),
                ..Default::default()
            };
            (i as u64, node)
        })
        .collect()
}

fn client() -> ViewKey {
    ViewKey {
        namespace: "default".into(),
        labels: BTreeMap::new(),
        service: "client".into(),
    }
}

/// The client's view of the mesh `yaml` with `nodes`.
fn view(yaml: &str, nodes: Nodes, settings: &MeshSettings) -> Arc<ViewSnapshot> {
    let outcome = parse_str(Path::new("mesh.yaml"), yaml);
    assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
    let resources = Arc::new(outcome.resources);
    build_views(&[client()], &resources, &Arc::new(nodes), settings)
        .pop()
        .expect("one view")
}

const SAME: [u32; SERVICES] = [1; SERVICES];
const NONE: [bool; SERVICES] = [false; SERVICES];

fn with<T: Copy, const N: usize>(mut all: [T; N], i: usize, value: T) -> [T; N] {
    all[i] = value;
    all
}

fn fqdn(i: usize) -> String {
    format!("svc-{i}.default.svc.cluster.local")
}

/// The increment from `before` to `after` in `form`, decoded, after
/// checking that applied to `before` it gives `after` exactly.
fn increment(before: &ViewSnapshot, after: &ViewSnapshot, form: Form) -> (pb::Snapshot, Vec<u8>) {
    let sent = after
        .incremental_from(before, form, "7".into())
        .expect("smaller than the complete snapshot");
    let bytes = sent.encode_to_vec();
    let update = pb::Snapshot::decode(bytes.as_slice()).expect("decodes");
    let applied = apply(&before.decode().expect("decodes"), update.clone()).expect("applies");
    let want = pb::Snapshot {
        nonce: "7".into(),
        ..after.decode().expect("decodes")
    };
    assert!(
        applied == want,
        "applied, it is not the snapshot it was built for"
    );
    (update, bytes)
}

fn names(hosts: &[pb::VirtualHost]) -> Vec<&str> {
    hosts.iter().map(|h| h.name.as_str()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_one_route_change_sends_that_virtual_host_and_nothing_else() {
    let settings = MeshSettings::default();
    let before = view(&yaml(SAME, NONE, NONE), nodes(NONE), &settings);
    let after = view(&yaml(with(SAME, 3, 2), NONE, NONE), nodes(NONE), &settings);
    let (update, bytes) = increment(&before, &after, Form::PerResource);

    assert_eq!(update.base_version, before.version);
    assert_eq!(names(&update.virtual_hosts), [fqdn(3)]);
    assert!(!update.routes_included && !update.inbound_included && !update.mesh_included);
    assert!(update.clusters.is_empty() && update.endpoints.is_empty());
    assert!(update.removed_virtual_hosts.is_empty() && update.removed_clusters.is_empty());

    // The bytes are svc-3's virtual host as the complete snapshot encodes
    // it, and none of another host's.
    let complete = after.decode().expect("decodes");
    let host = complete
        .virtual_hosts
        .iter()
        .find(|h| h.name == fqdn(3))
        .expect("svc-3");
    let mut host_bytes = Vec::new();
    prost::encoding::message::encode(3, host, &mut host_bytes);
    assert!(contains(&bytes, &host_bytes));
    for i in (0..SERVICES).filter(|&i| i != 3) {
        assert!(
            !contains(&bytes, format!("svc-{i}").as_bytes()),
            "svc-{i} sent"
        );
    }
    // Version, nonce and the base version besides the host: a few dozen bytes.
    assert!(
        bytes.len() < host_bytes.len() + 64,
        "{} bytes for a {}-byte host",
        bytes.len(),
        host_bytes.len()
    );
    // The older form resends every host and cluster.
    let (whole, whole_bytes) = increment(&before, &after, Form::RoutesWhole);
    assert!(whole.routes_included);
    assert_eq!(whole.virtual_hosts.len(), SERVICES);
    assert!(bytes.len() * SERVICES < whole_bytes.len());
}

/// Make-before-break: a route split to a new subset arrives with that
/// subset's cluster and its endpoints, in the one push.
#[test]
fn a_route_and_the_cluster_it_needs_travel_together() {
    let settings = MeshSettings::default();
    let before = view(&yaml(SAME, NONE, NONE), nodes(NONE), &settings);
    let after = view(
        &yaml(SAME, with(NONE, 5, true), NONE),
        nodes(NONE),
        &settings,
    );
    let (update, _) = increment(&before, &after, Form::PerResource);
    assert_eq!(names(&update.virtual_hosts), [fqdn(5)]);
    let v2 = format!("v2|{}", fqdn(5));
    let clusters: Vec<&str> = update.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, [v2.as_str()]);
    assert!(update.clusters[0].endpoints.is_empty(), "a shell");
    let lists: Vec<&str> = update
        .endpoints
        .iter()
        .map(|l| l.cluster.as_str())
        .collect();
    assert_eq!(lists, [v2.as_str()], "a new cluster gets its list");
}

#[test]
fn a_service_that_goes_sends_its_names() {
    let settings = MeshSettings::default();
    let before = view(&yaml(SAME, NONE, NONE), nodes(NONE), &settings);
    let skip = with(NONE, 6, true);
    let after = view(&yaml(SAME, NONE, skip), nodes(skip), &settings);
    let (update, _) = increment(&before, &after, Form::PerResource);
    assert!(update.virtual_hosts.is_empty() && update.clusters.is_empty());
    assert_eq!(update.removed_virtual_hosts, [fqdn(6)]);
    // In name order, byte-wise: `v` before `|`.
    assert_eq!(
        update.removed_clusters,
        [format!("v1|{}", fqdn(6)), format!("|{}", fqdn(6))]
    );

    // And comes back: its host, its clusters and their lists.
    let (update, _) = increment(&after, &before, Form::PerResource);
    assert_eq!(names(&update.virtual_hosts), [fqdn(6)]);
    assert_eq!(update.clusters.len(), 2);
    assert_eq!(update.endpoints.len(), 2);
}

#[test]
fn inbound_and_mesh_settings_travel_only_when_they_change() {
    let settings = MeshSettings::default();
    let before = view(&yaml(SAME, NONE, NONE), nodes(NONE), &settings);
    let strict = format!(
        "{}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: default, namespace: default}}\nspec:\n  mtls: {{mode: STRICT}}\n",
        yaml(SAME, NONE, NONE)
    );
    let after = view(&strict, nodes(NONE), &settings);
    let (update, _) = increment(&before, &after, Form::PerResource);
    assert!(update.inbound_included && !update.mesh_included);
    assert!(update.virtual_hosts.is_empty() && update.clusters.is_empty());

    let sampled = MeshSettings {
        trace_sampling: Some(TraceSampling::new(10.0).expect("percent")),
        ..MeshSettings::default()
    };
    let after = view(&yaml(SAME, NONE, NONE), nodes(NONE), &sampled);
    let (update, _) = increment(&before, &after, Form::PerResource);
    assert!(update.mesh_included && update.mesh.is_some() && !update.inbound_included);
    // Back to none: included, absent.
    let (update, _) = increment(&after, &before, Form::PerResource);
    assert!(update.mesh_included && update.mesh.is_none());
}

/// Every stream of a view shares one increment per base version and form.
#[test]
fn an_increment_is_built_once_per_base_and_form() {
    let settings = MeshSettings::default();
    let before = view(&yaml(SAME, NONE, NONE), nodes(NONE), &settings);
    let after = view(&yaml(with(SAME, 1, 3), NONE, NONE), nodes(NONE), &settings);
    let parts = |form| {
        after
            .incremental_from(&before, form, "1".into())
            .expect("smaller")
            .parts
    };
    let (a, b) = (parts(Form::PerResource), parts(Form::PerResource));
    assert!(a.iter().zip(&b).all(|(a, b)| a.as_ptr() == b.as_ptr()));
    let whole = parts(Form::RoutesWhole);
    assert!(whole.iter().map(Bytes::len).sum::<usize>() > a.iter().map(Bytes::len).sum());
}
