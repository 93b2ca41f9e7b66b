//! Compiles `proto/*.proto` with protox (pure Rust), so no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/discovery.proto", "proto/identity.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // BTreeMap keeps encoding deterministic, so equal snapshots hash equal.
        .btree_map(".")
        // Lets the proxy's admin API print the applied snapshot as JSON.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        // prost_types::Duration has no serde; ours is the same message.
        .extern_path(".google.protobuf.Duration", "crate::Duration")
        .compile_fds(fds)?;

    Ok(())
}
