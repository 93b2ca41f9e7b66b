//! remora
fn main() {}
