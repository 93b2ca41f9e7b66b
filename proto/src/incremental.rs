//! Incremental snapshots: what the proxy does with one, and the version both
//! sides compute.
//!
//! A complete snapshot is the whole config. An incremental one
//! (`base_version` set) carries only what changed since the config of
//! `base_version`, per resource in the manner of Envoy's delta xDS: the
//! virtual hosts and clusters (without endpoints) that are new or changed,
//! each whole, the names of those removed, the inbound policy and mesh
//! settings when they changed, and the endpoint lists of the clusters whose
//! endpoints changed. A registration thus sends two endpoint lists, a
//! one-route change one virtual host. A route change and the clusters it
//! needs always travel together (one push, applied whole), so a
//! VirtualService and its DestinationRule changed at once never leave a
//! route without its cluster.
//!
//! The older form, for proxies that do not say
//! `accepts_resource_increments`, sends the routes part whole
//! (`routes_included`: every virtual host, every cluster without
//! endpoints, inbound and mesh); [`apply`] still takes it.
//!
//! [`apply`] rebuilds the complete snapshot from the base and the update and
//! checks that it hashes to the update's `version`: the proxy then builds
//! and validates its runtime config from the whole, as from a complete
//! snapshot, and a failure anywhere is a NACK that keeps the config it had.
//! Virtual hosts and clusters are merged by name (the control plane lists
//! them in name order, so the merged list is the one it hashed), with maps:
//! a hostile update costs at most `n log n` in its size.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;

use crate::pb;

/// FNV-1a (64 bit) over `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(0xcbf2_9ce4_8422_2325, bytes)
}

/// FNV-1a continued from `hash` over `bytes`: hashing `a` then `b` so is
/// hashing their concatenation.
pub fn fnv1a_continue(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The version of a complete snapshot: FNV-1a over its encoding with
/// `version` and `nonce` empty, in hex (16 digits).
pub fn version_of(snapshot: &pb::Snapshot) -> String {
    let mut bare = pb::Snapshot {
        version: String::new(),
        nonce: String::new(),
        ..Default::default()
    };
    // Only fields 3 to 6 make the version; clone them, not the rest.
    bare.virtual_hosts.clone_from(&snapshot.virtual_hosts);
    bare.clusters.clone_from(&snapshot.clusters);
    bare.inbound.clone_from(&snapshot.inbound);
    bare.mesh = snapshot.mesh;
    format!("{:016x}", fnv1a(&bare.encode_to_vec()))
}

/// Why an incremental snapshot cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IncrementalError {
    /// It applies to a config this proxy does not run.
    #[error("incremental snapshot for version {base:?}, but this proxy runs {current:?}")]
    WrongBase {
        /// `base_version`.
        base: String,
        /// The version the proxy runs.
        current: String,
    },
    /// It sends the endpoints of a cluster the result does not have.
    #[error("incremental snapshot sends endpoints of {0:?}, a cluster it does not have")]
    UnknownCluster(String),
    /// The result is not the config the control plane versioned.
    #[error("incremental snapshot applied to {base} gives version {got}, not {version}")]
    VersionMismatch {
        /// `base_version`.
        base: String,
        /// `version`.
        version: String,
        /// The result's.
        got: String,
    },
    /// It names a resource twice (sends it twice, or removes it twice), or
    /// the base itself has two of that name.
    #[error("incremental snapshot names {kind} {name:?} twice")]
    Duplicate {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// It removes a resource the base does not have.
    #[error("incremental snapshot removes {kind} {name:?}, which the base does not have")]
    NotInBase {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// It both sends and removes a resource.
    #[error("incremental snapshot both sends and removes {kind} {name:?}")]
    SentAndRemoved {
        /// What kind of resource.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// It sends a cluster with endpoints (they travel in `endpoints`).
    #[error("incremental snapshot sends cluster {0:?} with endpoints, not in `endpoints`")]
    EndpointsInCluster(String),
    /// It sets `routes_included` together with per-resource fields.
    #[error("incremental snapshot sets `routes_included` and per-resource removals or flags")]
    MixedForms,
}

/// The kinds of resource an incremental snapshot sends by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A `VirtualHost`, by `name`.
    VirtualHost,
    /// A `Cluster`, by `name`.
    Cluster,
    /// A `ClusterEndpoints`, by `cluster`.
    EndpointList,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResourceKind::VirtualHost => "virtual host",
            ResourceKind::Cluster => "cluster",
            ResourceKind::EndpointList => "endpoint list",
        })
    }
}

