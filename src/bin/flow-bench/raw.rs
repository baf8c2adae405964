//! The two raw-etcd baselines, written directly with `etcd-client`:
//!
//! - **same transactions**: exactly the reads and transactions `src/core/flows.rs` issues for an
//!   operation on its common path (same keys, compares, puts and failure branches, values of the
//!   same size), without HTTP/gRPC, JSON, validation or decoding. The gap between a REST/gRPC row
//!   and this row is the API's own overhead.
//! - **minimal**: what the operation would cost at the very least: one compare-and-put
//!   transaction for a write, one range read for a read. The gap between this row and "same" is
//!   what the key schema and versioning design cost.
//!
//! Also the seeding of flows with raw writes laid out exactly as the API lays them out (list
//! benchmarks need thousands of flows with many versions; writing them through the API is slow).

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{Compare, CompareOp, GetOptions, GetResponse, KvClient, Txn, TxnOp};
use etcd_client::{TxnOpResponse, TxnResponse};
use futures_util::future::try_join_all;

use flowpipe_api::core::flows::DiscoveryRead;
use flowpipe_api::core::keys::{self, FlowKeys};
use flowpipe_api::core::kv::MAX_TXN_OPS;
use flowpipe_api::core::{FlowName, VersionNumber};

use crate::workload::{self, Stored, Variant};

pub type BenchResult<T> = Result<T, String>;

fn err(e: etcd_client::Error) -> String {
    format!("etcd: {e}")
}

fn v(n: u64) -> VersionNumber {
    VersionNumber::new(n).expect("versions start at 1")
}

/// One flow's keys, with a key-namespace prefix in front (empty for the API's own keyspace).
#[derive(Debug, Clone)]
pub struct RawKeys {
    ns: Vec<u8>,
    keys: FlowKeys,
}

impl RawKeys {
    pub fn new(ns: &[u8], name: &FlowName) -> Self {
        RawKeys {
            ns: ns.to_vec(),
            keys: FlowKeys::new(name),
        }
    }

    fn k(&self, key: Vec<u8>) -> Vec<u8> {
        [self.ns.as_slice(), &key].concat()
    }

    pub fn active(&self) -> Vec<u8> {
        self.k(self.keys.active())
    }

    pub fn meta(&self) -> Vec<u8> {
        self.k(self.keys.meta())
    }

    pub fn status(&self) -> Vec<u8> {
        self.k(self.keys.status())
    }

    pub fn spec(&self, n: u64) -> Vec<u8> {
        self.k(self.keys.version_spec(v(n)))
    }

    pub fn vmeta(&self, n: u64) -> Vec<u8> {
        self.k(self.keys.version_meta(v(n)))
    }

    /// The head read: `[active, status\0)`, everything but the versions.
    fn head(&self, revision: i64) -> (Vec<u8>, GetOptions) {
        let (start, end) = self.keys.head_range();
        let mut o = GetOptions::new().with_range(self.k(end));
        if revision > 0 {
            o = o.with_revision(revision);
        }
        (self.k(start), o)
    }

    fn head_op(&self, revision: i64) -> TxnOp {
        let (k, o) = self.head(revision);
        TxnOp::get(k, Some(o))
    }
}

/// What the API's head parse extracts, without decoding anything but the active number.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    active: u64,
    active_mod: i64,
    meta_mod: i64,
    revision: i64,
}

fn parse_head(keys: &RawKeys, resp: &GetResponse) -> BenchResult<Head> {
    let (active, meta) = (keys.active(), keys.meta());
    let mut h = Head {
        revision: resp.header().map_or(0, |h| h.revision()),
        ..Head::default()
    };
    for kv in resp.kvs() {
        if kv.key() == active.as_slice() {
            h.active = std::str::from_utf8(kv.value())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("active is not a number")?;
            h.active_mod = kv.mod_revision();
        } else if kv.key() == meta.as_slice() {
            h.meta_mod = kv.mod_revision();
        }
    }
    if h.active == 0 {
        return Err("flow has no active version".into());
    }
    Ok(h)
}

fn range_at(resp: &TxnResponse, i: usize) -> BenchResult<GetResponse> {
    match resp.op_responses().into_iter().nth(i) {
        Some(TxnOpResponse::Get(g)) => Ok(g),
        _ => Err(format!("transaction response {i} is not a range")),
    }
}

fn put(key: Vec<u8>, value: Vec<u8>) -> TxnOp {
    TxnOp::put(key, value, None)
}

/// The four puts that write version `n` and make it active.
fn write_version(keys: &RawKeys, stored: &Stored, n: u64, spec: Vec<u8>) -> Vec<TxnOp> {
    vec![
        put(keys.spec(n), spec),
        put(keys.vmeta(n), stored.version_meta.clone()),
        put(keys.active(), n.to_string().into_bytes()),
        put(keys.meta(), stored.meta.clone()),
    ]
}

