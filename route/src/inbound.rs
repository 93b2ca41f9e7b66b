//! The inbound policy of a snapshot: the PeerAuthentication mode per app
//! port and the compiled AuthorizationPolicies.

use std::collections::HashMap;

use remora_proto::pb;

use crate::ConfigError;
use crate::authz::Authorizer;

/// PeerAuthentication mode, as resolved by the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// mTLS and plaintext, told apart by the connection's first byte.
    #[default]
    Permissive,
    /// mTLS with a client certificate only.
    Strict,
    /// Plaintext only.
    Disable,
}

impl MtlsMode {
    fn from_proto(value: i32, field: &str) -> Result<Self, ConfigError> {
        match pb::MtlsMode::try_from(value) {
            Ok(pb::MtlsMode::Permissive) => Ok(Self::Permissive),
            Ok(pb::MtlsMode::Strict) => Ok(Self::Strict),
            Ok(pb::MtlsMode::Disable) => Ok(Self::Disable),
            Err(_) => Err(ConfigError::Inbound {
                error: format!("{field}: unknown mTLS mode {value}"),
            }),
        }
    }
}

/// How the inbound listener authenticates and authorizes peers.
/// The default (a snapshot without `inbound`) is PERMISSIVE with no
/// authorization policy.
#[derive(Debug, Clone, Default)]
pub struct InboundPolicy {
    mtls: MtlsMode,
    port_mtls: HashMap<u32, MtlsMode>,
    authz: Authorizer,
}

impl InboundPolicy {
    /// Validates the snapshot's `inbound` (absent: the default).
    pub fn build(inbound: Option<&pb::InboundPolicy>) -> Result<Self, ConfigError> {
        let Some(p) = inbound else {
            return Ok(Self::default());
        };
        let port_mtls = p
            .port_mtls
            .iter()
            .map(|(port, mode)| {
                Ok((
                    *port,
                    MtlsMode::from_proto(*mode, &format!("inbound.port_mtls[{port}]"))?,
                ))
            })
            .collect::<Result<_, ConfigError>>()?;
        let authz = Authorizer::build(&p.deny, &p.allow).map_err(|e| ConfigError::Inbound {
            error: e.to_string(),
        })?;
        Ok(Self {
            mtls: MtlsMode::from_proto(p.mtls, "inbound.mtls")?,
            port_mtls,
            authz,
        })
    }

    /// The mode for connections to `app_port`: its `portLevelMtls` entry if
    /// there is one, else the workload's mode.
    pub fn mode_for(&self, app_port: u16) -> MtlsMode {
        self.port_mtls
            .get(&u32::from(app_port))
            .copied()
            .unwrap_or(self.mtls)
    }

    /// The compiled AuthorizationPolicies.
    pub fn authz(&self) -> &Authorizer {
        &self.authz
    }
}

#[cfg(test)]
mod tests;
