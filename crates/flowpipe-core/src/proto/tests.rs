//! Every message of the contract survives a round trip through binary protobuf and protojson,
//! both filled in and empty (defaults emitted). A check against the descriptor set makes sure no
//! message of the .proto files is left out of this list.

use std::collections::BTreeSet;

use prost::Message;
use serde::{Serialize, de::DeserializeOwned};

use super::v1::*;
use super::wkt::{Struct, value::Kind};

fn round_trip<T>(name: &str, value: T, seen: &mut BTreeSet<String>)
where
    T: Message
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + prost::Name,
{
    for v in [value, T::default()] {
        let bytes = v.encode_to_vec();
        assert_eq!(T::decode(bytes.as_slice()).unwrap(), v, "{name}: binary");
        let json = serde_json::to_string(&v).unwrap();
        let back: T = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{name}: cannot decode own JSON {json}: {e}"));
        assert_eq!(back, v, "{name}: JSON {json}");
        // The strict request decoder reads what the API writes (nulls of EmitUnpopulated,
        // 64-bit integers as strings, enum names) back to the same message.
        let api_json = crate::json::encode(&v).unwrap();
        let back: T = crate::json::decode(&api_json, name).unwrap_or_else(|e| {
            panic!(
                "{name}: strict decoder refuses {}: {e:?}",
                String::from_utf8_lossy(&api_json)
            )
        });
        assert_eq!(back, v, "{name}: strict JSON");
    }
    // proto3 JSON: null for every field, under either name, is the default message.
    let schema = super::schema::message(&T::full_name()).expect("every message has a schema");
    for json_names in [true, false] {
        let all_null: serde_json::Map<String, serde_json::Value> = schema
            .fields
            .iter()
            .map(|f| {
                let key = if json_names { f.json_name } else { f.name };
                (key.to_string(), serde_json::Value::Null)
            })
            .collect();
        let body = serde_json::Value::Object(all_null).to_string();
        let back: T = crate::json::decode(body.as_bytes(), name)
            .unwrap_or_else(|e| panic!("{name}: {body}: {e:?}"));
        assert_eq!(back, T::default(), "{name}: {body}");
    }
    seen.insert(format!("flowpipe.v1.{name}"));
}

