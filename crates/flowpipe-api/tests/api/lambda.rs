//! The Lambda function (`handler::lambda`), three ways, always against real etcd:
//! - API Gateway events from `fixtures/lambda/` (REST API v1 and HTTP API v2: a stage in the
//!   path, a base64 body, a missing content type), converted by `lambda_http` exactly as the
//!   runtime does, then served in process;
//! - Secrets Manager configuration against a local `moto_server` (secret present, missing,
//!   malformed, then fixed without a cold start);
//! - the `bootstrap` binary under `cargo lambda watch`, called over HTTP as a user would.
//!
//! `cargo-lambda` and `moto_server` come from PyPI (`scripts/ensure-tools.sh test` installs
//! them); a test fails, never skips, when one is missing. Every process listens on 127.0.0.1,
//! runs in its own process group and is killed at the end of its test (a watchdog kills it if
//! the test binary dies first).

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowpipe_api::ApiKey;
use flowpipe_api::lambda::{EtcdSource, LambdaApp, LambdaConfig, Options};
use flowpipe_testkit::{self as testkit, EtcdCluster, free_port};
use http_body_util::BodyExt;
use lambda_http::RequestExt;
use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};
use tower::ServiceExt;

use flowpipe_testkit::stores::{etcd, unique_namespace};

// ---- helpers ------------------------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    testkit::workspace_root()
}

