//! Compiles the Petit contract (`proto/petit/v1/*.proto`) with protox (no protoc needed)
//! into Rust types, tonic clients/servers (per the `client`/`server` features), and a
//! file descriptor set used by server reflection and the REST shim, and the proto3 JSON
//! writer of every `petit.v1` message (`proto/json_codegen.rs`, used by feature `json`).

use std::path::PathBuf;

use prost::Message;

#[path = "proto/json_codegen.rs"]
mod json_codegen;

const PROTOS: &[&str] = &[
    "petit/v1/types.proto",
    "petit/v1/scheduler.proto",
    "petit/v1/job.proto",
    "petit/v1/run.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?;
    // `encode_file_descriptor_set` keeps extension options (the `google.api.http` rules
    // the REST shim routes by); `file_descriptor_set().encode_to_vec()` drops them.
    let bytes = compiler.encode_file_descriptor_set();
    std::fs::write(out.join("petit_descriptor.bin"), &bytes)?;
    // The same set without the comments and source positions (over half its bytes,
    // and most of what a descriptor pool built from it keeps in memory): what the
    // REST shim keeps for its whole life. Reflection and the OpenAPI document, which
    // show the comments, read the full set.
    let mut lean = protox::Compiler::new(["proto"])?;
    lean.include_imports(true)
        .include_source_info(false)
        .open_files(PROTOS)?;
    std::fs::write(
        out.join("petit_descriptor_lean.bin"),
        lean.encode_file_descriptor_set(),
    )?;
    let fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    std::fs::write(
        out.join("petit.v1.json.rs"),
        json_codegen::generate(&fds, "petit.v1"),
    )?;

    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_client(client)
        .build_server(server)
        .build_transport(client)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
