//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "rookery/users/v1/users.proto",
        "rookery/timeline/v1/timeline.proto",
        "rookery/notifications/v1/notifications.proto",
        "rookery/media/v1/media.proto",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&paths, [&root])?;
    tonic_prost_build::configure()
        // File chunks pass through without a copy.
        .bytes(".rookery.media.v1")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
