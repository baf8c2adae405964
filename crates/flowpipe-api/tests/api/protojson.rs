//! proto3 JSON over REST (contract B.5, issue #12): what the original Go API (grpc-gateway and
//! protojson) accepts, this API accepts with the same meaning, checked on what is stored.
//!
//! - `null` for every field kind means the field's default: scalar, proto3 optional, enum,
//!   message, repeated, map, `Struct` (and `null` inside a `Struct` is kept as a JSON null);
//! - integral numbers written as floats (`2.0`, `2e0`) are integers, for every integer kind;
//! - a wrong value is refused with the field's path and the expected type, in the contract's
//!   error model, never with a parser's internals.
//!
//! Bodies are sent as raw text: `2e0` must reach the server as written.

use axum::body::Body;
use axum::http::Request;
use flowpipe_store::Store;
use serde_json::{Value, json};

use crate::rest::{Api, Reply};
use flowpipe_testkit::both;

async fn send(api: &Api, method: &str, uri: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    api.raw(req).await
}

/// Creates a flow from raw JSON and returns the stored spec, read back with GET.
async fn create(api: &Api, name: &str, body: &str) -> Value {
    let r = send(api, "POST", "/v1/flows", body).await;
    assert_eq!(r.ok()["spec"]["name"], name, "{body}");
    let got = api.call("GET", &format!("/v1/flows/{name}"), None).await;
    got.ok()["spec"].clone()
}

/// Texts no error description may contain: a parser's internals ("invalid type: " is serde's
/// "invalid type: string, expected u32"; a message "invalid type: ..." about a field named
/// `type` is fine, so messages are checked for the others only).
const INTERNALS: &[&str] = &[
    "untagged enum",
    "Content",
    "invalid type: ",
    "serde",
    "pbjson",
];

#[track_caller]
fn assert_clean(r: &Reply) {
    let message = r.json["message"].as_str().unwrap();
    for internal in INTERNALS.iter().filter(|i| **i != "invalid type: ") {
        assert!(!message.contains(internal), "{internal:?}: {}", r.json);
    }
    for (field, description) in r.violations() {
        assert_ne!(field, "?", "{}", r.json);
        assert_ne!(field, "body", "{}", r.json);
        assert!(!field.is_empty(), "{}", r.json);
        for internal in INTERNALS {
            assert!(!description.contains(internal), "{internal:?}: {}", r.json);
        }
    }
}

