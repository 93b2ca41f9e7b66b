//! A whole snapshot, compiled: what a proxy serves with and what the
//! control plane checks before it pushes.

use std::collections::HashMap;

use remora_proto::pb;

use crate::path::{EscapedSlashes, PathNormalization};
use crate::{ClusterSpec, ConfigError, InboundPolicy, RouteTable};

/// A validated snapshot whose routes lead to destinations of type `C`:
/// whatever the caller makes of each validated cluster.
#[derive(Debug)]
pub struct CompiledSnapshot<C> {
    /// The snapshot version.
    pub version: String,
    /// The clusters, sorted by name.
    pub clusters: Vec<C>,
    /// The virtual hosts by domain.
    pub routes: RouteTable<C>,
    /// How the inbound listener authenticates and authorizes peers.
    pub inbound: InboundPolicy,
    /// How both directions normalise request paths.
    pub paths: PathNormalization,
    /// What a captured connection to a destination outside the mesh gets.
    pub outbound_policy: OutboundPolicy,
}

impl<C: Clone> CompiledSnapshot<C> {
    /// Validates every part of `snapshot`, making each validated cluster
    /// into a destination with `cluster` (the proxy adds its live state
    /// there). The first error stops it; its text names the resource and
    /// the field.
    pub fn compile(
        snapshot: &pb::Snapshot,
        cluster: impl FnMut(ClusterSpec) -> Result<C, ConfigError>,
    ) -> Result<Self, ConfigError> {
        Self::compile_after(snapshot, None, cluster)
    }

    /// As [`Self::compile`], where `previous` is the route table in force:
    /// routes that split as they did go on with their weighted sequences
    /// ([`RouteTable::compile_after`]).
    pub fn compile_after(
        snapshot: &pb::Snapshot,
        previous: Option<&RouteTable<C>>,
        mut cluster: impl FnMut(ClusterSpec) -> Result<C, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let inbound = InboundPolicy::build(snapshot.inbound.as_ref())?;
        let paths = path_normalization(snapshot.mesh.as_ref())?;
        let mut clusters = HashMap::with_capacity(snapshot.clusters.len());
        for c in &snapshot.clusters {
            let built = cluster(ClusterSpec::compile(c)?)?;
            if clusters.insert(c.name.clone(), built).is_some() {
                return Err(ConfigError::DuplicateCluster {
                    name: c.name.clone(),
                });
            }
        }
        let outbound_policy = OutboundPolicy::from_proto(snapshot.mesh.as_ref())?;
        let routes = RouteTable::compile_after(&snapshot.virtual_hosts, previous, |name| {
            clusters.get(name).cloned()
        })?;
        let mut clusters: Vec<(String, C)> = clusters.into_iter().collect();
        clusters.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            version: snapshot.version.clone(),
            clusters: clusters.into_iter().map(|(_, c)| c).collect(),
            routes,
            inbound,
            paths,
            outbound_policy,
        })
    }
}

/// Istio's `outboundTrafficPolicy.mode`: what a captured connection to a
/// destination outside the mesh gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboundPolicy {
    /// Through to its original destination, untouched (Istio's default).
    #[default]
    AllowAny,
    /// Refused: 502 with the reason for HTTP, closed for TCP.
    RegistryOnly,
}

impl OutboundPolicy {
    /// The policy of a snapshot's mesh settings (absent: `ALLOW_ANY`).
    pub fn from_proto(mesh: Option<&pb::MeshSettings>) -> Result<Self, ConfigError> {
        let value = mesh.map_or(0, |m| m.outbound_traffic_policy);
        match pb::OutboundTrafficPolicy::try_from(value) {
            Ok(pb::OutboundTrafficPolicy::AllowAny) => Ok(Self::AllowAny),
            Ok(pb::OutboundTrafficPolicy::RegistryOnly) => Ok(Self::RegistryOnly),
            Err(_) => Err(ConfigError::MeshSettings {
                field: "outbound_traffic_policy",
                error: format!("unknown policy {value}"),
            }),
        }
    }
}

/// The mesh's path normalisation: Istio's names on the wire, each an
/// unknown value a NACK (a newer control plane).
fn path_normalization(mesh: Option<&pb::MeshSettings>) -> Result<PathNormalization, ConfigError> {
    let Some(mesh) = mesh else {
        return Ok(PathNormalization::default());
    };
    let unknown = |field, value| ConfigError::MeshSettings {
        field,
        error: format!("unknown value {value}"),
    };
    let mut paths = match pb::PathNormalization::try_from(mesh.path_normalization) {
        Ok(pb::PathNormalization::None) => PathNormalization::NONE,
        Ok(pb::PathNormalization::Base) => PathNormalization::BASE,
        Ok(pb::PathNormalization::MergeSlashes) => PathNormalization::MERGE_SLASHES,
        Ok(pb::PathNormalization::DecodeAndMergeSlashes) => {
            PathNormalization::DECODE_AND_MERGE_SLASHES
        }
        Err(_) => return Err(unknown("path_normalization", mesh.path_normalization)),
    };
    paths.escaped_slashes = match pb::EscapedSlashesAction::try_from(mesh.escaped_slashes) {
        Ok(pb::EscapedSlashesAction::Default) => paths.escaped_slashes,
        Ok(pb::EscapedSlashesAction::KeepUnchanged) => EscapedSlashes::Keep,
        Ok(pb::EscapedSlashesAction::RejectRequest) => EscapedSlashes::Reject,
        Ok(pb::EscapedSlashesAction::UnescapeAndForward) => EscapedSlashes::Unescape,
        Err(_) => return Err(unknown("escaped_slashes", mesh.escaped_slashes)),
    };
    Ok(paths)
}

#[cfg(test)]
mod tests;
