//! The keys and encodings in etcd are exactly contract A.4 and B.3, read back with a plain etcd
//! client (no namespace, no code of ours), as the controller reads them.

use etcd_client::{Client, GetOptions};
use flowpipe_core::FlowRegistry;
use flowpipe_core::proto::v1::{CreateFlowRequest, FlowSpec, UpdateFlowRequest};
use flowpipe_store::{EtcdConfig, Store, StoreConfig};
use flowpipe_testkit::SystemEnvironment;
use prost::Message;

use flowpipe_testkit::stores::etcd;

#[tokio::test]
async fn keys_and_encodings_are_the_contracts() {
    let store = Store::open(StoreConfig::Etcd(Box::new(EtcdConfig::new(
        etcd().endpoints(),
    ))))
    .unwrap();
    let r = FlowRegistry::new(store, SystemEnvironment);
    let name = format!("keys-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let spec: FlowSpec = flowpipe_core::json::decode_flow_spec(
        format!(
            r#"{{"name":"{name}","mode":"JOB","queues":[{{"name":"q"}}],
                "stages":[{{"name":"s","type":"t","threads":1,"outputQueue":"q"}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    r.create(CreateFlowRequest {
        spec: Some(spec.clone()),
        validate_only: false,
    })
    .await
    .unwrap();
    let mut s2 = spec.clone();
    s2.stages[0].threads = 2;
    r.update(UpdateFlowRequest {
        name: name.clone(),
        spec: Some(s2),
        validate_only: false,
    })
    .await
    .unwrap();
    r.rollback(&name, 1).await.unwrap();

    let mut plain = Client::connect(etcd().endpoints(), None).await.unwrap();
    let prefix = format!("/flowpipe/flows/{name}/");
    let resp = plain
        .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<String> = resp
        .kvs()
        .iter()
        .map(|kv| {
            kv.key_str()
                .unwrap()
                .trim_start_matches(&prefix)
                .to_string()
        })
        .collect();
    assert_eq!(
        keys,
        [
            "active",
            "meta",
            "versions/1/meta",
            "versions/1/spec",
            "versions/2/meta",
            "versions/2/spec"
        ]
    );
    let value = |k: &str| {
        resp.kvs()
            .iter()
            .find(|kv| kv.key_str().unwrap() == format!("{prefix}{k}"))
            .unwrap()
            .value()
            .to_vec()
    };
    assert_eq!(value("active"), b"1", "decimal ASCII");
    for v in [1u64, 2] {
        let s = FlowSpec::decode(value(&format!("versions/{v}/spec")).as_slice()).unwrap();
        assert_eq!((s.name.as_str(), s.version), (name.as_str(), v));
        assert_eq!(u64::from(s.stages[0].threads), v);
        let m: serde_json::Value =
            serde_json::from_slice(&value(&format!("versions/{v}/meta"))).unwrap();
        assert!(m["created_at"].is_string());
    }
    let meta: serde_json::Value = serde_json::from_slice(&value("meta")).unwrap();
    for k in ["uid", "created_at", "updated_at"] {
        assert!(meta[k].is_string(), "meta.{k}");
    }
    assert!(meta["labels"].is_object());
    assert_eq!(meta["deleted"], false);
    assert_eq!(meta["latest_version"], 2);

    // The name index (contract B.6): the flow's uid under /flowpipe/index/flows/<name>.
    let index = plain
        .get(format!("/flowpipe/index/flows/{name}"), None)
        .await
        .unwrap();
    assert_eq!(
        index.kvs()[0].value(),
        meta["uid"].as_str().unwrap().as_bytes()
    );
}

/// The backfill's marker and keys, read back with a plain etcd client (in a namespace of their
/// own, since other tests share this etcd's root).
#[tokio::test]
async fn the_index_marker_is_the_contracts() {
    let ns = flowpipe_testkit::stores::unique_namespace();
    let store = flowpipe_testkit::stores::etcd_store_in(&ns);
    let r = FlowRegistry::new(store, SystemEnvironment);
    r.ensure_index().await.unwrap();
    let mut plain = Client::connect(etcd().endpoints(), None).await.unwrap();
    let ready = plain
        .get(format!("{ns}/flowpipe/index/flows-ready"), None)
        .await
        .unwrap();
    assert_eq!(ready.kvs()[0].value(), b"1");
}
