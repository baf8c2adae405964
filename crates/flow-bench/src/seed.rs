//! Seeding the list study's datasets, and checking them before anything is measured.
//!
//! Seeding is not measured. The 1,000-flow datasets are written through the core
//! ([`Core::seed_flows`]: a create, then updates), so their layout is the API's by construction.
//! The scale datasets hold far more versions (10,000 flows × 20 versions is 200,000 creates and
//! updates, each a read and a transaction), which would take most of the run's time on a shared
//! 2-CPU machine. [`bulk`] writes them directly instead, but with the core's own code for every
//! key and value, exactly the layout a create and `versions - 1` updates leave:
//!
//! - keys from [`FlowKeys`] (`versions/<n>/spec`, `versions/<n>/meta`, `active`, `meta`,
//!   `status`, and the flow's name index key) and [`keys::FLOW_INDEX_READY`];
//! - each version's spec as the core stores it: validated by [`ValidSpec`] (`for_create` for
//!   version 1, `for_update` for the others, as CreateFlow and UpdateFlow do), at its version
//!   number, binary protobuf;
//! - [`VersionMeta`] and [`FlowMeta`] from their own encoders, the uid from the API's
//!   environment; the index key holds the uid, as CreateFlow writes it;
//! - the status the controller would write ([`workload::status`], as `Core::seed_flows` writes
//!   it);
//! - the `flows-ready` marker last, once every flow's index key is written.
//!
//! The puts go through the store (so its key namespace is applied as for the API), in
//! transactions of at most [`MAX_TXN_OPS`] puts, [`IN_FLIGHT`] at a time. What differs from the
//! core's own writes is only what no reader depends on: revisions (one transaction per 128 puts
//! rather than one per version) and timestamps (one instant for every version).
//!
//! Whatever wrote a dataset, [`verify`] lists it through the core before it is measured (every
//! name in order, on pages that must come from the index) and reads a flow's versions back, so a
//! seeding bug cannot pass for a fast listing.

use futures_util::stream::{self, StreamExt, TryStreamExt};

use flowpipe_api::SystemEnvironment;
use flowpipe_core::keys::{self, FlowKeys};
use flowpipe_core::kv::{Kv, MAX_TXN_OPS, Txn, TxnOp};
use flowpipe_core::meta::{FlowMeta, VersionMeta};
use flowpipe_core::pagination::MAX_PAGE_SIZE;
use flowpipe_core::proto::v1::FlowSpec;
use flowpipe_core::{Environment, FlowName, ValidSpec, VersionNumber};
use prost::Message;

use crate::core_direct::{Core, api_err};
use crate::raw::BenchResult;
use crate::workload::{self, Variant};

/// Transactions of the bulk seeder in flight at once.
pub const IN_FLIGHT: usize = 8;

/// The specs every flow's versions are made of (the same two variants the core seeding and the
/// throughput rows use), decoded once.
struct Specs {
    a: FlowSpec,
    b: FlowSpec,
}

impl Specs {
    fn new() -> Self {
        Specs {
            a: workload::spec(None, Variant::A),
            b: workload::spec(None, Variant::B),
        }
    }

    /// Version `v` of flow `name` as the core stores it after a create (version 1, variant A)
    /// and updates (alternating variants, see [`Variant::of_update`]).
    fn stored(&self, name: &FlowName, v: VersionNumber) -> BenchResult<ValidSpec> {
        let valid = if v == VersionNumber::FIRST {
            let mut spec = self.a.clone();
            name.as_str().clone_into(&mut spec.name);
            ValidSpec::for_create(spec)
        } else {
            let spec = match Variant::of_update(v.get() - 2) {
                Variant::A => self.a.clone(),
                Variant::B => self.b.clone(),
            };
            ValidSpec::for_update(name, spec)
        };
        valid.map_err(|e| format!("bulk seeding {name}: {}", api_err(e)))
    }
}

/// The puts that leave flow `name` as a create and `versions - 1` updates through the core
/// would, plus its status.
fn flow_puts(specs: &Specs, name: &FlowName, versions: u64) -> BenchResult<Vec<TxnOp>> {
    let env = SystemEnvironment;
    let now = env.now();
    let keys = FlowKeys::new(name);
    let mut puts = Vec::with_capacity(2 * versions as usize + 4);
    let mut labels = Default::default();
    for v in (1..=versions).filter_map(VersionNumber::new) {
        let valid = specs.stored(name, v)?;
        labels = valid.spec().labels.clone();
        puts.push(TxnOp::put(
            keys.version_spec(v),
            valid.at_version(v).encode_to_vec(),
        ));
        puts.push(TxnOp::put(
            keys.version_meta(v),
            VersionMeta::new(now).encode(),
        ));
    }
    let meta = FlowMeta {
        uid: env.new_uid(),
        created_at: Some(now),
        labels,
        deleted: false,
        updated_at: Some(now),
        latest_version: Some(versions),
        deleted_at: None,
        extra: Default::default(),
    };
    puts.push(TxnOp::put(keys.active(), versions.to_string()));
    puts.push(TxnOp::put(keys.index(), meta.uid.clone()));
    puts.push(TxnOp::put(keys.meta(), meta.encode()));
    puts.push(TxnOp::put(keys.status(), workload::status(name, versions)));
    Ok(puts)
}

