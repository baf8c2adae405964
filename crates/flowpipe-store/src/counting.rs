//! [`CountingKv`]: counts the round trips a store makes, for tests ("an unauthenticated request
//! never reaches the store") and benchmarks ("an update costs two round trips").

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowpipe_core::kv::{Kv, KvError, RangeRequest, RangeResponse, Txn, TxnResponse};

/// Round trips counted by a [`CountingKv`] and its clones.
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

    /// Range reads.
    pub fn ranges(&self) -> u64 {
        self.ranges.load(Ordering::Relaxed)
    }

    /// Transactions (read-only ones included).
    pub fn txns(&self) -> u64 {
        self.txns.load(Ordering::Relaxed)
    }
}

/// A [`Kv`] that counts every call it passes to `K`.
#[derive(Debug, Clone)]
pub struct CountingKv<K> {
    inner: K,
    counts: Arc<RoundTrips>,
}

impl<K: Kv> CountingKv<K> {
    /// Counts the calls made to `inner`.
    pub fn new(inner: K) -> Self {
        CountingKv {
            inner,
            counts: Arc::default(),
        }
    }

    /// The counts, shared by every clone.
    pub fn round_trips(&self) -> Arc<RoundTrips> {
        Arc::clone(&self.counts)
    }
}

impl<K: Kv> Kv for CountingKv<K> {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send {
        self.counts.ranges.fetch_add(1, Ordering::Relaxed);
        self.inner.range(req)
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send {
        self.counts.txns.fetch_add(1, Ordering::Relaxed);
        self.inner.txn(txn)
    }
}
