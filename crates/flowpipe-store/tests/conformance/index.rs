//! The name index of ListFlows (contract B.6) on both stores: its keys follow every write, lists
//! are the same with and without it, and the backfill builds it over data written as the
//! original API writes it, while flows change under it and with another backfill running.

use std::sync::Arc;

use flowpipe_core::kv::{Kv, KvError, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse};
use flowpipe_core::proto::v1::*;
use flowpipe_core::{Code, FlowRegistry};
use flowpipe_store::Store;
use flowpipe_testkit::SystemEnvironment;
use serde_json::json;
use tokio::sync::{Mutex, Notify};

use flowpipe_testkit::both;
use flowpipe_testkit::stores::{original_api_flow, registry};

const INDEX: &str = "/flowpipe/index/flows/";
const READY: &str = "/flowpipe/index/flows-ready";

fn spec(name: &str, threads: u32) -> FlowSpec {
    flowpipe_core::json::decode_flow_spec(
        json!({
            "name": name, "mode": "STREAMING", "queues": [{"name": "q"}],
            "stages": [{"name": "s", "type": "t", "threads": threads, "outputQueue": "q"}]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

async fn create(r: &FlowRegistry<Store, SystemEnvironment>, name: &str) -> Flow {
    r.create(CreateFlowRequest {
        spec: Some(spec(name, 1)),
        validate_only: false,
    })
    .await
    .unwrap()
}

async fn raw(store: &Store, key: &str) -> Option<flowpipe_core::kv::KeyValue> {
    store
        .range(RangeRequest::key(key))
        .await
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

async fn put(store: &Store, ops: Vec<TxnOp>) {
    store
        .txn(Txn {
            success: ops,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Every name of the listing, page by page, and whether every page came from the index.
async fn list_all(
    r: &FlowRegistry<Store, SystemEnvironment>,
    page_size: i32,
) -> (Vec<(String, u64)>, bool) {
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut from_index = true;
    loop {
        let page = r.list_page(page_size, &token).await.unwrap();
        from_index &= page.from_index;
        assert!(page.response.flows.len() <= page_size.max(1) as usize);
        seen.extend(
            page.response
                .flows
                .iter()
                .map(|f| (f.name.clone(), f.version)),
        );
        if page.response.next_page_token.is_empty() {
            return (seen, from_index);
        }
        token = page.response.next_page_token;
    }
}

// ---- the index follows every write ---------------------------------------------------------

async fn index_keys_follow_every_write(store: Store) {
    let r = registry(&store);
    let key = format!("{INDEX}idx");
    let created = create(&r, "idx").await;
    let kv = raw(&store, &key).await.expect("create puts the index key");
    assert_eq!(kv.value, created.uid.as_bytes());
    let active = raw(&store, "/flowpipe/flows/idx/active").await.unwrap();
    assert_eq!(kv.mod_revision, active.mod_revision, "one transaction");

    r.update(UpdateFlowRequest {
        name: "idx".into(),
        spec: Some(spec("idx", 2)),
        validate_only: false,
    })
    .await
    .unwrap();
    r.rollback("idx", 1).await.unwrap();
    assert_eq!(
        raw(&store, &key).await.unwrap(),
        kv,
        "update and rollback leave it"
    );

    r.delete("idx").await.unwrap();
    assert!(raw(&store, &key).await.is_none(), "delete removes it");
    assert!(raw(&store, "/flowpipe/flows/idx/active").await.is_none());

    let again = create(&r, "idx").await;
    assert_ne!(again.uid, created.uid);
    let kv = raw(&store, &key).await.expect("re-create puts it back");
    assert_eq!(kv.value, again.uid.as_bytes());
    // A refused create writes no index key.
    assert!(
        r.create(CreateFlowRequest {
            spec: Some(spec("Bad_Name", 1)),
            validate_only: false,
        })
        .await
        .is_err()
    );
    let all = store
        .range(RangeRequest::prefix(INDEX).keys_only())
        .await
        .unwrap();
    assert_eq!(all.kvs.len(), 1);
}

// ---- lists with and without the index ------------------------------------------------------

async fn lists_are_the_same_with_and_without_the_index(store: Store) {
    let r = registry(&store);
    // Names whose flow keys sort differently from their names ("a-b/" < "a/").
    let names = [
        "b", "a-b-c", "a", "a-b", "a0", "flow", "flow-1", "flow-10", "z9", "dead",
    ];
    for n in names {
        create(&r, n).await;
    }
    r.update(UpdateFlowRequest {
        name: "flow".into(),
        spec: Some(spec("flow", 3)),
        validate_only: false,
    })
    .await
    .unwrap();
    r.delete("dead").await.unwrap();
    // Data the original API wrote (no index) lists too while the index is not ready.
    original_api_flow(&store, "go-flow", 3, false).await;
    original_api_flow(&store, "go-gone", 2, true).await;
    let mut expected: Vec<(String, u64)> = names
        .iter()
        .filter(|n| **n != "dead")
        .map(|n| ((*n).to_string(), if *n == "flow" { 2 } else { 1 }))
        .chain([("go-flow".to_string(), 3)])
        .collect();
    expected.sort();

    let mut without = Vec::new();
    for size in [1, 2, 3, 100] {
        let (seen, from_index) = list_all(&r, size).await;
        assert!(!from_index, "no marker: discovery");
        assert_eq!(seen, expected, "page size {size}, without the index");
        without.push(seen);
    }
    let report = r.ensure_index().await.unwrap();
    assert_eq!(
        (report.live, report.indexed),
        (expected.len(), 1),
        "{report:?}"
    );
    assert!(raw(&store, READY).await.is_some());
    for (i, size) in [1, 2, 3, 100].into_iter().enumerate() {
        let (seen, from_index) = list_all(&r, size).await;
        assert!(from_index, "marker: the index");
        assert_eq!(seen, without[i], "page size {size}, with the index");
    }
    // A second backfill finds it ready and does nothing.
    assert!(r.ensure_index().await.unwrap().already_ready);
}

/// A page from the index is two round trips, whatever the number of versions.
async fn an_index_page_is_two_round_trips(store: Store) {
    let (counted, trips) = store.clone().counting();
    let r = FlowRegistry::new(counted, SystemEnvironment);
    for (name, versions) in [("few", 1), ("many", 30)] {
        create(&r, name).await;
        for v in 2..=versions {
            r.update(UpdateFlowRequest {
                name: name.into(),
                spec: Some(spec(name, v)),
                validate_only: false,
            })
            .await
            .unwrap();
        }
    }
    r.ensure_index().await.unwrap();
    let before = trips.total();
    let page = r.list_page(100, "").await.unwrap();
    assert!(page.from_index);
    assert_eq!(page.response.flows.len(), 2);
    assert_eq!(trips.total() - before, 2);
}

/// An index key without a live flow (hand-edited data) is skipped, not an error; a forged page
/// token is harmless.
async fn index_keys_without_a_flow_are_skipped(store: Store) {
    let r = registry(&store);
    create(&r, "real").await;
    r.ensure_index().await.unwrap();
    put(
        &store,
        vec![
            TxnOp::put(format!("{INDEX}ghost"), "no-such-uid"),
            TxnOp::put(format!("{INDEX}Not_A_Name"), "x"),
        ],
    )
    .await;
    let (seen, from_index) = list_all(&r, 1).await;
    assert!(from_index);
    assert_eq!(seen, [("real".to_string(), 1)]);
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"k":"flows","r":1,"a":"../../etc"}"#,
    );
    assert_eq!(
        r.list(10, &forged).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // The rebuild removes what names no live flow.
    let report = r.rebuild_index().await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(raw(&store, &format!("{INDEX}ghost")).await.is_none());
}

// ---- the backfill ----------------------------------------------------------------------------

/// Data exactly as the original API writes it: no `latest_version`, no index, no marker.
async fn the_backfill_indexes_what_the_original_api_wrote(store: Store) {
    let r = registry(&store);
    for i in 0..150 {
        original_api_flow(&store, &format!("go-{i:03}"), 1 + i % 3, i % 10 == 9).await;
    }
    let (before, from_index) = list_all(&r, 40).await;
    assert!(!from_index);
    assert_eq!(before.len(), 135);
    let report = r.ensure_index().await.unwrap();
    assert_eq!(
        (report.live, report.indexed, report.removed, report.skipped),
        (135, 135, 0, 0)
    );
    let key = raw(&store, &format!("{INDEX}go-000")).await.unwrap();
    assert_eq!(key.value, b"go-go-000", "the flow's uid");
    assert!(
        raw(&store, &format!("{INDEX}go-009")).await.is_none(),
        "deleted"
    );
    let (after, from_index) = list_all(&r, 40).await;
    assert!(from_index);
    assert_eq!(after, before);
    // The original API's flows are then written by this API as by any other.
    r.delete("go-000").await.unwrap();
    assert!(raw(&store, &format!("{INDEX}go-000")).await.is_none());
}

/// A store that stops the first index-writing transaction until the test lets it go, so that
/// the test can change flows while the backfill runs.
#[derive(Clone)]
struct Paused {
    inner: Store,
    reached: Arc<Notify>,
    resume: Arc<Notify>,
    armed: Arc<Mutex<bool>>,
}

impl Kv for Paused {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        self.inner.range(req).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, KvError> {
        let writes_index = txn
            .success
            .iter()
            .any(|op| matches!(op, TxnOp::Put { key, .. } if key.starts_with(INDEX.as_bytes())));
        let mut armed = self.armed.lock().await;
        if writes_index && *armed {
            *armed = false;
            self.reached.notify_one();
            self.resume.notified().await;
        }
        drop(armed);
        self.inner.txn(txn).await
    }
}

/// A flow deleted and one created (by this API) while the backfill runs: the deleted one gets
/// no index key, the created one keeps the key its create wrote.
async fn flows_changing_under_the_backfill(store: Store) {
    let r = registry(&store);
    for name in ["keep", "doomed"] {
        original_api_flow(&store, name, 1, false).await;
    }
    let paused = Paused {
        inner: store.clone(),
        reached: Arc::default(),
        resume: Arc::default(),
        armed: Arc::new(Mutex::new(true)),
    };
    let backfilling = FlowRegistry::new(paused.clone(), SystemEnvironment);
    let backfill = tokio::spawn(async move { backfilling.ensure_index().await });
    paused.reached.notified().await;
    // The backfill saw both flows live and is about to write their keys.
    r.delete("doomed").await.unwrap();
    create(&r, "newcomer").await;
    paused.resume.notify_one();
    let report = backfill.await.unwrap().unwrap();
    assert_eq!(
        (report.live, report.indexed, report.skipped),
        (2, 1, 1),
        "{report:?}"
    );
    assert!(raw(&store, &format!("{INDEX}keep")).await.is_some());
    assert!(raw(&store, &format!("{INDEX}doomed")).await.is_none());
    assert!(raw(&store, &format!("{INDEX}newcomer")).await.is_some());
    let (seen, from_index) = list_all(&r, 10).await;
    assert!(from_index);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["keep", "newcomer"]);
}

/// Two replicas backfilling at once both succeed, and the index is right.
async fn two_backfills_at_once(store: Store) {
    for i in 0..200 {
        original_api_flow(&store, &format!("f{i:03}"), 1, false).await;
    }
    let (a, b) = (registry(&store), registry(&store));
    let (ra, rb) = tokio::join!(a.ensure_index(), b.ensure_index());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.already_ready || ra.live == 200, "{ra:?}");
    assert!(rb.already_ready || rb.live == 200, "{rb:?}");
    let index = store
        .range(RangeRequest::prefix(INDEX).keys_only())
        .await
        .unwrap();
    assert_eq!(index.kvs.len(), 200);
    let (seen, from_index) = list_all(&a, 1000).await;
    assert!(from_index);
    assert_eq!(seen.len(), 200);
}

both!(
    index_keys_follow_every_write,
    lists_are_the_same_with_and_without_the_index,
    an_index_page_is_two_round_trips,
    index_keys_without_a_flow_are_skipped,
    the_backfill_indexes_what_the_original_api_wrote,
    flows_changing_under_the_backfill,
    two_backfills_at_once,
);
