//! Snapshots built once per view, not once per proxy.
//!
//! A proxy's snapshot depends on the mesh (config and registry) and on two
//! things of its own: its namespace (the short names of its virtual hosts,
//! and the policies of its namespace) and its labels (the policies and the
//! Sidecar that select it). Proxies that share both — a [`ViewKey`] — get the same
//! snapshot, so [`build_views`] translates the mesh once for every view at
//! hand and encodes each part once:
//!
//! - the clusters, once per Sidecar scope (once for all without one);
//! - the virtual hosts, once per namespace and Sidecar scope;
//! - the inbound policy and mesh settings, once per view.
//!
//! A [`ViewSnapshot`] keeps these encoded parts (shared, not copied, between
//! views) and its version: FNV-1a over the parts in order, which is the
//! version [`super::version_of`] gives the same snapshot built for one proxy,
//! computed once per namespace for the large parts.
//!
//! For incremental pushes it also keeps the snapshot cut the other way, per
//! resource, each part with its hash, computed once per namespace or scope
//! as the parts themselves are: each virtual host (a slice of the shared
//! virtual hosts' bytes), each cluster without its endpoints (its shell),
//! each cluster's endpoint list, the inbound policy and the mesh settings.
//! [`ViewSnapshot::incremental_from`] compares these with the snapshot a
//! proxy runs and sends only what differs: a one-route change is then one
//! virtual host. For proxies that take only the older form, the routes part
//! (every virtual host and shell, inbound, mesh) has one hash and travels
//! whole when it changed. Either result is built once per base version and
//! form, and shared by every stream of the view.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message;
use prost::bytes::Bytes;
use remora_proto::encoded::EncodedSnapshot;
use remora_proto::pb;

use super::prepared::STAMP_ROOM;
use super::{
    Index, MeshSettings, Nodes, Outbound, TooLarge, catalog, fnv1a, fnv1a_continue, namespace_of,
    security,
};
use crate::config::model::Resource;

/// What a proxy's snapshot depends on besides the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    /// `node.namespace`, as registered.
    pub namespace: String,
    /// `node.labels`.
    pub labels: BTreeMap<String, String>,
    /// `node.service`: a Sidecar scope keeps the proxy's own service's
    /// clusters, whose ports tell its inbound side the app's protocol.
    pub service: String,
}

impl ViewKey {
    /// The view of `node`.
    pub fn of(node: &pb::Node) -> Self {
        ViewKey {
            namespace: node.namespace.clone(),
            labels: node.labels.clone(),
            service: node.service.clone(),
        }
    }

    /// A node of this view, as translation sees it.
    fn node(&self) -> pb::Node {
        pb::Node {
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            service: self.service.clone(),
            ..Default::default()
        }
    }
}

/// The snapshot of one view, encoded, versioned, immutable.
#[derive(Debug)]
pub struct ViewSnapshot {
    /// Its version: equal contents, equal versions (across restarts too).
    pub version: String,
    /// `virtual_hosts`, `clusters`, then `inbound` and `mesh`, encoded.
    parts: Vec<Bytes>,
    /// Its encoded size, without version and nonce.
    pub encoded_len: usize,
    clusters: usize,
    endpoints: usize,
    pub(super) virtual_hosts: usize,
    /// The config it was built from.
    pub resources: Arc<Vec<Resource>>,
    /// The registry it was built from.
    pub nodes: Arc<Nodes>,
    /// FNV-1a over the routes part: the virtual hosts, [`Self::shells`],
    /// then the inbound policy and mesh settings.
    routes: u64,
    /// The clusters without their endpoints, encoded.
    shells: Bytes,
    /// Each virtual host, encoded apart (slices of `parts[0]`).
    hosts: Arc<Keyed>,
    /// Each cluster without its endpoints, encoded apart (slices of
    /// [`Self::shells`]).
    cluster_shells: Arc<Keyed>,
    /// Every cluster's endpoint list, encoded apart.
    endpoint_lists: Arc<Keyed>,
    /// `Snapshot.inbound`, encoded (a slice of `parts[2]`).
    inbound: Bytes,
    /// `Snapshot.mesh`, encoded (a slice of `parts[2]`; empty: absent).
    mesh: Bytes,
    /// Incremental snapshots from the versions proxies ran, built once each.
    increments: Mutex<Vec<((String, Form), Increment)>>,
}

/// The form of an incremental snapshot a proxy takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The routes part whole when it changed (`routes_included`).
    RoutesWhole,
    /// Per resource (`Node.accepts_resource_increments`).
    PerResource,
}

