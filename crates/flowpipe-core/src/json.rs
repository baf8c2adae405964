//! Request bodies in protojson (contract A.2, B.5), decoded strictly:
//!
//! - a JSON object that repeats a key is rejected at any depth (serde would keep the last one);
//! - unknown fields are rejected, naming the field (pbjson does this for every message);
//! - every error names the path of the field it is about (`stages[1].threads`);
//! - a FlowSpec may use the top-level `"mode"` shorthand for `execution.mode`.
//!
//! Decoding is two passes: the bytes become a `serde_json::Value` (checking duplicates), then the
//! value becomes the message. Request bodies are at most a few MiB, so the extra tree is cheap,
//! and the shorthand can be taken out before the strict message decoder sees it.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::{Error, FieldViolation, Result};
use crate::proto::schema::{self, Label, MessageType, Type};
use crate::proto::v1::{Execution, ExecutionMode, FlowSpec};

/// `ErrorInfo.reason` of a body that is not valid JSON at all.
pub const MALFORMED_JSON: &str = "MALFORMED_JSON";
/// `ErrorInfo.reason` of JSON that does not fit the message.
pub const INVALID_JSON_FIELD: &str = "INVALID_FIELD";

/// A JSON value whose objects have no repeated keys.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor).map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let UniqueKeys(v) = map.next_value_seed(PhantomUnique)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

struct PhantomUnique;

impl<'de> DeserializeSeed<'de> for PhantomUnique {
    type Value = UniqueKeys;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UniqueKeys, D::Error> {
        UniqueKeys::deserialize(d)
    }
}

fn path_error(path: &serde_path_to_error::Path, err: impl fmt::Display, whole: &str) -> Error {
    let field = path.to_string();
    let description = err.to_string();
    if field == "." || field.is_empty() {
        Error::invalid(
            INVALID_JSON_FIELD,
            vec![FieldViolation::new(whole, description)],
        )
    } else {
        Error::invalid(
            INVALID_JSON_FIELD,
            vec![FieldViolation::new(field, description)],
        )
    }
}

