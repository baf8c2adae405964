//! Request bodies in protojson (contract A.2, B.5), decoded strictly, and responses encoded the
//! way grpc-gateway writes them.
//!
//! Decoding follows proto3 JSON exactly, as Go's protojson (the original API's grpc-gateway)
//! applies it, in three steps:
//!
//! 1. `parse` reads the body into a tree that keeps numbers as written and every object
//!    member, repeated keys included; malformed JSON is reported with its line and column;
//! 2. `walk` checks the tree against the message's schema ([`crate::proto::schema`]): `null` is
//!    a field's default, integral floats (`2.0`, `2e0`) are integers, enums are names or numbers,
//!    both field spellings are accepted, unknown fields and repeated keys are rejected. It
//!    rewrites every value into the one form pbjson reads, and reports every problem with the
//!    field's path written the way the API writes paths (`stages[1].threads`, `labels["k"]`) and
//!    what was expected ("expected an unsigned 32-bit integer, got 2.5");
//! 3. pbjson's generated serde impls build the message from that canonical form. They cannot fail
//!    on it; should they, the error still names the field and its type, never a parser's
//!    internals.
//!
//! A FlowSpec may also use the top-level `"mode"` shorthand for `execution.mode`.
//!
//! Every error is INVALID_ARGUMENT with one BadRequest field violation per problem: reason
//! [`MALFORMED_JSON`] (field `request body`) when the body is not JSON, [`INVALID_JSON_FIELD`]
//! when it does not fit the message.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{Error, FieldViolation, Result};
use crate::proto::schema::{self, Label, MessageType, Type};
use crate::proto::v1::{Execution, ExecutionMode, FlowSpec};

#[cfg(test)]
mod conformance;
mod parse;
mod walk;

use parse::{Json, SyntaxKind};
use walk::{REQUEST_BODY, Walker};

/// `ErrorInfo.reason` of a body that is not valid JSON at all.
pub const MALFORMED_JSON: &str = "MALFORMED_JSON";
/// `ErrorInfo.reason` of JSON that does not fit the message.
pub const INVALID_JSON_FIELD: &str = "INVALID_FIELD";

/// A string as JSON writes it, cut to its first 40 characters for an error message.
fn quote(s: &str) -> String {
    const MAX: usize = 40;
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX).collect();
    let quoted = serde_json::to_string(&head).unwrap_or_default();
    if chars.next().is_some() {
        format!("{quoted}… ({} characters)", s.chars().count())
    } else {
        quoted
    }
}

/// Parses `body`; `what` names the expected message in error messages ("FlowSpec").
fn parse_body(body: &[u8], what: &str) -> Result<Json> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid_field(
            MALFORMED_JSON,
            REQUEST_BODY,
            format!(
                "empty, expected a JSON object ({})",
                walk::with_article(what)
            ),
        ));
    }
    parse::parse(body).map_err(|e| {
        let description = match e.kind {
            SyntaxKind::Invalid => format!("not valid JSON: {e}"),
            SyntaxKind::TooDeep => format!("too deeply nested: {e}"),
        };
        Error::invalid_field(MALFORMED_JSON, REQUEST_BODY, description)
    })
}

/// The error listing a walk's problems: at most [`crate::error::MAX_REPORTED_VIOLATIONS`], the
/// message counting them all (as [`Error::invalid`] words it).
fn walk_error(w: Walker) -> Error {
    let Walker {
        mut violations,
        total,
        ..
    } = w;
    if total <= violations.len() {
        return Error::invalid(INVALID_JSON_FIELD, violations);
    }
    violations.truncate(crate::error::MAX_REPORTED_VIOLATIONS - 1);
    let first = &violations[0];
    let message = format!(
        "{total} problems found; first: {}: {}",
        first.field, first.description
    );
    violations.push(FieldViolation::new(
        "",
        format!("{} more problems not listed", total - violations.len()),
    ));
    let mut e = Error::invalid(INVALID_JSON_FIELD, violations);
    if let Error::InvalidArgument { detail, .. } = &mut e {
        detail.message = message;
    }
    e
}

/// Builds the message from the walk's canonical JSON. pbjson accepts everything the walk lets
/// through; were it to refuse something, the error names the field and its type (found in the
/// schema along pbjson's path), never pbjson's or serde's own words.
fn from_canonical<T: DeserializeOwned>(
    m: &'static MessageType,
    value: Map<String, Value>,
) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(value)).map_err(|e| {
        let (field, expected) = resolve(m, e.path());
        Error::invalid_field(
            INVALID_JSON_FIELD,
            field,
            format!("expected {expected}, got a value that is not one"),
        )
    })
}

