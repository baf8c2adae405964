//! [`FakeEnvironment`]: a deterministic [`Environment`] for tests of what the core does with time,
//! ids, randomness and waiting. Its clock only moves when the core sleeps, every sleep is
//! recorded, and "randomness" is a fixed value, so a retry's backoff schedule can be checked
//! exactly, in no time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowpipe_core::Environment;

/// A clock that advances only by the core's sleeps, counter uids (`uid-1`, `uid-2`, ...), a fixed
/// "random" number, and a record of every sleep. Clones share all of it.
#[derive(Debug, Clone)]
pub struct FakeEnvironment {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    now: DateTime<Utc>,
    uids: u64,
    random: u64,
    sleeps: Vec<Duration>,
}

impl FakeEnvironment {
    /// Starts at `now`, with `random` as every random number.
    pub fn new(now: DateTime<Utc>, random: u64) -> Self {
        FakeEnvironment {
            inner: Arc::new(Mutex::new(State {
                now,
                uids: 0,
                random,
                sleeps: Vec::new(),
            })),
        }
    }

    /// Every sleep the core asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state().sleeps.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Environment for FakeEnvironment {
    fn now(&self) -> DateTime<Utc> {
        self.state().now
    }

    fn new_uid(&self) -> String {
        let mut s = self.state();
        s.uids += 1;
        format!("uid-{}", s.uids)
    }

    fn random(&self) -> u64 {
        self.state().random
    }

    /// Records the sleep and moves the clock; returns at once (tests run in no time).
    async fn sleep(&self, duration: Duration) {
        let mut s = self.state();
        s.sleeps.push(duration);
        s.now += chrono::TimeDelta::from_std(duration).unwrap_or_default();
    }
}
