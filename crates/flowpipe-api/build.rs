//! The gRPC services of the contract (`FlowService`, `SchemaRegistryService`): tonic client and
//! server code over the message types of `flowpipe-core` (generated there, so the portable core
//! needs no tonic).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SERVICE: &str = "../../proto/flowpipe/v1/service.proto";
    println!("cargo:rerun-if-changed=../../proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Every message (and the well-known types the core defines) comes from the core.
        .extern_path(".flowpipe.v1", "::flowpipe_core::proto::v1")
        .extern_path(
            ".google.protobuf.Struct",
            "::flowpipe_core::proto::wkt::Struct",
        )
        .extern_path(
            ".google.protobuf.Value",
            "::flowpipe_core::proto::wkt::Value",
        )
        .extern_path(
            ".google.protobuf.ListValue",
            "::flowpipe_core::proto::wkt::ListValue",
        )
        .extern_path(
            ".google.protobuf.Timestamp",
            "::flowpipe_core::proto::wkt::Timestamp",
        )
        .compile_protos(&[SERVICE], &["../../proto"])?;
    Ok(())
}
