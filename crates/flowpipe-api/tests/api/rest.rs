//! The REST API in process (`oneshot` on the router) against both backends: every route's
//! success path with full JSON shapes, and every way a request can be wrong.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use flowpipe_api::{AppState, HttpSettings, router};
use flowpipe_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use flowpipe_testkit::both;

pub struct Api {
    app: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Api {
    pub fn new(store: Store) -> Self {
        Self::with(store, HttpSettings::default())
    }

    pub fn with(store: Store, http: HttpSettings) -> Self {
        Api {
            app: router(AppState::new(store, http, None)),
        }
    }

    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            headers,
            json,
        }
    }

    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body).unwrap()).await
    }
}

impl Reply {
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.json);
        &self.json
    }

    /// Checks the contract's error body: code, a message, an ErrorInfo with `reason`.
    #[track_caller]
    pub fn error(&self, status: u16, code: i64, reason: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.headers["content-type"], "application/json");
        let j = &self.json;
        assert_eq!(j["code"], code, "{j}");
        assert!(!j["message"].as_str().unwrap().is_empty(), "{j}");
        let info = &j["details"][0];
        assert_eq!(
            info["@type"], "type.googleapis.com/google.rpc.ErrorInfo",
            "{j}"
        );
        assert_eq!(info["domain"], "flowpipe.io");
        assert_eq!(info["reason"], reason, "{j}");
        j
    }

    /// The BadRequest field violations of an error body.
    pub fn violations(&self) -> Vec<(String, String)> {
        self.json["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
            .flat_map(|d| d["fieldViolations"].as_array().unwrap().clone())
            .map(|v| {
                (
                    v["field"].as_str().unwrap().to_string(),
                    v["description"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn two_stage(name: &str, threads: u32) -> Value {
    json!({
        "name": name,
        "mode": "STREAMING",
        "labels": {"team": "data"},
        "queues": [{"name": "events", "capacity": 0}],
        "stages": [
            {"name": "source", "type": "kafka", "threads": threads, "output_queue": "events",
             "config": {"topic": "orders"}},
            {"name": "sink", "type": "s3", "threads": 1, "inputQueue": "events"}
        ]
    })
}

async fn create_get_update_rollback_delete(store: Store) {
    let api = Api::new(store);
    let r = api
        .call("POST", "/v1/flows", Some(two_stage("orders", 2)))
        .await;
    let f = r.ok().clone();
    assert_eq!(r.headers["etag"], "\"1\"");
    // Full shape: lowerCamelCase, u64 as strings, every field emitted.
    assert_eq!(f["name"], "orders");
    assert_eq!(f["version"], "1");
    assert_eq!(f["latestVersion"], "1");
    assert!(f["uid"].as_str().unwrap().len() >= 32);
    assert!(f["createTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(f["updateTime"], f["createTime"]);
    let spec = &f["spec"];
    assert_eq!(spec["version"], "1");
    assert_eq!(spec["execution"]["mode"], "EXECUTION_MODE_STREAMING");
    assert_eq!(
        spec["queues"][0],
        json!({"name": "events", "capacity": 128})
    );
    assert_eq!(spec["stages"][0]["outputQueue"], "events");
    assert_eq!(spec["stages"][0]["config"], json!({"topic": "orders"}));
    assert_eq!(spec["labels"], json!({"team": "data"}));
    assert_eq!(spec["env"], json!({}));
    assert_eq!(
        f["status"],
        json!({"state": "FLOW_STATE_UNSPECIFIED", "message": "", "activeVersion": "0", "workload": "", "lastUpdated": null})
    );

    let got = api.call("GET", "/v1/flows/orders", None).await;
    assert_eq!(got.ok(), &f);
    assert_eq!(got.headers["etag"], "\"1\"");

    let up = api
        .call("PUT", "/v1/flows/orders", Some(two_stage("orders", 4)))
        .await;
    assert_eq!(up.ok()["version"], "2");
    assert_eq!(up.headers["etag"], "\"2\"");
    assert_eq!(up.json["spec"]["stages"][0]["threads"], 4);
    assert_eq!(up.json["uid"], f["uid"]);

    let rb = api.call("POST", "/v1/flows/orders/rollback/1", None).await;
    assert_eq!(rb.ok()["version"], "1");
    assert_eq!(rb.json["latestVersion"], "2");
    assert_eq!(rb.headers["etag"], "\"1\"");

    let status = api.call("GET", "/v1/flows/orders/status", None).await;
    assert_eq!(status.ok()["state"], "FLOW_STATE_UNSPECIFIED");

    let history = api.call("GET", "/v1/flows/orders/versions", None).await;
    let versions = history.ok()["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], "1");
    assert_eq!(versions[0]["active"], true);
    assert_eq!(versions[1]["active"], false);
    assert!(versions[1]["createTime"].is_string());
    assert_eq!(history.json["nextPageToken"], "");

    let v2 = api.call("GET", "/v1/flows/orders/versions/2", None).await;
    assert_eq!(v2.ok()["version"], "2");
    assert_eq!(v2.json["spec"]["stages"][0]["threads"], 4);
    // GetFlowVersion has no status: an unset message field is null, as grpc-gateway writes it.
    assert_eq!(v2.json["status"], Value::Null);
    assert!(v2.json.as_object().unwrap().contains_key("status"));
    assert_eq!(v2.json["spec"]["stages"][1]["config"], Value::Null);
    assert_eq!(
        v2.headers["etag"], "\"1\"",
        "the ETag names the active version"
    );

    let list = api.call("GET", "/v1/flows", None).await;
    assert_eq!(
        list.ok()["flows"],
        json!([{"name": "orders", "version": "1",
                "status": {"state": "FLOW_STATE_UNSPECIFIED", "message": "", "activeVersion": "0", "workload": "", "lastUpdated": null}}])
    );

    let del = api.call("DELETE", "/v1/flows/orders", None).await;
    assert_eq!(del.ok(), &json!({}));
    api.call("GET", "/v1/flows/orders", None)
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
    // Deleting it again succeeds (contract B.4; see clients.rs).
    assert_eq!(
        api.call("DELETE", "/v1/flows/orders", None).await.ok(),
        &json!({})
    );
}

async fn the_readme_first_request_succeeds(store: Store) {
    let api = Api::new(store);
    let body = json!({"name":"example","mode":"JOB","queues":[],"stages":[]});
    let r = api.call("POST", "/v1/flows", Some(body.clone())).await;
    assert_eq!(r.ok()["spec"]["execution"]["mode"], "EXECUTION_MODE_JOB");
    // Posting it again is idempotent, not a conflict.
    assert_eq!(
        api.call("POST", "/v1/flows", Some(body)).await.ok()["version"],
        "1"
    );
    let other = json!({"name":"example","mode":"STREAMING","queues":[],"stages":[]});
    api.call("POST", "/v1/flows", Some(other))
        .await
        .error(409, 6, "FLOW_ALREADY_EXISTS");
}

async fn validation_errors_list_every_field(store: Store) {
    let api = Api::new(store);
    let bad = json!({"name": "Bad Name", "version": "3", "queues": [{"name": "q"}],
        "stages": [{"name": "s", "type": "", "threads": 0, "inputQueue": "q", "outputQueue": "q"}]});
    let r = api.call("POST", "/v1/flows", Some(bad)).await;
    r.error(400, 3, "INVALID_FLOW_SPEC");
    let fields: Vec<String> = r.violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "name",
            "version",
            "stages[0].type",
            "stages[0].threads",
            "stages[0].output_queue"
        ]
    );
    // A flow with no stages is valid; the name alone is required.
    api.call("POST", "/v1/flows", Some(json!({})))
        .await
        .error(400, 3, "INVALID_FLOW_SPEC");
}

async fn malformed_requests_get_the_error_format(store: Store) {
    let api = Api::new(store);
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut b = Request::builder().method("POST").uri("/v1/flows");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(Body::from(body)).unwrap()
    };
    let json = Some("application/json");
    api.raw(post("{", json))
        .await
        .error(400, 3, "MALFORMED_JSON");
    api.raw(post("", json))
        .await
        .error(400, 3, "MALFORMED_JSON");
    api.raw(post("   ", json))
        .await
        .error(400, 3, "MALFORMED_JSON");
    api.raw(post("[1,2]", json))
        .await
        .error(400, 3, "INVALID_FIELD");
    api.raw(post(r#"{"name":"x","nme":1}"#, json))
        .await
        .error(400, 3, "INVALID_FIELD");
    let r = api.raw(post(r#"{"name":"x","name":"y"}"#, json)).await;
    r.error(400, 3, "INVALID_FIELD");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key `name`")
    );
    let r = api
        .raw(post(r#"{"name":"x","stages":[{"threads":"lots"}]}"#, json))
        .await;
    r.error(400, 3, "INVALID_FIELD");
    assert_eq!(r.violations()[0].0, "stages[0].threads");
    // Any content type is read as JSON (grpc-gateway does the same: `curl -d` works); see
    // clients.rs for the cross-site exception.
    api.raw(post(r#"{"name":"ct0"}"#, Some("text/plain")))
        .await
        .ok();
    api.raw(post(r#"{"name":"x","stages":1}"#, Some("text/plain")))
        .await
        .error(400, 3, "INVALID_FIELD");
    // charset parameters and +json types are JSON; no content type at all is taken as JSON.
    api.raw(post(
        r#"{"name":"ct1"}"#,
        Some("application/json; charset=utf-8"),
    ))
    .await
    .ok();
    api.raw(post(r#"{"name":"ct2"}"#, None)).await.ok();
}

async fn unknown_routes_methods_and_bad_paths(store: Store) {
    let api = Api::new(store);
    api.call("GET", "/v1/nope", None)
        .await
        .error(404, 5, "ROUTE_NOT_FOUND");
    api.call("GET", "/", None)
        .await
        .error(404, 5, "ROUTE_NOT_FOUND");
    let r = api.call("PATCH", "/v1/flows/x", None).await;
    r.error(501, 12, "METHOD_NOT_ALLOWED");
    api.call("DELETE", "/v1/flows", None)
        .await
        .error(501, 12, "METHOD_NOT_ALLOWED");
    let r = api.call("POST", "/v1/flows/x/rollback/abc", None).await;
    r.error(400, 3, "INVALID_VERSION");
    assert_eq!(r.violations()[0].0, "version");
    api.call("POST", "/v1/flows/x/rollback/0", None)
        .await
        .error(400, 3, "INVALID_VERSION");
    api.call("POST", "/v1/flows/x/rollback/-1", None)
        .await
        .error(400, 3, "INVALID_VERSION");
    api.call("GET", "/v1/flows/x/versions/1.5", None)
        .await
        .error(400, 3, "INVALID_VERSION");
    api.call("GET", "/v1/flows/UPPER", None)
        .await
        .error(400, 3, "INVALID_FLOW_NAME");
    api.call("GET", "/v1/flows/a%2Fb", None)
        .await
        .error(400, 3, "INVALID_FLOW_NAME");
    api.call("GET", "/v1/flows/%FF", None)
        .await
        .error(400, 3, "INVALID_PATH");
    api.call("GET", "/v1/flows/x?bogus=1", None)
        .await
        .error(400, 3, "UNKNOWN_QUERY_PARAMETER");
}

async fn oversized_bodies_get_413(store: Store) {
    let api = Api::with(
        store.clone(),
        HttpSettings {
            body_limit: 1000,
            ..Default::default()
        },
    );
    let big = json!({"name": "big", "labels": {"x": "y".repeat(2000)}});
    let r = api.call("POST", "/v1/flows", Some(big)).await;
    let j = r.error(413, 8, "REQUEST_TOO_LARGE");
    assert!(j["message"].as_str().unwrap().contains("larger"));
    // Within the body limit but above the 1 MiB spec limit: also 413.
    let api = Api::with(
        store,
        HttpSettings {
            body_limit: 4 * 1024 * 1024,
            ..Default::default()
        },
    );
    let huge = json!({"name": "huge", "labels": {"x": "y".repeat(1024 * 1024 + 10)}});
    api.call("POST", "/v1/flows", Some(huge))
        .await
        .error(413, 8, "SPEC_TOO_LARGE");
}

async fn query_parameters_in_both_spellings(store: Store) {
    let api = Api::new(store);
    for n in ["q1", "q2", "q3"] {
        api.call("POST", "/v1/flows", Some(two_stage(n, 1)))
            .await
            .ok();
    }
    let p1 = api.call("GET", "/v1/flows?page_size=2", None).await;
    let names: Vec<_> = p1.ok()["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, ["q1", "q2"]);
    let token = p1.json["nextPageToken"].as_str().unwrap().to_string();
    let p2 = api
        .call(
            "GET",
            &format!("/v1/flows?pageSize=2&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(p2.ok()["flows"][0]["name"], "q3");
    assert_eq!(p2.json["nextPageToken"], "");
    api.call("GET", "/v1/flows?page_size=-1", None)
        .await
        .error(400, 3, "INVALID_PAGE_SIZE");
    api.call("GET", "/v1/flows?page_size=x", None)
        .await
        .error(400, 3, "INVALID_QUERY_PARAMETER");
    api.call("GET", "/v1/flows?page_token=nope", None)
        .await
        .error(400, 3, "INVALID_PAGE_TOKEN");
    api.call("GET", "/v1/flows?page_size=1&pageSize=2", None)
        .await
        .error(400, 3, "INVALID_QUERY_PARAMETER");

    // validate_only / validateOnly write nothing.
    for q in ["validate_only=true", "validateOnly=1"] {
        let r = api
            .call("POST", &format!("/v1/flows?{q}"), Some(two_stage("dry", 1)))
            .await;
        assert_eq!(r.ok()["version"], "1");
        let r = api
            .call(
                "PUT",
                &format!("/v1/flows/q1?{q}"),
                Some(two_stage("q1", 9)),
            )
            .await;
        assert_eq!(r.ok()["version"], "2");
    }
    api.call("GET", "/v1/flows/dry", None)
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
    assert_eq!(
        api.call("GET", "/v1/flows/q1", None).await.ok()["version"],
        "1"
    );
    api.call(
        "POST",
        "/v1/flows?validate_only=maybe",
        Some(two_stage("d", 1)),
    )
    .await
    .error(400, 3, "INVALID_QUERY_PARAMETER");
}

async fn if_match_and_version_preconditions(store: Store) {
    let api = Api::new(store);
    api.call("POST", "/v1/flows", Some(two_stage("im", 1)))
        .await
        .ok();
    let put = |etag: &'static str, threads: u32| {
        Request::builder()
            .method("PUT")
            .uri("/v1/flows/im")
            .header("content-type", "application/json")
            .header("if-match", etag)
            .body(Body::from(two_stage("im", threads).to_string()))
            .unwrap()
    };
    let r = api.raw(put("\"7\"", 2)).await;
    let j = r.error(409, 10, "VERSION_MISMATCH");
    assert!(j["message"].as_str().unwrap().contains("version 1"));
    assert_eq!(j["details"][0]["metadata"]["expected_version"], "7");
    assert_eq!(api.raw(put("\"1\"", 2)).await.ok()["version"], "2");
    assert_eq!(api.raw(put("W/\"2\"", 3)).await.ok()["version"], "3");
    assert_eq!(api.raw(put("*", 4)).await.ok()["version"], "4");
    api.raw(put("3", 5)).await.error(400, 3, "INVALID_IF_MATCH");
    // spec.version is the same precondition; both given must agree.
    let mut body = two_stage("im", 6);
    body["version"] = json!("2");
    api.call("PUT", "/v1/flows/im", Some(body))
        .await
        .error(409, 10, "VERSION_MISMATCH");
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/flows/im")
        .header("if-match", "\"4\"")
        .body(Body::from(
            json!({"version": "3", "stages": []}).to_string(),
        ))
        .unwrap();
    api.raw(req)
        .await
        .error(400, 3, "CONFLICTING_PRECONDITIONS");
    // The path names the flow; a different name in the body is replaced (contract B.4).
    let r = api
        .call("PUT", "/v1/flows/im", Some(two_stage("other", 7)))
        .await;
    assert_eq!(r.ok()["spec"]["name"], "im");
    api.call("PUT", "/v1/flows/ghost", Some(two_stage("ghost", 1)))
        .await
        .error(404, 5, "FLOW_NOT_FOUND");
}

async fn schema_routes(store: Store) {
    let api = Api::new(store);
    let def = json!({"schemaId": "orders", "format": "IN_MEMORY_SCHEMA_FORMAT_JSON", "rawSchema": "e30="});
    let r = api.call("POST", "/v1/schemas", Some(def.clone())).await;
    assert_eq!(
        r.ok(),
        &json!({"schemaId": "orders", "version": 1, "format": "IN_MEMORY_SCHEMA_FORMAT_JSON", "rawSchema": "e30="})
    );
    api.call("GET", "/v1/schemas/orders/versions/1", None)
        .await
        .ok();
    assert_eq!(
        api.call("GET", "/v1/schemas/orders/versions", None)
            .await
            .ok()["schemas"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    api.call("GET", "/v1/schemas/orders/versions/x", None)
        .await
        .error(400, 3, "INVALID_VERSION");
    api.call("GET", "/v1/schemas/orders/versions/5", None)
        .await
        .error(404, 5, "SCHEMA_NOT_FOUND");
    assert_eq!(
        api.call("DELETE", "/v1/schemas/orders", None).await.ok(),
        &json!({})
    );
    api.call("GET", "/v1/schemas/orders/versions", None)
        .await
        .error(404, 5, "SCHEMA_NOT_FOUND");
    api.call("POST", "/v1/schemas", Some(json!({"schemaId": "x"})))
        .await
        .error(400, 3, "INVALID_SCHEMA");
}

async fn health_endpoints(store: Store) {
    let api = Api::new(store);
    assert_eq!(api.call("GET", "/healthz", None).await.ok()["status"], "ok");
    let r = api.call("GET", "/readyz", None).await;
    assert_eq!(r.ok()["status"], "ready");
    assert!(r.json["store"].is_string());
}

both!(
    create_get_update_rollback_delete,
    the_readme_first_request_succeeds,
    validation_errors_list_every_field,
    malformed_requests_get_the_error_format,
    unknown_routes_methods_and_bad_paths,
    oversized_bodies_get_413,
    query_parameters_in_both_spellings,
    if_match_and_version_preconditions,
    schema_routes,
    health_endpoints,
);

#[tokio::test]
async fn readyz_is_503_when_etcd_is_unreachable() {
    let nowhere = flowpipe_testkit::RefusedPort::new();
    let mut config = flowpipe_store::EtcdConfig::new(vec![nowhere.url()]);
    config.connect_timeout = std::time::Duration::from_millis(300);
    config.request_timeout = std::time::Duration::from_millis(500);
    let store = Store::open(flowpipe_store::StoreConfig::Etcd(Box::new(config))).unwrap();
    let api = Api::new(store);
    let r = api.call("GET", "/readyz", None).await;
    r.error(503, 14, "STORE_UNAVAILABLE");
    assert!(r.json["message"].as_str().unwrap().contains("not ready"));
    assert_eq!(api.call("GET", "/healthz", None).await.ok()["status"], "ok");
    // API calls fail the same way, never with a 500.
    api.call("GET", "/v1/flows/x", None)
        .await
        .error(503, 14, "STORE_UNAVAILABLE");
    api.call("POST", "/v1/flows", Some(two_stage("x", 1)))
        .await
        .error(503, 14, "STORE_UNAVAILABLE");
}

#[tokio::test]
async fn cors_and_compression() {
    let api = Api::with(
        flowpipe_testkit::stores::memory_store(),
        HttpSettings {
            cors_origins: vec!["https://ui.example".into()],
            ..Default::default()
        },
    );
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/v1/flows")
        .header("origin", "https://ui.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(preflight).await.unwrap();
    assert!(resp.status().is_success());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let other = Request::builder()
        .uri("/healthz")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(other).await.unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    for i in 0..30 {
        api.call("POST", "/v1/flows", Some(two_stage(&format!("z{i}"), 1)))
            .await
            .ok();
    }
    let gz = Request::builder()
        .uri("/v1/flows")
        .header("accept-encoding", "gzip")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(gz).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn readyz_fails_once_shutdown_begins() {
    let state = AppState::new(
        flowpipe_testkit::stores::memory_store(),
        HttpSettings::default(),
        None,
    );
    let api = Api {
        app: router(state.clone()),
    };
    api.call("GET", "/readyz", None).await.ok();
    state.set_draining();
    let r = api.call("GET", "/readyz", None).await;
    r.error(503, 14, "STORE_UNAVAILABLE");
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    assert_eq!(api.call("GET", "/healthz", None).await.ok()["status"], "ok");
}
