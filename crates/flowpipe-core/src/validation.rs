//! Validation and defaults of a `FlowSpec` (contract B.5), reporting every problem found with the
//! path of its field.
//!
//! Beyond the contract, two limits protect the service from hostile specs: at most
//! [`MAX_STAGES`] stages and [`MAX_QUEUES`] queues, and `config` numbers must be finite (JSON
//! cannot represent NaN or infinity, so such a spec could be stored but never shown).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, FieldViolation, Result};
use crate::names::{FlowName, VersionNumber, check_object_name};
use crate::proto::v1::FlowSpec;

/// `ErrorInfo.reason` of a spec that breaks a rule of contract B.5.
pub const INVALID_FLOW_SPEC: &str = "INVALID_FLOW_SPEC";
/// A queue's capacity when the spec leaves it 0.
pub const DEFAULT_QUEUE_CAPACITY: u32 = 128;
/// The most stages a spec may have. Not a contract rule: it bounds the time and memory a
/// hostile spec can make validation (which checks every stage) spend.
pub const MAX_STAGES: usize = 1024;
/// The most queues a spec may have, for the same reason as [`MAX_STAGES`].
pub const MAX_QUEUES: usize = 1024;

/// Applies the defaults of B.5 in place. Idempotent.
pub fn apply_defaults(spec: &mut FlowSpec) {
    for q in &mut spec.queues {
        if q.capacity == 0 {
            q.capacity = DEFAULT_QUEUE_CAPACITY;
        }
    }
}

/// Checks every rule of B.5 except the name, which the caller checks against its context
/// (required for create, empty-or-equal for update). Returns every violation found.
pub fn check_body(spec: &FlowSpec) -> Vec<FieldViolation> {
    let mut v = Vec::new();

    if spec.stages.len() > MAX_STAGES {
        v.push(FieldViolation::new(
            "stages",
            format!(
                "at most {MAX_STAGES} stages are allowed (got {})",
                spec.stages.len()
            ),
        ));
    }
    if spec.queues.len() > MAX_QUEUES {
        v.push(FieldViolation::new(
            "queues",
            format!(
                "at most {MAX_QUEUES} queues are allowed (got {})",
                spec.queues.len()
            ),
        ));
    }
    if !v.is_empty() {
        // Checking each of a hostile number of entries would only cost memory and time.
        return v;
    }

    let mut queues: HashMap<&str, usize> = HashMap::new();
    for (i, q) in spec.queues.iter().enumerate() {
        let field = format!("queues[{i}].name");
        match check_object_name(&q.name) {
            Err(e) => v.push(FieldViolation::new(field, e)),
            Ok(()) => {
                if let Some(first) = queues.insert(&q.name, i) {
                    v.push(FieldViolation::new(
                        field,
                        format!("duplicate queue name {:?} (also queues[{first}])", q.name),
                    ));
                    queues.insert(&q.name, first);
                }
            }
        }
    }

    let mut stages: HashSet<&str> = HashSet::new();
    let mut first_stage: HashMap<&str, usize> = HashMap::new();
    for (i, s) in spec.stages.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].{f}");
        match check_object_name(&s.name) {
            Err(e) => v.push(FieldViolation::new(at("name"), e)),
            Ok(()) => {
                if !stages.insert(&s.name) {
                    v.push(FieldViolation::new(
                        at("name"),
                        format!(
                            "duplicate stage name {:?} (also stages[{}])",
                            s.name,
                            first_stage[s.name.as_str()]
                        ),
                    ));
                } else {
                    first_stage.insert(&s.name, i);
                }
            }
        }
        if s.r#type.is_empty() {
            v.push(FieldViolation::new(at("type"), "is required"));
        }
        if s.threads < 1 {
            v.push(FieldViolation::new(at("threads"), "must be at least 1"));
        }
        for (field, queue) in [
            ("input_queue", &s.input_queue),
            ("output_queue", &s.output_queue),
        ] {
            if let Some(q) = queue
                && !queues.contains_key(q.as_str())
            {
                v.push(FieldViolation::new(
                    at(field),
                    format!("names queue {q:?}, which is not declared in queues"),
                ));
            }
        }
        if let (Some(i), Some(o)) = (&s.input_queue, &s.output_queue)
            && i == o
        {
            v.push(FieldViolation::new(
                at("output_queue"),
                format!("must differ from input_queue (both are {i:?})"),
            ));
        }
        if let Some(config) = &s.config {
            let mut finite = true;
            config.numbers(&mut |n| finite &= n.is_finite());
            if !finite {
                v.push(FieldViolation::new(
                    at("config"),
                    "numbers must be finite (JSON has no NaN or infinity)",
                ));
            }
        }
    }

    check_enums(spec, &mut v);

    if let Some(k8s) = &spec.kubernetes {
        for stage in k8s.cpu_pinning.keys() {
            if !stages.contains(stage.as_str()) {
                v.push(FieldViolation::new(
                    format!("kubernetes.cpu_pinning[{stage:?}]"),
                    format!("names stage {stage:?}, which is not declared in stages"),
                ));
            }
        }
    }
    if let Some(cron) = spec
        .kubernetes_options
        .as_ref()
        .and_then(|o| o.cron.as_ref())
        && cron.schedule.trim().is_empty()
    {
        v.push(FieldViolation::new(
            "kubernetes_options.cron.schedule",
            "is required when cron is set",
        ));
    }
    v
}

