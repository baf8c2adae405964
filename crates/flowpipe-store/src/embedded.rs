//! [`EmbeddedStore`]: the [`Kv`] trait on a local redb file, so the server runs with nothing else
//! installed. It keeps etcd's semantics, because the core relies on them:
//!
//! - one global revision, bumped by every transaction that changes something;
//! - per key: create revision, mod revision and version, reset when the key is deleted;
//! - reads at a past revision (multi-version storage, compacted in the background of writes to
//!   the last [`RETAINED_REVISIONS`] revisions; older reads fail as they do on etcd);
//! - transactions evaluated and applied atomically (redb serializes writers; every commit is
//!   fsynced before the call returns).
//!
//! Layout: one table keyed by `(user key, revision)` holding every version of every key (or a
//! tombstone), and one small table for the current and compacted revisions. redb is blocking, so
//! every call runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use flowpipe_core::kv::{
    Compare, CompareOp, CompareTarget, KeyValue, Kv, KvError, MAX_TXN_OPS, RangeRequest,
    RangeResponse, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

type Result<T, E = KvError> = std::result::Result<T, E>;

/// Every version of every key: `(key, revision)` → [`Record`].
const KV: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("kv");
/// `"revision"` → current revision; `"compacted"` → oldest readable revision - 1.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Revisions kept readable behind the current one (page tokens stay valid this long).
pub const RETAINED_REVISIONS: u64 = 10_000;

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    tombstone: bool,
    create_revision: i64,
    version: i64,
    value: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.value.len());
        out.push(u8::from(self.tombstone));
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < 17 {
            return Err(KvError::Internal("embedded store: truncated record".into()));
        }
        let int = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            i64::from_be_bytes(a)
        };
        Ok(Record {
            tombstone: b[0] == 1,
            create_revision: int(1..9),
            version: int(9..17),
            value: b[17..].to_vec(),
        })
    }
}

fn storage<E: std::fmt::Display>(e: E) -> KvError {
    KvError::Internal(format!("embedded store: {e}"))
}

