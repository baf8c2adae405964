//! What the benchmark sends and what it stores: one realistic flow (the README's Kafka → S3
//! `orders` flow) in two variants, as a REST body, as a gRPC message and as the exact bytes the
//! API writes to etcd, so the raw baselines move values of the same size as the API does.

use chrono::Utc;
use prost::Message;

use flowpipe_api::core::FlowName;
use flowpipe_api::core::json::decode_flow_spec;
use flowpipe_api::core::meta::{FlowMeta, VersionMeta, timestamp};
use flowpipe_api::core::validation::prepare_create;
use flowpipe_api::proto::v1::{FlowSpec, FlowState, FlowStatus};

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

/// The values the API writes for one flow, prepared once so the raw baselines spend their time
/// on etcd requests only (the API's decoding and validation is what they leave out).
#[derive(Debug, Clone)]
pub struct Stored {
    /// Both variants validated, defaults applied, name filled in.
    a: FlowSpec,
    b: FlowSpec,
    /// A flow `meta` and a version meta of the size the API writes.
    pub meta: Vec<u8>,
    pub version_meta: Vec<u8>,
}

impl Stored {
    pub fn new(name: &FlowName) -> Self {
        let prepared = |variant| {
            prepare_create(spec(Some(name.as_str()), variant))
                .expect("the benchmark's spec is valid")
                .1
        };
        Stored {
            a: prepared(Variant::A),
            b: prepared(Variant::B),
            meta: flow_meta(1),
            version_meta: version_meta(),
        }
    }

    /// The bytes the API stores under `versions/<version>/spec`: binary protobuf with name and
    /// version filled in.
    pub fn spec(&self, variant: Variant, version: u64) -> Vec<u8> {
        let mut spec = match variant {
            Variant::A => self.a.clone(),
            Variant::B => self.b.clone(),
        };
        spec.version = version;
        spec.encode_to_vec()
    }

    /// The same for another flow name (creates write a new name every time).
    pub fn spec_named(&self, name: &FlowName, variant: Variant, version: u64) -> Vec<u8> {
        let mut spec = match variant {
            Variant::A => self.a.clone(),
            Variant::B => self.b.clone(),
        };
        spec.name = name.as_str().to_owned();
        spec.version = version;
        spec.encode_to_vec()
    }
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

/// The `versions/<n>/meta` JSON the API writes with each version.
pub fn version_meta() -> Vec<u8> {
    VersionMeta::new(Utc::now()).encode()
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
