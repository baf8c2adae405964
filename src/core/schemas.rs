//! The schema registry (contract A.0 `SchemaRegistryService`, keys of A.4).
//!
//! Schema versions follow the same rules as flow versions: the server assigns them (1, 2, ...),
//! a stored version is never changed, and creating a schema equal to the newest version returns
//! that version instead of writing a new one. Deleting a schema removes its `active` pointer; the
//! versions stay (flows may reference them) and a later create continues the numbering.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{Detail, Error, FieldViolation, Result};
use super::keys::SchemaKeys;
use super::kv::{Compare, Kv, RangeRequest, RangeResponse, Txn, TxnOp};
use super::meta::SchemaRecord;
use super::names::SchemaId;
use crate::proto::v1::{InMemorySchemaFormat, ListSchemaVersionsResponse, SchemaDefinition};

/// The largest `raw_schema` accepted.
pub const MAX_SCHEMA_BYTES: usize = 512 * 1024;
const ATTEMPTS: u32 = 16;

#[derive(Debug, Clone)]
pub struct SchemaRegistry<K> {
    kv: K,
}

fn parse_id(id: &str) -> Result<SchemaId> {
    SchemaId::parse(id).map_err(|e| Error::invalid_field("INVALID_SCHEMA_ID", "schema_id", e))
}

fn not_found(id: &SchemaId, version: Option<u32>) -> Error {
    let message = match version {
        Some(v) => format!("schema \"{id}\" has no version {v}"),
        None => format!("schema \"{id}\" not found"),
    };
    let mut d = Detail::new("SCHEMA_NOT_FOUND", message).with("schema_id", id);
    if let Some(v) = version {
        d = d.with("version", v);
    }
    Error::NotFound(d)
}

fn to_record(def: &SchemaDefinition) -> SchemaRecord {
    SchemaRecord {
        schema_id: def.schema_id.clone(),
        version: def.version,
        format: def.format,
        raw_schema: STANDARD.encode(&def.raw_schema),
    }
}

fn from_record(id: &SchemaId, bytes: &[u8]) -> Result<SchemaDefinition> {
    let corrupt = |e: String| Error::internal(format!("stored schema \"{id}\" is not valid: {e}"));
    let r: SchemaRecord = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let raw = STANDARD
        .decode(&r.raw_schema)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(SchemaDefinition {
        schema_id: r.schema_id,
        version: r.version,
        format: r.format,
        raw_schema: raw,
    })
}

/// Everything stored about one schema, read at one revision.
struct SchemaState {
    active: Option<u32>,
    active_mod: i64,
    /// (version, definition) in ascending version order.
    versions: Vec<(u32, Vec<u8>)>,
}

impl SchemaState {
    fn parse(keys: &SchemaKeys, resp: &RangeResponse) -> Result<Self> {
        let mut state = SchemaState {
            active: None,
            active_mod: 0,
            versions: Vec::new(),
        };
        for kv in &resp.kvs {
            if kv.key == keys.active() {
                let v = std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| {
                        Error::internal("stored schema active pointer is not a number")
                    })?;
                state.active = Some(v);
                state.active_mod = kv.mod_revision;
            } else if let Some(v) = keys.version_of(&kv.key) {
                state.versions.push((v, kv.value.clone()));
            }
        }
        state.versions.sort_by_key(|(v, _)| *v);
        Ok(state)
    }

    fn latest_stored(&self) -> u32 {
        self.versions.last().map_or(0, |(v, _)| *v)
    }
}

impl<K: Kv> SchemaRegistry<K> {
    pub fn new(kv: K) -> Self {
        SchemaRegistry { kv }
    }

    async fn read(&self, keys: &SchemaKeys) -> Result<SchemaState> {
        let (start, end) = keys.all();
        let resp = self.kv.range(RangeRequest::range(start, end)).await?;
        SchemaState::parse(keys, &resp)
    }

