//! A service whose endpoints are in-process [`Backend`]s registered by a
//! ServiceEntry (no sidecars): the client proxy connects to them directly,
//! so a test counts every connection and request the service saw. Plus a
//! fortio-style load generator for circuit-breaking tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Barrier;

use crate::backend::Backend;
use crate::client::{HttpClient, Protocol, Reply};
use crate::discovery::cluster_name;
use crate::mesh::{EVENT_TIMEOUT, Mesh, Proxy, ProxySpec};
use crate::yaml;

/// The header a proxy puts on a 503 it answered because a connection-pool
/// limit was reached.
pub const OVERLOADED: &str = "x-remora-overloaded";

/// A ServiceEntry's backends, a control plane, and a client proxy.
#[derive(Debug)]
pub struct Direct {
    /// The control plane and its config directory.
    pub mesh: Mesh,
    /// The client-only proxy (workload `client`) requests go through.
    pub client: Proxy,
    /// The service's endpoints, named `b0`, `b1`, ...
    pub backends: Vec<Backend>,
    /// The service's host name (short, namespace `default`).
    pub host: String,
}

/// The ServiceEntry's file name in the config directory.
pub const SE_FILE: &str = "service-entry.yaml";

impl Direct {
    /// Starts `n` backends (`b0`...), a control plane whose config
    /// directory holds a ServiceEntry for `host` listing them plus `files`,
    /// and a client proxy for `client`; returns once the proxy's cluster
    /// for `host` has the `n` endpoints.
    pub async fn start(host: &str, n: usize, files: &[(&str, String)], client: ProxySpec) -> Self {
        let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let backends = join_all(names.iter().map(|name| Backend::start(name))).await;
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let se = yaml::service_entry(host, &addrs);
        let mut all: Vec<(&str, &str)> = vec![(SE_FILE, se.as_str())];
        all.extend(files.iter().map(|(name, y)| (*name, y.as_str())));
        let mesh = Mesh::start(&all).await;
        let client = mesh.proxy(&client).await;
        let cluster = cluster_name(host, "default", "");
        let dump = client.wait_endpoints(&cluster, n, EVENT_TIMEOUT).await;
        assert_no_rejection(&mesh, &client, 0, 0);
        let mut have = crate::mesh::endpoints_in(&dump, &cluster);
        let mut want: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        have.sort();
        want.sort();
        assert_eq!(have, want, "the cluster's endpoints are the backends");
        Self {
            mesh,
            client,
            backends,
            host: host.to_owned(),
        }
    }

    /// Writes `name` into the config directory and waits until the client
    /// proxy has applied the change. Panics if the control plane or the
    /// proxy rejects it, or after [`EVENT_TIMEOUT`].
    pub async fn apply(&mut self, name: &str, contents: &str) {
        let cp_mark = self.mesh.control_plane.process.mark();
        let mark = self.client.process.mark();
        self.mesh.write_file(name, contents);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            assert_no_rejection(&self.mesh, &self.client, cp_mark, mark);
            let events = self.client.process.events_since(mark);
            if events.iter().any(|e| e.name() == "applied") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no `applied` event within {EVENT_TIMEOUT:?} after writing {name}\nevents: {:?}\ncontrol plane stderr tail:\n{}",
                self.client.process.name(),
                events.iter().map(|e| &e.value).collect::<Vec<_>>(),
                self.mesh.control_plane.process.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `|<host>.default.svc.cluster.local`.
    pub fn cluster(&self) -> String {
        cluster_name(&self.host, "default", "")
    }

    /// A client for the proxy's outbound listener (HTTP/1.1).
    pub fn http(&self) -> HttpClient {
        self.client.client(Protocol::Http1)
    }

    /// Requests each backend has seen, in order.
    pub fn hits(&self) -> Vec<usize> {
        self.backends.iter().map(Backend::hits).collect()
    }

    /// Every backend's requests together.
    pub fn total_hits(&self) -> usize {
        self.hits().iter().sum()
    }
}

/// Panics if the control plane (events from `cp_since` on) or the proxy
/// (from `since` on) rejected a config.
fn assert_no_rejection(mesh: &Mesh, proxy: &Proxy, cp_since: usize, since: usize) {
    let cp = mesh.control_plane.process.events_since(cp_since);
    let cp_rejected: Vec<_> = cp
        .iter()
        .filter(|e| e.name() == "rejected")
        .map(|e| &e.value)
        .collect();
    assert!(
        cp_rejected.is_empty(),
        "the control plane rejected the test's config: {cp_rejected:?}"
    );
    let own = proxy.process.events_since(since);
    let rejected: Vec<_> = own
        .iter()
        .filter(|e| e.name() == "rejected")
        .map(|e| &e.value)
        .collect();
    assert!(
        rejected.is_empty(),
        "{} rejected a config: {rejected:?}\nstderr tail:\n{}",
        proxy.process.name(),
        proxy.process.stderr_tail()
    );
}

/// One request's outcome, as a load generator reports it.
#[derive(Debug, Clone)]
pub struct Shot {
    /// The status, or `None` on a transport error.
    pub status: Option<u16>,
    /// The reply had `x-remora-overloaded: true`.
    pub overloaded: bool,
    /// The reply's `x-backend` (which app answered), if any.
    pub backend: Option<String>,
    /// Send to complete response (or error).
    pub elapsed: Duration,
    /// The transport error, if any.
    pub error: Option<String>,
}

impl Shot {
    /// Makes a shot of a request's result.
    pub fn of(result: &anyhow::Result<Reply>, elapsed: Duration) -> Self {
        match result {
            Ok(r) => Self {
                status: Some(r.status.as_u16()),
                overloaded: r
                    .headers
                    .get(OVERLOADED)
                    .is_some_and(|v| v.as_bytes() == b"true"),
                backend: r
                    .headers
                    .get("x-backend")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                elapsed,
                error: None,
            },
            Err(e) => Self {
                status: None,
                overloaded: false,
                backend: None,
                elapsed,
                error: Some(format!("{e:#}")),
            },
        }
    }

    /// `200`, `503 overloaded`, `503`, `error`... for tallies.
    pub fn kind(&self) -> String {
        match (self.status, self.overloaded) {
            (Some(s), true) => format!("{s} overloaded"),
            (Some(s), false) => s.to_string(),
            (None, _) => "error".to_owned(),
        }
    }
}

/// How many shots of each [`Shot::kind`].
pub fn tally(shots: &[Shot]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in shots {
        *out.entry(s.kind()).or_default() += 1;
    }
    out
}

/// Fortio-style load: `connections` keep-alive HTTP/1.1 connections to
/// `addr`, each sending `per_connection` `GET path` (Host `host`) back to
/// back; all connections start together. Returns every shot.
pub async fn fire(
    addr: SocketAddr,
    host: &str,
    path: &str,
    connections: usize,
    per_connection: usize,
) -> Vec<Shot> {
    let barrier = Arc::new(Barrier::new(connections));
    let loops = (0..connections).map(|_| {
        let barrier = Arc::clone(&barrier);
        let (host, path) = (host.to_owned(), path.to_owned());
        tokio::spawn(async move {
            let mut client = HttpClient::new(addr, Protocol::Http1);
            let mut shots = Vec::with_capacity(per_connection);
            barrier.wait().await;
            for _ in 0..per_connection {
                let started = Instant::now();
                let result = client.get(&host, &path, &[]).await;
                shots.push(Shot::of(&result, started.elapsed()));
            }
            shots
        })
    });
    join_all(loops)
        .await
        .into_iter()
        .flat_map(|r| r.expect("load loop panicked"))
        .collect()
}
