//! `flow-api`: the local server (REST on :8080, gRPC on :9090) over etcd or the embedded store.
//! See `flowpipe_api::server` for configuration.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    flowpipe_api::server::run().await
}
