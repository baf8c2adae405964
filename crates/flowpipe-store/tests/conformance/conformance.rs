//! The conformance suite: every rule of contract B.4, run against etcd and the embedded store
//! through the core, checking the stored keys as well as the returned values.

use flowpipe_core::kv::{Kv, RangeRequest, Txn, TxnOp};
use flowpipe_core::proto::v1::{
    CreateFlowRequest, Flow, FlowSpec, FlowState, FlowStatus, SchemaDefinition, UpdateFlowRequest,
};
use flowpipe_core::{Code, Error, FlowRegistry};
use flowpipe_store::Store;
use flowpipe_testkit::SystemEnvironment;
use prost::Message;
use serde_json::json;

use flowpipe_testkit::both;
use flowpipe_testkit::stores::registry;

type Registry = FlowRegistry<Store, SystemEnvironment>;

fn spec(v: serde_json::Value) -> FlowSpec {
    flowpipe_core::json::decode_flow_spec(v.to_string().as_bytes()).unwrap()
}

/// A real two-stage flow: source → queue → sink.
fn two_stage(name: &str, threads: u32) -> FlowSpec {
    spec(json!({
        "name": name,
        "mode": "STREAMING",
        "labels": {"team": "data"},
        "queues": [{"name": "events"}],
        "stages": [
            {"name": "source", "type": "kafka", "threads": threads, "outputQueue": "events",
             "config": {"topic": "orders", "brokers": ["k1:9092", "k2:9092"]}},
            {"name": "sink", "type": "s3", "threads": 1, "inputQueue": "events"}
        ]
    }))
}

async fn create(r: &Registry, s: FlowSpec) -> Result<Flow, Error> {
    r.create(CreateFlowRequest {
        spec: Some(s),
        validate_only: false,
    })
    .await
}

async fn update(r: &Registry, name: &str, s: FlowSpec) -> Result<Flow, Error> {
    r.update(UpdateFlowRequest {
        name: name.into(),
        spec: Some(s),
        validate_only: false,
    })
    .await
}

/// Every key under `prefix`, with its revisions: equal before and after means nothing under it
/// was written (the store's revision itself moves with the other tests sharing one etcd).
async fn keys_under(store: &Store, prefix: &str) -> Vec<flowpipe_core::kv::KeyValue> {
    store.range(RangeRequest::prefix(prefix)).await.unwrap().kvs
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

async fn raw_json(store: &Store, key: &str) -> serde_json::Value {
    serde_json::from_slice(&raw(store, key).await.expect(key).value).unwrap()
}

async fn stored_spec(store: &Store, name: &str, v: u64) -> FlowSpec {
    let kv = raw(store, &format!("/flowpipe/flows/{name}/versions/{v}/spec"))
        .await
        .unwrap_or_else(|| panic!("version {v} of {name} is missing"));
    FlowSpec::decode(kv.value.as_slice()).unwrap()
}

/// Every key under a flow's prefix with its mod revision: to prove an operation changed nothing
/// (or only what it should).
async fn snapshot(store: &Store, name: &str) -> Vec<(String, i64)> {
    store
        .range(RangeRequest::prefix(format!("/flowpipe/flows/{name}/")))
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.mod_revision))
        .collect()
}

