//! What the core needs from the world but must not take by itself: the time, fresh unique ids,
//! randomness (for retry jitter) and waiting. The server passes real ones (tokio, the system
//! clock, UUIDs); tests can pass fixed ones. Keeping these out of the core is what lets it build
//! for wasm32-wasip1.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The time, ids, randomness and waiting the core uses, supplied by its host (see the module
/// docs). Implementations must be shareable across the tasks of concurrent requests.
pub trait Environment: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// A new unique id for a flow incarnation (a UUID in production).
    fn new_uid(&self) -> String;
    /// A uniformly random number, for jittering retries.
    fn random(&self) -> u64;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// How the core retries a write that lost a compare-and-swap race to another writer.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before giving up with ABORTED.
    pub max_attempts: u32,
    /// Retries made at once, with the state the failed transaction returned. Waiting would let
    /// every writer that did not just lose a race (another replica's next request) go first, so
    /// a loser that backs off can lose again and again; an immediate retry needs one round trip
    /// where a fresh writer needs two, which keeps replicas fair.
    pub immediate_retries: u32,
    /// Jittered backoff starts from this and doubles per attempt...
    pub base_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 100,
            immediate_retries: 8,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// Delay after failed attempt `attempt` (1-based). The first [`Self::immediate_retries`] are
    /// not delayed. After that, "full jitter": a random delay in `[0, min(max, base * 2^k)]`
    /// that grows with each further failure, spreading many racing replicas apart instead of
    /// making them collide again in lockstep.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        if attempt <= self.immediate_retries {
            return Duration::ZERO;
        }
        let exp = (attempt - self.immediate_retries - 1).min(20);
        let cap = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let cap_us = cap.as_micros().max(1) as u64;
        Duration::from_micros(random % (cap_us + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retries_are_immediate_then_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..=8 {
            assert_eq!(p.delay(attempt, u64::MAX), Duration::ZERO);
        }
        assert!(p.delay(9, u64::MAX) <= Duration::from_millis(1));
        assert!(p.delay(12, u64::MAX) <= Duration::from_millis(8));
        assert!(p.delay(60, u64::MAX) <= Duration::from_millis(50));
        assert_eq!(p.delay(60, 0), Duration::ZERO);
    }
}
