//! The test kit of the flow-pipe API, for tests and the benchmark only (a dev-dependency, never
//! part of the product):
//!
//! - [`etcd`]: real etcd processes on free loopback ports ([`EtcdCluster`]), and the watchdog
//!   that removes a test's processes and files when the test process dies;
//! - [`stores`]: the one etcd a test binary shares, stores isolated from each other by key
//!   namespace, and [`both!`], which runs a test on etcd and on the embedded store;
//! - [`server`]: the real server on port 0 ([`TestServer`]);
//! - [`otlp`]: an OTLP/gRPC receiver on loopback ([`otlp::Receiver`]), standing in for an
//!   OpenTelemetry collector;
//! - [`env`](mod@env): a deterministic [`flowpipe_core::Environment`] ([`FakeEnvironment`]) for tests of
//!   retries and backoff;
//! - [`partition`]: a 3-member etcd cluster and the API, each in its own network namespace,
//!   whose links are cut by nftables drop rules ([`partition::NetCluster`]);
//! - [`delay_proxy`]: a TCP proxy that adds latency (a slow member, without `tc netem`);
//! - [`history`]: linearizability checkers for the histories the partition tests record.

pub mod delay_proxy;
pub mod env;
pub mod etcd;
pub mod history;
pub mod otlp;
pub mod partition;
pub mod server;
pub mod stores;

pub use env::FakeEnvironment;
pub use etcd::{EtcdCluster, RefusedPort, etcd_binary, free_port, watchdog};
/// The environment the server runs the core with (system clock, UUIDs, tokio timers).
pub use flowpipe_api::SystemEnvironment;
pub use server::{TestServer, serving_addrs};

/// The workspace's root directory: where README.md, `fixtures/` and `template.yaml` are, and
/// where the README's commands run.
pub fn workspace_root() -> std::path::PathBuf {
    let testkit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.ancestors().nth(2).unwrap_or(testkit).to_path_buf()
}
