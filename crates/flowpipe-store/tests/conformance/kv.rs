//! The KV trait's semantics, identical on etcd and the embedded store: what the core relies on.

use flowpipe_core::KvError;
use flowpipe_core::kv::{
    Compare, CompareOp, CompareTarget, Kv, RangeRequest, Txn, TxnOp, TxnOpResponse,
};
use flowpipe_store::Store;

use flowpipe_testkit::both;

async fn put(s: &Store, k: &str, v: &str) -> i64 {
    let r = s
        .txn(Txn {
            success: vec![TxnOp::put(k, v)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.succeeded);
    r.revision
}

async fn revisions_and_versions(s: Store) {
    let r1 = put(&s, "/a", "1").await;
    let r2 = put(&s, "/a", "2").await;
    // Other tests share this etcd's revision counter: only the order is known here.
    assert!(r2 > r1, "every write bumps the revision");
    let got = s.range(RangeRequest::key("/a")).await.unwrap();
    let kv = &got.kvs[0];
    assert_eq!(kv.value, b"2");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert!(got.revision >= r2);

    // A read at r1 sees the old value.
    let old = s
        .range(RangeRequest::key("/a").at_revision(r1))
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b"1");

    // Delete resets create revision and version.
    let d = s
        .txn(Txn {
            success: vec![TxnOp::delete("/a")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d.responses, vec![TxnOpResponse::Delete { deleted: 1 }]);
    assert!(
        s.range(RangeRequest::key("/a"))
            .await
            .unwrap()
            .kvs
            .is_empty()
    );
    let r4 = put(&s, "/a", "3").await;
    let kv = s.range(RangeRequest::key("/a")).await.unwrap().kvs[0].clone();
    assert_eq!((kv.create_revision, kv.version), (r4, 1));

    // A future revision cannot be read.
    let e = s
        .range(RangeRequest::key("/a").at_revision(r4 + 1_000_000_000))
        .await
        .unwrap_err();
    assert!(matches!(e, KvError::RevisionUnavailable(_)), "{e:?}");
}

async fn ranges_limit_count_and_keys_only(s: Store) {
    for k in ["/p/a", "/p/b", "/p/c", "/q"] {
        put(&s, k, "v").await;
    }
    let r = s
        .range(RangeRequest::prefix("/p/").limit(2).keys_only())
        .await
        .unwrap();
    let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, [b"/p/a".to_vec(), b"/p/b".to_vec()]);
    assert!(r.more);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let all = s.range(RangeRequest::prefix("/p/")).await.unwrap();
    assert!(!all.more);
    assert_eq!(all.kvs.len(), 3);
    assert_eq!(all.kvs[0].value, b"v");
}

async fn compares_follow_etcd(s: Store) {
    let rev = put(&s, "/k", "v1").await;
    let check = |c: Compare| {
        let s = s.clone();
        async move {
            s.txn(Txn {
                compare: vec![c],
                ..Default::default()
            })
            .await
            .unwrap()
            .succeeded
        }
    };
    assert!(check(Compare::mod_revision("/k", rev)).await);
    assert!(!check(Compare::mod_revision("/k", rev - 1)).await);
    assert!(check(Compare::absent("/missing")).await);
    assert!(!check(Compare::absent("/k")).await);
    assert!(check(Compare::mod_revision("/missing", 0)).await);
    assert!(check(Compare::value_not("/k", "other")).await);
    assert!(!check(Compare::value_not("/k", "v1")).await);
    // Comparing the value of a missing key is false whatever the operator (etcd semantics).
    assert!(!check(Compare::value_not("/missing", "x")).await);
    assert!(
        check(Compare {
            key: b"/k".to_vec(),
            op: CompareOp::Greater,
            target: CompareTarget::CreateRevision(0),
        })
        .await
    );
    assert!(
        check(Compare {
            key: b"/k".to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(1),
        })
        .await
    );
}

async fn failed_compare_runs_the_else_branch(s: Store) {
    let written = put(&s, "/x", "1").await;
    let r = s
        .txn(Txn {
            compare: vec![Compare::absent("/x")],
            success: vec![TxnOp::put("/x", "2")],
            failure: vec![TxnOp::Range(RangeRequest::key("/x"))],
        })
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.range(0).unwrap().kvs[0].value, b"1");
    // Nothing was written.
    let now = s.range(RangeRequest::key("/x")).await.unwrap();
    assert_eq!(now.kvs[0].value, b"1");
    assert_eq!(now.kvs[0].mod_revision, written);
}

both!(
    revisions_and_versions,
    ranges_limit_count_and_keys_only,
    compares_follow_etcd,
    failed_compare_runs_the_else_branch,
);
