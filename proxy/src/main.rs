//! remora-proxy
fn main() {}