/// An enum field must hold one of its enum's values. proto3 enums are open (gRPC clients can send
/// any number), but a spec with an unknown value could be stored and then never shown: protojson
/// writes enum values by name, and has none for it.
fn check_enums(spec: &FlowSpec, v: &mut Vec<FieldViolation>) {
    use crate::proto::v1::{
        CronConcurrencyPolicy, ExecutionMode, ImagePullPolicy, InMemorySchemaFormat, OtlpTransport,
        QueueType, RestartPolicy, StreamingWorkloadKind,
        observability_config::logging_config::LogProcessorType,
        observability_config::tracing_config::{AttributeLevel, TraceHint, TraceProcessorType},
    };
    fn check<E: TryFrom<i32>>(
        v: &mut Vec<FieldViolation>,
        field: &str,
        enum_name: &str,
        value: i32,
    ) {
        if E::try_from(value).is_err() {
            v.push(FieldViolation::new(
                field,
                format!("{value} is not a value of {enum_name}"),
            ));
        }
    }
    if let Some(e) = &spec.execution {
        check::<ExecutionMode>(v, "execution.mode", "ExecutionMode", e.mode);
    }
    for (i, q) in spec.queues.iter().enumerate() {
        if let Some(t) = q.r#type {
            check::<QueueType>(v, &format!("queues[{i}].type"), "QueueType", t);
        }
        if let Some(schema) = &q.schema {
            let field = format!("queues[{i}].schema.format");
            check::<InMemorySchemaFormat>(v, &field, "InMemorySchemaFormat", schema.format);
        }
    }
    if let Some(k) = &spec.kubernetes {
        let pull = k.image_pull_policy;
        check::<ImagePullPolicy>(v, "kubernetes.image_pull_policy", "ImagePullPolicy", pull);
        let restart = k.restart_policy;
        check::<RestartPolicy>(v, "kubernetes.restart_policy", "RestartPolicy", restart);
    }
    if let Some(o) = &spec.kubernetes_options {
        let field = "kubernetes_options.streaming_workload_kind";
        let kind = o.streaming_workload_kind;
        check::<StreamingWorkloadKind>(v, field, "StreamingWorkloadKind", kind);
        if let Some(c) = &o.cron {
            let field = "kubernetes_options.cron.concurrency_policy";
            let policy = c.concurrency_policy;
            check::<CronConcurrencyPolicy>(v, field, "CronConcurrencyPolicy", policy);
        }
    }
    if let Some(o) = &spec.observability {
        check::<OtlpTransport>(v, "observability.transport", "OtlpTransport", o.transport);
        if let Some(t) = &o.tracing {
            check::<TraceHint>(
                v,
                "observability.tracing.trace_hint",
                "TraceHint",
                t.trace_hint,
            );
            let processor = t.processor;
            let name = "TraceProcessorType";
            check::<TraceProcessorType>(v, "observability.tracing.processor", name, processor);
            let level = t.attribute_level;
            check::<AttributeLevel>(
                v,
                "observability.tracing.attribute_level",
                "AttributeLevel",
                level,
            );
        }
        if let Some(l) = &o.logging {
            let name = "LogProcessorType";
            check::<LogProcessorType>(v, "observability.logging.processor", name, l.processor);
        }
    }
}

