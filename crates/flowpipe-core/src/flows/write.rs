//! The write operations: CreateFlow, UpdateFlow, RollbackFlow and DeleteFlow (contract B.4).
//!
//! Each is a [`Write`] run by the one CAS loop ([`guaranteed_write`]): it decides a transaction
//! from the flow's head, guarded by the head's `meta` and `active` mod revisions, and reads the
//! head back in the `else` branch. Writes to one flow are queued behind an in-process lock first
//! (see `locks`), so only other replicas race.

use chrono::{DateTime, Utc};

use super::{
    FlowHead, FlowRegistry, contention, decode_spec, encode_spec, new_incarnation, parse_flow_name,
    slot_taken, version_not_found, write_version,
};
use crate::cas::{Attempt, Conflict, Write, guaranteed_write};
use crate::environment::Environment;
use crate::error::{Advice, Detail, Error, Result};
use crate::keys::FlowKeys;
use crate::kv::{Compare, Kv, RangeRequest, Txn, TxnOp, TxnResponse};
use crate::names::{FlowName, VersionNumber};
use crate::proto::v1::{CreateFlowRequest, Flow, FlowSpec, FlowStatus, UpdateFlowRequest};
use crate::validation::ValidSpec;

/// What [`FlowRegistry::create_outcome`] decided.
enum CreateOutcome {
    /// The live flow already has this spec: return it, write nothing.
    Existing(Box<Flow>),
    /// Write the spec as this version.
    WriteAt(VersionNumber),
}

impl<K: Kv, E: Environment> FlowRegistry<K, E> {
    /// CreateFlow (contract B.4).
    pub async fn create(&self, req: CreateFlowRequest) -> Result<Flow> {
        let spec = ValidSpec::for_create(req.spec.unwrap_or_default())?;
        let name = spec.name().clone();
        let keys = FlowKeys::new(&name);
        let now = self.env.now();

        if req.validate_only {
            let head = self.read_head(&name, &keys).await?;
            return match self.create_outcome(&head, &spec, false).await? {
                CreateOutcome::Existing(flow) => Ok(*flow),
                CreateOutcome::WriteAt(n) => {
                    // What would be stored; the uid is only assigned by a real create.
                    let meta = new_incarnation(head.meta.as_ref(), String::new(), &spec, n, now);
                    let head = FlowHead::empty(&name, &keys, head.revision);
                    head.flow(&meta, n, spec.at_version(n))
                }
            };
        }

        let _writing = self.locks.lock(&name).await;
        let write = CreateFlow {
            registry: self,
            spec: &spec,
            keys: &keys,
            now,
        };
        // Fast path, one round trip: write version 1 as if the name was never used. The
        // compares make that safe; when they fail, the `else` branch has read the real head.
        let state = CreateState {
            head: FlowHead::empty(&name, &keys, 0),
            unread: true,
            scan: false,
            attempted: VersionNumber::FIRST,
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, state).await
    }

    /// What creating `spec` means given the flow's `head`: a live flow with an equal spec is
    /// returned as it is; a live flow with another spec is ALREADY_EXISTS; otherwise the next
    /// version number to write (1 for a new name, `latest_version + 1` after a delete).
    async fn create_outcome(
        &self,
        head: &FlowHead,
        spec: &ValidSpec,
        scan: bool,
    ) -> Result<CreateOutcome> {
        let name = &head.name;
        if head.is_live() {
            let active = head.live()?;
            let current = self.read_spec(head, active).await?;
            if spec.is_stored_as(&current, active) {
                return Ok(CreateOutcome::Existing(Box::new(head.flow(
                    &head.meta(),
                    active,
                    current,
                )?)));
            }
            return Err(Error::AlreadyExists(
                Detail::new(
                    "FLOW_ALREADY_EXISTS",
                    format!(
                        "flow \"{name}\" already exists with a different spec (active version {active})"
                    ),
                )
                .with("flow", name)
                .with("active_version", active)
                .advise(Advice::UpdateFlow {
                    flow: name.to_string(),
                }),
            ));
        }
        let n = self
            .latest_version(head, scan)
            .await?
            .map_or(VersionNumber::FIRST, VersionNumber::next);
        Ok(CreateOutcome::WriteAt(n))
    }

