//! What the core needs from the world but must not take by itself: the time, fresh unique ids,
//! randomness (for retry jitter) and waiting. The server passes real ones (tokio, the system
//! clock, UUIDs); tests can pass fixed ones. Keeping these out of the core is what lets it build
//! for wasm32-wasip1.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

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
    /// Jittered backoff starts from this and doubles per attempt...
    pub base_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 64,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt` (1-based; attempt 1 is not delayed: the transaction's else
    /// branch already returned the fresh state, so the first retry usually wins). "Full jitter":
    /// a random delay in `[0, min(max, base * 2^(attempt-2))]`, which spreads racing replicas
    /// apart instead of making them collide again in lockstep.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = (attempt - 2).min(20);
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
    fn first_retry_is_immediate_then_jittered_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 12345), Duration::ZERO);
        assert!(p.delay(2, u64::MAX) <= Duration::from_millis(1));
        assert!(p.delay(5, u64::MAX) <= Duration::from_millis(8));
        assert!(p.delay(40, u64::MAX) <= Duration::from_millis(50));
        assert_eq!(p.delay(40, 0), Duration::ZERO);
    }
}