/// The API-style path and the expected type of the value at a serde path into message `m`.
fn resolve(m: &'static MessageType, path: &serde_path_to_error::Path) -> (String, String) {
    use serde_path_to_error::Segment;
    /// Where a path segment leads.
    #[derive(Clone, Copy)]
    enum At {
        /// Into a message: the next segment names a field.
        Message(&'static MessageType),
        /// To a field's value as a whole (a list or map for repeated and map fields).
        Field(&'static schema::Field),
        /// To one element of a repeated field, or one value of a map field.
        Element(&'static schema::Field),
        /// Into the JSON of a Struct, Value or ListValue.
        Any,
    }
    let mut out = String::new();
    let mut at = At::Message(m);
    for segment in path {
        // A value of a message type is walked as that message; of a JSON type, as any JSON.
        if let At::Element(f) | At::Field(f) = at
            && (matches!(at, At::Element(_))
                || matches!(f.label, Label::Singular | Label::Optional))
        {
            at = match f.ty {
                Type::Message(inner) => At::Message(inner),
                _ => At::Any,
            };
        }
        at = match (at, segment) {
            (At::Message(m), Segment::Map { key }) => match m.field(key) {
                Some(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f.name);
                    At::Field(f)
                }
                None => break,
            },
            (At::Field(f), Segment::Seq { index }) if f.label == Label::Repeated => {
                out.push_str(&format!("[{index}]"));
                At::Element(f)
            }
            (At::Field(f), Segment::Map { key }) if matches!(f.label, Label::Map(_)) => {
                out.push_str(&format!("[{}]", quote(key)));
                At::Element(f)
            }
            (At::Any, Segment::Map { key }) => {
                out.push_str(&format!("[{}]", quote(key)));
                At::Any
            }
            (At::Any, Segment::Seq { index }) => {
                out.push_str(&format!("[{index}]"));
                At::Any
            }
            _ => break,
        };
    }
    let expected = match at {
        At::Message(m) => walk::describe_type(Type::Message(m)),
        At::Field(f) if f.label == Label::Repeated => "a JSON array".into(),
        At::Field(f) if matches!(f.label, Label::Map(_)) => "a JSON object".into(),
        At::Field(f) | At::Element(f) => walk::describe_type(f.ty),
        At::Any => walk::describe_type(Type::Value),
    };
    if out.is_empty() {
        out = REQUEST_BODY.to_string();
    }
    (out, expected)
}

/// Decodes a protojson message from a request body; `what` names it in error messages
/// ("SchemaDefinition").
pub fn decode<T: DeserializeOwned + prost::Name>(body: &[u8], what: &str) -> Result<T> {
    let m = schema::message(&T::full_name())
        .ok_or_else(|| Error::internal(format!("no protojson schema for {}", T::full_name())))?;
    let json = parse_body(body, what)?;
    let mut w = Walker::default();
    let value = w.message(m, json);
    match value {
        Some(value) if w.total == 0 => from_canonical(m, value),
        _ => Err(walk_error(w)),
    }
}

/// Decodes a `FlowSpec` request body, applying the top-level `"mode"` shorthand:
/// `"JOB" | "STREAMING"` (or `EXECUTION_MODE_JOB` / `EXECUTION_MODE_STREAMING`, or their numbers)
/// means `execution.mode`; `null` means unset; giving both with different values is an error.
pub fn decode_flow_spec(body: &[u8]) -> Result<FlowSpec> {
    let m = &schema::FLOWPIPE_V1_FLOWSPEC;
    let mut json = parse_body(body, "FlowSpec")?;
    let mut w = Walker::default();
    let mut mode = None;
    if let Json::Object(members) = &mut json {
        let mut given = members.iter().filter(|(k, _)| k == "mode").count();
        if given > 1 {
            w.fail_at(
                "mode",
                "duplicate key `mode`: a field may be given only once",
            );
        }
        members.retain_mut(|(k, v)| {
            if k != "mode" {
                return true;
            }
            given -= 1;
            if given == 0 {
                mode = Some(std::mem::replace(v, Json::Null));
            }
            false
        });
    }
    let mode = match mode {
        None | Some(Json::Null) => None,
        Some(v) => {
            let parsed = parse_mode_shorthand(&v);
            if parsed.is_none() {
                w.fail_at(
                    "mode",
                    format!(
                        "expected \"JOB\" or \"STREAMING\" (or EXECUTION_MODE_JOB, EXECUTION_MODE_STREAMING, or their numbers 2 and 1), got {}",
                        walk::describe(&v)
                    ),
                );
            }
            parsed
        }
    };
    let value = w.message(m, json);
    let mut spec: FlowSpec = match value {
        Some(value) if w.total == 0 => from_canonical(m, value)?,
        _ => return Err(walk_error(w)),
    };
    let Some(mode) = mode else {
        return Ok(spec);
    };
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

fn parse_mode_shorthand(v: &Json) -> Option<ExecutionMode> {
    match v {
        Json::String(s) => match s.as_str() {
            "JOB" | "EXECUTION_MODE_JOB" => Some(ExecutionMode::Job),
            "STREAMING" | "EXECUTION_MODE_STREAMING" => Some(ExecutionMode::Streaming),
            _ => None,
        },
        Json::Number(_) => match walk::integer(schema::IntKind::I32, v) {
            Ok(1) => Some(ExecutionMode::Streaming),
            Ok(2) => Some(ExecutionMode::Job),
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
