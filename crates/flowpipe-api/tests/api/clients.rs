//! What the original API's real clients rely on (issue "flowctl, curl, protojson"; contract
//! B.4): `flowctl update --name`, `flowctl stop` twice, `curl -d` without a JSON content type
//! (and the cross-site guard that comes with it), a previous incarnation's status hidden after
//! a re-create, and advice in errors worded for the transport that received the call.

use axum::body::Body;
use axum::http::Request;
use flowpipe_api::HttpSettings;
use flowpipe_api::grpc::v1::flow_service_client::FlowServiceClient;
use flowpipe_api::server::Config;
use flowpipe_core::kv::{Kv, Txn, TxnOp};
use flowpipe_core::proto::v1::*;
use flowpipe_store::{Store, StoreConfig};
use prost::Message;
use serde_json::json;
use tonic::Code;

use crate::rest::{Api, two_stage};
use flowpipe_testkit::TestServer;
use flowpipe_testkit::both;
use flowpipe_testkit::stores::etcd_config;

fn spec(v: serde_json::Value) -> FlowSpec {
    flowpipe_core::json::decode_flow_spec(v.to_string().as_bytes()).unwrap()
}

/// A write as a browser or curl sends it: the body, and the headers given.
fn write(method: &str, uri: &str, body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// What the controller does: write a flow's status.
async fn controller_writes_status(store: &Store, flow: &str, status: &FlowStatus) {
    store
        .txn(Txn {
            success: vec![TxnOp::put(
                format!("/flowpipe/flows/{flow}/status"),
                status.encode_to_vec(),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
}

// ---- 2. flowctl update --name X other.yaml -------------------------------------------------

/// Exactly what `flowctl update --name orders other.yaml` sends: the request names the flow,
/// the spec file names another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowctl_update_with_a_name_updates_that_flow() {
    let server = TestServer::start(Config::for_tests(etcd_config())).await;
    let mut c = FlowServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    c.create_flow(CreateFlowRequest {
        spec: Some(spec(two_stage("orders", 1))),
        validate_only: false,
    })
    .await
    .unwrap();
    let updated = c
        .update_flow(UpdateFlowRequest {
            name: "orders".into(),
            spec: Some(spec(two_stage("other", 4))),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.name.as_str(), updated.version), ("orders", 2));
    assert_eq!(updated.spec.as_ref().unwrap().name, "orders");
    assert_eq!(updated.spec.unwrap().stages[0].threads, 4);
    let e = c
        .get_flow(GetFlowRequest {
            name: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "no flow named by the file");
    server.stop().await;
}

async fn rest_update_takes_the_paths_name(store: Store) {
    let api = Api::new(store);
    api.call("POST", "/v1/flows", Some(two_stage("orders", 1)))
        .await
        .ok();
    let r = api
        .call("PUT", "/v1/flows/orders", Some(two_stage("other", 2)))
        .await;
    assert_eq!(r.ok()["spec"]["name"], "orders");
    assert_eq!(r.json["version"], "2");
    api.call("GET", "/v1/flows/other", None)
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
}

// ---- 3. deleting twice -------------------------------------------------------------------------

async fn deleting_twice_succeeds_over_rest(store: Store) {
    let api = Api::new(store);
    api.call("POST", "/v1/flows", Some(two_stage("stop-me", 1)))
        .await
        .ok();
    for _ in 0..2 {
        assert_eq!(
            api.call("DELETE", "/v1/flows/stop-me", None).await.ok(),
            &json!({})
        );
    }
    api.call("DELETE", "/v1/flows/never-was", None)
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
    // Schemas follow the flow rules.
    let schema = json!({"schemaId": "events", "format": "IN_MEMORY_SCHEMA_FORMAT_JSON",
                        "rawSchema": "e30="});
    api.call("POST", "/v1/schemas", Some(schema)).await.ok();
    for _ in 0..2 {
        api.call("DELETE", "/v1/schemas/events", None).await.ok();
    }
    api.call("GET", "/v1/schemas/events/versions", None)
        .await
        .error(404, 5, "SCHEMA_NOT_FOUND");
    api.call("DELETE", "/v1/schemas/never-was", None)
        .await
        .error(404, 5, "SCHEMA_NOT_FOUND");
}

/// `flowctl stop x` twice exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowctl_stop_twice_succeeds() {
    let server = TestServer::start(Config::for_tests(StoreConfig::InMemory)).await;
    let mut c = FlowServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    c.create_flow(CreateFlowRequest {
        spec: Some(spec(two_stage("x", 1))),
        validate_only: false,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        c.delete_flow(DeleteFlowRequest { name: "x".into() })
            .await
            .unwrap();
    }
    let e = c
        .delete_flow(DeleteFlowRequest {
            name: "never-was".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

// ---- 4. any Content-Type is JSON, except a cross-site browser write -------------------------

async fn curl_without_a_json_content_type_works(store: Store) {
    let api = Api::new(store);
    let body = r#"{"name":"curl-NAME","mode":"JOB"}"#;
    // `curl -d` sends application/x-www-form-urlencoded; others send nothing or text/plain.
    for (name, headers) in [
        (
            "curl-form",
            vec![("content-type", "application/x-www-form-urlencoded")],
        ),
        ("curl-none", vec![]),
        ("curl-text", vec![("content-type", "text/plain")]),
    ] {
        let r = api
            .raw(write(
                "POST",
                "/v1/flows",
                &body.replace("curl-NAME", name),
                &headers,
            ))
            .await;
        assert_eq!(r.ok()["name"], name);
    }
    let r = api
        .raw(write(
            "PUT",
            "/v1/flows/curl-none",
            r#"{"mode":"STREAMING"}"#,
            &[("content-type", "text/plain")],
        ))
        .await;
    assert_eq!(r.ok()["version"], "2");
}

async fn cross_site_browser_writes_are_refused(store: Store) {
    let api = Api::with(
        store,
        HttpSettings {
            cors_origins: vec!["https://ui.example".into()],
            ..HttpSettings::default()
        },
    );
    api.call("POST", "/v1/flows", Some(two_stage("target", 1)))
        .await
        .ok();
    let forged = r#"{"name":"forged","mode":"JOB"}"#;
    let form = ("content-type", "application/x-www-form-urlencoded");
    let text = ("content-type", "text/plain");
    // What a hostile page can make a browser send without asking CORS first.
    for (method, uri, headers) in [
        (
            "POST",
            "/v1/flows",
            vec![form, ("sec-fetch-site", "cross-site")],
        ),
        (
            "POST",
            "/v1/flows",
            vec![text, ("origin", "https://evil.example")],
        ),
        ("POST", "/v1/flows", vec![("origin", "null")]),
        (
            "PUT",
            "/v1/flows/target",
            vec![text, ("sec-fetch-site", "cross-site")],
        ),
        (
            "DELETE",
            "/v1/flows/target",
            vec![("sec-fetch-site", "cross-site")],
        ),
        (
            "POST",
            "/v1/flows/target/rollback/1",
            vec![("origin", "https://evil.example")],
        ),
        (
            "DELETE",
            "/v1/schemas/anything",
            vec![("origin", "https://evil.example")],
        ),
    ] {
        let r = api.raw(write(method, uri, forged, &headers)).await;
        r.error(403, 7, "CROSS_SITE_WRITE");
        assert!(
            r.json["message"]
                .as_str()
                .unwrap()
                .contains("Content-Type: application/json"),
            "{}",
            r.json
        );
    }
    // Nothing was written: no forged flow, the target still at version 1.
    api.call("GET", "/v1/flows/forged", None)
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
    assert_eq!(
        api.call("GET", "/v1/flows/target", None).await.ok()["version"],
        "1"
    );
    // Not refused: a JSON write (browsers preflight it; CORS decides), an allowed origin, the
    // server's own origin, reads, and clients that are not browsers.
    let json_ct = ("content-type", "application/json");
    for (name, headers) in [
        ("ok-json", vec![json_ct, ("sec-fetch-site", "cross-site")]),
        ("ok-cors", vec![text, ("origin", "https://ui.example")]),
        (
            "ok-own",
            vec![
                text,
                ("origin", "http://api.internal:8080"),
                ("host", "api.internal:8080"),
            ],
        ),
        ("ok-same", vec![text, ("sec-fetch-site", "same-origin")]),
        ("ok-curl", vec![form]),
    ] {
        let body = forged.replace("forged", name);
        let r = api.raw(write("POST", "/v1/flows", &body, &headers)).await;
        assert_eq!(r.ok()["name"], name, "{headers:?}");
    }
    let r = api
        .raw(write(
            "GET",
            "/v1/flows/target",
            "",
            &[("sec-fetch-site", "cross-site")],
        ))
        .await;
    r.ok();
}

// ---- 1. stale status after delete and re-create ----------------------------------------------

async fn a_previous_incarnations_status_is_hidden_over_rest(store: Store) {
    let api = Api::new(store.clone());
    api.call("POST", "/v1/flows", Some(two_stage("again", 1)))
        .await
        .ok();
    let running = FlowStatus {
        state: FlowState::Running as i32,
        active_version: 1,
        ..Default::default()
    };
    controller_writes_status(&store, "again", &running).await;
    let r = api.call("GET", "/v1/flows/again/status", None).await;
    assert_eq!(r.ok()["state"], "FLOW_STATE_RUNNING");
    api.call("DELETE", "/v1/flows/again", None).await.ok();
    let r = api
        .call("POST", "/v1/flows", Some(two_stage("again", 2)))
        .await;
    assert_eq!(r.ok()["version"], "2");
    assert_eq!(r.json["status"]["state"], "FLOW_STATE_UNSPECIFIED");
    for path in ["/v1/flows/again/status"] {
        let r = api.call("GET", path, None).await;
        assert_eq!(r.ok()["state"], "FLOW_STATE_UNSPECIFIED", "{path}");
        assert_eq!(r.json["activeVersion"], "0", "{path}");
    }
    let r = api.call("GET", "/v1/flows/again", None).await;
    assert_eq!(r.ok()["status"]["state"], "FLOW_STATE_UNSPECIFIED");
    let r = api.call("GET", "/v1/flows", None).await;
    let listed = r.ok()["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "again")
        .unwrap()
        .clone();
    assert_eq!(listed["status"]["state"], "FLOW_STATE_UNSPECIFIED");
}

// ---- 6. advice in the caller's terms --------------------------------------------------------

/// A create on a live name with another spec: REST says PUT, gRPC says UpdateFlow / flowctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_names_the_callers_interface() {
    let server = TestServer::start(Config::for_tests(StoreConfig::InMemory)).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.http);
    let created = http
        .post(format!("{base}/v1/flows"))
        .json(&two_stage("taken", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let r = http
        .post(format!("{base}/v1/flows"))
        .json(&two_stage("taken", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    let rest_message = body["message"].as_str().unwrap();
    assert_eq!(
        rest_message,
        "flow \"taken\" already exists with a different spec (active version 1); use PUT /v1/flows/taken to change it"
    );

    let mut c = FlowServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let e = c
        .create_flow(CreateFlowRequest {
            spec: Some(spec(two_stage("taken", 2))),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        e.message(),
        "flow \"taken\" already exists with a different spec (active version 1); use UpdateFlow to change it (flowctl update --name taken <file>)"
    );
    assert!(!e.message().contains("PUT"), "{}", e.message());
    server.stop().await;
}

both!(
    rest_update_takes_the_paths_name,
    deleting_twice_succeeds_over_rest,
    curl_without_a_json_content_type_works,
    cross_site_browser_writes_are_refused,
    a_previous_incarnations_status_is_hidden_over_rest,
);