/// Each `null` of the issue, alone in an otherwise ordinary spec, is that field's default.
async fn every_null_of_the_issue_is_the_default(store: Store) {
    let api = Api::new(store);
    let base = |name: &str, extra: &str| {
        format!(
            r#"{{"name":"{name}","queues":[{{"name":"q"}}],"stages":[{{"name":"s","type":"t","threads":1,"outputQueue":"q"}}]{extra}}}"#
        )
    };
    let spec = create(&api, "n-labels", &base("n-labels", r#","labels":null"#)).await;
    assert_eq!(spec["labels"], json!({}));
    let spec = create(&api, "n-env", &base("n-env", r#","env":null"#)).await;
    assert_eq!(spec["env"], json!({}));
    let spec = create(&api, "n-version", &base("n-version", r#","version":null"#)).await;
    assert_eq!(spec["version"], "1");
    let spec = create(&api, "n-mode", &base("n-mode", r#","mode":null"#)).await;
    assert!(
        !spec.as_object().unwrap().contains_key("execution"),
        "{spec}"
    );
    let spec = create(
        &api,
        "n-debug",
        &base("n-debug", r#","observability":{"debug":null}"#),
    )
    .await;
    assert_eq!(spec["observability"]["debug"], false);
    let spec = create(
        &api,
        "n-lists",
        r#"{"name":"n-lists","queues":null,"stages":null}"#,
    )
    .await;
    assert_eq!((&spec["queues"], &spec["stages"]), (&json!([]), &json!([])));
    let spec = create(
        &api,
        "n-capacity",
        r#"{"name":"n-capacity","queues":[{"name":"q","capacity":null}]}"#,
    )
    .await;
    // null is 0, and 0 takes the default capacity (B.5).
    assert_eq!(spec["queues"][0]["capacity"], 128);
}

/// `null` for every field kind in one spec, checked field by field on the stored spec.
async fn null_for_every_field_kind(store: Store) {
    let api = Api::new(store);
    let body = r#"{
        "name": "kinds", "version": null, "execution": {"mode": null},
        "labels": null, "env": null,
        "queues": [
            {"name": "q", "capacity": null, "type": null,
             "schema": {"format": null, "schemaId": null, "version": null, "registryUrl": null}},
            {"name": "r", "capacity": 4, "schema": null}
        ],
        "stages": [
            {"name": "s", "type": "t", "threads": 1, "inputQueue": null, "outputQueue": "q",
             "config": null, "plugin": null, "realtimePriority": null},
            {"name": "u", "type": "t", "threads": 1, "input_queue": "q",
             "config": {"a": null, "b": [null, 1], "c": {"d": null}}}
        ],
        "kubernetes": {"image": null, "imagePullPolicy": null, "restartPolicy": null,
                       "cpuPinning": null, "resources": {"cpuCores": null, "memoryMb": null}},
        "kubernetesOptions": {"podLabels": null, "podAnnotations": null,
                              "serviceAccountName": null, "imagePullSecrets": null,
                              "streamingWorkloadKind": null,
                              "cron": {"schedule": "@hourly", "timeZone": null, "suspend": null,
                                       "startingDeadlineSeconds": null,
                                       "concurrencyPolicy": null,
                                       "successfulJobsHistoryLimit": null}},
        "observability": {"tracing": null, "metrics": {"countersOnly": null}, "debug": null}
    }"#;
    let spec = create(&api, "kinds", body).await;
    assert_eq!(spec["version"], "1");
    // Enum: unset is the zero value.
    assert_eq!(
        spec["execution"],
        json!({"mode": "EXECUTION_MODE_UNSPECIFIED"})
    );
    // Maps and lists.
    assert_eq!(spec["labels"], json!({}));
    assert_eq!(spec["env"], json!({}));
    let q = spec["queues"][0].as_object().unwrap();
    assert_eq!(q["capacity"], 128);
    assert!(!q.contains_key("type"), "optional enum stays unset: {spec}");
    // Optional scalar inside a message: unset, so left out.
    assert_eq!(
        spec["queues"][0]["schema"],
        json!({"format": "IN_MEMORY_SCHEMA_FORMAT_UNSPECIFIED", "schemaId": ""})
    );
    assert!(
        !spec["queues"][1]
            .as_object()
            .unwrap()
            .contains_key("schema")
    );
    let s = spec["stages"][0].as_object().unwrap();
    for absent in ["inputQueue", "plugin", "realtimePriority"] {
        assert!(!s.contains_key(absent), "{absent}: {spec}");
    }
    // Struct: `null` is unset (written as null, like every unset message field)...
    assert_eq!(s["config"], Value::Null);
    // ...and `null` inside one is a JSON null.
    assert_eq!(
        spec["stages"][1]["config"],
        json!({"a": null, "b": [null, 1], "c": {"d": null}})
    );
    assert_eq!(spec["stages"][1]["inputQueue"], "q");
    let k8s = &spec["kubernetes"];
    assert_eq!(k8s["imagePullPolicy"], "IMAGE_PULL_POLICY_UNSPECIFIED");
    assert_eq!(k8s["restartPolicy"], "RESTART_POLICY_UNSPECIFIED");
    assert_eq!(k8s["cpuPinning"], json!({}));
    assert_eq!(k8s["resources"], json!({}));
    assert!(!k8s.as_object().unwrap().contains_key("image"));
    let opts = &spec["kubernetesOptions"];
    assert_eq!(opts["imagePullSecrets"], json!([]));
    assert_eq!(opts["podLabels"], json!({}));
    assert_eq!(
        opts["streamingWorkloadKind"],
        "STREAMING_WORKLOAD_KIND_UNSPECIFIED"
    );
    assert_eq!(
        opts["cron"],
        json!({"schedule": "@hourly", "concurrencyPolicy": "CRON_CONCURRENCY_POLICY_UNSPECIFIED"})
    );
    let obs = &spec["observability"];
    assert_eq!(obs["tracing"], Value::Null);
    assert_eq!(obs["metrics"]["countersOnly"], false);
    assert_eq!(obs["debug"], false);

    // The same spec PUT again is equal after defaults: no new version.
    let r = send(&api, "PUT", "/v1/flows/kinds", body).await;
    assert_eq!(r.ok()["version"], "1");
}

/// `2.0`, `2e0` and friends for every integer kind, each stored as the exact integer.
async fn integral_floats_for_every_integer_kind(store: Store) {
    let api = Api::new(store);
    // The issue's two examples.
    let spec = create(
        &api,
        "f-capacity",
        r#"{"name":"f-capacity","queues":[{"name":"q","capacity":2.0}]}"#,
    )
    .await;
    assert_eq!(spec["queues"][0]["capacity"], 2);
    let spec = create(
        &api,
        "f-threads",
        r#"{"name":"f-threads","stages":[{"name":"s","type":"t","threads":2e0}]}"#,
    )
    .await;
    assert_eq!(spec["stages"][0]["threads"], 2);

    let body = r#"{
        "name": "floats", "version": 0.0, "mode": 2.0,
        "queues": [{"name": "q", "capacity": 1.28e2, "type": 1.0, "schema": {"version": 3e0}}],
        "stages": [{"name": "s", "type": "t", "threads": "4.0", "outputQueue": "q",
                    "realtimePriority": 9.0}],
        "kubernetes": {"imagePullPolicy": 2e0, "cpuPinning": {"s": {"cpu": [0.0, 1e0, "2.0", 30e-1]}},
                       "resources": {"cpuCores": 2.0, "memoryMb": 5.12e2}},
        "kubernetesOptions": {"cron": {"schedule": "@daily", "startingDeadlineSeconds": -3.0,
                                       "successfulJobsHistoryLimit": 2e0,
                                       "failedJobsHistoryLimit": "-1.0"}},
        "observability": {"tracing": {"latencyBudgetMs": 1.5e3, "batch": {"maxQueueSize": 2048.0}}}
    }"#;
    let spec = create(&api, "floats", body).await;
    // uint64
    assert_eq!(spec["version"], "1");
    // enums by number written as a float
    assert_eq!(spec["execution"]["mode"], "EXECUTION_MODE_JOB");
    assert_eq!(spec["queues"][0]["type"], "QUEUE_TYPE_IN_MEMORY");
    assert_eq!(
        spec["kubernetes"]["imagePullPolicy"],
        "IMAGE_PULL_POLICY_IF_NOT_PRESENT"
    );
    // uint32, singular and optional, in lists and map values
    assert_eq!(spec["queues"][0]["capacity"], 128);
    assert_eq!(spec["queues"][0]["schema"]["version"], 3);
    assert_eq!(spec["stages"][0]["threads"], 4);
    assert_eq!(spec["stages"][0]["realtimePriority"], 9);
    assert_eq!(
        spec["kubernetes"]["cpuPinning"]["s"]["cpu"],
        json!([0, 1, 2, 3])
    );
    assert_eq!(
        spec["kubernetes"]["resources"],
        json!({"cpuCores": 2, "memoryMb": 512})
    );
    assert_eq!(spec["observability"]["tracing"]["latencyBudgetMs"], 1500);
    assert_eq!(
        spec["observability"]["tracing"]["batch"]["maxQueueSize"],
        2048
    );
    // int64 (written as a string) and int32
    let cron = &spec["kubernetesOptions"]["cron"];
    assert_eq!(cron["startingDeadlineSeconds"], "-3");
    assert_eq!(cron["successfulJobsHistoryLimit"], 2);
    assert_eq!(cron["failedJobsHistoryLimit"], -1);

    // uint64 as a float precondition on update: version 1.0 is version 1.
    let update = r#"{"version": 1.0, "stages": [{"name": "s", "type": "t", "threads": 5e0}]}"#;
    let r = send(&api, "PUT", "/v1/flows/f-threads", update).await;
    assert_eq!(r.ok()["version"], "2");
    assert_eq!(r.json["spec"]["stages"][0]["threads"], 5);
    let stale = r#"{"version": "1e0", "stages": []}"#;
    send(&api, "PUT", "/v1/flows/f-threads", stale)
        .await
        .error(409, 10, "VERSION_MISMATCH");
}

/// SchemaDefinition bodies follow the same rules: null, integral floats, both base64 forms.
async fn schema_bodies_follow_proto3_json(store: Store) {
    let api = Api::new(store);
    let r = send(
        &api,
        "POST",
        "/v1/schemas",
        r#"{"schemaId":"s1","version":null,"format":4.0,"rawSchema":"e30"}"#,
    )
    .await;
    assert_eq!(
        r.ok(),
        &json!({"schemaId": "s1", "version": 1, "format": "IN_MEMORY_SCHEMA_FORMAT_JSON", "rawSchema": "e30="})
    );
    let r = send(
        &api,
        "POST",
        "/v1/schemas",
        r#"{"schema_id":"s2","version":0.0,"format":"IN_MEMORY_SCHEMA_FORMAT_ARROW","raw_schema":"-_8"}"#,
    )
    .await;
    assert_eq!(r.ok()["rawSchema"], "+/8=");
    let r = send(
        &api,
        "POST",
        "/v1/schemas",
        r#"{"schemaId":"s3","format":1,"rawSchema":"%%%"}"#,
    )
    .await;
    r.error(400, 3, "INVALID_FIELD");
    assert_clean(&r);
    assert_eq!(
        r.violations(),
        [(
            "raw_schema".to_string(),
            "expected base64-encoded bytes (a string), got \"%%%\"".to_string()
        )]
    );
}

/// Wrong values: 400 INVALID_ARGUMENT, reason INVALID_FIELD, the field's path as validation
/// writes paths, and what was expected.
async fn wrong_values_name_the_field_and_the_expected_type(store: Store) {
    let api = Api::new(store);
    let cases = [
        (
            r#"{"name":"x","stages":[{"name":"s","type":"t","threads":2.5}]}"#,
            "stages[0].threads",
            "expected an unsigned 32-bit integer, got 2.5",
        ),
        (
            r#"{"name":"x","stages":[{},{"threads":"lots"}]}"#,
            "stages[1].threads",
            "expected an unsigned 32-bit integer, got \"lots\"",
        ),
        (
            r#"{"name":"x","queues":[{"name":"q","capacity":-1}]}"#,
            "queues[0].capacity",
            "expected an unsigned 32-bit integer, got -1 (out of range: 0 to 4294967295)",
        ),
        (
            r#"{"name":"x","queues":[{"name":"q","capacity":4294967296}]}"#,
            "queues[0].capacity",
            "expected an unsigned 32-bit integer, got 4294967296 (out of range: 0 to 4294967295)",
        ),
        (
            r#"{"name":"x","version":"abc"}"#,
            "version",
            "expected an unsigned 64-bit integer, got \"abc\"",
        ),
        (
            r#"{"name":"x","observability":{"debug":"true"}}"#,
            "observability.debug",
            "expected a boolean (true or false), got \"true\"",
        ),
        (
            r#"{"name":"x","kubernetes":{"imagePullPolicy":"SOMETIMES"}}"#,
            "kubernetes.image_pull_policy",
            "expected one of IMAGE_PULL_POLICY_UNSPECIFIED, IMAGE_PULL_POLICY_ALWAYS, IMAGE_PULL_POLICY_IF_NOT_PRESENT, IMAGE_PULL_POLICY_NEVER (or its number), got \"SOMETIMES\"",
        ),
        (
            r#"{"name":"x","labels":{"team":7}}"#,
            r#"labels["team"]"#,
            "expected a string, got 7",
        ),
        (
            r#"{"name":"x","labels":{"team":null}}"#,
            r#"labels["team"]"#,
            "expected a string, got null (a map value cannot be null)",
        ),
        (
            r#"{"name":"x","stages":[null]}"#,
            "stages[0]",
            "expected a JSON object (a StageSpec), got null (a list element cannot be null)",
        ),
        (
            r#"{"name":"x","kubernetesOptions":{"imagePullSecrets":"regcred"}}"#,
            "kubernetes_options.image_pull_secrets",
            "expected a JSON array of strings, got \"regcred\"",
        ),
        (
            r#"{"name":"x","stages":[{"config":[1]}]}"#,
            "stages[0].config",
            "expected a JSON object, got an array",
        ),
        (
            r#"{"name":"x","execution":"JOB"}"#,
            "execution",
            "expected a JSON object (an Execution), got \"JOB\"",
        ),
        (
            r#"{"name":"x","stages":[{"name":"s","bogus":1}]}"#,
            "stages[0].bogus",
            "unknown field \"bogus\" (StageSpec has: name, type, threads, input_queue, output_queue, config, plugin, realtime_priority)",
        ),
        (
            r#"{"name":"x","stages":[{"inputQueue":"a","input_queue":"b"}]}"#,
            "stages[0].input_queue",
            "duplicate key `input_queue` (already given as \"inputQueue\"): a field may be given only once",
        ),
        (
            r#"[1,2]"#,
            "request body",
            "expected a JSON object (a FlowSpec), got an array",
        ),
    ];
    for (body, field, description) in cases {
        let r = send(&api, "POST", "/v1/flows", body).await;
        r.error(400, 3, "INVALID_FIELD");
        assert_clean(&r);
        assert_eq!(
            r.violations(),
            [(field.to_string(), description.to_string())],
            "{body}"
        );
        assert_eq!(
            r.json["message"],
            format!("invalid {field}: {description}"),
            "{body}"
        );
    }
    // Every problem of a body is listed.
    let r = send(
        &api,
        "POST",
        "/v1/flows",
        r#"{"name":"x","stages":[{"threads":2.5},{"threads":-1}],"env":{"A":1}}"#,
    )
    .await;
    r.error(400, 3, "INVALID_FIELD");
    let fields: Vec<String> = r.violations().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["stages[0].threads", "stages[1].threads", r#"env["A"]"#]
    );
    // Nothing was stored by any of them.
    assert_eq!(
        api.call("GET", "/v1/flows", None).await.ok()["flows"],
        json!([])
    );
}

/// Malformed JSON: field "request body", what is wrong and where, in plain words.
async fn malformed_json_says_what_and_where(store: Store) {
    let api = Api::new(store);
    let cases = [
        (
            "{\"name\": \"x\",\n \"stages\": [}",
            "not valid JSON: expected a JSON value, found `}` at line 2, column 13",
        ),
        (
            "{\"name\": \"x\" \"stages\": []}",
            "not valid JSON: expected `,` or `}` after an object member, found `\"` at line 1, column 14",
        ),
        (
            "{\"name\": 'x'}",
            "not valid JSON: expected a JSON value, found `'` at line 1, column 10",
        ),
        (
            "{\"name\": \"x\",}",
            "not valid JSON: expected a key in double quotes after `,` (no trailing commas in JSON) at line 1, column 14",
        ),
        ("", "empty, expected a JSON object (a FlowSpec)"),
    ];
    for (body, description) in cases {
        let r = send(&api, "POST", "/v1/flows", body).await;
        r.error(400, 3, "MALFORMED_JSON");
        assert_clean(&r);
        assert_eq!(
            r.violations(),
            [("request body".to_string(), description.to_string())],
            "{body}"
        );
    }
}

both!(
    every_null_of_the_issue_is_the_default,
    null_for_every_field_kind,
    integral_floats_for_every_integer_kind,
    schema_bodies_follow_proto3_json,
    wrong_values_name_the_field_and_the_expected_type,
    malformed_json_says_what_and_where,
);

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Field names of the FlowSpec tree (both spellings), plus a few that are not.
    const KEYS: &[&str] = &[
        "name",
        "version",
        "mode",
        "execution",
        "stages",
        "queues",
        "labels",
        "env",
        "observability",
        "kubernetes",
        "kubernetesOptions",
        "kubernetes_options",
        "type",
        "threads",
        "inputQueue",
        "output_queue",
        "config",
        "plugin",
        "realtimePriority",
        "capacity",
        "schema",
        "format",
        "schemaId",
        "cpuPinning",
        "cpu",
        "resources",
        "cpuCores",
        "imagePullSecrets",
        "cron",
        "schedule",
        "startingDeadlineSeconds",
        "failedJobsHistoryLimit",
        "debug",
        "tracing",
        "batch",
        "maxQueueSize",
        "bogus",
        "a",
    ];

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop::sample::select(vec![
                json!(2.0),
                json!("2.0"),
                json!("1e2"),
                json!("EXECUTION_MODE_JOB"),
                json!("JOB"),
                json!("e30="),
                json!("2024-05-01T12:00:00Z"),
                json!(""),
            ]),
            "\\PC{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(
                    |members| {
                        Value::Object(
                            members
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        )
                    }
                ),
            ]
        })
    }

    /// Valid JSON text, then maybe broken: cut short, or a character of JSON's grammar
    /// inserted or removed somewhere.
    fn json_text() -> impl Strategy<Value = String> {
        (
            any_json(),
            0..4u8,
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", "-", ".", "e", "0", " ", "n", "t",
                "\u{0}",
            ]),
        )
            .prop_map(|(v, how, at, ch)| {
                let text = v.to_string();
                let chars: Vec<char> = text.chars().collect();
                let i = at.index(chars.len() + 1);
                let mut out: String = chars[..i].iter().collect();
                match how {
                    0 => {} // cut short
                    1 => {
                        out.push_str(ch); // insert
                        out.extend(&chars[i..]);
                    }
                    2 => out.extend(chars.iter().skip(i + 1)), // remove one
                    _ => out = text,                           // untouched
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, .. ProptestConfig::default() })]

        /// The request parser accepts exactly the JSON that serde_json's accepts (syntax only:
        /// `IgnoredAny` checks numbers' grammar, not their range), so hand-parsing request
        /// bodies (to keep numbers as written and repeated keys) refuses nothing valid and lets
        /// nothing malformed through.
        #[test]
        fn the_request_parser_accepts_exactly_json(text in json_text()) {
            let serde_says_malformed =
                serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err();
            let ours = flowpipe_core::json::decode_flow_spec(text.as_bytes());
            let we_say_malformed =
                matches!(&ours, Err(e) if e.reason() == "MALFORMED_JSON");
            prop_assert_eq!(we_say_malformed, serde_says_malformed, "{:?}: {:?}", text, ours);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

        /// Whatever JSON a client sends: accepted, and then our own output of it decodes to the
        /// same spec; or refused with field paths and no parser internals.
        #[test]
        fn any_json_is_decoded_or_refused_cleanly(body in any_json()) {
            match flowpipe_core::json::decode_flow_spec(body.to_string().as_bytes()) {
                Ok(spec) => {
                    let out = flowpipe_core::json::encode(&spec).unwrap();
                    let again = flowpipe_core::json::decode_flow_spec(&out).unwrap();
                    prop_assert_eq!(again, spec);
                }
                Err(e) => {
                    // The message is "invalid <field>: <description>": descriptions say it all.
                    let mut texts = Vec::new();
                    for v in e.violations() {
                        prop_assert!(!v.field.is_empty() && v.field != "?", "{:?}", e);
                        texts.push(v.description.clone());
                    }
                    for text in texts {
                        for internal in super::INTERNALS {
                            prop_assert!(!text.contains(internal), "{}", text);
                        }
                        prop_assert!(!text.contains("got a value that is not one"), "{}", text);
                    }
                }
            }
        }
    }
}
