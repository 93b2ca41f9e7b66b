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

/// A ServiceEntry registering `host` (a short name, qualified in namespace
/// `default`) with one static endpoint per address, on an HTTP port named
/// `http`: proxies then connect to these addresses directly, in HTTP/1.1.
pub fn service_entry(host: &str, endpoints: &[std::net::SocketAddr]) -> String {
    service_entry_with_protocol(host, endpoints, "HTTP")
}

/// [`service_entry`] with its port's `protocol` (`HTTP2`, `GRPC`: proxies
/// then speak h2 to the endpoints).
pub fn service_entry_with_protocol(
    host: &str,
    endpoints: &[std::net::SocketAddr],
    protocol: &str,
) -> String {
    let mut y = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {host}
  namespace: default
spec:
  hosts:
    - {host}
  location: MESH_INTERNAL
  ports:
    - number: 80
      name: http
      protocol: {protocol}
  resolution: STATIC
  endpoints:
"#
    );
    for e in endpoints {
        y.push_str(&format!(
            "    - address: {}\n      ports:\n        http: {}\n",
            e.ip(),
            e.port()
        ));
    }
    y
}

/// A VirtualService for `host` in `default` with one HTTP route to `host`;
/// `route` is YAML added to that route (e.g. `timeout: 300ms`), written
/// as at the top level: it is indented here.
pub fn virtual_service(host: &str, route: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {host}
  namespace: default
spec:
  hosts:
    - {host}
  http:
    - route:
        - destination:
            host: {host}
{}"#,
        indent(route, 6)
    )
}

/// A DestinationRule for `host` in `default` whose `trafficPolicy` is
/// `policy` (YAML written as at the top level: it is indented here).
pub fn destination_rule(host: &str, policy: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {host}
  namespace: default
spec:
  host: {host}
  trafficPolicy:
{}"#,
        indent(policy, 4)
    )
}

/// `text` with every non-empty line indented by `spaces`, ending in a
/// newline.
pub fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for line in text.lines() {
        if !line.trim().is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
