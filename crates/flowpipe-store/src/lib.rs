//! The key-value stores of the flow-pipe API, each implementing the core's [`Kv`] trait:
//! [`EtcdStore`] (production: any number of API replicas share one etcd) and, with the
//! `embedded` feature, [`EmbeddedStore`] (a local redb file with etcd's semantics, so the local
//! server needs nothing else installed). One conformance suite (`tests/`) runs against both.
//!
//! [`Store`] is the one type the transports hold: whichever backend, behind the same interface.
//! It dispatches dynamically, so a program links only the backends it opens: the Lambda
//! function, which opens etcd only, never links redb. [`CountingKv`] counts the round trips of
//! any store, for tests and benchmarks.

#![warn(missing_docs)]

mod counting;
pub mod deadline;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod etcd;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flowpipe_core::kv::{Kv, KvError, RangeRequest, RangeResponse, Txn, TxnResponse};

pub use counting::{CountingKv, RoundTrips};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;
pub use etcd::{EtcdConfig, EtcdConfigError, EtcdStore};

/// Which backend to open.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// etcd.
    Etcd(Box<EtcdConfig>),
    /// The embedded store's file.
    #[cfg(feature = "embedded")]
    Embedded(std::path::PathBuf),
    /// The embedded store in memory (tests).
    #[cfg(feature = "embedded")]
    InMemory,
}

/// Why a store could not be opened: a bad etcd configuration, or an embedded file that cannot
/// be used. One line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The etcd configuration breaks a rule.
    Etcd(EtcdConfigError),
    /// The embedded store's file cannot be opened or created.
    Embedded(KvError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Etcd(e) => e.fmt(f),
            OpenError::Embedded(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Kv`] as a trait object: one boxed future per round trip, which costs nothing next to the
/// round trip itself.
trait DynKv: Send + Sync {
    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, KvError>>;
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse, KvError>>;
}

impl<K: Kv> DynKv for K {
    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse, KvError>> {
        Box::pin(Kv::range(self, req))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse, KvError>> {
        Box::pin(Kv::txn(self, txn))
    }
}

/// The store the API runs on. Cloning is cheap: clones share one client or database.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn DynKv>,
    /// What readiness probes read through: the backend itself, never a wrapper that counts.
    probe: Arc<dyn DynKv>,
    kind: &'static str,
    description: String,
    /// How long a request may wait for the store (etcd's request timeout); none for the
    /// embedded store, which does not wait on a network.
    request_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl Store {
    /// Opens the configured backend. For etcd this does no network I/O; the client connects on
    /// first use.
    pub fn open(config: StoreConfig) -> Result<Self, OpenError> {
        match config {
            StoreConfig::Etcd(c) => Self::etcd(*c).map_err(OpenError::Etcd),
            #[cfg(feature = "embedded")]
            StoreConfig::Embedded(path) => EmbeddedStore::open(path)
                .map(Self::embedded)
                .map_err(OpenError::Embedded),
            #[cfg(feature = "embedded")]
            StoreConfig::InMemory => EmbeddedStore::in_memory()
                .map(Self::embedded)
                .map_err(OpenError::Embedded),
        }
    }

    /// An etcd store for `config` (checked; no I/O).
    pub fn etcd(config: EtcdConfig) -> Result<Self, EtcdConfigError> {
        let timeout = config.request_timeout;
        let store = EtcdStore::new(config)?;
        let description = format!("etcd at {}", store.endpoints().join(","));
        let mut store = Self::new(store, "etcd", description);
        store.request_timeout = Some(timeout);
        Ok(store)
    }

    /// The embedded store `store`.
    #[cfg(feature = "embedded")]
    pub fn embedded(store: EmbeddedStore) -> Self {
        let description = match store.path() {
            Some(p) => format!("embedded store at {}", p.display()),
            None => "embedded store in memory".to_string(),
        };
        Self::new(store, "embedded", description)
    }

    /// Any [`Kv`] as the store (a wrapped backend, such as a [`CountingKv`]): `kind` is
    /// "etcd" or "embedded", `description` says where it is.
    pub fn new(kv: impl Kv + 'static, kind: &'static str, description: String) -> Self {
        let kv: Arc<dyn DynKv> = Arc::new(kv);
        Store {
            probe: Arc::clone(&kv),
            kv,
            kind,
            description,
            request_timeout: None,
        }
    }

    /// This store behind `wrap` (a [`Kv`] around it that counts or records what operations
    /// send). Readiness probes still go straight to the backend: they are not what an
    /// operation costs.
    pub fn wrapped<K: Kv + 'static>(self, wrap: impl FnOnce(Store) -> K) -> Store {
        let probe = Arc::clone(&self.probe);
        let (kind, description, request_timeout) =
            (self.kind, self.description.clone(), self.request_timeout);
        Store {
            kv: Arc::new(wrap(self)),
            probe,
            kind,
            description,
            request_timeout,
        }
    }

    /// This store, counting the round trips of the operations run on it (readiness probes are
    /// not counted).
    pub fn counting(self) -> (Store, Arc<RoundTrips>) {
        let mut trips = None;
        let store = self.wrapped(|store| {
            let kv = CountingKv::new(store);
            trips = Some(kv.round_trips());
            kv
        });
        (store, trips.unwrap_or_default())
    }

    /// One line for logs: which backend, where.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The backend's kind: "etcd" or "embedded".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// How long one API request may wait for the store in all, from its arrival: the deadline
    /// the transports set for it ([`deadline::within`]). `None` for the embedded store.
    pub fn request_timeout(&self) -> Option<std::time::Duration> {
        self.request_timeout
    }

    /// Checks that the store answers (a one-key read), for readiness probes.
    pub async fn ping(&self) -> Result<(), KvError> {
        let probe = RangeRequest::key(b"/flowpipe/".to_vec()).keys_only();
        self.probe.range(probe).await.map(|_| ())
    }
}

impl Kv for Store {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send {
        self.kv.range(req)
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send {
        self.kv.txn(txn)
    }

    fn deadline_passed(&self) -> impl Future<Output = ()> + Send {
        deadline::passed()
    }
}