impl Form {
    /// The form `node` takes, if it takes incremental snapshots at all.
    pub fn of(node: &pb::Node) -> Option<Self> {
        match (node.accepts_incremental, node.accepts_resource_increments) {
            (false, _) => None,
            (true, false) => Some(Form::RoutesWhole),
            (true, true) => Some(Form::PerResource),
        }
    }
}

/// An incremental snapshot's encoded parts (after `version` and `nonce`);
/// `None` when the complete snapshot is no larger.
type Increment = Option<Arc<Vec<Bytes>>>;

/// The incremental snapshots a view keeps, by base version and form:
/// proxies of a view mostly run one version (two while a push is on its
/// way).
const INCREMENTS_KEPT: usize = 4;

/// Resources of one kind (virtual hosts, cluster shells or endpoint lists),
/// each encoded as its `Snapshot` field, with its hash, in name order.
#[derive(Debug, Default)]
struct Keyed {
    parts: Vec<KeyedPart>,
    /// The hash of each part, by name.
    hashes: HashMap<String, u64>,
}

#[derive(Debug)]
struct KeyedPart {
    name: String,
    hash: u64,
    bytes: Bytes,
}

impl Keyed {
    /// Adds `bytes`, the resource `name` encoded.
    fn push(&mut self, name: String, bytes: Bytes) {
        let hash = fnv1a(&bytes);
        self.hashes.insert(name.clone(), hash);
        self.parts.push(KeyedPart { name, hash, bytes });
    }

    /// The parts that `base` does not have as they are: new or changed.
    fn changed_since<'a>(&'a self, base: &'a Keyed) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.parts
            .iter()
            .filter(|part| base.hashes.get(&part.name) != Some(&part.hash))
            .map(|part| &part.bytes)
    }

    /// The names of `base`'s parts that this does not have.
    fn removed_since<'a>(&'a self, base: &'a Keyed) -> impl Iterator<Item = &'a String> + 'a {
        base.parts
            .iter()
            .filter(|part| !self.hashes.contains_key(&part.name))
            .map(|part| &part.name)
    }
}

/// `Snapshot` fields an incremental snapshot sets besides the parts.
const BASE_VERSION_TAG: u32 = 7;
const ROUTES_INCLUDED_TAG: u32 = 8;
const ENDPOINTS_TAG: u32 = 9;
const REMOVED_VIRTUAL_HOSTS_TAG: u32 = 10;
const REMOVED_CLUSTERS_TAG: u32 = 11;
const INBOUND_INCLUDED_TAG: u32 = 12;
const MESH_INCLUDED_TAG: u32 = 13;

impl ViewSnapshot {
    /// The message to send, with this push's `nonce`: the parts are shared,
    /// not copied.
    pub fn encoded(&self, nonce: String) -> EncodedSnapshot {
        EncodedSnapshot {
            version: self.version.clone(),
            parts: self.parts.clone(),
            nonce,
        }
    }

    /// The incremental snapshot in `form` that turns `base` (what a proxy
    /// runs) into this one, with this push's `nonce`: per resource, the
    /// virtual hosts and cluster shells that are new or changed, the names
    /// of those gone, inbound and mesh if they changed (or, in the older
    /// form, the routes part whole if any of it changed), and the endpoint
    /// lists that changed. `None` when it would not be smaller than the
    /// complete snapshot. Built once per base version and form, then shared.
    pub fn incremental_from(
        &self,
        base: &ViewSnapshot,
        form: Form,
        nonce: String,
    ) -> Option<EncodedSnapshot> {
        let parts = {
            let mut kept = self
                .increments
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match kept
                .iter()
                .find(|((v, f), _)| *v == base.version && *f == form)
            {
                Some((_, parts)) => parts.clone(),
                None => {
                    let parts = self.build_increment(base, form).map(Arc::new);
                    if kept.len() == INCREMENTS_KEPT {
                        kept.remove(0);
                    }
                    kept.push(((base.version.clone(), form), parts.clone()));
                    parts
                }
            }
        }?;
        Some(EncodedSnapshot {
            version: self.version.clone(),
            parts: parts.as_ref().clone(),
            nonce,
        })
    }