/// The longest name an error quotes: names come from the network, and an
/// error goes back in a NACK and into logs.
const QUOTED_MAX: usize = 256;

/// `name`, cut to [`QUOTED_MAX`] bytes (on a character boundary).
fn quoted(name: &str) -> String {
    if name.len() <= QUOTED_MAX {
        return name.to_owned();
    }
    format!("{}...", crate::cut(name, QUOTED_MAX))
}

/// The complete snapshot that `update` (incremental) makes of `base` (the
/// complete snapshot the proxy runs), with `update`'s version and nonce.
/// `base` is left as it is: on error nothing has changed.
pub fn apply(base: &pb::Snapshot, update: pb::Snapshot) -> Result<pb::Snapshot, IncrementalError> {
    if update.base_version != base.version {
        return Err(IncrementalError::WrongBase {
            base: quoted(&update.base_version),
            current: base.version.clone(),
        });
    }
    let per_resource = !update.removed_virtual_hosts.is_empty()
        || !update.removed_clusters.is_empty()
        || update.inbound_included
        || update.mesh_included;
    let mut next = if update.routes_included {
        if per_resource {
            return Err(IncrementalError::MixedForms);
        }
        routes_whole(
            base,
            update.virtual_hosts,
            update.clusters,
            update.inbound,
            update.mesh,
        )
    } else {
        pb::Snapshot {
            virtual_hosts: merge(
                ResourceKind::VirtualHost,
                &base.virtual_hosts,
                update.virtual_hosts,
                &update.removed_virtual_hosts,
                |_, _| Ok(()),
            )?,
            clusters: merge(
                ResourceKind::Cluster,
                &base.clusters,
                update.clusters,
                &update.removed_clusters,
                |cluster, replaced| {
                    if !cluster.endpoints.is_empty() {
                        return Err(IncrementalError::EndpointsInCluster(quoted(&cluster.name)));
                    }
                    // A changed cluster keeps its endpoints; a new one has none yet.
                    if let Some(replaced) = replaced {
                        cluster.endpoints.clone_from(&replaced.endpoints);
                    }
                    Ok(())
                },
            )?,
            inbound: if update.inbound_included {
                update.inbound
            } else {
                base.inbound.clone()
            },
            mesh: if update.mesh_included {
                update.mesh
            } else {
                base.mesh
            },
            ..Default::default()
        }
    };
    if !update.endpoints.is_empty() {
        let by_name: HashMap<String, usize> = next
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let mut seen = HashSet::with_capacity(update.endpoints.len());
        for list in update.endpoints {
            let Some(&i) = by_name.get(&list.cluster) else {
                return Err(IncrementalError::UnknownCluster(quoted(&list.cluster)));
            };
            if !seen.insert(i) {
                return Err(IncrementalError::Duplicate {
                    kind: ResourceKind::EndpointList,
                    name: quoted(&list.cluster),
                });
            }
            next.clusters[i].endpoints = list.endpoints;
        }
    }
    let got = version_of(&next);
    if got != update.version {
        return Err(IncrementalError::VersionMismatch {
            base: update.base_version,
            version: quoted(&update.version),
            got,
        });
    }
    next.version = update.version;
    next.nonce = update.nonce;
    Ok(next)
}

