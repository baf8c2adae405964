//! The name index of ListFlows (contract B.6) as each entry point builds it when it is missing:
//! `flow-api` at start-up in the background, a Lambda execution environment on its first
//! ListFlows, and an operator with `flow-api index rebuild`.

use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use flowpipe_api::lambda::{EtcdSource, LambdaApp, LambdaConfig};
use flowpipe_api::server::Config;
use flowpipe_core::kv::{Kv, RangeRequest};
use flowpipe_store::{EmbeddedStore, Store, StoreConfig};
use http_body_util::BodyExt;

use flowpipe_testkit::TestServer;
use flowpipe_testkit::stores::{
    etcd, etcd_config_in, etcd_store_in, original_api_flow, unique_namespace,
};

const BIN: &str = env!("CARGO_BIN_EXE_flow-api");
const READY: &str = "/flowpipe/index/flows-ready";

async fn ready(store: &Store) -> bool {
    !store
        .range(RangeRequest::key(READY))
        .await
        .unwrap()
        .kvs
        .is_empty()
}

async fn index_len(store: &Store) -> usize {
    store
        .range(RangeRequest::prefix("/flowpipe/index/flows/").keys_only())
        .await
        .unwrap()
        .kvs
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_builds_the_index_at_startup() {
    let ns = unique_namespace();
    let data = etcd_store_in(&ns);
    for i in 0..20 {
        original_api_flow(&data, &format!("go-{i}"), 2, i == 7).await;
    }
    assert!(!ready(&data).await);
    let config = Config::for_tests(StoreConfig::Etcd(Box::new(etcd_config_in(&ns))));
    let server = TestServer::start(config).await;
    // Readiness does not wait for it...
    let readyz = reqwest::get(format!("http://{}/readyz", server.http))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    // ...and it is built in the background, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(&data).await {
        assert!(Instant::now() < deadline, "no index 30 s after start-up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(index_len(&data).await, 19);
    let list: serde_json::Value = reqwest::get(format!("http://{}/v1/flows", server.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["flows"].as_array().unwrap().len(), 19);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_environment_builds_the_index_on_its_first_list() {
    let ns = unique_namespace();
    let data = etcd_store_in(&ns);
    for i in 0..12 {
        original_api_flow(&data, &format!("go-{i}"), 1, false).await;
    }
    let mut config = LambdaConfig::new(EtcdSource::Endpoints(etcd().endpoints()));
    config.namespace = ns.into_bytes();
    let app = LambdaApp::new(config);
    let get = |path: &str| {
        http::Request::get(path)
            .header("x-request-id", "t")
            .body(Body::empty())
            .unwrap()
    };
    // Another call does not build it: only a ListFlows that finds no index does.
    let r = app.handle(get("/v1/flows/go-1")).await;
    assert_eq!(r.status(), 200);
    assert!(!ready(&data).await);
    let r = app.handle(get("/v1/flows")).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["flows"].as_array().unwrap().len(), 12);
    // Built before that answer was returned: the environment may be frozen right after it.
    assert!(ready(&data).await);
    assert_eq!(index_len(&data).await, 12);
}

#[test]
fn flow_api_index_rebuild_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::embedded(EmbeddedStore::open(dir.path().join("flowpipe.redb")).unwrap());
        for i in 0..5 {
            original_api_flow(&store, &format!("go-{i}"), 1, i == 4).await;
        }
    });
    let out = Command::new(BIN)
        .args(["index", "rebuild", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("indexed 4 flows on embedded store at "),
        "{stdout}"
    );
    assert!(stdout.contains("4 index keys written"), "{stdout}");
    runtime.block_on(async {
        let store = Store::embedded(EmbeddedStore::open(dir.path().join("flowpipe.redb")).unwrap());
        assert!(ready(&store).await);
        assert_eq!(index_len(&store).await, 4);
    });

    // An etcd that does not answer: a failure, said on stderr, and a non-zero exit.
    let nowhere = flowpipe_testkit::RefusedPort::new();
    let out = Command::new(BIN)
        .args([
            "--etcd",
            &nowhere.url(),
            "--etcd-dial-timeout",
            "300ms",
            "index",
            "rebuild",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flow-api: index rebuild failed: ") && stderr.contains("unavailable"),
        "{stderr}"
    );
}