    /// UpdateFlow (contract B.4). A non-zero `spec.version` is the precondition: the version the
    /// client expects to be active.
    pub async fn update(&self, req: UpdateFlowRequest) -> Result<Flow> {
        let name = parse_flow_name(&req.name)?;
        let spec = req.spec.unwrap_or_default();
        let expected = VersionNumber::new(spec.version);
        let spec = ValidSpec::for_update(&name, spec)?;
        let keys = FlowKeys::new(&name);
        let _writing = if req.validate_only {
            None
        } else {
            Some(self.locks.lock(&name).await)
        };
        let head = self.read_head(&name, &keys).await?;
        let write = UpdateFlow {
            registry: self,
            spec: &spec,
            keys: &keys,
            expected,
            validate_only: req.validate_only,
            now: self.env.now(),
        };
        let state = UpdateState {
            head,
            scan: false,
            attempted: None,
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, state).await
    }

    /// RollbackFlow (contract B.4): moves only `active` (and meta's `updated_at`).
    pub async fn rollback(&self, name: &str, version: u64) -> Result<Flow> {
        let name = parse_flow_name(name)?;
        let target = VersionNumber::new(version).ok_or_else(|| {
            Error::invalid_field("INVALID_VERSION", "version", "must be at least 1")
        })?;
        let keys = FlowKeys::new(&name);
        let _writing = self.locks.lock(&name).await;
        let resp = self
            .kv
            .txn(Txn::read([
                FlowHead::range(&keys),
                RangeRequest::key(keys.version_spec(target)),
            ]))
            .await?;
        let head = FlowHead::parse(&name, &keys, resp.range(0)?)?;
        head.live()?;
        let spec = match resp.range(1)?.kvs.first() {
            Some(kv) => decode_spec(&name, target, &kv.value)?,
            None => return Err(version_not_found(&name, target)),
        };
        let write = RollbackFlow {
            registry: self,
            name: &name,
            keys: &keys,
            target,
            spec,
            now: self.env.now(),
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, head).await
    }

    /// DeleteFlow (contract B.4): deletes `active` and the flow's index key, marks meta deleted;
    /// versions stay.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let name = parse_flow_name(name)?;
        let keys = FlowKeys::new(&name);
        let _writing = self.locks.lock(&name).await;
        let head = self.read_head(&name, &keys).await?;
        let write = DeleteFlow {
            registry: self,
            name: &name,
            keys: &keys,
            now: self.env.now(),
        };
        guaranteed_write(&self.kv, &self.env, &self.retry, &write, head).await
    }
}

/// The `else` branch every flow write reads: the head, for the next attempt.
fn read_head_back(keys: &FlowKeys) -> Vec<TxnOp> {
    vec![TxnOp::Range(FlowHead::range(keys))]
}

/// The head a failed flow write read back.
fn head_read_back(head: &FlowHead, resp: &TxnResponse) -> Result<FlowHead> {
    FlowHead::parse(&head.name, &head.keys, resp.range(0)?)
}

// ---- CreateFlow ------------------------------------------------------------------------------

struct CreateFlow<'a, K, E> {
    registry: &'a FlowRegistry<K, E>,
    spec: &'a ValidSpec,
    keys: &'a FlowKeys,
    now: DateTime<Utc>,
}

struct CreateState {
    head: FlowHead,
    /// Nothing read yet: try the new-name write (version 1).
    unread: bool,
    /// The recorded latest version proved stale: scan the version keys.
    scan: bool,
    /// The version the last attempt tried to write.
    attempted: VersionNumber,
}

