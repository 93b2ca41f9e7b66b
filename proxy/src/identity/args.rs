//! The identity flags of `remora-proxy`, and the validated settings made from them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use remora_certs::{SpiffeId, SpiffeIdError, TlsError, TrustBundle, TrustDomain};

/// The control plane's gRPC-over-TLS port, where `Sign` goes when the proxy has a trust bundle.
pub(crate) const CONTROL_PLANE_TLS_PORT: u16 = 15012;
/// The control plane's plaintext gRPC port, when `--control-plane` names none.
pub(crate) const CONTROL_PLANE_PORT: u16 = 15010;

/// The workload identity flags. With a token the proxy gets an X509-SVID from the control
/// plane's CA and serves mTLS; without one it runs plaintext.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Bootstrap token from `remora token create`. Without a token (or --token-file) the proxy
    /// has no identity and mTLS is off.
    #[arg(
        long,
        env = "REMORA_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the bootstrap token (surrounding whitespace is ignored).
    #[arg(long, env = "REMORA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM trust bundle (the control plane's `ca-cert.pem`). With it the proxy asks for its
    /// certificate over TLS and verifies the control plane; without it, over plaintext.
    #[arg(long, env = "REMORA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// `host:port` of the identity service. Default: with --ca-cert, the --control-plane host
    /// on port 15012 (TLS); without, the --control-plane address itself (plaintext).
    #[arg(long, env = "REMORA_CA_ADDR")]
    pub ca_address: Option<String>,
    /// The trust domain of this workload's SPIFFE ID and of the control plane's.
    #[arg(long, env = "REMORA_TRUST_DOMAIN", default_value = "cluster.local", value_parser = parse_trust_domain)]
    pub trust_domain: TrustDomain,
    /// The certificate lifetime to ask for, e.g. `10s`, `90m`, `24h` (default: the control
    /// plane's `--cert-lifetime`, which is also the most it grants).
    #[arg(long, env = "REMORA_CERT_LIFETIME", value_parser = parse_lifetime)]
    pub cert_lifetime: Option<Duration>,
}

/// Where and how to reach the identity service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaAddress {
    /// Host name or IP (IPv6 in brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for CaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How `Sign` reaches the CA.
#[derive(Debug)]
pub enum CaTransport {
    /// gRPC over TLS, verifying the control plane against this bundle (`--ca-cert`).
    Tls(TrustBundle),
    /// Plaintext gRPC: the token travels in clear.
    Plaintext,
}

/// Validated identity settings: everything needed to ask for certificates.
#[derive(Debug)]
pub struct IdentitySettings {
    /// The identity asked for, `spiffe://<td>/ns/<namespace>/sa/<service account>`.
    pub id: SpiffeId,
    /// The bootstrap token (never logged).
    pub token: String,
    /// The identity service.
    pub address: CaAddress,
    /// TLS with a bundle, or plaintext.
    pub transport: CaTransport,
    /// Requested lifetime in whole seconds; 0 asks for the control plane's default.
    pub lifetime_secs: u64,
}

