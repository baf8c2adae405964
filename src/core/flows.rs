//! The flow operations of contract B.4, written once against [`Kv`] and run unchanged on etcd and
//! on the embedded store.
//!
//! Every write is one transaction guarded by compare-and-swap on the flow's `meta` and `active`
//! keys (every write rewrites `meta`, so its mod revision is the flow's version stamp). A failed
//! compare returns the flow's current state from the transaction's `else` branch, as
//! kube-apiserver does, so a retry needs no extra read. A version key is only ever written under
//! `create_revision == 0` on that key: a stored version can never be changed, whatever else goes
//! wrong. `status` is read, never written.
//!
//! Round trips on the common path: create 1; get, update, rollback, delete 2; status 1.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::try_join_all;
use prost::Message;

use super::environment::{Environment, RetryPolicy};
use super::error::{Detail, Error, Result};
use super::keys::{self, FlowKeyKind, FlowKeys};
use super::kv::{Compare, Kv, MAX_TXN_OPS, RangeRequest, RangeResponse, Txn, TxnOp};
use super::locks::FlowLocks;
use super::meta::{FlowMeta, VersionMeta, timestamp};
use super::names::{FlowName, VersionNumber};
use super::pagination::{self, PageToken};
use super::validation::{prepare_create, prepare_update};
use crate::proto::v1::{
    CreateFlowRequest, Flow, FlowSpec, FlowStatus, FlowSummary, FlowVersion,
    ListFlowVersionsResponse, ListFlowsResponse, UpdateFlowRequest,
};

/// The largest binary `FlowSpec` stored (contract B.5).
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// Most keys one ListFlows discovery read asks for. etcd (3.4 and 3.5) walks every key of a
/// range to count it, whatever the limit, so a page costs etcd (reads × keys after the cursor):
/// fewer, larger reads are cheaper for it. This bounds one response to about 1 MiB of keys.
const MAX_SCAN_KEYS: i64 = 10_000;
/// Keys the first discovery read of a page asks for per flow it wants, before it has seen how
/// many keys a flow has: a one-version flow has 4 or 5 (active, meta, status, versions/1/...),
/// so a page of such flows is found in one read.
const FIRST_SCAN_KEYS_PER_FLOW: usize = 6;

/// What one keys-only discovery read of ListFlows found, and what the next read should ask
/// for. Public so that flow-bench's raw-same baseline issues exactly the API's reads.
#[derive(Debug, Default)]
pub struct DiscoveryRead {
    /// Flows with an `active` key (live, or deleted by a writer that kept `active`), in key
    /// order.
    pub active: Vec<FlowName>,
    /// Where the next read starts: past the subtree of the last flow seen, whose versions may
    /// have been cut off by the limit. `None` once the range is exhausted.
    pub next: Option<Vec<u8>>,
    /// Keys per flow among the flows this read saw whole (an estimate for the next limit).
    keys_per_flow: Option<usize>,
}

impl DiscoveryRead {
    /// The limit of a page's first read, for `want` flows.
    pub fn first_limit(want: usize) -> i64 {
        ((FIRST_SCAN_KEYS_PER_FLOW * want) as i64).clamp(16, MAX_SCAN_KEYS)
    }

    /// Reads the keys (without any namespace) of one discovery read; `more` is etcd's `more`.
    pub fn parse<'a>(keys: impl IntoIterator<Item = &'a [u8]>, more: bool) -> Self {
        // Keys per flow segment, in key order; the last segment may be cut off.
        let mut segments: Vec<usize> = Vec::new();
        let mut last_end: Option<Vec<u8>> = None;
        let mut active = Vec::new();
        for key in keys {
            let end = keys::flow_segment_end(key);
            if last_end.as_ref() != Some(&end) {
                segments.push(0);
                last_end = Some(end);
            }
            if let Some(n) = segments.last_mut() {
                *n += 1;
            }
            match keys::parse_flow_key(key) {
                Some((name, FlowKeyKind::Active)) => active.push(name),
                Some(_) => {}
                // Not a name this API accepts (written by an older writer): such a flow cannot
                // be addressed through the API, so it is not listed.
                None => {
                    tracing::debug!(key = %String::from_utf8_lossy(key), "skipping key of an invalid flow name")
                }
            }
        }
        match (last_end, more) {
            (Some(next), true) => {
                let whole = &segments[..segments.len() - 1];
                let keys_per_flow =
                    (!whole.is_empty()).then(|| whole.iter().sum::<usize>() / whole.len() + 1);
                DiscoveryRead {
                    active,
                    next: Some(next),
                    keys_per_flow,
                }
            }
            _ => DiscoveryRead {
                active,
                next: None,
                keys_per_flow: None,
            },
        }
    }

    /// The limit of the next read, to find `missing` more flows: sized from the flows this read
    /// saw whole, else `current` again.
    pub fn next_limit(&self, missing: usize, current: i64) -> i64 {
        self.keys_per_flow.map_or(current, |per_flow| {
            ((missing.max(1) * per_flow) as i64).clamp(16, MAX_SCAN_KEYS)
        })
    }
}

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