impl<K: Kv, E: Environment> Write for CreateFlow<'_, K, E> {
    const NAME: &'static str = "create_flow";
    type State = CreateState;
    type Output = Flow;

    async fn decide(&self, s: &mut CreateState) -> Result<Attempt<Flow>> {
        let n = if s.unread {
            VersionNumber::FIRST
        } else {
            match self
                .registry
                .create_outcome(&s.head, self.spec, s.scan)
                .await?
            {
                CreateOutcome::Existing(flow) => return Ok(Attempt::Done(*flow)),
                CreateOutcome::WriteAt(n) => n,
            }
        };
        s.attempted = n;
        // A new name, or a new incarnation of a deleted one (or of versions without meta) at
        // `n`, with a new uid; the old versions stay as they are.
        let stored = self.spec.at_version(n);
        let bytes = encode_spec(&stored)?;
        let uid = self.registry.env.new_uid();
        let meta = new_incarnation(s.head.meta.as_ref(), uid, self.spec, n, self.now);
        let mut compare = s.head.guard();
        compare.push(Compare::absent(self.keys.version_spec(n)));
        // A new incarnation: whatever `status` holds (the controller's word on a previous one,
        // left untouched) is stale from now on.
        let flow = Flow {
            status: Some(FlowStatus::default()),
            ..s.head.flow_without_status(&meta, n, stored)
        };
        // The name index (contract B.6) gains the flow in the same transaction as `active`.
        let mut success = write_version(self.keys, n, bytes, &meta, self.now);
        success.push(TxnOp::put(self.keys.index(), meta.uid.clone()));
        Ok(Attempt::Commit(
            Txn {
                compare,
                success,
                failure: read_head_back(self.keys),
            },
            flow,
        ))
    }

    async fn conflict(
        &self,
        s: CreateState,
        resp: TxnResponse,
    ) -> Result<Conflict<CreateState, Flow>> {
        let fresh = head_read_back(&s.head, &resp)?;
        let next = |head, scan| CreateState {
            head,
            unread: false,
            scan,
            attempted: s.attempted,
        };
        if s.unread {
            // The name is in use (or has versions): decide from what is there.
            return Ok(Conflict::Retry(next(fresh, false)));
        }
        if fresh.unchanged_since(&s.head) {
            // Only the version slot was taken: the recorded latest version is stale.
            if s.scan {
                return Err(slot_taken(&s.head.name, s.attempted));
            }
            return Ok(Conflict::Retry(next(fresh, true)));
        }
        Ok(Conflict::Raced(next(fresh, s.scan)))
    }

    async fn refresh(&self, s: CreateState) -> Result<CreateState> {
        let head = self.registry.read_head(&s.head.name, self.keys).await?;
        Ok(CreateState { head, ..s })
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.spec.name(), attempts)
    }
}

// ---- UpdateFlow ------------------------------------------------------------------------------

struct UpdateFlow<'a, K, E> {
    registry: &'a FlowRegistry<K, E>,
    spec: &'a ValidSpec,
    keys: &'a FlowKeys,
    /// The version the client expects to be active (the precondition), if any.
    expected: Option<VersionNumber>,
    validate_only: bool,
    now: DateTime<Utc>,
}

struct UpdateState {
    head: FlowHead,
    /// The recorded latest version proved stale: scan the version keys.
    scan: bool,
    /// What the last attempt decided: the active version it saw, the request encoded as that
    /// version (to recognise an unchanged spec) and the version it tried to write.
    attempted: Option<(VersionNumber, Vec<u8>, VersionNumber)>,
}

fn version_mismatch(name: &FlowName, active: VersionNumber, expected: VersionNumber) -> Error {
    Error::Aborted(
        Detail::new(
            "VERSION_MISMATCH",
            format!(
                "flow \"{name}\" is at version {active}, but the request expects version {expected}"
            ),
        )
        .with("flow", name)
        .with("active_version", active)
        .with("expected_version", expected),
    )
}