/// Writes `status` as the controller would.
async fn controller_writes_status(store: &Store, name: &str, status: &FlowStatus) {
    store
        .txn(Txn {
            success: vec![TxnOp::put(
                format!("/flowpipe/flows/{name}/status"),
                status.encode_to_vec(),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
}

// ---- CreateFlow -----------------------------------------------------------------------------

async fn create_new_name_gets_version_1(store: Store) {
    let r = registry(&store);
    let f = create(&r, two_stage("orders", 2)).await.unwrap();
    assert_eq!(
        (f.name.as_str(), f.version, f.latest_version),
        ("orders", 1, 1)
    );
    assert!(!f.uid.is_empty());
    assert!(f.create_time.is_some() && f.update_time == f.create_time);
    let s = f.spec.unwrap();
    assert_eq!((s.name.as_str(), s.version), ("orders", 1));
    assert_eq!(s.queues[0].capacity, 128, "default applied");
    assert_eq!(f.status, Some(FlowStatus::default()));

    // Stored exactly as contract A.4 / B.3 say.
    assert_eq!(
        raw(&store, "/flowpipe/flows/orders/active")
            .await
            .unwrap()
            .value,
        b"1"
    );
    assert_eq!(stored_spec(&store, "orders", 1).await, s);
    let meta = raw_json(&store, "/flowpipe/flows/orders/meta").await;
    assert_eq!(meta["uid"], f.uid);
    assert_eq!(meta["deleted"], false);
    assert_eq!(meta["labels"], json!({"team": "data"}));
    assert_eq!(meta["latest_version"], 1);
    assert!(meta["created_at"].as_str().unwrap().ends_with('Z'));
    let vmeta = raw_json(&store, "/flowpipe/flows/orders/versions/1/meta").await;
    assert_eq!(vmeta["created_at"], meta["created_at"]);
    assert!(
        raw(&store, "/flowpipe/flows/orders/status").await.is_none(),
        "status never written"
    );
}

async fn create_validates_and_writes_nothing_on_error(store: Store) {
    let r = registry(&store);
    let bad = spec(json!({"name": "bad", "queues": [{"name": "q"}],
        "stages": [{"name": "s", "type": "", "threads": 0, "inputQueue": "nope"}]}));
    let e = create(&r, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<_> = e.violations().iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "stages[0].type",
            "stages[0].threads",
            "stages[0].input_queue"
        ]
    );
    assert!(snapshot(&store, "bad").await.is_empty());
}

async fn create_refuses_a_client_version(store: Store) {
    let r = registry(&store);
    let mut s = two_stage("v", 1);
    s.version = 5;
    let e = create(&r, s).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.violations()[0].field, "version");
}

async fn create_of_an_equal_spec_is_idempotent(store: Store) {
    let r = registry(&store);
    let first = create(&r, two_stage("same", 2)).await.unwrap();
    let before = snapshot(&store, "same").await;
    // Equal after defaults: capacity 0 (default) and 128 are the same spec.
    let mut again = two_stage("same", 2);
    again.queues[0].capacity = 128;
    let second = create(&r, again).await.unwrap();
    assert_eq!(second.version, 1);
    assert_eq!(second.uid, first.uid);
    assert_eq!(second.spec, first.spec);
    assert_eq!(snapshot(&store, "same").await, before, "nothing written");
}

async fn create_of_a_different_spec_on_a_live_name_is_already_exists(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("taken", 1)).await.unwrap();
    let e = create(&r, two_stage("taken", 9)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.reason(), "FLOW_ALREADY_EXISTS");
    assert!(e.message().contains("taken"));
}

async fn delete_then_create_continues_versions_with_a_new_uid(store: Store) {
    let r = registry(&store);
    let v1 = create(&r, two_stage("phoenix", 1)).await.unwrap();
    update(&r, "phoenix", two_stage("phoenix", 2))
        .await
        .unwrap();
    r.delete("phoenix").await.unwrap();
    let v2_before = raw(&store, "/flowpipe/flows/phoenix/versions/2/spec")
        .await
        .unwrap();

    let again = create(&r, two_stage("phoenix", 1)).await.unwrap();
    assert_eq!((again.version, again.latest_version), (3, 3));
    assert_ne!(again.uid, v1.uid, "a new incarnation gets a new uid");
    assert_ne!(again.create_time, v1.create_time);
    // Old versions are neither overwritten nor reused.
    let v2_after = raw(&store, "/flowpipe/flows/phoenix/versions/2/spec")
        .await
        .unwrap();
    assert_eq!(v2_after, v2_before);
    assert_eq!(stored_spec(&store, "phoenix", 1).await.version, 1);
    let meta = raw_json(&store, "/flowpipe/flows/phoenix/meta").await;
    assert_eq!(meta["deleted"], false);
    assert!(meta.get("deleted_at").is_none());
    assert_eq!(r.get("phoenix").await.unwrap().version, 3);
}

async fn create_validate_only_writes_nothing(store: Store) {
    let r = registry(&store);
    let f = r
        .create(CreateFlowRequest {
            spec: Some(two_stage("dry", 1)),
            validate_only: true,
        })
        .await
        .unwrap();
    assert_eq!(f.version, 1);
    assert_eq!(f.spec.unwrap().queues[0].capacity, 128);
    assert!(snapshot(&store, "dry").await.is_empty());
    assert_eq!(r.get("dry").await.unwrap_err().code(), Code::NotFound);
}

// ---- UpdateFlow -----------------------------------------------------------------------------

async fn update_writes_the_next_version(store: Store) {
    let r = registry(&store);
    let v1 = create(&r, two_stage("up", 1)).await.unwrap();
    let v2 = update(&r, "up", two_stage("", 4)).await.unwrap();
    assert_eq!((v2.version, v2.latest_version), (2, 2));
    assert_eq!(v2.uid, v1.uid);
    assert_eq!(v2.create_time, v1.create_time);
    let s2 = stored_spec(&store, "up", 2).await;
    assert_eq!(
        (s2.name.as_str(), s2.version, s2.stages[0].threads),
        ("up", 2, 4)
    );
    assert_eq!(
        stored_spec(&store, "up", 1).await,
        v1.spec.unwrap(),
        "v1 untouched"
    );
    assert_eq!(
        raw(&store, "/flowpipe/flows/up/active")
            .await
            .unwrap()
            .value,
        b"2"
    );
}

async fn update_of_an_equal_spec_creates_no_version(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("eq", 1)).await.unwrap();
    let before = snapshot(&store, "eq").await;
    let f = update(&r, "eq", two_stage("eq", 1)).await.unwrap();
    assert_eq!(f.version, 1);
    assert_eq!(snapshot(&store, "eq").await, before);
}

