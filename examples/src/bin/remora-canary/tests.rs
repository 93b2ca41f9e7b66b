use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Args::command().debug_assert();
}

#[test]
fn cluster_endpoints_reads_reviews_subsets_only() {
    let dump = serde_json::json!({"version": "1", "snapshot": {"clusters": [
        {"name": "v1|reviews.default.svc.cluster.local",
         "endpoints": [{"address": "127.0.0.1:1"}]},
        {"name": "v2|reviews.default.svc.cluster.local", "endpoints": []},
        {"name": "v1|ratings.default.svc.cluster.local",
         "endpoints": [{"address": "127.0.0.1:3"}]},
    ]}});
    let seen = cluster_endpoints(&dump);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen["v1"], vec!["127.0.0.1:1".to_owned()]);
    assert!(seen["v2"].is_empty());
}

#[test]
fn embedded_mesh_yaml_is_the_canary() {
    assert!(MESH_YAML.contains("kind: VirtualService"));
    assert!(MESH_YAML.contains("kind: DestinationRule"));
    assert!(!MESH_YAML.contains("connectionPool"));
    assert!(!MESH_YAML.contains("outlierDetection"));
}
