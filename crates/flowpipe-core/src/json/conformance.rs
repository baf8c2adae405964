//! proto3 JSON conformance of the decoder (contract B.5): `null` for every field kind, integral
//! floats for every integer kind, each with the exact decoded value; and errors that name the
//! field path and the expected type, never a parser's internals.

use serde_json::json;

use super::*;
use crate::Code;
use crate::proto::v1::*;
use crate::proto::wkt::{Struct, Value as PbValue, value::Kind};

fn spec(body: serde_json::Value) -> FlowSpec {
    decode_flow_spec(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

fn spec_err(body: &str) -> Error {
    let e = decode_flow_spec(body.as_bytes()).expect_err(body);
    assert_clean(&e);
    e
}

/// The one violation of `e`, as (field, description).
fn only(e: &Error) -> (&str, &str) {
    assert_eq!(e.violations().len(), 1, "{e:?}");
    let v = &e.violations()[0];
    (&v.field, &v.description)
}

/// An error a user sees names no parser internals and no placeholder field.
fn assert_clean(e: &Error) {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // The message is "invalid <field>: <description>" (or counts them): descriptions say it all,
    // and a field named `type` makes "invalid type: " in a message harmless.
    let mut texts = Vec::new();
    for v in e.violations() {
        assert!(!v.field.is_empty() || v.description.contains("more problems"));
        assert_ne!(v.field, "?", "{e:?}");
        assert_ne!(v.field, ".", "{e:?}");
        assert!(!v.field.contains('?'), "{e:?}");
        texts.push(v.description.clone());
    }
    for text in texts {
        for internal in [
            "untagged enum",
            "Content",
            "invalid type: ",
            "serde",
            "pbjson",
            "got a value that is not one",
        ] {
            assert!(!text.contains(internal), "{internal:?} in {text:?}");
        }
    }
}

// ---- null ---------------------------------------------------------------------------------

#[test]
fn null_is_the_default_for_every_field_of_a_flow_spec() {
    let s = spec(json!({
        "name": null, "version": null, "execution": null, "stages": null, "queues": null,
        "labels": null, "observability": null, "kubernetes": null, "kubernetesOptions": null,
        "env": null, "mode": null,
    }));
    assert_eq!(s, FlowSpec::default());
    // The same with proto names.
    let s = spec(json!({"kubernetes_options": null, "stages": null}));
    assert_eq!(s, FlowSpec::default());
}

#[test]
fn null_for_scalars_optionals_enums_messages_lists_maps_and_structs() {
    let s = spec(json!({
        "name": "n",
        "execution": {"mode": null},
        "stages": [{
            "name": "s", "type": null, "threads": null, "inputQueue": null,
            "output_queue": null, "config": null, "plugin": null, "realtimePriority": null,
        }],
        "queues": [{
            "name": "q", "capacity": null, "type": null,
            "schema": {"format": null, "schemaId": null, "version": null, "registryUrl": null},
        }],
        "kubernetes": {
            "image": null, "imagePullPolicy": null, "restartPolicy": null,
            "cpuPinning": null, "resources": {"cpuCores": null, "memoryMb": null, "profile": null},
        },
        "kubernetesOptions": {
            "podLabels": null, "podAnnotations": null, "serviceAccountName": null,
            "imagePullSecrets": null, "runtimeClassName": null, "streamingWorkloadKind": null,
            "cron": {
                "schedule": "@daily", "timeZone": null, "suspend": null,
                "startingDeadlineSeconds": null, "concurrencyPolicy": null,
                "successfulJobsHistoryLimit": null, "failedJobsHistoryLimit": null,
            },
        },
        "observability": {
            "metricsEnabled": null, "otlpEndpoint": null, "transport": null, "debug": null,
            "tracing": {"traceHint": null, "batch": null, "latencyBudgetMs": null},
            "metrics": null,
            "logging": {"processor": null, "batch": {"maxQueueSize": null}},
        },
    }));
    let want = FlowSpec {
        name: "n".into(),
        execution: Some(Execution::default()),
        stages: vec![StageSpec {
            name: "s".into(),
            ..Default::default()
        }],
        queues: vec![QueueSpec {
            name: "q".into(),
            schema: Some(QueueSchema::default()),
            ..Default::default()
        }],
        kubernetes: Some(KubernetesSettings {
            resources: Some(Resources::default()),
            ..Default::default()
        }),
        kubernetes_options: Some(KubernetesOptions {
            cron: Some(KubernetesCronOptions {
                schedule: "@daily".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        observability: Some(ObservabilityConfig {
            tracing: Some(observability_config::TracingConfig::default()),
            logging: Some(observability_config::LoggingConfig {
                batch: Some(observability_config::logging_config::BatchConfig::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(s, want);
    // Optional scalars stay unset (None), not Some(default).
    assert_eq!(s.stages[0].input_queue, None);
    assert_eq!(s.stages[0].realtime_priority, None);
    assert_eq!(s.queues[0].schema.as_ref().unwrap().version, None);
    assert_eq!(s.queues[0].r#type, None);
}

#[test]
fn null_inside_a_struct_is_a_json_null() {
    let s = spec(json!({"stages": [{"name": "s", "config": {
        "a": null, "b": [null, 1, {"c": null}], "d": {"e": null}
    }}]}));
    let config = s.stages[0].config.as_ref().unwrap();
    let null = PbValue::from(Kind::NullValue(0));
    assert_eq!(config.fields["a"], null);
    let Some(Kind::ListValue(list)) = &config.fields["b"].kind else {
        panic!("{config:?}")
    };
    assert_eq!(list.values[0], null);
    assert_eq!(list.values[1], PbValue::from(Kind::NumberValue(1.0)));
    let Some(Kind::StructValue(c)) = &list.values[2].kind else {
        panic!("{config:?}")
    };
    assert_eq!(c.fields["c"], null);
    let Some(Kind::StructValue(d)) = &config.fields["d"].kind else {
        panic!("{config:?}")
    };
    assert_eq!(d.fields["e"], null);
    // The JSON output writes them back as nulls.
    let out: serde_json::Value = serde_json::from_slice(&encode(&s).unwrap()).unwrap();
    assert_eq!(
        out["stages"][0]["config"],
        json!({"a": null, "b": [null, 1, {"c": null}], "d": {"e": null}})
    );
    // `"config": null` itself is unset, and `{}` is an empty Struct.
    assert_eq!(
        spec(json!({"stages": [{"config": null}]})).stages[0].config,
        None
    );
    assert_eq!(
        spec(json!({"stages": [{"config": {}}]})).stages[0].config,
        Some(Struct::default())
    );
}

#[test]
fn null_as_a_list_element_or_map_value_is_an_error() {
    // proto3 JSON (Go's protojson): null is a value only for google.protobuf.Value; a list of
    // messages or strings, or a map of strings or messages, cannot hold it.
    let cases = [
        (
            r#"{"stages":[null]}"#,
            "stages[0]",
            "expected a JSON object (a StageSpec), got null (a list element cannot be null)",
        ),
        (
            r#"{"queues":[{"name":"q"},null]}"#,
            "queues[1]",
            "expected a JSON object (a QueueSpec), got null (a list element cannot be null)",
        ),
        (
            r#"{"kubernetesOptions":{"imagePullSecrets":["a",null]}}"#,
            "kubernetes_options.image_pull_secrets[1]",
            "expected a string, got null (a list element cannot be null)",
        ),
        (
            r#"{"labels":{"team":null}}"#,
            r#"labels["team"]"#,
            "expected a string, got null (a map value cannot be null)",
        ),
        (
            r#"{"env":{"A":"1","B":null}}"#,
            r#"env["B"]"#,
            "expected a string, got null (a map value cannot be null)",
        ),
        (
            r#"{"kubernetes":{"cpuPinning":{"s":null}}}"#,
            r#"kubernetes.cpu_pinning["s"]"#,
            "expected a JSON object (a CpuSet), got null (a map value cannot be null)",
        ),
        (
            r#"{"kubernetes":{"cpuPinning":{"s":{"cpu":[1,null]}}}}"#,
            r#"kubernetes.cpu_pinning["s"].cpu[1]"#,
            "expected an unsigned 32-bit integer, got null (a list element cannot be null)",
        ),
    ];
    for (body, field, description) in cases {
        let e = spec_err(body);
        assert_eq!(only(&e), (field, description), "{body}");
        assert_eq!(e.reason(), INVALID_JSON_FIELD);
    }
    // An empty map or list is fine, and the same as null.
    let s = spec(json!({"labels": {}, "env": {}, "stages": [], "queues": []}));
    assert_eq!(s, FlowSpec::default());
}

#[test]
fn the_mode_shorthand_accepts_null() {
    assert_eq!(spec(json!({"mode": null})).execution, None);
    let s = spec(json!({"mode": null, "execution": {"mode": "EXECUTION_MODE_JOB"}}));
    assert_eq!(s.execution.unwrap().mode, ExecutionMode::Job as i32);
    let s = spec(json!({"mode": "JOB", "execution": null}));
    assert_eq!(s.execution.unwrap().mode, ExecutionMode::Job as i32);
    let s = spec(json!({"mode": 2.0}));
    assert_eq!(s.execution.unwrap().mode, ExecutionMode::Job as i32);
    let e = spec_err(r#"{"mode":"FAST"}"#);
    assert_eq!(
        only(&e),
        (
            "mode",
            "expected \"JOB\" or \"STREAMING\" (or EXECUTION_MODE_JOB, EXECUTION_MODE_STREAMING, or their numbers 2 and 1), got \"FAST\""
        )
    );
}

#[test]
fn null_for_every_field_of_a_schema_definition_and_for_timestamps() {
    let d: SchemaDefinition = decode(
        br#"{"schemaId":null,"version":null,"format":null,"rawSchema":null}"#,
        "SchemaDefinition",
    )
    .unwrap();
    assert_eq!(d, SchemaDefinition::default());
    let f: Flow = decode(
        br#"{"createTime":null,"update_time":"2024-05-01T12:00:00.5Z","status":{"lastUpdated":null}}"#,
        "Flow",
    )
    .unwrap();
    assert_eq!(f.create_time, None);
    assert_eq!(
        f.update_time,
        Some(crate::proto::wkt::Timestamp {
            seconds: 1_714_564_800,
            nanos: 500_000_000
        })
    );
    assert_eq!(f.status, Some(FlowStatus::default()));
    let e = decode::<Flow>(br#"{"createTime":"yesterday"}"#, "Flow").unwrap_err();
    assert_clean(&e);
    assert_eq!(
        only(&e),
        (
            "create_time",
            "expected an RFC 3339 timestamp string (such as \"2024-05-01T12:00:00Z\"), got \"yesterday\""
        )
    );
}

// ---- integral floats ------------------------------------------------------------------------

#[test]
fn integral_floats_for_every_integer_kind() {
    let s = spec(json!({
        "name": "n",
        "version": 3.0,
        "stages": [
            {"name": "a", "threads": 2.0, "realtimePriority": 3e0},
            {"name": "b", "threads": "2e0", "realtimePriority": "0.0"},
        ],
        "queues": [{"name": "q", "capacity": 2.0, "schema": {"version": 1e1}}],
        "kubernetes": {
            "resources": {"cpuCores": 4.0, "memoryMb": 5.12e2},
            "cpuPinning": {"a": {"cpu": [0.0, 1e0, "2.0", 30e-1, -0.0]}},
        },
        "kubernetesOptions": {"cron": {
            "schedule": "x",
            "startingDeadlineSeconds": -3.0,
            "successfulJobsHistoryLimit": 2e0,
            "failedJobsHistoryLimit": -1.0,
        }},
        "observability": {"tracing": {"latencyBudgetMs": 1.5e3, "batch": {"maxQueueSize": 2048.0}}},
    }));
    assert_eq!(s.version, 3);
    assert_eq!(s.stages[0].threads, 2);
    assert_eq!(s.stages[0].realtime_priority, Some(3));
    assert_eq!(s.stages[1].threads, 2);
    assert_eq!(s.stages[1].realtime_priority, Some(0));
    assert_eq!(s.queues[0].capacity, 2);
    assert_eq!(s.queues[0].schema.as_ref().unwrap().version, Some(10));
    let k8s = s.kubernetes.as_ref().unwrap();
    let resources = k8s.resources.as_ref().unwrap();
    assert_eq!(
        (resources.cpu_cores, resources.memory_mb),
        (Some(4), Some(512))
    );
    assert_eq!(k8s.cpu_pinning["a"].cpu, [0, 1, 2, 3, 0]);
    let cron = s
        .kubernetes_options
        .as_ref()
        .unwrap()
        .cron
        .as_ref()
        .unwrap();
    assert_eq!(cron.starting_deadline_seconds, Some(-3));
    assert_eq!(cron.successful_jobs_history_limit, Some(2));
    assert_eq!(cron.failed_jobs_history_limit, Some(-1));
    let tracing = s.observability.as_ref().unwrap().tracing.as_ref().unwrap();
    assert_eq!(tracing.latency_budget_ms, 1500);
    assert_eq!(tracing.batch.unwrap().max_queue_size, 2048);
}

#[test]
fn integer_limits_are_exact_in_every_spelling() {
    // int64 and uint64 are decided on the decimal text: no rounding through a double.
    for (given, want) in [
        (json!("-9223372036854775808"), i64::MIN),
        (json!(-9_223_372_036_854_775_808_i64), i64::MIN),
        (json!("9223372036854775807"), i64::MAX),
        (json!("-9007199254740993"), -9_007_199_254_740_993),
        (json!("-9007199254740993.0"), -9_007_199_254_740_993),
        (json!("1e2"), 100),
        (json!(-300e-2), -3),
    ] {
        let s = spec(json!({"kubernetesOptions": {"cron": {"startingDeadlineSeconds": given}}}));
        let cron = s.kubernetes_options.unwrap().cron.unwrap();
        assert_eq!(cron.starting_deadline_seconds, Some(want), "{given}");
    }
    let raw = br#"{"version":18446744073709551615.0}"#;
    assert_eq!(decode_flow_spec(raw).unwrap().version, u64::MAX);
    let raw = br#"{"version":"1.8446744073709551615e19"}"#;
    assert_eq!(decode_flow_spec(raw).unwrap().version, u64::MAX);
    let raw = br#"{"stages":[{"threads":4294967295.0}]}"#;
    assert_eq!(decode_flow_spec(raw).unwrap().stages[0].threads, u32::MAX);
    let raw = br#"{"kubernetesOptions":{"cron":{"failedJobsHistoryLimit":-2147483648.0}}}"#;
    let cron = decode_flow_spec(raw)
        .unwrap()
        .kubernetes_options
        .unwrap()
        .cron;
    assert_eq!(cron.unwrap().failed_jobs_history_limit, Some(i32::MIN));
}

#[test]
fn enums_by_name_number_or_integral_float() {
    for mode in [
        json!("EXECUTION_MODE_JOB"),
        json!(2),
        json!(2.0),
        json!(2e0),
    ] {
        let s = spec(json!({"execution": {"mode": mode}}));
        assert_eq!(
            s.execution.unwrap().mode,
            ExecutionMode::Job as i32,
            "{mode}"
        );
    }
    let s = spec(
        json!({"kubernetes": {"imagePullPolicy": 1.0, "restart_policy": "RESTART_POLICY_NEVER"}}),
    );
    let k8s = s.kubernetes.unwrap();
    assert_eq!(k8s.image_pull_policy, ImagePullPolicy::Always as i32);
    assert_eq!(k8s.restart_policy, RestartPolicy::Never as i32);
    let s = spec(
        json!({"queues": [{"type": 1.0, "schema": {"format": "IN_MEMORY_SCHEMA_FORMAT_ARROW"}}]}),
    );
    assert_eq!(s.queues[0].r#type, Some(QueueType::InMemory as i32));
}

#[test]
fn schema_definitions_take_integral_floats_and_both_base64_alphabets() {
    let d: SchemaDefinition = decode(
        br#"{"schema_id":"s","version":2.0,"format":4e0,"rawSchema":"-_8"}"#,
        "SchemaDefinition",
    )
    .unwrap();
    assert_eq!(
        d,
        SchemaDefinition {
            schema_id: "s".into(),
            version: 2,
            format: InMemorySchemaFormat::Json as i32,
            raw_schema: vec![0xfb, 0xff],
        }
    );
    let d: SchemaDefinition = decode(br#"{"rawSchema":"+/8="}"#, "SchemaDefinition").unwrap();
    assert_eq!(d.raw_schema, [0xfb, 0xff]);
    let e = decode::<SchemaDefinition>(br#"{"rawSchema":"not base64!"}"#, "SchemaDefinition")
        .unwrap_err();
    assert_clean(&e);
    assert_eq!(
        only(&e),
        (
            "raw_schema",
            "expected base64-encoded bytes (a string), got \"not base64!\""
        )
    );
}

// ---- errors ---------------------------------------------------------------------------------

#[test]
fn wrong_types_name_the_field_and_the_expected_type() {
    let cases = [
        (
            r#"{"stages":[{"threads":2.5}]}"#,
            "stages[0].threads",
            "expected an unsigned 32-bit integer, got 2.5",
        ),
        (
            r#"{"stages":[{},{"threads":"many"}]}"#,
            "stages[1].threads",
            "expected an unsigned 32-bit integer, got \"many\"",
        ),
        (
            r#"{"queues":[{"capacity":-1}]}"#,
            "queues[0].capacity",
            "expected an unsigned 32-bit integer, got -1 (out of range: 0 to 4294967295)",
        ),
        (
            r#"{"queues":[{"capacity":4294967296}]}"#,
            "queues[0].capacity",
            "expected an unsigned 32-bit integer, got 4294967296 (out of range: 0 to 4294967295)",
        ),
        (
            r#"{"version":"18446744073709551616"}"#,
            "version",
            "expected an unsigned 64-bit integer, got \"18446744073709551616\" (out of range: 0 to 18446744073709551615)",
        ),
        (
            r#"{"version":1e-2}"#,
            "version",
            "expected an unsigned 64-bit integer, got 1e-2",
        ),
        (
            r#"{"kubernetesOptions":{"cron":{"successfulJobsHistoryLimit":2147483648}}}"#,
            "kubernetes_options.cron.successful_jobs_history_limit",
            "expected a signed 32-bit integer, got 2147483648 (out of range: -2147483648 to 2147483647)",
        ),
        (
            r#"{"kubernetesOptions":{"cron":{"startingDeadlineSeconds":" 1"}}}"#,
            "kubernetes_options.cron.starting_deadline_seconds",
            "expected a signed 64-bit integer, got \" 1\"",
        ),
        (
            r#"{"observability":{"debug":"yes"}}"#,
            "observability.debug",
            "expected a boolean (true or false), got \"yes\"",
        ),
        (r#"{"name":7}"#, "name", "expected a string, got 7"),
        (
            r#"{"stages":[{"inputQueue":false}]}"#,
            "stages[0].input_queue",
            "expected a string, got false",
        ),
        (
            r#"{"execution":{"mode":"FAST"}}"#,
            "execution.mode",
            "expected one of EXECUTION_MODE_UNSPECIFIED, EXECUTION_MODE_STREAMING, EXECUTION_MODE_JOB (or its number), got \"FAST\"",
        ),
        (
            r#"{"execution":{"mode":7}}"#,
            "execution.mode",
            "expected one of EXECUTION_MODE_UNSPECIFIED, EXECUTION_MODE_STREAMING, EXECUTION_MODE_JOB (or its number), got 7",
        ),
        (
            r#"{"execution":{"mode":"2"}}"#,
            "execution.mode",
            "expected one of EXECUTION_MODE_UNSPECIFIED, EXECUTION_MODE_STREAMING, EXECUTION_MODE_JOB (or its number), got \"2\"",
        ),
        (
            r#"{"execution":[]}"#,
            "execution",
            "expected a JSON object (an Execution), got an array",
        ),
        (
            r#"{"stages":{}}"#,
            "stages",
            "expected a JSON array of StageSpec objects, got an object",
        ),
        (
            r#"{"labels":[]}"#,
            "labels",
            "expected a JSON object mapping string keys to strings, got an array",
        ),
        (
            r#"{"labels":{"team":1}}"#,
            r#"labels["team"]"#,
            "expected a string, got 1",
        ),
        (
            r#"{"stages":[{"config":"x"}]}"#,
            "stages[0].config",
            "expected a JSON object, got \"x\"",
        ),
        (
            r#"{"stages":[{"config":{"x":1e999}}]}"#,
            r#"stages[0].config["x"]"#,
            "number 1e999 is out of range (numbers here are 64-bit floating point, at most about 1.8e308)",
        ),
        (
            r#"{"kubernetes":{"cpuPinning":{"s":{"cpu":"0-3"}}}}"#,
            r#"kubernetes.cpu_pinning["s"].cpu"#,
            "expected a JSON array of unsigned 32-bit integers, got \"0-3\"",
        ),
        (
            r#"[1,2]"#,
            "request body",
            "expected a JSON object (a FlowSpec), got an array",
        ),
        (
            r#""flow""#,
            "request body",
            "expected a JSON object (a FlowSpec), got \"flow\"",
        ),
    ];
    for (body, field, description) in cases {
        let e = spec_err(body);
        assert_eq!(only(&e), (field, description), "{body}");
        assert_eq!(e.message(), format!("invalid {field}: {description}"));
        assert_eq!(e.reason(), INVALID_JSON_FIELD, "{body}");
    }
}

#[test]
fn unknown_and_repeated_fields() {
    let e = spec_err(r#"{"name":"x","stages":[{"name":"a","bogus":1}]}"#);
    assert_eq!(
        only(&e),
        (
            "stages[0].bogus",
            "unknown field \"bogus\" (StageSpec has: name, type, threads, input_queue, output_queue, config, plugin, realtime_priority)"
        )
    );
    let e = spec_err(r#"{"replicas":3}"#);
    assert_eq!(only(&e).0, "replicas");
    let e = spec_err(r#"{"a b":3}"#);
    assert_eq!(only(&e).0, r#"["a b"]"#);
    // The same field under both names, or twice under one.
    let e = spec_err(r#"{"stages":[{"inputQueue":"a","input_queue":"b"}]}"#);
    assert_eq!(
        only(&e),
        (
            "stages[0].input_queue",
            "duplicate key `input_queue` (already given as \"inputQueue\"): a field may be given only once"
        )
    );
    let e = spec_err(r#"{"name":"a","name":"b"}"#);
    assert_eq!(
        only(&e),
        (
            "name",
            "duplicate key `name`: a field may be given only once"
        )
    );
    // null does not make a repeat acceptable (protojson checks repeats first).
    spec_err(r#"{"labels":null,"labels":{}}"#);
    let e = spec_err(r#"{"mode":"JOB","mode":"JOB"}"#);
    assert_eq!(only(&e).0, "mode");
    let e = spec_err(r#"{"labels":{"k":"1","k":"2"}}"#);
    assert_eq!(
        only(&e),
        (
            r#"labels["k"]"#,
            "duplicate key `k`: a map key may be given only once"
        )
    );
    let e = spec_err(r#"{"stages":[{"config":{"x":{"y":1,"y":2}}}]}"#);
    assert_eq!(
        only(&e),
        (
            r#"stages[0].config["x"]["y"]"#,
            "duplicate key `y`: a key may be given only once"
        )
    );
}

#[test]
fn every_problem_is_listed() {
    let e = spec_err(
        r#"{"stages":[{"threads":2.5},{"threads":-1}],"labels":{"a":1},"nope":0,"mode":"FAST"}"#,
    );
    let fields: Vec<&str> = e.violations().iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "mode",
            "stages[0].threads",
            "stages[1].threads",
            r#"labels["a"]"#,
            "nope"
        ]
    );
    let summary = e.message();
    assert!(
        summary.starts_with("5 problems found; first: mode: "),
        "{e}"
    );
    // A hostile number of problems is capped, with the true count in the message.
    let many = format!(
        r#"{{"labels":{{{}}}}}"#,
        (0..250)
            .map(|i| format!(r#""k{i}":{i}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let e = spec_err(&many);
    assert_eq!(e.violations().len(), crate::error::MAX_REPORTED_VIOLATIONS);
    assert!(
        e.message()
            .starts_with("250 problems found; first: labels[\"k0\"]: "),
        "{e}"
    );
    assert_eq!(
        e.violations().last().unwrap().description,
        "151 more problems not listed"
    );
}

#[test]
fn malformed_json_names_the_request_body_and_the_place() {
    let cases: [(&[u8], &str); 7] = [
        (b"", "empty, expected a JSON object (a FlowSpec)"),
        (b" \n ", "empty, expected a JSON object (a FlowSpec)"),
        (
            b"{",
            "not valid JSON: expected a key in double quotes, found end of input at line 1, column 2",
        ),
        (
            b"{\"name\":",
            "not valid JSON: unexpected end of input, expected a JSON value at line 1, column 9",
        ),
        (
            b"{\"name\":\"x\",\n \"stages\": [1 2]}",
            "not valid JSON: expected `,` or `]` after an array element, found `2` at line 2, column 15",
        ),
        (
            b"{} x",
            "not valid JSON: unexpected `x` after the end of the JSON value (trailing characters) at line 1, column 4",
        ),
        (
            b"\xff\xfe",
            "not valid JSON: invalid UTF-8 (JSON text must be UTF-8) at line 1, column 1",
        ),
    ];
    for (body, description) in cases {
        let e = decode_flow_spec(body).unwrap_err();
        assert_clean(&e);
        assert_eq!(e.reason(), MALFORMED_JSON, "{body:?}");
        assert_eq!(only(&e), ("request body", description), "{body:?}");
        assert_eq!(e.message(), format!("invalid request body: {description}"));
    }
}

/// Every field of every message reachable from a FlowSpec, given each kind of JSON value:
/// accepted, or refused with the field's path and no parser internals. pbjson never has the
/// last word (its errors would say "got a value that is not one").
#[test]
fn no_value_of_any_field_reaches_pbjson_unchecked() {
    use crate::proto::schema::{FLOWPIPE_V1_FLOWSPEC, MessageType, Type};
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(1),
        json!(-1),
        json!(2.0),
        json!(2.5),
        json!(1e300),
        json!("x"),
        json!("1"),
        json!("NaN"),
        json!("2024-05-01T12:00:00Z"),
        json!("EXECUTION_MODE_JOB"),
        json!([]),
        json!([null]),
        json!([1, "a"]),
        json!({}),
        json!({"k": null}),
        json!({"k": "v"}),
        json!({"k": {"cpu": [1]}}),
    ];
    /// Wraps `inner` at the path of `m` inside a FlowSpec.
    fn check(
        m: &'static MessageType,
        wrap: &dyn Fn(serde_json::Value) -> serde_json::Value,
        values: &[serde_json::Value],
        depth: usize,
    ) {
        for f in m.fields {
            for v in values {
                let body = wrap(json!({ f.json_name: v }));
                if let Err(e) = decode_flow_spec(body.to_string().as_bytes()) {
                    assert_clean(&e);
                }
            }
            if let Type::Message(inner) = f.ty
                && depth < 4
            {
                let name = f.json_name;
                let repeated = matches!(f.label, crate::proto::schema::Label::Repeated);
                let map = matches!(f.label, crate::proto::schema::Label::Map(_));
                let wrap2 = move |v: serde_json::Value| {
                    let v = if repeated {
                        json!([v])
                    } else if map {
                        json!({"k": v})
                    } else {
                        v
                    };
                    wrap(json!({ name: v }))
                };
                check(inner, &wrap2, values, depth + 1);
            }
        }
    }
    check(&FLOWPIPE_V1_FLOWSPEC, &|v| v, &values, 0);
}

#[test]
fn a_pbjson_failure_still_names_the_field_and_its_type() {
    use crate::proto::schema::FLOWPIPE_V1_FLOWSPEC;
    let fail = |v: serde_json::Value| {
        let serde_json::Value::Object(map) = v else {
            unreachable!()
        };
        let e = from_canonical::<FlowSpec>(&FLOWPIPE_V1_FLOWSPEC, map).unwrap_err();
        let (field, description) = only(&e);
        (field.to_string(), description.to_string())
    };
    assert_eq!(
        fail(json!({"stages": [{}, {"threads": "x"}]})),
        (
            "stages[1].threads".into(),
            "expected an unsigned 32-bit integer, got a value that is not one".into()
        )
    );
    assert_eq!(
        fail(json!({"kubernetes": {"cpu_pinning": {"a": {"cpu": [true]}}}})),
        (
            r#"kubernetes.cpu_pinning["a"].cpu[0]"#.into(),
            "expected an unsigned 32-bit integer, got a value that is not one".into()
        )
    );
    assert_eq!(fail(json!({"labels": []})).0, "labels");
    assert_eq!(
        fail(json!({"execution": {"mode": "FAST"}})),
        (
            "execution.mode".into(),
            "expected one of EXECUTION_MODE_UNSPECIFIED, EXECUTION_MODE_STREAMING, EXECUTION_MODE_JOB (or its number), got a value that is not one".into()
        )
    );
}
