//! Integration tests of the transports and entry points: REST, gRPC, the Lambda function, the
//! `flow-api` binary and the README, over real stores; and `flowpipe-validate` (host and WASI)
//! against the REST API. One binary, so dependencies are linked once and one etcd serves every
//! test (each in its own namespace or store).

mod bad_input;
mod binary;
mod clients;
mod faults;
mod grpc;
mod index;
mod lambda;
mod protojson;
mod readme;
mod rest;
mod security;
mod telemetry;
mod validate;