async fn update_needs_a_live_flow(store: Store) {
    let r = registry(&store);
    let e = update(&r, "ghost", two_stage("ghost", 1))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.reason()), (Code::NotFound, "FLOW_NOT_FOUND"));
    create(&r, two_stage("gone", 1)).await.unwrap();
    r.delete("gone").await.unwrap();
    let e = update(&r, "gone", two_stage("gone", 2)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// `flowctl update --name a1 b1.yaml`: the request's name wins, the stored spec gets it, and no
/// other flow is touched (contract B.4).
async fn update_takes_the_requests_name(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("a1", 1)).await.unwrap();
    let f = update(&r, "a1", two_stage("b1", 2)).await.unwrap();
    assert_eq!((f.name.as_str(), f.version), ("a1", 2));
    assert_eq!(f.spec.as_ref().unwrap().name, "a1");
    assert_eq!(stored_spec(&store, "a1", 2).await.name, "a1");
    assert_eq!(r.get("b1").await.unwrap_err().code(), Code::NotFound);
    // An empty name, or one that is not even a valid flow name, is just as ignored.
    let f = update(&r, "a1", two_stage("", 3)).await.unwrap();
    assert_eq!(f.spec.unwrap().name, "a1");
    let f = update(&r, "a1", two_stage("../Not_A_Name", 4))
        .await
        .unwrap();
    assert_eq!((f.version, f.spec.unwrap().name.as_str()), (4, "a1"));
}

async fn update_version_precondition(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("pre", 1)).await.unwrap();
    update(&r, "pre", two_stage("pre", 2)).await.unwrap();
    // spec.version must equal the active version.
    let mut stale = two_stage("pre", 3);
    stale.version = 1;
    let e = update(&r, "pre", stale).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(
        e.message().contains("version 2") && e.message().contains("version 1"),
        "{e}"
    );
    let mut fresh = two_stage("pre", 3);
    fresh.version = 2;
    assert_eq!(update(&r, "pre", fresh).await.unwrap().version, 3);
    // The precondition as REST's If-Match sets it (REST folds the header into spec.version).
    let req = |v, expected| UpdateFlowRequest {
        name: "pre".into(),
        spec: Some(FlowSpec {
            version: expected,
            ..two_stage("pre", v)
        }),
        validate_only: false,
    };
    assert_eq!(r.update(req(4, 2)).await.unwrap_err().code(), Code::Aborted);
    assert_eq!(r.update(req(4, 3)).await.unwrap().version, 4);
}

async fn update_after_rollback_never_overwrites_a_version(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("rb", 1)).await.unwrap();
    update(&r, "rb", two_stage("rb", 2)).await.unwrap();
    let v2 = raw(&store, "/flowpipe/flows/rb/versions/2/spec")
        .await
        .unwrap();
    r.rollback("rb", 1).await.unwrap();
    let v3 = update(&r, "rb", two_stage("rb", 7)).await.unwrap();
    assert_eq!((v3.version, v3.latest_version), (3, 3));
    assert_eq!(
        raw(&store, "/flowpipe/flows/rb/versions/2/spec")
            .await
            .unwrap(),
        v2
    );
    assert_eq!(stored_spec(&store, "rb", 3).await.stages[0].threads, 7);
    // Updating to the spec of the version rolled away from is a new version too.
    let v4 = update(&r, "rb", two_stage("rb", 2)).await.unwrap();
    assert_eq!(v4.version, 4);
}

async fn update_validate_only_writes_nothing(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("vo", 1)).await.unwrap();
    let before = snapshot(&store, "vo").await;
    let f = r
        .update(UpdateFlowRequest {
            name: "vo".into(),
            spec: Some(two_stage("vo", 5)),
            validate_only: true,
        })
        .await
        .unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(snapshot(&store, "vo").await, before);
}

