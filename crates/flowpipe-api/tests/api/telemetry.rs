//! Observability end to end: the `flow-api` binary, configured as operators configure it (the
//! original helm chart's variables and the standard `OTEL_*` ones), exporting over OTLP/gRPC to
//! an in-test collector (`flowpipe_testkit::otlp::Receiver`) on loopback, over a real etcd.
//!
//! Each test runs the real binary as a process of its own: the telemetry is process-wide (one
//! `tracing` subscriber, one set of exporters), and graceful shutdown is where the last export
//! happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_core::proto::v1::{CreateFlowRequest, FlowSpec, GetFlowRequest};
use flowpipe_testkit::otlp::{Collected, Receiver, V, attrs, hex, s, wait_for};
use flowpipe_testkit::stores::etcd;
use flowpipe_testkit::{free_port, watchdog};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use serde_json::json;
use tonic::transport::Channel;

use crate::security::{grpc_tls_channel, test_pki};

const BIN: &str = env!("CARGO_BIN_EXE_flow-api");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REST_PARENT: &str = "00f067aa0ba902b7";
const GRPC_PARENT: &str = "b7ad6b7169203331";
const CUMULATIVE: i32 = 2;

fn traceparent(parent: &str) -> String {
    format!("00-{TRACE_ID}-{parent}-01")
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

// ---- the server process -----------------------------------------------------------------

/// `flow-api` on free loopback ports over the test etcd, with `env`; SIGKILLed on drop.
struct Api {
    child: Option<Child>,
    _watchdog: Option<Child>,
    http: u16,
    grpc: u16,
    log: PathBuf,
}

impl Api {
    fn start(env: &[(&str, String)]) -> Api {
        let (http, grpc) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("flow-api-otel")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.env("ETCD_ENDPOINTS", etcd().endpoints().join(","))
            .env("FLOW_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("FLOW_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut api = Api {
            _watchdog: watchdog(pid, &format!("kill -9 {pid} 2>/dev/null")).ok(),
            child: Some(child),
            http,
            grpc,
            log,
        };
        api.wait_listening();
        api
    }

    /// Both ports accept connections (a TCP connect: the listeners may speak TLS).
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.http) && up(self.grpc) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("flow-api exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "flow-api not listening after 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit (graceful shutdown flushes the telemetry).
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("flow-api did not stop within 60s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log();
        assert!(status.success(), "flow-api exited with {status}:\n{log}");
        log
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn spec_json(name: &str, mode: &str) -> serde_json::Value {
    json!({"name": name, "mode": mode, "queues": [], "stages": []})
}

fn spec(name: &str) -> FlowSpec {
    flowpipe_core::json::decode_flow_spec(spec_json(name, "JOB").to_string().as_bytes()).unwrap()
}

fn grpc_request<T>(msg: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    req
}

// ---- reading what the collector received -----------------------------------------------

type Point = Vec<(String, V)>;
type Points = BTreeMap<Point, u64>;

/// A counter's data points by attributes, checking what every counter of the contract is.
fn counter_points(data: &Collected, name: &str) -> Points {
    let m = data
        .metric(name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    let Some(Data::Sum(sum)) = &m.data else {
        panic!("{name} is not a counter: {:?}", m.data)
    };
    assert!(sum.is_monotonic, "{name} is monotonic");
    assert_eq!(sum.aggregation_temporality, CUMULATIVE, "{name}");
    sum.data_points
        .iter()
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => u64::try_from(i).unwrap(),
                ref other => panic!("{name}: an integer counter, got {other:?}"),
            };
            (attrs(&p.attributes).into_iter().collect(), v)
        })
        .collect()
}

/// A histogram's counts by attributes; its unit must be `ms`.
fn histogram_counts(data: &Collected, name: &str) -> Points {
    let m = data
        .metric(name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    assert_eq!(m.unit, "ms", "{name}");
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("{name} is not a histogram: {:?}", m.data)
    };
    assert_eq!(h.aggregation_temporality, CUMULATIVE, "{name}");
    h.data_points
        .iter()
        .map(|p| {
            assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{name}");
            assert!(p.sum.unwrap_or(0.0) >= 0.0);
            (attrs(&p.attributes).into_iter().collect(), p.count)
        })
        .collect()
}

fn total(points: &Points) -> u64 {
    points.values().sum()
}

fn http_point(method: &str, route: &str, status: i64, n: u64) -> (Point, u64) {
    (
        vec![
            ("http.method".into(), s(method)),
            ("http.route".into(), s(route)),
            ("http.status_code".into(), V::I(status)),
        ],
        n,
    )
}

fn grpc_point(method: &str, code: i64, n: u64) -> (Point, u64) {
    (
        vec![
            ("rpc.grpc.status_code".into(), V::I(code)),
            ("rpc.method".into(), s(method)),
        ],
        n,
    )
}

fn attr(span: &Span, key: &str) -> Option<V> {
    attrs(&span.attributes).get(key).cloned()
}

fn status_code(span: &Span) -> Option<i32> {
    span.status.as_ref().map(|s| s.code)
}

// ---- tests ------------------------------------------------------------------------------

/// A scripted set of REST and gRPC calls (including a 404 and a 409) gives exactly the
/// contract's metrics, a resource naming the service, and spans continuing the callers'
/// `traceparent`, with a child span per store transaction. Exported when the server shuts
/// down gracefully (the periodic export is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_traces_reach_an_otlp_collector() {
    let receiver = Receiver::start();
    let api = Api::start(&[
        ("FLOW_OBSERVABILITY_ENABLED", "true".into()),
        // host:port, as the original API takes it: a plaintext collector.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.addr.to_string()),
        ("OTEL_SERVICE_NAME", "flow-api-itest".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=itest,service.name=loses-to-OTEL_SERVICE_NAME".into(),
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".into()),
        // The log level does not decide which spans exist.
        ("FLOW_LOG_LEVEL", "WARN".into()),
    ]);
    let http = http_client();
    let base = api.base();
    let (a, c) = (unique("otel-a"), unique("otel-c"));

    // ---- REST ----
    let post = |body: serde_json::Value| http.post(format!("{base}/v1/flows")).json(&body);
    assert_eq!(
        post(spec_json(&a, "JOB")).send().await.unwrap().status(),
        200
    );
    // A different spec under a live name: 409 ALREADY_EXISTS.
    assert_eq!(
        post(spec_json(&a, "STREAMING"))
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let r = http
        .get(format!("{base}/v1/flows/{a}"))
        .header("traceparent", traceparent(REST_PARENT))
        .header("x-request-id", "req-otel-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-otel-1");
    let missing = format!("{base}/v1/flows/{}", unique("missing"));
    assert_eq!(http.get(&missing).send().await.unwrap().status(), 404);
    for path in ["/nope", "/v1/flows/x/y/z/w?q=1"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        http.get(format!("{base}/v1/flows"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .put(format!("{base}/v1/flows/{a}"))
        .json(&json!({"mode": "JOB", "queues": [{"name": "q"}], "stages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // ---- gRPC ----
    let mut flows = FlowServiceClient::new(api.channel().await);
    let create = |name: &str| CreateFlowRequest {
        spec: Some(spec(name)),
        validate_only: false,
    };
    flows.create_flow(create(&c)).await.unwrap();
    let mut other = spec(&c);
    other.labels.insert("x".into(), "y".into());
    let e = flows
        .create_flow(CreateFlowRequest {
            spec: Some(other),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    let tp = traceparent(GRPC_PARENT);
    let r = flows
        .get_flow(grpc_request(
            GetFlowRequest { name: c.clone() },
            &[("traceparent", &tp), ("x-request-id", "grpc-otel-1")],
        ))
        .await
        .unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "grpc-otel-1");
    let e = flows
        .get_flow(GetFlowRequest {
            name: unique("missing"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // A call without a request id gets one.
    let r = flows
        .get_flow(GetFlowRequest { name: c.clone() })
        .await
        .unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap().len(), 36);

    // ---- graceful shutdown exports everything ----
    let log = api.stop();
    let data = receiver.data.clone();
    wait_for("the export at shutdown", Duration::from_secs(10), || {
        data.metric_exports() > 0 && data.trace_exports() > 0
    })
    .await;

    // Resource: OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
    for resource in [data.metrics_resource(), data.traces_resource()] {
        assert_eq!(
            resource["service.name"],
            s("flow-api-itest"),
            "{resource:?}"
        );
        assert_eq!(resource["deployment.environment"], s("itest"));
        assert!(matches!(&resource["service.instance.id"], V::S(id) if id.len() == 36));
    }
    // OTEL_EXPORTER_OTLP_HEADERS reached the collector.
    assert!(
        data.metadata()
            .iter()
            .all(|m| m.get("x-tenant").map(String::as_str) == Some("acme"))
    );

    // ---- metrics: names, kinds, units, attribute keys and types, counts ----
    let want: Points = [
        http_point("POST", "/v1/flows", 200, 1),
        http_point("PUT", "/v1/flows/{name}", 200, 1),
        http_point("POST", "/v1/flows", 409, 1),
        http_point("GET", "/v1/flows/{name}", 200, 1),
        http_point("GET", "/v1/flows/{name}", 404, 1),
        // Unknown paths share one route value, never the raw path.
        http_point("GET", "unmatched", 404, 2),
        http_point("GET", "/v1/flows", 200, 1),
        http_point("GET", "/healthz", 200, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counter_points(&data, "flow_api_http_requests_total"), want);
    assert_eq!(histogram_counts(&data, "flow_api_http_latency_ms"), want);

    let want: Points = [
        grpc_point("/flowpipe.v1.FlowService/CreateFlow", 0, 1),
        grpc_point("/flowpipe.v1.FlowService/CreateFlow", 6, 1),
        grpc_point("/flowpipe.v1.FlowService/GetFlow", 0, 2),
        grpc_point("/flowpipe.v1.FlowService/GetFlow", 5, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counter_points(&data, "flow_api_grpc_requests_total"), want);
    assert_eq!(histogram_counts(&data, "flow_api_grpc_latency_ms"), want);

    // Requests in flight: back to 0 on both servers.
    let m = data.metric("flow_api_requests_in_flight").unwrap();
    let Some(Data::Sum(sum)) = &m.data else {
        panic!("{m:?}")
    };
    assert!(!sum.is_monotonic);
    let in_flight: BTreeMap<_, _> = sum
        .data_points
        .iter()
        .map(|p| (attrs(&p.attributes)["protocol"].clone(), p.value))
        .collect();
    assert_eq!(
        in_flight,
        [
            (s("grpc"), Some(number_data_point::Value::AsInt(0))),
            (s("http"), Some(number_data_point::Value::AsInt(0))),
        ]
        .into_iter()
        .collect()
    );

    // The store: round trips by operation and access; nothing was unavailable.
    let trips = counter_points(&data, "flow_api_store_round_trips_total");
    let kinds: Vec<_> = trips.keys().cloned().collect();
    for kind in &kinds {
        let keys: Vec<_> = kind.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["store.access", "store.operation"], "{kind:?}");
    }
    let write = vec![
        ("store.access".to_string(), s("write")),
        ("store.operation".to_string(), s("txn")),
    ];
    assert!(trips.get(&write).is_some_and(|n| *n >= 3), "{trips:?}");
    assert!(trips.keys().any(|k| k[0].1 == s("read")), "{trips:?}");
    assert_eq!(
        total(&histogram_counts(&data, "flow_api_store_latency_ms")),
        total(&trips)
    );
    assert!(data.metric("flow_api_store_unavailable_total").is_none());
    // Both creates of a taken name (REST and gRPC 409) tried a second transaction, deciding
    // from what the first one read: `stale`, not contention. (Races between replicas are
    // `raced`; one process serialises its own writes to a flow, so this test cannot race.)
    let retries = counter_points(&data, "flow_api_cas_retries_total");
    assert_eq!(
        retries,
        [(
            vec![
                ("reason".to_string(), s("stale")),
                ("write".to_string(), s("create_flow")),
            ],
            2
        )]
        .into_iter()
        .collect(),
    );
    assert!(data.metric("flow_api_cas_give_ups_total").is_none());

    // ---- traces ----
    let spans = data.spans();
    let rest = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID && hex(&s.parent_span_id) == REST_PARENT)
        .expect("the REST span continues the caller's traceparent");
    assert_eq!(rest.name, "GET /v1/flows/{name}");
    assert_eq!(rest.kind, SpanKind::Server as i32);
    assert_eq!(attr(rest, "http.route"), Some(s("/v1/flows/{name}")));
    assert_eq!(attr(rest, "url.path"), Some(s(&format!("/v1/flows/{a}"))));
    assert_eq!(attr(rest, "http.response.status_code"), Some(V::I(200)));
    assert_eq!(attr(rest, "request_id"), Some(s("req-otel-1")));
    let store_span = spans
        .iter()
        .find(|s| s.parent_span_id == rest.span_id)
        .expect("a store span under the request's span");
    assert_eq!(store_span.trace_id, rest.trace_id);
    assert!(store_span.name.starts_with("etcd "), "{}", store_span.name);
    assert_eq!(store_span.kind, SpanKind::Client as i32);
    assert_eq!(attr(store_span, "db.system.name"), Some(s("etcd")));

    let grpc = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID && hex(&s.parent_span_id) == GRPC_PARENT)
        .expect("the gRPC span continues the traceparent metadata");
    assert_eq!(grpc.name, "flowpipe.v1.FlowService/GetFlow");
    assert_eq!(grpc.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(grpc, "rpc.method"),
        Some(s("/flowpipe.v1.FlowService/GetFlow"))
    );
    assert_eq!(attr(grpc, "rpc.grpc.status_code"), Some(V::I(0)));
    assert_eq!(attr(grpc, "request_id"), Some(s("grpc-otel-1")));
    assert!(spans.iter().any(|s| s.parent_span_id == grpc.span_id));

    // Errors carry the contract's code; a client error is not a span error.
    let find = |name: &str, pred: &dyn Fn(&Span) -> bool| {
        spans
            .iter()
            .find(|s| s.name == name && pred(s))
            .cloned()
            .unwrap_or_else(|| panic!("no span {name}"))
    };
    let not_found = find("GET /v1/flows/{name}", &|s| {
        attr(s, "http.response.status_code") == Some(V::I(404))
    });
    assert_eq!(attr(&not_found, "error.type"), Some(s("NOT_FOUND")));
    assert_eq!(
        attr(&not_found, "flow.error.reason"),
        Some(s("FLOW_NOT_FOUND"))
    );
    assert_ne!(status_code(&not_found), Some(SpanStatus::Error as i32));
    let conflict = find("POST /v1/flows", &|s| {
        attr(s, "http.response.status_code") == Some(V::I(409))
    });
    assert_eq!(attr(&conflict, "error.type"), Some(s("ALREADY_EXISTS")));
    let unmatched = find("GET unmatched", &|_| true);
    assert_eq!(attr(&unmatched, "http.route"), Some(s("unmatched")));
    let grpc_conflict = find("flowpipe.v1.FlowService/CreateFlow", &|s| {
        attr(s, "rpc.grpc.status_code") == Some(V::I(6))
    });
    assert_eq!(
        attr(&grpc_conflict, "error.type"),
        Some(s("ALREADY_EXISTS"))
    );

    // FLOW_LOG_LEVEL=warn: no access log lines, but the spans above exist.
    assert!(!log.contains("request finished"), "{log}");
}

/// A collector that is down (refused) or hung (accepts, never answers) never fails, slows or
/// blocks a request; spans that do not fit the queue are dropped and counted; cumulative
/// metrics lose nothing: the first export that gets through carries every total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hung_collector_never_fails_or_blocks_requests() {
    const PER_PHASE: u64 = 150;
    let first = Receiver::start();
    let addr = first.addr;
    let api = Api::start(&[
        ("FLOW_OBSERVABILITY_ENABLED", "1".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        // A small span queue and frequent exports, so that the hung phase overflows it.
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".into()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000".into()),
    ]);
    let http = http_client();
    let name = unique("otel-down");
    let created = http
        .post(format!("{}/v1/flows", api.base()))
        .json(&spec_json(&name, "JOB"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let mut flows = FlowServiceClient::new(api.channel().await);
    let url = format!("{}/v1/flows/{name}", api.base());

    // Every request must succeed; the client's 30 s timeout (far beyond any export timeout)
    // is the only bound: a request that waited on the collector would still be counted here,
    // so the phase time is printed for the record, not asserted.
    let mut phase = async |what: &str| {
        let start = Instant::now();
        for i in 0..PER_PHASE {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{what}: request {i}");
            if i % 3 == 0 {
                flows
                    .get_flow(GetFlowRequest { name: name.clone() })
                    .await
                    .unwrap_or_else(|e| panic!("{what}: call {i}: {e}"));
            }
        }
        eprintln!(
            "collector {what}: {PER_PHASE} requests in {:?}",
            start.elapsed()
        );
    };

    phase("up").await;
    wait_for(
        "exports to the live collector",
        Duration::from_secs(20),
        || first.data.metric_exports() > 0 && first.data.trace_exports() > 0,
    )
    .await;
    first.kill();
    phase("down (refused)").await;
    let hung = Receiver::start_on(addr, Some(Duration::from_secs(3600)));
    phase("hung").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    phase("still hung").await;
    hung.kill();

    // Back: the cumulative totals of every phase arrive with the next exports.
    let back = Receiver::start_on(addr, None);
    let data = back.data.clone();
    let rest_total = 4 * PER_PHASE + 1;
    wait_for(
        "every total at the restarted collector",
        Duration::from_secs(30),
        || {
            data.metric("flow_api_http_requests_total").is_some()
                && total(&counter_points(&data, "flow_api_http_requests_total")) == rest_total
        },
    )
    .await;
    // The SDK's own count of spans dropped because the queue was full while the collector hung.
    wait_for("the dropped-span count", Duration::from_secs(30), || {
        data.metric("otel.sdk.processor.span.processed").is_some()
    })
    .await;
    let processed = counter_points(&data, "otel.sdk.processor.span.processed");
    let dropped: u64 = processed
        .iter()
        .filter(|(k, _)| {
            k.iter()
                .any(|(k, v)| k == "error.type" && *v == s("queue_full"))
        })
        .map(|(_, n)| n)
        .sum();
    assert!(dropped > 0, "no span dropped: {processed:?}");
    api.stop();
}

/// With FLOW_OBSERVABILITY_ENABLED unset, nothing is exported and nothing is dialled, even with
/// an endpoint configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_nothing_is_dialled() {
    let receiver = Receiver::start();
    let api = Api::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.addr.to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".into()),
    ]);
    let http = http_client();
    for _ in 0..5 {
        let r = http.get(format!("{}/v1/flows", api.base())).send().await;
        assert_eq!(r.unwrap().status(), 200);
    }
    let log = api.stop();
    // The access log is on at the default level.
    assert!(log.contains("request finished"), "{log}");
    assert_eq!(receiver.data.metric_exports(), 0);
    assert_eq!(receiver.data.trace_exports(), 0);
}

/// A bad observability setting stops the server with one line naming it, and exit code 2.
#[test]
fn bad_observability_settings_are_one_line_and_exit_code_2() {
    for (var, value) in [
        ("FLOW_OBSERVABILITY_ENABLED", "perhaps"),
        ("FLOW_LOG_LEVEL", "verbose"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4317"),
        ("FLOW_GRPC_TLS_SERVER_NAME", "not a host name"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .env(var, value)
            .env("FLOW_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("flow-api: invalid {var}: ")),
            "{stderr}"
        );
    }
}

/// The original helm chart's environment, exactly: API key auth, TLS on both listeners, the
/// gRPC TLS server name, OTLP on to a `host:port` collector. The server serves REST and gRPC
/// over TLS with the key, refuses without it, says what the server name does, and exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_helm_charts_environment_serves_and_exports() {
    let receiver = Receiver::start();
    let (ca, files) = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &files.cert_pem).unwrap();
    std::fs::write(&key, &files.key_pem).unwrap();
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    const KEY: &str = "helm-chart-api-key";
    let api = Api::start(&[
        ("FLOW_ENV", "production".into()),
        ("FLOW_AUTH_ENABLED", "true".into()),
        ("FLOW_API_KEY", KEY.into()),
        ("FLOW_HTTP_TLS_ENABLED", "true".into()),
        ("FLOW_HTTP_TLS_CERT", path(&cert)),
        ("FLOW_HTTP_TLS_KEY", path(&key)),
        ("FLOW_GRPC_TLS_ENABLED", "true".into()),
        ("FLOW_GRPC_TLS_CERT", path(&cert)),
        ("FLOW_GRPC_TLS_KEY", path(&key)),
        ("FLOW_GRPC_TLS_SERVER_NAME", "localhost".into()),
        ("FLOW_OBSERVABILITY_ENABLED", "true".into()),
        ("FLOW_LOG_LEVEL", "info".into()),
        ("OTEL_SERVICE_NAME", "flow-api".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.addr.to_string()),
    ]);

    let https = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", api.http);
    let name = unique("helm");
    let r = https
        .post(format!("{base}/v1/flows"))
        .bearer_auth(KEY)
        .json(&spec_json(&name, "JOB"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = https.get(format!("{base}/v1/flows")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let channel = grpc_tls_channel(&ca, api.grpc).await;
    let bearer = format!("Bearer {KEY}");
    let flow = FlowServiceClient::new(channel.clone())
        .get_flow(grpc_request(
            GetFlowRequest { name: name.clone() },
            &[("authorization", &bearer)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(flow.name, name);
    let e = FlowServiceClient::new(channel)
        .get_flow(GetFlowRequest { name })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    let log = api.stop();
    assert!(
        log.contains(
            "FLOW_GRPC_TLS_SERVER_NAME=localhost is accepted for compatibility and has no effect"
        ),
        "{log}"
    );
    assert!(log.contains("observability: exporting OTLP/gRPC"), "{log}");
    assert!(!log.contains(KEY), "the key is never logged");
    let data = receiver.data.clone();
    wait_for("the export at shutdown", Duration::from_secs(10), || {
        data.metric("flow_api_grpc_requests_total").is_some()
    })
    .await;
    assert_eq!(data.metrics_resource()["service.name"], s("flow-api"));
    let rest = counter_points(&data, "flow_api_http_requests_total");
    assert_eq!(
        rest,
        [
            http_point("POST", "/v1/flows", 200, 1),
            http_point("GET", "/v1/flows", 401, 1),
        ]
        .into_iter()
        .collect()
    );
    let grpc = counter_points(&data, "flow_api_grpc_requests_total");
    assert_eq!(
        grpc,
        [
            grpc_point("/flowpipe.v1.FlowService/GetFlow", 0, 1),
            grpc_point("/flowpipe.v1.FlowService/GetFlow", 16, 1),
        ]
        .into_iter()
        .collect()
    );
    assert!(!data.spans().is_empty());
}
