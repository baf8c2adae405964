//! Baseline (a), **core-direct**: the core itself (`flowpipe_core::FlowRegistry`), run in the
//! benchmark's process on `Store::etcd` as the API server runs it, behind a [`RecordingKv`].
//!
//! Its etcd requests are the API's by construction (the same code decides them), so the gap
//! between a REST/gRPC row and a core-direct row is what the API adds on top of the core: the
//! server hop, HTTP/gRPC and JSON/protobuf handling and the transport stack. The core's compares
//! carry the revisions of the state they were decided from, so recorded transactions cannot be
//! replayed verbatim; running the core is the one baseline that cannot drift from it. (It also
//! does the core's validation and encoding, a few µs per operation, see BENCHMARKS.md.)
//!
//! The [`RecordingKv`] records nothing during throughput rows; the round-trip count and the list
//! study turn it on to see every request an operation sends.
//!
//! Also the seeding of flows: through the core (a create, then updates), so datasets are laid
//! out by the code that lays out the API's, plus the status the controller would write.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::try_join_all;

use flowpipe_api::SystemEnvironment;
use flowpipe_core::keys::FlowKeys;
use flowpipe_core::kv::{Kv, MAX_TXN_OPS, Txn, TxnOp};
use flowpipe_core::proto::v1::{CreateFlowRequest, UpdateFlowRequest};
use flowpipe_core::{FlowName, FlowRegistry};
use flowpipe_store::{EtcdConfig, Store};

use crate::raw::BenchResult;
use crate::recording::{Call, Recorder, RecordingKv};
use crate::workload::{self, Variant};

/// The core as the API server holds it (`FlowRegistry` on a `Store`), behind the recorder.
pub type Registry = FlowRegistry<RecordingKv<Store>, SystemEnvironment>;

/// An in-process core on one key namespace of etcd. Clones share the registry (and so one etcd
/// client and the core's per-flow write locks, as in the API server).
#[derive(Clone)]
pub struct Core {
    pub flows: Arc<Registry>,
    pub recorder: Arc<Recorder>,
}

pub fn api_err(e: flowpipe_core::Error) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

impl Core {
    /// A core on `endpoints`, its keys under `ns` (empty: the API server's own keyspace).
    pub fn connect(endpoints: &[String], ns: &[u8]) -> BenchResult<Core> {
        let kv = RecordingKv::new(etcd_store(endpoints, ns)?);
        let recorder = kv.recorder();
        Ok(Core {
            flows: Arc::new(FlowRegistry::new(kv, SystemEnvironment)),
            recorder,
        })
    }

    /// Runs `op` with recording on: its output and every request it sent. Nothing else may use
    /// this core meanwhile.
    pub async fn record<T>(&self, op: impl Future<Output = T>) -> (T, Vec<Call>) {
        self.recorder.start();
        let out = op.await;
        (out, self.recorder.take())
    }

    /// Writes flow `name` as the API does after a create and `versions - 1` updates (specs
    /// alternating between the two variants), then the status the controller would write.
    pub async fn seed_flow(&self, name: &FlowName, versions: u64) -> BenchResult<()> {
        self.flows
            .create(CreateFlowRequest {
                spec: Some(workload::spec(Some(name.as_str()), Variant::A)),
                validate_only: false,
            })
            .await
            .map_err(api_err)?;
        for i in 0..versions.saturating_sub(1) {
            self.flows
                .update(UpdateFlowRequest {
                    name: name.to_string(),
                    spec: Some(workload::spec(None, Variant::of_update(i))),
                    validate_only: false,
                })
                .await
                .map_err(api_err)?;
        }
        Ok(())
    }

    /// Seeds `names` (see [`Core::seed_flow`]), `IN_FLIGHT` flows at a time, then their statuses
    /// (the controller's key, which the API only reads), `MAX_TXN_OPS` puts per transaction.
    pub async fn seed_flows(&self, names: &[FlowName], versions: u64) -> BenchResult<()> {
        const IN_FLIGHT: usize = 64;
        let lanes = (0..IN_FLIGHT.min(names.len())).map(|lane| async move {
            for name in names.iter().skip(lane).step_by(IN_FLIGHT) {
                self.seed_flow(name, versions).await?;
            }
            Ok::<_, String>(())
        });
        try_join_all(lanes).await?;
        for chunk in names.chunks(MAX_TXN_OPS) {
            let puts = chunk
                .iter()
                .map(|n| TxnOp::put(FlowKeys::new(n).status(), workload::status(n, versions)));
            self.flows
                .kv()
                .txn(Txn {
                    success: puts.collect(),
                    ..Txn::default()
                })
                .await
                .map_err(|e| format!("seed statuses: {e}"))?;
        }
        Ok(())
    }
}

/// A store on `endpoints` with its keys under `ns`, as the API server opens one.
pub fn etcd_store(endpoints: &[String], ns: &[u8]) -> BenchResult<Store> {
    let mut config = EtcdConfig::new(endpoints.to_vec());
    config.namespace = ns.to_vec();
    Store::etcd(config).map_err(|e| format!("etcd store: {e}"))
}
