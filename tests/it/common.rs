//! Shared by every integration test: one real etcd per test binary (started on first use, on
//! free loopback ports), and fresh stores isolated from each other.

use std::sync::OnceLock;

use flowpipe_api::core::FlowRegistry;
use flowpipe_api::handler::SystemEnvironment;
use flowpipe_api::store::{EtcdConfig, Store, StoreConfig};
use flowpipe_api::testkit::EtcdCluster;

static ETCD: OnceLock<EtcdCluster> = OnceLock::new();

/// The test binary's etcd. Panics (fails the test) when etcd cannot be found or started.
pub fn etcd() -> &'static EtcdCluster {
    ETCD.get_or_init(|| EtcdCluster::start_single().unwrap_or_else(|e| panic!("{e}")))
}

/// A unique key namespace, so tests sharing one etcd never see each other's keys.
pub fn unique_namespace() -> String {
    format!("/t-{}", uuid::Uuid::new_v4().simple())
}

/// An etcd store of its own (own client, own key namespace).
pub fn etcd_store() -> Store {
    etcd_store_in(&unique_namespace())
}

/// An etcd store on `namespace`; two stores on one namespace act as two API replicas.
pub fn etcd_store_in(namespace: &str) -> Store {
    let mut config = EtcdConfig::new(etcd().endpoints());
    config.namespace = namespace.as_bytes().to_vec();
    Store::open(StoreConfig::Etcd(Box::new(config))).expect("etcd store")
}

/// A fresh in-memory embedded store.
pub fn memory_store() -> Store {
    Store::open(StoreConfig::InMemory).expect("embedded store")
}

pub fn registry(store: &Store) -> FlowRegistry<Store, SystemEnvironment> {
    FlowRegistry::new(store.clone(), SystemEnvironment)
}

/// Runs each named async test function against both backends:
/// `both!(name, ...)` makes `etcd::name` and `embedded::name`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::etcd_store()).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::memory_store()).await
                }
            )*
        }
    };
}
pub(crate) use both;

/// A real server (REST and gRPC) on loopback ports chosen by the OS; stopped on drop.
pub struct TestServer {
    pub http: std::net::SocketAddr,
    pub grpc: std::net::SocketAddr,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: flowpipe_api::local::Config) -> TestServer {
        let server = flowpipe_api::local::Server::bind(config)
            .await
            .expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = server.http_addr();
        let grpc = server.grpc_addr();
        let store = server.state().store().clone();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        TestServer {
            http,
            grpc,
            store,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.serving.take() {
            h.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The store configuration of a fresh etcd namespace.
pub fn etcd_config() -> StoreConfig {
    let mut config = EtcdConfig::new(etcd().endpoints());
    config.namespace = unique_namespace().into_bytes();
    StoreConfig::Etcd(Box::new(config))
}