    /// CreateSchema: stores `schema` as the next version (server-assigned), or returns the newest
    /// version unchanged when it is equal.
    pub async fn create(&self, schema: Option<SchemaDefinition>) -> Result<SchemaDefinition> {
        let mut def = schema.unwrap_or_default();
        let mut v = Vec::new();
        let id = SchemaId::parse(&def.schema_id)
            .map_err(|e| v.push(FieldViolation::new("schema_id", e)))
            .ok();
        if def.version != 0 {
            v.push(FieldViolation::new(
                "version",
                format!(
                    "must be 0 or absent: the server assigns version numbers (got {})",
                    def.version
                ),
            ));
        }
        match InMemorySchemaFormat::try_from(def.format) {
            Ok(InMemorySchemaFormat::Unspecified) | Err(_) => v.push(FieldViolation::new(
                "format",
                "must be one of ARROW, PROTOBUF, FLATBUFFERS, JSON",
            )),
            Ok(_) => {}
        }
        if def.raw_schema.is_empty() {
            v.push(FieldViolation::new("raw_schema", "is required"));
        } else if def.raw_schema.len() > MAX_SCHEMA_BYTES {
            return Err(Error::TooLarge(Detail::new(
                "SCHEMA_TOO_LARGE",
                format!(
                    "raw_schema is {} bytes; at most {MAX_SCHEMA_BYTES} are allowed",
                    def.raw_schema.len()
                ),
            )));
        }
        let id = match id {
            Some(id) if v.is_empty() => id,
            _ => return Err(Error::invalid("INVALID_SCHEMA", v)),
        };
        let keys = SchemaKeys::new(&id);
        let mut state = self.read(&keys).await?;
        for _ in 0..ATTEMPTS {
            if let Some(active) = state.active
                && let Some((_, bytes)) = state.versions.iter().find(|(n, _)| *n == active)
            {
                let newest = from_record(&id, bytes)?;
                if newest.format == def.format && newest.raw_schema == def.raw_schema {
                    return Ok(newest);
                }
            }
            let next = state.latest_stored().max(state.active.unwrap_or(0)) + 1;
            def.version = next;
            let record = serde_json::to_vec(&to_record(&def)).unwrap_or_default();
            let (start, end) = keys.all();
            let resp = self
                .kv
                .txn(Txn {
                    compare: vec![
                        Compare::mod_revision(keys.active(), state.active_mod),
                        Compare::absent(keys.version(next)),
                    ],
                    success: vec![
                        TxnOp::put(keys.version(next), record),
                        TxnOp::put(keys.active(), next.to_string()),
                    ],
                    failure: vec![TxnOp::Range(RangeRequest::range(start, end))],
                })
                .await?;
            if resp.succeeded {
                return Ok(def);
            }
            state = SchemaState::parse(&keys, resp.range(0)?)?;
        }
        Err(Error::Aborted(Detail::new(
            "CONCURRENT_MODIFICATION",
            format!("schema \"{id}\" kept changing; retry the request"),
        )))
    }

    /// GetSchema: version `version`, or the newest when `version` is 0.
    pub async fn get(&self, schema_id: &str, version: u32) -> Result<SchemaDefinition> {
        let id = parse_id(schema_id)?;
        let keys = SchemaKeys::new(&id);
        let resp = self
            .kv
            .txn(Txn::read([
                RangeRequest::key(keys.active()),
                RangeRequest::key(keys.version(version)),
            ]))
            .await?;
        let active = resp.range(0)?.kvs.first().map(|kv| kv.value.clone());
        let Some(active) = active else {
            return Err(not_found(&id, None));
        };
        if version == 0 {
            let v = std::str::from_utf8(&active)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| Error::internal("stored schema active pointer is not a number"))?;
            return Box::pin(self.get(schema_id, v)).await;
        }
        match resp.range(1)?.kvs.first() {
            Some(kv) => from_record(&id, &kv.value),
            None => Err(not_found(&id, Some(version))),
        }
    }

    /// ListSchemaVersions: every version of a live schema, ascending.
    pub async fn list_versions(&self, schema_id: &str) -> Result<ListSchemaVersionsResponse> {
        let id = parse_id(schema_id)?;
        let keys = SchemaKeys::new(&id);
        let state = self.read(&keys).await?;
        if state.active.is_none() {
            return Err(not_found(&id, None));
        }
        let schemas = state
            .versions
            .iter()
            .map(|(_, bytes)| from_record(&id, bytes))
            .collect::<Result<_>>()?;
        Ok(ListSchemaVersionsResponse { schemas })
    }

    /// DeleteSchema: removes the `active` pointer; versions stay.
    pub async fn delete(&self, schema_id: &str) -> Result<()> {
        let id = parse_id(schema_id)?;
        let keys = SchemaKeys::new(&id);
        let resp = self
            .kv
            .txn(Txn {
                compare: vec![Compare {
                    key: keys.active(),
                    op: super::kv::CompareOp::Greater,
                    target: super::kv::CompareTarget::CreateRevision(0),
                }],
                success: vec![TxnOp::delete(keys.active())],
                failure: vec![],
            })
            .await?;
        if resp.succeeded {
            Ok(())
        } else {
            Err(not_found(&id, None))
        }
    }
}
