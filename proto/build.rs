//! Compiles every `tracetrack/<svc>/v1/*.proto` with protox (pure Rust, no system protoc) and
//! writes one file descriptor set that every service serves through gRPC reflection.

use std::path::{Path, PathBuf};

use prost::Message;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    collect(&root.join("tracetrack"), &mut files)?;
    files.sort();
    // tonic-prost-build prints no rerun-if-changed lines of its own.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("tracetrack").display()
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let rel: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(&root).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    let fds = protox::compile(&rel, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("tracetrack_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
