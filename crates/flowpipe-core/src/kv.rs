//! The transactional key-value interface the core runs on, shaped like etcd's v3 KV API so the
//! etcd backend is a thin translation and the embedded backend has to honour the same semantics:
//! a global revision counter bumped by every write, per-key create/mod revisions and versions,
//! reads at a past revision, and transactions of compares with then/else operation lists.

use std::fmt;
use std::future::Future;

use crate::error::{Detail, Error, Result};

/// Why a store could not serve a request. Stores speak only these; the core turns them into API
/// errors in one place (`From<KvError> for Error`), except where it handles one itself (a read at
/// a compacted revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The store cannot answer now (unreachable, timed out, no leader, refused our credentials).
    /// A write may or may not have been applied. The message is for clients: it never names
    /// endpoints or secrets.
    Unavailable(String),
    /// A read at a revision the store no longer has (compacted) or does not have yet.
    RevisionUnavailable(String),
    /// Anything else: a request the store refused, a store bug, corrupt data.
    Internal(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Unavailable(m) | KvError::RevisionUnavailable(m) | KvError::Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Unavailable(m) => Error::unavailable(m),
            KvError::RevisionUnavailable(m) => {
                Error::FailedPrecondition(Detail::new("REVISION_UNAVAILABLE", m))
            }
            KvError::Internal(m) => Error::internal(m),
        }
    }
}

/// A stored key and its value, with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key, relative to the store's namespace (a store running under a prefix strips it).
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
    /// The key to read, or the first key (inclusive) of the range.
    pub key: Vec<u8>,
    /// `None` reads only `key`.
    pub range_end: Option<Vec<u8>>,
    /// 0 reads the latest revision; otherwise the store as it was at that revision.
    pub revision: i64,
    /// At most this many keys (0 = no limit); `more` tells whether some were left out.
    pub limit: i64,
    /// Return keys and their revisions only: every [`KeyValue::value`] is left empty (discovery
    /// and version scans need no values, which can be up to 1 MiB each).
    pub keys_only: bool,
}

impl RangeRequest {
    /// A read of the one key `key`, at the latest revision.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    /// A read of every key in `[start, end)`, at the latest revision. As in etcd, an `end` of
    /// `[0]` means "to the end of the keyspace".
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            key: start.into(),
            range_end: Some(end.into()),
            ..Default::default()
        }
    }

    /// A read of every key that starts with `prefix` (the range ends at
    /// [`crate::keys::prefix_end`]).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let end = crate::keys::prefix_end(&key);
        RangeRequest::range(key, end)
    }

    /// Reads the store as it was at `revision` (0: the latest). A revision the store has
    /// compacted fails with [`KvError::RevisionUnavailable`].
    pub fn at_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    /// Returns at most `limit` keys (0: no limit); [`RangeResponse::more`] says whether some were
    /// left out.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Returns keys and their revisions without values (sets the `keys_only` field).
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
    /// The key's value, compared byte by byte; never holds for a missing key.
    Value(Vec<u8>),
    /// The key's version: the number of writes since it was created (0: missing).
    Version(i64),
    /// The revision of the write that created the key (0: missing). `Equal` to 0 is "the key
    /// is absent" ([`Compare::absent`]), `Greater` than 0 "the key exists".
    CreateRevision(i64),
    /// The revision of the key's last write (0: missing): "nobody wrote it since I read it",
    /// the guard of every compare-and-swap ([`Compare::mod_revision`]).
    ModRevision(i64),
}

/// How a [`Compare`] relates what the store holds to the target: `stored <op> target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// The stored value or revision equals the target.
    Equal,
    /// The stored value or revision differs from the target.
    NotEqual,
    /// The stored value or revision is greater than the target (values compare as bytes).
    Greater,
    /// The stored value or revision is less than the target (values compare as bytes).
    Less,
}

/// One condition of a transaction. As in etcd, a missing key has version, create and mod revision
/// 0, and a `Value` compare against a missing key is false whatever the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The one key the condition is about.
    pub key: Vec<u8>,
    /// How the key's stored field relates to `target`.
    pub op: CompareOp,
    /// Which field of the key is compared, and with what.
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
    /// A read (with the request's own `revision` and `limit`); answered by
    /// [`TxnOpResponse::Range`].
    Range(RangeRequest),
    /// Writes `value` at `key`: creates the key, or replaces its value and bumps its version.
    Put {
        /// The key to write.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Deletes `key`, or every key of `[key, range_end)`; deleting a missing key is not an error.
    Delete {
        /// The key to delete, or the first key (inclusive) of the range.
        key: Vec<u8>,
        /// `None` deletes only `key`; otherwise the end (exclusive) of the range.
        range_end: Option<Vec<u8>>,
    },
}

impl TxnOp {
    /// A put of `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A delete of the one key `key`.
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
    /// Conditions that must all hold (none: always holds).
    pub compare: Vec<Compare>,
    /// Run when every compare holds (etcd's `then`).
    pub success: Vec<TxnOp>,
    /// Run otherwise (etcd's `else`). The core's writes read the current state here, so a
    /// retry after a lost race needs no extra round trip.
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

/// The answer to one [`TxnOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResponse {
    /// What a [`TxnOp::Range`] read.
    Range(RangeResponse),
    /// A [`TxnOp::Put`] was applied.
    Put,
    /// A [`TxnOp::Delete`] was applied.
    Delete {
        /// How many keys it deleted (0 when there was none).
        deleted: i64,
    },
}

/// The result of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    /// Every compare held, so `success` ran; otherwise `failure` ran.
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
            other => Err(Error::internal(format!(
                "store returned {other:?} for transaction operation {i}, expected a range"
            ))),
        }
    }
}

/// Most operations one transaction may carry: etcd's default `--max-txn-ops`. The heads of a
/// default ListFlows page (101 flows and the shorter names they extend) fit in one transaction.
pub const MAX_TXN_OPS: usize = 128;

/// A transactional key-value store with etcd's semantics, failing with [`KvError`].
///
/// Implementations are cheap to clone handles to one shared client or database.
pub trait Kv: Send + Sync {
    /// Reads one key or a range.
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send;
    /// Runs a transaction atomically, at one revision.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send;
    /// Resolves once the request being served has no time left for the store (never, by
    /// default). The store ends its own calls by that deadline; the core races the waits that
    /// are not store calls against it (a write queued behind another write of the same flow),
    /// so that a request whose predecessors each used their whole time still ends in time.
    fn deadline_passed(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

impl<K: Kv> Kv for &K {
    fn range(
        &self,
        req: RangeRequest,
    ) -> impl Future<Output = Result<RangeResponse, KvError>> + Send {
        (**self).range(req)
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse, KvError>> + Send {
        (**self).txn(txn)
    }

    fn deadline_passed(&self) -> impl Future<Output = ()> + Send {
        (**self).deadline_passed()
    }
}
