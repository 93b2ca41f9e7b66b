//! Bootstrap tokens: how a workload proves, on its first certificate request, which identity
//! the CA may issue to it.
//!
//! `remora token create --namespace N --service-account S` prints
//!
//! ```text
//! v1.<namespace>.<service-account>.<mac>                  never expires
//! v1.<namespace>.<service-account>.<expiry>.<mac>         with --ttl: expiry in Unix seconds
//! v1.<namespace>.<service-account>.<expiry>.<id>.<mac>    with --ttl and --single-use
//! ```
//!
//! where `<mac>` is HMAC-SHA256, base64url without padding, over everything before the last
//! `.`, keyed with 32 random bytes kept in the data directory ([`TOKEN_KEY_FILE`], mode 0600,
//! made on first use). Whoever holds the token may obtain certificates for
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`: treat it as a secret, like a
//! Kubernetes service-account token.
//!
//! # Why this shape
//! - **Stateless.** The CA keeps no list of tokens: the MAC proves that this control plane
//!   issued it, and the fields say for whom. Any control plane sharing the key file accepts it.
//! - **Revocation** is by replacing the key file, which invalidates every token at once
//!   (v1 has no per-token revocation). Tokens without `--ttl` never expire; give proxies that
//!   can be re-provisioned a `--ttl`. Once a proxy holds a valid certificate it renews on the TLS
//!   port with that certificate, so an expired bootstrap token does not stop renewals.
//! - **Reuse.** A token is a bearer credential: every proxy that presents it, as often as it
//!   likes until it expires, gets a certificate. A single-use token (`--single-use`, which
//!   needs `--ttl`) carries a random ID; the CA remembers the IDs it has signed for in the data
//!   directory ([`UsedTokens`]) until the token would have expired anyway, and refuses a second
//!   use. That is the only state tokens have.
//! - **No `.` in the namespace or service account.** SPIFFE path segments may contain dots, but
//!   here `.` separates the fields (Kubernetes namespaces never contain one). Both must be
//!   non-empty and made of `A-Z a-z 0-9 - _`.
//! - Verification compares MACs in constant time (`ring::hmac::verify`).

mod key_file;
mod used;

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use remora_certs::{SpiffeId, SpiffeIdError, TrustDomain};
use ring::hmac;

pub use key_file::{TOKEN_KEY_FILE, TokenKeyError};
pub use used::{MAX_USED_TOKENS, USED_TOKENS_FILE, UsedTokenError, UsedTokens};

/// The version tag every token starts with.
const VERSION: &str = "v1";
/// Length of the HMAC key, in bytes.
pub const KEY_LEN: usize = 32;
/// Longest namespace or service account accepted, in bytes (a DNS-1123 subdomain's limit).
const MAX_SEGMENT_LEN: usize = 253;
/// Random bytes in a single-use token's ID.
const SINGLE_USE_ID_LEN: usize = 16;

/// The identity a token vouches for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    namespace: String,
    service_account: String,
    /// Expiry, whole seconds since the Unix epoch; `None` = never.
    expires_unix: Option<u64>,
    /// The ID of a single-use token (always with an expiry).
    single_use: Option<String>,
}

impl TokenIdentity {
    /// A never-expiring identity for `namespace`/`service_account`, each checked to be a
    /// non-empty SPIFFE path segment without `.` (see the module docs).
    pub fn new(namespace: &str, service_account: &str) -> Result<Self, TokenError> {
        check_segment("namespace", namespace)?;
        check_segment("service account", service_account)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            expires_unix: None,
            single_use: None,
        })
    }

    /// The same identity as a single-use token with a fresh random ID. It must expire
    /// ([`Self::expiring_after`] first): the CA remembers a used ID only until then.
    pub fn single_use(mut self) -> Result<Self, TokenError> {
        if self.expires_unix.is_none() {
            return Err(TokenError::SingleUseNeedsExpiry);
        }
        let mut id = [0u8; SINGLE_USE_ID_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| TokenError::Random)?;
        self.single_use = Some(URL_SAFE_NO_PAD.encode(id));
        Ok(self)
    }

    /// The ID of a single-use token; `None` for a token that may be used again.
    pub fn single_use_id(&self) -> Option<&str> {
        self.single_use.as_deref()
    }

    /// The same identity, valid for `ttl` from `now` (rounded up to whole seconds).
    pub fn expiring_after(mut self, now: SystemTime, ttl: Duration) -> Self {
        let now = unix_secs(now);
        let ttl = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.expires_unix = Some(now.saturating_add(ttl));
        self
    }

    /// The Kubernetes-style namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// When the token stops being accepted; `None` when it never does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_unix
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The expiry in whole seconds since the Unix epoch; `None` when it never expires.
    pub fn expires_unix(&self) -> Option<u64> {
        self.expires_unix
    }

    /// The SPIFFE ID the CA may issue for this token:
    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service-account>`.
    pub fn spiffe_id(&self, trust_domain: &TrustDomain) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::workload(trust_domain, &self.namespace, &self.service_account)
    }

    /// The text the MAC covers: the token without `.<mac>`.
    fn signed_text(&self) -> String {
        match (self.expires_unix, &self.single_use) {
            (None, _) => format!("{VERSION}.{}.{}", self.namespace, self.service_account),
            (Some(at), None) => {
                format!("{VERSION}.{}.{}.{at}", self.namespace, self.service_account)
            }
            (Some(at), Some(id)) => format!(
                "{VERSION}.{}.{}.{at}.{id}",
                self.namespace, self.service_account
            ),
        }
    }
}

impl fmt::Display for TokenIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "namespace {:?}, service account {:?}",
            self.namespace, self.service_account
        )
    }
}

