use super::*;

#[test]
fn the_generated_mesh_has_the_asked_number_of_valid_resources() {
    for n in [23, 100, 301] {
        let outcome = config::parse_str(Path::new("mesh.yaml"), &mesh_yaml(n));
        assert!(!outcome.has_errors(), "{:#?}", outcome.diagnostics);
        assert_eq!(outcome.resources.len(), n);
        let refs = config::check_references(&outcome.resources, "istio-system");
        assert!(refs.is_empty(), "{refs:#?}");
    }
}

#[test]
fn proxies_register_with_their_services() {
    let nodes = mesh_nodes(100, 30);
    assert_eq!(nodes.len(), 30);
    let outcome = config::parse_str(Path::new("mesh.yaml"), &mesh_yaml(100));
    let viewer = &nodes[&1];
    let s = translate::snapshot_for(viewer, &outcome.resources, &nodes, &MeshSettings::default());
    // 26 services, each a default cluster and two subsets, and two
    // ServiceEntries alone.
    assert_eq!(s.clusters.len(), 26 * 3 + 2);
    let own = s
        .clusters
        .iter()
        .find(|c| c.name == "|svc-0.ns-0.svc.cluster.local")
        .expect("svc-0");
    // Two ServiceEntry endpoints and the registered proxies of svc-0.
    assert_eq!(own.endpoints.len(), 2 + 2);
}