impl<K: Kv, E: Environment> Write for UpdateFlow<'_, K, E> {
    const NAME: &'static str = "update_flow";
    type State = UpdateState;
    type Output = Flow;

    async fn decide(&self, s: &mut UpdateState) -> Result<Attempt<Flow>> {
        let head = &s.head;
        let active = head.live()?;
        if let Some(expected) = self.expected
            && expected != active
        {
            return Err(version_mismatch(&head.name, active, expected));
        }
        let same = self.spec.at_version(active);
        let same_bytes = encode_spec(&same)?;
        let n = self
            .registry
            .latest_version(head, s.scan)
            .await?
            .unwrap_or(active)
            .max(active)
            .next();
        let new_spec = self.spec.at_version(n);
        let new_bytes = encode_spec(&new_spec)?;
        let mut meta = head.meta();
        meta.updated_at = Some(self.now);
        meta.latest_version = Some(n.get());
        meta.labels.clone_from(&self.spec.spec().labels);
        self.registry.repair_meta(&mut meta, self.now);

        // The transaction below detects an unchanged spec by comparing bytes, which is exact for
        // versions this API wrote (its encoding is canonical). The active version may have been
        // written by the original API (map order, defaults not applied): when the flow's meta
        // does not record this API's versions, or after a rollback, compare the decoded specs
        // first, at the cost of one read.
        let foreign_possible =
            head.meta.as_ref().and_then(|m| m.latest_version) != Some(active.get());
        if self.validate_only || foreign_possible {
            let current = self.registry.read_spec(head, active).await?;
            if self.spec.is_stored_as(&current, active) {
                return Ok(Attempt::Done(head.flow(&head.meta(), active, current)?));
            }
            if self.validate_only {
                return Ok(Attempt::Done(head.flow(&meta, n, new_spec)?));
            }
        }

        let mut compare = head.guard();
        compare.push(Compare::absent(self.keys.version_spec(n)));
        compare.push(Compare::value_not(
            self.keys.version_spec(active),
            same_bytes.clone(),
        ));
        let mut failure = read_head_back(self.keys);
        failure.push(TxnOp::Range(RangeRequest::key(
            self.keys.version_spec(active),
        )));
        let flow = head.flow(&meta, n, new_spec)?;
        s.attempted = Some((active, same_bytes, n));
        Ok(Attempt::Commit(
            Txn {
                compare,
                success: write_version(self.keys, n, new_bytes, &meta, self.now),
                failure,
            },
            flow,
        ))
    }

    async fn conflict(
        &self,
        s: UpdateState,
        resp: TxnResponse,
    ) -> Result<Conflict<UpdateState, Flow>> {
        let fresh = head_read_back(&s.head, &resp)?;
        let Some((active, same_bytes, n)) = s.attempted else {
            return Err(Error::internal(
                "an update failed without having been attempted",
            ));
        };
        if !fresh.unchanged_since(&s.head) {
            return Ok(Conflict::Raced(UpdateState {
                head: fresh,
                scan: s.scan,
                attempted: None,
            }));
        }
        let name = &s.head.name;
        match resp.range(1)?.kvs.first() {
            // The active spec equals the request: nothing to write (idempotent update).
            Some(kv) if kv.value == same_bytes => Ok(Conflict::Done(fresh.flow(
                &fresh.meta(),
                active,
                self.spec.at_version(active),
            )?)),
            // Version slot n is taken although meta says otherwise: rescan.
            Some(_) if !s.scan => Ok(Conflict::Retry(UpdateState {
                head: fresh,
                scan: true,
                attempted: None,
            })),
            Some(_) => Err(slot_taken(name, n)),
            None => Err(Error::internal(format!(
                "flow \"{name}\" points at version {active}, which has no spec"
            ))),
        }
    }

    async fn refresh(&self, s: UpdateState) -> Result<UpdateState> {
        let head = self.registry.read_head(&s.head.name, self.keys).await?;
        Ok(UpdateState { head, ..s })
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.spec.name(), attempts)
    }
}