/// A fixture as JSON, to be sent as is or edited.
fn fixture_json(name: &str) -> Value {
    let path = manifest_dir().join("fixtures/lambda").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Payload {
    /// REST API (payload v1).
    V1,
    /// HTTP API (payload v2).
    V2,
}

/// An event as `lambda_http::run` turns it into a request: deserialized as `LambdaRequest`
/// (checking which payload version it was taken for), then converted.
fn event(v: Value, expected: Payload) -> http::Request<lambda_http::Body> {
    let ev: LambdaRequest = serde_json::from_value(v).expect("an API Gateway event");
    let got = match &ev {
        LambdaRequest::ApiGatewayV1(_) => Payload::V1,
        LambdaRequest::ApiGatewayV2(_) => Payload::V2,
        #[allow(unreachable_patterns)]
        _ => panic!("neither a REST nor an HTTP API event"),
    };
    assert_eq!(got, expected, "payload version");
    ev.into()
}

fn fixture(name: &str, expected: Payload) -> http::Request<lambda_http::Body> {
    event(fixture_json(name), expected)
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn etag(&self) -> &str {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A contract error body: `(code, reason, message)`.
    fn error(&self) -> (i64, &str, &str) {
        (
            self.body["code"].as_i64().unwrap_or(-1),
            self.body["details"][0]["reason"].as_str().unwrap_or(""),
            self.body["message"].as_str().unwrap_or(""),
        )
    }
}

async fn send<B>(app: &LambdaApp, req: http::Request<B>) -> Reply
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The function on the test etcd, in a key namespace of its own.
fn app_on_etcd(endpoints: Vec<String>) -> LambdaApp {
    let mut config = LambdaConfig::new(EtcdSource::Endpoints(endpoints));
    config.namespace = unique_namespace().into_bytes();
    LambdaApp::new(config)
}

/// Version numbers are uint64, strings in protojson.
fn version(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn flow_spec(name: &str, threads: u32) -> Value {
    json!({
        "name": name,
        "mode": "STREAMING",
        "queues": [{"name": "events"}],
        "stages": [
            {"name": "source", "type": "kafka", "threads": threads, "outputQueue": "events",
             "config": {"topic": "orders"}},
            {"name": "sink", "type": "s3", "threads": 1, "inputQueue": "events"}
        ]
    })
}

// ---- API Gateway events, in process ---------------------------------------------------------

/// The README's `cargo lambda invoke` walk-through, fixture by fixture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway_fixtures_drive_a_flow_through_its_life() {
    let app = app_on_etcd(etcd().endpoints());

    let r = send(&app, fixture("apigw-v2-healthz.json", Payload::V2)).await;
    assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})));

    // HTTP API, JSON body with its content type.
    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "lambda-demo");
    assert_eq!(r.etag(), "\"1\"");

    // HTTP API on a named stage: rawPath is /prod/v1/flows/lambda-demo.
    let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(version(&r.body["version"]), "1");

    // HTTP API, base64 body (as API Gateway sends binary media), If-Match on version 1.
    let r = send(
        &app,
        fixture("apigw-v2-update-flow-base64.json", Payload::V2),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"2\"");
    assert_eq!(r.body["spec"]["stages"][0]["threads"], 4);

    // REST API, no Content-Type at all: accepted as JSON.
    let r = send(
        &app,
        fixture("apigw-v1-update-flow-no-content-type.json", Payload::V1),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"3\"");

    // REST API on stage "prod": lambda_http puts /prod in front of the path (unless
    // AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH is set); the entry takes it out again.
    let r = send(&app, fixture("apigw-v1-rollback-flow.json", Payload::V1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(version(&r.body["latestVersion"]), "3");

    // REST API with a query string.
    let r = send(&app, fixture("apigw-v1-list-versions.json", Payload::V1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let versions = r.body["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{}", r.body);
    assert!(
        r.body["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let r = send(&app, fixture("apigw-v1-delete-flow.json", Payload::V1)).await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error().1, "FLOW_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_in_an_event_gets_the_contract_error() {
    let app = app_on_etcd(etcd().endpoints());

    let mut ev = fixture_json("apigw-v2-create-flow.json");
    ev["body"] = json!("{\"name\": ");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error().0, 3);

    // Any content type is read as JSON, as on the local server...
    let mut ev = fixture_json("apigw-v2-create-flow.json");
    ev["headers"]["content-type"] = json!("text/plain");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // ...except a cross-site browser write: PERMISSION_DENIED (contract B.4).
    let mut ev = fixture_json("apigw-v2-create-flow.json");
    ev["headers"]["content-type"] = json!("text/plain");
    ev["headers"]["sec-fetch-site"] = json!("cross-site");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error().0, 7);
    assert_eq!(r.error().1, "CROSS_SITE_WRITE");

    let mut ev = fixture_json("apigw-v2-get-flow-stage.json");
    ev["rawPath"] = json!("/prod/v2/nothing");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.error().1, "ROUTE_NOT_FOUND");
    assert!(
        r.error().2.contains("/v2/nothing"),
        "stage removed: {}",
        r.body
    );

    let mut ev = fixture_json("apigw-v1-rollback-flow.json");
    ev["path"] = json!("/v1/flows/lambda-demo/rollback/zero");
    let r = send(&app, event(ev, Payload::V1)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error().1, "INVALID_VERSION");
}

/// A stage that looks like the start of a route (`v1`) is removed once, and only where it is
/// the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_named_like_a_route_is_removed_only_once() {
    let app = app_on_etcd(etcd().endpoints());

    let mut ev = fixture_json("apigw-v2-get-flow-stage.json");
    ev["requestContext"]["stage"] = json!("v1");
    ev["rawPath"] = json!("/v1/v1/flows");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // REST API events never carry the stage in `path`: /v1/flows is the route itself.
    let mut ev = fixture_json("apigw-v1-list-versions.json");
    ev["requestContext"]["stage"] = json!("v1");
    ev["path"] = json!("/v1/flows");
    ev["queryStringParameters"] = Value::Null;
    ev["multiValueQueryStringParameters"] = Value::Null;
    let r = send(&app, event(ev, Payload::V1)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_request_id_is_the_request_id() {
    let app = app_on_etcd(etcd().endpoints());
    let mut ctx = lambda_http::Context::default();
    ctx.request_id = "5f3c1a52-0d51-4b8e-9a3e-6f2b7c1d9e00".into();
    let req = fixture("apigw-v2-healthz.json", Payload::V2).with_lambda_context(ctx);
    let r = send(&app, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["x-request-id"],
        "5f3c1a52-0d51-4b8e-9a3e-6f2b7c1d9e00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_enforced_as_on_the_local_server() {
    let mut config = LambdaConfig::new(EtcdSource::Endpoints(etcd().endpoints()));
    config.namespace = unique_namespace().into_bytes();
    config.api_key = ApiKey::new("lambda-s3cret");
    let app = LambdaApp::new(config);

    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.error().0, 16);

    let mut ev = fixture_json("apigw-v2-create-flow.json");
    ev["headers"]["authorization"] = json!("Bearer lambda-s3cret");
    let r = send(&app, event(ev, Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = send(&app, fixture("apigw-v2-healthz.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "health needs no key");
}

/// A configuration that cannot work answers 503 on every request (never a crash, which Lambda
/// would turn into an init loop); liveness still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_is_503_on_every_request() {
    let config =
        LambdaConfig::from_lookup(|name| (name == "FLOW_AUTH_ENABLED").then(|| "true".to_string()));
    let app = LambdaApp::from_config(config, Options::default());
    for _ in 0..2 {
        let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let (code, reason, message) = r.error();
        assert_eq!((code, reason), (14, "STORE_UNAVAILABLE"));
        assert!(message.contains("ETCD_ENDPOINTS"), "{message}");
    }
    let r = send(&app, fixture("apigw-v2-healthz.json", Payload::V2)).await;
    assert_eq!(r.status, 200);
}

/// After a Lambda freeze the etcd connection may be dead: the failed invocation drops it and
/// the next one connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_etcd_connection_is_rebuilt_on_the_next_invocation() {
    let mut cluster = EtcdCluster::start_single().unwrap_or_else(|e| panic!("{e}"));
    let app = app_on_etcd(cluster.endpoints());
    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    cluster.kill(0);
    let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error().0, 14);

    cluster.restart(0, true).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
        if r.status == 200 {
            assert_eq!(r.body["name"], "lambda-demo");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never came back: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- processes: moto_server and cargo lambda watch ------------------------------------------

/// A process of this test in its own process group, killed (with its children) on drop.
struct Spawned {
    name: &'static str,
    child: Child,
    watchdog: Child,
    log: PathBuf,
}

impl Spawned {
    fn start(name: &'static str, mut cmd: Command, log: PathBuf, install_hint: &str) -> Self {
        let out = File::create(&log).expect("log file");
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e}. The Lambda tests need it: {install_hint}")
        });
        // Kills the group once this test binary is gone (a panic that aborts, a killed run).
        let watchdog = testkit::watchdog(
            child.id(),
            &format!("kill -9 -- -{} 2>/dev/null", child.id()),
        )
        .expect("watchdog");
        Spawned {
            name,
            child,
            watchdog,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last lines, for failure messages.
    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} log {} (last lines) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // A failing test keeps the log for a look (its path is in the failure message).
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn log_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "flowpipe-{what}-{}-{}.log",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

fn wait_for_port(p: &mut Spawned, port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            p.running(),
            "{} exited while starting\n{}",
            p.name,
            p.tail()
        );
        assert!(
            Instant::now() < deadline,
            "{} not listening on {addr} after {limit:?}\n{}",
            p.name,
            p.tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Secrets Manager on 127.0.0.1 (moto), for this test only.
struct Moto {
    process: Spawned,
    url: String,
}

fn moto() -> Moto {
    let port = free_port();
    let mut cmd = Command::new("moto_server");
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let mut process = Spawned::start(
        "moto_server",
        cmd,
        log_path("moto"),
        "pip install 'moto[server]' (scripts/ensure-tools.sh test does)",
    );
    wait_for_port(&mut process, port, Duration::from_secs(60));
    Moto {
        process,
        url: format!("http://127.0.0.1:{port}"),
    }
}

const TEST_REGION: &str = "us-east-1";

impl Moto {
    /// A client of this moto, built as the function builds its own (same loader and HTTP
    /// client), with test credentials so nothing looks further (no instance metadata).
    async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let sdk = flowpipe_api::lambda::aws_config_loader()
            .endpoint_url(&self.url)
            .region(aws_config::Region::new(TEST_REGION))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await;
        aws_sdk_secretsmanager::Client::new(&sdk)
    }
}

fn secret_json(endpoints: &[String]) -> String {
    json!({"endpoints": endpoints}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_secret_configures_etcd() {
    let moto = moto();
    let client = moto.client().await;
    let name = format!("flowpipe/etcd-{}", uuid::Uuid::new_v4().simple());
    let arn = client
        .create_secret()
        .name(&name)
        .secret_string(secret_json(&etcd().endpoints()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create secret: {e:?}\n{}", moto.process.tail()))
        .arn
        .expect("arn");

    let mut config = LambdaConfig::new(EtcdSource::Secret {
        id: arn,
        endpoints: Vec::new(),
    });
    config.namespace = unique_namespace().into_bytes();
    let app = LambdaApp::from_config(
        Ok(config),
        Options {
            secrets_client: Some(client),
            ..Options::default()
        },
    );
    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "lambda-demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_secret_is_503_until_it_is_fixed() {
    let moto = moto();
    let client = moto.client().await;
    let name = format!("flowpipe/etcd-{}", uuid::Uuid::new_v4().simple());
    let mut config = LambdaConfig::new(EtcdSource::Secret {
        id: name.clone(),
        endpoints: Vec::new(),
    });
    config.namespace = unique_namespace().into_bytes();
    let app = LambdaApp::from_config(
        Ok(config),
        Options {
            secrets_client: Some(client.clone()),
            // Every request tries again, so each fix below shows at once.
            retry_after: Some(Duration::ZERO),
            ..Options::default()
        },
    );
    let expect_503 = async |needle: &str| {
        let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let (code, reason, message) = r.error();
        assert_eq!((code, reason), (14, "STORE_UNAVAILABLE"), "{}", r.body);
        assert!(message.contains(&name), "names the secret: {message}");
        assert!(message.contains(needle), "{needle:?} in {message:?}");
        assert_eq!(r.headers["content-type"], "application/json");
    };

    expect_503("does not exist").await;
    let r = send(&app, fixture("apigw-v2-healthz.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "liveness without a store");

    client
        .create_secret()
        .name(&name)
        .secret_string("{\"endpoints\": [")
        .send()
        .await
        .expect("create secret");
    expect_503("is not valid JSON").await;

    let put = |text: String| {
        client
            .put_secret_value()
            .secret_id(&name)
            .secret_string(text)
            .send()
    };
    put(json!({"username": "root"}).to_string())
        .await
        .expect("put");
    expect_503("has no `endpoints`").await;
    put(json!({"endpoints": ["etcd.internal"]}).to_string())
        .await
        .expect("put");
    expect_503("invalid etcd endpoint").await;

    // Fixed: the same execution environment starts working.
    put(secret_json(&etcd().endpoints())).await.expect("put");
    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `cargo lambda watch` on 127.0.0.1, serving the `bootstrap` binary (which `cargo test` has
/// already built, so its `cargo run` only checks that the build is fresh).
struct Watch {
    process: Spawned,
    base: String,
    http: reqwest::Client,
}

/// How long `cargo lambda watch` may take to answer its first request: it runs `cargo run`,
/// which may wait for the build directory's lock or rebuild after an edit.
const WATCH_START: Duration = Duration::from_secs(420);

async fn cargo_lambda_watch(env: &[(&str, &str)]) -> Watch {
    let port = free_port();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(manifest_dir())
        .args(["lambda", "watch", "--bin", "bootstrap", "--ignore-changes"])
        .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
        .arg(port.to_string())
        // The template sets it; the function must route the same either way.
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
        .env("RUST_LOG", "info");
    for var in [
        "ETCD_ENDPOINTS",
        "FLOW_ETCD_SECRET_ARN",
        "FLOW_AUTH_ENABLED",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    // What `cargo test` sets for this test binary is not the user's environment: build scripts
    // watch some of it (ring: CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...), so passing it on would
    // make `cargo run` rebuild half the dependency tree, and the developer's next build again.
    for (var, _) in std::env::vars_os() {
        let v = var.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| v.starts_with(p))
            || ["CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR"].contains(&&*v)
        {
            cmd.env_remove(&var);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut process = Spawned::start(
        "cargo lambda watch",
        cmd,
        log_path("cargo-lambda"),
        "pip install cargo-lambda (scripts/ensure-tools.sh test does)",
    );
    wait_for_port(&mut process, port, Duration::from_secs(60));
    let watch = Watch {
        process,
        base: format!("http://127.0.0.1:{port}/lambda-url/bootstrap"),
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
    };
    // The first answer comes once the function is built and has polled for an event.
    let deadline = Instant::now() + WATCH_START;
    loop {
        // The emulator holds the request until the function answers: wait as long as allowed
        // (a request given up on would make the function's reply fail in the emulator's log).
        let left = deadline.saturating_duration_since(Instant::now());
        let poll = watch.http.get(format!("{}/healthz", watch.base));
        match poll.timeout(left.max(Duration::from_secs(1))).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() > deadline => {
                panic!(
                    "cargo lambda watch did not serve /healthz within {WATCH_START:?}\n{}",
                    watch.process.tail()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    watch
}

impl Watch {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.process.tail()));
        let status = resp.status().as_u16();
        let mut headers = http::HeaderMap::new();
        for (k, v) in resp.headers() {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_str().as_bytes()),
                http::HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.append(k, v);
            }
        }
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {text}\n{}",
                self.process.tail()
            )
        });
        Reply {
            status,
            headers,
            body,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_serves_the_flow_lifecycle_over_http() {
    let endpoints = etcd().endpoints().join(",");
    let w = cargo_lambda_watch(&[("ETCD_ENDPOINTS", &endpoints)]).await;
    use reqwest::Method;
    let name = format!(
        "lambda-watch-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let path = format!("/v1/flows/{name}");

    let r = w
        .call(Method::POST, "/v1/flows", Some(flow_spec(&name, 1)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"1\"");

    let r = w.call(Method::GET, &path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], name.as_str());

    let r = w
        .call_with(
            Method::PUT,
            &path,
            Some(flow_spec(&name, 3)),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"2\"");

    let r = w
        .call(Method::POST, &format!("{path}/rollback/1"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(r.body["spec"]["stages"][0]["threads"], 1);

    let r = w.call(Method::DELETE, &path, None).await;
    assert_eq!((r.status, &r.body), (200, &json!({})));
    let r = w.call(Method::GET, &path, None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.error().1, "FLOW_NOT_FOUND");

    // Logs: JSON lines carrying the Lambda request id, which is also the response's
    // x-request-id.
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let log = w.process.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|l| l["spans"].to_string().contains(&id))
        .unwrap_or_else(|| {
            panic!(
                "no JSON log line with request id {id}\n{}",
                w.process.tail()
            )
        });
    assert_eq!(line["spans"][0]["requestId"], id.as_str(), "{line}");
}

/// The production configuration path end to end: the secret named by `FLOW_ETCD_SECRET_ARN`,
/// read through the SDK's default chain (`AWS_ENDPOINT_URL` → moto). Missing at first: 503 and
/// no crash; created: served by the same function process after the retry interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_reads_etcd_from_secrets_manager() {
    let moto = moto();
    let name = format!("flowpipe/etcd-{}", uuid::Uuid::new_v4().simple());
    let w = cargo_lambda_watch(&[
        ("FLOW_ETCD_SECRET_ARN", &name),
        ("AWS_ENDPOINT_URL", &moto.url),
        ("AWS_REGION", TEST_REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])
    .await;
    use reqwest::Method;
    let flow = format!(
        "lambda-secret-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );

    let r = w
        .call(Method::GET, &format!("/v1/flows/{flow}"), None)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let (code, _, message) = r.error();
    assert_eq!(code, 14);
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        w.process.log().contains("does not exist"),
        "the reason is logged\n{}",
        w.process.tail()
    );

    moto.client()
        .await
        .create_secret()
        .name(&name)
        .secret_string(secret_json(&etcd().endpoints()))
        .send()
        .await
        .expect("create secret");
    let deadline = Instant::now() + flowpipe_api::lambda::RETRY_AFTER + Duration::from_secs(20);
    loop {
        let r = w
            .call(Method::POST, "/v1/flows", Some(flow_spec(&flow, 1)))
            .await;
        if r.status == 200 {
            assert_eq!(r.etag(), "\"1\"");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(Instant::now() < deadline, "never recovered: {}", r.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = w
        .call(Method::DELETE, &format!("/v1/flows/{flow}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn the_fixtures_are_the_ones_the_readme_shows() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    for entry in std::fs::read_dir(manifest_dir().join("fixtures/lambda")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            readme.contains(&format!("fixtures/lambda/{name}")),
            "README.md does not show fixtures/lambda/{name}"
        );
    }
    assert!(Path::new(&manifest_dir().join("template.yaml")).is_file());
}

// ---- observability --------------------------------------------------------------------------

/// Without a collector, the function writes each REST request's two HTTP metrics as one
/// CloudWatch Embedded Metric Format line: parsed here, as CloudWatch would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_the_http_metrics_are_emf_lines() {
    use flowpipe_api::telemetry::{EmfWriter, Host, Metrics, Telemetry};
    use std::sync::{Arc, Mutex};

    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let emf = EmfWriter::with_sink("flow-api", move |l| {
        sink.lock().unwrap().push(l.to_string());
    });
    let mut config = LambdaConfig::new(EtcdSource::Endpoints(etcd().endpoints()));
    config.namespace = unique_namespace().into_bytes();
    let app = LambdaApp::from_config(
        Ok(config),
        Options {
            telemetry: Telemetry::from_metrics(Metrics::emf(emf), Host::Lambda),
            ..Options::default()
        },
    );
    let r = send(&app, fixture("apigw-v2-create-flow.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same name with another spec: 409.
    let mut conflict = fixture_json("apigw-v2-create-flow.json");
    conflict["body"] = json!(r#"{"name": "lambda-demo", "mode": "JOB"}"#);
    let r = send(&app, event(conflict, Payload::V2)).await;
    assert_eq!(r.status, 409, "{}", r.body);
    // On a named stage: the route is the template, without the stage.
    let r = send(&app, fixture("apigw-v2-get-flow-stage.json", Payload::V2)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut unknown = fixture_json("apigw-v2-healthz.json");
    unknown["rawPath"] = json!("/nowhere/at/all");
    let r = send(&app, event(unknown, Payload::V2)).await;
    assert_eq!(r.status, 404, "{}", r.body);

    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
    let mut seen = Vec::new();
    for line in &lines {
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: Value = serde_json::from_str(line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "flow-api");
        assert_eq!(
            directive["Dimensions"],
            json!([["http.method", "http.route", "http.status_code"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "flow_api_http_requests_total", "Unit": "Count"},
                {"Name": "flow_api_http_latency_ms", "Unit": "Milliseconds"},
            ])
        );
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(v["flow_api_http_requests_total"], 1);
        assert!(v["flow_api_http_latency_ms"].as_f64().unwrap() >= 0.0);
        seen.push((
            v["http.method"].as_str().unwrap().to_string(),
            v["http.route"].as_str().unwrap().to_string(),
            // CloudWatch dimensions are strings.
            v["http.status_code"].as_str().unwrap().to_string(),
        ));
    }
    let seen: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|(m, r, s)| (m.as_str(), r.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/v1/flows", "200"),
            ("POST", "/v1/flows", "409"),
            ("GET", "/v1/flows/{name}", "200"),
            ("GET", "unmatched", "404"),
        ]
    );
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set (the ADOT layer's local collector), the `bootstrap`
/// binary exports over OTLP and flushes before each invocation's response is returned: the
/// collector has a request's metrics and span by the time its caller has the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_lambda_watch_exports_each_invocation_before_answering() {
    use flowpipe_testkit::otlp::{Receiver, attrs};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as N;

    let receiver = Receiver::start();
    let endpoints = etcd().endpoints().join(",");
    let collector = receiver.addr.to_string();
    let w = cargo_lambda_watch(&[
        ("ETCD_ENDPOINTS", &endpoints),
        ("FLOW_OBSERVABILITY_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
        ("OTEL_SERVICE_NAME", "flow-api-lambda"),
    ])
    .await;
    let count = |route: &str| -> i64 {
        let Some(Data::Sum(sum)) = receiver
            .data
            .metric("flow_api_http_requests_total")
            .and_then(|m| m.data)
        else {
            return 0;
        };
        sum.data_points
            .iter()
            .filter(|p| {
                attrs(&p.attributes).get("http.route") == Some(&flowpipe_testkit::otlp::s(route))
            })
            .map(|p| match p.value {
                Some(N::AsInt(i)) => i,
                _ => 0,
            })
            .sum()
    };
    let name = format!(
        "lambda-otel-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let r = w
        .call(
            reqwest::Method::POST,
            "/v1/flows",
            Some(flow_spec(&name, 1)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // No waiting: the flush happened before the response.
    assert_eq!(count("/v1/flows"), 1, "{}", w.process.tail());
    for n in 1..=2 {
        let r = w
            .call(reqwest::Method::GET, &format!("/v1/flows/{name}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(count("/v1/flows/{name}"), n, "{}", w.process.tail());
    }
    assert!(
        receiver
            .data
            .spans()
            .iter()
            .filter(|s| s.name == "GET /v1/flows/{name}")
            .count()
            >= 2
    );
    assert_eq!(
        receiver.data.metrics_resource()["service.name"],
        flowpipe_testkit::otlp::s("flow-api-lambda")
    );
}