    fn build_increment(&self, base: &ViewSnapshot, form: Form) -> Option<Vec<Bytes>> {
        let mut head = Vec::new();
        prost::encoding::string::encode(BASE_VERSION_TAG, &base.version, &mut head);
        let mut parts = Vec::new();
        match form {
            Form::RoutesWhole => {
                if self.routes != base.routes {
                    prost::encoding::bool::encode(ROUTES_INCLUDED_TAG, &true, &mut head);
                    parts.extend([
                        self.parts[0].clone(),
                        self.shells.clone(),
                        self.parts[2].clone(),
                    ]);
                }
            }
            Form::PerResource => {
                if !Arc::ptr_eq(&self.hosts, &base.hosts) {
                    for name in self.hosts.removed_since(&base.hosts) {
                        prost::encoding::string::encode(REMOVED_VIRTUAL_HOSTS_TAG, name, &mut head);
                    }
                    parts.extend(self.hosts.changed_since(&base.hosts).cloned());
                }
                if !Arc::ptr_eq(&self.cluster_shells, &base.cluster_shells) {
                    let (now, then) = (&self.cluster_shells, &base.cluster_shells);
                    for name in now.removed_since(then) {
                        prost::encoding::string::encode(REMOVED_CLUSTERS_TAG, name, &mut head);
                    }
                    parts.extend(now.changed_since(then).cloned());
                }
                if self.inbound != base.inbound {
                    prost::encoding::bool::encode(INBOUND_INCLUDED_TAG, &true, &mut head);
                    parts.push(self.inbound.clone());
                }
                if self.mesh != base.mesh {
                    // Empty bytes: the mesh settings are now absent.
                    prost::encoding::bool::encode(MESH_INCLUDED_TAG, &true, &mut head);
                    parts.push(self.mesh.clone());
                }
            }
        }
        if !Arc::ptr_eq(&self.endpoint_lists, &base.endpoint_lists) {
            // A cluster new to the proxy gets its list (empty or not): the
            // proxy has none to keep.
            parts.extend(
                self.endpoint_lists
                    .changed_since(&base.endpoint_lists)
                    .cloned(),
            );
        }
        parts.insert(0, Bytes::from(head));
        parts.retain(|p| !p.is_empty());
        let len: usize = parts.iter().map(Bytes::len).sum();
        (len < self.encoded_len).then_some(parts)
    }

    /// The snapshot decoded, `version` set and `nonce` empty (tests and
    /// debugging).
    pub fn decode(&self) -> Result<pb::Snapshot, prost::DecodeError> {
        let bytes = self.encoded(String::new()).encode_to_vec();
        pb::Snapshot::decode(bytes.as_slice())
    }

    /// Whether its virtual hosts and clusters are `other`'s, not copies.
    #[cfg(test)]
    pub(super) fn shares_outbound_with(&self, other: &ViewSnapshot) -> bool {
        self.parts[..2]
            .iter()
            .zip(&other.parts[..2])
            .all(|(a, b)| a.as_ptr() == b.as_ptr() && a.len() == b.len())
    }

    /// Why this snapshot must not be sent to `node`, if it exceeds `limit`
    /// bytes once stamped with its version and nonce.
    pub fn refusal(&self, node: &pb::Node, limit: usize) -> Option<TooLarge> {
        let bytes = self.encoded_len + STAMP_ROOM;
        (bytes > limit).then(|| TooLarge {
            node: node.id.clone(),
            version: self.version.clone(),
            bytes,
            limit,
            clusters: self.clusters,
            endpoints: self.endpoints,
            virtual_hosts: self.virtual_hosts,
        })
    }
}

/// A Sidecar scope, as views share parts by it: the Sidecar's position
/// among the resources, the namespace its `.` means and the workload's own
/// service.
type ScopeKey = (usize, String, String);

/// The clusters of one Sidecar scope (every cluster without one), encoded
/// whole, and cut into shells and endpoint lists.
struct ClusterParts {
    bytes: Bytes,
    shells: Bytes,
    /// Each shell: a slice of `shells`.
    cluster_shells: Arc<Keyed>,
    endpoint_lists: Arc<Keyed>,
    count: usize,
    endpoints: usize,
}

impl ClusterParts {
    fn encode<'c>(clusters: impl Iterator<Item = &'c pb::Cluster>) -> Self {
        let (mut bytes, mut shells) = (Vec::new(), Vec::new());
        let mut shell_ends = Vec::new();
        let mut lists = Keyed::default();
        let (mut count, mut endpoints) = (0, 0);
        for cluster in clusters {
            prost::encoding::message::encode(4, cluster, &mut bytes);
            let shell = pb::Cluster {
                endpoints: Vec::new(),
                ..cluster.clone()
            };
            prost::encoding::message::encode(4, &shell, &mut shells);
            shell_ends.push(shells.len());
            let list = pb::ClusterEndpoints {
                cluster: shell.name,
                endpoints: cluster.endpoints.clone(),
            };
            let mut encoded = Vec::new();
            prost::encoding::message::encode(ENDPOINTS_TAG, &list, &mut encoded);
            lists.push(list.cluster, Bytes::from(encoded));
            count += 1;
            endpoints += cluster.endpoints.len();
        }
        let shells = Bytes::from(shells);
        let cluster_shells = keyed(
            &shells,
            lists.parts.iter().map(|l| l.name.clone()).zip(shell_ends),
        );
        ClusterParts {
            bytes: Bytes::from(bytes),
            shells,
            cluster_shells: Arc::new(cluster_shells),
            endpoint_lists: Arc::new(lists),
            count,
            endpoints,
        }
    }
}

