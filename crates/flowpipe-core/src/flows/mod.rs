//! The flow operations of contract B.4, written once against [`Kv`] and run unchanged on etcd and
//! on the embedded store. They are methods of [`FlowRegistry`], in private modules: `write`
//! (create, update, rollback, delete), `read` (get, status, versions), `list` (ListFlows) and
//! `index` (the backfill of the name index of contract B.6).
//!
//! Every write is one transaction guarded by compare-and-swap on the flow's `meta` and `active`
//! keys (every write rewrites `meta`, so its mod revision is the flow's version stamp), run by the
//! one CAS loop ([`crate::cas`]). A failed compare returns the flow's current state from the
//! transaction's `else` branch, as kube-apiserver does, so a retry needs no extra read. A version
//! key is only ever written under `create_revision == 0` on that key: a stored version can never
//! be changed, whatever else goes wrong. `status` is read, never written.
//!
//! Round trips on the common path: create 1; get, update, rollback, delete 2; status 1.

mod index;
mod list;
mod read;
mod write;

pub use index::IndexReport;
pub use list::FlowPage;

use futures_util::future::try_join_all;
use prost::Message;

use crate::environment::{Environment, RetryPolicy};
use crate::error::{Detail, Error, Result};
use crate::keys::{self, FlowKeys};
use crate::kv::{
    Compare, KeyValue, Kv, KvError, MAX_TXN_OPS, RangeRequest, RangeResponse, Txn, TxnOp,
};
use crate::locks::FlowLocks;
use crate::meta::{FlowMeta, VersionMeta, timestamp};
use crate::names::{FlowName, VersionNumber};
use crate::pagination::Snapshot;
use crate::proto::v1::{Flow, FlowSpec, FlowStatus};
use crate::validation::ValidSpec;

/// The largest binary `FlowSpec` stored (contract B.5).
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Flow versioning over a transactional KV store.
#[derive(Debug)]
pub struct FlowRegistry<K, E> {
    kv: K,
    env: E,
    retry: RetryPolicy,
    locks: FlowLocks,
}

/// Parses a flow name given in a request path or field.
pub fn parse_flow_name(name: &str) -> Result<FlowName> {
    FlowName::parse(name).map_err(|e| Error::invalid_field("INVALID_FLOW_NAME", "name", e))
}

pub(crate) fn version_not_found(name: &FlowName, v: VersionNumber) -> Error {
    Error::NotFound(
        Detail::new(
            "FLOW_VERSION_NOT_FOUND",
            format!("flow \"{name}\" has no version {v}"),
        )
        .with("flow", name)
        .with("version", v),
    )
}

pub(crate) fn contention(name: &FlowName, attempts: u32) -> Error {
    Error::Aborted(
        Detail::new(
            "CONCURRENT_MODIFICATION",
            format!(
                "flow \"{name}\" kept changing under {attempts} attempts to write it; retry the request"
            ),
        )
        .with("flow", name),
    )
}

/// A version slot that the recorded and the scanned latest version both say is free is taken:
/// the store changes under us in a way this API never writes.
pub(crate) fn slot_taken(name: &FlowName, n: VersionNumber) -> Error {
    Error::internal(format!(
        "flow \"{name}\": version {n} exists but no scan of the version keys finds it"
    ))
}

pub(crate) fn encode_spec(spec: &FlowSpec) -> Result<Vec<u8>> {
    let bytes = spec.encode_to_vec();
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(Error::TooLarge(
            Detail::new(
                "SPEC_TOO_LARGE",
                format!(
                    "the encoded spec is {} bytes; at most {MAX_SPEC_BYTES} are allowed",
                    bytes.len()
                ),
            )
            .with("limit", MAX_SPEC_BYTES),
        ));
    }
    Ok(bytes)
}

pub(crate) fn decode_spec(name: &FlowName, v: VersionNumber, bytes: &[u8]) -> Result<FlowSpec> {
    FlowSpec::decode(bytes).map_err(|e| {
        Error::internal(format!(
            "stored spec of flow \"{name}\" version {v} is not a valid FlowSpec: {e}"
        ))
    })
}

