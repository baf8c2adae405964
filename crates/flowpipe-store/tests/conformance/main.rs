//! The conformance suite of the stores: every operation of the contract through the core, on
//! etcd and on the embedded store alike, plus the KV semantics the core relies on. One binary,
//! so dependencies are linked once and one etcd serves every test (each in its own namespace).

mod concurrency;
mod conformance;
mod etcd_auth;
mod etcd_endpoints;
mod index;
mod keys;
mod kv;