/// CreateFlow of a never-used name: one transaction (the API's fast path).
pub async fn create(
    kv: &mut KvClient,
    keys: &RawKeys,
    stored: &Stored,
    spec: Vec<u8>,
) -> BenchResult<()> {
    let txn = Txn::new()
        .when([
            Compare::create_revision(keys.meta(), CompareOp::Equal, 0),
            Compare::create_revision(keys.active(), CompareOp::Equal, 0),
            Compare::create_revision(keys.spec(1), CompareOp::Equal, 0),
        ])
        .and_then(write_version(keys, stored, 1, spec))
        .or_else([keys.head_op(0)]);
    let resp = kv.txn(txn).await.map_err(err)?;
    if !resp.succeeded() {
        return Err("create: the name is taken".into());
    }
    Ok(())
}

/// GetFlow: the head, then the active version's spec at the head's revision.
pub async fn get(kv: &mut KvClient, keys: &RawKeys) -> BenchResult<()> {
    let (k, o) = keys.head(0);
    let resp = kv.get(k, Some(o)).await.map_err(err)?;
    let head = parse_head(keys, &resp)?;
    let spec = kv
        .get(
            keys.spec(head.active),
            Some(GetOptions::new().with_revision(head.revision)),
        )
        .await
        .map_err(err)?;
    if spec.kvs().is_empty() {
        return Err("get: active spec missing".into());
    }
    Ok(())
}

/// UpdateFlow with a changed spec, from a flow whose newest version is `latest` (the API reads
/// that from `meta`; this baseline tracks it, being the flow's only writer). Returns the new
/// version.
pub async fn update(
    kv: &mut KvClient,
    keys: &RawKeys,
    stored: &Stored,
    latest: u64,
    variant: Variant,
) -> BenchResult<u64> {
    let (k, o) = keys.head(0);
    let resp = kv.get(k, Some(o)).await.map_err(err)?;
    let head = parse_head(keys, &resp)?;
    let n = latest.max(head.active) + 1;
    // The request's spec encoded at the active version: equal bytes would mean "no change".
    let same = stored.spec(variant, head.active);
    let new = stored.spec(variant, n);
    let txn = Txn::new()
        .when([
            Compare::mod_revision(keys.meta(), CompareOp::Equal, head.meta_mod),
            Compare::mod_revision(keys.active(), CompareOp::Equal, head.active_mod),
            Compare::create_revision(keys.spec(n), CompareOp::Equal, 0),
            Compare::value(keys.spec(head.active), CompareOp::NotEqual, same),
        ])
        .and_then(write_version(keys, stored, n, new))
        .or_else([keys.head_op(0), TxnOp::get(keys.spec(head.active), None)]);
    let resp = kv.txn(txn).await.map_err(err)?;
    if !resp.succeeded() {
        return Err("update: compare failed".into());
    }
    Ok(n)
}

