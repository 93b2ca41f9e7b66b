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

    // The control plane's Discovery server sends snapshots encoded once and
    // shared by every proxy of a view: the same service, its `Snapshot`
    // replaced by `encoded::EncodedSnapshot` (every other message is `pb`'s).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("encoded");
    std::fs::create_dir_all(&out)?;
    let fds = protox::compile(["proto/discovery.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(out)
        .extern_path(".remora.discovery.v1", "crate::pb")
        .extern_path(".google.protobuf.Duration", "crate::Duration")
        .extern_path(
            ".remora.discovery.v1.Snapshot",
            "crate::encoded::EncodedSnapshot",
        )
        .compile_fds(fds)?;
    Ok(())
}