/// The secret that signs and verifies bootstrap tokens.
///
/// Load it with [`TokenKey::load_or_create`]; `Debug` never shows the key.
pub struct TokenKey {
    key: hmac::Key,
    created: bool,
}

impl TokenKey {
    /// A key from raw bytes (tests, or a key kept elsewhere than the data directory).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            created: false,
        }
    }

    /// Whether [`TokenKey::load_or_create`] made a new key file rather than reading one.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The token text for `identity`.
    pub fn issue(&self, identity: &TokenIdentity) -> String {
        let text = identity.signed_text();
        let mac = hmac::sign(&self.key, text.as_bytes());
        format!("{text}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    /// Checks `token` (surrounding whitespace ignored) and returns the identity it vouches for.
    ///
    /// Malformed tokens are reported before the MAC is checked; the MAC comparison is constant
    /// time; expiry is checked against `now` last, so an expired token is known to be genuine.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenIdentity, TokenError> {
        let token = token.trim();
        let (text, mac, identity) = parse(token)?;
        hmac::verify(&self.key, text.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
        if let Some(at) = identity.expires_unix
            && unix_secs(now) >= at
        {
            return Err(TokenError::Expired {
                expired_unix: at,
                identity: identity.to_string(),
            });
        }
        Ok(identity)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

/// Why a token was refused, or a namespace or service account cannot have one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text does not have a token's shape.
    #[error(
        "malformed bootstrap token: {reason}; expected \"v1.<namespace>.<service-account>.<mac>\" \
         as printed by `remora token create`"
    )]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A namespace or service account that is not a valid field.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// "namespace" or "service account".
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The MAC does not match: the token was made with another key, or altered.
    #[error(
        "the bootstrap token's signature does not match: it was altered, or issued by a control \
         plane with another token key (`{TOKEN_KEY_FILE}` in its data directory)"
    )]
    BadSignature,
    /// `--single-use` without `--ttl`.
    #[error(
        "a single-use token needs --ttl: the CA remembers a used token until it expires, and \
         must be able to forget it"
    )]
    SingleUseNeedsExpiry,
    /// The system random number generator failed.
    #[error("cannot make a single-use token: the system random number generator failed")]
    Random,
    /// A genuine token past its expiry.
    #[error("the bootstrap token for {identity} expired at {expired_unix} (Unix time)")]
    Expired {
        /// The expiry, seconds since the Unix epoch.
        expired_unix: u64,
        /// Whom the token was for.
        identity: String,
    },
}

impl TokenError {
    /// True when the token is not a well-formed token at all (as opposed to well-formed but
    /// forged, altered or expired).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed { .. } | Self::InvalidField { .. })
    }
}

/// Splits the token into the signed text, the decoded MAC and the fields, checking the shape.
fn parse(token: &str) -> Result<(&str, Vec<u8>, TokenIdentity), TokenError> {
    let malformed = |reason: String| TokenError::Malformed { reason };
    if token.is_empty() {
        return Err(malformed("it is empty".to_owned()));
    }
    let version = token.split('.').next().unwrap_or_default();
    if version != VERSION {
        return Err(malformed(format!(
            "it starts with {version:?}, not \"{VERSION}\""
        )));
    }
    let fields = token.split('.').count();
    if !(4..=6).contains(&fields) {
        return Err(malformed(format!(
            "it has {fields} '.'-separated fields, not 4 (5 with an expiry, 6 single-use)"
        )));
    }
    let (text, mac) = token.rsplit_once('.').unwrap_or_default();
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|e| malformed(format!("the MAC is not base64url: {e}")))?;
    if mac.len() != 32 {
        return Err(malformed(format!(
            "the MAC is {} bytes, not 32 (HMAC-SHA256)",
            mac.len()
        )));
    }
    let identity = parse_fields(text)?;
    Ok((text, mac, identity))
}

/// Parses `v1.<ns>.<sa>[.<expiry>]`.
fn parse_fields(text: &str) -> Result<TokenIdentity, TokenError> {
    let mut fields = text.split('.').skip(1);
    let (Some(namespace), Some(service_account)) = (fields.next(), fields.next()) else {
        return Err(TokenError::Malformed {
            reason: "the namespace or service account is missing".to_owned(),
        });
    };
    let mut identity = TokenIdentity::new(namespace, service_account)?;
    if let Some(expiry) = fields.next() {
        let valid = !expiry.is_empty() && expiry.bytes().all(|b| b.is_ascii_digit());
        identity.expires_unix =
            Some(
                expiry
                    .parse()
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| TokenError::Malformed {
                        reason: format!("the expiry {expiry:?} is not a number of seconds"),
                    })?,
            );
    }
    if let Some(id) = fields.next() {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !(16..=64).contains(&id.len()) || !id.bytes().all(base64url) {
            return Err(TokenError::Malformed {
                reason: format!("the single-use ID {id:?} is not 16 to 64 base64url characters"),
            });
        }
        identity.single_use = Some(id.to_owned());
    }
    Ok(identity)
}

/// A namespace or service account: a non-empty SPIFFE path segment without `.`.
fn check_segment(field: &'static str, value: &str) -> Result<(), TokenError> {
    let invalid = |reason: String| TokenError::InvalidField {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    if value.len() > MAX_SEGMENT_LEN {
        return Err(invalid(format!(
            "it is {} bytes long; at most {MAX_SEGMENT_LEN} are allowed",
            value.len()
        )));
    }
    if let Some((at, ch)) = value
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        let why = if ch == '.' {
            " ('.' separates a token's fields)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "character {ch:?} at byte {at} is not allowed{why}; use A-Z, a-z, 0-9, '-' and '_'"
        )));
    }
    Ok(())
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
