//! Compiles the test-only gRPC service (`proto/echo.proto`) with protox, so
//! no `protoc` binary is needed (as `proto/build.rs` does for discovery).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/echo.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
