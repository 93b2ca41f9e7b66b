//! Certificates minted with rcgen for the tests, in any shape a test needs (including the
//! broken ones that `remora_certs::Ca` refuses to make).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A CA made directly with rcgen.
pub(crate) struct TestCa {
    params: CertificateParams,
    pub(crate) key: KeyPair,
    pub(crate) cert: CertificateDer<'static>,
}

impl TestCa {
    /// A self-signed root named `name`.
    pub(crate) fn root(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap().into();
        Self { params, key, cert }
    }

    /// An intermediate CA signed by `self`.
    pub(crate) fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.signed_by(&key, &self.issuer()).unwrap().into();
        Self { params, key, cert }
    }

    pub(crate) fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    pub(crate) fn cert_pem(&self) -> String {
        pem(&self.cert)
    }

    /// A leaf with these URI SANs, valid from `not_before` to `not_after`.
    pub(crate) fn leaf_valid(
        &self,
        uris: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = uris
            .iter()
            .map(|uri| SanType::URI((*uri).try_into().unwrap()))
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer()).unwrap().into();
        Leaf { cert, key }
    }

    /// A leaf with these URI SANs, valid for an hour either side of [`now`].
    pub(crate) fn leaf(&self, uris: &[&str]) -> Leaf {
        self.leaf_valid(uris, now() - HOUR, now() + HOUR)
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (now() - 24 * HOUR).into();
    params.not_after = (now() + 24 * HOUR).into();
    params
}

/// A leaf certificate and its key.
pub(crate) struct Leaf {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: KeyPair,
}

/// The tests' "now": the real clock, which the certificates are made around.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

pub(crate) fn unix(time: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(time.duration_since(SystemTime::UNIX_EPOCH).unwrap())
}

pub(crate) fn pem(cert: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()))
}
