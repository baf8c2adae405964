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
use super::names::{SchemaId, VersionNumber};
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

/// A schema's `active` pointer and version numbers, read at one revision (keys only: values can
/// be large and are read one at a time where needed).
struct SchemaState {
    active: Option<u32>,
    active_mod: i64,
    /// Every stored version number, ascending.
    versions: Vec<u32>,
}

fn parse_active(id: &SchemaId, value: &[u8]) -> Result<u32> {
    std::str::from_utf8(value)
        .ok()
        .and_then(VersionNumber::parse_canonical)
        .and_then(|v| u32::try_from(v.get()).ok())
        .ok_or_else(|| {
            Error::internal(format!(
                "active pointer of schema \"{id}\" is not a version number"
            ))
        })
}

impl SchemaState {
    fn reads(keys: &SchemaKeys) -> [RangeRequest; 2] {
        [
            RangeRequest::key(keys.active()),
            RangeRequest::prefix(keys.versions_prefix()).keys_only(),
        ]
    }

    fn parse(
        id: &SchemaId,
        keys: &SchemaKeys,
        active: &RangeResponse,
        versions: &RangeResponse,
    ) -> Result<Self> {
        let (active, active_mod) = match active.kvs.first() {
            Some(kv) => (Some(parse_active(id, &kv.value)?), kv.mod_revision),
            None => (None, 0),
        };
        let mut versions: Vec<u32> = versions
            .kvs
            .iter()
            .filter_map(|kv| keys.version_of(&kv.key))
            .collect();
        versions.sort_unstable();
        Ok(SchemaState {
            active,
            active_mod,
            versions,
        })
    }

    fn next_version(&self) -> u32 {
        self.versions
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.active.unwrap_or(0))
            + 1
    }
}

/// Versions read per transaction by ListSchemaVersions: a version is up to ~700 KiB of JSON, and
/// a response must stay under the etcd client's 4 MiB message limit.
const VERSIONS_PER_READ: usize = 4;

impl<K: Kv> SchemaRegistry<K> {
    pub fn new(kv: K) -> Self {
        SchemaRegistry { kv }
    }

    async fn read(&self, id: &SchemaId, keys: &SchemaKeys) -> Result<SchemaState> {
        let resp = self.kv.txn(Txn::read(SchemaState::reads(keys))).await?;
        SchemaState::parse(id, keys, resp.range(0)?, resp.range(1)?)
    }

    /// The definition stored as version `v`, if any.
    async fn read_version(
        &self,
        id: &SchemaId,
        keys: &SchemaKeys,
        v: u32,
    ) -> Result<Option<SchemaDefinition>> {
        let resp = self.kv.range(RangeRequest::key(keys.version(v))).await?;
        resp.kvs
            .first()
            .map(|kv| from_record(id, &kv.value))
            .transpose()
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
        let mut state = self.read(&id, &keys).await?;
        for _ in 0..ATTEMPTS {
            if let Some(active) = state.active
                && let Some(newest) = self.read_version(&id, &keys, active).await?
                && newest.format == def.format
                && newest.raw_schema == def.raw_schema
            {
                return Ok(newest);
            }
            let next = state.next_version();
            def.version = next;
            let record = serde_json::to_vec(&to_record(&def)).unwrap_or_default();
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
                    failure: SchemaState::reads(&keys).map(TxnOp::Range).to_vec(),
                })
                .await?;
            if resp.succeeded {
                return Ok(def);
            }
            state = SchemaState::parse(&id, &keys, resp.range(0)?, resp.range(1)?)?;
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
        let Some(active) = resp.range(0)?.kvs.first() else {
            return Err(not_found(&id, None));
        };
        let (version, stored) = if version == 0 {
            let newest = parse_active(&id, &active.value)?;
            (newest, self.read_version(&id, &keys, newest).await?)
        } else {
            let stored = resp.range(1)?.kvs.first();
            (
                version,
                stored.map(|kv| from_record(&id, &kv.value)).transpose()?,
            )
        };
        stored.ok_or_else(|| not_found(&id, Some(version)))
    }

    /// ListSchemaVersions: every version of a live schema, ascending.
    pub async fn list_versions(&self, schema_id: &str) -> Result<ListSchemaVersionsResponse> {
        let id = parse_id(schema_id)?;
        let keys = SchemaKeys::new(&id);
        let state = self.read(&id, &keys).await?;
        if state.active.is_none() {
            return Err(not_found(&id, None));
        }
        let mut schemas = Vec::with_capacity(state.versions.len());
        for chunk in state.versions.chunks(VERSIONS_PER_READ) {
            let resp = self
                .kv
                .txn(Txn::read(
                    chunk.iter().map(|v| RangeRequest::key(keys.version(*v))),
                ))
                .await?;
            for i in 0..chunk.len() {
                if let Some(kv) = resp.range(i)?.kvs.first() {
                    schemas.push(from_record(&id, &kv.value)?);
                }
            }
        }
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