// ---- RollbackFlow ---------------------------------------------------------------------------

async fn rollback_moves_only_the_pointer(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("ptr", 1)).await.unwrap();
    let v2 = update(&r, "ptr", two_stage("ptr", 2)).await.unwrap();
    let before = snapshot(&store, "ptr").await;
    let meta_before = raw_json(&store, "/flowpipe/flows/ptr/meta").await;

    let f = r.rollback("ptr", 1).await.unwrap();
    assert_eq!((f.version, f.latest_version), (1, 2));
    assert_eq!(f.spec.unwrap().stages[0].threads, 1);
    assert_eq!(f.uid, v2.uid);
    let after = snapshot(&store, "ptr").await;
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        changed,
        ["active", "meta"],
        "only the pointer and meta move"
    );
    assert_eq!(before.len(), after.len());
    let meta_after = raw_json(&store, "/flowpipe/flows/ptr/meta").await;
    assert_ne!(meta_after["updated_at"], meta_before["updated_at"]);
    for k in ["uid", "created_at", "labels", "deleted", "latest_version"] {
        assert_eq!(meta_after[k], meta_before[k], "meta {k}");
    }
    // Later updates continue from latest_version + 1.
    assert_eq!(
        update(&r, "ptr", two_stage("ptr", 9))
            .await
            .unwrap()
            .version,
        3
    );
}

async fn rollback_to_the_active_version_is_a_no_op(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("noop", 1)).await.unwrap();
    let before = snapshot(&store, "noop").await;
    assert_eq!(r.rollback("noop", 1).await.unwrap().version, 1);
    assert_eq!(snapshot(&store, "noop").await, before);
}

async fn rollback_needs_a_live_flow_and_an_existing_version(store: Store) {
    let r = registry(&store);
    assert_eq!(
        r.rollback("nobody", 1).await.unwrap_err().code(),
        Code::NotFound
    );
    create(&r, two_stage("few", 1)).await.unwrap();
    let e = r.rollback("few", 7).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::NotFound, "FLOW_VERSION_NOT_FOUND")
    );
    assert_eq!(
        r.rollback("few", 0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    r.delete("few").await.unwrap();
    assert_eq!(
        r.rollback("few", 1).await.unwrap_err().code(),
        Code::NotFound
    );
}

// ---- DeleteFlow -----------------------------------------------------------------------------

async fn delete_keeps_history_and_status(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("del", 1)).await.unwrap();
    update(&r, "del", two_stage("del", 2)).await.unwrap();
    let status = FlowStatus {
        state: FlowState::Running as i32,
        active_version: 2,
        ..Default::default()
    };
    controller_writes_status(&store, "del", &status).await;
    let status_kv = raw(&store, "/flowpipe/flows/del/status").await.unwrap();

    r.delete("del").await.unwrap();
    assert!(raw(&store, "/flowpipe/flows/del/active").await.is_none());
    let meta = raw_json(&store, "/flowpipe/flows/del/meta").await;
    assert_eq!(meta["deleted"], true);
    assert!(meta["deleted_at"].as_str().unwrap().ends_with('Z'));
    for v in [1, 2] {
        assert_eq!(
            stored_spec(&store, "del", v).await.version,
            v,
            "versions stay"
        );
    }
    assert_eq!(
        raw(&store, "/flowpipe/flows/del/status").await.unwrap(),
        status_kv
    );

    for e in [
        r.get("del").await.unwrap_err(),
        r.status("del").await.unwrap_err(),
        r.list_versions("del", 0, "").await.unwrap_err(),
        r.get_version("del", 1).await.map(|(f, _)| f).unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e}");
    }
}

