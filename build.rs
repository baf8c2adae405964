//! Code generation from the contract's `.proto` files (proto/flowpipe/v1).
//!
//! - prost message types, always (the portable core needs them);
//! - tonic client and server code for `FlowService` / `SchemaRegistryService`, only with the
//!   `server` feature, so `--no-default-features` builds nothing that needs tonic;
//! - protojson serde impls via pbjson-build: lowerCamelCase output, every field emitted (like
//!   grpc-gateway's EmitUnpopulated), both name spellings accepted, unknown fields rejected;
//! - the encoded descriptor set, for gRPC server reflection.
//!
//! Every proto map becomes a `BTreeMap` and `google.protobuf.Struct` is our own BTreeMap-based type
//! (`proto::wkt`): encoding is then deterministic, which the core relies on to compare a request
//! with the stored spec byte for byte inside an etcd transaction. `Timestamp` is ours too, for
//! protojson's canonical `Z` form.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/flowpipe/v1/observability.proto",
    "proto/flowpipe/v1/flow.proto",
    "proto/flowpipe/v1/service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("flowpipe_descriptor.bin");
    let with_services = env::var_os("CARGO_FEATURE_SERVER").is_some();

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_prost_build::configure()
        .build_server(with_services)
        .build_client(with_services)
        .file_descriptor_set_path(&descriptor_path)
        .btree_map(".")
        .extern_path(".google.protobuf.Struct", "crate::proto::wkt::Struct")
        .extern_path(".google.protobuf.Value", "crate::proto::wkt::Value")
        .extern_path(".google.protobuf.ListValue", "crate::proto::wkt::ListValue")
        .extern_path(".google.protobuf.Timestamp", "crate::proto::wkt::Timestamp")
        .compile_protos(PROTOS, &["proto"])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .out_dir(&out_dir)
        .btree_map(["."])
        .emit_fields()
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".flowpipe"])?;
    Ok(())
}
