//! `google.protobuf.Struct`, `Value`, `ListValue` and `Timestamp`, wire-compatible with the
//! well-known types.
//!
//! `Struct` and friends exist for a deterministic binary encoding, `Timestamp` for the canonical
//! protojson form (`Z`-normalized, 0/3/6/9 fractional digits) that pbjson-types does not write.
//!
//! Wire-compatible with the well-known types (same field numbers and types), JSON-compatible with
//! the proto3 JSON mapping (a `Struct` is a plain JSON object, a `Value` any JSON value). Fields
//! live in a `BTreeMap`, so encoding the same content always gives the same bytes: the core
//! compares a candidate spec with the stored one by value inside an etcd transaction.
//!
//! Deserializing rejects a JSON object that repeats a key, instead of silently keeping the last one:
//! a spec that says two different things must not be stored as either.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `google.protobuf.Struct`: a JSON object.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Struct {
    /// The object's members, in key order: this is what makes the encoding deterministic.
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, Value>,
}

/// `google.protobuf.Value`: any JSON value.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Value {
    /// Which JSON value this is. `None` (nothing set on the wire) is written as `null`, like
    /// [`value::Kind::NullValue`].
    #[prost(oneof = "value::Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<value::Kind>,
}

/// `google.protobuf.ListValue`: a JSON array.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListValue {
    /// The array's elements, in order.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
}

/// `google.protobuf.NullValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum NullValue {
    /// JSON `null`, the enum's only value.
    NullValue = 0,
}

/// The types nested in [`Value`], laid out as prost lays out a message's oneof.
pub mod value {
    /// The oneof of `google.protobuf.Value`.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        /// JSON `null`. The number is a [`NullValue`](super::NullValue), always 0.
        #[prost(enumeration = "super::NullValue", tag = "1")]
        NullValue(i32),
        /// A JSON number, held as a double (integers beyond 2^53 lose precision, as in every
        /// protojson implementation). NaN and infinity cannot be written as JSON.
        #[prost(double, tag = "2")]
        NumberValue(f64),
        /// A JSON string.
        #[prost(string, tag = "3")]
        StringValue(String),
        /// A JSON `true` or `false`.
        #[prost(bool, tag = "4")]
        BoolValue(bool),
        /// A JSON object.
        #[prost(message, tag = "5")]
        StructValue(super::Struct),
        /// A JSON array.
        #[prost(message, tag = "6")]
        ListValue(super::ListValue),
    }
}

use value::Kind;

impl Value {
    /// Visits every number in this value (recursively): validation rejects non-finite ones,
    /// which JSON cannot represent.
    pub fn numbers(&self, f: &mut impl FnMut(f64)) {
        match &self.kind {
            Some(Kind::NumberValue(n)) => f(*n),
            Some(Kind::StructValue(s)) => s.numbers(f),
            Some(Kind::ListValue(l)) => l.values.iter().for_each(|v| v.numbers(f)),
            _ => {}
        }
    }
}

impl Struct {
    /// Visits every number in this struct (recursively).
    pub fn numbers(&self, f: &mut impl FnMut(f64)) {
        self.fields.values().for_each(|v| v.numbers(f));
    }
}

impl From<Kind> for Value {
    fn from(kind: Kind) -> Self {
        Value { kind: Some(kind) }
    }
}

impl Serialize for Struct {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut map = ser.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for ListValue {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.values.len()))?;
        for v in &self.values {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match &self.kind {
            None | Some(Kind::NullValue(_)) => ser.serialize_unit(),
            Some(Kind::NumberValue(n)) if !n.is_finite() => Err(serde::ser::Error::custom(
                "google.protobuf.Value cannot hold NaN or infinity in JSON",
            )),
            // Integral numbers are written without a fraction, as protojson does ("1", not "1.0").
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                ser.serialize_i64(*n as i64)
            }
            Some(Kind::NumberValue(n)) => ser.serialize_f64(*n),
            Some(Kind::StringValue(s)) => ser.serialize_str(s),
            Some(Kind::BoolValue(b)) => ser.serialize_bool(*b),
            Some(Kind::StructValue(s)) => s.serialize(ser),
            Some(Kind::ListValue(l)) => l.serialize(ser),
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Kind::NullValue(0).into())
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Kind::BoolValue(v).into())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Kind::NumberValue(v as f64).into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Kind::NumberValue(v as f64).into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Kind::NumberValue(v).into())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Kind::StringValue(v.to_owned()).into())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Kind::StringValue(v).into())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        ListVisitor
            .visit_seq(seq)
            .map(|l| Kind::ListValue(l).into())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        StructVisitor
            .visit_map(map)
            .map(|s| Kind::StructValue(s).into())
    }
}

