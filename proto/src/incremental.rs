//! Incremental snapshots: what the proxy does with one, and the version both
//! sides compute.
//!
//! A complete snapshot is the whole config. An incremental one
//! (`base_version` set) carries only the parts that changed since the
//! config of `base_version`: the routes part (virtual hosts, clusters
//! without their endpoints, inbound policy, mesh settings) when it changed,
//! and the endpoint lists of the clusters whose endpoints changed. A
//! registration thus sends two endpoint lists, not every route; a route
//! change sends the routes part, not the endpoint lists. A route change and
//! the clusters it needs always travel together (one push, applied whole),
//! so a VirtualService and its DestinationRule changed at once never leave
//! a route without its cluster.
//!
//! [`apply`] rebuilds the complete snapshot from the base and the update and
//! checks that it hashes to the update's `version`: the proxy then builds
//! and validates its runtime config from the whole, as from a complete
//! snapshot, and a failure anywhere is a NACK that keeps the config it had.

use std::collections::HashMap;

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
}

/// The complete snapshot that `update` (incremental) makes of `base` (the
/// complete snapshot the proxy runs), with `update`'s version and nonce.
/// `base` is left as it is: on error nothing has changed.
pub fn apply(base: &pb::Snapshot, update: pb::Snapshot) -> Result<pb::Snapshot, IncrementalError> {
    if update.base_version != base.version {
        return Err(IncrementalError::WrongBase {
            base: update.base_version,
            current: base.version.clone(),
        });
    }
    let mut next = if update.routes_included {
        // The new clusters keep the endpoints of the base's of their name.
        let mut kept: HashMap<&str, &Vec<pb::Endpoint>> = base
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), &c.endpoints))
            .collect();
        let clusters = update
            .clusters
            .into_iter()
            .map(|mut c| {
                if let Some(endpoints) = kept.remove(c.name.as_str()) {
                    c.endpoints.clone_from(endpoints);
                }
                c
            })
            .collect();
        pb::Snapshot {
            virtual_hosts: update.virtual_hosts,
            clusters,
            inbound: update.inbound,
            mesh: update.mesh,
            ..Default::default()
        }
    } else {
        pb::Snapshot {
            virtual_hosts: base.virtual_hosts.clone(),
            clusters: base.clusters.clone(),
            inbound: base.inbound.clone(),
            mesh: base.mesh,
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
        for list in update.endpoints {
            let Some(&i) = by_name.get(&list.cluster) else {
                return Err(IncrementalError::UnknownCluster(list.cluster));
            };
            next.clusters[i].endpoints = list.endpoints;
        }
    }
    let got = version_of(&next);
    if got != update.version {
        return Err(IncrementalError::VersionMismatch {
            base: update.base_version,
            version: update.version,
            got,
        });
    }
    next.version = update.version;
    next.nonce = update.nonce;
    Ok(next)
}

#[cfg(test)]
mod tests;
