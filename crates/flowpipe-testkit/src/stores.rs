//! Stores for tests: one real etcd per test binary (started on first use, on free loopback
//! ports), and fresh stores isolated from each other.

use std::sync::OnceLock;

use flowpipe_api::SystemEnvironment;
use flowpipe_core::FlowRegistry;
use flowpipe_store::{EtcdConfig, Store, StoreConfig};

use crate::EtcdCluster;

static ETCD: OnceLock<EtcdCluster> = OnceLock::new();

/// The test binary's etcd. Panics (fails the test) when etcd cannot be found or started.
pub fn etcd() -> &'static EtcdCluster {
    ETCD.get_or_init(|| EtcdCluster::start_single().unwrap_or_else(|e| panic!("{e}")))
}

/// A unique key namespace, so tests sharing one etcd never see each other's keys.
pub fn unique_namespace() -> String {
    format!("/t-{}", uuid::Uuid::new_v4().simple())
}

/// The configuration of an etcd store on `namespace` of the test binary's etcd.
pub fn etcd_config_in(namespace: &str) -> EtcdConfig {
    let mut config = EtcdConfig::new(etcd().endpoints());
    config.namespace = namespace.as_bytes().to_vec();
    config
}

/// The store configuration of a fresh etcd namespace.
pub fn etcd_config() -> StoreConfig {
    StoreConfig::Etcd(Box::new(etcd_config_in(&unique_namespace())))
}

/// An etcd store of its own (own client, own key namespace).
pub fn etcd_store() -> Store {
    etcd_store_in(&unique_namespace())
}

/// An etcd store on `namespace`; two stores on one namespace act as two API replicas.
pub fn etcd_store_in(namespace: &str) -> Store {
    Store::etcd(etcd_config_in(namespace)).expect("etcd store")
}

/// A fresh in-memory embedded store.
pub fn memory_store() -> Store {
    Store::open(StoreConfig::InMemory).expect("embedded store")
}

/// The flow operations over `store`, as the server runs them.
pub fn registry(store: &Store) -> FlowRegistry<Store, SystemEnvironment> {
    FlowRegistry::new(store.clone(), SystemEnvironment)
}

/// Runs each named async test function (taking a [`Store`]) against both backends:
/// `both!(name, ...)` makes `etcd::name` and `embedded::name`. The test crate needs tokio.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::stores::etcd_store()).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::stores::memory_store()).await
                }
            )*
        }
    };
}

/// `store`, counting its round trips (for "this request never reached the store").
pub fn counting(store: Store) -> (Store, std::sync::Arc<flowpipe_store::RoundTrips>) {
    store.counting()
}

/// Writes flow `name` as the original Go API writes it: `versions/1..=versions/spec` (a valid
/// one-stage spec whose threads are the version number), `active` (unless `deleted`), and a
/// `meta` without `latest_version` and with uid `go-<name>`; no version meta, no index key.
pub async fn original_api_flow(store: &Store, name: &str, versions: u64, deleted: bool) {
    use flowpipe_core::kv::{Kv, Txn, TxnOp};
    use prost::Message;
    let mut ops = Vec::new();
    for v in 1..=versions {
        let spec = flowpipe_core::proto::v1::FlowSpec {
            name: name.to_string(),
            version: v,
            queues: vec![flowpipe_core::proto::v1::QueueSpec {
                name: "q".into(),
                capacity: 128,
                ..Default::default()
            }],
            stages: vec![flowpipe_core::proto::v1::StageSpec {
                name: "s".into(),
                r#type: "t".into(),
                threads: u32::try_from(v).unwrap_or(u32::MAX),
                output_queue: Some("q".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        ops.push(TxnOp::put(
            format!("/flowpipe/flows/{name}/versions/{v}/spec"),
            spec.encode_to_vec(),
        ));
    }
    if !deleted {
        ops.push(TxnOp::put(
            format!("/flowpipe/flows/{name}/active"),
            versions.to_string(),
        ));
    }
    let meta = serde_json::json!({"uid": format!("go-{name}"), "created_at": "2024-01-02T03:04:05Z",
                                  "labels": {}, "deleted": deleted});
    ops.push(TxnOp::put(
        format!("/flowpipe/flows/{name}/meta"),
        meta.to_string(),
    ));
    store
        .txn(Txn {
            success: ops,
            ..Default::default()
        })
        .await
        .expect("write the original API's keys");
}