/// Deleting a deleted flow succeeds and writes nothing (`flowctl stop` twice, retried deletes);
/// a name that never existed stays NOT_FOUND (contract B.4).
async fn deleting_twice_succeeds_and_writes_nothing(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("twice", 1)).await.unwrap();
    r.delete("twice").await.unwrap();
    let before = keys_under(&store, "/flowpipe/flows/twice/").await;
    r.delete("twice").await.unwrap();
    r.delete("twice").await.unwrap();
    assert_eq!(
        keys_under(&store, "/flowpipe/flows/twice/").await,
        before,
        "nothing written"
    );
    assert_eq!(r.delete("never").await.unwrap_err().code(), Code::NotFound);
    // Versions without meta (data another writer left): the flow existed.
    store
        .txn(Txn {
            success: vec![TxnOp::put(
                "/flowpipe/flows/orphan/versions/1/spec",
                two_stage("orphan", 1).encode_to_vec(),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    let before = keys_under(&store, "/flowpipe/flows/orphan/").await;
    r.delete("orphan").await.unwrap();
    assert_eq!(
        keys_under(&store, "/flowpipe/flows/orphan/").await,
        before,
        "nothing written"
    );
}

// ---- GetFlow / GetFlowStatus ----------------------------------------------------------------

/// After a delete and a re-create, the controller's status of the previous incarnation is hidden
/// (reported empty) by GetFlow, GetFlowStatus and ListFlows, and the key stays byte-identical
/// until the controller writes again (contract B.4, "Stale status").
async fn a_previous_incarnations_status_is_hidden(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("again", 1)).await.unwrap();
    let running = FlowStatus {
        state: FlowState::Running as i32,
        active_version: 1,
        ..Default::default()
    };
    controller_writes_status(&store, "again", &running).await;
    assert_eq!(r.status("again").await.unwrap(), running);
    r.delete("again").await.unwrap();
    let stale_kv = raw(&store, "/flowpipe/flows/again/status").await.unwrap();

    let created = create(&r, two_stage("again", 2)).await.unwrap();
    assert_eq!(created.version, 2);
    assert_eq!(
        created.status,
        Some(FlowStatus::default()),
        "create's answer"
    );
    assert_eq!(
        r.get("again").await.unwrap().status,
        Some(FlowStatus::default())
    );
    assert_eq!(r.status("again").await.unwrap(), FlowStatus::default());
    let listed = r.list(0, "").await.unwrap();
    let summary = listed.flows.iter().find(|f| f.name == "again").unwrap();
    assert_eq!(summary.status, Some(FlowStatus::default()));
    // Writes of this incarnation keep hiding it, and never touch the key.
    update(&r, "again", two_stage("again", 3)).await.unwrap();
    assert_eq!(r.status("again").await.unwrap(), FlowStatus::default());
    r.rollback("again", 2).await.unwrap();
    assert_eq!(
        r.get("again").await.unwrap().status,
        Some(FlowStatus::default())
    );
    assert_eq!(
        raw(&store, "/flowpipe/flows/again/status").await.unwrap(),
        stale_kv
    );

    // The controller's first word on this incarnation is shown.
    let deploying = FlowStatus {
        state: FlowState::Deploying as i32,
        active_version: 2,
        ..Default::default()
    };
    controller_writes_status(&store, "again", &deploying).await;
    assert_eq!(r.status("again").await.unwrap(), deploying);
    assert_eq!(
        r.get("again").await.unwrap().status,
        Some(deploying.clone())
    );
    let listed = r.list(0, "").await.unwrap();
    let summary = listed.flows.iter().find(|f| f.name == "again").unwrap();
    assert_eq!(summary.status, Some(deploying));
}

async fn get_and_status_read_what_the_controller_wrote(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("st", 1)).await.unwrap();
    assert_eq!(r.status("st").await.unwrap(), FlowStatus::default());
    let status = FlowStatus {
        state: FlowState::Running as i32,
        message: "2/2 pods ready".into(),
        active_version: 1,
        workload: "deployment/st".into(),
        last_updated: Some(flowpipe_core::proto::wkt::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
    };
    controller_writes_status(&store, "st", &status).await;
    let status_kv = raw(&store, "/flowpipe/flows/st/status").await.unwrap();
    assert_eq!(r.status("st").await.unwrap(), status);
    let f = r.get("st").await.unwrap();
    assert_eq!(f.status.as_ref(), Some(&status));
    assert_eq!(f.version, 1);

    // No operation ever writes status.
    update(&r, "st", two_stage("st", 2)).await.unwrap();
    r.rollback("st", 1).await.unwrap();
    update(&r, "st", two_stage("st", 3)).await.unwrap();
    r.delete("st").await.unwrap();
    create(&r, two_stage("st", 4)).await.unwrap();
    assert_eq!(
        raw(&store, "/flowpipe/flows/st/status").await.unwrap(),
        status_kv
    );
    assert_eq!(r.get("unknown").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        r.get("Not_A_Name").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

async fn a_corrupt_status_is_internal_not_a_panic(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("cs", 1)).await.unwrap();
    store
        .txn(Txn {
            success: vec![TxnOp::put(
                "/flowpipe/flows/cs/status",
                vec![0xff, 0xff, 0xff],
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.status("cs").await.unwrap_err().code(), Code::Internal);
}

// ---- ListFlows ------------------------------------------------------------------------------

async fn list_flows_in_name_order_across_pages(store: Store) {
    let r = registry(&store);
    // Names whose etcd key order differs from name order ("a-b/" sorts before "a/").
    let names = [
        "b", "a-b-c", "a", "a-b", "a-c", "flow", "flow-1", "flow-10", "flow-2", "z9", "a-b-c-d",
        "dead",
    ];
    for n in names {
        create(&r, two_stage(n, 1)).await.unwrap();
    }
    update(&r, "flow-2", two_stage("flow-2", 3)).await.unwrap();
    r.delete("dead").await.unwrap();
    let mut expected: Vec<&str> = names.iter().copied().filter(|n| *n != "dead").collect();
    expected.sort();

    for page_size in [1, 2, 3, 5, 100] {
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = r.list(page_size, &token).await.unwrap();
            assert!(page.flows.len() <= page_size as usize);
            seen.extend(page.flows.iter().map(|f| f.name.clone()));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, expected, "page size {page_size}");
    }
    let all = r.list(0, "").await.unwrap();
    let f2 = all.flows.iter().find(|f| f.name == "flow-2").unwrap();
    assert_eq!(f2.version, 2);
    assert_eq!(f2.status, Some(FlowStatus::default()));
}

async fn list_flows_pages_read_the_first_pages_snapshot(store: Store) {
    let r = registry(&store);
    for n in ["m1", "m2", "m3"] {
        create(&r, two_stage(n, 1)).await.unwrap();
    }
    let first = r.list(1, "").await.unwrap();
    assert_eq!(first.flows[0].name, "m1");
    // Changes after the first page are not seen by the later pages.
    create(&r, two_stage("m2a", 1)).await.unwrap();
    r.delete("m3").await.unwrap();
    update(&r, "m2", two_stage("m2", 5)).await.unwrap();
    let rest = r.list(10, &first.next_page_token).await.unwrap();
    let names: Vec<_> = rest.flows.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["m2", "m3"]);
    assert_eq!(rest.flows[0].version, 1);
    assert!(rest.next_page_token.is_empty());
}

async fn list_flows_rejects_bad_page_parameters(store: Store) {
    let r = registry(&store);
    assert_eq!(
        r.list(-1, "").await.unwrap_err().violations()[0].field,
        "page_size"
    );
    for token in ["garbage", "eyJrIjoiZmxvd3MiLCJyIjoxLCJhIjoiLi4vZXRjIn0"] {
        let e = r.list(10, token).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{token}");
        assert_eq!(e.violations()[0].field, "page_token");
    }
    assert!(r.list(0, "").await.unwrap().flows.is_empty());
    assert!(r.list(5000, "").await.unwrap().next_page_token.is_empty());
}

// ---- ListFlowVersions / GetFlowVersion ------------------------------------------------------

async fn versions_are_listed_ascending_and_paginated(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("hist", 1)).await.unwrap();
    for t in 2..=12 {
        update(&r, "hist", two_stage("hist", t)).await.unwrap();
    }
    r.rollback("hist", 4).await.unwrap();
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = r.list_versions("hist", 5, &token).await.unwrap();
        all.extend(page.versions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let numbers: Vec<u64> = all.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
    let active: Vec<u64> = all.iter().filter(|v| v.active).map(|v| v.version).collect();
    assert_eq!(active, [4]);
    assert!(all.iter().all(|v| v.create_time.is_some()));
    let e = r.list_versions("hist", 5, "x").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A token of another flow's listing is refused.
    create(&r, two_stage("other", 1)).await.unwrap();
    let t = r
        .list_versions("hist", 1, "")
        .await
        .unwrap()
        .next_page_token;
    assert_eq!(
        r.list_versions("other", 1, &t).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

async fn get_version_returns_that_spec_without_status(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("gv", 1)).await.unwrap();
    update(&r, "gv", two_stage("gv", 2)).await.unwrap();
    let (f, active) = r.get_version("gv", 1).await.unwrap();
    assert_eq!(active.get(), 2);
    assert_eq!(f.version, 1);
    assert_eq!(f.latest_version, 2);
    assert_eq!(f.spec.unwrap().stages[0].threads, 1);
    assert_eq!(f.status, None);
    let e = r.get_version("gv", 3).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Code::NotFound, "FLOW_VERSION_NOT_FOUND")
    );
}

async fn forged_version_tokens_are_harmless(store: Store) {
    let r = registry(&store);
    create(&r, two_stage("forged", 1)).await.unwrap();
    let real = r.list_versions("forged", 1, "").await.unwrap();
    assert!(real.next_page_token.is_empty());
    update(&r, "forged", two_stage("forged", 2)).await.unwrap();
    let page = r.list_versions("forged", 1, "").await.unwrap();
    // Same listing and revision, but a position past every version (u64::MAX).
    let token: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &page.next_page_token,
        )
        .unwrap(),
    )
    .unwrap();
    let mut forged = token.clone();
    forged["a"] = json!(u64::MAX.to_string());
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        forged.to_string(),
    );
    let empty = r.list_versions("forged", 1, &forged).await.unwrap();
    assert!(empty.versions.is_empty() && empty.next_page_token.is_empty());
}

