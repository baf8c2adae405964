//! README.md's walk-through, run as written with curl against a real server on a real socket
//! (port 0), on both stores: the documentation cannot rot.

use std::process::Command;

use flowpipe_api::server::{Config, Server};
use flowpipe_store::{EtcdConfig, StoreConfig};
use serde_json::Value;

use flowpipe_testkit::stores::{etcd, unique_namespace};

/// The ```bash blocks between the walk-through markers.
fn walkthrough_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(flowpipe_testkit::workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("end marker");
    readme[start..end]
        .split("```bash\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

async fn run_walkthrough(store: StoreConfig) {
    let server = Server::bind(Config::for_tests(store)).await.unwrap();
    let port = server.http_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let blocks = walkthrough_blocks();
    assert!(
        blocks.len() >= 7,
        "walk-through has {} blocks",
        blocks.len()
    );
    let host = format!("127.0.0.1:{port}");
    let mut outputs = Vec::new();
    for block in &blocks {
        let script = format!(
            "set -euo pipefail\n\
             curl() {{ command curl --fail-with-body --silent --show-error \"$@\"; echo; }}\n{}",
            block.replace("localhost:8080", &host)
        );
        let out = tokio::task::spawn_blocking(move || {
            Command::new("bash").arg("-c").arg(&script).output()
        })
        .await
        .unwrap()
        .expect("bash and curl are needed (make test installs curl)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "README block failed:\n{block}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(stdout);
    }
    // Each curl printed one JSON document.
    let docs: Vec<Value> = outputs
        .iter()
        .flat_map(|o| {
            o.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(docs[0]["spec"]["execution"]["mode"], "EXECUTION_MODE_JOB");
    assert_eq!(docs[1]["name"], "orders");
    assert_eq!(docs[2]["version"], "2", "the update made version 2");
    let rollback = docs.iter().rev().nth(1).unwrap();
    assert_eq!(
        (
            rollback["version"].as_str(),
            rollback["latestVersion"].as_str()
        ),
        (Some("1"), Some("2"))
    );
    assert_eq!(
        docs.last().unwrap(),
        &serde_json::json!({}),
        "delete returns {{}}"
    );

    // The server's state is what the walk-through says.
    let client = reqwest::Client::new();
    let orders: Value = client
        .get(format!("http://{host}/v1/flows/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orders["version"], "1");
    let example = client
        .get(format!("http://{host}/v1/flows/example"))
        .send()
        .await
        .unwrap();
    assert_eq!(example.status(), 404);

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    run_walkthrough(StoreConfig::Embedded(dir.path().join("flowpipe.redb"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_on_etcd() {
    let mut config = EtcdConfig::new(etcd().endpoints());
    config.namespace = unique_namespace().into_bytes();
    run_walkthrough(StoreConfig::Etcd(Box::new(config))).await;
}