/// The older form (`routes_included`): the routes part whole, the new
/// clusters keeping the endpoints of the base's of their name.
fn routes_whole(
    base: &pb::Snapshot,
    virtual_hosts: Vec<pb::VirtualHost>,
    clusters: Vec<pb::Cluster>,
    inbound: Option<pb::InboundPolicy>,
    mesh: Option<pb::MeshSettings>,
) -> pb::Snapshot {
    let mut kept: HashMap<&str, &Vec<pb::Endpoint>> = base
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), &c.endpoints))
        .collect();
    let clusters = clusters
        .into_iter()
        .map(|mut c| {
            if let Some(endpoints) = kept.remove(c.name.as_str()) {
                c.endpoints.clone_from(endpoints);
            }
            c
        })
        .collect();
    pb::Snapshot {
        virtual_hosts,
        clusters,
        inbound,
        mesh,
        ..Default::default()
    }
}

/// A resource an incremental snapshot sends by name.
trait Named: Clone {
    fn name(&self) -> &str;
}

impl Named for pb::VirtualHost {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for pb::Cluster {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Where a merged resource comes from.
#[derive(Clone, Copy)]
enum Slot {
    /// The base's, at this index, unchanged.
    Base(usize),
    /// The update's, at this index, replacing the base's at the other (if any).
    Sent(usize, Option<usize>),
}

/// The base's resources with `sent` added or replacing theirs by name and
/// `removed` gone, in name order; the base's list as it is when neither
/// names any. `adopt` finishes each sent resource given the base's it
/// replaces.
fn merge<T: Named>(
    kind: ResourceKind,
    base: &[T],
    sent: Vec<T>,
    removed: &[String],
    mut adopt: impl FnMut(&mut T, Option<&T>) -> Result<(), IncrementalError>,
) -> Result<Vec<T>, IncrementalError> {
    if sent.is_empty() && removed.is_empty() {
        return Ok(base.to_vec());
    }
    let duplicate = |name: &str| IncrementalError::Duplicate {
        kind,
        name: quoted(name),
    };
    let mut slots: BTreeMap<&str, Slot> = BTreeMap::new();
    for (i, resource) in base.iter().enumerate() {
        if slots.insert(resource.name(), Slot::Base(i)).is_some() {
            return Err(duplicate(resource.name()));
        }
    }
    for (i, resource) in sent.iter().enumerate() {
        match slots.entry(resource.name()) {
            Entry::Vacant(slot) => {
                slot.insert(Slot::Sent(i, None));
            }
            Entry::Occupied(mut slot) => match *slot.get() {
                Slot::Base(j) => {
                    slot.insert(Slot::Sent(i, Some(j)));
                }
                Slot::Sent(..) => return Err(duplicate(resource.name())),
            },
        }
    }
    let mut gone = HashSet::with_capacity(removed.len());
    for name in removed {
        match slots.remove(name.as_str()) {
            Some(Slot::Base(_)) => {
                gone.insert(name.as_str());
            }
            Some(Slot::Sent(..)) => {
                return Err(IncrementalError::SentAndRemoved {
                    kind,
                    name: quoted(name),
                });
            }
            None if gone.contains(name.as_str()) => return Err(duplicate(name)),
            None => {
                return Err(IncrementalError::NotInBase {
                    kind,
                    name: quoted(name),
                });
            }
        }
    }
    let order: Vec<Slot> = slots.into_values().collect();
    let mut sent: Vec<Option<T>> = sent.into_iter().map(Some).collect();
    let mut merged = Vec::with_capacity(order.len());
    for slot in order {
        match slot {
            Slot::Base(j) => merged.push(base[j].clone()),
            Slot::Sent(i, replaced) => {
                // Each sent index has one slot: it is always there to take.
                if let Some(mut resource) = sent.get_mut(i).and_then(Option::take) {
                    adopt(&mut resource, replaced.map(|j| &base[j]))?;
                    merged.push(resource);
                }
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests;
