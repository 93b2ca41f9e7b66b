//! Which HTTP version a request is sent upstream in. The destination
//! port's declared protocol decides, as in Envoy and Istio: HTTP/1.1 for
//! an `HTTP` port, HTTP/2 for `HTTP2`, `GRPC`, `GRPC-WEB` and `h2c`, and
//! where nothing is declared, the version the client spoke (Istio's
//! protocol sniffing). A DestinationRule's `h2UpgradePolicy: UPGRADE`
//! makes it HTTP/2, its `useClientProtocol: true` the client's.
//!
//! The same rule holds at both ends of a hop between sidecars: the client's
//! sidecar decides for the service port called, and the server's sidecar,
//! for its app, by the app port's declared protocol (the HTTP version that
//! reached it, which the client's sidecar chose, when that port declares
//! none).

use http::Version;
use remora_proto::pb;

use crate::ConfigError;

/// A service port's protocol, as the control plane selected it from the
/// ServiceEntry's `protocol` or the port's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortProtocol {
    /// Nothing declared: the upstream gets what the client spoke.
    #[default]
    Undeclared,
    /// `HTTP`: HTTP/1.1.
    Http1,
    /// `HTTP2`, `GRPC`, `GRPC-WEB`, `h2c`: HTTP/2 with prior knowledge.
    Http2,
    /// `TCP`: an HTTP request for it goes as the client spoke it.
    Tcp,
}

/// One declared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServicePort {
    number: u16,
    /// The port the endpoints serve it on (`targetPort`, else `number`).
    target: u16,
    protocol: PortProtocol,
}

/// The ports a service declares, with their protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePorts(Vec<ServicePort>);

impl ServicePorts {
    /// Validates a cluster's `ports`: numbers in 1–65535, known protocols.
    pub fn build(ports: &[pb::ServicePort], cluster: &str) -> Result<Self, ConfigError> {
        let error = |i: usize, error: String| ConfigError::Policy {
            cluster: cluster.to_owned(),
            error: format!("ports[{i}]: {error}"),
        };
        let port = |value: u32| u16::try_from(value).ok().filter(|p| *p > 0);
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let number = port(p.number)
                    .ok_or_else(|| error(i, format!("{} is not a port", p.number)))?;
                let target = match p.target_port {
                    0 => number,
                    t => {
                        port(t).ok_or_else(|| error(i, format!("target port {t} is not a port")))?
                    }
                };
                let protocol = match pb::PortProtocol::try_from(p.protocol) {
                    Ok(pb::PortProtocol::Undeclared) => PortProtocol::Undeclared,
                    Ok(pb::PortProtocol::Http) => PortProtocol::Http1,
                    Ok(pb::PortProtocol::Http2) => PortProtocol::Http2,
                    Ok(pb::PortProtocol::Tcp) => PortProtocol::Tcp,
                    Err(_) => return Err(error(i, format!("unknown protocol {}", p.protocol))),
                };
                Ok(ServicePort {
                    number,
                    target,
                    protocol,
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The protocol of the port a request for this service calls: `port`
    /// (the captured connection's original port, else the Host's) when it
    /// is declared; else the service's only port, when it declares one (a
    /// Host without a port, or a route from another service's port);
    /// else undeclared.
    pub fn for_request(&self, port: Option<u16>) -> PortProtocol {
        if let Some(found) = port.and_then(|p| self.0.iter().find(|d| d.number == p)) {
            return found.protocol;
        }
        match self.0.as_slice() {
            [only] => only.protocol,
            _ => PortProtocol::Undeclared,
        }
    }

    /// The protocol of app port `port` at a sidecar of this service: the
    /// declared port it is the target of; else, for the sidecar's own
    /// `--app` port (`is_app`), which serves every request that names no
    /// port, the service's only port when it declares one; else
    /// undeclared.
    pub fn for_app_port(&self, port: u16, is_app: bool) -> PortProtocol {
        if let Some(found) = self.0.iter().find(|d| d.target == port) {
            return found.protocol;
        }
        match self.0.as_slice() {
            [only] if is_app => only.protocol,
            _ => PortProtocol::Undeclared,
        }
    }
}

/// A DestinationRule's choice of the upstream's HTTP version
/// (`connectionPool.http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamPolicy {
    /// No choice, `h2UpgradePolicy` DEFAULT (the mesh's default,
    /// DO_NOT_UPGRADE) or DO_NOT_UPGRADE: the port's protocol decides.
    #[default]
    ByPort,
    /// `h2UpgradePolicy: UPGRADE`: HTTP/2 whatever the port declares.
    Upgrade,
    /// `useClientProtocol: true`: the client's version, whatever the port
    /// declares.
    ClientProtocol,
}

impl UpstreamPolicy {
    /// The policy of a cluster's `connectionPool` (absent: [`Self::ByPort`]).
    pub fn build(pool: Option<&pb::ConnectionPool>, cluster: &str) -> Result<Self, ConfigError> {
        let Some(pool) = pool else {
            return Ok(Self::ByPort);
        };
        let error = |error: String| ConfigError::Policy {
            cluster: cluster.to_owned(),
            error,
        };
        let upgrade = match pb::H2UpgradePolicy::try_from(pool.h2_upgrade_policy) {
            Ok(pb::H2UpgradePolicy::Default | pb::H2UpgradePolicy::DoNotUpgrade) => false,
            Ok(pb::H2UpgradePolicy::Upgrade) => true,
            Err(_) => {
                return Err(error(format!(
                    "unknown h2_upgrade_policy {}",
                    pool.h2_upgrade_policy
                )));
            }
        };
        match (upgrade, pool.use_client_protocol) {
            (true, true) => Err(error(
                "use_client_protocol and h2_upgrade_policy UPGRADE are both set".to_owned(),
            )),
            (true, false) => Ok(Self::Upgrade),
            (false, true) => Ok(Self::ClientProtocol),
            (false, false) => Ok(Self::ByPort),
        }
    }
}

/// The HTTP version a request the client sent in `client` goes to the
/// destination's endpoints in, for a port of `port`'s protocol under
/// `policy`.
pub fn upstream_version(port: PortProtocol, policy: UpstreamPolicy, client: Version) -> Version {
    match policy {
        UpstreamPolicy::ClientProtocol => spoken(client),
        UpstreamPolicy::Upgrade => Version::HTTP_2,
        UpstreamPolicy::ByPort => app_version(port, client),
    }
}

/// The HTTP version a request that reached a sidecar in `received` goes
/// to its app in, for an app port of `port`'s protocol (a DestinationRule
/// shapes only the client's side of a hop).
pub fn app_version(port: PortProtocol, received: Version) -> Version {
    match port {
        PortProtocol::Http1 => Version::HTTP_11,
        PortProtocol::Http2 => Version::HTTP_2,
        PortProtocol::Undeclared | PortProtocol::Tcp => spoken(received),
    }
}

/// HTTP/2, or HTTP/1.1 for every HTTP/1 (a proxy sends HTTP/1.0 requests
/// as HTTP/1.1).
fn spoken(client: Version) -> Version {
    if client == Version::HTTP_2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}

#[cfg(test)]
mod tests;
