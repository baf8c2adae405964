//! What the benchmark sends and what it stores: one realistic flow (the README's Kafka → S3
//! `orders` flow) in two variants, as a REST body, as a gRPC message (also what core-direct
//! hands the core) and as the bytes the API writes to etcd, so the raw-min baseline moves values
//! of the same size as the API does.

use chrono::Utc;
use prost::Message;

use flowpipe_core::json::decode_flow_spec;
use flowpipe_core::meta::{FlowMeta, timestamp};
use flowpipe_core::proto::v1::{FlowSpec, FlowState, FlowStatus};
use flowpipe_core::{FlowName, ValidSpec, VersionNumber};

/// Two specs that differ (source threads), so every update writes a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    A,
    B,
}

impl Variant {
    /// The variant of update number `i` of a flow created with [`Variant::A`]: alternating, so
    /// each update changes the spec.
    pub fn of_update(i: u64) -> Variant {
        if i.is_multiple_of(2) {
            Variant::B
        } else {
            Variant::A
        }
    }

    fn threads(self) -> u32 {
        match self {
            Variant::A => 2,
            Variant::B => 4,
        }
    }
}

/// The REST body of a create (`name` given) or an update (`name` omitted: it is in the path).
pub fn rest_body(name: Option<&str>, variant: Variant) -> Vec<u8> {
    let name = name
        .map(|n| format!(r#""name":"{n}","#))
        .unwrap_or_default();
    format!(
        r#"{{{name}"mode":"STREAMING","labels":{{"team":"data","tier":"gold"}},"queues":[{{"name":"events"}}],"stages":[{{"name":"source","type":"kafka","threads":{threads},"outputQueue":"events","config":{{"topic":"orders","brokers":["kafka-0:9092","kafka-1:9092"],"group":"flowpipe-orders"}}}},{{"name":"sink","type":"s3","threads":1,"inputQueue":"events","config":{{"bucket":"orders-archive","prefix":"raw/"}}}}]}}"#,
        threads = variant.threads()
    )
    .into_bytes()
}

/// The spec as a gRPC client sends it.
pub fn spec(name: Option<&str>, variant: Variant) -> FlowSpec {
    decode_flow_spec(&rest_body(name, variant)).expect("the benchmark's spec is valid")
}

/// The bytes the API stores under `versions/<version>/spec` of flow `name`: the spec validated
/// by the core (defaults applied, name and version filled in), binary protobuf. The raw-min rows
/// write values of this size.
pub fn stored_spec(name: &FlowName, variant: Variant, version: u64) -> Vec<u8> {
    let version = VersionNumber::new(version).expect("versions start at 1");
    ValidSpec::for_create(spec(Some(name.as_str()), variant))
        .expect("the benchmark's spec is valid")
        .at_version(version)
        .encode_to_vec()
}

/// The flow `meta` JSON the API writes once the flow's newest version is `latest`.
pub fn flow_meta(latest: u64) -> Vec<u8> {
    let now = Utc::now();
    FlowMeta {
        uid: uuid::Uuid::new_v4().to_string(),
        created_at: Some(now),
        labels: [("team", "data"), ("tier", "gold")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        deleted: false,
        updated_at: Some(now),
        latest_version: Some(latest),
        deleted_at: None,
        extra: Default::default(),
    }
    .encode()
}

/// A status as the controller writes it for a running flow (the API only reads it).
pub fn status(name: &FlowName, active: u64) -> Vec<u8> {
    FlowStatus {
        state: FlowState::Running as i32,
        message: "all stages running".into(),
        active_version: active,
        workload: format!("deployment/{name}"),
        last_updated: Some(timestamp(Utc::now())),
    }
    .encode_to_vec()
}

/// A flow name the benchmark made up; they are valid by construction.
pub fn name(s: String) -> FlowName {
    FlowName::parse(&s).unwrap_or_else(|e| panic!("bad benchmark flow name {s:?}: {e}"))
}
