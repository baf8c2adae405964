//! The portable core: the domain rules of contract flowpipe-v1, with no runtime, no sockets and
//! no clock or randomness of its own (see [`environment`]), so it builds for wasm32-wasip1.
//!
//! - [`names`], [`validation`], [`json`]: what a valid request is;
//! - [`keys`]: the authoritative etcd key schema;
//! - [`kv`]: the transactional key-value trait the stores implement;
//! - [`flows`], [`schemas`]: the operations, written once for every store;
//! - [`error`]: the one error type every transport renders.

pub mod environment;
pub mod error;
pub mod flows;
pub mod json;
pub mod keys;
pub mod kv;
pub mod locks;
pub mod meta;
pub mod names;
pub mod pagination;
pub mod schemas;
pub mod validation;

pub use environment::{Environment, RetryPolicy};
pub use error::{Code, Detail, Error, FieldViolation, Result};
pub use flows::FlowRegistry;
pub use kv::Kv;
pub use names::{FlowName, SchemaId, VersionNumber};
pub use schemas::SchemaRegistry;