fn version_not_found(name: &FlowName, v: VersionNumber) -> Error {
    Error::NotFound(
        Detail::new(
            "FLOW_VERSION_NOT_FOUND",
            format!("flow \"{name}\" has no version {v}"),
        )
        .with("flow", name)
        .with("version", v),
    )
}

fn contention(name: &FlowName, attempts: u32) -> Error {
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

/// Whether a stored spec and a candidate (defaults applied) are the same spec "after defaults"
/// (contract B.4). Decoded comparison: independent of how the stored bytes were encoded.
fn same_spec(stored: &FlowSpec, candidate: &FlowSpec) -> bool {
    let mut stored = stored.clone();
    super::validation::apply_defaults(&mut stored);
    &stored == candidate
}

/// A version slot that the recorded and the scanned latest version both say is free is taken:
/// the store changes under us in a way this API never writes.
fn slot_taken(name: &FlowName, n: VersionNumber) -> Error {
    Error::internal(format!(
        "flow \"{name}\": version {n} exists but no scan of the version keys finds it"
    ))
}

/// The spec as stored at version `v`: `name` and `version` filled in (contract A.4).
fn at_version(mut spec: FlowSpec, name: &FlowName, v: VersionNumber) -> FlowSpec {
    spec.name = name.as_str().to_owned();
    spec.version = v.get();
    spec
}

fn encode_spec(spec: &FlowSpec) -> Result<Vec<u8>> {
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

fn decode_spec(name: &FlowName, v: VersionNumber, bytes: &[u8]) -> Result<FlowSpec> {
    FlowSpec::decode(bytes).map_err(|e| {
        Error::internal(format!(
            "stored spec of flow \"{name}\" version {v} is not a valid FlowSpec: {e}"
        ))
    })
}

/// What one read of `[active, status]` says about a flow: everything but its versions.
#[derive(Debug, Clone)]
struct FlowHead {
    name: FlowName,
    keys: FlowKeys,
    /// Store revision of the read.
    revision: i64,
    active: Option<VersionNumber>,
    active_mod: i64,
    meta: Option<FlowMeta>,
    meta_mod: i64,
    status: Option<Vec<u8>>,
}

impl FlowHead {
    fn range(keys: &FlowKeys) -> RangeRequest {
        let (start, end) = keys.head_range();
        RangeRequest::range(start, end)
    }

    /// A flow with no keys at all.
    fn empty(name: &FlowName, keys: &FlowKeys, revision: i64) -> Self {
        FlowHead {
            name: name.clone(),
            keys: keys.clone(),
            revision,
            active: None,
            active_mod: 0,
            meta: None,
            meta_mod: 0,
            status: None,
        }
    }

    fn parse(name: &FlowName, keys: &FlowKeys, resp: &RangeResponse) -> Result<Self> {
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
            } else if kv.key == keys.meta() {
                head.meta = Some(FlowMeta::decode(name.as_str(), &kv.value)?);
                head.meta_mod = kv.mod_revision;
            } else if kv.key == keys.status() {
                head.status = Some(kv.value.clone());
            }
        }
        Ok(head)
    }

    /// Live: it has an active version and is not marked deleted.
    fn is_live(&self) -> bool {
        self.active.is_some() && !self.meta.as_ref().is_some_and(|m| m.deleted)
    }

    /// The active version of a live flow; NOT_FOUND otherwise (a deleted flow is not found).
    fn live(&self) -> Result<VersionNumber> {
        match self.active {
            Some(v) if self.is_live() => Ok(v),
            _ => Err(Error::flow_not_found(self.name.as_str())),
        }
    }

    /// Same state as `other`: neither `meta` nor `active` was written in between.
    fn unchanged_since(&self, other: &FlowHead) -> bool {
        self.meta_mod == other.meta_mod && self.active_mod == other.active_mod
    }

    /// The compare-and-swap guard: `meta` and `active` are as this read saw them.
    fn guard(&self) -> Vec<Compare> {
        vec![
            Compare::mod_revision(self.keys.meta(), self.meta_mod),
            Compare::mod_revision(self.keys.active(), self.active_mod),
        ]
    }

    /// The controller's status; an empty one if it has written none yet.
    fn status(&self) -> Result<FlowStatus> {
        match &self.status {
            None => Ok(FlowStatus::default()),
            Some(bytes) => FlowStatus::decode(bytes.as_slice()).map_err(|e| {
                Error::internal(format!(
                    "stored status of flow \"{}\" is not a valid FlowStatus: {e}",
                    self.name
                ))
            }),
        }
    }

    fn meta(&self) -> FlowMeta {
        self.meta.clone().unwrap_or_default()
    }

    /// The flow as the API returns it, at active version `v` with `spec`.
    fn flow(&self, meta: &FlowMeta, v: VersionNumber, spec: FlowSpec) -> Result<Flow> {
        Ok(Flow {
            status: Some(self.status()?),
            ..self.flow_without_status(meta, v, spec)
        })
    }

    fn flow_without_status(&self, meta: &FlowMeta, v: VersionNumber, spec: FlowSpec) -> Flow {
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
fn write_version(
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
fn new_incarnation(
    previous: Option<&FlowMeta>,
    uid: String,
    spec: &FlowSpec,
    v: VersionNumber,
    now: chrono::DateTime<chrono::Utc>,
) -> FlowMeta {
    FlowMeta {
        uid,
        created_at: Some(now),
        labels: spec.labels.clone(),
        deleted: false,
        updated_at: Some(now),
        latest_version: Some(v.get()),
        deleted_at: None,
        extra: previous.map(|m| m.extra.clone()).unwrap_or_default(),
    }
}

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    pub fn new(kv: K, env: E) -> Self {
        FlowRegistry {
            kv,
            env,
            retry: RetryPolicy::default(),
            locks: FlowLocks::default(),
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }

    async fn read_head(&self, name: &FlowName, keys: &FlowKeys) -> Result<FlowHead> {
        let resp = self.kv.range(FlowHead::range(keys)).await?;
        FlowHead::parse(name, keys, &resp)
    }

    /// The spec of version `v` as of `head`'s revision.
    async fn read_spec(&self, head: &FlowHead, v: VersionNumber) -> Result<FlowSpec> {
        let key = head.keys.version_spec(v);
        let resp = match self
            .kv
            .range(RangeRequest::key(key.clone()).at_revision(head.revision))
            .await
        {
            // Compacted since the head was read: a version never changes once written, so the
            // latest revision holds the same bytes.
            Err(Error::FailedPrecondition(d)) if d.reason == super::kv::REVISION_UNAVAILABLE => {
                self.kv.range(RangeRequest::key(key)).await?
            }
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
    async fn latest_version(&self, head: &FlowHead, scan: bool) -> Result<Option<VersionNumber>> {
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

    /// Meta written without a uid (by an older writer, or missing altogether) gets one, and a
    /// creation time, on the next write: contract A.4 requires both.
    fn repair_meta(&self, meta: &mut FlowMeta, now: chrono::DateTime<chrono::Utc>) {
        if meta.uid.is_empty() {
            meta.uid = self.env.new_uid();
            meta.created_at.get_or_insert(now);
        }
    }

    /// The state to try again with after losing a race (attempt `attempt` failed). The first
    /// retries (see [`RetryPolicy`]) use the state the failed transaction's `else` branch
    /// returned. Later ones wait a jittered backoff first and then read the state again: anything
    /// held across the wait would be stale.
    async fn after_lost_race(&self, attempt: u32, fresh: FlowHead) -> Result<FlowHead> {
        let delay = self.retry.delay(attempt, self.env.random());
        if delay.is_zero() {
            return Ok(fresh);
        }
        self.env.sleep(delay).await;
        self.read_head(&fresh.name, &fresh.keys).await
    }

    /// CreateFlow (contract B.4).
    pub async fn create(&self, req: CreateFlowRequest) -> Result<Flow> {
        let (name, spec) = prepare_create(req.spec.unwrap_or_default())?;
        let keys = FlowKeys::new(&name);
        let now = self.env.now();

        if req.validate_only {
            let head = self.read_head(&name, &keys).await?;
            return match self.create_outcome(&head, &spec, false).await? {
                CreateOutcome::Existing(flow) => Ok(*flow),
                CreateOutcome::WriteAt(n) => {
                    // What would be stored; the uid is only assigned by a real create.
                    let meta = new_incarnation(head.meta.as_ref(), String::new(), &spec, n, now);
                    let head = FlowHead::empty(&name, &keys, head.revision);
                    head.flow(&meta, n, at_version(spec, &name, n))
                }
            };
        }

        let _writing = self.locks.lock(&name).await;
        // Fast path, one round trip: the name was never used.
        let v1 = VersionNumber::FIRST;
        let bytes = encode_spec(&at_version(spec.clone(), &name, v1))?;
        let meta = new_incarnation(None, self.env.new_uid(), &spec, v1, now);
        let resp = self
            .kv
            .txn(Txn {
                compare: vec![
                    Compare::absent(keys.meta()),
                    Compare::absent(keys.active()),
                    Compare::absent(keys.version_spec(v1)),
                ],
                success: write_version(&keys, v1, bytes, &meta, now),
                failure: vec![TxnOp::Range(FlowHead::range(&keys))],
            })
            .await?;
        if resp.succeeded {
            let head = FlowHead::empty(&name, &keys, resp.revision);
            return head.flow(&meta, v1, at_version(spec, &name, v1));
        }
        let mut head = FlowHead::parse(&name, &keys, resp.range(0)?)?;

        let mut scan = false;
        for attempt in 1..=self.retry.max_attempts {
            let n = match self.create_outcome(&head, &spec, scan).await? {
                CreateOutcome::Existing(flow) => return Ok(*flow),
                CreateOutcome::WriteAt(n) => n,
            };
            // Re-create a deleted flow (or one whose versions exist without meta) at `n`, with a
            // new uid; the old versions stay as they are.
            let bytes = encode_spec(&at_version(spec.clone(), &name, n))?;
            let meta = new_incarnation(head.meta.as_ref(), self.env.new_uid(), &spec, n, now);
            let mut compare = head.guard();
            compare.push(Compare::absent(keys.version_spec(n)));
            let resp = self
                .kv
                .txn(Txn {
                    compare,
                    success: write_version(&keys, n, bytes, &meta, now),
                    failure: vec![TxnOp::Range(FlowHead::range(&keys))],
                })
                .await?;
            if resp.succeeded {
                // The status key (if the controller left one) is untouched, as GetFlow shows.
                return head.flow(&meta, n, at_version(spec, &name, n));
            }
            let fresh = FlowHead::parse(&name, &keys, resp.range(0)?)?;
            if fresh.unchanged_since(&head) {
                // Only the version slot was taken: the recorded latest version is stale.
                if scan {
                    return Err(slot_taken(&name, n));
                }
                scan = true;
                head = fresh;
                continue;
            }
            head = self.after_lost_race(attempt, fresh).await?;
        }
        Err(contention(&name, self.retry.max_attempts))
    }

    /// What creating `spec` means given the flow's `head`: a live flow with an equal spec is
    /// returned as it is; a live flow with another spec is ALREADY_EXISTS; otherwise the next
    /// version number to write (1 for a new name, `latest_version + 1` after a delete).
    async fn create_outcome(
        &self,
        head: &FlowHead,
        spec: &FlowSpec,
        scan: bool,
    ) -> Result<CreateOutcome> {
        let name = &head.name;
        if head.is_live() {
            let active = head.live()?;
            let current = self.read_spec(head, active).await?;
            if same_spec(&current, &at_version(spec.clone(), name, active)) {
                return Ok(CreateOutcome::Existing(Box::new(head.flow(
                    &head.meta(),
                    active,
                    current,
                )?)));
            }
            return Err(Error::AlreadyExists(
                Detail::new(
                    "FLOW_ALREADY_EXISTS",
                    format!(
                        "flow \"{name}\" already exists with a different spec (active version {active}); use UpdateFlow (PUT /v1/flows/{name}) to change it"
                    ),
                )
                .with("flow", name)
                .with("active_version", active),
            ));
        }
        let n = self
            .latest_version(head, scan)
            .await?
            .map_or(VersionNumber::FIRST, VersionNumber::next);
        Ok(CreateOutcome::WriteAt(n))
    }

    /// UpdateFlow (contract B.4). `if_match` is the version of an HTTP `If-Match` header.
    pub async fn update(&self, req: UpdateFlowRequest, if_match: Option<u64>) -> Result<Flow> {
        let name = parse_flow_name(&req.name)?;
        let mut spec = req.spec.unwrap_or_default();
        let expected = match (spec.version, if_match.unwrap_or(0)) {
            (0, 0) => None,
            (v, 0) | (0, v) => Some(v),
            (a, b) if a == b => Some(a),
            (a, b) => {
                return Err(Error::invalid_field(
                    "CONFLICTING_PRECONDITIONS",
                    "version",
                    format!("spec.version {a} and If-Match {b} disagree; give one"),
                ));
            }
        };
        spec.version = 0;
        let spec = prepare_update(&name, spec)?;
        let keys = FlowKeys::new(&name);
        let now = self.env.now();
        let _writing = if req.validate_only {
            None
        } else {
            Some(self.locks.lock(&name).await)
        };
        let mut head = self.read_head(&name, &keys).await?;
        let mut scan = false;

        for attempt in 1..=self.retry.max_attempts {
            let active = head.live()?;
            if let Some(expected) = expected
                && expected != active.get()
            {
                return Err(Error::Aborted(
                    Detail::new(
                        "VERSION_MISMATCH",
                        format!(
                            "flow \"{name}\" is at version {active}, but the request expects version {expected}"
                        ),
                    )
                    .with("flow", &name)
                    .with("active_version", active)
                    .with("expected_version", expected),
                ));
            }
            let same = at_version(spec.clone(), &name, active);
            let same_bytes = encode_spec(&same)?;
            let n = self
                .latest_version(&head, scan)
                .await?
                .unwrap_or(active)
                .max(active)
                .next();
            let new_spec = at_version(spec.clone(), &name, n);
            let new_bytes = encode_spec(&new_spec)?;
            let mut meta = head.meta();
            meta.updated_at = Some(now);
            meta.latest_version = Some(n.get());
            meta.labels = spec.labels.clone();
            self.repair_meta(&mut meta, now);

            // The transaction below detects an unchanged spec by comparing bytes, which is exact
            // for versions this API wrote (its encoding is canonical). The active version may
            // have been written by the original API (map order, defaults not applied): when the
            // flow's meta does not record this API's versions, or after a rollback, compare the
            // decoded specs first, at the cost of one read.
            let foreign_possible =
                head.meta.as_ref().and_then(|m| m.latest_version) != Some(active.get());
            if req.validate_only || foreign_possible {
                let current = self.read_spec(&head, active).await?;
                if same_spec(&current, &same) {
                    return head.flow(&head.meta(), active, current);
                }
                if req.validate_only {
                    return head.flow(&meta, n, new_spec);
                }
            }

            let mut compare = head.guard();
            compare.push(Compare::absent(keys.version_spec(n)));
            compare.push(Compare::value_not(
                keys.version_spec(active),
                same_bytes.clone(),
            ));
            let resp = self
                .kv
                .txn(Txn {
                    compare,
                    success: write_version(&keys, n, new_bytes, &meta, now),
                    failure: vec![
                        TxnOp::Range(FlowHead::range(&keys)),
                        TxnOp::Range(RangeRequest::key(keys.version_spec(active))),
                    ],
                })
                .await?;
            if resp.succeeded {
                return head.flow(&meta, n, new_spec);
            }
            let fresh = FlowHead::parse(&name, &keys, resp.range(0)?)?;
            if fresh.unchanged_since(&head) {
                match resp.range(1)?.kvs.first() {
                    // The active spec equals the request: nothing to write (idempotent update).
                    Some(kv) if kv.value == same_bytes => {
                        return fresh.flow(&fresh.meta(), active, same);
                    }
                    // Version slot n is taken although meta says otherwise: rescan.
                    Some(_) if !scan => {
                        scan = true;
                        head = fresh;
                        continue;
                    }
                    Some(_) => return Err(slot_taken(&name, n)),
                    None => {
                        return Err(Error::internal(format!(
                            "flow \"{name}\" points at version {active}, which has no spec"
                        )));
                    }
                }
            }
            head = self.after_lost_race(attempt, fresh).await?;
        }
        Err(contention(&name, self.retry.max_attempts))
    }

    /// RollbackFlow (contract B.4): moves only `active` (and meta's `updated_at`).
    pub async fn rollback(&self, name: &str, version: u64) -> Result<Flow> {
        let name = parse_flow_name(name)?;
        let target = VersionNumber::new(version).ok_or_else(|| {
            Error::invalid_field("INVALID_VERSION", "version", "must be at least 1")
        })?;
        let keys = FlowKeys::new(&name);
        let _writing = self.locks.lock(&name).await;
        let resp = self
            .kv
            .txn(Txn::read([
                FlowHead::range(&keys),
                RangeRequest::key(keys.version_spec(target)),
            ]))
            .await?;
        let mut head = FlowHead::parse(&name, &keys, resp.range(0)?)?;
        head.live()?;
        let spec = match resp.range(1)?.kvs.first() {
            Some(kv) => decode_spec(&name, target, &kv.value)?,
            None => return Err(version_not_found(&name, target)),
        };
        let now = self.env.now();

        for attempt in 1..=self.retry.max_attempts {
            let active = head.live()?;
            if active == target {
                return head.flow(&head.meta(), target, spec);
            }
            let mut meta = head.meta();
            meta.updated_at = Some(now);
            self.repair_meta(&mut meta, now);
            let resp = self
                .kv
                .txn(Txn {
                    compare: head.guard(),
                    success: vec![
                        TxnOp::put(keys.active(), target.to_string()),
                        TxnOp::put(keys.meta(), meta.encode()),
                    ],
                    failure: vec![TxnOp::Range(FlowHead::range(&keys))],
                })
                .await?;
            if resp.succeeded {
                return head.flow(&meta, target, spec);
            }
            let fresh = FlowHead::parse(&name, &keys, resp.range(0)?)?;
            head = self.after_lost_race(attempt, fresh).await?;
        }
        Err(contention(&name, self.retry.max_attempts))
    }

    /// DeleteFlow (contract B.4): deletes `active`, marks meta deleted; versions stay.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let _writing = self.locks.lock(&name).await;
        let mut head = self.read_head(&name, &keys).await?;
        let now = self.env.now();
        for attempt in 1..=self.retry.max_attempts {
            head.live()?;
            let mut meta = head.meta();
            meta.deleted = true;
            meta.deleted_at = Some(now);
            self.repair_meta(&mut meta, now);
            let resp = self
                .kv
                .txn(Txn {
                    compare: head.guard(),
                    success: vec![
                        TxnOp::delete(keys.active()),
                        TxnOp::put(keys.meta(), meta.encode()),
                    ],
                    failure: vec![TxnOp::Range(FlowHead::range(&keys))],
                })
                .await?;
            if resp.succeeded {
                return Ok(());
            }
            let fresh = FlowHead::parse(&name, &keys, resp.range(0)?)?;
            head = self.after_lost_race(attempt, fresh).await?;
        }
        Err(contention(&name, self.retry.max_attempts))
    }

    /// GetFlow: the active version, its spec, status and meta, all at one store revision.
    pub async fn get(&self, name: &str) -> Result<Flow> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let head = self.read_head(&name, &keys).await?;
        let active = head.live()?;
        let spec = self.read_spec(&head, active).await?;
        head.flow(&head.meta(), active, spec)
    }

    /// GetFlowStatus: the controller's status, empty if it wrote none yet.
    pub async fn status(&self, name: &str) -> Result<FlowStatus> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let head = self.read_head(&name, &keys).await?;
        head.live()?;
        head.status()
    }

    /// GetFlowVersion: the flow as it was at `version`, without status; and the active version
    /// (for the REST ETag).
    pub async fn get_version(&self, name: &str, version: u64) -> Result<(Flow, VersionNumber)> {
        let name = parse_flow_name(name)?;
        let v = VersionNumber::new(version).ok_or_else(|| {
            Error::invalid_field("INVALID_VERSION", "version", "must be at least 1")
        })?;
        let keys = FlowKeys::new(&name);
        let resp = self
            .kv
            .txn(Txn::read([
                FlowHead::range(&keys),
                RangeRequest::key(keys.version_spec(v)),
                RangeRequest::key(keys.version_meta(v)),
            ]))
            .await?;
        let head = FlowHead::parse(&name, &keys, resp.range(0)?)?;
        let active = head.live()?;
        let spec = match resp.range(1)?.kvs.first() {
            Some(kv) => decode_spec(&name, v, &kv.value)?,
            None => return Err(version_not_found(&name, v)),
        };
        let created = match resp.range(2)?.kvs.first() {
            Some(kv) => VersionMeta::decode(name.as_str(), &kv.value)?.created_at,
            None => None,
        };
        let mut flow = head.flow_without_status(&head.meta(), v, spec);
        flow.update_time = created.map(timestamp);
        Ok((flow, active))
    }

    /// Reads single keys at `revision`, in transactions of at most [`MAX_TXN_OPS`] reads run
    /// concurrently; one answer per key, in order.
    async fn read_keys(
        &self,
        keys: impl Iterator<Item = Vec<u8>>,
        revision: i64,
        keys_only: bool,
    ) -> Result<Vec<Option<super::kv::KeyValue>>> {
        let keys: Vec<Vec<u8>> = keys.collect();
        let reads = keys.chunks(MAX_TXN_OPS).map(|chunk| async move {
            let resp = self
                .kv
                .txn(Txn::read(chunk.iter().map(|k| {
                    let r = RangeRequest::key(k.clone()).at_revision(revision);
                    if keys_only { r.keys_only() } else { r }
                })))
                .await?;
            (0..chunk.len())
                .map(|i| Ok(resp.range(i)?.kvs.first().cloned()))
                .collect::<Result<Vec<_>>>()
        });
        Ok(try_join_all(reads).await?.into_iter().flatten().collect())
    }

    /// Reads the heads of `names` at `revision`, in transactions of at most [`MAX_TXN_OPS`]
    /// reads, run concurrently.
    async fn read_heads(&self, names: &[FlowName], revision: i64) -> Result<Vec<FlowHead>> {
        let chunks = names.chunks(MAX_TXN_OPS).map(|chunk| async move {
            let keys: Vec<FlowKeys> = chunk.iter().map(FlowKeys::new).collect();
            let resp = self
                .kv
                .txn(Txn::read(
                    keys.iter()
                        .map(|k| FlowHead::range(k).at_revision(revision)),
                ))
                .await?;
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

    /// ListFlows: live flows in name order, a page at a time, every page read at the first page's
    /// store revision.
    ///
    /// Flow names are discovered with keys-only range reads that skip the rest of a flow's
    /// subtree as soon as its name is known, then the page's flows are read with one
    /// `[active, status]` range each (batched into transactions). Per page, that is a bounded
    /// number of reads whose size does not depend on how many versions the flows have.
    ///
    /// Name order is not etcd key order: `a-b/...` sorts before `a/...` because `-` < `/`. A name
    /// sorts after the names it extends with `-`, so for every name found, those shorter names
    /// (`a` for `a-b`) are looked up too; the page is then the smallest live names, which is
    /// exactly the name-ordered page (see `list_flows_in_name_order_across_pages` in
    /// tests/it/conformance.rs).
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<ListFlowsResponse> {
        let size = pagination::page_size(page_size)?;
        let token = PageToken::decode(page_token, "flows")?;
        let after = match &token {
            Some(t) => Some(
                FlowName::parse(&t.after).map_err(|_| pagination::invalid_token("bad position"))?,
            ),
            None => None,
        };
        let revision = token.as_ref().map_or(0, |t| t.revision);
        self.list_page(size, after, revision)
            .await
            .map_err(|e| pagination::expired_if_compacted(e, revision))
    }

    async fn list_page(
        &self,
        size: usize,
        after: Option<FlowName>,
        mut revision: i64,
    ) -> Result<ListFlowsResponse> {
        let want = size + 1; // one more than the page tells whether there is a next page
        let (start, end) = keys::all_flows();
        // Names after `after` by name start at `<after>-` by key (see the method docs above).
        let mut cursor = match &after {
            Some(a) => format!("{}{a}-", keys::FLOWS_PREFIX).into_bytes(),
            None => start,
        };
        let is_after = |n: &FlowName| after.as_ref().is_none_or(|a| n > a);

        // Names the scan found with an `active` key, and the shorter names they extend.
        let mut scanned: BTreeSet<FlowName> = BTreeSet::new();
        let mut probes: BTreeSet<FlowName> = BTreeSet::new();
        // Heads read so far: `Some` for a live flow, `None` for one that is not.
        let mut heads: BTreeMap<FlowName, Option<FlowHead>> = BTreeMap::new();
        // Scanned names that are live or not read yet: an upper bound of what the page can use.
        let possible = |scanned: &BTreeSet<FlowName>,
                        heads: &BTreeMap<FlowName, Option<FlowHead>>| {
            scanned
                .iter()
                .filter(|n| heads.get(*n).is_none_or(Option::is_some))
                .count()
        };
        let mut exhausted = false;
        let mut limit = DiscoveryRead::first_limit(want);

        loop {
            while !exhausted && possible(&scanned, &heads) < want {
                let resp = self
                    .kv
                    .range(
                        RangeRequest::range(cursor.clone(), end.clone())
                            .keys_only()
                            .limit(limit)
                            .at_revision(revision),
                    )
                    .await?;
                if revision == 0 {
                    revision = resp.revision;
                }
                let read =
                    DiscoveryRead::parse(resp.kvs.iter().map(|kv| kv.key.as_slice()), resp.more);
                for name in read.active.iter().filter(|n| is_after(n)) {
                    probes.extend(name.dash_prefixes().filter(|p| is_after(p)));
                    scanned.insert(name.clone());
                }
                match &read.next {
                    // Skip the rest of the last flow (its versions), and size the next read
                    // from the flows this one saw whole.
                    Some(next) => {
                        cursor = next.clone();
                        limit =
                            read.next_limit(want.saturating_sub(possible(&scanned, &heads)), limit);
                    }
                    None => exhausted = true,
                }
            }

            let unread: Vec<FlowName> = scanned
                .iter()
                .chain(&probes)
                .filter(|n| !heads.contains_key(*n))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for head in self.read_heads(&unread, revision).await? {
                let live = head.is_live().then_some(head.clone());
                heads.insert(head.name, live);
            }
            if exhausted || possible(&scanned, &heads) >= want {
                break;
            }
        }

        let live: Vec<&FlowHead> = heads.values().flatten().collect();
        let mut flows = Vec::with_capacity(size.min(live.len()));
        for head in live.iter().take(size) {
            let status = head.status().unwrap_or_else(|e| {
                tracing::warn!(flow = %head.name, error = %e, "listing a flow with an unreadable status");
                FlowStatus::default()
            });
            flows.push(FlowSummary {
                name: head.name.as_str().to_owned(),
                status: Some(status),
                version: head.active.map_or(0, VersionNumber::get),
            });
        }
        let next_page_token = match (live.len() > size, flows.last()) {
            (true, Some(last)) => PageToken {
                listing: "flows".into(),
                revision,
                after: last.name.clone(),
            }
            .encode(),
            _ => String::new(),
        };
        Ok(ListFlowsResponse {
            flows,
            next_page_token,
        })
    }

    /// ListFlowVersions: every version of a live flow, ascending, a page at a time. Versions are
    /// numbered 1..=latest, so a page is read by number (one small read per version, batched),
    /// never by scanning the flow's keys.
    pub async fn list_versions(
        &self,
        name: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListFlowVersionsResponse> {
        let name = parse_flow_name(name)?;
        let size = pagination::page_size(page_size)?;
        let listing = format!("versions/{name}");
        let token = PageToken::decode(page_token, &listing)?;
        let after = match &token {
            Some(t) => t
                .after
                .parse::<u64>()
                .map_err(|_| pagination::invalid_token("bad position"))?,
            None => 0,
        };
        let revision = token.as_ref().map_or(0, |t| t.revision);
        self.list_versions_page(&name, size, after, revision)
            .await
            .map_err(|e| pagination::expired_if_compacted(e, revision))
    }

    async fn list_versions_page(
        &self,
        name: &FlowName,
        size: usize,
        after: u64,
        revision: i64,
    ) -> Result<ListFlowVersionsResponse> {
        let keys = FlowKeys::new(name);
        let resp = self
            .kv
            .range(FlowHead::range(&keys).at_revision(revision))
            .await?;
        let head = FlowHead::parse(name, &keys, &resp)?;
        let active = head.live()?;
        let latest = self
            .latest_version(&head, false)
            .await?
            .map_or(0, VersionNumber::get);
        // A forged token can say anything: `after` beyond every version is just an empty page.
        let first = after.saturating_add(1);
        let last = latest.min(after.saturating_add(size as u64));
        let numbers: Vec<VersionNumber> = (first..=last).filter_map(VersionNumber::new).collect();

        let revision = head.revision;
        // Every version this API wrote has its meta: one small read per version. Only versions
        // without one (written by the original API, or a gap) need a second look, keys-only, at
        // their spec.
        let metas = self
            .read_keys(
                numbers.iter().map(|v| keys.version_meta(*v)),
                revision,
                false,
            )
            .await?;
        let unmetered: Vec<VersionNumber> = numbers
            .iter()
            .zip(&metas)
            .filter(|(_, m)| m.is_none())
            .map(|(v, _)| *v)
            .collect();
        let specs = self
            .read_keys(
                unmetered.iter().map(|v| keys.version_spec(*v)),
                revision,
                true,
            )
            .await?;
        // `specs` answers the versions without meta, in the same order.
        let mut specs = specs.into_iter();
        let mut versions = Vec::with_capacity(numbers.len());
        for (v, meta) in numbers.iter().zip(metas) {
            let created = match meta {
                Some(kv) => VersionMeta::decode(name.as_str(), &kv.value)?.created_at,
                None if specs.next().flatten().is_none() => {
                    continue; // no such version: a gap left by data this API did not write
                }
                None => None,
            };
            versions.push(FlowVersion {
                version: v.get(),
                create_time: created.map(timestamp),
                active: *v == active,
            });
        }
        let next_page_token = if last < latest {
            PageToken {
                listing: format!("versions/{name}"),
                revision: head.revision,
                after: last.to_string(),
            }
            .encode()
        } else {
            String::new()
        };
        Ok(ListFlowVersionsResponse {
            versions,
            next_page_token,
        })
    }
}

/// What [`FlowRegistry::create_outcome`] decided.
enum CreateOutcome {
    /// The live flow already has this spec: return it, write nothing.
    Existing(Box<Flow>),
    /// Write the spec as this version.
    WriteAt(VersionNumber),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(flows: &[(&str, usize)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, versions) in flows {
            let base = format!("{}{name}/", keys::FLOWS_PREFIX);
            out.push(format!("{base}active").into_bytes());
            out.push(format!("{base}meta").into_bytes());
            for v in 1..=*versions {
                out.push(format!("{base}versions/{v}/meta").into_bytes());
                out.push(format!("{base}versions/{v}/spec").into_bytes());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_discovery_read_skips_the_flow_it_cut_off_and_sizes_the_next_read() {
        // Two whole flows of 3 versions (8 keys each), then the first keys of a third.
        let mut keys = keys_of(&[("a", 3), ("b", 3)]);
        keys.extend(keys_of(&[("c", 3)]).into_iter().take(3));
        let read = DiscoveryRead::parse(keys.iter().map(Vec::as_slice), true);
        let names: Vec<&str> = read.active.iter().map(FlowName::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            read.next.as_deref(),
            Some(format!("{}c0", keys::FLOWS_PREFIX).as_bytes())
        );
        // 8 keys a flow (+1 to round up): 10 more flows are 90 keys, within the bounds.
        assert_eq!(read.next_limit(10, 500), 90);
        assert_eq!(read.next_limit(0, 500), 16);
        assert_eq!(read.next_limit(1_000_000, 500), MAX_SCAN_KEYS);
    }

    #[test]
    fn a_discovery_read_that_saw_no_whole_flow_keeps_its_limit() {
        let keys = keys_of(&[("only", 50)]);
        let read = DiscoveryRead::parse(keys.iter().take(20).map(Vec::as_slice), true);
        assert_eq!(read.next_limit(10, 640), 640);
        let last = DiscoveryRead::parse(keys.iter().map(Vec::as_slice), false);
        assert!(last.next.is_none());
        assert_eq!(DiscoveryRead::first_limit(101), 606);
        assert_eq!(DiscoveryRead::first_limit(1), 16);
    }
}