/// RollbackFlow to `target`: one read-only transaction (head and the target's spec), then the
/// guarded pointer move.
pub async fn rollback(
    kv: &mut KvClient,
    keys: &RawKeys,
    stored: &Stored,
    target: u64,
) -> BenchResult<()> {
    let read = Txn::new().and_then([keys.head_op(0), TxnOp::get(keys.spec(target), None)]);
    let resp = kv.txn(read).await.map_err(err)?;
    let head = parse_head(keys, &range_at(&resp, 0)?)?;
    if range_at(&resp, 1)?.kvs().is_empty() {
        return Err("rollback: no such version".into());
    }
    if head.active == target {
        return Ok(());
    }
    let txn = Txn::new()
        .when([
            Compare::mod_revision(keys.meta(), CompareOp::Equal, head.meta_mod),
            Compare::mod_revision(keys.active(), CompareOp::Equal, head.active_mod),
        ])
        .and_then([
            put(keys.active(), target.to_string().into_bytes()),
            put(keys.meta(), stored.meta.clone()),
        ])
        .or_else([keys.head_op(0)]);
    let resp = kv.txn(txn).await.map_err(err)?;
    if !resp.succeeded() {
        return Err("rollback: compare failed".into());
    }
    Ok(())
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

/// The first ListFlows page of `size` flows in namespace `ns`: the API's `list_page`, request
/// for request (keys-only discovery reads that skip each flow's versions once its name is known,
/// sized from the keys per flow seen so far; then the heads of the names found and of their
/// dash-prefixes in read-only transactions of at most `MAX_TXN_OPS` reads, concurrently). A flow with an
/// `active` key counts as live (the seeded data has no deleted flows, so this takes the same
/// path as the API's meta check). The report checks that this makes as many round trips as the
/// API does, so a change to the API's listing cannot leave this baseline behind unnoticed.
pub async fn list_page(kv: &KvClient, ns: &[u8], size: usize) -> BenchResult<ListCost> {
    let mut cost = ListCost::default();
    let want = size + 1;
    let (start, end) = keys::all_flows();
    let (mut cursor, end) = ([ns, &start].concat(), [ns, &end].concat());
    let mut revision = 0i64;
    let mut scanned: BTreeSet<FlowName> = BTreeSet::new();
    let mut probes: BTreeSet<FlowName> = BTreeSet::new();
    let mut heads: BTreeMap<FlowName, bool> = BTreeMap::new();
    let possible = |scanned: &BTreeSet<FlowName>, heads: &BTreeMap<FlowName, bool>| {
        scanned
            .iter()
            .filter(|n| heads.get(*n).copied().unwrap_or(true))
            .count()
    };
    let mut exhausted = false;
    let mut limit = DiscoveryRead::first_limit(want);
    loop {
        while !exhausted && possible(&scanned, &heads) < want {
            let mut o = GetOptions::new()
                .with_range(end.clone())
                .with_keys_only()
                .with_limit(limit);
            if revision > 0 {
                o = o.with_revision(revision);
            }
            let resp = kv.clone().get(cursor.clone(), Some(o)).await.map_err(err)?;
            cost.round_trips += 1;
            cost.discovery_keys += resp.kvs().len() as u64;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let read = DiscoveryRead::parse(
                resp.kvs().iter().map(|kv| &kv.key()[ns.len()..]),
                resp.more(),
            );
            for name in read.active.iter() {
                probes.extend(name.dash_prefixes());
                scanned.insert(name.clone());
            }
            match &read.next {
                Some(next) => {
                    cursor = [ns, next].concat();
                    limit = read.next_limit(want.saturating_sub(possible(&scanned, &heads)), limit);
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
        let reads = unread.chunks(MAX_TXN_OPS).map(|chunk| {
            let mut kv = kv.clone();
            async move {
                let keys: Vec<RawKeys> = chunk.iter().map(|n| RawKeys::new(ns, n)).collect();
                let txn = Txn::new()
                    .and_then(keys.iter().map(|k| k.head_op(revision)).collect::<Vec<_>>());
                let resp = kv.txn(txn).await.map_err(err)?;
                let ranges = resp.op_responses();
                Ok::<_, String>(
                    chunk
                        .iter()
                        .zip(&keys)
                        .zip(ranges)
                        .map(|((n, k), r)| {
                            let active = k.active();
                            let live = matches!(&r, TxnOpResponse::Get(g)
                                if g.kvs().iter().any(|kv| kv.key() == active.as_slice()));
                            (n.clone(), live)
                        })
                        .collect::<Vec<_>>(),
                )
            }
        });
        let results = try_join_all(reads).await?;
        cost.round_trips += results.len() as u64;
        heads.extend(results.into_iter().flatten());
        if exhausted || possible(&scanned, &heads) >= want {
            break;
        }
    }
    cost.flows = heads.values().filter(|live| **live).count().min(size);
    Ok(cost)
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
    let revision = resp.header().map_or(0, |h| h.revision());
    let names: Vec<FlowName> = resp
        .kvs()
        .iter()
        .filter_map(|kv| std::str::from_utf8(&kv.key()[prefix.len()..]).ok())
        .filter_map(|n| FlowName::parse(n).ok())
        .collect();
    let reads = names.chunks(MAX_TXN_OPS).map(|chunk| {
        let mut kv = kv.clone();
        async move {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|n| RawKeys::new(ns, n).head_op(revision))
                .collect();
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
    Ok(resp.header().map_or(0, |h| h.revision()))
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

/// Writes flow `name` in namespace `ns` as the API would have after a create and
/// `versions - 1` updates, plus a controller status: one transaction.
pub async fn seed_flow(
    kv: &mut KvClient,
    ns: &[u8],
    name: &FlowName,
    versions: u64,
) -> BenchResult<()> {
    let keys = RawKeys::new(ns, name);
    let stored = Stored::new(name);
    let mut ops = Vec::with_capacity(2 * versions as usize + 3);
    for n in 1..=versions {
        let variant = if n % 2 == 1 { Variant::A } else { Variant::B };
        ops.push(put(keys.spec(n), stored.spec(variant, n)));
        ops.push(put(keys.vmeta(n), workload::version_meta()));
    }
    ops.push(put(keys.active(), versions.to_string().into_bytes()));
    ops.push(put(keys.meta(), workload::flow_meta(versions)));
    ops.push(put(keys.status(), workload::status(name, versions)));
    // More versions than etcd takes in one transaction: the oldest go first, in transactions of
    // their own (seeding writes only into this run's fresh namespace), and the last transaction,
    // which makes the flow live, still checks that it did not exist.
    let last = ops.split_off(ops.len().saturating_sub(MAX_TXN_OPS));
    for chunk in ops.chunks(MAX_TXN_OPS) {
        kv.txn(Txn::new().and_then(chunk.to_vec()))
            .await
            .map_err(err)?;
    }
    let txn = Txn::new()
        .when([Compare::create_revision(keys.active(), CompareOp::Equal, 0)])
        .and_then(last);
    let resp = kv.txn(txn).await.map_err(err)?;
    if !resp.succeeded() {
        return Err(format!("seed: flow {name} already exists"));
    }
    Ok(())
}

/// Seeds `names` (see [`seed_flow`]), 16 transactions in flight.
pub async fn seed_flows(
    kv: &KvClient,
    ns: &[u8],
    names: &[FlowName],
    versions: u64,
) -> BenchResult<()> {
    for chunk in names.chunks(16) {
        try_join_all(chunk.iter().map(|n| {
            let mut kv = kv.clone();
            async move { seed_flow(&mut kv, ns, n, versions).await }
        }))
        .await?;
    }
    Ok(())
}
