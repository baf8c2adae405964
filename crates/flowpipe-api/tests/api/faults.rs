//! Fault tests: a 3-member etcd cluster under continuous concurrent updates through the REST API
//! while members die. Throughout: no 2xx for a write that is not durable (every acknowledged
//! version is read back with its exact spec at the end), versions stay contiguous, failures during
//! outages are 503 (never 500, never a hang past the request timeout), and the API recovers by
//! itself, without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flowpipe_api::server::Config;
use flowpipe_store::{EtcdConfig, StoreConfig};
use flowpipe_testkit::EtcdCluster;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use flowpipe_testkit::TestServer;

const WRITERS: usize = 4;
/// The API's own request timeout; a client waiting longer than this (plus slack) saw a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Default)]
struct Outcomes {
    /// Per flow: acknowledged version → the `seq` label its spec carried.
    acked: BTreeMap<String, BTreeMap<u64, u64>>,
    /// HTTP status → count, for every non-2xx answer.
    failures: BTreeMap<u16, usize>,
    /// Requests that got no answer within the request timeout.
    hangs: usize,
}

fn spec(seq: u64) -> Value {
    json!({
        "labels": {"seq": seq.to_string()},
        "queues": [{"name": "q"}],
        "stages": [{"name": "s", "type": "t", "threads": 1, "outputQueue": "q"}]
    })
}

/// Updates `flow` with a new spec (a new `seq`) over and over until `stop`.
async fn writer(
    http: reqwest::Client,
    base: String,
    flow: String,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Outcomes>>,
) {
    let mut seq = 1;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let started = Instant::now();
        let resp = http
            .put(format!("{base}/v1/flows/{flow}"))
            .json(&spec(seq))
            .send()
            .await;
        let mut out = out.lock().await;
        match resp {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap();
                let version: u64 = v["version"].as_str().unwrap().parse().unwrap();
                let previous = out
                    .acked
                    .entry(flow.clone())
                    .or_default()
                    .insert(version, seq);
                assert!(
                    previous.is_none(),
                    "{flow}: version {version} acknowledged twice"
                );
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(
                    status, 503,
                    "only UNAVAILABLE during outages, got {status}: {body}"
                );
                assert_eq!(body["code"], 14, "{body}");
                *out.failures.entry(status).or_default() += 1;
            }
            Err(e) if e.is_timeout() => out.hangs += 1,
            Err(e) => panic!("request failed without an HTTP answer: {e}"),
        }
        assert!(
            started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(2),
            "a request took {:?}",
            started.elapsed()
        );
        drop(out);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until an update through the API succeeds again (recovery without a restart).
async fn recovers(http: &reqwest::Client, base: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let r = http
            .put(format!("{base}/v1/flows/probe"))
            .json(&spec(started.elapsed().as_millis() as u64))
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status().is_success()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the API did not recover after {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn load_for(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_member_failures() {
    let cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let endpoints = cluster.lock().unwrap().endpoints();

    let mut etcd = EtcdConfig::new(endpoints);
    etcd.connect_timeout = Duration::from_millis(500);
    etcd.request_timeout = Duration::from_millis(1500);
    let mut config = Config::for_tests(StoreConfig::Etcd(Box::new(etcd)));
    config.http.request_timeout = REQUEST_TIMEOUT;
    let server = TestServer::start(config).await;
    let base = format!("http://{}", server.http);
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT + Duration::from_secs(1))
        .build()
        .unwrap();

    for flow in (0..WRITERS)
        .map(|i| format!("f{i}"))
        .chain(["probe".to_string()])
    {
        let mut body = spec(1);
        body["name"] = json!(flow);
        let r = http
            .post(format!("{base}/v1/flows"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            tokio::spawn(writer(
                http.clone(),
                base.clone(),
                format!("f{i}"),
                stop.clone(),
                outcomes.clone(),
            ))
        })
        .collect();
    load_for(Duration::from_secs(1)).await;

    let with_cluster = |f: Box<dyn FnOnce(&mut EtcdCluster) + Send>| {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || f(&mut cluster.lock().unwrap()))
    };

    // (a) Kill the leader; the others elect a new one.
    let leader = with_cluster(Box::new(|c| {
        let l = c
            .wait_leader(Duration::from_secs(10))
            .expect("a leader within 10s");
        c.kill(l);
    }))
    .await;
    leader.unwrap();
    load_for(Duration::from_secs(3)).await;
    let after_leader = recovers(&http, &base, "the leader was killed").await;
    with_cluster(Box::new(|c| {
        for i in 0..c.len() {
            if !c.is_running(i) {
                c.restart(i, true).unwrap();
            }
        }
    }))
    .await
    .unwrap();
    load_for(Duration::from_secs(1)).await;

    // (b) Kill a follower and start it again.
    with_cluster(Box::new(|c| {
        let l = c
            .wait_leader(Duration::from_secs(10))
            .expect("a leader within 10s");
        let follower = (0..c.len()).find(|i| *i != l).unwrap();
        c.kill(follower);
        std::thread::sleep(Duration::from_secs(2));
        c.restart(follower, true).unwrap();
    }))
    .await
    .unwrap();
    let after_follower = recovers(&http, &base, "a follower restarted").await;
    load_for(Duration::from_secs(1)).await;

    // (c) Stop every member, then start them all again.
    with_cluster(Box::new(|c| {
        for i in 0..c.len() {
            c.kill(i);
        }
    }))
    .await
    .unwrap();
    load_for(Duration::from_secs(3)).await;
    with_cluster(Box::new(|c| {
        for i in 0..c.len() {
            c.restart(i, false).unwrap();
        }
        for i in 0..c.len() {
            c.wait(i).unwrap();
        }
    }))
    .await
    .unwrap();
    let after_all = recovers(&http, &base, "the whole cluster restarted").await;
    load_for(Duration::from_secs(1)).await;

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let out = outcomes.lock().await;
    assert_eq!(out.hangs, 0, "requests hung past the request timeout");
    assert!(
        out.failures.get(&503).copied().unwrap_or(0) > 0,
        "the outages were seen as 503s"
    );

    // Every acknowledged version is durable, with exactly the spec that was sent, and the
    // versions of each flow are contiguous.
    for (flow, acked) in &out.acked {
        let versions: Value = http
            .get(format!("{base}/v1/flows/{flow}/versions?page_size=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored: Vec<u64> = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().parse().unwrap())
            .collect();
        let latest = *stored.last().unwrap();
        assert_eq!(
            stored,
            (1..=latest).collect::<Vec<_>>(),
            "{flow}: contiguous"
        );
        for (version, seq) in acked {
            let v: Value = http
                .get(format!("{base}/v1/flows/{flow}/versions/{version}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                v["spec"]["labels"]["seq"],
                seq.to_string(),
                "{flow} version {version}"
            );
        }
        let current: Value = http
            .get(format!("{base}/v1/flows/{flow}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(current["latestVersion"], latest.to_string());
    }
    let acked_total: usize = out.acked.values().map(BTreeMap::len).sum();
    eprintln!(
        "fault test: {acked_total} acknowledged updates, failures {:?}, recovery after leader kill {after_leader:?}, \
         follower restart {after_follower:?}, full restart {after_all:?}",
        out.failures
    );
    drop(out);
    server.stop().await;
}