/// What the original (Go) API left in etcd: meta without `latest_version` and with
/// `"labels": null`, versions without `versions/<n>/meta`, specs encoded with map entries out of
/// order and without defaults applied, and a flow whose name this API would refuse.
async fn data_written_by_the_original_api(store: Store) {
    let put = |k: String, v: Vec<u8>| TxnOp::put(k, v);
    // The spec as the Go API stored it: capacity 0 (no default), labels {"z","a"} in that order.
    let go_spec = |name: &str, v: u64| {
        let base = FlowSpec {
            name: name.into(),
            version: v,
            queues: vec![flowpipe_core::proto::v1::QueueSpec {
                name: "q".into(),
                capacity: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let label = |k: &str, val: &str| FlowSpec {
            labels: [(k.to_string(), val.to_string())].into(),
            ..Default::default()
        };
        [
            base.encode_to_vec(),
            label("z", "1").encode_to_vec(),
            label("a", "2").encode_to_vec(),
        ]
        .concat()
    };
    let go_meta =
        br#"{"uid":"go-uid","created_at":"2024-01-02T03:04:05Z","labels":null,"deleted":false}"#;
    let mut ops = vec![
        put("/flowpipe/flows/legacy/active".into(), b"2".to_vec()),
        put("/flowpipe/flows/legacy/meta".into(), go_meta.to_vec()),
        put(
            "/flowpipe/flows/legacy/versions/1/spec".into(),
            go_spec("legacy", 1),
        ),
        put(
            "/flowpipe/flows/legacy/versions/2/spec".into(),
            go_spec("legacy", 2),
        ),
        put(
            "/flowpipe/flows/legacy/versions/3/spec".into(),
            go_spec("legacy", 3),
        ),
    ];
    // A flow name this API refuses (upper case sorts before every valid name), with many
    // versions: listing must step over it.
    ops.push(put("/flowpipe/flows/Old_Flow/active".into(), b"1".to_vec()));
    ops.push(put(
        "/flowpipe/flows/Old_Flow/meta".into(),
        go_meta.to_vec(),
    ));
    for v in 1..=30 {
        ops.push(put(
            format!("/flowpipe/flows/Old_Flow/versions/{v}/spec"),
            go_spec("Old_Flow", v),
        ));
    }
    for chunk in ops.chunks(50) {
        store
            .txn(Txn {
                success: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let r = registry(&store);
    create(&r, two_stage("modern", 1)).await.unwrap();

    let f = r.get("legacy").await.unwrap();
    assert_eq!((f.version, f.uid.as_str()), (2, "go-uid"));
    let listed: Vec<String> = r
        .list(1, "")
        .await
        .unwrap()
        .flows
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        listed,
        ["legacy"],
        "the page after the refused name is not empty"
    );
    let all: Vec<String> = r
        .list(0, "")
        .await
        .unwrap()
        .flows
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(all, ["legacy", "modern"]);

    // The same spec, canonical and with defaults: no new version, for update and create.
    let same = FlowSpec {
        name: "legacy".into(),
        labels: [("a".into(), "2".into()), ("z".into(), "1".into())].into(),
        queues: vec![flowpipe_core::proto::v1::QueueSpec {
            name: "q".into(),
            capacity: 128,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(update(&r, "legacy", same.clone()).await.unwrap().version, 2);
    assert_eq!(create(&r, same.clone()).await.unwrap().version, 2);
    assert!(
        raw(&store, "/flowpipe/flows/legacy/versions/4/spec")
            .await
            .is_none()
    );
    // A real change continues after the highest version ever written (3, found by scanning).
    let mut changed = same;
    changed.labels.insert("new".into(), "x".into());
    let f = update(&r, "legacy", changed).await.unwrap();
    assert_eq!(
        (f.version, f.latest_version, f.uid.as_str()),
        (4, 4, "go-uid")
    );
    let meta = raw_json(&store, "/flowpipe/flows/legacy/meta").await;
    assert_eq!(meta["latest_version"], 4);
    assert_eq!(meta["created_at"], "2024-01-02T03:04:05Z");
    // Versions without their meta are listed, without a creation time.
    let versions = r.list_versions("legacy", 0, "").await.unwrap().versions;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(versions[0].create_time.is_none() && versions[3].create_time.is_some());
    // Rolling back to an old version and "updating" to its own spec is still no new version.
    r.rollback("legacy", 1).await.unwrap();
    let mut v1 = FlowSpec::decode(go_spec("legacy", 1).as_slice()).unwrap();
    v1.version = 0;
    v1.queues[0].capacity = 128;
    assert_eq!(update(&r, "legacy", v1).await.unwrap().version, 1);
}

// ---- Schema registry ------------------------------------------------------------------------

async fn schemas_are_versioned_like_flows(store: Store) {
    let s = flowpipe_core::SchemaRegistry::new(store.clone(), SystemEnvironment);
    let def = |raw: &str| SchemaDefinition {
        schema_id: "orders".into(),
        version: 0,
        format: 4,
        raw_schema: raw.as_bytes().to_vec(),
    };
    let v1 = s.create(Some(def("{\"a\":1}"))).await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(
        s.create(Some(def("{\"a\":1}"))).await.unwrap().version,
        1,
        "idempotent"
    );
    assert_eq!(s.create(Some(def("{\"a\":2}"))).await.unwrap().version, 2);
    assert_eq!(s.get("orders", 1).await.unwrap(), v1);
    assert_eq!(s.get("orders", 0).await.unwrap().version, 2, "0 = newest");
    let stored = raw_json(&store, "/flowpipe/schemas/orders/versions/1").await;
    assert_eq!(
        stored,
        json!({"schema_id": "orders", "version": 1, "format": 4, "raw_schema": "eyJhIjoxfQ=="})
    );
    assert_eq!(
        raw(&store, "/flowpipe/schemas/orders/active")
            .await
            .unwrap()
            .value,
        b"2"
    );
    assert_eq!(s.list_versions("orders").await.unwrap().schemas.len(), 2);
    s.delete("orders").await.unwrap();
    assert_eq!(s.get("orders", 1).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(s.get("orders", 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        s.list_versions("orders").await.unwrap_err().code(),
        Code::NotFound
    );
    // Deleting it again succeeds and writes nothing; an id that never existed is NOT_FOUND.
    let before = keys_under(&store, "/flowpipe/schemas/orders/").await;
    s.delete("orders").await.unwrap();
    assert_eq!(
        keys_under(&store, "/flowpipe/schemas/orders/").await,
        before,
        "nothing written"
    );
    assert_eq!(s.delete("never").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(s.create(Some(def("{\"a\":3}"))).await.unwrap().version, 3);
    let mut bad = def("");
    bad.version = 9;
    bad.format = 0;
    bad.schema_id = "../x".into();
    let e = s.create(Some(bad)).await.unwrap_err();
    assert_eq!(e.violations().len(), 4, "{e:?}");
}

both!(
    create_new_name_gets_version_1,
    create_validates_and_writes_nothing_on_error,
    create_refuses_a_client_version,
    create_of_an_equal_spec_is_idempotent,
    create_of_a_different_spec_on_a_live_name_is_already_exists,
    delete_then_create_continues_versions_with_a_new_uid,
    create_validate_only_writes_nothing,
    update_writes_the_next_version,
    update_of_an_equal_spec_creates_no_version,
    update_needs_a_live_flow,
    update_takes_the_requests_name,
    update_version_precondition,
    update_after_rollback_never_overwrites_a_version,
    update_validate_only_writes_nothing,
    rollback_moves_only_the_pointer,
    rollback_to_the_active_version_is_a_no_op,
    rollback_needs_a_live_flow_and_an_existing_version,
    delete_keeps_history_and_status,
    deleting_twice_succeeds_and_writes_nothing,
    a_previous_incarnations_status_is_hidden,
    get_and_status_read_what_the_controller_wrote,
    a_corrupt_status_is_internal_not_a_panic,
    list_flows_in_name_order_across_pages,
    list_flows_pages_read_the_first_pages_snapshot,
    list_flows_rejects_bad_page_parameters,
    versions_are_listed_ascending_and_paginated,
    get_version_returns_that_spec_without_status,
    schemas_are_versioned_like_flows,
    forged_version_tokens_are_harmless,
    data_written_by_the_original_api,
);
