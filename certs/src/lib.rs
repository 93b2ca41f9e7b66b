//! SPIFFE identities.
