//! demo app
fn main() {}
