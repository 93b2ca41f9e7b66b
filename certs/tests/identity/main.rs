//! Identity and mTLS tests, all in memory: SPIFFE IDs, the CA, CSR signing, the SPIFFE
//! verifiers and real rustls handshakes over byte buffers. Certificates are minted at test time.

mod ca;
mod handshake;
mod mint;
mod spiffe_id;
mod verify;
