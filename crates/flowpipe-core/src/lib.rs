//! The portable core of the flow-pipe API: the domain rules of contract flowpipe-v1, with no
//! runtime, no sockets, no files and no clock or randomness of its own (see [`environment`]), so
//! it builds and is tested for wasm32-wasip1. Stores implement [`Kv`]; transports call
//! [`FlowRegistry`] and [`SchemaRegistry`] and render [`Error`].
//!
//! - [`proto`]: the contract's messages (prost + pbjson), generated from `proto/flowpipe/v1`;
//! - [`names`], [`validation`], [`json`]: what a valid request is ([`ValidSpec`] is what passes);
//! - [`keys`]: the authoritative etcd key schema; [`meta`]: the JSON values stored beside specs;
//! - [`kv`]: the transactional key-value trait the stores implement, with its typed errors;
//! - [`cas`]: the one compare-and-swap loop every write goes through;
//! - [`flows`], [`schemas`]: the operations of the contract, written once for every store;
//! - [`pagination`]: page sizes and opaque page tokens;
//! - [`error`]: the one error type every transport renders.

#![warn(missing_docs)]

pub mod cas;
pub mod environment;
pub mod error;
pub mod flows;
pub mod json;
pub mod keys;
pub mod kv;
mod locks;
pub mod meta;
pub mod names;
pub mod pagination;
pub mod proto;
pub mod schemas;
pub mod validation;

pub use environment::{Environment, RetryPolicy};
pub use error::{Advice, Code, Detail, Error, FieldViolation, Result};
pub use flows::FlowRegistry;
pub use kv::{Kv, KvError};
pub use names::{FlowName, SchemaId, VersionNumber};
pub use schemas::SchemaRegistry;
pub use validation::ValidSpec;
