//! Getting the first certificate, and renewing it for as long as the proxy runs.

use std::sync::Arc;

use rand::Rng;
use remora_certs::{MeshTls, SpiffeId, WorkloadKey};
use remora_proto::pb::identity::SignRequest;
use tokio::time::Instant;

use crate::events;
use crate::identity::args::{CaAddress, CaTransport, IdentitySettings};
use crate::identity::client::{CaClient, RenewOverTls};
use crate::identity::{Identity, Issued, SignError, Signer, schedule};

/// Starts the workload identity: gets the first certificate (see
/// [`first_certificate`]) and spawns the renewal task. Prints an `identity` event
/// saying where certificates come from; over plaintext, also a `warning` event, since the
/// token then travels in clear.
///
/// Returns when the proxy has its certificate, or with the CA's refusal. With the identity
/// comes the address of the control plane's TLS port, where the discovery stream goes (with
/// the certificate, which is what the control plane registers the proxy as): the identity
/// service's own address when it is TLS, else the TLS port its first answer named (`None` if
/// it named none: discovery then stays on `--control-plane`).
pub async fn start(
    settings: IdentitySettings,
) -> Result<(Arc<Identity>, Option<CaAddress>), SignError> {
    let IdentitySettings {
        id,
        token,
        address,
        transport,
        lifetime_secs,
    } = settings;
    let ca = address.to_string();
    let credentials = Credentials {
        id,
        token,
        lifetime_secs,
    };
    match transport {
        CaTransport::Tls(bundle) => {
            events::emit(
                "identity",
                &[
                    ("mtls", "on"),
                    ("spiffe_id", credentials.id.as_str()),
                    ("ca", &ca),
                    ("transport", "tls"),
                ],
            );
            let mesh = MeshTls::new(bundle);
            let trust_domain = credentials.id.trust_domain();
            let client = CaClient::tls(address, mesh.clone(), &trust_domain)
                .map_err(|e| SignError::Local(e.to_string()))?;
            let identity = Arc::new(first_certificate(&client, &credentials, Some(mesh)).await?);
            let tls_address = client.address().clone();
            tokio::spawn(renew_forever(Arc::clone(&identity), client, credentials));
            Ok((identity, Some(tls_address)))
        }
        CaTransport::Plaintext => {
            events::emit(
                "identity",
                &[
                    ("mtls", "on"),
                    ("spiffe_id", credentials.id.as_str()),
                    ("ca", &ca),
                    ("transport", "plaintext"),
                ],
            );
            let message = format!(
                "no --ca-cert: the first certificate is requested from {ca} over plaintext, so \
                 the bootstrap token travels in clear; give --ca-cert to use the control \
                 plane's TLS port from the start"
            );
            tracing::warn!("{message}");
            events::emit("warning", &[("message", &message)]);
            let plaintext = CaClient::plaintext(address.clone());
            let identity = Arc::new(first_certificate(&plaintext, &credentials, None).await?);
            // From now on the bundle that came with the certificate can verify the control
            // plane: renew over its TLS port, with the certificate.
            let Some(port) = identity.ca_tls_port() else {
                tokio::spawn(renew_forever(Arc::clone(&identity), plaintext, credentials));
                return Ok((identity, None));
            };
            let tls_address = CaAddress {
                host: address.host.clone(),
                port,
            };
            events::emit(
                "identity",
                &[
                    ("mtls", "on"),
                    ("spiffe_id", credentials.id.as_str()),
                    ("ca", &tls_address.to_string()),
                    ("transport", "tls"),
                    ("phase", "renewal"),
                ],
            );
            let trust_domain = credentials.id.trust_domain();
            let tls = CaClient::tls(
                tls_address.clone(),
                identity.mesh_tls().clone(),
                &trust_domain,
            )
            .map_err(|e| SignError::Local(e.to_string()))?;
            tokio::spawn(renew_forever(
                Arc::clone(&identity),
                RenewOverTls::new(tls, plaintext),
                credentials,
            ));
            Ok((identity, Some(tls_address)))
        }
    }
}

/// What every `Sign` request carries besides the CSR.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// The identity asked for.
    pub id: SpiffeId,
    /// The bootstrap token.
    pub token: String,
    /// Requested lifetime in seconds (0: the CA's default).
    pub lifetime_secs: u64,
}