/// `all` cut into named parts, each ending where the next begins.
fn keyed(all: &Bytes, ends: impl Iterator<Item = (String, usize)>) -> Keyed {
    let mut keyed = Keyed::default();
    let mut start = 0;
    for (name, end) in ends {
        keyed.push(name, all.slice(start..end));
        start = end;
    }
    keyed
}

/// The parts shared by the views of one namespace and Sidecar scope.
struct NamespaceParts {
    virtual_hosts: Bytes,
    /// Each virtual host: a slice of `virtual_hosts`.
    hosts: Arc<Keyed>,
    count: usize,
    /// FNV-1a over `virtual_hosts` then the clusters.
    hash: u64,
    /// FNV-1a over `virtual_hosts` then the clusters' shells.
    routes: u64,
}

/// Builds the snapshot of every view in `keys`, in order: one translation
/// of the mesh for all of them. Linear in the config, the registry and the
/// number of views.
pub fn build_views(
    keys: &[ViewKey],
    resources: &Arc<Vec<Resource>>,
    nodes: &Arc<Nodes>,
    settings: &MeshSettings,
) -> Vec<Arc<ViewSnapshot>> {
    let index = Index::new(resources, settings);
    let catalog = catalog(&index, nodes, settings);
    let outbound = Outbound::new(&index, &catalog);

    // By the Sidecar scope that narrows them (`None`: every service).
    let mut cluster_parts: HashMap<Option<ScopeKey>, ClusterParts> = HashMap::new();
    let mut namespaces: HashMap<(&str, Option<ScopeKey>), NamespaceParts> = HashMap::new();
    keys.iter()
        .map(|key| {
            let node = key.node();
            let scope = index.sidecars.of_workload(&node, &settings.root_namespace);
            let scope = scope.as_ref();
            let scope_key = scope
                .and_then(|s| s.key())
                .map(|(id, ns, own)| (id, ns.to_owned(), own.to_owned()));
            let clusters = cluster_parts
                .entry(scope_key.clone())
                .or_insert_with(|| ClusterParts::encode(outbound.clusters_in(scope)));
            let ns = namespaces
                .entry((key.namespace.as_str(), scope_key))
                .or_insert_with(|| {
                    let hosts = outbound.virtual_hosts(&key.namespace, scope);
                    let mut buf = Vec::new();
                    let mut ends = Vec::with_capacity(hosts.len());
                    for host in &hosts {
                        prost::encoding::message::encode(3, host, &mut buf);
                        ends.push(buf.len());
                    }
                    let hosts_hash = fnv1a(&buf);
                    let buf = Bytes::from(buf);
                    let names = hosts.iter().map(|h| h.name.clone());
                    NamespaceParts {
                        hash: fnv1a_continue(hosts_hash, &clusters.bytes),
                        routes: fnv1a_continue(hosts_hash, &clusters.shells),
                        hosts: Arc::new(keyed(&buf, names.zip(ends))),
                        virtual_hosts: buf,
                        count: hosts.len(),
                    }
                });
            let inbound = security::inbound_policy(
                namespace_of(&node),
                &key.labels,
                &index.security,
                settings,
            );
            let mut tail = Vec::new();
            prost::encoding::message::encode(5, &inbound, &mut tail);
            let inbound_end = tail.len();
            if let Some(mesh) = settings.for_sidecar(scope).to_proto() {
                prost::encoding::message::encode(6, &mesh, &mut tail);
            }
            let version = format!("{:016x}", fnv1a_continue(ns.hash, &tail));
            let routes = fnv1a_continue(ns.routes, &tail);
            let tail = Bytes::from(tail);
            let parts = vec![
                ns.virtual_hosts.clone(),
                clusters.bytes.clone(),
                tail.clone(),
            ];
            Arc::new(ViewSnapshot {
                version,
                encoded_len: parts.iter().map(Bytes::len).sum(),
                parts,
                clusters: clusters.count,
                endpoints: clusters.endpoints,
                virtual_hosts: ns.count,
                resources: Arc::clone(resources),
                nodes: Arc::clone(nodes),
                routes,
                shells: clusters.shells.clone(),
                hosts: Arc::clone(&ns.hosts),
                cluster_shells: Arc::clone(&clusters.cluster_shells),
                endpoint_lists: Arc::clone(&clusters.endpoint_lists),
                inbound: tail.slice(..inbound_end),
                mesh: tail.slice(inbound_end..),
                increments: Mutex::new(Vec::new()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