struct StructVisitor;

impl<'de> Visitor<'de> for StructVisitor {
    type Value = Struct;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Struct, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = map.next_value::<Value>()?;
            fields.insert(key, value);
        }
        Ok(Struct { fields })
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = ListValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element::<Value>()? {
            values.push(v);
        }
        Ok(ListValue { values })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Struct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StructVisitor)
    }
}

impl<'de> Deserialize<'de> for ListValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ListVisitor)
    }
}

/// `google.protobuf.Timestamp`: seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past `seconds`, in `0..=999_999_999`; a value outside that range (or a time
    /// chrono cannot represent) fails to serialize as JSON.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        let nanos = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        chrono::DateTime::from_timestamp(self.seconds, nanos)
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Self {
        Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let t = self.to_chrono().ok_or_else(|| {
            serde::ser::Error::custom(format!("timestamp out of range: {self:?}"))
        })?;
        // protojson: RFC 3339, "Z", and 0, 3, 6 or 9 fractional digits.
        let nanos = t.timestamp_subsec_nanos();
        let fmt = if nanos == 0 {
            "%Y-%m-%dT%H:%M:%SZ"
        } else if nanos % 1_000_000 == 0 {
            "%Y-%m-%dT%H:%M:%S%.3fZ"
        } else if nanos % 1_000 == 0 {
            "%Y-%m-%dT%H:%M:%S%.6fZ"
        } else {
            "%Y-%m-%dT%H:%M:%S%.9fZ"
        };
        ser.serialize_str(&t.format(fmt).to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| Timestamp::from(t.with_timezone(&chrono::Utc)))
            .map_err(|e| de::Error::custom(format!("invalid RFC 3339 timestamp {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn timestamps_are_canonical_protojson() {
        let t = |seconds, nanos| serde_json::to_string(&Timestamp { seconds, nanos }).unwrap();
        assert_eq!(t(1_700_000_000, 0), r#""2023-11-14T22:13:20Z""#);
        assert_eq!(
            t(1_700_000_000, 500_000_000),
            r#""2023-11-14T22:13:20.500Z""#
        );
        assert_eq!(t(1_700_000_000, 1_000), r#""2023-11-14T22:13:20.000001Z""#);
        assert_eq!(t(1_700_000_000, 5), r#""2023-11-14T22:13:20.000000005Z""#);
        let back: Timestamp = serde_json::from_str(r#""2023-11-14T23:13:20.5+01:00""#).unwrap();
        assert_eq!(
            back,
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            }
        );
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
        assert!(
            serde_json::to_string(&Timestamp {
                seconds: 0,
                nanos: -1
            })
            .is_err()
        );
    }

    #[test]
    fn json_round_trip_keeps_every_kind() {
        let json = r#"{"a":null,"b":1.5,"c":"x","d":true,"e":{"f":[1,"two",{"g":false}]}}"#;
        let s: Struct = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
    }

    #[test]
    fn binary_encoding_is_deterministic_and_round_trips() {
        let a: Struct = serde_json::from_str(r#"{"z":1,"a":2,"m":{"y":1,"b":2}}"#).unwrap();
        let b: Struct = serde_json::from_str(r#"{"m":{"b":2,"y":1},"a":2,"z":1}"#).unwrap();
        assert_eq!(a.encode_to_vec(), b.encode_to_vec());
        assert_eq!(Struct::decode(a.encode_to_vec().as_slice()).unwrap(), a);
    }

    #[test]
    fn wire_compatible_with_prost_types() {
        // Same bytes as the canonical well-known type for a one-field struct.
        let s: Struct = serde_json::from_str(r#"{"k":"v"}"#).unwrap();
        let v = s.encode_to_vec();
        // field 1 (map entry), entry: key field 1 "k", value field 2 Value{string_value (3) "v"}
        assert_eq!(
            v,
            vec![0x0a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x1a, 0x01, b'v']
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let err = serde_json::from_str::<Struct>(r#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `b`"), "{err}");
    }

    #[test]
    fn non_finite_numbers_cannot_be_rendered() {
        let v: Value = Kind::NumberValue(f64::NAN).into();
        assert!(serde_json::to_string(&v).is_err());
    }
}
