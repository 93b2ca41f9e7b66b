//! Command-line flags: `remora serve`'s CA and TLS-port flags, and `remora token create`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use remora_certs::{Ca, CaError, TrustDomain};

use super::{
    CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, IdentityService, TlsPort, TlsPortError,
};
use crate::config::parse_duration;
use crate::metrics::Metrics;
use crate::token::{
    TOKEN_KEY_FILE, TokenError, TokenIdentity, TokenKey, TokenKeyError, UsedTokenError, UsedTokens,
};

/// Where the CA and the token key live unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./remora-data";
/// The TLS port's default, as Istio's istiod.
const DEFAULT_TLS_PORT: u16 = 15012;
/// How long `serve` waits for another process that is creating the CA in the same directory.
const CA_CREATION_WAIT: Duration = Duration::from_secs(2);

/// `remora serve`'s flags for the CA and the gRPC TLS port.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Directory of the CA (`ca-cert.pem`, `ca-key.pem`, optional `cert-chain.pem`) and of the
    /// bootstrap-token key (`token-key`). Both are generated on first start (keys mode 0600)
    /// and reused after; to use your own CA, root or intermediate, put its files there first.
    #[arg(long, env = "REMORA_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// SPIFFE trust domain of the identities issued:
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    #[arg(long, env = "REMORA_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: TrustDomain,
    /// Lifetime of workload certificates, and the most a proxy may ask for: `24h`, `90m`,
    /// `10s`. Proxies renew half-way through.
    #[arg(
        long,
        env = "REMORA_CERT_LIFETIME",
        default_value = "24h",
        value_parser = parse_lifetime
    )]
    pub cert_lifetime: Duration,
    /// Where proxies connect with TLS (Discovery and Identity; the server is
    /// spiffe://<trust-domain>/ns/remora-system/sa/remora). Default: the IP of --grpc-addr
    /// with port 15012, or a free port when --grpc-addr's port is 0.
    #[arg(long, env = "REMORA_GRPC_TLS_ADDR")]
    pub grpc_tls_addr: Option<SocketAddr>,
}

/// The identity side of `serve`, ready to serve: the service and the bound TLS port.
#[derive(Debug)]
pub struct IdentitySetup {
    /// The `Identity` gRPC service, for both ports.
    pub service: IdentityService,
    /// The TLS port, bound, with its certificate.
    pub tls_port: TlsPort,
}

impl IdentityArgs {
    /// The TLS address: `--grpc-tls-addr`, or the default derived from `grpc_addr`.
    pub fn tls_addr(&self, grpc_addr: SocketAddr) -> SocketAddr {
        self.grpc_tls_addr.unwrap_or_else(|| {
            let port = if grpc_addr.port() == 0 {
                0
            } else {
                DEFAULT_TLS_PORT
            };
            SocketAddr::new(grpc_addr.ip(), port)
        })
    }

    /// Loads or creates the CA and the token key in the data directory, binds the TLS port
    /// and issues its certificate. `grpc_addr` is `--grpc-addr` (for the TLS port's default).
    pub async fn start(
        &self,
        grpc_addr: SocketAddr,
        metrics: Metrics,
    ) -> Result<IdentitySetup, StartError> {
        let ca = Arc::new(load_ca(&self.data_dir, &self.trust_domain).await?);
        let tokens = TokenKey::load_or_create(&self.data_dir)?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let used = UsedTokens::load(&self.data_dir, now)?;
        let addr = self.tls_addr(grpc_addr);
        let listener =
            crate::grpc::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?
            .port();
        let tls_port = TlsPort::new(listener, Arc::clone(&ca), self.cert_lifetime)?;
        tracing::info!(
            data_dir = %self.data_dir.display(),
            trust_domain = %self.trust_domain,
            ca = ?ca,
            "certificate authority ready"
        );
        Ok(IdentitySetup {
            service: IdentityService::new(ca, tokens, self.cert_lifetime, port, metrics)
                .with_used_tokens(used),
            tls_port,
        })
    }
}