/// A handle to one open database; clone it freely.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Option<PathBuf>,
    retained: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path`. Fails if another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| {
            KvError::Internal(format!(
                "cannot open embedded store {}: {e}",
                path.display()
            ))
        })?;
        Self::init(db, Some(path))
    }

    /// A store that lives in memory only, for tests.
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage)?;
        Self::init(db, None)
    }

    fn init(db: Database, path: Option<PathBuf>) -> Result<Self> {
        let tx = db.begin_write().map_err(storage)?;
        {
            tx.open_table(KV).map_err(storage)?;
            tx.open_table(META).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            retained: RETAINED_REVISIONS,
        })
    }

    /// Keeps only the last `revisions` revisions readable (tests of compaction).
    pub fn with_retained_revisions(mut self, revisions: u64) -> Self {
        self.retained = revisions.max(1);
        self
    }

    /// The file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| KvError::Internal(format!("embedded store task failed: {e}")))?
    }
}

/// Current and compacted revisions.
fn revisions(meta: &impl ReadableTable<&'static str, u64>) -> Result<(u64, u64)> {
    let get =
        |k: &str| -> Result<u64> { Ok(meta.get(k).map_err(storage)?.map_or(0, |v| v.value())) };
    Ok((get("revision")?, get("compacted")?))
}

/// Is `range_end` "to the end of the keyspace" (etcd's `\0`)?
fn unbounded(end: &[u8]) -> bool {
    end == [0]
}

/// A key with its record and the revision of that record.
type Found = (Vec<u8>, Record, u64);
/// While scanning: a key and the raw bytes and revision of its best version so far.
type Candidate = Option<(Vec<u8>, Option<(Vec<u8>, u64)>)>;

/// The latest record of each key in `req`'s range as of revision `at`, tombstones skipped, in key
/// order; at most `max_keys` of them (plus whether there were more).
///
/// A key's versions are adjacent and in revision order, so the scan keeps the raw bytes of the
/// best candidate and decodes one record per key.
fn read_range(
    table: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    req: &RangeRequest,
    at: u64,
    max_keys: usize,
) -> Result<(Vec<Found>, bool)> {
    let start = req.key.as_slice();
    let iter = match &req.range_end {
        None => table.range((start, 0u64)..=(start, u64::MAX)),
        Some(end) if unbounded(end) => table.range((start, 0u64)..),
        Some(end) => table.range((start, 0u64)..(end.as_slice(), 0u64)),
    }
    .map_err(storage)?;

    let mut out: Vec<Found> = Vec::new();
    let mut current: Candidate = None;
    let mut more = false;
    for entry in iter {
        let (k, v) = entry.map_err(storage)?;
        let (key, rev) = k.value();
        if current.as_ref().is_none_or(|(ck, _)| ck.as_slice() != key) {
            if let Some((ck, Some((raw, r)))) = current.take() {
                let rec = Record::decode(&raw)?;
                if !rec.tombstone {
                    if out.len() == max_keys {
                        more = true;
                        break;
                    }
                    out.push((ck, rec, r));
                }
            }
            current = Some((key.to_vec(), None));
        }
        if rev <= at
            && let Some((_, best)) = current.as_mut()
        {
            *best = Some((v.value().to_vec(), rev));
        }
    }
    if !more && let Some((ck, Some((raw, r)))) = current.take() {
        let rec = Record::decode(&raw)?;
        if !rec.tombstone {
            if out.len() == max_keys {
                more = true;
            } else {
                out.push((ck, rec, r));
            }
        }
    }
    Ok((out, more))
}

fn range_response(
    table: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    req: &RangeRequest,
    at: u64,
    header_revision: u64,
) -> Result<RangeResponse> {
    let limit = if req.limit > 0 {
        req.limit as usize
    } else {
        usize::MAX
    };
    let (found, more) = read_range(table, req, at, limit)?;
    let kvs = found
        .into_iter()
        .map(|(key, rec, rev)| KeyValue {
            key,
            value: if req.keys_only { Vec::new() } else { rec.value },
            create_revision: rec.create_revision,
            mod_revision: rev as i64,
            version: rec.version,
        })
        .collect();
    Ok(RangeResponse {
        kvs,
        more,
        revision: header_revision as i64,
    })
}

/// The revision a read of `requested` is served at, or why it cannot be.
fn read_revision(requested: i64, current: u64, compacted: u64) -> Result<u64> {
    if requested <= 0 {
        return Ok(current);
    }
    let r = requested as u64;
    if r > current {
        return Err(KvError::RevisionUnavailable(format!(
            "required revision {r} is a future revision (current {current})"
        )));
    }
    // As on etcd, the compaction revision itself stays readable.
    if r < compacted {
        return Err(KvError::RevisionUnavailable(format!(
            "required revision {r} has been compacted (compacted up to {compacted})"
        )));
    }
    Ok(r)
}

/// The current record of `key` (its newest version), unless it is missing or deleted.
fn latest(
    table: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    key: &[u8],
) -> Result<Option<(Record, u64)>> {
    let newest = table
        .range((key, 0u64)..=(key, u64::MAX))
        .map_err(storage)?
        .next_back()
        .transpose()
        .map_err(storage)?;
    match newest {
        Some((k, v)) => {
            let rec = Record::decode(v.value())?;
            Ok((!rec.tombstone).then_some((rec, k.value().1)))
        }
        None => Ok(None),
    }
}

fn holds(c: &Compare, kv: Option<&(Record, u64)>) -> bool {
    use std::cmp::Ordering;
    let ord = match (&c.target, kv) {
        // etcd: comparing the value of a missing key is always false.
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(v), Some((rec, _))) => rec.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::Version(v), kv) => kv.map_or(0, |(r, _)| r.version).cmp(v),
        (CompareTarget::CreateRevision(v), kv) => kv.map_or(0, |(r, _)| r.create_revision).cmp(v),
        (CompareTarget::ModRevision(v), kv) => kv.map_or(0, |(_, rev)| *rev as i64).cmp(v),
    };
    match c.op {
        CompareOp::Equal => ord == Ordering::Equal,
        CompareOp::NotEqual => ord != Ordering::Equal,
        CompareOp::Greater => ord == Ordering::Greater,
        CompareOp::Less => ord == Ordering::Less,
    }
}

fn is_read_only(ops: &[TxnOp]) -> bool {
    ops.iter().all(|op| matches!(op, TxnOp::Range(_)))
}

fn read_only_txn(db: &Database, txn: Txn) -> Result<TxnResponse> {
    let tx = db.begin_read().map_err(storage)?;
    let table = tx.open_table(KV).map_err(storage)?;
    let (current, compacted) = revisions(&tx.open_table(META).map_err(storage)?)?;
    let mut succeeded = true;
    for c in &txn.compare {
        succeeded &= holds(c, latest(&table, &c.key)?.as_ref());
    }
    let ops = if succeeded { txn.success } else { txn.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        if let TxnOp::Range(r) = op {
            let at = read_revision(r.revision, current, compacted)?;
            responses.push(TxnOpResponse::Range(range_response(
                &table, &r, at, current,
            )?));
        }
    }
    Ok(TxnResponse {
        succeeded,
        revision: current as i64,
        responses,
    })
}

fn write_txn(db: &Database, txn: Txn, retained: u64) -> Result<(TxnResponse, bool)> {
    let tx = db.begin_write().map_err(storage)?;
    let (resp, compact_due) = {
        let mut table = tx.open_table(KV).map_err(storage)?;
        let mut meta = tx.open_table(META).map_err(storage)?;
        let (current, compacted) = revisions(&meta)?;
        let new_rev = current + 1;
        let mut succeeded = true;
        for c in &txn.compare {
            succeeded &= holds(c, latest(&table, &c.key)?.as_ref());
        }
        let ops = if succeeded { txn.success } else { txn.failure };
        let mut changed = false;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                TxnOp::Range(r) => {
                    // Reads inside a transaction see its earlier writes, as on etcd.
                    let at = if r.revision > 0 {
                        read_revision(r.revision, current, compacted)?
                    } else {
                        u64::MAX
                    };
                    let header = if changed { new_rev } else { current };
                    responses.push(TxnOpResponse::Range(range_response(
                        &table, &r, at, header,
                    )?));
                }
                TxnOp::Put { key, value } => {
                    let prev = latest(&table, &key)?;
                    let rec = Record {
                        tombstone: false,
                        create_revision: prev
                            .as_ref()
                            .map_or(new_rev as i64, |(r, _)| r.create_revision),
                        version: prev.as_ref().map_or(1, |(r, _)| r.version + 1),
                        value,
                    };
                    table
                        .insert((key.as_slice(), new_rev), rec.encode().as_slice())
                        .map_err(storage)?;
                    changed = true;
                    responses.push(TxnOpResponse::Put);
                }
                TxnOp::Delete { key, range_end } => {
                    let req = RangeRequest {
                        key,
                        range_end,
                        ..Default::default()
                    };
                    let (live, _) = read_range(&table, &req, u64::MAX, usize::MAX)?;
                    for (k, _, _) in &live {
                        let tomb = Record {
                            tombstone: true,
                            create_revision: 0,
                            version: 0,
                            value: Vec::new(),
                        };
                        table
                            .insert((k.as_slice(), new_rev), tomb.encode().as_slice())
                            .map_err(storage)?;
                    }
                    changed |= !live.is_empty();
                    responses.push(TxnOpResponse::Delete {
                        deleted: live.len() as i64,
                    });
                }
            }
        }
        let revision = if changed {
            meta.insert("revision", new_rev).map_err(storage)?;
            new_rev
        } else {
            current
        };
        (
            TxnResponse {
                succeeded,
                revision: revision as i64,
                responses,
            },
            changed && revision.saturating_sub(compacted) > 2 * retained,
        )
    };
    tx.commit().map_err(storage)?;
    Ok((resp, compact_due))
}

/// Forgets every version older than `current - retained` that a newer one supersedes.
fn compact(db: &Database, retained: u64) -> Result<()> {
    let tx = db.begin_write().map_err(storage)?;
    {
        let mut table = tx.open_table(KV).map_err(storage)?;
        let mut meta = tx.open_table(META).map_err(storage)?;
        let (current, _) = revisions(&meta)?;
        let upto = current.saturating_sub(retained);
        let mut doomed: Vec<(Vec<u8>, u64)> = Vec::new();
        // Per key: every entry at or below `upto` except the last one, and that one too if it is
        // a tombstone.
        let mut group: Vec<(u64, bool)> = Vec::new();
        let mut group_key: Vec<u8> = Vec::new();
        let flush = |key: &[u8], group: &mut Vec<(u64, bool)>, doomed: &mut Vec<(Vec<u8>, u64)>| {
            if let Some(&(last_rev, last_tomb)) = group.last() {
                for &(rev, _) in &group[..group.len() - 1] {
                    doomed.push((key.to_vec(), rev));
                }
                if last_tomb {
                    doomed.push((key.to_vec(), last_rev));
                }
            }
            group.clear();
        };
        for entry in table.range::<(&[u8], u64)>(..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let (key, rev) = k.value();
            if key != group_key.as_slice() {
                flush(&group_key, &mut group, &mut doomed);
                group_key = key.to_vec();
            }
            if rev <= upto {
                group.push((rev, v.value().first() == Some(&1)));
            }
        }
        flush(&group_key, &mut group, &mut doomed);
        for (k, rev) in &doomed {
            table.remove((k.as_slice(), *rev)).map_err(storage)?;
        }
        meta.insert("compacted", upto).map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

/// Rejects what etcd rejects, so code that works here works on etcd: too many operations (more
/// than etcd's default `--max-txn-ops`), or two writes of one key in one branch.
fn check_like_etcd(txn: &Txn) -> Result<()> {
    for branch in [&txn.success, &txn.failure] {
        if branch.len() > MAX_TXN_OPS || txn.compare.len() > MAX_TXN_OPS {
            return Err(KvError::Internal(
                "embedded store: too many operations in txn request".into(),
            ));
        }
        let mut written = std::collections::HashSet::new();
        for op in branch {
            let key = match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key, .. } => key,
                TxnOp::Range(_) => continue,
            };
            if !written.insert(key) {
                return Err(KvError::Internal(
                    "embedded store: duplicate key given in txn request".into(),
                ));
            }
        }
    }
    Ok(())
}

impl Kv for EmbeddedStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let table = tx.open_table(KV).map_err(storage)?;
            let (current, compacted) = revisions(&tx.open_table(META).map_err(storage)?)?;
            let at = read_revision(req.revision, current, compacted)?;
            range_response(&table, &req, at, current)
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        check_like_etcd(&txn)?;
        if is_read_only(&txn.success) && is_read_only(&txn.failure) {
            return self.blocking(move |db| read_only_txn(db, txn)).await;
        }
        let retained = self.retained;
        let (resp, compact_due) = self
            .blocking(move |db| write_txn(db, txn, retained))
            .await?;
        if compact_due {
            // Compaction is housekeeping: a failure is logged, never the caller's error.
            let result = self.blocking(move |db| compact(db, retained)).await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "embedded store compaction failed");
            }
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(s: &EmbeddedStore, k: &str, v: &str) -> i64 {
        s.txn(Txn {
            success: vec![TxnOp::put(k, v)],
            ..Default::default()
        })
        .await
        .unwrap()
        .revision
    }

    #[tokio::test]
    async fn compaction_keeps_recent_revisions_and_the_latest_values() {
        let s = EmbeddedStore::in_memory()
            .unwrap()
            .with_retained_revisions(10);
        let first = put(&s, "/keep", "v0").await;
        put(&s, "/gone", "x").await;
        s.txn(Txn {
            success: vec![TxnOp::delete("/gone")],
            ..Default::default()
        })
        .await
        .unwrap();
        let mut last = 0;
        for i in 1..=60 {
            last = put(&s, "/hot", &format!("v{i}")).await;
        }
        // Old revisions are gone, as on a compacted etcd...
        let e = s
            .range(RangeRequest::key("/keep").at_revision(first))
            .await
            .unwrap_err();
        assert!(matches!(e, KvError::RevisionUnavailable(_)), "{e:?}");
        // ...recent ones and every current value stay.
        let recent = s
            .range(RangeRequest::key("/hot").at_revision(last - 5))
            .await
            .unwrap();
        assert_eq!(recent.kvs[0].value, b"v55");
        let keep = s.range(RangeRequest::key("/keep")).await.unwrap();
        assert_eq!(keep.kvs[0].value, b"v0");
        assert_eq!(keep.kvs[0].mod_revision, first);
        assert!(
            s.range(RangeRequest::key("/gone"))
                .await
                .unwrap()
                .kvs
                .is_empty()
        );
        // Superseded versions and tombstones were removed from the table.
        let entries = s
            .blocking(|db| {
                let tx = db.begin_read().map_err(storage)?;
                let t = tx.open_table(KV).map_err(storage)?;
                redb::ReadableTableMetadata::len(&t).map_err(storage)
            })
            .await
            .unwrap();
        assert!(entries < 30, "{entries} entries left");
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            tombstone: false,
            create_revision: 7,
            version: 3,
            value: b"abc".to_vec(),
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(b"short").is_err());
    }
}
