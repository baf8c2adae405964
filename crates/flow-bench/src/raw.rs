//! The raw-etcd code of the benchmark, written directly with `etcd-client`:
//!
//! - baseline (b), **raw-min**: what an operation would cost at the very least: one
//!   compare-and-put transaction for a write, one range read for a read. The gap between
//!   core-direct (baseline a, the core's own requests: `core_direct.rs`) and this row is what the
//!   key schema and versioning design cost. By definition these are not the core's requests.
//!
//! Nothing here re-implements a request of the core: flows are written and read through the
//! core itself (`core_direct.rs`). (The list study's name-index prototype lived here until the
//! API had the real index, contract B.6; the study now measures the API's.)

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};

pub type BenchResult<T> = Result<T, String>;

fn err(e: etcd_client::Error) -> String {
    format!("etcd: {e}")
}

fn put(key: Vec<u8>, value: Vec<u8>) -> TxnOp {
    TxnOp::put(key, value, None)
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