/// A `FlowSpec` that passed every rule of B.5, with defaults applied and its flow's name. Only
/// [`ValidSpec::for_create`] and [`ValidSpec::for_update`] make one, so whatever takes a
/// `ValidSpec` (the write operations) cannot be handed an unchecked spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    name: FlowName,
    /// `name` filled in, `version` 0, defaults applied.
    spec: FlowSpec,
}

impl ValidSpec {
    /// Validates a spec for CreateFlow: the name is required and the version must be 0 (the
    /// server assigns versions).
    pub fn for_create(mut spec: FlowSpec) -> Result<Self> {
        let mut v = Vec::new();
        let name = FlowName::parse(&spec.name)
            .map_err(|e| v.push(FieldViolation::new("name", e)))
            .ok();
        if spec.version != 0 {
            v.push(FieldViolation::new(
                "version",
                format!(
                    "must be 0 or absent: the server assigns version numbers (got {})",
                    spec.version
                ),
            ));
        }
        v.extend(check_body(&spec));
        match name {
            Some(name) if v.is_empty() => {
                apply_defaults(&mut spec);
                Ok(ValidSpec { name, spec })
            }
            _ => Err(Error::invalid(INVALID_FLOW_SPEC, v)),
        }
    }

    /// Validates a spec for UpdateFlow of flow `name`. The request's name names the flow:
    /// `spec.name` may be empty or anything else, and the stored spec gets `name` (contract B.4;
    /// the original API did this, and `flowctl update --name X` relies on it to update several
    /// flows from one spec file). `spec.version` is the update's precondition, checked by the
    /// operation, not here.
    pub fn for_update(name: &FlowName, mut spec: FlowSpec) -> Result<Self> {
        let v = check_body(&spec);
        if !v.is_empty() {
            return Err(Error::invalid(INVALID_FLOW_SPEC, v));
        }
        name.as_str().clone_into(&mut spec.name);
        spec.version = 0;
        apply_defaults(&mut spec);
        Ok(ValidSpec {
            name: name.clone(),
            spec,
        })
    }

    /// The flow's name.
    pub fn name(&self) -> &FlowName {
        &self.name
    }

    /// The validated spec, defaults applied, `version` 0.
    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    /// The spec as stored at version `v` (contract A.4): `name` and `version` filled in.
    pub fn at_version(&self, v: VersionNumber) -> FlowSpec {
        FlowSpec {
            version: v.get(),
            ..self.spec.clone()
        }
    }

