//! Many writers, two API replicas, one flow, real etcd: every update gets its own version, none
//! is lost or duplicated, and what was acknowledged is what is stored.

use std::collections::BTreeMap;

use flowpipe_core::kv::{Kv, RangeRequest};
use flowpipe_core::proto::v1::{CreateFlowRequest, FlowSpec, UpdateFlowRequest};
use prost::Message;

use flowpipe_testkit::stores::{etcd_store_in, registry, unique_namespace};

const WRITERS: usize = 32;
const UPDATES: usize = 20;

fn spec(writer: usize, seq: usize) -> FlowSpec {
    FlowSpec {
        name: "contended".into(),
        labels: [
            ("writer".to_string(), writer.to_string()),
            ("seq".to_string(), seq.to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_two_replicas_get_contiguous_versions() {
    let ns = unique_namespace();
    // Two independent stores (own etcd clients) on one keyspace: two API replicas.
    let replicas = [etcd_store_in(&ns), etcd_store_in(&ns)];
    let first = registry(&replicas[0]);
    first
        .create(CreateFlowRequest {
            spec: Some(spec(usize::MAX, 0)),
            validate_only: false,
        })
        .await
        .unwrap();

    // One registry per replica, as each API process has one (its writes to a flow queue behind
    // one in-process lock): the race is between the replicas, as in production. (A registry
    // per writer would make 32 replicas race, where ABORTED after the bounded retries is a
    // correct answer, not a failure.)
    let registries: Vec<_> = replicas
        .iter()
        .map(|s| std::sync::Arc::new(registry(s)))
        .collect();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let r = std::sync::Arc::clone(&registries[w % 2]);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for seq in 0..UPDATES {
                let mut s = spec(w, seq);
                s.name.clear();
                let f = r
                    .update(UpdateFlowRequest {
                        name: "contended".into(),
                        spec: Some(s),
                        validate_only: false,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("writer {w} update {seq}: {e}"));
                acked.push((f.version, w, seq));
            }
            acked
        }));
    }
    let mut acked: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for t in tasks {
        for (v, w, seq) in t.await.unwrap() {
            assert!(
                acked.insert(v, (w, seq)).is_none(),
                "version {v} acknowledged twice"
            );
        }
    }

    let total = (WRITERS * UPDATES + 1) as u64;
    let versions: Vec<u64> = acked.keys().copied().collect();
    assert_eq!(
        versions,
        (2..=total).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );

    // Every acknowledged version is stored with exactly the spec its writer sent.
    let store = &replicas[1];
    for (v, (w, seq)) in &acked {
        let kv = store
            .range(RangeRequest::key(format!(
                "/flowpipe/flows/contended/versions/{v}/spec"
            )))
            .await
            .unwrap()
            .kvs
            .pop()
            .unwrap_or_else(|| panic!("acknowledged version {v} is not readable"));
        let stored = FlowSpec::decode(kv.value.as_slice()).unwrap();
        assert_eq!(stored.labels["writer"], w.to_string(), "version {v}");
        assert_eq!(stored.labels["seq"], seq.to_string(), "version {v}");
        assert_eq!(stored.version, *v);
    }
    // No version beyond the last acknowledged one, and it is the active one.
    let beyond = store
        .range(RangeRequest::key(format!(
            "/flowpipe/flows/contended/versions/{}/spec",
            total + 1
        )))
        .await
        .unwrap();
    assert!(beyond.kvs.is_empty());
    let flow = registry(store).get("contended").await.unwrap();
    assert_eq!((flow.version, flow.latest_version), (total, total));
}