/// Why the identity flags cannot be used; the proxy does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// `--token-file` cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token (or token file) is empty.
    #[error("{origin} is empty: give the token printed by `remora token create`")]
    EmptyToken {
        /// `--token` or the file path.
        origin: String,
    },
    /// `--ca-cert` cannot be read.
    #[error("cannot read --ca-cert {path}: {source}")]
    CaCertFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `--ca-cert` is not a usable trust bundle.
    #[error("--ca-cert {path}: {source}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: TlsError,
    },
    /// The namespace or service account does not make a SPIFFE ID.
    #[error("cannot make this workload's SPIFFE ID: {0}")]
    SpiffeId(#[from] SpiffeIdError),
    /// An address that is not `host:port`.
    #[error("{flag} `{value}`: {reason}")]
    Address {
        /// The flag the address came from.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl IdentityArgs {
    /// The settings, or `None` when no token is given (mTLS off). Reads the token file and
    /// `--ca-cert`; `control_plane` is the `--control-plane` URL the default address derives
    /// from.
    pub fn settings(
        &self,
        control_plane: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<IdentitySettings>, SettingsError> {
        let Some(token) = self.read_token()? else {
            return Ok(None);
        };
        let id = SpiffeId::workload(&self.trust_domain, namespace, service_account)?;
        let transport = match &self.ca_cert {
            Some(path) => CaTransport::Tls(read_bundle(path)?),
            None => CaTransport::Plaintext,
        };
        let address = match &self.ca_address {
            Some(value) => {
                parse_host_port(value, None).map_err(|reason| SettingsError::Address {
                    flag: "--ca-address",
                    value: value.clone(),
                    reason,
                })?
            }
            None => default_ca_address(control_plane, matches!(transport, CaTransport::Tls(_)))?,
        };
        Ok(Some(IdentitySettings {
            id,
            token,
            address,
            transport,
            lifetime_secs: self.cert_lifetime.map_or(0, |d| d.as_secs()),
        }))
    }

    fn read_token(&self) -> Result<Option<String>, SettingsError> {
        let (token, origin) = match (&self.token, &self.token_file) {
            (Some(token), _) => (token.trim().to_owned(), "--token".to_owned()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SettingsError::TokenFile {
                        path: path.clone(),
                        source,
                    })?;
                (
                    text.trim().to_owned(),
                    format!("the token file {}", path.display()),
                )
            }
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(SettingsError::EmptyToken { origin });
        }
        Ok(Some(token))
    }
}

fn read_bundle(path: &Path) -> Result<TrustBundle, SettingsError> {
    let pem = std::fs::read_to_string(path).map_err(|source| SettingsError::CaCertFile {
        path: path.to_owned(),
        source,
    })?;
    TrustBundle::from_pem(&pem).map_err(|source| SettingsError::CaCert {
        path: path.to_owned(),
        source,
    })
}

/// With TLS: the control plane's host on port 15012; plaintext: the control plane's own
/// address (port 15010 when the URL names none).
fn default_ca_address(control_plane: &str, tls: bool) -> Result<CaAddress, SettingsError> {
    let error = |reason: String| SettingsError::Address {
        flag: "--control-plane",
        value: control_plane.to_owned(),
        reason,
    };
    let uri: http::Uri = control_plane
        .parse()
        .map_err(|e: http::uri::InvalidUri| error(e.to_string()))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| error("it names no host".to_owned()))?;
    let port = if tls {
        CONTROL_PLANE_TLS_PORT
    } else {
        uri.port_u16().unwrap_or(CONTROL_PLANE_PORT)
    };
    Ok(CaAddress {
        host: host.to_owned(),
        port,
    })
}

/// Parses `host:port` (IPv6 as `[::1]:15012`); the port is required unless `default_port`.
fn parse_host_port(value: &str, default_port: Option<u16>) -> Result<CaAddress, String> {
    if value.contains("://") || value.contains('/') {
        return Err("expected host:port, without a scheme or path".to_owned());
    }
    let authority: http::uri::Authority = value
        .parse()
        .map_err(|e: http::uri::InvalidUri| format!("not host:port: {e}"))?;
    if authority.as_str().contains('@') {
        return Err("expected host:port, without user information".to_owned());
    }
    let port = authority
        .port_u16()
        .or(default_port)
        .ok_or_else(|| "the port is missing (host:port)".to_owned())?;
    if port == 0 {
        return Err("port 0 cannot be dialled".to_owned());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("the host is missing (host:port)".to_owned());
    }
    Ok(CaAddress {
        host: host.to_owned(),
        port,
    })
}

fn parse_trust_domain(text: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(text).map_err(|e| e.to_string())
}

/// A lifetime of whole seconds, at least one: `<number><unit>` repeated (`h`, `m`, `s`), e.g.
/// `24h`, `90m`, `1h30m`, `10s`.
pub(crate) fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let usage = "write whole numbers with units h, m or s, such as \"24h\", \"90m\" or \"10s\"";
    if text.is_empty() {
        return Err(format!("the lifetime is empty; {usage}"));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}`: the unit is missing; {usage}"))?;
        if digits == 0 {
            return Err(format!("`{text}` does not start with a number; {usage}"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u64 = match unit {
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            _ => return Err(format!("`{text}`: unknown unit `{unit}`; {usage}")),
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| format!("`{text}` is too large"))?;
        total = part;
        rest = tail;
    }
    if total == 0 {
        return Err(format!("`{text}`: the lifetime must be at least 1s"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests;
