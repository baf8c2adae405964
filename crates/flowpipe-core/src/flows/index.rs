//! The backfill of the name index (contract B.6).
//!
//! This API keeps the index itself: CreateFlow puts a flow's index key and DeleteFlow deletes it,
//! in the same transactions as `active`. Data written by the original API has no index, so until
//! the `flows-ready` marker exists ListFlows discovers names the slow way, and the backfill
//! builds the index: it finds every live flow at one store revision, then writes each missing
//! index key only while that flow's `active` key still has the create revision it saw (a flow
//! deleted meanwhile is left out; one created meanwhile by this API has its key already), in
//! batches within etcd's transaction limit, through the one CAS loop, and finally puts the
//! marker. Index keys that name a flow that is not live (deleted by a writer that does not know
//! the index) are removed the same way, while that flow's head is as seen.
//!
//! Every step is idempotent, so any number of replicas may run it at once; it runs once
//! automatically (`flow-api` at start-up, a Lambda execution environment on its first ListFlows
//! without the marker) and by hand (`flow-api index rebuild`).

use std::collections::BTreeMap;

use super::{FlowHead, FlowRegistry};
use crate::cas::{Attempt, Conflict, Write, guaranteed_write};
use crate::environment::Environment;
use crate::error::{Detail, Error, Result};
use crate::keys::{self, FlowKeys};
use crate::kv::{
    Compare, CompareOp, CompareTarget, Kv, MAX_TXN_OPS, RangeRequest, Txn, TxnOp, TxnResponse,
};
use crate::names::FlowName;
use crate::pagination::Snapshot;

/// Flows per discovery page of the backfill.
const DISCOVERY_PAGE: usize = 1000;
/// Index keys per read of the existing index.
const INDEX_READ: i64 = 10_000;
/// Index keys written or removed per transaction: each takes up to two compares and one read
/// back, within etcd's default `--max-txn-ops` of 128.
const BATCH: usize = MAX_TXN_OPS / 2;

/// What a backfill found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexReport {
    /// The `flows-ready` marker was there already: nothing was read or written
    /// ([`FlowRegistry::ensure_index`] only).
    pub already_ready: bool,
    /// Live flows found.
    pub live: usize,
    /// Index keys written: live flows whose key was missing (or held another uid).
    pub indexed: usize,
    /// Index keys removed: they named flows that are not live.
    pub removed: usize,
    /// Flows that changed while the backfill ran, left to the writer that changed them.
    pub skipped: usize,
}

/// One index key to write or remove, with the state of the flow that justifies it.
#[derive(Debug, Clone)]
struct Entry {
    keys: FlowKeys,
    name: FlowName,
    change: Change,
}

#[derive(Debug, Clone)]
enum Change {
    /// Put the key (value: the uid) while `active` has this create revision.
    Put { active_create: i64, uid: String },
    /// Remove the key while the flow's `meta` and `active` are as seen (not live).
    Remove { meta_mod: i64, active_mod: i64 },
}

impl Entry {
    fn compares(&self) -> Vec<Compare> {
        match &self.change {
            Change::Put { active_create, .. } => vec![Compare {
                key: self.keys.active(),
                op: CompareOp::Equal,
                target: CompareTarget::CreateRevision(*active_create),
            }],
            Change::Remove {
                meta_mod,
                active_mod,
            } => vec![
                Compare::mod_revision(self.keys.meta(), *meta_mod),
                Compare::mod_revision(self.keys.active(), *active_mod),
            ],
        }
    }

    fn op(&self) -> TxnOp {
        match &self.change {
            Change::Put { uid, .. } => TxnOp::put(self.keys.index(), uid.clone()),
            Change::Remove { .. } => TxnOp::delete(self.keys.index()),
        }
    }

    /// Whether `head` (read again) is still the state this entry was decided from.
    fn still_holds(&self, head: &FlowHead) -> bool {
        match &self.change {
            Change::Put { active_create, .. } => head.active_create == *active_create,
            Change::Remove {
                meta_mod,
                active_mod,
            } => head.meta_mod == *meta_mod && head.active_mod == *active_mod,
        }
    }
}

/// One batch of index changes, as a [`Write`]: all of them in one transaction while every flow
/// is as seen; when one changed, the `else` branch has read every head, and the batch is tried
/// again without the flows that changed.
struct IndexBatch;

/// What is left of a batch, and how many of its entries were dropped.
struct BatchState {
    entries: Vec<Entry>,
    dropped: usize,
}

impl Write for IndexBatch {
    const NAME: &'static str = "index_flows";
    type State = BatchState;
    type Output = BatchState;

    async fn decide(&self, s: &mut BatchState) -> Result<Attempt<BatchState>> {
        if s.entries.is_empty() {
            return Ok(Attempt::Done(BatchState {
                entries: Vec::new(),
                dropped: s.dropped,
            }));
        }
        let txn = Txn {
            compare: s.entries.iter().flat_map(Entry::compares).collect(),
            success: s.entries.iter().map(Entry::op).collect(),
            failure: s
                .entries
                .iter()
                .map(|e| TxnOp::Range(FlowHead::range(&e.keys)))
                .collect(),
        };
        let done = BatchState {
            entries: s.entries.clone(),
            dropped: s.dropped,
        };
        Ok(Attempt::Commit(txn, done))
    }

