//! Config files for the tests, generated rather than pasted: Istio-style
//! YAML for the `reviews` service in namespace `default`.

/// A DestinationRule for `reviews` with one subset per name, each
/// selecting `version: <name>`.
pub fn reviews_destination_rule(subsets: &[&str]) -> String {
    let mut y = String::from(
        r#"apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
"#,
    );
    for s in subsets {
        y.push_str(&format!(
            "    - name: {s}\n      labels:\n        version: {s}\n"
        ));
    }
    y
}

/// The canary VirtualService: `end-user: jason` always to v2, everyone
/// else split `v1`/`v2` by weight.
pub fn reviews_canary(v1: u32, v2: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
    - reviews
  http:
    - match:
        - headers:
            end-user:
              exact: jason
      route:
        - destination:
            host: reviews
            subset: v2
    - route:
        - destination:
            host: reviews
            subset: v1
          weight: {v1}
        - destination:
            host: reviews
            subset: v2
          weight: {v2}
"#
    )
}

/// The 1-based number of the first line of `yaml` containing `needle`.
/// Panics if there is none (a broken test, not a broken product).
pub fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the test's YAML"))
        + 1
}