/// What one read of `[active, status]` says about a flow: everything but its versions.
#[derive(Debug, Clone)]
pub(crate) struct FlowHead {
    pub(crate) name: FlowName,
    pub(crate) keys: FlowKeys,
    /// Store revision of the read.
    pub(crate) revision: i64,
    pub(crate) active: Option<VersionNumber>,
    pub(crate) active_mod: i64,
    /// Revision that created the `active` key: when this incarnation of the flow began.
    pub(crate) active_create: i64,
    pub(crate) meta: Option<FlowMeta>,
    pub(crate) meta_mod: i64,
    /// The controller's `status`, unless it was written before this incarnation began (see
    /// [`FlowHead::status`]).
    pub(crate) status: Option<(i64, Vec<u8>)>,
}

impl FlowHead {
    pub(crate) fn range(keys: &FlowKeys) -> RangeRequest {
        let (start, end) = keys.head_range();
        RangeRequest::range(start, end)
    }

    /// A flow with no keys at all.
    pub(crate) fn empty(name: &FlowName, keys: &FlowKeys, revision: i64) -> Self {
        FlowHead {
            name: name.clone(),
            keys: keys.clone(),
            revision,
            active: None,
            active_mod: 0,
            active_create: 0,
            meta: None,
            meta_mod: 0,
            status: None,
        }
    }

    pub(crate) fn parse(name: &FlowName, keys: &FlowKeys, resp: &RangeResponse) -> Result<Self> {
        let mut head = FlowHead::empty(name, keys, resp.revision);
        for kv in &resp.kvs {
            if kv.key == keys.active() {
                let v = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(VersionNumber::parse_canonical)
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "active pointer of flow \"{name}\" is not a version number: {:?}",
                            String::from_utf8_lossy(&kv.value)
                        ))
                    })?;
                head.active = Some(v);
                head.active_mod = kv.mod_revision;
                head.active_create = kv.create_revision;
            } else if kv.key == keys.meta() {
                head.meta = Some(FlowMeta::decode(name.as_str(), &kv.value)?);
                head.meta_mod = kv.mod_revision;
            } else if kv.key == keys.status() {
                head.status = Some((kv.mod_revision, kv.value.clone()));
            }
        }
        Ok(head)
    }

    /// Live: it has an active version and is not marked deleted.
    pub(crate) fn is_live(&self) -> bool {
        self.active.is_some() && !self.meta.as_ref().is_some_and(|m| m.deleted)
    }

    /// The active version of a live flow; NOT_FOUND otherwise (a deleted flow is not found).
    pub(crate) fn live(&self) -> Result<VersionNumber> {
        match self.active {
            Some(v) if self.is_live() => Ok(v),
            _ => Err(Error::flow_not_found(self.name.as_str())),
        }
    }

    /// Same state as `other`: neither `meta` nor `active` was written in between.
    pub(crate) fn unchanged_since(&self, other: &FlowHead) -> bool {
        self.meta_mod == other.meta_mod && self.active_mod == other.active_mod
    }

    /// The compare-and-swap guard: `meta` and `active` are as this read saw them.
    pub(crate) fn guard(&self) -> Vec<Compare> {
        vec![
            Compare::mod_revision(self.keys.meta(), self.meta_mod),
            Compare::mod_revision(self.keys.active(), self.active_mod),
        ]
    }

    /// The controller's status of this incarnation of the flow; an empty one if it has written
    /// none yet. The API never deletes `status`, so after a delete and a re-create the key may
    /// still hold what the controller wrote about the previous incarnation: a status last
    /// written before the current `active` key was created is stale, and reported as empty
    /// (contract B.4, "Stale status"). Revisions are compared, never clocks; the key is left
    /// alone.
    pub(crate) fn status(&self) -> Result<FlowStatus> {
        match &self.status {
            None => Ok(FlowStatus::default()),
            Some((written, _)) if *written < self.active_create => Ok(FlowStatus::default()),
            Some((_, bytes)) => FlowStatus::decode(bytes.as_slice()).map_err(|e| {
                Error::internal(format!(
                    "stored status of flow \"{}\" is not a valid FlowStatus: {e}",
                    self.name
                ))
            }),
        }
    }

    pub(crate) fn meta(&self) -> FlowMeta {
        self.meta.clone().unwrap_or_default()
    }

    /// The flow as the API returns it, at active version `v` with `spec`.
    pub(crate) fn flow(&self, meta: &FlowMeta, v: VersionNumber, spec: FlowSpec) -> Result<Flow> {
        Ok(Flow {
            status: Some(self.status()?),
            ..self.flow_without_status(meta, v, spec)
        })
    }

    pub(crate) fn flow_without_status(
        &self,
        meta: &FlowMeta,
        v: VersionNumber,
        spec: FlowSpec,
    ) -> Flow {
        Flow {
            name: self.name.as_str().to_owned(),
            version: v.get(),
            spec: Some(spec),
            status: None,
            uid: meta.uid.clone(),
            create_time: meta.created_at.map(timestamp),
            update_time: meta.updated_at.or(meta.created_at).map(timestamp),
            latest_version: meta.latest_version.unwrap_or(0).max(v.get()),
        }
    }
}

