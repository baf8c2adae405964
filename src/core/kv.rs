//! The transactional key-value interface the core runs on, shaped like etcd's v3 KV API so the
//! etcd backend is a thin translation and the embedded backend has to honour the same semantics:
//! a global revision counter bumped by every write, per-key create/mod revisions and versions,
//! reads at a past revision, and transactions of compares with then/else operation lists.

use std::future::Future;

use super::error::Result;

/// A stored key and its value, with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Empty for a keys-only read.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Number of writes since the key was created.
    pub version: i64,
}

/// A read of one key or of `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    /// `None` reads only `key`.
    pub range_end: Option<Vec<u8>>,
    /// 0 reads the latest revision; otherwise the store as it was at that revision.
    pub revision: i64,
    /// At most this many keys (0 = no limit); `more` tells whether some were left out.
    pub limit: i64,
    pub keys_only: bool,
}

impl RangeRequest {
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            key: start.into(),
            range_end: Some(end.into()),
            ..Default::default()
        }
    }

    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let end = super::keys::prefix_end(&key);
        RangeRequest::range(key, end)
    }

    pub fn at_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
}

/// The result of a [`RangeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// Some keys in the range were left out because of `limit`.
    pub more: bool,
    /// The store's revision when the read was served (the header revision).
    pub revision: i64,
}

impl RangeResponse {
    /// The value of `key`, if the read returned it.
    pub fn get(&self, key: &[u8]) -> Option<&KeyValue> {
        self.kvs.iter().find(|kv| kv.key == key)
    }
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One condition of a transaction. As in etcd, a missing key has version, create and mod revision
/// 0, and a `Value` compare against a missing key is false whatever the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        }
    }

    /// The key was last written at `revision` (0: it does not exist).
    pub fn mod_revision(key: impl Into<Vec<u8>>, revision: i64) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// The key exists and its value differs from `value`.
    pub fn value_not(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::NotEqual,
            target: CompareTarget::Value(value.into()),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    Range(RangeRequest),
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
    },
}

impl TxnOp {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete {
            key: key.into(),
            range_end: None,
        }
    }
}

/// If every compare holds, run `success`, else run `failure`; atomically, at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// A read-only transaction: several reads in one round trip, at one revision.
    pub fn read(ranges: impl IntoIterator<Item = RangeRequest>) -> Self {
        Txn {
            success: ranges.into_iter().map(TxnOp::Range).collect(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    Range(RangeResponse),
    Put,
    Delete { deleted: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// One response per operation of the branch that ran.
    pub responses: Vec<TxnOpResponse>,
}

impl TxnResponse {
    /// The response of the `i`-th operation when it was a range read. Panics are impossible for
    /// callers that index the branch they built; a mismatch is a store bug, reported as Internal.
    pub fn range(&self, i: usize) -> Result<&RangeResponse> {
        match self.responses.get(i) {
            Some(TxnOpResponse::Range(r)) => Ok(r),
            other => Err(super::Error::internal(format!(
                "store returned {other:?} for transaction operation {i}, expected a range"
            ))),
        }
    }
}

/// Most operations one transaction may carry: etcd's default `--max-txn-ops`. The heads of a
/// default ListFlows page (101 flows and the shorter names they extend) fit in one transaction.
pub const MAX_TXN_OPS: usize = 128;

/// A transactional key-value store with etcd's semantics. Errors are already API errors
/// (`Unavailable` for a store that cannot be reached, `Internal` otherwise), except a read at a
/// compacted revision, which is [`super::Error::FailedPrecondition`] with reason
/// [`REVISION_UNAVAILABLE`] (also for a revision in the future) so pagination can turn it into an expired page token.
///
/// Implementations are cheap to clone handles to one shared client or database.
pub trait Kv: Send + Sync {
    fn range(&self, req: RangeRequest) -> impl Future<Output = Result<RangeResponse>> + Send;
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send;
}

/// `ErrorInfo.reason` of a read at a revision the store no longer has.
pub const REVISION_UNAVAILABLE: &str = "REVISION_UNAVAILABLE";
