//! In-process serialization of writes to one flow.
//!
//! Writes to a flow are compare-and-swap transactions: when several requests of one API process
//! update the same flow at once, all but one lose each race and retry. Queueing them behind a
//! per-flow lock first leaves only other replicas to race with, which turns a 32-way race into
//! (at most) a replica-count-way one. Correctness never depends on this lock: the transactions'
//! compares do; the lock only saves etcd round trips.
//!
//! Runtime-agnostic (`futures` mutexes), so the core stays portable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::names::FlowName;

/// One async mutex per flow being written, created on demand and forgotten when unused.
#[derive(Debug, Default)]
pub struct FlowLocks {
    locks: Mutex<HashMap<FlowName, Arc<AsyncMutex<()>>>>,
}

/// Held while writing one flow; releases (and forgets unused locks) on drop.
pub struct FlowGuard<'a> {
    owner: &'a FlowLocks,
    name: FlowName,
    guard: Option<OwnedMutexGuard<()>>,
}

impl FlowLocks {
    /// Waits until no other write of this process holds flow `name`, then holds it until the
    /// guard is dropped.
    pub async fn lock(&self, name: &FlowName) -> FlowGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            map.entry(name.clone()).or_default().clone()
        };
        FlowGuard {
            owner: self,
            name: name.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

impl Drop for FlowGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self
            .owner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: nobody waits for this flow, forget the lock.
        if map
            .get(&self.name)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn one_writer_per_flow_and_no_leak() {
        let locks = FlowLocks::default();
        let a = FlowName::parse("a").unwrap();
        let b = FlowName::parse("b").unwrap();
        let g1 = locks.lock(&a).now_or_never().unwrap();
        assert!(
            locks.lock(&a).now_or_never().is_none(),
            "second writer of a waits"
        );
        let g2 = locks.lock(&b).now_or_never().unwrap();
        drop(g1);
        drop(g2);
        assert_eq!(locks.len(), 0);
        assert!(locks.lock(&a).now_or_never().is_some());
    }
}