    /// Whether `stored`, the spec of version `v`, is this spec "after defaults" (contract B.4).
    /// Compared decoded, so independent of how the stored bytes were encoded (the original API
    /// did not apply defaults and encoded maps in any order).
    pub fn is_stored_as(&self, stored: &FlowSpec, v: VersionNumber) -> bool {
        let mut stored = stored.clone();
        apply_defaults(&mut stored);
        stored == self.at_version(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::decode_flow_spec;

    fn spec(json: &str) -> FlowSpec {
        decode_flow_spec(json.as_bytes()).unwrap()
    }

    fn fields(e: &Error) -> Vec<String> {
        e.violations().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_flow_without_stages_is_valid() {
        let s = ValidSpec::for_create(spec(
            r#"{"name":"example","mode":"JOB","queues":[],"stages":[]}"#,
        ))
        .unwrap();
        assert_eq!(s.name().as_str(), "example");
        assert!(s.spec().stages.is_empty());
    }

    #[test]
    fn capacity_defaults_to_128_and_order_is_kept() {
        let s = ValidSpec::for_create(spec(
            r#"{"name":"f","queues":[{"name":"b"},{"name":"a","capacity":7}],
                "stages":[{"name":"z","type":"src","threads":1,"output_queue":"b"},
                          {"name":"y","type":"sink","threads":1,"input_queue":"b"}]}"#,
        ))
        .unwrap();
        let s = s.spec();
        assert_eq!(s.queues[0].capacity, 128);
        assert_eq!(s.queues[1].capacity, 7);
        assert_eq!(s.stages[0].name, "z");
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let e = ValidSpec::for_create(spec(
            r#"{"name":"Bad_Name","version":"4",
                "queues":[{"name":"q"},{"name":"q"},{"name":""}],
                "stages":[{"name":"s","type":"","threads":0,"input_queue":"nope"},
                          {"name":"s","type":"t","threads":1,"input_queue":"q","output_queue":"q"}],
                "kubernetes":{"cpu_pinning":{"ghost":{"cpu":[1]}}},
                "kubernetes_options":{"cron":{"schedule":""}}}"#,
        ))
        .unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "name",
                "version",
                "queues[1].name",
                "queues[2].name",
                "stages[0].type",
                "stages[0].threads",
                "stages[0].input_queue",
                "stages[1].name",
                "stages[1].output_queue",
                "kubernetes.cpu_pinning[\"ghost\"]",
                "kubernetes_options.cron.schedule",
            ]
        );
    }

    #[test]
    fn names_with_path_characters_are_rejected() {
        for n in ["../etc", "a/b", "a\u{0}b", "", "UPPER"] {
            let s = FlowSpec {
                name: n.into(),
                ..Default::default()
            };
            assert_eq!(
                fields(&ValidSpec::for_create(s).unwrap_err()),
                ["name"],
                "{n:?}"
            );
        }
    }

    #[test]
    fn update_takes_the_requests_name() {
        let name = FlowName::parse("f").unwrap();
        let s = ValidSpec::for_update(&name, FlowSpec::default()).unwrap();
        assert_eq!(s.spec().name, "f");
        // `flowctl update --name f other.yaml`: the spec file names another flow, or none valid.
        for other in ["other", "../etc", "UPPER"] {
            let s = ValidSpec::for_update(
                &name,
                FlowSpec {
                    name: other.into(),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(s.name().as_str(), "f");
            assert_eq!(s.spec().name, "f", "{other}");
        }
        // The rest of the spec is still checked.
        let e = ValidSpec::for_update(
            &name,
            FlowSpec {
                name: "other".into(),
                stages: vec![crate::proto::v1::StageSpec::default()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            fields(&e),
            ["stages[0].name", "stages[0].type", "stages[0].threads"]
        );
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        // What a gRPC client can send and protojson could never show.
        let mut s = spec(r#"{"name":"f","mode":"JOB","queues":[{"name":"q"}]}"#);
        s.execution.as_mut().unwrap().mode = 7;
        s.queues[0].r#type = Some(9);
        s.kubernetes = Some(crate::proto::v1::KubernetesSettings {
            restart_policy: -1,
            ..Default::default()
        });
        let e = ValidSpec::for_create(s).unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "execution.mode",
                "queues[0].type",
                "kubernetes.restart_policy"
            ]
        );
        assert_eq!(
            e.violations()[0].description,
            "7 is not a value of ExecutionMode"
        );
    }

    #[test]
    fn too_many_stages() {
        let mut s = FlowSpec {
            name: "f".into(),
            ..Default::default()
        };
        s.stages = (0..MAX_STAGES + 1)
            .map(|i| crate::proto::v1::StageSpec {
                name: format!("s{i}"),
                r#type: "t".into(),
                threads: 1,
                ..Default::default()
            })
            .collect();
        assert_eq!(fields(&ValidSpec::for_create(s).unwrap_err()), ["stages"]);
    }

    #[test]
    fn non_finite_config_numbers_are_rejected() {
        use crate::proto::wkt::{Struct, value::Kind};
        let mut config = Struct::default();
        config
            .fields
            .insert("x".into(), Kind::NumberValue(f64::INFINITY).into());
        let s = FlowSpec {
            name: "f".into(),
            stages: vec![crate::proto::v1::StageSpec {
                name: "s".into(),
                r#type: "t".into(),
                threads: 1,
                config: Some(config),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            fields(&ValidSpec::for_create(s).unwrap_err()),
            ["stages[0].config"]
        );
    }
}
