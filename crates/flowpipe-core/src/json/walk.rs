//! The proto3 JSON rules, applied by walking a parsed body along the message's schema
//! ([`crate::proto::schema`]) before pbjson sees it. The walk checks every value against its
//! field's type and rewrites it into the one form pbjson reads without fail:
//!
//! | JSON input | rule (proto3 JSON, as Go's protojson applies it) | passed on as |
//! |---|---|---|
//! | `null` for a field | the field's default: unset, 0, "", `[]`, `{}` | field left out |
//! | `null` for a `google.protobuf.Value` field, or inside a `Struct`/`ListValue` | JSON null | `null` |
//! | `null` as a list element or map value (other than `Value`) | an error | — |
//! | integer field: `2`, `2.0`, `2e0`, `0.2e1`, `"2"`, `"2.0"`, `-0` | the integer, range-checked | 32-bit: number; 64-bit: decimal string |
//! | enum field: a value's name, or a number (`1`, `1.0`) that is a value | that value | its name |
//! | `bytes`: standard or URL-safe base64, padded or not | the bytes | standard padded base64 |
//! | `float`/`double`: a number, a numeric string, `"NaN"`, `"Infinity"`, `"-Infinity"` | the number | number or that string |
//! | a field under its JSON name or its proto name | the field | under its proto name |
//! | the same field twice (`inputQueue` and `input_queue`), or a repeated map/Struct key | an error | — |
//! | an unknown field | an error naming it and the known ones | — |
//!
//! Every problem is reported as a field violation whose path is written the way the API writes
//! every path (`stages[1].input_queue`, `labels["team"]`, `stages[0].config["a"]`): proto field
//! names, `[i]` for list elements, `["key"]` for map and Struct keys. The walk goes on after a
//! problem, so one response lists them all.

use std::collections::HashSet;
use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::parse::Json;
use super::quote;
use crate::error::{FieldViolation, MAX_REPORTED_VIOLATIONS};
use crate::proto::schema::{EnumType, Field, IntKind, Label, MessageType, Scalar, Type};

/// The field name used for the request body as a whole.
pub const REQUEST_BODY: &str = "request body";

/// Walks one request body, collecting field violations.
#[derive(Default)]
pub struct Walker {
    path: String,
    /// The first [`MAX_REPORTED_VIOLATIONS`] problems found.
    pub violations: Vec<FieldViolation>,
    /// How many problems were found in all.
    pub total: usize,
}

impl Walker {
    /// Records a problem with the value at the current path.
    pub fn fail(&mut self, description: impl Into<String>) {
        self.total += 1;
        if self.violations.len() < MAX_REPORTED_VIOLATIONS {
            let field = if self.path.is_empty() {
                REQUEST_BODY.to_string()
            } else {
                self.path.clone()
            };
            self.violations
                .push(FieldViolation::new(field, description));
        }
    }

    /// Records a problem with field `field` of the message at the current path.
    pub fn fail_at(&mut self, field: &str, description: impl Into<String>) {
        self.at(Segment::Field(field), |w| w.fail(description));
    }

    fn fail_type(&mut self, expected: &str, got: &Json) -> Option<Value> {
        self.fail(format!("expected {expected}, got {}", describe(got)));
        None
    }

