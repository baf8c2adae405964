//! flow-pipe control-plane API: accepts `FlowSpec` definitions, versions them immutably and
//! stores desired state in etcd, for a controller (not this crate) to deploy.
//!
//! - [`proto`]: the contract's messages (and, with `server`, its gRPC services);
//! - [`core`]: the domain rules, portable (no tokio, no sockets);
//! - `store`: the etcd and embedded key-value backends;
//! - `handler`: REST (axum), gRPC (tonic) and the Lambda entry, over the core;
//! - `local`: the local server binary's configuration, startup and shutdown.

pub mod core;
#[cfg(feature = "server")]
pub mod handler;
#[cfg(feature = "server")]
pub mod local;
pub mod proto;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod testkit;