/// The operations that write version `v` (spec and version meta) and make it active.
pub(crate) fn write_version(
    keys: &FlowKeys,
    v: VersionNumber,
    spec_bytes: Vec<u8>,
    meta: &FlowMeta,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<TxnOp> {
    vec![
        TxnOp::put(keys.version_spec(v), spec_bytes),
        TxnOp::put(keys.version_meta(v), VersionMeta::new(now).encode()),
        TxnOp::put(keys.active(), v.to_string()),
        TxnOp::put(keys.meta(), meta.encode()),
    ]
}

/// Meta of a new incarnation of a flow created at version `v`. Unknown keys of a previous
/// incarnation's meta are kept.
pub(crate) fn new_incarnation(
    previous: Option<&FlowMeta>,
    uid: String,
    spec: &ValidSpec,
    v: VersionNumber,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowMeta {
    FlowMeta {
        uid,
        created_at: Some(now),
        labels: spec.spec().labels.clone(),
        deleted: false,
        updated_at: Some(now),
        latest_version: Some(v.get()),
        deleted_at: None,
        extra: previous.map(|m| m.extra.clone()).unwrap_or_default(),
    }
}

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    /// Flow operations over `kv`, taking time, ids and randomness from `env`.
    pub fn new(kv: K, env: E) -> Self {
        FlowRegistry {
            kv,
            env,
            retry: RetryPolicy::default(),
            locks: FlowLocks::default(),
        }
    }

    /// Replaces the default [`RetryPolicy`] of writes that lose races.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The store.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    pub(crate) async fn read_head(&self, name: &FlowName, keys: &FlowKeys) -> Result<FlowHead> {
        let resp = self.kv.range(FlowHead::range(keys)).await?;
        FlowHead::parse(name, keys, &resp)
    }

    /// The spec of version `v` as of `head`'s revision.
    pub(crate) async fn read_spec(&self, head: &FlowHead, v: VersionNumber) -> Result<FlowSpec> {
        let key = head.keys.version_spec(v);
        let resp = match self
            .kv
            .range(RangeRequest::key(key.clone()).at_revision(head.revision))
            .await
        {
            // Compacted since the head was read: a version never changes once written, so the
            // latest revision holds the same bytes.
            Err(KvError::RevisionUnavailable(_)) => self.kv.range(RangeRequest::key(key)).await?,
            other => other?,
        };
        match resp.kvs.first() {
            Some(kv) => decode_spec(&head.name, v, &kv.value),
            None => Err(Error::internal(format!(
                "flow \"{}\" points at version {v}, which has no spec",
                head.name
            ))),
        }
    }

    /// The highest version ever assigned to the flow, `None` if it never had one. Meta written by
    /// this API records it; for meta written by the original API (or when `scan` is set because
    /// the recorded number was found to be stale) the version keys are scanned.
    pub(crate) async fn latest_version(
        &self,
        head: &FlowHead,
        scan: bool,
    ) -> Result<Option<VersionNumber>> {
        let recorded = head
            .meta
            .as_ref()
            .and_then(|m| m.latest_version)
            .and_then(VersionNumber::new);
        if let (Some(v), false) = (recorded, scan) {
            return Ok(Some(v.max(head.active.unwrap_or(v))));
        }
        let resp = self
            .kv
            .range(
                RangeRequest::prefix(head.keys.versions_prefix())
                    .keys_only()
                    .at_revision(head.revision),
            )
            .await?;
        let scanned = resp
            .kvs
            .iter()
            .filter_map(|kv| keys::version_of_key(&kv.key))
            .max();
        Ok([scanned, recorded, head.active].into_iter().flatten().max())
    }

    /// Whether the flow of a head that is not live ever existed: it has meta (this API and the
    /// original write it at every create), or, for data without meta, versions.
    pub(crate) async fn ever_existed(&self, head: &FlowHead) -> Result<bool> {
        if head.meta.is_some() || head.active.is_some() {
            return Ok(true);
        }
        let resp = self
            .kv
            .range(
                RangeRequest::prefix(head.keys.versions_prefix())
                    .keys_only()
                    .limit(1)
                    .at_revision(head.revision),
            )
            .await?;
        Ok(!resp.kvs.is_empty())
    }

    /// Meta written without a uid (by an older writer, or missing altogether) gets one, and a
    /// creation time, on the next write: contract A.4 requires both.
    pub(crate) fn repair_meta(&self, meta: &mut FlowMeta, now: chrono::DateTime<chrono::Utc>) {
        if meta.uid.is_empty() {
            meta.uid = self.env.new_uid();
            meta.created_at.get_or_insert(now);
        }
    }

    /// Reads single keys at `revision`, in transactions of at most [`MAX_TXN_OPS`] reads run
    /// concurrently; one answer per key, in order.
    pub(crate) async fn read_keys(
        &self,
        keys: impl Iterator<Item = Vec<u8>>,
        snapshot: Snapshot,
        keys_only: bool,
    ) -> Result<Vec<Option<KeyValue>>> {
        let revision = snapshot.revision();
        let keys: Vec<Vec<u8>> = keys.collect();
        let reads = keys.chunks(MAX_TXN_OPS).map(|chunk| async move {
            let resp = self
                .kv
                .txn(Txn::read(chunk.iter().map(|k| {
                    let r = RangeRequest::key(k.clone()).at_revision(revision);
                    if keys_only { r.keys_only() } else { r }
                })))
                .await
                .map_err(|e| snapshot.error(e))?;
            (0..chunk.len())
                .map(|i| Ok(resp.range(i)?.kvs.first().cloned()))
                .collect::<Result<Vec<_>>>()
        });
        Ok(try_join_all(reads).await?.into_iter().flatten().collect())
    }

    /// Reads the heads of `names` at `revision`, in transactions of at most [`MAX_TXN_OPS`]
    /// reads, run concurrently.
    pub(crate) async fn read_heads(
        &self,
        names: &[FlowName],
        snapshot: Snapshot,
    ) -> Result<Vec<FlowHead>> {
        let revision = snapshot.revision();
        let chunks = names.chunks(MAX_TXN_OPS).map(|chunk| async move {
            let keys: Vec<FlowKeys> = chunk.iter().map(FlowKeys::new).collect();
            let resp = self
                .kv
                .txn(Txn::read(
                    keys.iter()
                        .map(|k| FlowHead::range(k).at_revision(revision)),
                ))
                .await
                .map_err(|e| snapshot.error(e))?;
            let mut heads = Vec::with_capacity(chunk.len());
            for (i, (n, k)) in chunk.iter().zip(&keys).enumerate() {
                // One flow with unreadable metadata must not fail the whole listing: it is left
                // out (and logged); GetFlow on it reports the problem.
                match FlowHead::parse(n, k, resp.range(i)?) {
                    Ok(head) => heads.push(head),
                    Err(e) => tracing::warn!(flow = %n, error = %e, "leaving an unreadable flow out of a listing"),
                }
            }
            Ok::<_, Error>(heads)
        });
        Ok(try_join_all(chunks).await?.into_iter().flatten().collect())
    }
}
