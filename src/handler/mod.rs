//! Transports over the core: the REST router (axum), the gRPC services (tonic) and the Lambda
//! entry point. They share [`AppState`] and render errors through [`error`], once per transport.

pub mod auth;
pub mod error;
pub mod grpc;
pub mod lambda;
pub mod rest;
pub mod state;

pub use auth::ApiKey;
pub use rest::router;
pub use state::{AppState, HttpSettings, SystemEnvironment};