/// Parses `body` into a JSON value with no repeated keys. `what` names the expected message in
/// error messages ("FlowSpec").
fn parse_value(body: &[u8], what: &str) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid_field(
            MALFORMED_JSON,
            "body",
            format!("request body is empty; expected a JSON {what}"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize::<_, UniqueKeys>(&mut de) {
        Ok(UniqueKeys(v)) => v,
        Err(e) => {
            let inner = e.inner();
            let reason = if inner.is_syntax() || inner.is_eof() {
                MALFORMED_JSON
            } else {
                INVALID_JSON_FIELD
            };
            let field = e.path().to_string();
            let field = if field == "." { "body".into() } else { field };
            return Err(Error::invalid(
                reason,
                vec![FieldViolation::new(
                    field,
                    format!("request body is not valid JSON: {inner}"),
                )],
            ));
        }
    };
    de.end().map_err(|e| {
        Error::invalid_field(
            MALFORMED_JSON,
            "body",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

fn from_value<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let whole = format!("body ({what})");
        path_error(e.path(), e.inner(), &whole)
    })
}

/// Decodes a protojson message from a request body.
pub fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    from_value(parse_value(body, what)?, what)
}

/// Decodes a `FlowSpec` request body, applying the top-level `"mode"` shorthand:
/// `"JOB" | "STREAMING"` (or `EXECUTION_MODE_JOB` / `EXECUTION_MODE_STREAMING`, or their numbers)
/// means `execution.mode`; giving both with different values is an error.
pub fn decode_flow_spec(body: &[u8]) -> Result<FlowSpec> {
    let mut value = parse_value(body, "FlowSpec")?;
    let mode = match value.as_object_mut() {
        Some(obj) => obj.remove("mode"),
        None => None,
    };
    let mut spec: FlowSpec = from_value(value, "FlowSpec")?;
    let Some(mode) = mode.filter(|m| !m.is_null()) else {
        return Ok(spec);
    };
    let mode = parse_mode_shorthand(&mode).ok_or_else(|| {
        Error::invalid_field(
            INVALID_JSON_FIELD,
            "mode",
            format!(
                "must be \"JOB\" or \"STREAMING\" (or EXECUTION_MODE_JOB / EXECUTION_MODE_STREAMING), got {mode}"
            ),
        )
    })?;
    match spec.execution.as_mut() {
        None => {
            spec.execution = Some(Execution { mode: mode as i32 });
        }
        Some(exec) if exec.mode == ExecutionMode::Unspecified as i32 => exec.mode = mode as i32,
        Some(exec) if exec.mode == mode as i32 => {}
        Some(exec) => {
            let given = ExecutionMode::try_from(exec.mode)
                .map(|m| m.as_str_name().to_string())
                .unwrap_or_else(|_| exec.mode.to_string());
            return Err(Error::invalid_field(
                INVALID_JSON_FIELD,
                "mode",
                format!(
                    "{} conflicts with execution.mode {given}; give one or make them equal",
                    mode.as_str_name()
                ),
            ));
        }
    }
    Ok(spec)
}

fn parse_mode_shorthand(v: &Value) -> Option<ExecutionMode> {
    match v {
        Value::String(s) => match s.as_str() {
            "JOB" | "EXECUTION_MODE_JOB" => Some(ExecutionMode::Job),
            "STREAMING" | "EXECUTION_MODE_STREAMING" => Some(ExecutionMode::Streaming),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(ExecutionMode::Streaming),
            Some(2) => Some(ExecutionMode::Job),
            _ => None,
        },
        _ => None,
    }
}

/// Encodes a message as protojson the way grpc-gateway does (EmitUnpopulated): pbjson writes
/// every scalar, list and map, and this adds the `null` of every unset singular message field.
pub fn encode<T: serde::Serialize + prost::Name>(msg: &T) -> Result<Vec<u8>> {
    let fail = |e: serde_json::Error| Error::internal(format!("cannot encode response: {e}"));
    let mut value = serde_json::to_value(msg).map_err(fail)?;
    if let Some(m) = schema::message(&T::full_name()) {
        fill_unpopulated(m, &mut value);
    }
    serde_json::to_vec(&value).map_err(fail)
}

fn fill_unpopulated(m: &MessageType, value: &mut Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    for f in m.fields {
        if matches!(f.ty, Type::Scalar(_) | Type::Enum(_)) {
            continue;
        }
        let inner = match f.ty {
            Type::Message(inner) => Some(inner),
            _ => None, // a well-known type: pbjson-compatible already
        };
        match (f.label, obj.get_mut(f.json_name), inner) {
            (Label::Singular, None, _) => {
                obj.insert(f.json_name.to_string(), Value::Null);
            }
            (Label::Singular | Label::Optional, Some(v), Some(inner)) => fill_unpopulated(inner, v),
            (Label::Repeated, Some(Value::Array(items)), Some(inner)) => {
                items.iter_mut().for_each(|v| fill_unpopulated(inner, v));
            }
            (Label::Map(_), Some(Value::Object(entries)), Some(inner)) => {
                entries
                    .values_mut()
                    .for_each(|v| fill_unpopulated(inner, v));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn field_of(e: &Error) -> &str {
        &e.violations()[0].field
    }

    #[test]
    fn the_readme_example_decodes_with_the_mode_shorthand() {
        let s = decode_flow_spec(br#"{"name":"example","mode":"JOB","queues":[],"stages":[]}"#)
            .unwrap();
        assert_eq!(s.name, "example");
        assert_eq!(s.execution.unwrap().mode, ExecutionMode::Job as i32);
    }

    #[test]
    fn both_spellings_and_numbers_as_strings_are_accepted() {
        let s = decode_flow_spec(
            br#"{"name":"x","version":"0","stages":[{"name":"a","type":"t","threads":2,"input_queue":"q","outputQueue":"r"}]}"#,
        )
        .unwrap();
        assert_eq!(s.stages[0].input_queue.as_deref(), Some("q"));
        assert_eq!(s.stages[0].output_queue.as_deref(), Some("r"));
    }

    #[test]
    fn mode_conflicts_are_rejected() {
        let e = decode_flow_spec(
            br#"{"name":"x","mode":"JOB","execution":{"mode":"EXECUTION_MODE_STREAMING"}}"#,
        )
        .unwrap_err();
        assert_eq!(field_of(&e), "mode");
        let ok =
            decode_flow_spec(br#"{"name":"x","mode":"STREAMING","execution":{"mode":1}}"#).unwrap();
        assert_eq!(ok.execution.unwrap().mode, 1);
        let e = decode_flow_spec(br#"{"name":"x","mode":"FAST"}"#).unwrap_err();
        assert!(e.message().contains("JOB"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = decode_flow_spec(br#"{"name":"x","stages":[{"name":"a","bogus":1}]}"#).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(field_of(&e).starts_with("stages[0]"), "{e:?}");
        assert!(e.message().contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = decode_flow_spec(br#"{"name":"x","stages":[{},{"threads":"many"}]}"#).unwrap_err();
        assert_eq!(field_of(&e), "stages[1].threads");
        let e = decode_flow_spec(br#"{"stages":[{"threads":4294967296}]}"#).unwrap_err();
        assert_eq!(field_of(&e), "stages[0].threads");
    }

    #[test]
    fn duplicate_keys_are_rejected_anywhere() {
        for body in [
            &br#"{"name":"a","name":"b"}"#[..],
            br#"{"labels":{"k":"1","k":"2"}}"#,
            br#"{"stages":[{"config":{"x":{"y":1,"y":2}}}]}"#,
        ] {
            let e = decode_flow_spec(body).unwrap_err();
            assert!(e.message().contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn malformed_and_empty_bodies() {
        for body in [
            &b""[..],
            b"  ",
            b"{",
            b"{\"name\":",
            b"nul",
            b"{} x",
            b"\xff\xfe",
        ] {
            let e = decode_flow_spec(body).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{body:?}");
        }
        let e = decode_flow_spec(b"[]").unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            "{{\"stages\":[{{\"config\":{{\"a\":{}1{}}}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = decode_flow_spec(deep.as_bytes()).unwrap_err();
        assert!(e.message().contains("recursion limit"), "{e}");
    }

    #[test]
    fn unset_singular_messages_are_null_and_unset_optionals_absent() {
        use crate::proto::v1::{Flow, FlowStatus, StageSpec};
        let flow = Flow {
            status: Some(FlowStatus::default()),
            spec: Some(FlowSpec {
                stages: vec![StageSpec::default()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&encode(&flow).unwrap()).unwrap();
        assert_eq!(v["createTime"], Value::Null);
        assert!(v.as_object().unwrap().contains_key("createTime"));
        assert!(v["status"].as_object().unwrap().contains_key("lastUpdated"));
        let stage = v["spec"]["stages"][0].as_object().unwrap();
        assert_eq!(stage["config"], Value::Null);
        assert!(
            !stage.contains_key("inputQueue"),
            "proto3 optional stays absent"
        );
        let spec = v["spec"].as_object().unwrap();
        assert!(!spec.contains_key("execution") && !spec.contains_key("kubernetes"));
    }

    #[test]
    fn output_emits_defaults_and_u64_as_strings() {
        let spec = FlowSpec {
            name: "x".into(),
            version: 3,
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&encode(&spec).unwrap()).unwrap();
        assert_eq!(v["version"], "3");
        assert_eq!(v["stages"], serde_json::json!([]));
        assert_eq!(v["labels"], serde_json::json!({}));
    }
}