// ---- RollbackFlow ----------------------------------------------------------------------------

struct RollbackFlow<'a, K, E> {
    registry: &'a FlowRegistry<K, E>,
    name: &'a FlowName,
    keys: &'a FlowKeys,
    target: VersionNumber,
    /// The spec of `target`.
    spec: FlowSpec,
    now: DateTime<Utc>,
}

impl<K: Kv, E: Environment> Write for RollbackFlow<'_, K, E> {
    const NAME: &'static str = "rollback_flow";
    type State = FlowHead;
    type Output = Flow;

    async fn decide(&self, head: &mut FlowHead) -> Result<Attempt<Flow>> {
        let active = head.live()?;
        if active == self.target {
            return Ok(Attempt::Done(head.flow(
                &head.meta(),
                self.target,
                self.spec.clone(),
            )?));
        }
        let mut meta = head.meta();
        meta.updated_at = Some(self.now);
        self.registry.repair_meta(&mut meta, self.now);
        let flow = head.flow(&meta, self.target, self.spec.clone())?;
        Ok(Attempt::Commit(
            Txn {
                compare: head.guard(),
                success: vec![
                    TxnOp::put(self.keys.active(), self.target.to_string()),
                    TxnOp::put(self.keys.meta(), meta.encode()),
                ],
                failure: read_head_back(self.keys),
            },
            flow,
        ))
    }

    async fn conflict(
        &self,
        head: FlowHead,
        resp: TxnResponse,
    ) -> Result<Conflict<FlowHead, Flow>> {
        Ok(Conflict::Raced(head_read_back(&head, &resp)?))
    }

    async fn refresh(&self, head: FlowHead) -> Result<FlowHead> {
        self.registry.read_head(&head.name, self.keys).await
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.name, attempts)
    }
}

// ---- DeleteFlow ------------------------------------------------------------------------------

struct DeleteFlow<'a, K, E> {
    registry: &'a FlowRegistry<K, E>,
    name: &'a FlowName,
    keys: &'a FlowKeys,
    now: DateTime<Utc>,
}

impl<K: Kv, E: Environment> Write for DeleteFlow<'_, K, E> {
    const NAME: &'static str = "delete_flow";
    type State = FlowHead;
    type Output = ();

    async fn decide(&self, head: &mut FlowHead) -> Result<Attempt<()>> {
        if !head.is_live() {
            // Deleting a deleted flow succeeds and writes nothing (a retried or repeated delete
            // is safe: `flowctl stop` twice); a name that never existed is NOT_FOUND.
            return if self.registry.ever_existed(head).await? {
                Ok(Attempt::Done(()))
            } else {
                Err(Error::flow_not_found(head.name.as_str()))
            };
        }
        let mut meta = head.meta();
        meta.deleted = true;
        meta.deleted_at = Some(self.now);
        self.registry.repair_meta(&mut meta, self.now);
        Ok(Attempt::Commit(
            Txn {
                compare: head.guard(),
                success: vec![
                    TxnOp::delete(self.keys.active()),
                    TxnOp::delete(self.keys.index()),
                    TxnOp::put(self.keys.meta(), meta.encode()),
                ],
                failure: read_head_back(self.keys),
            },
            (),
        ))
    }

    async fn conflict(&self, head: FlowHead, resp: TxnResponse) -> Result<Conflict<FlowHead, ()>> {
        Ok(Conflict::Raced(head_read_back(&head, &resp)?))
    }

    async fn refresh(&self, head: FlowHead) -> Result<FlowHead> {
        self.registry.read_head(&head.name, self.keys).await
    }

    fn gave_up(&self, attempts: u32) -> Error {
        contention(self.name, attempts)
    }
}
