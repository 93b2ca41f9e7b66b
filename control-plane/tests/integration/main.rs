//! The control plane's integration tests over real gRPC connections and
//! real files, one binary of modules (one link instead of one per file).

mod discovery;
mod identity;
mod parse;
mod security;
