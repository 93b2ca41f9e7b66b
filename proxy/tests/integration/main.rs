//! The proxy's in-process integration tests, one binary of modules (each
//! test binary links the whole proxy; one link instead of one per file).

mod module_cycles;
mod mtls;
mod trace;