/// Writes `names` with `versions` versions each, their index keys and the `flows-ready` marker
/// into the core's store (see the module docs). Returns how many keys it wrote.
pub async fn bulk(core: &Core, names: &[FlowName], versions: u64) -> BenchResult<u64> {
    if versions == 0 {
        return Err("a flow has at least one version".into());
    }
    let specs = Specs::new();
    let kv = core.flows.kv();
    // Flows are turned into puts a transaction's worth at a time, so memory stays bounded.
    let per_flow = 2 * versions as usize + 4;
    let flows_per_batch = (MAX_TXN_OPS / per_flow).max(1);
    let written = stream::iter(names.chunks(flows_per_batch))
        .map(|chunk| {
            let specs = &specs;
            async move {
                let mut puts = Vec::with_capacity(chunk.len() * per_flow);
                for name in chunk {
                    puts.extend(flow_puts(specs, name, versions)?);
                }
                let n = puts.len() as u64;
                // A flow of many versions takes several transactions of its own.
                for part in puts.chunks(MAX_TXN_OPS) {
                    kv.txn(Txn {
                        success: part.to_vec(),
                        ..Txn::default()
                    })
                    .await
                    .map_err(|e| format!("bulk seeding: {e}"))?;
                }
                Ok::<u64, String>(n)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await?;
    set_index_ready(core, true).await?;
    Ok(written + 1)
}

/// Puts (`true`) or deletes (`false`) the `flows-ready` marker of the core's store: with it,
/// ListFlows reads names from the index; without it, it discovers them under the flows' keys
/// (the fallback for data of the original API). The index keys themselves stay.
pub async fn set_index_ready(core: &Core, ready: bool) -> BenchResult<()> {
    let op = if ready {
        TxnOp::put(keys::FLOW_INDEX_READY, keys::FLOW_INDEX_READY_VALUE)
    } else {
        TxnOp::delete(keys::FLOW_INDEX_READY)
    };
    core.flows
        .kv()
        .txn(Txn {
            success: vec![op],
            ..Txn::default()
        })
        .await
        .map_err(|e| format!("flows-ready marker: {e}"))?;
    Ok(())
}

/// Checks that the core lists exactly `names` (in name order, which is theirs), each at version
/// `versions`, from the name index, and that the first and last flows have every version
/// readable. Returns an error naming the first difference.
pub async fn verify(core: &Core, names: &[FlowName], versions: u64) -> BenchResult<()> {
    let flows = &core.flows;
    let mut expected: Vec<&str> = names.iter().map(FlowName::as_str).collect();
    expected.sort_unstable();
    let first = flows.list_page(100, "").await.map_err(api_err)?;
    let got: Vec<&str> = first
        .response
        .flows
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let want = &expected[..expected.len().min(100)];
    if !first.from_index || got != want {
        return Err(format!(
            "seeded dataset: the first page (from the index: {}) lists {} flow(s) starting {:?}, expected {} starting {:?}",
            first.from_index,
            got.len(),
            got.first(),
            want.len(),
            want.first()
        ));
    }
    let page_size = i32::try_from(MAX_PAGE_SIZE).unwrap_or(i32::MAX);
    let mut listed = 0usize;
    let mut token = String::new();
    loop {
        let page = flows.list_page(page_size, &token).await.map_err(api_err)?;
        if !page.from_index {
            return Err("seeded dataset: a page did not come from the name index".into());
        }
        for f in &page.response.flows {
            if expected.get(listed) != Some(&f.name.as_str()) || f.version != versions {
                return Err(format!(
                    "seeded dataset: flow #{listed} listed is {} at version {}, expected {:?} at version {versions}",
                    f.name,
                    f.version,
                    expected.get(listed)
                ));
            }
            listed += 1;
        }
        if page.response.next_page_token.is_empty() {
            break;
        }
        token = page.response.next_page_token;
    }
    if listed != expected.len() {
        return Err(format!(
            "seeded dataset: {listed} flows listed, {} seeded",
            expected.len()
        ));
    }
    for name in [expected.first(), expected.last()].into_iter().flatten() {
        let flow = flows.get(name).await.map_err(api_err)?;
        let spec = flow.spec.unwrap_or_default();
        if spec.version != versions || spec.name != *name {
            return Err(format!(
                "seeded dataset: GetFlow({name}) is {:?} at version {}, expected version {versions}",
                spec.name, spec.version
            ));
        }
        let all = flows
            .list_versions(name, page_size, "")
            .await
            .map_err(api_err)?;
        if all.versions.len() as u64 != versions.min(MAX_PAGE_SIZE as u64) {
            return Err(format!(
                "seeded dataset: {name} has {} readable version(s), expected {versions}",
                all.versions.len()
            ));
        }
    }
    Ok(())
}

/// A stored value with what differs between two writes of the same flow left out: the uid and
/// the timestamps (the uid is random; the index key holds it, so it is checked against meta's).
fn normalized(key: &str, value: &[u8], uid: &str) -> BenchResult<Vec<u8>> {
    let bad = |e: String| format!("layout check: {key}: {e}");
    if key.contains("/versions/") && key.ends_with("/meta") {
        let mut m = VersionMeta::decode(key, value).map_err(|e| bad(api_err(e)))?;
        m.created_at = None;
        return Ok(m.encode());
    }
    if key.ends_with("/meta") {
        let mut m = FlowMeta::decode(key, value).map_err(|e| bad(api_err(e)))?;
        if m.uid.is_empty() {
            return Err(bad("no uid".into()));
        }
        (m.uid, m.created_at, m.updated_at) = (String::new(), None, None);
        return Ok(m.encode());
    }
    if key.ends_with("/status") {
        let mut s =
            flowpipe_core::proto::v1::FlowStatus::decode(value).map_err(|e| bad(e.to_string()))?;
        s.last_updated = None;
        return Ok(s.encode_to_vec());
    }
    if key.starts_with(keys::FLOW_INDEX_PREFIX) {
        if value != uid.as_bytes() {
            return Err(bad("the index key does not hold the flow's uid".into()));
        }
        return Ok(Vec::new());
    }
    Ok(value.to_vec())
}

/// Every key of namespace `ns` (without it) and its normalized value.
async fn dump(kv: &etcd_client::KvClient, ns: &str) -> BenchResult<Vec<(String, Vec<u8>)>> {
    let resp = kv
        .clone()
        // Every key the store writes starts `<ns>/flowpipe/`: `<ns>/` as the prefix keeps out
        // another namespace that merely starts with this one.
        .get(
            format!("{ns}/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .map_err(|e| format!("layout check: {e}"))?;
    let kvs: Vec<(String, Vec<u8>)> = resp
        .kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key()[ns.len()..]).into_owned();
            (key, kv.value().to_vec())
        })
        .collect();
    let uid = kvs
        .iter()
        .find(|(k, _)| {
            k.starts_with(keys::FLOWS_PREFIX) && k.ends_with("/meta") && !k.contains("/versions/")
        })
        .map(|(k, v)| FlowMeta::decode(k, v).map(|m| m.uid))
        .transpose()
        .map_err(api_err)?
        .unwrap_or_default();
    kvs.into_iter()
        .map(|(k, v)| {
            let n = normalized(&k, &v, &uid)?;
            Ok((k, n))
        })
        .collect()
}

/// Proves [`bulk`] writes what the core writes: one flow of `versions` versions seeded through
/// the core (and indexed by the core's backfill) into namespace `<base>-core`, the same flow by
/// [`bulk`] into `<base>-bulk`, then every key and value of the two compared (uid and
/// timestamps aside). Runs before any bulk seeding, so the seeder cannot drift from the core
/// unnoticed.
pub async fn check_layout(
    endpoints: &[String],
    kv: &etcd_client::KvClient,
    base: &str,
    versions: u64,
) -> BenchResult<()> {
    let name = workload::name("flow-00000".into());
    let (core_ns, bulk_ns) = (format!("{base}-core"), format!("{base}-bulk"));
    let core = Core::connect(endpoints, core_ns.as_bytes())?;
    core.seed_flows(std::slice::from_ref(&name), versions)
        .await?;
    core.flows.ensure_index().await.map_err(api_err)?;
    let bulked = Core::connect(endpoints, bulk_ns.as_bytes())?;
    bulk(&bulked, std::slice::from_ref(&name), versions).await?;
    let (a, b) = (dump(kv, &core_ns).await?, dump(kv, &bulk_ns).await?);
    if a.len() != 2 * versions as usize + 5 {
        return Err(format!(
            "layout check: the core wrote {} keys for a flow of {versions} versions",
            a.len()
        ));
    }
    for (x, y) in a.iter().zip(&b) {
        if x != y {
            return Err(format!(
                "layout check: the core wrote {} = {:?}, the bulk seeder {} = {:?}",
                x.0,
                String::from_utf8_lossy(&x.1),
                y.0,
                String::from_utf8_lossy(&y.1)
            ));
        }
    }
    if a.len() != b.len() {
        return Err(format!(
            "layout check: the core wrote {} keys, the bulk seeder {}",
            a.len(),
            b.len()
        ));
    }
    Ok(())
}
