//! Integration tests, in one binary so the dependency set is linked once and one etcd serves them
//! all (each test in its own key namespace or store).

mod bad_input;
mod bench_smoke;
mod binary;
mod common;
mod concurrency;
mod conformance;
mod etcd_auth;
mod faults;
mod grpc;
mod keys;
mod kv;
mod lambda;
mod readme;
mod rest;
mod security;