    async fn conflict(
        &self,
        s: BatchState,
        resp: TxnResponse,
    ) -> Result<Conflict<BatchState, BatchState>> {
        let mut kept = Vec::with_capacity(s.entries.len());
        let mut dropped = s.dropped;
        for (i, entry) in s.entries.into_iter().enumerate() {
            let head = FlowHead::parse(&entry.name, &entry.keys, resp.range(i)?)?;
            if entry.still_holds(&head) {
                kept.push(entry);
            } else {
                dropped += 1;
            }
        }
        Ok(Conflict::Retry(BatchState {
            entries: kept,
            dropped,
        }))
    }

    async fn refresh(&self, s: BatchState) -> Result<BatchState> {
        Ok(s)
    }

    fn gave_up(&self, attempts: u32) -> Error {
        Error::Aborted(Detail::new(
            "CONCURRENT_MODIFICATION",
            format!(
                "the name index kept changing under {attempts} attempts to build it; run the backfill again"
            ),
        ))
    }
}

/// Puts the `flows-ready` marker (no compare: every backfill that gets here has indexed every
/// flow it saw, and putting "1" twice is harmless).
struct MarkReady;

impl Write for MarkReady {
    const NAME: &'static str = "mark_index_ready";
    type State = ();
    type Output = ();

    async fn decide(&self, (): &mut ()) -> Result<Attempt<()>> {
        Ok(Attempt::Commit(
            Txn {
                success: vec![TxnOp::put(
                    keys::FLOW_INDEX_READY,
                    keys::FLOW_INDEX_READY_VALUE,
                )],
                ..Txn::default()
            },
            (),
        ))
    }

    async fn conflict(&self, (): (), _: TxnResponse) -> Result<Conflict<(), ()>> {
        Ok(Conflict::Done(()))
    }

    async fn refresh(&self, (): ()) -> Result<()> {
        Ok(())
    }

    fn gave_up(&self, _: u32) -> Error {
        Error::internal("a transaction without compares failed")
    }
}

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    /// Whether the name index is ready (the `flows-ready` marker exists).
    pub async fn index_ready(&self) -> Result<bool> {
        let resp = self
            .kv
            .range(RangeRequest::key(keys::FLOW_INDEX_READY))
            .await?;
        Ok(!resp.kvs.is_empty())
    }

    /// Builds the name index unless it is ready: what runs automatically.
    pub async fn ensure_index(&self) -> Result<IndexReport> {
        if self.index_ready().await? {
            return Ok(IndexReport {
                already_ready: true,
                ..IndexReport::default()
            });
        }
        self.rebuild_index().await
    }

    /// Builds the name index whatever the marker says (`flow-api index rebuild`, after the
    /// original API wrote flows the index does not know): index keys for every live flow, none
    /// for any other, then the marker.
    pub async fn rebuild_index(&self) -> Result<IndexReport> {
        let mut snapshot = Snapshot::of(None);
        let mut live: BTreeMap<FlowName, FlowHead> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.discover(DISCOVERY_PAGE, after, &mut snapshot).await?;
            live.extend(page.heads.into_iter().map(|h| (h.name.clone(), h)));
            match page.resume_after {
                Some(name) => after = Some(name),
                None => break,
            }
        }
        let indexed = self.index_keys(snapshot).await?;

        let mut entries = Vec::new();
        for (name, head) in &live {
            let uid = head
                .meta
                .as_ref()
                .map(|m| m.uid.clone())
                .unwrap_or_default();
            if indexed.get(name) != Some(&uid) {
                entries.push(Entry {
                    keys: head.keys.clone(),
                    name: name.clone(),
                    change: Change::Put {
                        active_create: head.active_create,
                        uid,
                    },
                });
            }
        }
        let stale: Vec<FlowName> = indexed
            .keys()
            .filter(|n| !live.contains_key(*n))
            .cloned()
            .collect();
        for head in self.read_heads(&stale, snapshot).await? {
            if !head.is_live() {
                entries.push(Entry {
                    keys: head.keys.clone(),
                    name: head.name.clone(),
                    change: Change::Remove {
                        meta_mod: head.meta_mod,
                        active_mod: head.active_mod,
                    },
                });
            }
        }

        let mut report = IndexReport {
            live: live.len(),
            ..IndexReport::default()
        };
        for batch in entries.chunks(BATCH) {
            let state = BatchState {
                entries: batch.to_vec(),
                dropped: 0,
            };
            let done =
                guaranteed_write(&self.kv, &self.env, &self.retry, &IndexBatch, state).await?;
            report.skipped += done.dropped;
            for entry in done.entries {
                match entry.change {
                    Change::Put { .. } => report.indexed += 1,
                    Change::Remove { .. } => report.removed += 1,
                }
            }
        }
        guaranteed_write(&self.kv, &self.env, &self.retry, &MarkReady, ()).await?;
        Ok(report)
    }

    /// Every index key at `snapshot`: the flow it names and the uid it holds.
    async fn index_keys(&self, snapshot: Snapshot) -> Result<BTreeMap<FlowName, String>> {
        let mut out = BTreeMap::new();
        let (mut start, end) = keys::flow_index_after(None);
        loop {
            let resp = self
                .kv
                .range(
                    RangeRequest::range(start.clone(), end.clone())
                        .limit(INDEX_READ)
                        .at_revision(snapshot.revision()),
                )
                .await
                .map_err(|e| snapshot.error(e))?;
            for kv in &resp.kvs {
                if let Some(name) = keys::parse_flow_index_key(&kv.key) {
                    out.insert(name, String::from_utf8_lossy(&kv.value).into_owned());
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }
}
