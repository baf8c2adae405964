//! The one compare-and-swap loop every write goes through, as kube-apiserver's etcd3 store has
//! `GuaranteedUpdate`: flows (create, update, rollback, delete) and schemas (create, delete) each
//! describe their write as a [`Write`], and [`guaranteed_write`] runs it.
//!
//! A write reads the state it depends on, decides what to write, and commits one transaction
//! whose compares say "the state is still what I read". When another writer got there first, the
//! transaction's `else` branch has already read the state as it is now, so the next attempt needs
//! no extra round trip. The first retries are immediate (see [`RetryPolicy`] for why); later ones
//! wait a jittered backoff and then read the state again, since anything held across a wait is
//! stale. After [`RetryPolicy::max_attempts`] failed transactions the write gives up with the
//! error its [`Write::gave_up`] names (ABORTED).
//!
//! Every failed transaction is also a `tracing` event (target [`CAS_TARGET`], DEBUG, fields
//! `write` = [`Write::NAME`], `outcome` = `"retry"` or `"gave_up"`, `reason` = `"raced"`
//! (another writer got there first) or `"stale"` (a hint turned out stale, e.g. a create whose
//! name is taken), `attempts`), so that a transport can count retries and give-ups without the
//! core depending on a metrics library.

use std::future::Future;

use crate::environment::{Environment, RetryPolicy};
use crate::error::{Error, Result};
use crate::kv::{Kv, Txn, TxnResponse};

/// What one attempt of a write decided, given the state it read.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Nothing (more) to write: this is the answer (an equal spec, a rollback to the active
    /// version, ...).
    Done(T),
    /// Commit this transaction; when its compares hold, `T` is the answer. Its `failure` branch
    /// reads what [`Write::conflict`] needs to decide the next attempt.
    Commit(Txn, T),
}

/// What a failed transaction means, decided from what its `else` branch read.
#[derive(Debug)]
pub enum Conflict<S, T> {
    /// Another writer changed the state: try again from this fresh state (backing off after the
    /// immediate retries).
    Raced(S),
    /// Not a race (the decision used a hint that turned out stale, such as a recorded latest
    /// version): try again from this state at once.
    Retry(S),
    /// What the failed transaction read settles the request (an update to the spec that is
    /// already active).
    Done(T),
}

/// One write, as [`guaranteed_write`] runs it. `State` is what an attempt decides from (a flow's
/// head, a schema's pointer), read before the first attempt and by every failed transaction.
pub trait Write: Sync {
    /// The write's name in telemetry (`"update_flow"`): the `write` field of the [`CAS_TARGET`]
    /// events.
    const NAME: &'static str;
    /// What an attempt decides from.
    type State: Send;
    /// The write's answer.
    type Output: Send;

    /// Decides the next attempt from `state` (which it may annotate with what it decided, for
    /// [`Write::conflict`]).
    fn decide(
        &self,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<Attempt<Self::Output>>> + Send;

    /// Reads a failed transaction's response: what changed, and what to do about it.
    fn conflict(
        &self,
        state: Self::State,
        response: TxnResponse,
    ) -> impl Future<Output = Result<Conflict<Self::State, Self::Output>>> + Send;

    /// Reads the state again, after a backoff made `state` stale.
    fn refresh(&self, state: Self::State) -> impl Future<Output = Result<Self::State>> + Send;

    /// The error after `attempts` failed transactions in a row.
    fn gave_up(&self, attempts: u32) -> Error;
}

/// The `tracing` target of the events [`guaranteed_write`] emits when a transaction loses a race.
pub const CAS_TARGET: &str = "flowpipe_core::cas";

/// Runs `write` from `state` until an attempt succeeds, decides there is nothing to write, or
/// fails `policy.max_attempts` transactions.
pub async fn guaranteed_write<W: Write>(
    kv: &impl Kv,
    env: &impl Environment,
    policy: &RetryPolicy,
    write: &W,
    mut state: W::State,
) -> Result<W::Output> {
    let mut failed = 0;
    loop {
        let (txn, answer) = match write.decide(&mut state).await? {
            Attempt::Done(answer) => return Ok(answer),
            Attempt::Commit(txn, answer) => (txn, answer),
        };
        let response = kv.txn(txn).await?;
        if response.succeeded {
            return Ok(answer);
        }
        failed += 1;
        let next = match write.conflict(state, response).await? {
            Conflict::Done(answer) => return Ok(answer),
            _ if failed >= policy.max_attempts => {
                tracing::debug!(target: CAS_TARGET, write = W::NAME, outcome = "gave_up", reason = "raced", attempts = failed);
                return Err(write.gave_up(failed));
            }
            next => {
                let reason = if matches!(next, Conflict::Raced(_)) {
                    "raced"
                } else {
                    "stale"
                };
                tracing::debug!(target: CAS_TARGET, write = W::NAME, outcome = "retry", reason, attempts = failed);
                next
            }
        };
        state = match next {
            Conflict::Done(answer) => return Ok(answer),
            Conflict::Retry(fresh) => fresh,
            Conflict::Raced(fresh) => {
                let delay = policy.delay(failed, env.random());
                if delay.is_zero() {
                    fresh
                } else {
                    env.sleep(delay).await;
                    write.refresh(fresh).await?
                }
            }
        };
    }
}
