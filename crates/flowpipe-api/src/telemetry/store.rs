//! [`InstrumentedKv`]: every store round trip of the operations as a child span of the request's
//! server span, and the store metrics (round trips and latency by operation and access,
//! unavailability). The server and the Lambda function wrap their store with it
//! (`Store::wrapped`) when exporting OTLP; readiness probes go straight to the backend and are
//! not counted.

use std::future::Future;
use std::time::Instant;

use flowpipe_core::kv::{Kv, KvError, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse};
use flowpipe_store::Store;
use tracing::Instrument;
use tracing::field::Empty;

use super::metrics::{Metrics, StoreOp};

/// A [`Store`] whose round trips are traced and counted.
#[derive(Clone)]
pub struct InstrumentedKv {
    inner: Store,
    metrics: Metrics,
}

impl InstrumentedKv {
    /// Observes the round trips of `inner` into `metrics`.
    pub fn new(inner: Store, metrics: Metrics) -> Self {
        InstrumentedKv { inner, metrics }
    }
}

const RANGE: StoreOp = StoreOp {
    operation: "range",
    access: "read",
};
const TXN_READ: StoreOp = StoreOp {
    operation: "txn",
    access: "read",
};
const TXN_WRITE: StoreOp = StoreOp {
    operation: "txn",
    access: "write",
};

/// A transaction that only reads (`Txn::read`: no compares, ranges only).
fn is_read_only(txn: &Txn) -> bool {
    txn.compare.is_empty()
        && txn
            .success
            .iter()
            .chain(&txn.failure)
            .all(|op| matches!(op, TxnOp::Range(_)))
}

async fn observe<T>(
    metrics: &Metrics,
    backend: &'static str,
    op: StoreOp,
    round_trip: impl Future<Output = Result<T, KvError>>,
) -> Result<T, KvError> {
    let span = tracing::info_span!(
        "store",
        otel.name = %format_args!("{backend} {}", op.operation),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = backend,
        db.operation.name = op.operation,
        store.access = op.access,
        error.type = Empty,
    );
    let start = Instant::now();
    let result = round_trip.instrument(span.clone()).await;
    let unavailable = match &result {
        Ok(_) => false,
        Err(e) => {
            let (unavailable, kind) = match e {
                KvError::Unavailable(_) => (true, "UNAVAILABLE"),
                KvError::RevisionUnavailable(_) => (false, "REVISION_UNAVAILABLE"),
                KvError::Internal(_) => (false, "INTERNAL"),
            };
            span.record("otel.status_code", "ERROR");
            span.record("error.type", kind);
            tracing::debug!(parent: &span, error = %e, "store round trip failed");
            unavailable
        }
    };
    metrics.store_round_trip(op, start.elapsed(), unavailable);
    result
}

impl Kv for InstrumentedKv {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send {
        observe(
            &self.metrics,
            self.inner.kind(),
            RANGE,
            self.inner.range(req),
        )
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send {
        let op = if is_read_only(&txn) {
            TXN_READ
        } else {
            TXN_WRITE
        };
        observe(&self.metrics, self.inner.kind(), op, self.inner.txn(txn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowpipe_core::kv::{Compare, TxnOp};

    #[test]
    fn read_only_transactions_are_told_from_writes() {
        assert!(is_read_only(&Txn::read([RangeRequest::key(b"a".to_vec())])));
        let write = Txn {
            compare: vec![Compare::absent(b"a".to_vec())],
            success: vec![TxnOp::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            }],
            failure: vec![TxnOp::Range(RangeRequest::key(b"a".to_vec()))],
        };
        assert!(!is_read_only(&write));
    }
}
