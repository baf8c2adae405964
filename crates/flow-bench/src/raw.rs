//! The raw-etcd code of the benchmark, written directly with `etcd-client`:
//!
//! - baseline (b), **raw-min**: what an operation would cost at the very least: one
//!   compare-and-put transaction for a write, one range read for a read. The gap between
//!   core-direct (baseline a, the core's own requests: `core_direct.rs`) and this row is what the
//!   key schema and versioning design cost. By definition these are not the core's requests.
//! - the name-index prototype of the list study (a proposal, not the API): its keys and its page.
//!
//! Nothing here re-implements a request of the core: flows are written and read through the
//! core itself (`core_direct.rs`).

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};
use futures_util::future::try_join_all;

use flowpipe_core::FlowName;
use flowpipe_core::keys::{self, FlowKeys};
use flowpipe_core::kv::MAX_TXN_OPS;

pub type BenchResult<T> = Result<T, String>;

fn err(e: etcd_client::Error) -> String {
    format!("etcd: {e}")
}

fn put(key: Vec<u8>, value: Vec<u8>) -> TxnOp {
    TxnOp::put(key, value, None)
}

/// The read of a flow's head (`[active, status\0)`, everything but its versions) in namespace
/// `ns` at `revision`, with the core's key builders.
fn head_op(ns: &[u8], name: &FlowName, revision: i64) -> TxnOp {
    let (start, end) = FlowKeys::new(name).head_range();
    let mut o = GetOptions::new().with_range([ns, &end].concat());
    if revision > 0 {
        o = o.with_revision(revision);
    }
    TxnOp::get([ns, &start].concat(), Some(o))
}

/// What one ListFlows page cost at etcd.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListCost {
    pub round_trips: u64,
    /// Keys returned by the keys-only discovery reads.
    pub discovery_keys: u64,
    /// Flows on the page.
    pub flows: usize,
}

/// Where the name-index prototype keeps one key per live flow: `<ns>/flowpipe/index/flows/<name>`.
/// Not part of the contract: it is what BENCHMARKS.md proposes for ListFlows, measured here with
/// raw requests.
pub const INDEX_PREFIX: &str = "/flowpipe/index/flows/";

/// A ListFlows page of `size` as it would be with a name index (a key per live flow, outside the
/// flows' subtrees, written and deleted in the create and delete transactions): one keys-only
/// range read of the index, then the page's heads in one read-only transaction per 100 flows.
/// Index keys sort in name order (no `/` after the name), so no dash-prefix lookups either.
pub async fn list_page_indexed(kv: &KvClient, ns: &[u8], size: usize) -> BenchResult<ListCost> {
    let prefix = [ns, INDEX_PREFIX.as_bytes()].concat();
    let o = GetOptions::new()
        .with_range(keys::prefix_end(&prefix))
        .with_keys_only()
        .with_limit(size as i64);
    let resp = kv.clone().get(prefix.clone(), Some(o)).await.map_err(err)?;
    let revision = resp
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let names: Vec<FlowName> = resp
        .kvs()
        .iter()
        .filter_map(|kv| std::str::from_utf8(&kv.key()[prefix.len()..]).ok())
        .filter_map(|n| FlowName::parse(n).ok())
        .collect();
    let reads = names.chunks(MAX_TXN_OPS).map(|chunk| {
        let mut kv = kv.clone();
        async move {
            let ops: Vec<TxnOp> = chunk.iter().map(|n| head_op(ns, n, revision)).collect();
            kv.txn(Txn::new().and_then(ops)).await.map_err(err)
        }
    });
    let heads = try_join_all(reads).await?;
    Ok(ListCost {
        round_trips: 1 + heads.len() as u64,
        discovery_keys: resp.kvs().len() as u64,
        flows: names.len(),
    })
}

/// Writes the name-index prototype's keys for `names` in namespace `ns`.
pub async fn seed_index(kv: &KvClient, ns: &[u8], names: &[FlowName]) -> BenchResult<()> {
    for chunk in names.chunks(MAX_TXN_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|n| {
                put(
                    [ns, INDEX_PREFIX.as_bytes(), n.as_str().as_bytes()].concat(),
                    Vec::new(),
                )
            })
            .collect();
        kv.clone()
            .txn(Txn::new().and_then(ops))
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// The minimal write: one transaction, compare the key's mod revision and put. Returns the new
/// mod revision, for the next compare.
pub async fn min_write(
    kv: &mut KvClient,
    key: Vec<u8>,
    expect_mod: i64,
    value: Vec<u8>,
) -> BenchResult<i64> {
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            expect_mod,
        )])
        .and_then([put(key, value)]);
    let resp = kv.txn(txn).await.map_err(err)?;
    if !resp.succeeded() {
        return Err("minimal write: compare failed".into());
    }
    Ok(resp
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision))
}

/// The minimal read: one range read (`limit` keys from `key`, or just `key` when `end` is None).
pub async fn min_read(
    kv: &mut KvClient,
    key: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: i64,
) -> BenchResult<()> {
    let mut o = GetOptions::new();
    if let Some(end) = end {
        o = o.with_range(end).with_limit(limit);
    }
    let resp = kv.get(key, Some(o)).await.map_err(err)?;
    if resp.kvs().is_empty() {
        return Err("minimal read: nothing there".into());
    }
    Ok(())
}
