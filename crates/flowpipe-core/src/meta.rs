//! The JSON values the API owns in etcd: a flow's `meta`, a version's `versions/<n>/meta`
//! (contract A.4, B.3) and a schema registry entry.
//!
//! Keys another component (or the original Go API) wrote and this code does not know are kept
//! as they are on every rewrite (`extra`): the API never drops data it does not own.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// RFC 3339 in UTC with as many fractional digits as needed ("2026-11-28T13:54:41.5Z").
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A chrono time as a `google.protobuf.Timestamp`.
pub fn timestamp(t: DateTime<Utc>) -> crate::proto::wkt::Timestamp {
    t.into()
}

/// `null` reads as the type's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}: {e}"))),
        }
    }
}

/// `/flowpipe/flows/<name>/meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FlowMeta {
    /// Unique id of this incarnation; a new one after delete and re-create.
    #[serde(default)]
    pub uid: String,
    /// When this incarnation was created (the `Flow.create_time`); `None` if the writer left it
    /// out.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The labels of the last spec written by a create or update. (Go writes an empty map as
    /// `null`.)
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Set by DeleteFlow (in the transaction that deletes `active`), cleared by a re-create.
    /// A flow is live only when it has an `active` key and this is `false`.
    #[serde(default)]
    pub deleted: bool,
    /// The last create, update or rollback (contract B.3): the `Flow.update_time`, which falls
    /// back to `created_at` when this is absent.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Highest version ever assigned. Absent in meta written by the original API; readers then
    /// derive it from the version keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<u64>,
    /// When DeleteFlow marked the flow deleted (contract B.3); `None` again after a re-create.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Keys this code does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl FlowMeta {
    /// Parses the stored `meta` of flow `flow` (named in the error). Invalid JSON is INTERNAL:
    /// the stored data is at fault, not the request.
    pub fn decode(flow: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::internal(format!("stored meta of flow \"{flow}\" is not valid: {e}"))
        })
    }

    /// The JSON to store at `meta`, `extra` included.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `/flowpipe/flows/<name>/versions/<n>/meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VersionMeta {
    /// When the version was written: its `create_time` in ListFlowVersions, and the
    /// `update_time` of GetFlowVersion's `Flow`.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Keys this code does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl VersionMeta {
    /// The meta of a version written at `created_at`.
    pub fn new(created_at: DateTime<Utc>) -> Self {
        VersionMeta {
            created_at: Some(created_at),
            extra: Default::default(),
        }
    }

    /// Parses a stored `versions/<n>/meta` of flow `flow` (named in the error). Invalid JSON is
    /// INTERNAL.
    pub fn decode(flow: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::internal(format!(
                "stored version meta of flow \"{flow}\" is not valid: {e}"
            ))
        })
    }

    /// The JSON to store at `versions/<n>/meta`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `/flowpipe/schemas/<schema_id>/versions/<v>`: contract A.4's JSON form of a
/// `SchemaDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    /// The schema's id, as in the key.
    pub schema_id: String,
    /// The version number, as in the key.
    pub version: u32,
    /// The `InMemorySchemaFormat`, as its enum number (not its name, unlike protojson).
    pub format: i32,
    /// Standard base64 with padding.
    pub raw_schema: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn meta_keeps_unknown_keys_and_reads_the_original_format() {
        let go = br#"{"uid":"u1","created_at":"2024-05-01T10:00:00Z","labels":{"team":"a"},"deleted":false,"owner":"ops"}"#;
        let m = FlowMeta::decode("f", go).unwrap();
        assert_eq!(m.uid, "u1");
        assert_eq!(m.latest_version, None);
        assert_eq!(m.extra["owner"], "ops");
        let again: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        assert_eq!(again["owner"], "ops");
        assert_eq!(again["created_at"], "2024-05-01T10:00:00Z");
        assert!(again.get("latest_version").is_none());
    }

    #[test]
    fn null_labels_from_go_read_as_empty() {
        let m = FlowMeta::decode("f", br#"{"uid":"u","labels":null,"deleted":false}"#).unwrap();
        assert!(m.labels.is_empty());
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = Utc.timestamp_opt(1_700_000_000, 500_000_000).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.500Z");
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 500_000_000));
    }

    #[test]
    fn corrupt_meta_is_internal_not_a_panic() {
        let e = FlowMeta::decode("f", b"{not json").unwrap_err();
        assert_eq!(e.code(), crate::Code::Internal);
    }
}
