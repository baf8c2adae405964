//! The schema registry (contract A.0 `SchemaRegistryService`, keys of A.4).
//!
//! Schema versions follow the same rules as flow versions: the server assigns them (1, 2, ...),
//! a stored version is never changed, and creating a schema equal to the newest version returns
//! that version instead of writing a new one. Deleting a schema removes its `active` pointer; the
//! versions stay (flows may reference them) and a later create continues the numbering. A
//! deleted schema is not found by GetSchema and ListSchemaVersions; deleting it again succeeds;
//! an id that never existed is NOT_FOUND (contract B.4, "Schemas").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::cas::{Attempt, Conflict, Write, guaranteed_write};
use crate::environment::{Environment, RetryPolicy};
use crate::error::{Detail, Error, FieldViolation, Result};
use crate::keys::SchemaKeys;
use crate::kv::{
    Compare, CompareOp, CompareTarget, Kv, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse,
};
use crate::meta::SchemaRecord;
use crate::names::{SchemaId, VersionNumber};
use crate::proto::v1::{InMemorySchemaFormat, ListSchemaVersionsResponse, SchemaDefinition};

/// The largest `raw_schema` accepted.
pub const MAX_SCHEMA_BYTES: usize = 512 * 1024;

/// Schema versioning over a transactional KV store.
#[derive(Debug, Clone)]
pub struct SchemaRegistry<K, E> {
    kv: K,
    env: E,
    retry: RetryPolicy,
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

impl<K: Kv, E: Environment> SchemaRegistry<K, E> {
    /// Schema operations over `kv`; `env` paces retries of writes that lose races.
    pub fn new(kv: K, env: E) -> Self {
        SchemaRegistry {
            kv,
            env,
            retry: RetryPolicy::default(),
        }
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
        let def = schema.unwrap_or_default();
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
        let state = self.read(&id, &keys).await?;
        let write = CreateSchema {
            registry: self,
            id: &id,
            keys: &keys,
            def: &def,
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, state).await
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

    /// DeleteSchema: removes the `active` pointer; versions stay. A deleted schema's delete
    /// succeeds and writes nothing; an id that never existed is NOT_FOUND.
    pub async fn delete(&self, schema_id: &str) -> Result<()> {
        let id = parse_id(schema_id)?;
        let keys = SchemaKeys::new(&id);
        let write = DeleteSchema {
            id: &id,
            keys: &keys,
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, ()).await
    }
}

fn contention(id: &SchemaId, attempts: u32) -> Error {
    Error::Aborted(
        Detail::new(
            "CONCURRENT_MODIFICATION",
            format!(
                "schema \"{id}\" kept changing under {attempts} attempts to write it; retry the request"
            ),
        )
        .with("schema_id", id),
    )
}

/// CreateSchema: the next version, guarded by `active` and the version slot.
struct CreateSchema<'a, K, E> {
    registry: &'a SchemaRegistry<K, E>,
    id: &'a SchemaId,
    keys: &'a SchemaKeys,
    /// The validated request (version 0).
    def: &'a SchemaDefinition,
}

impl<K: Kv, E: Environment> Write for CreateSchema<'_, K, E> {
    const NAME: &'static str = "create_schema";
    type State = SchemaState;
    type Output = SchemaDefinition;

    async fn decide(&self, state: &mut SchemaState) -> Result<Attempt<SchemaDefinition>> {
        if let Some(active) = state.active
            && let Some(newest) = self
                .registry
                .read_version(self.id, self.keys, active)
                .await?
            && newest.format == self.def.format
            && newest.raw_schema == self.def.raw_schema
        {
            return Ok(Attempt::Done(newest));
        }
        let next = state.next_version();
        let def = SchemaDefinition {
            version: next,
            ..self.def.clone()
        };
        let record = serde_json::to_vec(&to_record(&def)).unwrap_or_default();
        Ok(Attempt::Commit(
            Txn {
                compare: vec![
                    Compare::mod_revision(self.keys.active(), state.active_mod),
                    Compare::absent(self.keys.version(next)),
                ],
                success: vec![
                    TxnOp::put(self.keys.version(next), record),
                    TxnOp::put(self.keys.active(), next.to_string()),
                ],
                failure: SchemaState::reads(self.keys).map(TxnOp::Range).to_vec(),
            },
            def,
        ))
    }

    async fn conflict(
        &self,
        _: SchemaState,
        resp: TxnResponse,
    ) -> Result<Conflict<SchemaState, SchemaDefinition>> {
        let fresh = SchemaState::parse(self.id, self.keys, resp.range(0)?, resp.range(1)?)?;
        Ok(Conflict::Raced(fresh))
    }

    async fn refresh(&self, _: SchemaState) -> Result<SchemaState> {
        self.registry.read(self.id, self.keys).await
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.id, attempts)
    }
}

/// DeleteSchema: removes `active` if there is one, in one round trip with no prior read. When
/// there is none, the `else` branch tells a deleted schema (versions remain: success, nothing
/// written, so a repeated delete is safe) from one that never existed (NOT_FOUND).
struct DeleteSchema<'a> {
    id: &'a SchemaId,
    keys: &'a SchemaKeys,
}

impl Write for DeleteSchema<'_> {
    const NAME: &'static str = "delete_schema";
    type State = ();
    type Output = ();

    async fn decide(&self, (): &mut ()) -> Result<Attempt<()>> {
        Ok(Attempt::Commit(
            Txn {
                compare: vec![Compare {
                    key: self.keys.active(),
                    op: CompareOp::Greater,
                    target: CompareTarget::CreateRevision(0),
                }],
                success: vec![TxnOp::delete(self.keys.active())],
                failure: vec![TxnOp::Range(
                    RangeRequest::prefix(self.keys.versions_prefix())
                        .keys_only()
                        .limit(1),
                )],
            },
            (),
        ))
    }

    async fn conflict(&self, (): (), resp: TxnResponse) -> Result<Conflict<(), ()>> {
        if resp.range(0)?.kvs.is_empty() {
            Err(not_found(self.id, None))
        } else {
            Ok(Conflict::Done(()))
        }
    }

    async fn refresh(&self, (): ()) -> Result<()> {
        Ok(())
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.id, attempts)
    }
}