    /// Runs `f` with `segment` appended to the path.
    fn at<T>(&mut self, segment: Segment<'_>, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        match segment {
            Segment::Field(name) if is_identifier(name) => {
                if len > 0 {
                    self.path.push('.');
                }
                self.path.push_str(name);
            }
            Segment::Field(key) | Segment::Key(key) => {
                let _ = write!(self.path, "[{}]", quote(key));
            }
            Segment::Index(i) => {
                let _ = write!(self.path, "[{i}]");
            }
        }
        let out = f(self);
        self.path.truncate(len);
        out
    }

    /// A message: a JSON object whose keys are field names (JSON or proto spelling).
    pub fn message(&mut self, m: &'static MessageType, v: Json) -> Option<Map<String, Value>> {
        let members = match v {
            Json::Object(members) => members,
            other => {
                self.fail_type(&describe_type(Type::Message(m)), &other);
                return None;
            }
        };
        let mut out = Map::new();
        let mut seen: Vec<(u32, String)> = Vec::new();
        let mut oneofs: Vec<(&str, &str)> = Vec::new();
        let mut ok = true;
        for (key, value) in members {
            let Some(f) = m.field(&key) else {
                self.at(Segment::Field(&key), |w| {
                    w.fail(format!(
                        "unknown field {} ({} has: {})",
                        quote(&key),
                        m.short_name(),
                        m.fields
                            .iter()
                            .map(|f| f.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                });
                ok = false;
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == f.number) {
                let also = if *first == key {
                    String::new()
                } else {
                    format!(" (already given as {})", quote(first))
                };
                self.at(Segment::Field(f.name), |w| {
                    w.fail(format!(
                        "duplicate key `{key}`{also}: a field may be given only once"
                    ));
                });
                ok = false;
                continue;
            }
            seen.push((f.number, key));
            if value == Json::Null && !keeps_null(f) {
                continue; // proto3 JSON: null is the field's default
            }
            if let Some(oneof) = f.oneof {
                if let Some((_, other)) = oneofs.iter().find(|(o, _)| *o == oneof) {
                    let other = *other;
                    self.at(Segment::Field(f.name), |w| {
                        w.fail(format!(
                            "only one field of oneof `{oneof}` may be set, and `{other}` is set too"
                        ));
                    });
                    ok = false;
                    continue;
                }
                oneofs.push((oneof, f.name));
            }
            match self.at(Segment::Field(f.name), |w| w.field(f, value)) {
                Some(v) => {
                    out.insert(f.name.to_string(), v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn field(&mut self, f: &'static Field, v: Json) -> Option<Value> {
        match f.label {
            Label::Singular | Label::Optional => self.value(f.ty, v),
            Label::Repeated => {
                let Json::Array(items) = v else {
                    let expected = format!("a JSON array of {}", plural(f.ty));
                    return self.fail_type(&expected, &v);
                };
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.into_iter().enumerate() {
                    match self.at(Segment::Index(i), |w| w.element(f.ty, item, "list element")) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Array(out))
            }
            Label::Map(key_type) => {
                let Json::Object(members) = v else {
                    let expected = format!(
                        "a JSON object mapping {} keys to {}",
                        describe_key(key_type),
                        plural(f.ty)
                    );
                    return self.fail_type(&expected, &v);
                };
                let mut out = Map::new();
                let mut seen = HashSet::new();
                let mut ok = true;
                for (key, value) in members {
                    let result = self.at(Segment::Key(&key), |w| {
                        if !seen.insert(key.clone()) {
                            w.fail(format!(
                                "duplicate key `{}`: a map key may be given only once",
                                cut(&key)
                            ));
                            return None;
                        }
                        let key = w.map_key(key_type, &key)?;
                        let value = w.element(f.ty, value, "map value")?;
                        Some((key, value))
                    });
                    match result {
                        Some((k, v)) => {
                            out.insert(k, v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Object(out))
            }
        }
    }

    /// A list element or map value: `null` is a value only for `google.protobuf.Value`.
    fn element(&mut self, ty: Type, v: Json, what: &str) -> Option<Value> {
        if v == Json::Null && !matches!(ty, Type::Value) {
            self.fail(format!(
                "expected {}, got null (a {what} cannot be null)",
                describe_type(ty)
            ));
            return None;
        }
        self.value(ty, v)
    }

    fn map_key(&mut self, key_type: Scalar, key: &str) -> Option<String> {
        let valid = match key_type {
            Scalar::String => true,
            Scalar::Bool => key == "true" || key == "false",
            s => match s.int_kind() {
                Some(IntKind::I32) => key.parse::<i32>().is_ok(),
                Some(IntKind::U32) => key.parse::<u32>().is_ok(),
                Some(IntKind::I64) => key.parse::<i64>().is_ok(),
                Some(IntKind::U64) => key.parse::<u64>().is_ok(),
                None => false,
            },
        };
        if !valid {
            self.fail(format!(
                "expected a map key that is {}, got {}",
                describe_key(key_type),
                quote(key)
            ));
            return None;
        }
        // Canonical decimal, as pbjson reads integer keys ("+7" and "007" are 7).
        Some(match key_type.int_kind() {
            Some(IntKind::U32 | IntKind::U64) => key
                .parse::<u64>()
                .map_or_else(|_| key.into(), |n| n.to_string()),
            Some(IntKind::I32 | IntKind::I64) => key
                .parse::<i64>()
                .map_or_else(|_| key.into(), |n| n.to_string()),
            None => key.to_string(),
        })
    }

    fn value(&mut self, ty: Type, v: Json) -> Option<Value> {
        match ty {
            Type::Scalar(s) => self.scalar(s, v),
            Type::Enum(e) => self.enumeration(e, v),
            Type::Message(m) => self.message(m, v).map(Value::Object),
            Type::Struct => match v {
                Json::Object(members) => self.struct_fields(members).map(Value::Object),
                other => self.fail_type(&describe_type(ty), &other),
            },
            Type::ListValue => match v {
                Json::Array(_) => self.any(v),
                other => self.fail_type(&describe_type(ty), &other),
            },
            Type::Value => self.any(v),
            Type::Timestamp => match v {
                Json::String(s) if chrono::DateTime::parse_from_rfc3339(&s).is_ok() => {
                    Some(Value::String(s))
                }
                other => self.fail_type(&describe_type(ty), &other),
            },
        }
    }

    /// The members of a `google.protobuf.Struct`: any JSON, `null` kept, keys unique.
    fn struct_fields(&mut self, members: Vec<(String, Json)>) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        let mut ok = true;
        for (key, value) in members {
            if out.contains_key(&key) {
                self.at(Segment::Key(&key), |w| {
                    w.fail(format!(
                        "duplicate key `{}`: a key may be given only once",
                        cut(&key)
                    ));
                });
                ok = false;
                continue;
            }
            match self.at(Segment::Key(&key), |w| w.any(value)) {
                Some(v) => {
                    out.insert(key, v);
                }
                None => {
                    // Keep the key, so a repeat of it is still reported as a duplicate.
                    out.insert(key, Value::Null);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A `google.protobuf.Value`: any JSON value; numbers are 64-bit floating point.
    fn any(&mut self, v: Json) -> Option<Value> {
        match v {
            Json::Null => Some(Value::Null),
            Json::Bool(b) => Some(Value::Bool(b)),
            Json::String(s) => Some(Value::String(s)),
            Json::Number(raw) => match raw.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Some(Value::Number(n)),
                None => {
                    self.fail(format!(
                        "number {} is out of range (numbers here are 64-bit floating point, at most about 1.8e308)",
                        quote_number(&raw)
                    ));
                    None
                }
            },
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.into_iter().enumerate() {
                    match self.at(Segment::Index(i), |w| w.any(item)) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Array(out))
            }
            Json::Object(members) => self.struct_fields(members).map(Value::Object),
        }
    }

    fn scalar(&mut self, s: Scalar, v: Json) -> Option<Value> {
        if let Some(kind) = s.int_kind() {
            return match integer(kind, &v) {
                Ok(n) if kind.is_64_bit() => Some(Value::String(n.to_string())),
                // In range for a 32-bit kind, so it fits an i64.
                Ok(n) => Some(Value::from(i64::try_from(n).unwrap_or_default())),
                Err(IntError::NotAnInteger) => self.fail_type(describe_int(kind), &v),
                Err(IntError::OutOfRange) => {
                    self.fail(format!(
                        "expected {}, got {} (out of range: {} to {})",
                        describe_int(kind),
                        describe(&v),
                        kind.min(),
                        kind.max()
                    ));
                    None
                }
            };
        }
        match (s, v) {
            (Scalar::Bool, Json::Bool(b)) => Some(Value::Bool(b)),
            (Scalar::String, Json::String(s)) => Some(Value::String(s)),
            (Scalar::Bytes, Json::String(text)) => match base64_bytes(&text) {
                Some(bytes) => Some(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                )),
                None => self.fail_type(&describe_type(Type::Scalar(s)), &Json::String(text)),
            },
            (Scalar::Float | Scalar::Double, v) => match float(s == Scalar::Float, &v) {
                Some(value) => Some(value),
                None => self.fail_type(&describe_type(Type::Scalar(s)), &v),
            },
            (_, v) => self.fail_type(&describe_type(Type::Scalar(s)), &v),
        }
    }

    fn enumeration(&mut self, e: &'static EnumType, v: Json) -> Option<Value> {
        let name = match &v {
            Json::String(s) => e.number(s).map(|_| s.clone()),
            Json::Number(_) => integer(IntKind::I32, &v)
                .ok()
                .and_then(|n| i32::try_from(n).ok())
                .and_then(|n| e.name(n))
                .map(str::to_string),
            _ => None,
        };
        match name {
            Some(name) => Some(Value::String(name)),
            None => self.fail_type(&describe_type(Type::Enum(e)), &v),
        }
    }
}

/// One step of a path.
enum Segment<'a> {
    /// A field of a message (an unknown one is written as a key when it is not an identifier).
    Field(&'a str),
    /// A key of a map or Struct: `["key"]`.
    Key(&'a str),
    /// An element of a list: `[3]`.
    Index(usize),
}

/// A key cut to its first 40 characters, for an error message.
fn cut(key: &str) -> String {
    match key.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &key[..i]),
        None => key.to_string(),
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `null` given for field `f` is a value rather than the field's default: only for a
/// singular `google.protobuf.Value` field (where it is the JSON null), as in protojson.
fn keeps_null(f: &Field) -> bool {
    matches!(f.ty, Type::Value) && matches!(f.label, Label::Singular | Label::Optional)
}

/// Why a JSON value is not an integer of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    /// Not a number, or a number with a non-zero fraction.
    NotAnInteger,
    /// An integer outside the kind's range.
    OutOfRange,
}

/// An integer field's value as protojson reads it: a JSON number or a string holding one (the
/// whole string, no spaces), whose decimal value is an integer — `2`, `2.0`, `2e0`, `0.2e1`,
/// `-0`, `"2"`, `"1e2"` — within the range of `kind`. Decided on the decimal text, never on a
/// rounded double, as Go's protojson does (`normalizeToIntString`).
pub fn integer(kind: IntKind, v: &Json) -> Result<i128, IntError> {
    let text = match v {
        Json::Number(raw) => raw.as_str(),
        Json::String(s) => s.as_str(),
        _ => return Err(IntError::NotAnInteger),
    };
    let n = decimal_integer(text)?;
    if (kind.min()..=kind.max()).contains(&n) {
        Ok(n)
    } else {
        Err(IntError::OutOfRange)
    }
}

/// The integer a JSON number's text stands for.
fn decimal_integer(text: &str) -> Result<i128, IntError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let int_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (int_part, rest) = rest.split_at(int_end);
    if int_part.is_empty() || (int_part.len() > 1 && int_part.starts_with('0')) {
        return Err(IntError::NotAnInteger);
    }
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(rest) => {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(IntError::NotAnInteger);
            }
            rest.split_at(end)
        }
        None => ("", rest),
    };
    let exponent = match rest.strip_prefix(['e', 'E']) {
        Some(exp) => {
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(IntError::NotAnInteger);
            }
            // A huge exponent: out of range when positive; when negative, a non-zero number
            // is not an integer (a zero one is handled below).
            Some(exp.parse::<i32>().map_err(|_| {
                if exp.starts_with('-') {
                    IntError::NotAnInteger
                } else {
                    IntError::OutOfRange
                }
            }))
        }
        None if rest.is_empty() => None,
        None => return Err(IntError::NotAnInteger),
    };
    let int_part = int_part.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int_part.is_empty() && frac.is_empty() {
        return Ok(0); // -0, 0.000, 0e99999999999
    }
    let exponent = exponent.transpose()?.unwrap_or(0);
    let digits: String = if exponent >= 0 {
        let exponent = exponent as usize;
        if frac.len() > exponent {
            return Err(IntError::NotAnInteger);
        }
        // u64::MAX has 20 digits; a longer integer is out of every range.
        if int_part.len() + exponent > 20 {
            return Err(IntError::OutOfRange);
        }
        let zeros = exponent - frac.len();
        format!("{int_part}{frac}{}", "0".repeat(zeros))
    } else {
        if !frac.is_empty() {
            return Err(IntError::NotAnInteger);
        }
        let shift = exponent.unsigned_abs() as usize;
        if shift > int_part.len()
            || int_part[int_part.len() - shift..]
                .bytes()
                .any(|b| b != b'0')
        {
            return Err(IntError::NotAnInteger);
        }
        int_part[..int_part.len() - shift].to_string()
    };
    let digits = digits.trim_start_matches('0');
    if digits.len() > 20 {
        return Err(IntError::OutOfRange);
    }
    let magnitude: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| IntError::OutOfRange)?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// A `float` or `double` field's value: a JSON number, or a string holding one or `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; finite numbers must fit the type.
fn float(single: bool, v: &Json) -> Option<Value> {
    let text = match v {
        Json::Number(raw) => raw.as_str(),
        Json::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            return Some(Value::String(s.clone()));
        }
        Json::String(s) => {
            // The whole string must be a JSON number.
            match super::parse::parse(s.as_bytes()) {
                Ok(Json::Number(_)) if s.trim() == s => s.as_str(),
                _ => return None,
            }
        }
        _ => return None,
    };
    // Parsed at the field's own precision (no double rounding), and finite: protojson refuses
    // a number beyond the type's range rather than storing infinity.
    let n = if single {
        let n: f32 = text.parse().ok()?;
        n.is_finite().then_some(f64::from(n))?
    } else {
        let n: f64 = text.parse().ok()?;
        n.is_finite().then_some(n)?
    };
    Number::from_f64(n).map(Value::Number)
}

/// Base64 as protojson reads it: the URL-safe alphabet when the text has `-` or `_`, the
/// standard one otherwise; padding optional when the length is not a multiple of 4.
fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let padding = if text.len().is_multiple_of(4) {
        DecodePaddingMode::RequireCanonical
    } else {
        DecodePaddingMode::RequireNone
    };
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(padding);
    let alphabet = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    GeneralPurpose::new(alphabet, config).decode(text).ok()
}

/// What a value is, for "got ...": the value itself when short, its kind otherwise.
pub fn describe(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(raw) => quote_number(raw),
        Json::String(s) => quote(s),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

fn quote_number(raw: &str) -> String {
    if raw.len() <= 40 {
        raw.to_string()
    } else {
        format!("{}… (a {}-character number)", &raw[..40], raw.len())
    }
}

fn describe_int(kind: IntKind) -> &'static str {
    match kind {
        IntKind::I32 => "a signed 32-bit integer",
        IntKind::U32 => "an unsigned 32-bit integer",
        IntKind::I64 => "a signed 64-bit integer",
        IntKind::U64 => "an unsigned 64-bit integer",
    }
}

fn describe_key(key: Scalar) -> String {
    match key.int_kind() {
        Some(kind) => format!("{} (in decimal)", describe_int(kind)),
        None if key == Scalar::Bool => "\"true\" or \"false\"".into(),
        None => "string".into(),
    }
}

/// What a value of type `ty` is, for "expected ...".
pub fn describe_type(ty: Type) -> String {
    match ty {
        Type::Scalar(s) => match s.int_kind() {
            Some(kind) => describe_int(kind).into(),
            None => match s {
                Scalar::Bool => "a boolean (true or false)".into(),
                Scalar::String => "a string".into(),
                Scalar::Bytes => "base64-encoded bytes (a string)".into(),
                Scalar::Float => "a 32-bit floating-point number".into(),
                _ => "a 64-bit floating-point number".into(),
            },
        },
        Type::Enum(e) => {
            let names: Vec<&str> = e.values.iter().map(|(n, _)| *n).collect();
            format!("one of {} (or its number)", names.join(", "))
        }
        Type::Message(m) => format!("a JSON object ({})", with_article(m.short_name())),
        Type::Struct => "a JSON object".into(),
        Type::ListValue => "a JSON array".into(),
        Type::Value => "a JSON value".into(),
        Type::Timestamp => "an RFC 3339 timestamp string (such as \"2024-05-01T12:00:00Z\")".into(),
    }
}

/// The elements of a list of `ty`, for "a JSON array of ...".
fn plural(ty: Type) -> String {
    match ty {
        Type::Scalar(s) => match s.int_kind() {
            Some(IntKind::I32) => "signed 32-bit integers".into(),
            Some(IntKind::U32) => "unsigned 32-bit integers".into(),
            Some(IntKind::I64) => "signed 64-bit integers".into(),
            Some(IntKind::U64) => "unsigned 64-bit integers".into(),
            None => match s {
                Scalar::Bool => "booleans".into(),
                Scalar::String => "strings".into(),
                Scalar::Bytes => "base64 strings".into(),
                _ => "numbers".into(),
            },
        },
        Type::Enum(e) => format!("{} values", short(e.full_name)),
        Type::Message(m) => format!("{} objects", m.short_name()),
        Type::Struct => "JSON objects".into(),
        Type::ListValue => "JSON arrays".into(),
        Type::Value => "JSON values".into(),
        Type::Timestamp => "RFC 3339 timestamps".into(),
    }
}

/// "a FlowSpec", "an Execution".
pub fn with_article(name: &str) -> String {
    let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

fn short(full_name: &str) -> &str {
    full_name.strip_prefix("flowpipe.v1.").unwrap_or(full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Json {
        Json::Number(text.into())
    }

    #[test]
    fn integral_numbers_in_every_spelling() {
        for (text, want) in [
            ("0", 0),
            ("-0", 0),
            ("0.0", 0),
            ("-0.0e5", 0),
            ("0e-99999999999", 0),
            ("2", 2),
            ("2.0", 2),
            ("2.000", 2),
            ("2e0", 2),
            ("2E+0", 2),
            ("0.2e1", 2),
            ("20e-1", 2),
            ("200E-2", 2),
            ("1e2", 100),
            ("1.5e1", 15),
            ("-3.0", -3),
            ("-3e0", -3),
            ("4294967295", 4_294_967_295),
            ("4.294967295e9", 4_294_967_295),
            ("18446744073709551615", 18_446_744_073_709_551_615),
            ("1.8446744073709551615e19", 18_446_744_073_709_551_615),
            ("-9223372036854775808", -9_223_372_036_854_775_808),
        ] {
            assert_eq!(decimal_integer(text), Ok(want), "{text}");
        }
        for text in ["2.5", "1e-1", "0.5e0", "15e-1", "1.25e1", "1e-99999999999"] {
            assert_eq!(decimal_integer(text), Err(IntError::NotAnInteger), "{text}");
        }
        for text in ["1e20", "1e99999999999", "123456789012345678901", "1e999"] {
            assert_eq!(decimal_integer(text), Err(IntError::OutOfRange), "{text}");
        }
        // Strings must hold exactly one JSON number.
        for text in [
            " 1", "1 ", "+1", "01", "1.", ".5", "0x10", "", "1e", "one", "1_000",
        ] {
            assert_eq!(
                decimal_integer(text),
                Err(IntError::NotAnInteger),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_integer_kind_is_range_checked() {
        use IntKind::*;
        let cases: &[(IntKind, &str, Result<i128, IntError>)] = &[
            (I32, "-2147483648", Ok(-2_147_483_648)),
            (I32, "-2147483649", Err(IntError::OutOfRange)),
            (I32, "2147483647.0", Ok(2_147_483_647)),
            (I32, "2147483648", Err(IntError::OutOfRange)),
            (U32, "-1", Err(IntError::OutOfRange)),
            (U32, "-0.0", Ok(0)),
            (U32, "4294967295", Ok(4_294_967_295)),
            (U32, "4294967296", Err(IntError::OutOfRange)),
            (I64, "-9223372036854775808.0", Ok(i128::from(i64::MIN))),
            (I64, "9223372036854775808", Err(IntError::OutOfRange)),
            (U64, "18446744073709551615.0", Ok(i128::from(u64::MAX))),
            (U64, "18446744073709551616", Err(IntError::OutOfRange)),
            (U64, "-1", Err(IntError::OutOfRange)),
        ];
        for (kind, text, want) in cases {
            assert_eq!(integer(*kind, &n(text)), *want, "{kind:?} {text}");
            let as_string = Json::String((*text).into());
            assert_eq!(integer(*kind, &as_string), *want, "{kind:?} {text:?}");
        }
        assert_eq!(integer(U32, &Json::Bool(true)), Err(IntError::NotAnInteger));
        assert_eq!(integer(U32, &Json::Null), Err(IntError::NotAnInteger));
    }

    #[test]
    fn floats_and_bytes() {
        assert_eq!(float(false, &n("2.5")), Some(serde_json::json!(2.5)));
        assert_eq!(
            float(false, &Json::String("1e2".into())),
            Some(serde_json::json!(100.0))
        );
        assert_eq!(
            float(true, &Json::String("NaN".into())),
            Some(Value::String("NaN".into()))
        );
        assert_eq!(float(false, &n("1e999")), None);
        assert_eq!(float(true, &n("1e39")), None);
        assert_eq!(float(false, &Json::String(" 1".into())), None);
        assert_eq!(base64_bytes("e30="), Some(b"{}".to_vec()));
        assert_eq!(base64_bytes("e30"), Some(b"{}".to_vec()));
        assert_eq!(base64_bytes("-_8="), Some(vec![0xfb, 0xff]));
        assert_eq!(base64_bytes("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(base64_bytes("+_8="), None);
        assert_eq!(base64_bytes("e30=="), None);
        assert_eq!(base64_bytes("not base64!"), None);
    }
}
