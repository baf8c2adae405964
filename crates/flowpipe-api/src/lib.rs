//! The flow-pipe control-plane API: the transports and entry points over the portable core
//! (`flowpipe-core`) and the stores (`flowpipe-store`).
//!
//! - [`rest`]: the REST router, grpc-gateway compatible; [`router`] is the one HTTP seam, served
//!   by the local server, by the Lambda function and by tests alike;
//! - [`grpc`]: `flowpipe.v1.FlowService` and `SchemaRegistryService` (tonic);
//! - [`error`]: the core's error, rendered once as HTTP + JSON and once as `tonic::Status`;
//! - [`auth`], [`settings`], [`state`]: what both transports share;
//! - [`telemetry`]: logs, OTLP metrics and traces, CloudWatch EMF (README, "Observability");
//! - [`server`] (feature `server`): the local server `flow-api` (configuration, TLS, serving);
//! - [`lambda`] (feature `lambda`): the AWS Lambda function `bootstrap`.

pub mod auth;
pub mod error;
pub mod grpc;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod rest;
#[cfg(feature = "server")]
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;

pub use auth::ApiKey;
pub use rest::router;
pub use settings::{HttpSettings, TelemetrySettings};
pub use state::{AppState, SystemEnvironment};
pub use telemetry::Telemetry;