fn config() -> Struct {
    serde_json::from_str(r#"{"url":"kafka://x","batch":{"size":10,"ok":true,"tags":["a",null]}}"#)
        .unwrap()
}

fn ts() -> crate::proto::wkt::Timestamp {
    crate::proto::wkt::Timestamp {
        seconds: 1_700_000_000,
        nanos: 5,
    }
}

fn observability() -> ObservabilityConfig {
    use observability_config::*;
    ObservabilityConfig {
        metrics_enabled: true,
        tracing_enabled: true,
        logs_enabled: true,
        otlp_endpoint: "http://otel:4317".into(),
        transport: OtlpTransport::Grpc as i32,
        tracing: Some(TracingConfig {
            trace_hint: tracing_config::TraceHint::Always as i32,
            processor: tracing_config::TraceProcessorType::TraceProcessorBatch as i32,
            batch: Some(tracing_config::BatchConfig {
                max_queue_size: 1,
                max_export_batch_size: 2,
                schedule_delay_ms: 3,
                export_timeout_ms: 4,
            }),
            stage_spans_enabled: true,
            queue_spans_enabled: true,
            record_spans_enabled: true,
            attribute_level: tracing_config::AttributeLevel::AttributesVerbose as i32,
            latency_budget_ms: 5,
        }),
        metrics: Some(MetricsConfig {
            stage_metrics_disabled: true,
            queue_metrics_disabled: true,
            flow_metrics_disabled: true,
            latency_histograms_disabled: true,
            counters_only: true,
            jemalloc_metrics_disabled: true,
            min_collection_interval_ms: 6,
            collection_interval_ms: 7,
            latency_budget_ms: 8,
        }),
        logging: Some(LoggingConfig {
            processor: logging_config::LogProcessorType::LogProcessorSimple as i32,
            batch: Some(logging_config::BatchConfig {
                max_queue_size: 9,
                max_export_batch_size: 10,
                schedule_delay_ms: 11,
                export_timeout_ms: 12,
            }),
        }),
        debug: true,
    }
}

fn spec() -> FlowSpec {
    FlowSpec {
        name: "orders".into(),
        version: 7,
        execution: Some(Execution {
            mode: ExecutionMode::Streaming as i32,
        }),
        stages: vec![StageSpec {
            name: "src".into(),
            r#type: "kafka".into(),
            threads: 2,
            input_queue: None,
            output_queue: Some("q".into()),
            config: Some(config()),
            plugin: Some("p.so".into()),
            realtime_priority: Some(0),
        }],
        queues: vec![QueueSpec {
            name: "q".into(),
            capacity: 128,
            schema: Some(QueueSchema {
                format: InMemorySchemaFormat::Arrow as i32,
                schema_id: "orders".into(),
                version: Some(2),
                registry_url: Some("http://r".into()),
            }),
            r#type: Some(QueueType::InMemory as i32),
        }],
        labels: [("team".to_string(), "data".to_string())].into(),
        observability: Some(observability()),
        kubernetes: Some(KubernetesSettings {
            image: Some("img:1".into()),
            image_pull_policy: ImagePullPolicy::IfNotPresent as i32,
            restart_policy: RestartPolicy::OnFailure as i32,
            cpu_pinning: [("src".to_string(), CpuSet { cpu: vec![0, 3] })].into(),
            resources: Some(Resources {
                cpu_cores: Some(2),
                memory_mb: Some(512),
                profile: Some("small".into()),
            }),
        }),
        kubernetes_options: Some(KubernetesOptions {
            pod_labels: [("a".to_string(), "b".to_string())].into(),
            pod_annotations: [("c".to_string(), "d".to_string())].into(),
            service_account_name: Some("sa".into()),
            image_pull_secrets: vec!["regcred".into()],
            runtime_class_name: Some("rt".into()),
            streaming_workload_kind: StreamingWorkloadKind::Daemonset as i32,
            cron: Some(KubernetesCronOptions {
                schedule: "*/5 * * * *".into(),
                time_zone: Some("UTC".into()),
                suspend: Some(false),
                starting_deadline_seconds: Some(-9_007_199_254_740_993),
                concurrency_policy: CronConcurrencyPolicy::Forbid as i32,
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
            }),
        }),
        env: [("RUST_LOG".to_string(), "info".to_string())].into(),
    }
}

fn status() -> FlowStatus {
    FlowStatus {
        state: FlowState::Running as i32,
        message: "ok".into(),
        active_version: u64::MAX,
        workload: "deploy/orders".into(),
        last_updated: Some(ts()),
    }
}

fn flow() -> Flow {
    Flow {
        name: "orders".into(),
        version: 7,
        spec: Some(spec()),
        status: Some(status()),
        uid: "u".into(),
        create_time: Some(ts()),
        update_time: Some(ts()),
        latest_version: 9,
    }
}

fn schema() -> SchemaDefinition {
    SchemaDefinition {
        schema_id: "orders".into(),
        version: 2,
        format: InMemorySchemaFormat::Json as i32,
        raw_schema: b"\x00\x01{}".to_vec(),
    }
}

#[test]
fn every_message_round_trips_through_binary_and_json() {
    use observability_config::*;
    let s = &mut BTreeSet::new();
    round_trip("ObservabilityConfig", observability(), s);
    let o = observability();
    round_trip("ObservabilityConfig.TracingConfig", o.tracing.unwrap(), s);
    round_trip(
        "ObservabilityConfig.TracingConfig.BatchConfig",
        o.tracing.unwrap().batch.unwrap(),
        s,
    );
    round_trip("ObservabilityConfig.MetricsConfig", o.metrics.unwrap(), s);
    round_trip("ObservabilityConfig.LoggingConfig", o.logging.unwrap(), s);
    round_trip(
        "ObservabilityConfig.LoggingConfig.BatchConfig",
        o.logging.unwrap().batch.unwrap(),
        s,
    );
    let _: Option<TracingConfig> = None;
    round_trip("Flow", flow(), s);
    round_trip("FlowSpec", spec(), s);
    let sp = spec();
    let k8s = sp.kubernetes.clone().unwrap();
    let opts = sp.kubernetes_options.clone().unwrap();
    round_trip("KubernetesSettings", k8s.clone(), s);
    round_trip("KubernetesOptions", opts.clone(), s);
    round_trip("KubernetesCronOptions", opts.cron.unwrap(), s);
    round_trip("Execution", sp.execution.unwrap(), s);
    round_trip("StageSpec", sp.stages[0].clone(), s);
    round_trip("QueueSpec", sp.queues[0].clone(), s);
    round_trip("QueueSchema", sp.queues[0].schema.clone().unwrap(), s);
    round_trip("Resources", k8s.resources.unwrap(), s);
    round_trip("CpuSet", k8s.cpu_pinning["src"].clone(), s);
    round_trip("FlowStatus", status(), s);
    round_trip(
        "CreateFlowRequest",
        CreateFlowRequest {
            spec: Some(spec()),
            validate_only: true,
        },
        s,
    );
    round_trip(
        "UpdateFlowRequest",
        UpdateFlowRequest {
            name: "orders".into(),
            spec: Some(spec()),
            validate_only: true,
        },
        s,
    );
    round_trip(
        "DeleteFlowRequest",
        DeleteFlowRequest { name: "x".into() },
        s,
    );
    round_trip("GetFlowRequest", GetFlowRequest { name: "x".into() }, s);
    round_trip(
        "ListFlowsRequest",
        ListFlowsRequest {
            page_size: -3,
            page_token: "t".into(),
        },
        s,
    );
    let summary = FlowSummary {
        name: "x".into(),
        status: Some(status()),
        version: 3,
    };
    round_trip("FlowSummary", summary.clone(), s);
    round_trip(
        "ListFlowsResponse",
        ListFlowsResponse {
            flows: vec![summary],
            next_page_token: "n".into(),
        },
        s,
    );
    round_trip(
        "GetFlowStatusRequest",
        GetFlowStatusRequest { name: "x".into() },
        s,
    );
    round_trip(
        "RollbackFlowRequest",
        RollbackFlowRequest {
            name: "x".into(),
            version: 2,
        },
        s,
    );
    round_trip(
        "ListFlowVersionsRequest",
        ListFlowVersionsRequest {
            name: "x".into(),
            page_size: 5,
            page_token: "t".into(),
        },
        s,
    );
    let fv = FlowVersion {
        version: 4,
        create_time: Some(ts()),
        active: true,
    };
    round_trip("FlowVersion", fv, s);
    round_trip(
        "ListFlowVersionsResponse",
        ListFlowVersionsResponse {
            versions: vec![fv],
            next_page_token: "n".into(),
        },
        s,
    );
    round_trip(
        "GetFlowVersionRequest",
        GetFlowVersionRequest {
            name: "x".into(),
            version: 4,
        },
        s,
    );
    round_trip("SchemaDefinition", schema(), s);
    round_trip(
        "CreateSchemaRequest",
        CreateSchemaRequest {
            schema: Some(schema()),
        },
        s,
    );
    round_trip(
        "GetSchemaRequest",
        GetSchemaRequest {
            schema_id: "x".into(),
            version: 1,
        },
        s,
    );
    round_trip(
        "ListSchemaVersionsRequest",
        ListSchemaVersionsRequest {
            schema_id: "x".into(),
        },
        s,
    );
    round_trip(
        "ListSchemaVersionsResponse",
        ListSchemaVersionsResponse {
            schemas: vec![schema()],
        },
        s,
    );
    round_trip(
        "DeleteSchemaRequest",
        DeleteSchemaRequest {
            schema_id: "x".into(),
        },
        s,
    );

    // Every message declared in the .proto files is in the list above, and in the protojson
    // schema.
    let fds = prost_types_fds();
    assert_eq!(*s, fds, "messages not covered by this test");
    let schema: BTreeSet<String> = super::schema::MESSAGES
        .iter()
        .map(|m| m.full_name.to_string())
        .collect();
    assert_eq!(schema, fds, "messages missing from the protojson schema");
}

/// Fully qualified names of every message in our own .proto files, from the descriptor set.
fn prost_types_fds() -> BTreeSet<String> {
    // Minimal descriptor decoding: FileDescriptorSet { repeated FileDescriptorProto file = 1 },
    // FileDescriptorProto { string name = 1; string package = 2; repeated DescriptorProto
    // message_type = 4 }, DescriptorProto { string name = 1; repeated DescriptorProto nested = 3 }.
    #[derive(Clone, PartialEq, Message)]
    struct Fds {
        #[prost(message, repeated, tag = "1")]
        file: Vec<Fdp>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Fdp {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        package: String,
        #[prost(message, repeated, tag = "4")]
        message_type: Vec<Dp>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Dp {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, repeated, tag = "3")]
        nested_type: Vec<Dp>,
        #[prost(message, optional, tag = "7")]
        options: Option<MessageOptions>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct MessageOptions {
        #[prost(bool, tag = "7")]
        map_entry: bool,
    }
    fn walk(prefix: &str, d: &Dp, out: &mut BTreeSet<String>) {
        if d.options.as_ref().is_some_and(|o| o.map_entry) {
            return; // synthetic map entry types
        }
        let name = format!("{prefix}.{}", d.name);
        for n in &d.nested_type {
            walk(&name, n, out);
        }
        out.insert(name);
    }
    let fds = Fds::decode(super::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for f in fds.file.iter().filter(|f| f.package == "flowpipe.v1") {
        for m in &f.message_type {
            walk(&f.package, m, &mut out);
        }
    }
    out
}

#[test]
fn json_uses_camel_case_emits_defaults_and_writes_u64_as_strings() {
    let v: serde_json::Value = serde_json::to_value(flow()).unwrap();
    assert_eq!(v["version"], "7");
    assert_eq!(v["latestVersion"], "9");
    assert_eq!(v["createTime"], "2023-11-14T22:13:20.000000005Z");
    assert_eq!(v["spec"]["stages"][0]["outputQueue"], "q");
    assert_eq!(v["spec"]["stages"][0]["config"]["batch"]["size"], 10.0);
    assert_eq!(v["spec"]["execution"]["mode"], "EXECUTION_MODE_STREAMING");
    assert_eq!(
        v["spec"]["kubernetesOptions"]["cron"]["startingDeadlineSeconds"],
        "-9007199254740993"
    );
    let empty: serde_json::Value = serde_json::to_value(FlowSpec::default()).unwrap();
    assert_eq!(empty["name"], "");
    assert_eq!(empty["version"], "0");
    assert_eq!(empty["stages"], serde_json::json!([]));
    assert_eq!(empty["labels"], serde_json::json!({}));
    let schema: serde_json::Value = serde_json::to_value(schema()).unwrap();
    assert_eq!(schema["rawSchema"], "AAF7fQ==");
    assert_eq!(schema["format"], "IN_MEMORY_SCHEMA_FORMAT_JSON");
}

#[test]
fn json_input_accepts_numbers_for_enums_and_u64() {
    let s: FlowStatus = serde_json::from_str(
        r#"{"state":3,"activeVersion":12,"last_updated":"2024-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(s.state, FlowState::Running as i32);
    assert_eq!(s.active_version, 12);
    let k = Kind::BoolValue(true);
    let _ = k;
}