/// Gets the first certificate and returns the [`Identity`] holding it.
///
/// `mesh` is the mTLS state when the operator gave a trust bundle (`--ca-cert`, the same one
/// `signer` verifies the CA with); without one it is made from the bundle the CA sends.
/// While the CA cannot be reached it retries with backoff, printing a `certificate_error`
/// event each time; when the CA refuses (a token for another identity, a forged or expired
/// token) it prints the CA's message in that event and returns the refusal: the proxy must
/// not start.
pub(crate) async fn first_certificate<S: Signer>(
    signer: &S,
    credentials: &Credentials,
    mesh: Option<MeshTls>,
) -> Result<Identity, SignError> {
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let result = sign_once(signer, credentials, &credentials.token, true)
            .await
            .and_then(|issued| with_mesh(issued, mesh.as_ref()));
        match result {
            Ok((mesh, issued)) => {
                crate::identity::set_bootstrap_error(None);
                return Ok(Identity::new(
                    credentials.id.clone(),
                    mesh,
                    issued,
                    jitter(),
                ));
            }
            Err(error) => {
                // Stored before the event, so that whoever saw the event
                // finds the reason on the health ports.
                crate::identity::set_bootstrap_error(Some(error.to_string()));
                report(&credentials.id, "bootstrap", attempt, &error, false);
                if matches!(error, SignError::Refused { .. } | SignError::Local(_)) {
                    return Err(error);
                }
                let wait = schedule::retry_delay(attempt, fraction(), std::time::Duration::ZERO);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The mesh to install the first certificate into: the operator's, or one made from the
/// CA's bundle.
fn with_mesh(mut issued: Issued, mesh: Option<&MeshTls>) -> Result<(MeshTls, Issued), SignError> {
    if let Some(mesh) = mesh {
        return Ok((mesh.clone(), issued));
    }
    let bundle = issued.bundle.take().ok_or_else(|| {
        SignError::BadResponse(
            "no trust bundle came with the certificate, and --ca-cert gives none".to_owned(),
        )
    })?;
    Ok((MeshTls::new(bundle), issued))
}

/// Renews `identity`'s certificate forever: at its renewal point (half-way, with jitter) a
/// new key and CSR, `Sign` presenting the current SVID (and the token); on failure the old
/// certificate stays in use and the attempt is retried with exponential backoff and full
/// jitter, never waiting past expiry, each failure printed as a `certificate_error` event.
///
/// If the CA refuses the token while the certificate is still valid (an expired bootstrap
/// token, say), renewal continues with the certificate alone, which the CA accepts on its TLS
/// port. Once the certificate has expired it cannot be presented, and the token is sent again.
pub(crate) async fn renew_forever<S: Signer>(
    identity: Arc<Identity>,
    signer: S,
    credentials: Credentials,
) {
    let mut send_token = true;
    loop {
        let current = identity.current();
        tokio::time::sleep_until(current.renew_deadline).await;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let valid = Instant::now() < current.expires;
            let token = if send_token || !valid {
                credentials.token.as_str()
            } else {
                ""
            };
            match sign_once(&signer, &credentials, token, valid).await {
                Ok(issued) => {
                    identity.renewed(issued, jitter());
                    break;
                }
                Err(error) => {
                    let now = Instant::now();
                    report(
                        identity.id(),
                        "renewal",
                        attempt,
                        &error,
                        now >= current.expires,
                    );
                    if error.is_refusal() && !token.is_empty() && valid && signer.can_present_svid()
                    {
                        tracing::warn!(
                            "the CA refused the bootstrap token; renewing with the certificate alone"
                        );
                        send_token = false;
                        continue;
                    }
                    let until_expiry = current.expires.saturating_duration_since(now);
                    tokio::time::sleep(schedule::retry_delay(attempt, fraction(), until_expiry))
                        .await;
                }
            }
        }
    }
}

/// One attempt: a new key, its CSR, `Sign`, and the answer checked against the key.
async fn sign_once<S: Signer>(
    signer: &S,
    credentials: &Credentials,
    token: &str,
    present_svid: bool,
) -> Result<Issued, SignError> {
    let key = WorkloadKey::generate().map_err(|e| SignError::Local(e.to_string()))?;
    let csr_pem = key
        .csr(&credentials.id)
        .map_err(|e| SignError::Local(e.to_string()))?;
    let request = SignRequest {
        csr_pem,
        token: token.to_owned(),
        requested_lifetime_seconds: credentials.lifetime_secs,
    };
    let response = signer.sign(request, present_svid).await?;
    Issued::check(response, &key, &credentials.id)
}

/// Prints the `certificate_error` event and logs the failure.
fn report(id: &SpiffeId, phase: &str, attempt: u32, error: &SignError, expired: bool) {
    let message = error.to_string();
    tracing::warn!(spiffe_id = %id, phase, attempt, expired, error = message, "no certificate");
    events::emit(
        "certificate_error",
        &[
            ("spiffe_id", id.as_str()),
            ("phase", phase),
            ("attempt", &attempt.to_string()),
            ("expired", if expired { "true" } else { "false" }),
            ("error", &message),
        ],
    );
}

/// Renewal jitter, uniform in `[-1, 1]`.
fn jitter() -> f64 {
    rand::rng().random_range(-1.0..=1.0)
}

/// Backoff fraction, uniform in `[0, 1]`.
fn fraction() -> f64 {
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(test)]
mod tests;
