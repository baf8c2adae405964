//! Key-value backends for the core's [`Kv`] trait: [`EtcdStore`] (production, any number of API
//! replicas) and [`EmbeddedStore`] (a local file with the same semantics, so the local server
//! needs nothing else installed). The conformance suite in `tests/` runs against both.
//!
//! [`Store`] is the one type the transports hold: either backend behind the same interface,
//! counting the round trips it makes (benchmarks report them per API operation).

pub mod embedded;
pub mod etcd;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdConfig, EtcdStore};

use crate::core::Result;
use crate::core::kv::{Kv, RangeRequest, RangeResponse, Txn, TxnResponse};

/// Which backend to open.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Etcd(Box<EtcdConfig>),
    /// The embedded store's file.
    Embedded(PathBuf),
    /// The embedded store in memory (tests).
    InMemory,
}

#[derive(Debug, Clone)]
enum Backend {
    Etcd(EtcdStore),
    Embedded(EmbeddedStore),
}

/// Round trips a [`Store`] has made to its backend since it was opened.
#[derive(Debug, Default)]
pub struct RoundTrips {
    ranges: AtomicU64,
    txns: AtomicU64,
}

impl RoundTrips {
    /// Range reads plus transactions.
    pub fn total(&self) -> u64 {
        self.ranges.load(Ordering::Relaxed) + self.txns.load(Ordering::Relaxed)
    }
}

/// The store the API runs on. Cloning is cheap: clones share one client or database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    round_trips: Arc<RoundTrips>,
}

impl Store {
    /// Opens the configured backend. For etcd this does no network I/O; the client connects on
    /// first use.
    pub fn open(config: StoreConfig) -> Result<Self> {
        let backend = match config {
            StoreConfig::Etcd(c) => Backend::Etcd(EtcdStore::new(*c)?),
            StoreConfig::Embedded(path) => Backend::Embedded(EmbeddedStore::open(path)?),
            StoreConfig::InMemory => Backend::Embedded(EmbeddedStore::in_memory()?),
        };
        Ok(Store {
            backend,
            round_trips: Arc::default(),
        })
    }

    /// One line for logs and `/readyz`: which backend, where.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Etcd(e) => format!("etcd at {}", e.endpoints().join(",")),
            Backend::Embedded(e) => match e.path() {
                Some(p) => format!("embedded store at {}", p.display()),
                None => "embedded store in memory".to_string(),
            },
        }
    }

    /// The backend's kind: "etcd" or "embedded".
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Etcd(_) => "etcd",
            Backend::Embedded(_) => "embedded",
        }
    }

    /// Checks that the store answers (a one-key read), for readiness probes. Not counted in
    /// [`Store::round_trips`], which counts what API operations cost.
    pub async fn ping(&self) -> Result<()> {
        let probe = RangeRequest::key(b"/flowpipe/".to_vec()).keys_only();
        match &self.backend {
            Backend::Etcd(s) => s.range(probe).await.map(|_| ()),
            Backend::Embedded(s) => s.range(probe).await.map(|_| ()),
        }
    }

    pub fn round_trips(&self) -> &RoundTrips {
        &self.round_trips
    }
}

impl Kv for Store {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.round_trips.ranges.fetch_add(1, Ordering::Relaxed);
        match &self.backend {
            Backend::Etcd(s) => s.range(req).await,
            Backend::Embedded(s) => s.range(req).await,
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.round_trips.txns.fetch_add(1, Ordering::Relaxed);
        match &self.backend {
            Backend::Etcd(s) => s.txn(txn).await,
            Backend::Embedded(s) => s.txn(txn).await,
        }
    }
}