/// `Ca::load_or_create`, waiting a little when another process is creating the CA in the same
/// directory right now (it writes the key, then the certificate).
async fn load_ca(dir: &Path, trust_domain: &TrustDomain) -> Result<Ca, StartError> {
    let deadline = tokio::time::Instant::now() + CA_CREATION_WAIT;
    loop {
        // Blocking file I/O, once at startup before anything is served.
        match Ca::load_or_create(dir, trust_domain.clone()) {
            Err(CaError::IncompleteFiles { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => {
                return result.map_err(|source| StartError::Ca {
                    dir: dir.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Why `serve` could not start its CA or TLS port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The CA could not be loaded or created.
    #[error("cannot load or create the CA in {}: {source}", dir.display())]
    Ca {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: CaError,
    },
    /// The token key could not be loaded or created.
    #[error(transparent)]
    TokenKey(#[from] TokenKeyError),
    /// The record of used single-use tokens could not be read.
    #[error(transparent)]
    UsedTokens(#[from] UsedTokenError),
    /// The TLS port could not be bound.
    #[error("cannot listen for gRPC over TLS on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// The TLS port's certificate could not be made.
    #[error(transparent)]
    TlsPort(#[from] TlsPortError),
}

/// `remora token ...`: bootstrap tokens.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a bootstrap token for a workload identity. Whoever holds it can get certificates
    /// for spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> from the control plane
    /// using the same data directory: give it to that workload's proxy, and keep it secret.
    Create {
        /// The workload's namespace (A-Z, a-z, 0-9, '-', '_').
        #[arg(long, short = 'n')]
        namespace: String,
        /// The workload's service account (A-Z, a-z, 0-9, '-', '_').
        #[arg(long, short = 's')]
        service_account: String,
        /// The control plane's data directory, where the token key is (made if missing).
        #[arg(long, env = "REMORA_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Refuse the token after this long (`1h`, `720h`). Without it the token never
        /// expires; a proxy holding a valid certificate renews without the token.
        #[arg(long, value_parser = parse_lifetime)]
        ttl: Option<Duration>,
        /// The CA signs one certificate for this token and refuses it after (it remembers the
        /// token in its data directory until the token expires). Needs --ttl. Without it a
        /// token can be used by any number of proxies until it expires.
        #[arg(long, requires = "ttl")]
        single_use: bool,
        /// Make a token for the control plane's own identity
        /// (remora-system/remora), which proxies trust as their control plane and CA: only
        /// for another control plane sharing the data directory.
        #[arg(long)]
        force: bool,
    },
}

impl TokenCommand {
    /// Runs the command: the token on stdout (one line), notes on stderr.
    pub fn run(&self) -> ExitCode {
        match self.execute() {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    fn execute(&self) -> Result<String, TokenCommandError> {
        let Self::Create {
            namespace,
            service_account,
            data_dir,
            ttl,
            single_use,
            force,
        } = self;
        if namespace == CONTROL_PLANE_NAMESPACE
            && service_account == CONTROL_PLANE_SERVICE_ACCOUNT
            && !force
        {
            return Err(TokenCommandError::ControlPlaneIdentity);
        }
        let mut identity = TokenIdentity::new(namespace, service_account)?;
        if let Some(ttl) = ttl {
            identity = identity.expiring_after(SystemTime::now(), *ttl);
        }
        if *single_use {
            identity = identity.single_use()?;
        }
        let key = TokenKey::load_or_create(data_dir)?;
        if key.was_created() {
            eprintln!(
                "created a new token key {}; `remora serve` must use --data-dir {}",
                data_dir.join(TOKEN_KEY_FILE).display(),
                data_dir.display()
            );
        }
        Ok(key.issue(&identity))
    }
}

#[derive(Debug, thiserror::Error)]
enum TokenCommandError {
    #[error(
        "{CONTROL_PLANE_NAMESPACE}/{CONTROL_PLANE_SERVICE_ACCOUNT} is the control plane's own \
         identity: whoever holds its certificate can pose as the control plane to every proxy; \
         give --force if this token is for another control plane"
    )]
    ControlPlaneIdentity,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Key(#[from] TokenKeyError),
}

/// A positive duration such as `24h` or `10s`.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err("it must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(why) => Err(format!(
            "{why}; write a number and a unit (h, m, s, ms), such as \"24h\", \"90m\" or \"10s\""
        )),
    }
}

#[cfg(test)]
mod tests;
